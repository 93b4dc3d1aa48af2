//! The optional Kubernetes API use (issue 18) through the real binary,
//! against an emulation of the API server (tests/kube_support/apiserver.py,
//! which says where each of its behaviours comes from): HTTPS with a test
//! CA, bearer tokens (a rotated one too), the Pod with its deletion
//! fields, Events, 403 for missing RBAC, a server that hangs. The last
//! test runs the rollout rig's API setups (tests/rollout/rig.py
//! --quick-kube): real HAProxy, the kubelet's sequence, the control plane
//! written through the emulation.
#![cfg(feature = "kubernetes")]

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::{get, scratch, wait_for, AppSocket, Proc, ANY_PORT};
use serde_json::Value;

const APISERVER: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/kube_support/apiserver.py"
);
const NAMESPACE: &str = "shop";
const POD: &str = "web-1";
/// The token the test itself uses to delete the pod, as an admin would.
const ADMIN_TOKEN: &str = "admin-token";

/// An app written like most apps: on SIGTERM it records the time and exits 0.
const APP: &str = r#"
import signal, sys, time
out = sys.argv[1]
def on_term(signum, frame):
    with open(out, "a") as f:
        f.write("%.6f\n" % time.time())
    sys.exit(0)
signal.signal(signal.SIGTERM, on_term)
open(out + ".started", "w").close()
while True:
    signal.pause()
"#;

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// Runs openssl; panics with its output when it fails.
fn openssl(dir: &Path, args: &[&str]) {
    let output = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl must be installed (scripts/test.sh installs it)");
    assert!(
        output.status.success(),
        "openssl {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// A CA named `name` in `dir` (`name.crt`, `name.key`).
fn make_ca(dir: &Path, name: &str) {
    let (key, crt, subject) = (
        format!("{name}.key"),
        format!("{name}.crt"),
        format!("/CN={name}"),
    );
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            &key,
            "-out",
            &crt,
            "-days",
            "2",
            "-subj",
            &subject,
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign",
        ],
    );
}

/// The API server's certificate for 127.0.0.1, signed by the CA `ca`.
fn make_serving_cert(dir: &Path, ca: &str) {
    std::fs::write(
        dir.join("server.ext"),
        "subjectAltName=IP:127.0.0.1,DNS:kubernetes.default.svc\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
    )
    .expect("write ext");
    openssl(
        dir,
        &[
            "req",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
            "-subj",
            "/CN=kube-apiserver",
        ],
    );
    let (ca_crt, ca_key) = (format!("{ca}.crt"), format!("{ca}.key"));
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            &ca_crt,
            "-CAkey",
            &ca_key,
            "-CAcreateserial",
            "-out",
            "server.crt",
            "-days",
            "2",
            "-extfile",
            "server.ext",
        ],
    );
}

/// The emulated API server and the pod's service account files.
struct Cluster {
    /// Killed with its process group when the test ends.
    _server: Proc,
    dir: PathBuf,
    port: u16,
    secrets: PathBuf,
}

impl Cluster {
    /// Starts the emulation with `flags` (--grace, --forbid, --hang); the
    /// service account's token is `token-1`.
    fn start(name: &str, flags: &[&str]) -> Cluster {
        let dir = scratch(name);
        make_ca(&dir, "cluster-ca");
        make_serving_cert(&dir, "cluster-ca");
        let secrets = dir.join("serviceaccount");
        std::fs::create_dir_all(&secrets).expect("secrets dir");
        std::fs::copy(dir.join("cluster-ca.crt"), secrets.join("ca.crt")).expect("ca.crt");
        std::fs::write(secrets.join("token"), "token-1\n").expect("token");
        std::fs::write(secrets.join("namespace"), NAMESPACE).expect("namespace");
        std::fs::write(dir.join("tokens"), format!("token-1\n{ADMIN_TOKEN}\n")).expect("tokens");
        let path = |file: &str| dir.join(file).to_string_lossy().into_owned();
        let (cert, key, tokens, log, ready) = (
            path("server.crt"),
            path("server.key"),
            path("tokens"),
            path("requests"),
            path("ready"),
        );
        let mut args = vec![
            APISERVER,
            // The kernel picks the port; the emulation writes it to --ready.
            "--port",
            "0",
            "--cert",
            &cert,
            "--key",
            &key,
            "--tokens",
            &tokens,
            "--log",
            &log,
            "--namespace",
            NAMESPACE,
            "--pod",
            POD,
            "--ready",
            &ready,
        ];
        args.extend_from_slice(flags);
        let server_dir = dir.join("server");
        std::fs::create_dir_all(&server_dir).expect("server dir");
        let server = Proc::start(&server_dir, "python3", &args, &[]);
        assert!(
            wait_for(Duration::from_secs(20), || dir.join("ready").exists()),
            "the API emulation did not start\n{}",
            server.report()
        );
        let port = std::fs::read_to_string(dir.join("ready"))
            .ok()
            .and_then(|text| text.trim().parse().ok())
            .unwrap_or_else(|| {
                panic!(
                    "no port in the emulation's --ready file\n{}",
                    server.report()
                )
            });
        Cluster {
            _server: server,
            dir,
            port,
            secrets,
        }
    }

