//! The traffic observer (`drainit::traffic`) against real loopback
//! sockets: new connections, inbound bytes, open connections, drainit's
//! own connections left out, IPv6, as uid 65534, and under a seccomp
//! filter that denies netlink (the typed error `auto` falls back on).
//!
//! Every listener is the test's own, on a port of its own, watched with
//! an explicit port list: other processes' traffic on the machine never
//! enters a count. Clients that must be foreign run as the `observe`
//! example in a child process.

use crate::common;
use crate::pid1_support;

use std::io::Write;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use common::{scratch, wait_for, Proc};
use drainit::settings::{AutoBounds, PropagationDelay, TrafficPorts};
use drainit::traffic::{
    Decision, EndReason, OwnClients, PortCounter, Sample, Sampler, TrafficError, TrafficHistory,
};
use pid1_support::{arg, fixture};

/// Generous bound for anything that should happen "soon" on a loaded machine.
const SOON: Duration = Duration::from_secs(30);

/// Held by the tests that start a `Sampler`: one of them checks that its
/// thread (named `drainit-traffic`) is gone, which another test's
/// sampler running at the same time would hide.
static ONE_SAMPLER_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn one_sampler_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    ONE_SAMPLER_AT_A_TIME
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// What a run of samples added up to.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Totals {
    new_connections: u64,
    inbound_bytes: u64,
    arrivals: u64,
    open_connections: u32,
    samples: u32,
}

impl Totals {
    fn add(&mut self, sample: &Sample) {
        self.new_connections += u64::from(sample.new_connections);
        self.inbound_bytes += sample.inbound_bytes;
        self.arrivals += sample.arrivals;
        self.open_connections = sample.open_connections;
        self.samples += 1;
    }
}

