//! `--ready-check`: is the app itself ready to take traffic?
//!
//! Until the first pass drainit stays in Starting and `/ready` answers 503,
//! so a slow-starting app never gets traffic early. The check runs on its
//! own timer and publishes the result; `/ready` answers from that cached
//! value, so probes never fan out to the app.

use std::time::Duration;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

use std::net::SocketAddr;
use tokio::sync::{mpsc, oneshot, Notify};
use tracing::debug;

use crate::lifecycle::{CheckResult, Event};
use crate::settings::ReadyCheck;
use crate::traffic::OwnClients;

/// Resolves host names on one thread of drainit's own, started at the
/// first lookup and kept for drainit's life. Not tokio's blocking pool:
/// its idle thread exits after 10 s, the next lookup needs a new one, and
/// when the pod is at its process limit tokio panics on the failed thread
/// creation ("OS can't spawn worker thread"), which takes PID 1 and the
/// whole container down. Here a thread that cannot be started is a failed
/// lookup (the check says "not ready"), tried again at the next check.
#[derive(Debug, Default)]
struct Resolver {
    requests: Option<mpsc::Sender<Lookup>>,
}

/// What a lookup answers: the addresses, or getaddrinfo's failure.
type LookupAnswer = std::io::Result<Vec<SocketAddr>>;

/// One name to resolve, and where its answer goes.
struct Lookup {
    authority: String,
    answer: oneshot::Sender<LookupAnswer>,
}

/// The resolver thread's stack: getaddrinfo with glibc's NSS modules
/// needs some room; only the pages it touches become resident.
const RESOLVER_STACK: usize = 256 * 1024;

impl Resolver {
    /// Starts a lookup of `authority`; `None` if no thread can run it now.
    fn start(&mut self, authority: &str) -> Option<oneshot::Receiver<LookupAnswer>> {
        let (answer, answered) = oneshot::channel();
        let mut lookup = Lookup {
            authority: authority.to_string(),
            answer,
        };
        if let Some(requests) = &self.requests {
            // One lookup at a time (the checker waits for its answer), so
            // the one slot is free unless the thread is gone.
            match requests.try_send(lookup) {
                Ok(()) => return Some(answered),
                Err(mpsc::error::TrySendError::Full(_)) => return None,
                // The thread is gone: start another one below.
                Err(mpsc::error::TrySendError::Closed(returned)) => lookup = returned,
            }
        }
        let (requests, mut incoming) = mpsc::channel::<Lookup>(1);
        let spawned = std::thread::Builder::new()
            .name("drainit-dns".into())
            .stack_size(RESOLVER_STACK)
            .spawn(move || {
                // Signals are read by the event loop's signalfd only: the
                // thread started with the handled ones blocked; block the
                // rest too, so none is ever delivered here.
                let _ = nix::sys::signal::SigSet::all().thread_block();
                while let Some(lookup) = incoming.blocking_recv() {
                    let addresses = std::net::ToSocketAddrs::to_socket_addrs(&lookup.authority)
                        .map(Iterator::collect);
                    let _ = lookup.answer.send(addresses);
                }
            });
        if let Err(error) = spawned {
            debug!(%error, "no thread for the --ready-check lookup; not ready for now");
            self.requests = None;
            return None;
        }
        let sent = requests.try_send(lookup).is_ok();
        self.requests = Some(requests);
        sent.then_some(answered)
    }
}

/// Runs one [`ReadyCheck`] after another, with at most one DNS lookup in
/// flight: a host name is resolved on the [`Resolver`]'s thread
/// (getaddrinfo cannot be cancelled), so with a hung name server a new
/// lookup per check would pile up. A lookup still running when a check
/// times out is picked up again by the next check.
#[derive(Debug)]
pub struct Checker {
    check: ReadyCheck,
    resolver: Resolver,
    lookup: Option<oneshot::Receiver<LookupAnswer>>,
    /// Where each connection's local address is noted, so the traffic
    /// observer never counts drainit's own checks as the app's traffic.
    own_clients: OwnClients,
}