    /// The in-cluster convention's environment for drainit.
    fn env(&self) -> Vec<(String, String)> {
        vec![
            ("KUBERNETES_SERVICE_HOST".into(), "127.0.0.1".into()),
            ("KUBERNETES_SERVICE_PORT".into(), self.port.to_string()),
            (
                "DRAINIT_KUBERNETES_SECRETS".into(),
                self.secrets.to_string_lossy().into_owned(),
            ),
            ("HOSTNAME".into(), POD.into()),
        ]
    }

    /// Every request the emulation answered, in order.
    fn requests(&self) -> Vec<Value> {
        std::fs::read_to_string(self.dir.join("requests"))
            .unwrap_or_default()
            .lines()
            .filter_map(|line| serde_json::from_str(line).ok())
            .collect()
    }

    /// The Events drainit created.
    fn events(&self) -> Vec<Value> {
        self.requests()
            .into_iter()
            .filter(|r| {
                r["method"] == "POST" && r["path"].as_str().is_some_and(|p| p.ends_with("/events"))
            })
            .map(|r| r["body"].clone())
            .collect()
    }

    /// `kubectl delete pod --grace-period=GRACE` as a DELETE with DeleteOptions.
    fn delete_pod(&self, grace: u64) -> Value {
        let url = format!(
            "https://127.0.0.1:{}/api/v1/namespaces/{NAMESPACE}/pods/{POD}",
            self.port
        );
        let body =
            format!(r#"{{"kind":"DeleteOptions","apiVersion":"v1","gracePeriodSeconds":{grace}}}"#);
        let output = Command::new("curl")
            .args(["-sS", "--max-time", "10", "--cacert"])
            .arg(self.dir.join("cluster-ca.crt"))
            .args(["-H", &format!("Authorization: Bearer {ADMIN_TOKEN}")])
            .args([
                "-H",
                "Content-Type: application/json",
                "-X",
                "DELETE",
                "-d",
                &body,
                &url,
            ])
            .output()
            .expect("curl must be installed (scripts/test.sh installs it)");
        assert!(
            output.status.success(),
            "DELETE failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        serde_json::from_slice(&output.stdout).expect("the deleted Pod")
    }
}

/// drainit in front of [`APP`], with the cluster's environment (or none).
struct Pod {
    drainit: Proc,
    admin: SocketAddr,
    record: PathBuf,
}

fn start_pod(name: &str, cluster: Option<&Cluster>, flags: &[&str]) -> Pod {
    let dir = scratch(name);
    std::fs::write(dir.join("app.py"), APP).expect("write app");
    let record = dir.join("terms");
    let record_arg = record.to_string_lossy().into_owned();
    let mut args = vec!["--admin-listen", ANY_PORT];
    args.extend_from_slice(flags);
    args.extend_from_slice(&["--", "python3", "app.py", &record_arg]);
    let env = cluster.map(Cluster::env).unwrap_or_default();
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let drainit = Proc::drainit(&dir, &args, &env);
    assert!(
        wait_for(Duration::from_secs(20), || record
            .with_extension("started")
            .exists()),
        "the app did not start\n{}",
        drainit.report()
    );
    let admin = drainit.admin_addr();
    Pod {
        drainit,
        admin,
        record,
    }
}

impl Pod {
    fn terms(&self) -> Vec<f64> {
        std::fs::read_to_string(&self.record)
            .unwrap_or_default()
            .lines()
            .filter_map(|line| line.trim().parse().ok())
            .collect()
    }

    fn status(&self) -> Value {
        let (code, body) = get(self.admin, "/status").expect("/status answers");
        assert_eq!(code, 200);
        serde_json::from_str(&body).expect("/status is JSON")
    }

    /// The kubelet's part: SIGTERM now, SIGKILL `grace` later if drainit
    /// is still there. Returns whether drainit exited by itself, and its
    /// exit code then.
    fn kubelet_stop(&mut self, grace: Duration) -> Option<i32> {
        let sent = Instant::now();
        self.drainit.signal(libc::SIGTERM);
        let exited = wait_for(grace, || !self.drainit.running());
        if !exited {
            // The kubelet kills the whole container: the app too, which
            // would otherwise outlive the test, reparented away from drainit.
            let app = common::descendants(self.drainit.pid());
            self.drainit.signal(libc::SIGKILL);
            for pid in app {
                common::kill(pid, libc::SIGKILL);
            }
            self.drainit.wait(Duration::from_secs(10));
            return None;
        }
        assert!(sent.elapsed() <= grace + Duration::from_millis(50));
        self.drainit.wait(Duration::from_secs(1)).code()
    }
}

/// The lines drainit warned with (text log format).
fn warnings(stderr: &str) -> Vec<&str> {
    stderr
        .lines()
        .filter(|line| line.contains("WARN"))
        .collect()
}

/// The tests never hand drainit a real cluster's API: of the test
/// process's environment, the in-cluster convention's variables and
/// drainit's own API settings are removed from every process under test
/// (`Proc`), unless the test passes them (as these tests pass the
/// emulation's).
#[test]
fn processes_under_test_inherit_no_cluster_api() {
    let inherited = [
        "KUBERNETES_SERVICE_HOST",
        "KUBERNETES_SERVICE_PORT",
        "KUBERNETES_PORT",
        "DRAINIT_KUBERNETES",
        "DRAINIT_KUBERNETES_SECRETS",
        "DRAINIT_POD_NAME",
        "DRAINIT_POD_NAMESPACE",
        "DRAINIT_PROPAGATION_DELAY",
        "HOSTNAME",
        "PATH",
    ]
    .map(std::ffi::OsString::from);
    let removed = common::cluster_env_to_remove(inherited.clone(), &[]);
    assert_eq!(
        removed,
        [
            "KUBERNETES_SERVICE_HOST",
            "KUBERNETES_SERVICE_PORT",
            "DRAINIT_KUBERNETES",
            "DRAINIT_KUBERNETES_SECRETS",
            "DRAINIT_POD_NAME",
            "DRAINIT_POD_NAMESPACE",
        ]
    );
    let given = common::cluster_env_to_remove(
        inherited,
        &["KUBERNETES_SERVICE_HOST", "KUBERNETES_SERVICE_PORT"],
    );
    assert!(
        !given
            .iter()
            .any(|name| name.to_str().is_some_and(|n| n.starts_with("KUBERNETES_"))),
        "{given:?}"
    );
    assert_eq!(given.len(), 4, "{given:?}");
}

/// `kubectl delete pod --grace-period=4` on a pod whose delay (10 s) is
/// longer than that: drainit reads the deletion's grace, cuts the delay,
/// and the app gets its stop signal and exits before the kubelet's
/// SIGKILL. Without the API, the same pod is SIGKILLed in its delay with
/// the app never told to stop.
#[test]
fn a_deletion_grace_shorter_than_the_delay_still_stops_the_app_in_time() {
    let cluster = Cluster::start("kube-deadline", &["--grace", "25"]);
    let flags = ["--propagation-delay", "10s", "--kill-margin", "1s"];
    let mut pod = start_pod("kube-deadline-pod", Some(&cluster), &flags);
    assert!(
        pod.drainit
            .wait_stderr("Kubernetes API in use", Duration::from_secs(10)),
        "{}",
        pod.drainit.report()
    );
    // The pod's terminationGracePeriodSeconds is the default --grace-period.
    assert_eq!(
        pod.status()["settings"]["grace_period"],
        "25s",
        "{}",
        pod.drainit.report()
    );

    let deleted = cluster.delete_pod(4);
    assert_eq!(deleted["metadata"]["deletionGracePeriodSeconds"], 4);
    // /status and /metrics while the drain runs, from a thread.
    let admin = pod.admin;
    let observer = std::thread::spawn(move || {
        let mut seen = None;
        wait_for(Duration::from_secs(4), || {
            let status = get(admin, "/status")
                .and_then(|(_, body)| serde_json::from_str::<Value>(&body).ok());
            let metrics = get(admin, "/metrics").map(|(_, body)| body);
            match (status, metrics) {
                (Some(status), Some(metrics))
                    if status["drain"]["deadline"]["source"] == "deletion" =>
                {
                    seen = Some((status, metrics));
                    true
                }
                _ => false,
            }
        });
        seen
    });
    let sigterm_at = unix_now();
    let code = pod.kubelet_stop(Duration::from_secs(4));
    let report = pod.drainit.report();
    let (status, metrics) = observer
        .join()
        .ok()
        .flatten()
        .unwrap_or_else(|| panic!("/status never showed the deletion's deadline\n{report}"));
    let deadline = &status["drain"]["deadline"];
    assert_eq!(deadline["grace_seconds"], 4.0, "{status}");
    assert_eq!(deadline["propagation_delay_seconds"], 1.5, "{status}");
    assert!(
        deadline["why"]
            .as_str()
            .is_some_and(|why| why.contains("cut from 10.0s")),
        "{status}"
    );
    assert!(
        metrics.contains("drainit_drain_deadline_seconds 4.0"),
        "{metrics}"
    );
    assert!(
        metrics.contains("drainit_drain_deadline_source{source=\"deletion\"} 1"),
        "{metrics}"
    );
    assert_eq!(
        code,
        Some(0),
        "drainit was SIGKILLed by the kubelet\n{report}"
    );
    let terms = pod.terms();
    assert_eq!(terms.len(), 1, "{report}");
    assert!(
        terms[0] < sigterm_at + 4.0 - 1.0,
        "stop signal too late: {terms:?} vs {sigterm_at}\n{report}"
    );
    assert!(
        report.contains("drain deadline: the deletion's grace 4.0s (shorter than --grace-period 25.0s); propagation delay cut from 10.0s to 1.5s"),
        "{report}"
    );
    // The traffic line says what ended the delay.
    assert!(
        report.contains("; delay ended: cut to 1.5s by the deletion's grace 4.0s"),
        "{report}"
    );
    assert!(warnings(&report).is_empty(), "{report}");

    // The drain's story, on the pod.
    let events = cluster.events();
    let reasons: Vec<&str> = events.iter().filter_map(|e| e["reason"].as_str()).collect();
    assert_eq!(reasons, ["DrainStarted", "DrainEnded"], "{events:?}");
    for event in &events {
        assert_eq!(event["involvedObject"]["uid"], deleted["metadata"]["uid"]);
        assert_eq!(event["involvedObject"]["kind"], "Pod");
        assert_eq!(event["metadata"]["namespace"], NAMESPACE);
    }
    let started = events[0]["message"].as_str().unwrap_or_default();
    assert!(started.starts_with("drain started by SIGTERM"), "{started}");
    let ended = events[1]["message"].as_str().unwrap_or_default();
    for needle in [
        "stop signal after 1.5s",
        "delay ended: cut to 1.5s by the deletion's grace 4.0s",
        "deadline: the deletion's grace 4.0s",
        "app exited code=0",
    ] {
        assert!(ended.contains(needle), "{needle:?} not in {ended:?}");
    }
    assert_eq!(events[1]["type"], "Normal");

    // Today's behaviour, for contrast: the kubelet's SIGKILL lands in the
    // 10 s delay and the app never hears of the drain.
    let mut blind = start_pod(
        "kube-deadline-blind",
        Some(&cluster),
        &[
            "--kubernetes",
            "off",
            "--grace-period",
            "25s",
            "--propagation-delay",
            "10s",
            "--kill-margin",
            "1s",
        ],
    );
    assert_eq!(
        blind.kubelet_stop(Duration::from_secs(4)),
        None,
        "{}",
        blind.drainit.report()
    );
    assert!(blind.terms().is_empty(), "{}", blind.drainit.report());
}

/// A drain with no deletion behind it keeps --grace-period and says so;
/// the token is read again for each request (a projected token rotated
/// after the start is the one used at the drain).
#[test]
fn no_deletion_keeps_the_grace_period_and_a_rotated_token_is_used() {
    let cluster = Cluster::start("kube-rotate", &["--grace", "30"]);
    let mut pod = start_pod(
        "kube-rotate-pod",
        Some(&cluster),
        &["--propagation-delay", "1s"],
    );
    assert!(
        pod.drainit
            .wait_stderr("Kubernetes API in use", Duration::from_secs(10)),
        "{}",
        pod.drainit.report()
    );
    // The kubelet rewrites the projected token; the old one stops working.
    std::fs::write(cluster.secrets.join("token"), "token-2\n").expect("rotate");
    std::fs::write(
        cluster.dir.join("tokens"),
        format!("token-2\n{ADMIN_TOKEN}\n"),
    )
    .expect("rotate");
    assert_eq!(
        pod.kubelet_stop(Duration::from_secs(30)),
        Some(0),
        "{}",
        pod.drainit.report()
    );
    let report = pod.drainit.report();
    assert!(
        report.contains("drain deadline: --grace-period 30.0s: no API deletion behind this drain"),
        "{report}"
    );
    let tokens: Vec<String> = cluster
        .requests()
        .iter()
        .map(|r| r["token"].as_str().unwrap_or("none").to_string())
        .collect();
    assert_eq!(
        tokens.first().map(String::as_str),
        Some("token-1"),
        "{tokens:?}"
    );
    assert!(
        tokens.len() >= 3 && tokens[1..].iter().all(|t| t == "token-2"),
        "{tokens:?}"
    );
    assert_eq!(cluster.events().len(), 2, "{report}");
    assert!(warnings(&report).is_empty(), "{report}");
}

/// RBAC refusing the Pod read: one warning that says so, then exactly
/// today's behaviour (no more requests, the configured timeline).
#[test]
fn rbac_refusal_warns_once_and_changes_nothing() {
    let cluster = Cluster::start("kube-forbidden", &["--forbid"]);
    let mut pod = start_pod(
        "kube-forbidden-pod",
        Some(&cluster),
        &["--propagation-delay", "1s", "--grace-period", "20s"],
    );
    assert!(
        pod.drainit.wait_stderr(
            "goes on without the Kubernetes API",
            Duration::from_secs(10)
        ),
        "{}",
        pod.drainit.report()
    );
    assert_eq!(
        pod.kubelet_stop(Duration::from_secs(20)),
        Some(0),
        "{}",
        pod.drainit.report()
    );
    let report = pod.drainit.report();
    let warned = warnings(&report);
    assert_eq!(warned.len(), 1, "{report}");
    assert!(
        warned[0].contains("answered 403 (Forbidden: pods"),
        "{report}"
    );
    assert!(warned[0].contains("is forbidden: User"), "{report}");
    assert!(
        warned[0].contains("examples/kubernetes/rbac.yaml"),
        "{report}"
    );
    assert_eq!(cluster.requests().len(), 1, "no request after the refusal");
    assert_eq!(pod.terms().len(), 1);
}

/// An API that accepts and never answers delays the app's start by a
/// bounded time, warns once, and the drain is today's.
#[test]
fn a_hung_api_is_given_up_on_and_changes_nothing() {
    let cluster = Cluster::start("kube-hang", &["--hang"]);
    let started = Instant::now();
    let mut pod = start_pod(
        "kube-hang-pod",
        Some(&cluster),
        &["--propagation-delay", "1s"],
    );
    let to_app = started.elapsed();
    let report = pod.drainit.report();
    assert!(report.contains("did not answer within 1.0s"), "{report}");
    // The bound is one second; the rest is python's start on a busy machine.
    assert!(to_app < Duration::from_secs(15), "{to_app:?}");
    assert_eq!(
        pod.kubelet_stop(Duration::from_secs(30)),
        Some(0),
        "{}",
        pod.drainit.report()
    );
    assert_eq!(
        warnings(&pod.drainit.report()).len(),
        1,
        "{}",
        pod.drainit.report()
    );
}

/// What is missing is named: no token, a CA that did not sign the API's
/// certificate (TLS trusts the service account's CA only), and with
/// `--kubernetes off` nothing is asked at all.
#[test]
fn a_missing_token_or_a_foreign_ca_is_named_and_off_asks_nothing() {
    let cluster = Cluster::start("kube-missing", &[]);
    let drain_once = |name: &str, flags: &[&str]| {
        let mut pod = start_pod(name, Some(&cluster), flags);
        assert_eq!(
            pod.kubelet_stop(Duration::from_secs(30)),
            Some(0),
            "{}",
            pod.drainit.report()
        );
        pod.drainit.report()
    };

    let off = drain_once(
        "kube-off",
        &["--propagation-delay", "0s", "--kubernetes", "off"],
    );
    assert!(warnings(&off).is_empty(), "{off}");
    assert!(
        cluster.requests().is_empty(),
        "--kubernetes off asked the API"
    );

    make_ca(&cluster.dir, "other-ca");
    std::fs::copy(
        cluster.dir.join("other-ca.crt"),
        cluster.secrets.join("ca.crt"),
    )
    .expect("swap CA");
    let foreign = drain_once("kube-foreign-ca", &["--propagation-delay", "0s"]);
    let warned = warnings(&foreign);
    assert_eq!(warned.len(), 1, "{foreign}");
    assert!(warned[0].contains("TLS with the API failed"), "{foreign}");
    assert!(
        cluster.requests().is_empty(),
        "a request went through an untrusted TLS session"
    );

    std::fs::remove_file(cluster.secrets.join("token")).expect("remove token");
    let tokenless = drain_once("kube-no-token", &["--propagation-delay", "0s"]);
    let warned = warnings(&tokenless);
    assert_eq!(warned.len(), 1, "{tokenless}");
    assert!(
        warned[0].contains("no service account token at"),
        "{tokenless}"
    );
}

/// An app that listens (so `auto` has ports to watch) on the socket the
/// test bound and handed in ([`AppSocket`], fd 3), and exits 0 on SIGTERM.
const LISTENING_APP: &str = r#"
import signal, socket, sys, time
out = sys.argv[1]
listener = socket.socket(fileno=3)
listener.listen(16)
def on_term(signum, frame):
    with open(out, "a") as f:
        f.write("%.6f\n" % time.time())
    sys.exit(0)
signal.signal(signal.SIGTERM, on_term)
open(out + ".started", "w").close()
while True:
    signal.pause()
"#;

/// A pod under `--propagation-delay auto` with the cluster's API: the
/// app's port bound now and handed in (`--traffic-ports` names it before
/// the app starts; drainit holds a copy of the listener too, and nothing
/// here watches it close). Returns once the app started and drainit took
/// the API into use; the second value is the app's record of SIGTERMs.
fn start_auto_pod(name: &str, cluster: &Cluster) -> (Proc, PathBuf) {
    let dir = scratch(name);
    std::fs::write(dir.join("app.py"), LISTENING_APP).expect("write app");
    let socket = AppSocket::bind();
    let port = socket.port.to_string();
    let record = dir.join("terms");
    let record_arg = record.to_string_lossy().into_owned();
    let args = [
        "--admin-listen",
        "off",
        "--propagation-delay",
        "auto",
        "--quiet-window",
        "500ms",
        "--traffic-ports",
        &port,
        "--",
        "python3",
        "app.py",
        &record_arg,
    ];
    let env = cluster.env();
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let drainit = Proc::start_with_socket(&dir, common::drainit(), &args, &env, socket);
    assert!(
        wait_for(Duration::from_secs(20), || record
            .with_extension("started")
            .exists())
            && drainit.wait_stderr("Kubernetes API in use", Duration::from_secs(10)),
        "{}",
        drainit.report()
    );
    (drainit, record)
}

/// `auto` with the API in use: the app's ports go quiet at once, but the
/// endpoint's removal lands 3 s after the deletion (a slow control
/// plane): the stop signal waits for it. The first watch is answered
/// with 410 Gone, so the removal is only seen after a relist; the
/// removal is reported beside the traffic and in the drain's Event.
#[test]
fn a_late_endpoint_removal_holds_auto_and_is_reported() {
    let cluster = Cluster::start(
        "kube-endpoint",
        &["--endpoint-lag", "3", "--expire-first-watch"],
    );
    let (mut drainit, record) = start_auto_pod("kube-endpoint-pod", &cluster);
    cluster.delete_pod(30);
    let deleted_at = unix_now();
    drainit.signal(libc::SIGTERM);
    let status = drainit.wait(Duration::from_secs(30));
    let report = drainit.report();
    assert_eq!(status.code(), Some(0), "{report}");
    let terms: Vec<f64> = std::fs::read_to_string(&record)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect();
    assert_eq!(terms.len(), 1, "{report}");
    assert!(
        terms[0] >= deleted_at + 2.9,
        "stopped before the removal: {terms:?} vs {deleted_at}\n{report}"
    );
    assert!(terms[0] < deleted_at + 15.0, "{report}");
    for needle in [
        "the endpoint's removal is not seen yet: the delay goes on",
        "endpoint removed: this pod no longer serves in its EndpointSlices",
        "; endpoint removed at ",
        // What ended the delay: the removal, not the quiet before it.
        "; delay ended: endpoint's removal after ",
        ", held since quiet for ",
    ] {
        assert!(report.contains(needle), "{needle:?}\n{report}");
    }
    assert_eq!(
        report
            .matches("the endpoint's removal is not seen yet")
            .count(),
        1,
        "said once\n{report}"
    );
    let requests = cluster.requests();
    let lists = requests
        .iter()
        .filter_map(|r| r["path"].as_str())
        .filter(|p| p.ends_with("/namespaces/shop/endpointslices"))
        .count();
    assert_eq!(lists, 2, "a 410 must lead to one relist: {requests:?}");
    assert!(
        requests
            .iter()
            .filter_map(|r| r["path"].as_str())
            .any(|p| p.contains("watch=1")
                && p.contains("allowWatchBookmarks=true")
                && p.contains("resourceVersion=")),
        "{requests:?}"
    );
    let ended = cluster
        .events()
        .last()
        .and_then(|e| e["message"].as_str().map(str::to_string));
    assert!(
        ended
            .as_deref()
            .is_some_and(|m| m.contains("endpoint removed at")
                && m.contains("delay ended: endpoint's removal after ")),
        "{ended:?}"
    );
}

/// RBAC without the EndpointSlice rules: `auto` does not wait for a
/// removal it cannot see (no longer than without the API).
#[test]
fn without_endpointslice_rights_auto_is_not_held() {
    let cluster = Cluster::start("kube-endpoint-forbidden", &["--forbid-endpointslices"]);
    let (mut drainit, _terms) = start_auto_pod("kube-endpoint-forbidden-pod", &cluster);
    drainit.signal(libc::SIGTERM);
    assert_eq!(drainit.wait(Duration::from_secs(30)).code(), Some(0));
    let report = drainit.report();
    assert!(report.contains("EndpointSlice watch: GET /apis/discovery.k8s.io/v1/namespaces/shop/endpointslices answered 403"), "{report}");
    assert!(report.contains("delay ended: quiet for"), "{report}");
    assert_eq!(
        warnings(&report).len(),
        1,
        "one warning names the missing rule\n{report}"
    );
    assert!(!report.contains("endpoint removed"), "{report}");
}

/// A server that finishes its requests in flight on SIGTERM: each GET
/// takes a second; on SIGTERM it stops accepting, lets the requests in
/// flight finish, and exits 0. It listens on a port the kernel picks and
/// writes it to `OUT.port` before `OUT.started`.
const SLOW_SERVER: &str = r#"
import http.server, signal, socketserver, sys, threading, time
out = sys.argv[1]
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        time.sleep(1.0)
        self.send_response(200); self.send_header("Content-Length", "5"); self.end_headers()
        self.wfile.write(b"done\n")
    def log_message(self, *a): pass
class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = False
    block_on_close = True
server = Server(("127.0.0.1", 0), H)
with open(out + ".port", "w") as f:
    f.write("%d\n" % server.server_address[1])
threading.Thread(target=server.serve_forever, daemon=True).start()
stop = threading.Event()
def on_term(signum, frame):
    with open(out, "a") as f:
        f.write("%.6f\n" % time.time())
    stop.set()
signal.signal(signal.SIGTERM, on_term)
open(out + ".started", "w").close()
while not stop.is_set():
    signal.pause()
server.shutdown()
server.server_close()
sys.exit(0)
"#;

/// Sends one slow request after another until `until`, or until the
/// server got its stop signal (`stopped` exists: no new requests after
/// that, as a load balancer that followed the drain sends none); counts
/// those answered in full and those cut in the middle.
fn slow_requests(addr: SocketAddr, until: Instant, stopped: &Path) -> (u32, u32) {
    use std::io::{Read, Write};
    let (mut answered, mut cut) = (0, 0);
    while Instant::now() < until && !stopped.exists() {
        let Ok(mut stream) =
            std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200))
        else {
            std::thread::sleep(Duration::from_millis(20));
            continue;
        };
        let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
        let mut answer = Vec::new();
        let sent = stream.write_all(b"GET /slow HTTP/1.0\r\n\r\n").is_ok();
        let read = stream.read_to_end(&mut answer).is_ok();
        if sent && read && answer.starts_with(b"HTTP/1.0 200") && answer.ends_with(b"done\n") {
            answered += 1;
        } else {
            // Accepted, then closed or reset before the whole answer.
            cut += 1;
        }
    }
    (answered, cut)
}