/// Samples every 50 ms until `done(totals)` holds; panics with the
/// totals after `SOON`.
fn sample_until(observer: &mut PortCounter, what: &str, done: impl Fn(&Totals) -> bool) -> Totals {
    let mut totals = Totals::default();
    let deadline = Instant::now() + SOON;
    loop {
        let sample = observer
            .sample()
            .unwrap_or_else(|e| panic!("{what}: sample failed: {e}"));
        totals.add(&sample);
        if done(&totals) {
            return totals;
        }
        assert!(Instant::now() < deadline, "{what}: gave up with {totals:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn observer_for(port: u16, own: OwnClients) -> PortCounter {
    PortCounter::open(TrafficPorts::Only(vec![port]), own).expect("sock_diag works here")
}

/// Starts `observe clients` (a foreign process) against `target`.
fn foreign_clients(target: SocketAddr, connections: u32, extra: &[&str]) -> Proc {
    let dir = scratch("traffic-clients");
    let mut args = vec![
        "clients".to_string(),
        "--to".to_string(),
        target.to_string(),
        "--connections".to_string(),
        connections.to_string(),
        "--bytes".to_string(),
        "100".to_string(),
    ];
    args.extend(extra.iter().map(|a| a.to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let clients = Proc::start(&dir, &arg(&fixture("observe")), &args, &[]);
    assert!(
        wait_for(SOON, || clients.stdout().contains("connected")),
        "clients did not connect\n{}",
        clients.report()
    );
    clients
}

#[test]
fn new_connections_inbound_bytes_and_open_connections_are_seen() {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let target = listener.local_addr().expect("address");
    let mut observer = observer_for(target.port(), OwnClients::default());
    let baseline = observer.sample().expect("baseline");
    assert_eq!(baseline.ports, vec![target.port()]);
    assert_eq!(
        (baseline.new_connections, baseline.open_connections),
        (0, 0)
    );

    let _clients = foreign_clients(target, 3, &["--every", "100ms"]);
    // The connections are not even accepted: the kernel has them, with
    // their bytes, in the listener's queue.
    let totals = sample_until(&mut observer, "three clients", |t| {
        t.new_connections >= 3 && t.open_connections == 3 && t.inbound_bytes >= 300
    });
    assert_eq!(totals.new_connections, 3, "{totals:?}");
    // Established connections keep sending: bytes without new connections.
    let later = sample_until(&mut observer, "keep-alive bytes", |t| {
        t.inbound_bytes >= 600
    });
    assert_eq!(later.new_connections, 0, "{later:?}");
    assert!(later.arrivals >= 3, "each send is an arrival: {later:?}");
    assert_eq!(later.open_connections, 3, "{later:?}");
}

#[test]
fn the_kernel_hands_over_only_the_connections_of_the_watched_ports() {
    // Two watched ports (the request's single-port filter cannot hold
    // them: a bytecode filter must) and a third with more connections.
    let listeners: Vec<TcpListener> = (0..3)
        .map(|_| TcpListener::bind("127.0.0.1:0").expect("bind"))
        .collect();
    let targets: Vec<SocketAddr> = listeners
        .iter()
        .map(|l| l.local_addr().expect("address"))
        .collect();
    let watched = vec![targets[0].port(), targets[1].port()];
    let mut observer =
        PortCounter::open(TrafficPorts::Only(watched.clone()), OwnClients::default())
            .expect("sock_diag works here");
    observer.sample().expect("baseline");
    let _first = foreign_clients(targets[0], 2, &[]);
    let _second = foreign_clients(targets[1], 3, &[]);
    let _unwatched = foreign_clients(targets[2], 20, &[]);
    let totals = sample_until(&mut observer, "two ports", |t| {
        t.new_connections >= 5 && t.inbound_bytes >= 500
    });
    assert_eq!((totals.new_connections, totals.open_connections), (5, 5));
    let sample = observer.sample().expect("sample");
    let mut ports = watched;
    ports.sort_unstable();
    assert_eq!(sample.ports, ports);
    // The 5 server-side sockets: not the 25 clients' (other local ports),
    // not the unwatched port's 20.
    assert_eq!(sample.dumped_connections, 5, "{sample:?}");
}

#[test]
fn ipv6_and_dual_stack_listeners_are_seen() {
    for (bind, connect) in [("[::1]:0", "[::1]"), ("[::]:0", "127.0.0.1")] {
        let listener = TcpListener::bind(bind).expect("bind");
        let port = listener.local_addr().expect("address").port();
        let target: SocketAddr = format!("{connect}:{port}").parse().expect("address");
        let mut observer = observer_for(port, OwnClients::default());
        observer.sample().expect("baseline");
        let _clients = foreign_clients(target, 2, &[]);
        let totals = sample_until(&mut observer, bind, |t| {
            t.new_connections >= 2 && t.inbound_bytes >= 200
        });
        assert_eq!(
            (totals.new_connections, totals.open_connections),
            (2, 2),
            "{bind}: {totals:?}"
        );
    }
}

#[test]
fn drainit_own_connections_are_left_out() {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let target = listener.local_addr().expect("address");
    let own_clients = OwnClients::default();
    let mut observer = observer_for(target.port(), own_clients.clone());
    observer.sample().expect("baseline");

    // A connection this process keeps open: its socket is in /proc/self/fd.
    let mut kept = TcpStream::connect(target).expect("connect");
    kept.write_all(&[b'k'; 50]).expect("send");
    // A check-like connection, closed at once: only the note keeps it out.
    let noted = TcpStream::connect(target).expect("connect");
    own_clients.note(noted.local_addr().expect("address"));
    (&noted).write_all(&[b'n'; 50]).expect("send");
    drop(noted);
    // The same without a note: counted, which shows the note did the work.
    let unnoted = TcpStream::connect(target).expect("connect");
    (&unnoted).write_all(&[b'u'; 70]).expect("send");
    drop(unnoted);
    // And a foreign client, counted.
    let _clients = foreign_clients(target, 1, &[]);

    let totals = sample_until(&mut observer, "own and foreign", |t| t.new_connections >= 2);
    // A little longer, so that a late count of drainit's own would show.
    let mut more = totals;
    for _ in 0..5 {
        std::thread::sleep(Duration::from_millis(50));
        more.add(&observer.sample().expect("sample"));
    }
    assert_eq!(more.new_connections, 2, "unnoted + foreign only: {more:?}");
    assert_eq!(more.inbound_bytes, 70 + 100, "{more:?}");
    assert_eq!(
        more.open_connections, 1,
        "the foreign client only: {more:?}"
    );
    kept.write_all(b"more").expect("send");
    let after = sample_until(&mut observer, "own bytes", |t| t.samples >= 3);
    assert_eq!(after.inbound_bytes, 0, "{after:?}");
}

/// Lines `sample n=… key=value …` of `observe sample`, added up.
fn parse_totals(stdout: &str) -> Totals {
    let mut totals = Totals::default();
    for line in stdout.lines().filter(|l| l.starts_with("sample ")) {
        let field = |key: &str| {
            line.split_whitespace()
                .find_map(|kv| kv.strip_prefix(key)?.strip_prefix('='))
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0)
        };
        totals.new_connections += field("new");
        totals.inbound_bytes += field("bytes");
        totals.arrivals += field("arrivals");
        totals.open_connections = field("open") as u32;
        totals.samples += 1;
    }
    totals
}

fn as_nobody(program: &str, args: &[&str]) -> Proc {
    let dir = scratch("traffic-nobody");
    let mut full = vec![
        "--reuid",
        "65534",
        "--regid",
        "65534",
        "--clear-groups",
        program,
    ];
    full.extend_from_slice(args);
    Proc::start(&dir, "setpriv", &full, &[])
}

#[test]
fn it_works_as_uid_65534() {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let target = listener.local_addr().expect("address");
    let port = target.port().to_string();
    let observe = arg(&fixture("observe"));
    let sampler = as_nobody(
        &observe,
        &[
            "sample",
            "--ports",
            &port,
            "--count",
            "600",
            "--interval",
            "50ms",
        ],
    );
    assert!(
        wait_for(SOON, || sampler.stdout().contains("sample n=0")),
        "no baseline sample\n{}",
        sampler.report()
    );
    let _clients = foreign_clients(target, 2, &[]);
    let mut totals = Totals::default();
    let seen = wait_for(SOON, || {
        totals = parse_totals(&sampler.stdout());
        totals.new_connections >= 2 && totals.inbound_bytes >= 200
    });
    assert!(seen, "as uid 65534: {totals:?}\n{}", sampler.report());
    assert_eq!(
        (totals.new_connections, totals.open_connections),
        (2, 2),
        "{totals:?}"
    );
}

#[test]
fn a_seccomp_denial_is_a_permanent_typed_error() {
    let observe = arg(&fixture("observe"));
    let mut denied = as_nobody(&observe, &["sample", "--count", "1", "--deny-netlink"]);
    let status = denied.wait(SOON);
    assert_eq!(status.code(), Some(3), "{}", denied.report());
    let stdout = denied.stdout();
    assert!(
        stdout.contains("error permanent=true message=sock_diag is denied here"),
        "{}",
        denied.report()
    );
}

#[test]
fn the_seccomp_denial_is_inherited_across_exec() {
    let observe = arg(&fixture("observe"));
    let mut denied = as_nobody(
        &observe,
        &["deny-netlink", &observe, "sample", "--count", "1"],
    );
    assert_eq!(denied.wait(SOON).code(), Some(3), "{}", denied.report());
    assert!(
        denied.stdout().contains("error permanent=true"),
        "{}",
        denied.report()
    );
}

#[test]
fn the_sampler_thread_speeds_up_on_demand() {
    let _alone = one_sampler_at_a_time();
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let observer = observer_for(
        listener.local_addr().expect("address").port(),
        OwnClients::default(),
    );
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let mut sampler = Sampler::spawn(observer, Duration::from_secs(3600)).expect("spawn");
        let first = tokio::time::timeout(SOON, sampler.next()).await;
        assert!(
            matches!(first, Ok(Some(Ok(_)))),
            "the first sample comes at once"
        );
        // At the hour's pace, no second sample for an hour: the new
        // interval must wake the thread.
        sampler.set_interval(Duration::from_millis(20));
        for n in 0..3 {
            let sample: Result<Option<Result<Sample, TrafficError>>, _> =
                tokio::time::timeout(SOON, sampler.next()).await;
            assert!(
                matches!(sample, Ok(Some(Ok(_)))),
                "sample {n} after the speed-up: {sample:?}"
            );
        }
        drop(sampler);
    });
    let thread_gone = wait_for(SOON, || {
        let names = std::fs::read_dir("/proc/self/task")
            .map(|tasks| {
                tasks
                    .flatten()
                    .filter_map(|t| std::fs::read_to_string(t.path().join("comm")).ok())
                    .collect::<Vec<_>>()
            })
            .unwrap_or_default();
        !names.iter().any(|n| n.trim() == "drainit-traffic")
    });
    assert!(thread_gone, "dropping the Sampler ends its thread");
}

/// The sampler's next sample, within `SOON`.
async fn next_sample(sampler: &mut Sampler) -> Sample {
    match tokio::time::timeout(SOON, sampler.next()).await {
        Ok(Some(Ok(sample))) => sample,
        other => panic!("no sample: {other:?}"),
    }
}

/// The whole chain on real sockets: the sampler's samples build the rate
/// while clients send, the drain does not end while they still send, and
/// ends on quiet (not at the ceiling) once they are gone.
#[test]
fn a_drain_ends_on_quiet_once_real_clients_stop() {
    let _alone = one_sampler_at_a_time();
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let target = listener.local_addr().expect("address");
    let observer = observer_for(target.port(), OwnClients::default());
    let clients = foreign_clients(target, 3, &["--every", "50ms", "--for", "60s"]);
    // A window far longer than any scheduling hiccup of the clients on a
    // loaded machine, far shorter than the ceiling.
    let window = Duration::from_secs(3);
    let bounds = AutoBounds {
        min: Duration::from_millis(500),
        max: Duration::from_secs(40),
        quiet_window: Some(window),
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let mut sampler = Sampler::spawn(observer, Duration::from_millis(100)).expect("spawn");
        let mut history = TrafficHistory::default();
        let mut arrivals = 0;
        while arrivals < 30 {
            let sample = next_sample(&mut sampler).await;
            arrivals += sample.arrivals;
            history.observe(&sample.evidence());
        }
        let rate = history.rate().expect("a rate after 30 arrivals");
        assert!(rate.per_second > 1.0, "{rate:?}");

        let mut drain =
            history.begin_drain(tokio::time::Instant::now(), PropagationDelay::Auto, bounds);
        // Two seconds of drain while the clients still send: no end.
        let sending_until = tokio::time::Instant::now() + Duration::from_secs(2);
        while tokio::time::Instant::now() < sending_until {
            let sample = next_sample(&mut sampler).await;
            drain.observe(&sample.evidence());
            let decision = drain.decide(tokio::time::Instant::now());
            assert!(
                matches!(decision, Decision::Wait { .. }),
                "ended while traffic flowed: {decision:?}"
            );
        }
        clients.signal(libc::SIGKILL);
        let stopped = tokio::time::Instant::now();
        let end = loop {
            let sample = next_sample(&mut sampler).await;
            drain.observe(&sample.evidence());
            if let Decision::End(end) = drain.decide(tokio::time::Instant::now()) {
                break end;
            }
        };
        let EndReason::Quiet { quiet_for, .. } = end.reason else {
            panic!("expected the end on quiet, got {end}");
        };
        assert!(quiet_for >= window, "{end}");
        assert!(
            tokio::time::Instant::now() >= stopped + window - Duration::from_millis(200),
            "{end}"
        );
        assert!(end.after < bounds.max, "{end}");
        let report = drain.report();
        let stopped_after = report.traffic_stopped_after().expect("observed");
        // The clients sent every 50 ms until 2 s into the drain.
        assert!(
            stopped_after >= Duration::from_millis(1500) && stopped_after <= end.after,
            "traffic flowed 2 s into the drain: {report}"
        );
        assert_eq!(
            report.open_connections,
            Some(0),
            "the killed clients' connections are closed: {report}"
        );
    });
}