/// Why the check's address could not be reached.
enum Unreachable {
    /// Every address refused the connection: nothing listens there.
    Refused,
    /// Anything else (a failed or unfinished lookup, no socket, no route,
    /// a timeout): says nothing about whether the app is gone.
    Failed,
}

impl Checker {
    /// A checker for `check`, with no lookup yet, noting its connections
    /// in `own_clients`.
    pub fn new(check: ReadyCheck, own_clients: OwnClients) -> Checker {
        Checker {
            check,
            resolver: Resolver::default(),
            lookup: None,
            own_clients,
        }
    }

    /// Runs one check, lookup included, bounded by `timeout`. The answer
    /// is then read to its end within what is left of `timeout`, so that
    /// the connection closes cleanly (a close with unread bytes is a
    /// reset at the app: ECONNRESET, and a traceback in many frameworks,
    /// once per check); the result never waits for that.
    pub async fn check(&mut self, timeout: Duration) -> CheckResult {
        let deadline = tokio::time::Instant::now() + timeout;
        match tokio::time::timeout_at(deadline, self.check_unbounded()).await {
            Ok((result, Some(answer))) => {
                let _ = tokio::time::timeout_at(deadline, answer.read_to_end()).await;
                result
            }
            Ok((result, None)) => result,
            Err(_) => CheckResult::NotReady,
        }
    }

    /// The addresses of the check's `HOST:PORT`; `None` while they cannot
    /// be had (a failed lookup says nothing about whether the app is gone).
    async fn resolve(&mut self) -> Option<Vec<SocketAddr>> {
        let authority = self.check.authority();
        if let Ok(address) = authority.parse::<SocketAddr>() {
            return Some(vec![address]);
        }
        if self.lookup.is_none() {
            self.lookup = self.resolver.start(authority);
        }
        // Awaited by reference: a timeout leaves the lookup for the next check.
        let resolved = self.lookup.as_mut()?.await;
        self.lookup = None;
        match resolved {
            Ok(Ok(addresses)) => Some(addresses),
            Ok(Err(error)) => {
                debug!(%error, "--ready-check lookup failed; not ready for now");
                None
            }
            // The thread ended without answering: start another next time.
            Err(_) => {
                self.resolver.requests = None;
                None
            }
        }
    }

    /// Connects to the first address that accepts. The local address is
    /// noted for the traffic observer before the connection exists (bound
    /// to the target's own IP, which is local: the app is in drainit's
    /// network namespace), so no dump can catch it unnoted; where that
    /// bind fails, it is noted right after the connect.
    async fn connect(&self, addresses: &[SocketAddr]) -> Result<TcpStream, Unreachable> {
        let mut every_one_refused = !addresses.is_empty();
        for address in addresses {
            let socket = match address {
                SocketAddr::V4(_) => TcpSocket::new_v4(),
                SocketAddr::V6(_) => TcpSocket::new_v6(),
            };
            let Ok(socket) = socket else {
                // Out of descriptors, say: nothing learnt about the app.
                every_one_refused = false;
                continue;
            };
            let bound = socket
                .bind(SocketAddr::new(address.ip(), 0))
                .and_then(|()| socket.local_addr());
            if let Ok(local) = bound {
                self.own_clients.note(local);
            }
            match socket.connect(*address).await {
                Ok(stream) => {
                    if bound.is_err() {
                        if let Ok(local) = stream.local_addr() {
                            self.own_clients.note(local);
                        }
                    }
                    return Ok(stream);
                }
                Err(error) if error.kind() == std::io::ErrorKind::ConnectionRefused => {}
                Err(_) => every_one_refused = false,
            }
        }
        Err(if every_one_refused {
            Unreachable::Refused
        } else {
            Unreachable::Failed
        })
    }