/// The kubelet's sequence with `kubectl delete --grace-period=4` on a
/// pod whose delay is 10 s, with clients in flight all along: with the
/// API, the server is told to stop in time and finishes every request in
/// flight before the kubelet's SIGKILL; without it, the SIGKILL lands in
/// the delay and cuts the request in flight.
#[test]
fn requests_in_flight_finish_before_the_kubelets_kill_only_with_the_api() {
    let cluster = Cluster::start("kube-inflight", &["--grace", "25"]);
    let run = |name: &str, flags: &[&str]| -> (Option<i32>, u32, u32, String) {
        let dir = scratch(name);
        std::fs::write(dir.join("server.py"), SLOW_SERVER).expect("write app");
        let record = dir.join("terms");
        let record_arg = record.to_string_lossy().into_owned();
        let mut args = vec![
            "--admin-listen",
            "off",
            "--propagation-delay",
            "10s",
            "--kill-margin",
            "1s",
        ];
        args.extend_from_slice(flags);
        args.extend_from_slice(&["--", "python3", "server.py", &record_arg]);
        let env = cluster.env();
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let mut drainit = Proc::drainit(&dir, &args, &env);
        assert!(
            wait_for(Duration::from_secs(20), || record
                .with_extension("started")
                .exists()),
            "{}",
            drainit.report()
        );
        let port: u16 = std::fs::read_to_string(record.with_extension("port"))
            .ok()
            .and_then(|text| text.trim().parse().ok())
            .unwrap_or_else(|| panic!("the server wrote no port\n{}", drainit.report()));
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let sigterm = Instant::now();
        let stopped = record.clone();
        let clients = std::thread::spawn(move || {
            slow_requests(addr, sigterm + Duration::from_secs(5), &stopped)
        });
        drainit.signal(libc::SIGTERM);
        let grace = Duration::from_secs(4);
        let exited = wait_for(grace, || !drainit.running());
        let code = if exited {
            drainit.wait(Duration::from_secs(1)).code()
        } else {
            // The kubelet kills the whole container: the app too.
            let app = common::descendants(drainit.pid());
            drainit.signal(libc::SIGKILL);
            for pid in app {
                common::kill(pid, libc::SIGKILL);
            }
            drainit.wait(Duration::from_secs(10));
            None
        };
        let (answered, cut) = clients.join().expect("clients");
        (code, answered, cut, drainit.report())
    };

    cluster.delete_pod(4);
    let (code, answered, cut, report) = run("kube-inflight-api", &[]);
    assert_eq!(code, Some(0), "SIGKILLed by the kubelet\n{report}");
    assert!(answered >= 1, "{answered} answered\n{report}");
    assert_eq!(cut, 0, "requests cut with the API in use\n{report}");

    let (code, _, cut, report) = run(
        "kube-inflight-blind",
        &["--kubernetes", "off", "--grace-period", "25s"],
    );
    assert_eq!(code, None, "{report}");
    assert!(cut >= 1, "the kubelet's SIGKILL cut nothing?\n{report}");
}