    /// The check's result, and for HTTP the answer whose status line gave
    /// it (to be read to its end).
    async fn check_unbounded(&mut self) -> (CheckResult, Option<Answer>) {
        let Some(addresses) = self.resolve().await else {
            return (CheckResult::NotReady, None);
        };
        let mut stream = match self.connect(&addresses).await {
            Ok(stream) => stream,
            Err(Unreachable::Refused) => return (CheckResult::Refused, None),
            Err(Unreachable::Failed) => return (CheckResult::NotReady, None),
        };
        let ReadyCheck::Http { authority, path } = &self.check else {
            return (CheckResult::Ready, None);
        };
        let request = format!(
            "GET {path} HTTP/1.1\r\nHost: {authority}\r\nUser-Agent: drainit\r\nConnection: close\r\n\r\n"
        );
        if stream.write_all(request.as_bytes()).await.is_err() {
            return (CheckResult::NotReady, None);
        }
        let mut answer = Answer {
            stream,
            head: Vec::with_capacity(256),
            received: 0,
        };
        // The status line is all the result needs: "HTTP/1.1 200 OK".
        while answer.head.len() < 12 {
            if !answer.read_some().await {
                return (CheckResult::NotReady, None);
            }
        }
        let head = &answer.head;
        let is_2xx = head.starts_with(b"HTTP/1.") && head.get(8..10) == Some(b" 2".as_slice());
        let result = if is_2xx {
            CheckResult::Ready
        } else {
            CheckResult::NotReady
        };
        (result, Some(answer))
    }
}

/// The most of an answer a check reads: a health endpoint answers in a
/// few bytes. Past it the connection is closed unread (a reset at the
/// app, once, rather than memory or time without bound).
const MOST_ANSWER_BYTES: usize = 64 * 1024;

/// The most of an answer's head kept to find its end.
const MOST_HEAD_BYTES: usize = 8 * 1024;

/// An HTTP answer being read: its head (kept, up to [`MOST_HEAD_BYTES`])
/// and how many bytes came in all.
struct Answer {
    stream: TcpStream,
    head: Vec<u8>,
    received: usize,
}

impl Answer {
    /// Reads what has come; false at the end of the stream, on an error,
    /// or past [`MOST_ANSWER_BYTES`].
    async fn read_some(&mut self) -> bool {
        let mut buffer = [0u8; 1024];
        match self.stream.read(&mut buffer).await {
            Ok(0) | Err(_) => false,
            Ok(n) => {
                let chunk = buffer.get(..n).unwrap_or_default();
                let room = MOST_HEAD_BYTES.saturating_sub(self.head.len());
                self.head
                    .extend_from_slice(chunk.get(..room.min(n)).unwrap_or_default());
                self.received += n;
                self.received <= MOST_ANSWER_BYTES
            }
        }
    }

    /// Reads until the server closes or the whole answer is in (its
    /// `Content-Length`, the last chunk, or the head alone where no body
    /// can follow), whichever comes first; then the connection is
    /// dropped with nothing unread: a FIN, not a reset.
    async fn read_to_end(mut self) {
        while !answer_complete(&self.head, self.received) {
            if !self.read_some().await {
                return;
            }
        }
    }
}

/// Whether an answer whose first bytes are `head` (all of them if
/// `received` is its length) is all in, by its head.
fn answer_complete(head: &[u8], received: usize) -> bool {
    let Some(end) = head.windows(4).position(|w| w == b"\r\n\r\n") else {
        return false;
    };
    let body_start = end + 4;
    let text = String::from_utf8_lossy(head.get(..end).unwrap_or_default()).to_ascii_lowercase();
    let status = text.get(9..12).unwrap_or("");
    if status.starts_with('1') || status == "204" || status == "304" {
        return true;
    }
    let header = |name: &str| {
        text.lines()
            .find_map(|line| line.strip_prefix(name)?.trim_start().strip_prefix(':'))
            .map(str::trim)
    };
    if let Some(length) = header("content-length").and_then(|v| v.parse::<usize>().ok()) {
        return received >= body_start.saturating_add(length);
    }
    if header("transfer-encoding").is_some_and(|v| v.ends_with("chunked")) {
        // The head is all that is kept: a chunked answer is complete
        // when it ends in the last chunk, within the head.
        return received == head.len() && head.ends_with(b"0\r\n\r\n");
    }
    false // until the server closes
}