/// One `RESULT key=value ...` line of the rollout rig, by key.
type RigRow = std::collections::HashMap<String, String>;

/// The rig's `RESULT` lines, by setup id.
fn rig_results(stdout: &str) -> std::collections::HashMap<String, RigRow> {
    stdout
        .lines()
        .filter_map(|line| line.strip_prefix("RESULT "))
        .map(|rest| {
            rest.split_whitespace()
                .filter_map(|pair| pair.split_once('='))
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<RigRow>()
        })
        .filter_map(|row| Some((row.get("setup")?.clone(), row)))
        .collect()
}

/// A number of a `RESULT` line; panics naming the key when it is missing.
fn figure(row: &RigRow, key: &str) -> f64 {
    row.get(key)
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("RESULT line {row:?} has no number {key}"))
}

/// The issue's proof through the real binary in the rollout rig
/// (`tests/rollout/rig.py --quick-kube`: real HAProxy with health checks,
/// the kubelet's SIGTERM and SIGKILL, the control plane behind the API
/// emulation; 2 old pods drained per setup):
/// - 14k/14o: `kubectl delete --grace-period=5` on pods whose delay is
///   6 s, with long polls in flight (held 8 s by the app, answered at once
///   at its stop signal). With the API the delay is cut, the app gets its
///   stop signal seconds before the kubelet's SIGKILL, answers the
///   requests in flight and exits, and drainit with it; nothing fails.
///   With `--kubernetes off` (today) every pod is SIGKILLed in its delay,
///   the app never gets its stop signal, and the SIGKILL cuts the
///   requests in flight.
/// - 15a: `auto` with the EndpointSlice removal landing 4-5 s after the
///   deletion, long after the traffic stopped: the stop signal waits for
///   it.
/// - The DrainEnded Event of each drain carries the figures.
#[test]
fn the_rollout_rig_drains_by_what_the_api_knows() {
    use std::io::Read;
    use std::process::Stdio;

    /// The rig bounds itself at 110 s (`--quick-kube`); this is the backstop.
    const RIG_DEADLINE: Duration = Duration::from_secs(120);
    /// rig.py Config: the deletion's grace and the pods' fixed delay.
    const DELETION_GRACE_S: f64 = 5.0;
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = scratch("kube-rollout");
    let json = dir.join("results.json");
    let stderr = dir.join("rig.stderr");
    let started = Instant::now();
    let mut rig = Command::new("python3")
        .arg(root.join("tests/rollout/rig.py"))
        .args([
            "--quick-kube",
            "--drainit",
            env!("CARGO_BIN_EXE_drainit"),
            "--json",
        ])
        .arg(&json)
        .arg("--workdir")
        .arg(dir.join("work"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&stderr).expect("rig stderr file"))
        .spawn()
        .expect("python3 must be installed (scripts/test.sh installs it)");
    let mut pipe = rig.stdout.take().expect("rig stdout");
    let reader = std::thread::spawn(move || {
        let mut out = String::new();
        let _ = pipe.read_to_string(&mut out);
        out
    });
    let rig_stderr = || std::fs::read_to_string(&stderr).unwrap_or_default();
    let status = loop {
        match rig.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if started.elapsed() < RIG_DEADLINE => {
                std::thread::sleep(Duration::from_millis(100));
            }
            _ => {
                // Its children die with it (PR_SET_PDEATHSIG, unshare --kill-child).
                let _ = rig.kill();
                let _ = rig.wait();
                panic!("the rig ran past {RIG_DEADLINE:?}:\n{}", rig_stderr());
            }
        }
    };
    let stdout = reader.join().unwrap_or_default();
    assert!(
        status.success(),
        "the rig failed ({status}):\n{}\n{stdout}",
        rig_stderr()
    );
    eprintln!("rig finished in {:.1?}:\n{stdout}", started.elapsed());
    let results = rig_results(&stdout);
    let row = |id: &str| {
        results
            .get(id)
            .unwrap_or_else(|| panic!("no RESULT for setup {id}:\n{stdout}"))
    };

    // With the API: stopped in time, exited by itself, nothing lost.
    let api = row("14k");
    let pods = figure(api, "pods");
    assert!(pods >= 2.0, "{api:?}");
    assert_eq!(figure(api, "api_in_use"), pods, "{api:?}");
    assert_eq!(figure(api, "failed"), 0.0, "requests failed: {api:?}");
    assert!(figure(api, "requests") >= 20.0, "{api:?}");
    assert_eq!(figure(api, "forced_kills"), 0.0, "SIGKILLed: {api:?}");
    assert_eq!(figure(api, "no_stop_signal"), 0.0, "{api:?}");
    // The app got its stop signal at least a second before the SIGKILL
    // would have come, and every pod was gone before it.
    assert!(figure(api, "stop_before_kill_min") >= 1.0, "{api:?}");
    assert!(figure(api, "term_max") < DELETION_GRACE_S, "{api:?}");
    // Requests were in flight at the stop signal, and were answered in full.
    assert!(figure(api, "inflight_at_stop") >= 1.0, "{api:?}");
    assert!(figure(api, "drainit_api_requests") >= pods, "{api:?}");

    // The same pods and deletion with --kubernetes off: today's drainit.
    let off = row("14o");
    assert_eq!(figure(off, "pods"), pods, "{off:?}");
    assert_eq!(
        figure(off, "forced_kills"),
        pods,
        "every pod is SIGKILLed in its delay: {off:?}"
    );
    assert_eq!(
        figure(off, "no_stop_signal"),
        pods,
        "the app never got its stop signal: {off:?}"
    );
    assert!(figure(off, "term_mean") >= DELETION_GRACE_S, "{off:?}");
    assert!(
        figure(off, "cut_at_kill") >= 1.0,
        "the kubelet's SIGKILL cut no request in flight: {off:?}"
    );
    assert_eq!(figure(off, "api_in_use"), 0.0, "{off:?}");
    assert_eq!(
        figure(off, "drainit_api_requests"),
        0.0,
        "--kubernetes off asked the API: {off:?}"
    );

    // auto: the stop signal never before the EndpointSlice's removal.
    let auto = row("15a");
    assert_eq!(figure(auto, "auto"), 1.0, "{auto:?}");
    assert_eq!(figure(auto, "api_in_use"), figure(auto, "pods"), "{auto:?}");
    assert_eq!(figure(auto, "failed"), 0.0, "{auto:?}");
    assert_eq!(figure(auto, "forced_kills"), 0.0, "{auto:?}");
    assert_eq!(
        figure(auto, "removal_seen"),
        figure(auto, "pods"),
        "{auto:?}"
    );
    assert!(
        figure(auto, "stop_after_endpoint_removed_min") >= 0.0,
        "auto ended before the endpoint's removal: {auto:?}"
    );
    // ... and it was the removal that held it: the traffic had stopped.
    assert_eq!(
        figure(auto, "held_for_endpoint"),
        figure(auto, "pods"),
        "{auto:?}"
    );

    // Each drain's story on its pod, with the figures.
    let doc: Value = serde_json::from_str(&std::fs::read_to_string(&json).expect("rig JSON"))
        .expect("the rig's JSON");
    let setups = doc["setups"].as_array().expect("setups");
    for setup in setups.iter().filter(|s| s["kube"] == "api") {
        for pod in setup["pods"].as_array().expect("pods") {
            let kube = &pod["kube"];
            assert_eq!(
                kube["event_reasons"],
                serde_json::json!(["DrainStarted", "DrainEnded"]),
                "{pod}"
            );
            let ended = kube["drain_ended_event"].as_str().unwrap_or_default();
            let mut needles = vec![
                "stop signal after ",
                "last new connection ",
                "last inbound byte ",
                "; endpoint removed at ",
                "; deadline: ",
                "app exited code=0",
            ];
            if setup["id"] == "14k" {
                needles.push("deadline: the deletion's grace 5.0s");
                needles.push("propagation delay cut from 6.0s to 2.0s");
                needles.push("delay ended: cut to 2.0s by the deletion's grace 5.0s");
            } else {
                // 15a: the traffic was quiet first; the removal ended it.
                needles.push("delay ended: endpoint's removal after ");
                needles.push(", held since quiet for ");
            }
            for needle in needles {
                assert!(
                    ended.contains(needle),
                    "{needle:?} not in the DrainEnded Event {ended:?}"
                );
            }
        }
    }
    assert!(started.elapsed() < RIG_DEADLINE, "{:?}", started.elapsed());
    let _ = std::fs::remove_dir_all(&dir);
}