/// How often a hurried probe checks: a sidecar in a drain watches for the
/// app going away, and exits that much sooner after it.
pub const HURRIED_INTERVAL: Duration = Duration::from_millis(100);

/// Lets the owner of a running probe ask for a check now, or for checks
/// every [`HURRIED_INTERVAL`] from now on.
#[derive(Debug, Default)]
pub struct ProbeControl {
    recheck: Notify,
    hurried: AtomicBool,
    /// The checks' own connections, shared with the traffic observer.
    pub own_clients: OwnClients,
}

impl ProbeControl {
    /// Checks at once, then every [`HURRIED_INTERVAL`] (or the configured
    /// interval, if shorter).
    pub fn hurry(&self) {
        self.hurried.store(true, Ordering::Relaxed);
        self.recheck.notify_one();
    }
}

/// A check every `period`; a late tick delays the next ones instead of
/// bunching them.
fn check_ticker(period: Duration) -> tokio::time::Interval {
    let mut ticker = tokio::time::interval(period);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticker
}

/// Runs `check` every `interval` (sooner when `control` asks) and reports
/// each result to the lifecycle, until the lifecycle stops listening.
pub async fn run(
    check: ReadyCheck,
    interval: Duration,
    timeout: Duration,
    events: mpsc::Sender<Event>,
    control: Arc<ProbeControl>,
) {
    let mut ticker = check_ticker(interval);
    let mut hurried = false;
    let mut checker = Checker::new(check, control.own_clients.clone());
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            () = control.recheck.notified() => ticker.reset(),
        }
        if !hurried && control.hurried.load(Ordering::Relaxed) {
            hurried = true;
            ticker = check_ticker(interval.min(HURRIED_INTERVAL));
            ticker.reset();
        }
        let result = checker.check(timeout).await;
        if events.send(Event::AppCheck(result)).await.is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_answer_is_complete_by_its_length_its_last_chunk_or_its_status() {
        let table: &[(&[u8], usize, bool)] = &[
            (b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", 40, true),
            (b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\no", 39, false),
            (b"HTTP/1.1 200 OK\r\ncontent-length:0\r\n\r\n", 37, true),
            (b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n", 36, false),
            (b"HTTP/1.1 204 No Content\r\n\r\n", 27, true),
            (
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n",
                59,
                true,
            ),
            (
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n",
                54,
                false,
            ),
            (b"HTTP/1.0 200 OK\r\n\r\nuntil the close", 33, false),
        ];
        for (head, received, complete) in table {
            assert_eq!(
                answer_complete(head, *received),
                *complete,
                "{}",
                String::from_utf8_lossy(head)
            );
        }
    }

    #[tokio::test]
    async fn http_check_reads_the_status() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let server = tokio::spawn(async move {
            for status in ["200 OK", "503 Service Unavailable"] {
                let (mut conn, _) = listener.accept().await.expect("accept");
                let mut buf = [0u8; 512];
                let _ = conn.read(&mut buf).await;
                let answer = format!("HTTP/1.1 {status}\r\nContent-Length: 0\r\n\r\n");
                conn.write_all(answer.as_bytes()).await.expect("write");
            }
        });
        let check: ReadyCheck = format!("http://{addr}/healthz").parse().expect("url");
        let mut checker = Checker::new(check, OwnClients::default());
        let limit = Duration::from_secs(5);
        assert_eq!(checker.check(limit).await, CheckResult::Ready);
        assert_eq!(checker.check(limit).await, CheckResult::NotReady);
        server.await.expect("server");
        assert_eq!(checker.check(limit).await, CheckResult::Refused);
    }
}
