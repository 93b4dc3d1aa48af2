//! The manifests under `examples/kubernetes/` must not rot.
//!
//! Every YAML document there is deserialised into the real Kubernetes API
//! types (`k8s-openapi`) and serialised back: a field that does not survive
//! the round trip is unknown to the API (misspelt or misplaced) and fails
//! the test, as does a kind this checker does not know. Then each pod
//! template is checked against drainit's rules:
//!
//! - every container that runs drainit: its options (arguments win over
//!   `DRAINIT_*` variables, drainit's defaults when absent) parse, and its
//!   timing budget fits: propagation delay + kill margin leaves the app at
//!   least `MIN_APP_DRAIN` before `terminationGracePeriodSeconds`, and
//!   `--grace-period` is set and equals that grace period;
//! - it has a readiness probe on `/ready` and a liveness probe on `/live`,
//!   both on its admin port; no liveness probe anywhere points at `/ready`,
//!   and no probe at all at `/prestop`;
//! - every preStop `httpGet` goes to `/prestop` on the admin port of a
//!   drainit in the pod (with its token, if it has one), and in a pod with a
//!   drainit sidecar every app container has such a hook;
//! - Services, PodDisruptionBudgets and Ingresses select what is in the
//!   file; an ALB target group's deregistration delay is no longer than the
//!   propagation delay of the pods behind it.
//!
//! `checker_flags_broken_manifests` feeds the checker broken manifests, so a
//! checker that passes everything fails the suite.

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{
    ConfigMap, Container, HTTPGetAction, Namespace, PodSpec, Probe, Service,
};
use k8s_openapi::api::networking::v1::Ingress;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use k8s_openapi::serde::{de::DeserializeOwned, Serialize};
use k8s_openapi::Resource;
use serde_json::Value;

/// The examples the issue asks for; each must exist and be checked.
const EXPECTED_EXAMPLES: &[&str] = &[
    "entrypoint.yaml",
    "entrypoint-prestop.yaml",
    "sidecar-classic.yaml",
    "sidecar-native.yaml",
    "aws-alb.yaml",
    "nginx.yaml",
];

/// What the app must have left, at least, between the end of the propagation
/// delay and drainit's drain deadline.
const MIN_APP_DRAIN: Duration = Duration::from_secs(5);

/// Kubernetes' default `terminationGracePeriodSeconds`.
const DEFAULT_POD_GRACE_SECS: i64 = 30;

/// What the checker puts in for `$(VAR)` when VAR comes from the downward API.
const HOST_IP_PLACEHOLDER: &str = "192.0.2.10";
const POD_IP_PLACEHOLDER: &str = "192.0.2.20";

// ---------------------------------------------------------------------------
// Loading: multi-document YAML -> typed objects
// ---------------------------------------------------------------------------

/// A test helper: a few objects per file, their size doesn't matter.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
enum Object {
    Namespace(Namespace),
    ConfigMap(ConfigMap),
    Service(Service),
    Deployment(Box<Deployment>),
    Pdb(PodDisruptionBudget),
    Ingress(Ingress),
}

/// Deserialise `doc` into `T`, then make sure nothing was dropped on the way:
/// k8s-openapi ignores unknown fields, so a misspelt `livenesProbe` would
/// otherwise pass unnoticed.
fn typed<T: DeserializeOwned + Serialize + Resource>(doc: &Value) -> Result<T, String> {
    let object: T = serde_json::from_value(doc.clone())
        .map_err(|e| format!("not a valid {} {}: {e}", T::API_VERSION, T::KIND))?;
    let back = serde_json::to_value(&object).map_err(|e| e.to_string())?;
    let mut lost = Vec::new();
    lost_fields(doc, &back, "", &mut lost);
    if lost.is_empty() {
        Ok(object)
    } else {
        Err(format!(
            "field(s) unknown to {} {} (misspelt or misplaced?): {}",
            T::API_VERSION,
            T::KIND,
            lost.join(", ")
        ))
    }
}

/// Paths present in `original` whose value `round_tripped` does not have.
fn lost_fields(original: &Value, round_tripped: &Value, path: &str, lost: &mut Vec<String>) {
    match (original, round_tripped) {
        (Value::Object(a), Value::Object(b)) => {
            for (key, value) in a {
                let sub = format!("{path}.{key}");
                match b.get(key) {
                    Some(other) => lost_fields(value, other, &sub, lost),
                    // An explicit null and an absent field are the same thing.
                    None if value.is_null() => {}
                    None => lost.push(sub),
                }
            }
        }
        (Value::Array(a), Value::Array(b)) if a.len() == b.len() => {
            for (i, (x, y)) in a.iter().zip(b).enumerate() {
                lost_fields(x, y, &format!("{path}[{i}]"), lost);
            }
        }
        (a, b) if a == b => {}
        _ => lost.push(format!("{path} (value changed)")),
    }
}

fn parse_manifest(text: &str) -> Result<Vec<Object>, String> {
    let docs: Vec<Value> =
        serde_saphyr::from_multiple(text).map_err(|e| format!("YAML does not parse: {e}"))?;
    if docs.is_empty() {
        return Err("no YAML document".into());
    }
    let mut objects = Vec::new();
    for (i, doc) in docs.iter().enumerate() {
        let api_version = doc.get("apiVersion").and_then(Value::as_str).unwrap_or("");
        let kind = doc.get("kind").and_then(Value::as_str).unwrap_or("");
        let object = match (api_version, kind) {
            (v, k) if (v, k) == (Namespace::API_VERSION, Namespace::KIND) => {
                typed(doc).map(Object::Namespace)
            }
            (v, k) if (v, k) == (ConfigMap::API_VERSION, ConfigMap::KIND) => {
                typed(doc).map(Object::ConfigMap)
            }
            (v, k) if (v, k) == (Service::API_VERSION, Service::KIND) => {
                typed(doc).map(Object::Service)
            }
            (v, k) if (v, k) == (Deployment::API_VERSION, Deployment::KIND) => {
                typed(doc).map(|d| Object::Deployment(Box::new(d)))
            }
            (v, k) if (v, k) == (PodDisruptionBudget::API_VERSION, PodDisruptionBudget::KIND) => {
                typed(doc).map(Object::Pdb)
            }
            (v, k) if (v, k) == (Ingress::API_VERSION, Ingress::KIND) => {
                typed(doc).map(Object::Ingress)
            }
            _ => Err(format!(
                "unknown kind {kind:?} (apiVersion {api_version:?}): this checker knows \
                 Namespace, ConfigMap, Service, Deployment, PodDisruptionBudget and Ingress"
            )),
        };
        objects.push(object.map_err(|e| format!("document {}: {e}", i + 1))?);
    }
    Ok(objects)
}

// ---------------------------------------------------------------------------
// drainit's command line, as the container will run it
// ---------------------------------------------------------------------------

/// Options that take a value (`--name VALUE` or `--name=VALUE`), each also
/// `DRAINIT_<UPPER_SNAKE>`.
const VALUE_OPTIONS: &[&str] = &[
    "propagation-delay",
    "unready-delay",
    "stop-signal",
    "grace-period",
    "kill-margin",
    "leftover-grace",
    "drain-on",
    "ready-check",
    "ready-check-interval",
    "ready-check-timeout",
    "admin-listen",
    "admin-max-connections",
    "prestop-allow-from",
    "prestop-token",
    "signal-target",
    "rewrite",
    "log-format",
    "app-pid-file",
    "app-process",
];
const FLAG_OPTIONS: &[&str] = &["strict", "verbose"];
const SIDECAR_ONLY: &[&str] = &["app-pid-file", "app-process"];

const SIGNALS: &[&str] = &[
    "HUP", "INT", "QUIT", "ILL", "TRAP", "ABRT", "BUS", "FPE", "KILL", "USR1", "SEGV", "USR2",
    "PIPE", "ALRM", "TERM", "STKFLT", "CHLD", "CONT", "STOP", "TSTP", "TTIN", "TTOU", "URG",
    "XCPU", "XFSZ", "VTALRM", "PROF", "WINCH", "IO", "PWR", "SYS",
];

#[derive(Debug, Clone, PartialEq)]
enum Mode {
    Wrapper { app: Vec<String> },
    Sidecar,
}

#[derive(Debug, Clone)]
struct Drainit {
    container: String,
    mode: Mode,
    propagation_delay: Duration,
    unready_delay: Duration,
    /// `None` when neither `--grace-period` nor `DRAINIT_GRACE_PERIOD` is set.
    grace_period: Option<Duration>,
    kill_margin: Duration,
    stop_signal: String,
    drain_on: Vec<String>,
    ready_check: Option<String>,
    /// `None` with `--admin-listen off`.
    admin_port: Option<u16>,
    prestop_token: Option<String>,
    prestop_allow_from: Vec<String>,
    /// argv up to the app command (drainit and its options).
    options: Vec<String>,
    /// The container's `DRAINIT_*` variables, as drainit will see them.
    env: Vec<(String, String)>,
}

/// An environment variable's value as the container will see it.
#[derive(Debug, Clone)]
enum EnvValue {
    Literal(String),
    /// From a Secret, a ConfigMap or a resource field: not known here.
    Opaque(String),
}

impl EnvValue {
    fn text(&self) -> &str {
        match self {
            EnvValue::Literal(s) | EnvValue::Opaque(s) => s,
        }
    }
}

/// Kubernetes' `$(VAR)` expansion in env values, command and args: `$$` is a
/// literal `$`, a reference to a variable defined earlier is replaced, and an
/// unknown one is left as it is (which, in an example, is a bug: reported).
fn expand(s: &str, vars: &HashMap<String, EnvValue>, problems: &mut Vec<String>) -> String {
    let mut out = String::new();
    let mut rest = s;
    while let Some(pos) = rest.find('$') {
        out.push_str(&rest[..pos]);
        let after = &rest[pos + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
        } else if let Some(inner) = after.strip_prefix('(') {
            match inner.find(')') {
                Some(end) => {
                    let name = &inner[..end];
                    match vars.get(name) {
                        Some(value) => out.push_str(value.text()),
                        None => {
                            problems.push(format!(
                                "$({name}) refers to no variable defined before it: \
                                 Kubernetes leaves it unexpanded"
                            ));
                            out.push_str(&format!("$({name})"));
                        }
                    }
                    rest = &inner[end + 1..];
                }
                None => {
                    out.push_str("$(");
                    rest = inner;
                }
            }
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

/// The container's environment, in order, with `$(VAR)` expanded the way
/// the kubelet does it.
fn container_env(c: &Container, problems: &mut Vec<String>) -> HashMap<String, EnvValue> {
    let mut vars = HashMap::new();
    for var in c.env.iter().flatten() {
        let value = if let Some(source) = &var.value_from {
            if let Some(field) = &source.field_ref {
                EnvValue::Literal(match field.field_path.as_str() {
                    "status.hostIP" => HOST_IP_PLACEHOLDER.to_string(),
                    "status.podIP" => POD_IP_PLACEHOLDER.to_string(),
                    other => format!("<{other}>"),
                })
            } else {
                EnvValue::Opaque(format!("<{}>", var.name))
            }
        } else {
            EnvValue::Literal(expand(var.value.as_deref().unwrap_or(""), &vars, problems))
        };
        vars.insert(var.name.clone(), value);
    }
    vars
}

fn env_name(option: &str) -> String {
    format!("DRAINIT_{}", option.to_uppercase().replace('-', "_"))
}

fn image_is_drainit(image: Option<&str>) -> bool {
    let Some(image) = image else { return false };
    let without_digest = image.split('@').next().unwrap_or(image);
    let last = without_digest.rsplit('/').next().unwrap_or(without_digest);
    last.split(':').next() == Some("drainit")
}

/// The argv the container runs if it runs drainit: `command` + `args`, or
/// the drainit image's ENTRYPOINT (`/drainit`) + `args`.
fn drainit_argv(
    c: &Container,
    vars: &HashMap<String, EnvValue>,
    problems: &mut Vec<String>,
) -> Option<Vec<String>> {
    let command = c.command.clone().unwrap_or_default();
    let args = c.args.clone().unwrap_or_default();
    let argv: Vec<String> = if let Some(first) = command.first() {
        if first.rsplit('/').next() != Some("drainit") {
            return None;
        }
        command.iter().chain(args.iter()).cloned().collect()
    } else if image_is_drainit(c.image.as_deref()) {
        std::iter::once("/drainit".to_string())
            .chain(args)
            .collect()
    } else {
        return None;
    };
    Some(argv.iter().map(|a| expand(a, vars, problems)).collect())
}

fn parse_duration(what: &str, value: &str) -> Result<Duration, String> {
    humantime::parse_duration(value).map_err(|e| format!("--{what} {value:?}: {e}"))
}

fn parse_signal(what: &str, value: &str) -> Result<String, String> {
    let upper = value.trim().to_uppercase();
    let name = upper.strip_prefix("SIG").unwrap_or(&upper);
    let numbered = name.parse::<u8>().is_ok_and(|n| (1..=64).contains(&n));
    if SIGNALS.contains(&name) || numbered {
        Ok(name.to_string())
    } else {
        Err(format!("--{what} {value:?}: not a signal"))
    }
}

fn parse_cidr(value: &str) -> Result<(), String> {
    // An address alone means that one address (/32 or /128).
    let (ip, prefix) = value.split_once('/').unwrap_or((value, ""));
    let ip: IpAddr = ip
        .parse()
        .map_err(|_| format!("--prestop-allow-from {value:?}: {ip:?} is not an IP address"))?;
    let max = if ip.is_ipv4() { 32 } else { 128 };
    match prefix {
        "" if !value.contains('/') => Ok(()),
        p => match p.parse::<u8>() {
            Ok(p) if p <= max => Ok(()),
            _ => Err(format!("--prestop-allow-from {value:?}: bad prefix length")),
        },
    }
}

/// `tcp://HOST:PORT` or `http://HOST:PORT/PATH`; returns the port.
fn parse_ready_check(value: &str) -> Result<u16, String> {
    let bad =
        || format!("--ready-check {value:?}: expected http://HOST:PORT/PATH or tcp://HOST:PORT");
    let (authority, path) = if let Some(rest) = value.strip_prefix("http://") {
        match rest.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (rest, None),
        }
    } else if let Some(rest) = value.strip_prefix("tcp://") {
        (rest, None)
    } else {
        return Err(bad());
    };
    let (host, port) = authority.rsplit_once(':').ok_or_else(bad)?;
    if host.is_empty() || path.is_some_and(|p| p.contains(char::is_whitespace)) {
        return Err(bad());
    }
    port.parse::<u16>().ok().filter(|p| *p != 0).ok_or_else(bad)
}

fn parse_admin_listen(value: &str) -> Result<Option<u16>, String> {
    if value == "off" {
        return Ok(None);
    }
    value
        .parse::<SocketAddr>()
        .map(|a| Some(a.port()))
        .map_err(|_| format!("--admin-listen {value:?}: expected ADDRESS:PORT or off"))
}

/// Parse drainit's argv (argv[0] included) and its `DRAINIT_*` environment
/// the way drainit does: options stop at the first non-option or `--`;
/// `sidecar` is the subcommand; arguments win over variables.
fn parse_drainit(
    container: &str,
    argv: &[String],
    env: &HashMap<String, EnvValue>,
) -> Result<Drainit, Vec<String>> {
    let mut errors = Vec::new();
    let mut given: BTreeMap<String, String> = BTreeMap::new();
    let mut mode: Option<Mode> = None;
    let mut i = 1;
    while i < argv.len() {
        let arg = &argv[i];
        if arg == "--" {
            if mode == Some(Mode::Sidecar) {
                errors.push("`drainit sidecar` takes no command".into());
            } else {
                mode = Some(Mode::Wrapper {
                    app: argv[i + 1..].to_vec(),
                });
            }
            break;
        }
        if let Some(long) = arg.strip_prefix("--") {
            let (name, inline) = match long.split_once('=') {
                Some((n, v)) => (n, Some(v.to_string())),
                None => (long, None),
            };
            if VALUE_OPTIONS.contains(&name) {
                let value = match inline {
                    Some(v) => Some(v),
                    None => {
                        i += 1;
                        argv.get(i).cloned()
                    }
                };
                match value {
                    Some(v) => {
                        given.insert(name.to_string(), v);
                    }
                    None => errors.push(format!("--{name} needs a value")),
                }
            } else if FLAG_OPTIONS.contains(&name) {
                if inline.is_some() {
                    errors.push(format!("--{name} takes no value"));
                }
                given.insert(name.to_string(), "true".into());
            } else {
                errors.push(format!("unknown drainit option --{name}"));
            }
            i += 1;
            continue;
        }
        if arg.len() > 1 && arg.starts_with('-') {
            if arg[1..].chars().all(|ch| ch == 'v') {
                given.insert("verbose".into(), "true".into());
            } else {
                errors.push(format!("unknown drainit option {arg}"));
            }
            i += 1;
            continue;
        }
        // The first non-option.
        if arg == "sidecar" && mode.is_none() {
            mode = Some(Mode::Sidecar);
            i += 1;
            continue;
        }
        if mode == Some(Mode::Sidecar) {
            errors.push(format!("`drainit sidecar` takes no command (got {arg:?})"));
        } else {
            mode = Some(Mode::Wrapper {
                app: argv[i..].to_vec(),
            });
        }
        break;
    }
    let mode = mode.unwrap_or(Mode::Wrapper { app: Vec::new() });
    let options = match &mode {
        Mode::Wrapper { app } => argv[..argv.len() - app.len()].to_vec(),
        Mode::Sidecar => argv.to_vec(),
    };
    let mut drainit_env: Vec<(String, String)> = env
        .iter()
        .filter(|(k, _)| k.starts_with("DRAINIT_"))
        .map(|(k, v)| (k.clone(), v.text().to_string()))
        .collect();
    drainit_env.sort();

    for name in env.keys().filter(|n| n.starts_with("DRAINIT_")) {
        let known = VALUE_OPTIONS
            .iter()
            .chain(FLAG_OPTIONS)
            .any(|o| env_name(o) == *name);
        if !known {
            errors.push(format!("{name} is no drainit setting"));
        }
    }

    // The value in force: argument, else variable, else drainit's default.
    let setting = |name: &str, default: Option<&str>| -> Result<Option<String>, String> {
        if let Some(v) = given.get(name) {
            return Ok(Some(v.clone()));
        }
        match env.get(&env_name(name)) {
            Some(EnvValue::Literal(v)) => Ok(Some(v.clone())),
            Some(EnvValue::Opaque(v)) if name == "prestop-token" => Ok(Some(v.clone())),
            Some(EnvValue::Opaque(_)) => Err(format!(
                "{} comes from a Secret or ConfigMap: its value can't be checked",
                env_name(name)
            )),
            None => Ok(default.map(str::to_string)),
        }
    };
    let mut get = |name: &str, default: Option<&str>| match setting(name, default) {
        Ok(v) => v,
        Err(e) => {
            errors.push(e);
            None
        }
    };
    let propagation = get("propagation-delay", Some("5s")).unwrap_or_default();
    let unready = get("unready-delay", Some("0s")).unwrap_or_default();
    let grace = get("grace-period", None);
    let kill_margin = get("kill-margin", Some("2s")).unwrap_or_default();
    let leftover = get("leftover-grace", Some("2s")).unwrap_or_default();
    let stop_signal = get("stop-signal", Some("TERM")).unwrap_or_default();
    let drain_on = get("drain-on", Some("TERM")).unwrap_or_default();
    let ready_check = get("ready-check", None);
    let interval = get("ready-check-interval", Some("1s")).unwrap_or_default();
    let admin_listen = get("admin-listen", Some("0.0.0.0:9095")).unwrap_or_default();
    let allow_from = get("prestop-allow-from", None);
    let token = get("prestop-token", None);
    let signal_target = get("signal-target", Some("child")).unwrap_or_default();
    let rewrite = get("rewrite", None);
    let log_format = get("log-format", Some("text")).unwrap_or_default();
    let sidecar_only: Vec<Option<String>> = SIDECAR_ONLY.iter().map(|n| get(n, None)).collect();

    let mut ok = |r: Result<Duration, String>| match r {
        Ok(d) => d,
        Err(e) => {
            errors.push(e);
            Duration::ZERO
        }
    };
    let propagation_delay = ok(parse_duration("propagation-delay", &propagation));
    let unready_delay = ok(parse_duration("unready-delay", &unready));
    let grace_period = grace.map(|g| ok(parse_duration("grace-period", &g)));
    let kill_margin = ok(parse_duration("kill-margin", &kill_margin));
    ok(parse_duration("leftover-grace", &leftover));
    ok(parse_duration("ready-check-interval", &interval));

    let stop_signal = parse_signal("stop-signal", &stop_signal).unwrap_or_else(|e| {
        errors.push(e);
        String::new()
    });
    let drain_on: Vec<String> = drain_on
        .split(',')
        .filter_map(|s| parse_signal("drain-on", s).map_err(|e| errors.push(e)).ok())
        .collect();
    for pair in rewrite.iter().flat_map(|r| r.split(',')) {
        match pair.split_once(':') {
            Some((from, to)) => {
                for s in [from, to] {
                    if let Err(e) = parse_signal("rewrite", s) {
                        errors.push(e);
                    }
                }
            }
            None => errors.push(format!("--rewrite {pair:?}: expected FROM:TO")),
        }
    }
    if !["child", "group"].contains(&signal_target.as_str()) {
        errors.push(format!(
            "--signal-target {signal_target:?}: expected child or group"
        ));
    }
    if !["text", "json"].contains(&log_format.as_str()) {
        errors.push(format!(
            "--log-format {log_format:?}: expected text or json"
        ));
    }
    let admin_port = parse_admin_listen(&admin_listen).unwrap_or_else(|e| {
        errors.push(e);
        None
    });
    let prestop_allow_from: Vec<String> = allow_from
        .iter()
        .flat_map(|a| a.split(','))
        .map(|s| s.trim().to_string())
        .collect();
    for cidr in &prestop_allow_from {
        if let Err(e) = parse_cidr(cidr) {
            errors.push(e);
        }
    }
    if let Some(check) = &ready_check {
        match parse_ready_check(check) {
            Ok(port) if Some(port) == admin_port => errors.push(format!(
                "--ready-check {check:?} points at drainit's own admin port"
            )),
            Ok(_) => {}
            Err(e) => errors.push(e),
        }
    }
    match &mode {
        Mode::Wrapper { app } => {
            if app.is_empty() {
                errors.push("drainit has no app command to run".into());
            }
            for (name, value) in SIDECAR_ONLY.iter().zip(&sidecar_only) {
                if value.is_some() {
                    errors.push(format!("--{name} is a `drainit sidecar` option"));
                }
            }
        }
        Mode::Sidecar => {
            if ready_check.is_none() {
                errors.push("`drainit sidecar` needs --ready-check (DRAINIT_READY_CHECK)".into());
            }
            if sidecar_only.iter().all(Option::is_some) {
                errors.push("--app-pid-file and --app-process exclude each other".into());
            }
        }
    }

    if errors.is_empty() {
        Ok(Drainit {
            container: container.to_string(),
            mode,
            propagation_delay,
            unready_delay,
            grace_period,
            kill_margin,
            stop_signal,
            drain_on,
            ready_check,
            admin_port,
            prestop_token: token,
            prestop_allow_from,
            options,
            env: drainit_env,
        })
    } else {
        Err(errors)
    }
}

// ---------------------------------------------------------------------------
// Checks
// ---------------------------------------------------------------------------

/// One Deployment's pod template, analysed.
#[derive(Debug)]
struct Workload {
    name: String,
    namespace: String,
    labels: BTreeMap<String, String>,
    replicas: i32,
    /// (port name, port number) of every container.
    ports: Vec<(Option<String>, u16)>,
    drainits: Vec<Drainit>,
}

fn namespace_of(meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> String {
    meta.namespace.clone().unwrap_or_else(|| "default".into())
}

fn selects(selector: &BTreeMap<String, String>, labels: &BTreeMap<String, String>) -> bool {
    !selector.is_empty() && selector.iter().all(|(k, v)| labels.get(k) == Some(v))
}

/// A probe's or hook's port, resolved the way the kubelet does: a name
/// among the ports of the container that owns the probe or hook.
fn resolve_port(port: &IntOrString, c: &Container) -> Result<u16, String> {
    match port {
        IntOrString::Int(n) => u16::try_from(*n).map_err(|_| format!("port {n} out of range")),
        IntOrString::String(name) => c
            .ports
            .iter()
            .flatten()
            .find(|p| p.name.as_deref() == Some(name.as_str()))
            .and_then(|p| u16::try_from(p.container_port).ok())
            .ok_or_else(|| {
                format!(
                    "port {name:?} is not a port of container {:?} (named ports in probes and \
                     hooks resolve in the container that owns them)",
                    c.name
                )
            }),
    }
}

fn port_text(port: &IntOrString) -> String {
    match port {
        IntOrString::Int(n) => n.to_string(),
        IntOrString::String(s) => s.clone(),
    }
}

fn http_path(get: &HTTPGetAction) -> &str {
    let path = get.path.as_deref().unwrap_or("/");
    path.split('?').next().unwrap_or(path)
}

/// A probe's httpGet as (path, port), or why it has none.
fn http_probe(probe: &Probe, c: &Container) -> Result<(String, u16), String> {
    let get = probe.http_get.as_ref().ok_or("is not an httpGet probe")?;
    Ok((http_path(get).to_string(), resolve_port(&get.port, c)?))
}

fn check_pod(deployment: &Deployment, problems: &mut Vec<String>) -> Option<Workload> {
    let name = deployment.metadata.name.clone().unwrap_or_default();
    let mut report = |what: String| problems.push(format!("Deployment {name}: {what}"));
    let spec = &deployment.spec;
    let labels = spec
        .template
        .metadata
        .as_ref()
        .and_then(|m| m.labels.clone())
        .unwrap_or_default();
    let selector = spec.selector.match_labels.clone().unwrap_or_default();
    if !selects(&selector, &labels) {
        report("spec.selector does not match the pod template's labels".into());
    }
    let Some(pod) = spec.template.spec.as_ref() else {
        report("has no pod template spec".into());
        return None;
    };
    let pod_grace_secs = pod
        .termination_grace_period_seconds
        .unwrap_or(DEFAULT_POD_GRACE_SECS);
    let pod_grace = Duration::from_secs(u64::try_from(pod_grace_secs).unwrap_or(0));

    let mut local = Vec::new();
    let drainits = check_pod_spec(pod, pod_grace, &mut local);
    for p in local {
        report(p);
    }
    let ports = pod
        .containers
        .iter()
        .chain(pod.init_containers.iter().flatten())
        .flat_map(|c| c.ports.iter().flatten())
        .map(|p| (p.name.clone(), u16::try_from(p.container_port).unwrap_or(0)))
        .collect();
    Some(Workload {
        name: name.clone(),
        namespace: namespace_of(&deployment.metadata),
        labels,
        replicas: spec.replicas.unwrap_or(1),
        ports,
        drainits,
    })
}

/// The per-pod rules; returns the drainit configurations found.
fn check_pod_spec(pod: &PodSpec, pod_grace: Duration, problems: &mut Vec<String>) -> Vec<Drainit> {
    // (container, is a native sidecar, is a plain init container)
    let mut all: Vec<(&Container, bool, bool)> = Vec::new();
    for c in pod.init_containers.iter().flatten() {
        let native = c.restart_policy.as_deref() == Some("Always");
        all.push((c, native, !native));
    }
    for c in &pod.containers {
        all.push((c, false, false));
    }

    let mut drainits = Vec::new();
    for (c, native, plain_init) in &all {
        let mut local = Vec::new();
        let env = container_env(c, &mut local);
        let argv = drainit_argv(c, &env, &mut local);
        let has_drainit_env = env.keys().any(|k| k.starts_with("DRAINIT_"));
        match argv {
            None if has_drainit_env => local.push(
                "sets DRAINIT_* variables but does not run drainit (command[0] is not drainit)"
                    .into(),
            ),
            None => {}
            Some(_) if *plain_init => local.push(
                "a plain init container runs drainit: it must run beside the app \
                 (restartPolicy: Always for a native sidecar)"
                    .into(),
            ),
            Some(argv) => {
                if c.env_from.is_some() {
                    local.push("envFrom hides DRAINIT_* settings from this check".into());
                }
                match parse_drainit(&c.name, &argv, &env) {
                    Ok(d) => {
                        if *native && d.mode != Mode::Sidecar {
                            local.push(
                                "a native sidecar must run `drainit sidecar`, not wrap a command"
                                    .into(),
                            );
                        }
                        drainits.push(d);
                    }
                    Err(errors) => local.extend(errors),
                }
            }
        }
        problems.extend(
            local
                .into_iter()
                .map(|p| format!("container {}: {p}", c.name)),
        );
    }

    // Timing budget and probes of each drainit container.
    for d in &drainits {
        let c = all
            .iter()
            .find(|(c, ..)| c.name == d.container)
            .map(|(c, ..)| *c)
            .unwrap();
        let mut report = |what: String| problems.push(format!("container {}: {what}", d.container));
        match d.grace_period {
            None => report(format!(
                "--grace-period (DRAINIT_GRACE_PERIOD) is not set: set it to \
                 terminationGracePeriodSeconds ({}s)",
                pod_grace.as_secs()
            )),
            Some(g) if g != pod_grace => report(format!(
                "--grace-period {} differs from terminationGracePeriodSeconds {}s",
                humantime::format_duration(g),
                pod_grace.as_secs()
            )),
            Some(_) => {}
        }
        let used = d.propagation_delay + d.kill_margin;
        if used + MIN_APP_DRAIN > pod_grace {
            report(format!(
                "timing budget does not fit: propagation delay {} + kill margin {} leaves the \
                 app {} of the {}s grace period (at least {} needed)",
                humantime::format_duration(d.propagation_delay),
                humantime::format_duration(d.kill_margin),
                humantime::format_duration(pod_grace.saturating_sub(used)),
                pod_grace.as_secs(),
                humantime::format_duration(MIN_APP_DRAIN),
            ));
        }
        if d.unready_delay > d.propagation_delay {
            report("--unready-delay is longer than --propagation-delay: /ready would never turn 503 before the stop".into());
        }
        let Some(admin) = d.admin_port else {
            report("--admin-listen off: no /ready, /live or /prestop for the kubelet".into());
            continue;
        };
        for (other, ..) in &all {
            let clash = other.name != d.container
                && other
                    .ports
                    .iter()
                    .flatten()
                    .any(|p| p.container_port == i32::from(admin));
            if clash {
                report(format!(
                    "admin port {admin} is also a port of container {}",
                    other.name
                ));
            }
        }
        match c.readiness_probe.as_ref().map(|p| http_probe(p, c)) {
            None => report("has no readinessProbe (want httpGet /ready on the admin port)".into()),
            Some(Err(e)) => report(format!("readinessProbe {e}")),
            Some(Ok((path, port))) if path != "/ready" || port != admin => report(format!(
                "readinessProbe is {path} on port {port}, want /ready on the admin port {admin}"
            )),
            Some(Ok(_)) => {}
        }
        match c.liveness_probe.as_ref().map(|p| http_probe(p, c)) {
            None => report("has no livenessProbe (want httpGet /live on the admin port)".into()),
            Some(Err(e)) => report(format!("livenessProbe {e}")),
            Some(Ok((path, port))) if path != "/live" || port != admin => report(format!(
                "livenessProbe is {path} on port {port}, want /live on the admin port {admin}"
            )),
            Some(Ok(_)) => {}
        }
    }

    // Rules for every container: probes and hooks.
    let sidecar_present = drainits.iter().any(|d| d.mode == Mode::Sidecar);
    for (c, native, _) in &all {
        let mut report = |what: String| problems.push(format!("container {}: {what}", c.name));
        let probes = [
            ("livenessProbe", &c.liveness_probe),
            ("readinessProbe", &c.readiness_probe),
            ("startupProbe", &c.startup_probe),
        ];
        for (kind, probe) in probes {
            let Some(get) = probe.as_ref().and_then(|p| p.http_get.as_ref()) else {
                continue;
            };
            let path = http_path(get);
            if path == "/prestop" {
                report(format!(
                    "{kind} on /prestop: every probe would start a drain"
                ));
            }
            if kind == "livenessProbe" && path == "/ready" {
                report("livenessProbe on /ready: the kubelet would kill the container mid-drain (use /live)".into());
            }
            if kind == "startupProbe" && *native && path == "/ready" {
                report("startupProbe on /ready in a native sidecar: the app starts only after it passes, and /ready waits for the app".into());
            }
        }
        let is_drainit = drainits.iter().any(|d| d.container == c.name);
        let pre_stop = c.lifecycle.as_ref().and_then(|l| l.pre_stop.as_ref());
        match pre_stop {
            Some(hook) if hook.http_get.is_some() => {
                let get = hook.http_get.as_ref().unwrap();
                if http_path(get) != "/prestop" {
                    report(format!(
                        "preStop httpGet path is {}, want /prestop",
                        http_path(get)
                    ));
                }
                if get.host.is_some() {
                    report("preStop httpGet sets `host`: drainit listens on the pod IP".into());
                }
                if get.scheme.as_deref().is_some_and(|s| s != "HTTP") {
                    report("preStop httpGet scheme must be HTTP".into());
                }
                match resolve_port(&get.port, c) {
                    Err(e) => report(format!("preStop: {e}")),
                    Ok(port) => match drainits.iter().find(|d| d.admin_port == Some(port)) {
                        None => report(format!(
                            "preStop httpGet goes to port {port}, which is no drainit admin port in this pod"
                        )),
                        Some(d) => {
                            if let Some(token) = &d.prestop_token {
                                let sent = get.http_headers.iter().flatten().find(|h| {
                                    h.name.eq_ignore_ascii_case("X-Drainit-Token")
                                });
                                if sent.map(|h| &h.value) != Some(token) {
                                    report(format!(
                                        "preStop httpGet lacks the X-Drainit-Token header that {} expects",
                                        d.container
                                    ));
                                }
                            }
                        }
                    },
                }
            }
            Some(_) if !drainits.is_empty() => report(
                "preStop is not an httpGet to drainit's /prestop: a sleep or exec hook adds \
                 time the budget does not count"
                    .into(),
            ),
            Some(_) => {}
            None if sidecar_present && !is_drainit && !*native => report(
                "app container beside a drainit sidecar has no preStop httpGet to the sidecar's \
                 /prestop: it would get SIGTERM at once"
                    .into(),
            ),
            None => {}
        }
    }
    drainits
}

/// All problems of one manifest.
fn check_manifest(text: &str) -> Vec<String> {
    let objects = match parse_manifest(text) {
        Ok(o) => o,
        Err(e) => return vec![e],
    };
    let mut problems = Vec::new();
    let mut workloads = Vec::new();
    for object in &objects {
        if let Object::Deployment(d) = object {
            workloads.extend(check_pod(d, &mut problems));
        }
    }
    if workloads.iter().all(|w| w.drainits.is_empty()) {
        problems.push("no container in this manifest runs drainit".into());
    }
    let selected = |ns: &str, selector: &BTreeMap<String, String>| -> Vec<&Workload> {
        workloads
            .iter()
            .filter(|w| w.namespace == ns && selects(selector, &w.labels))
            .collect()
    };

    let mut pdb_covered: Vec<&str> = Vec::new();
    for object in &objects {
        match object {
            Object::Service(s) => {
                let name = s.metadata.name.clone().unwrap_or_default();
                let selector = s
                    .spec
                    .as_ref()
                    .and_then(|sp| sp.selector.clone())
                    .unwrap_or_default();
                let behind = selected(&namespace_of(&s.metadata), &selector);
                if behind.is_empty() {
                    problems.push(format!(
                        "Service {name}: selects no Deployment in this file"
                    ));
                }
                for port in s.spec.iter().flat_map(|sp| sp.ports.iter().flatten()) {
                    let target = port
                        .target_port
                        .clone()
                        .unwrap_or(IntOrString::Int(port.port));
                    for w in &behind {
                        let found = w.ports.iter().find(|(n, p)| match &target {
                            IntOrString::Int(t) => i32::from(*p) == *t,
                            IntOrString::String(t) => n.as_deref() == Some(t.as_str()),
                        });
                        match found {
                            None => problems.push(format!(
                                "Service {name}: targetPort {} is no port of Deployment {}",
                                port_text(&target),
                                w.name
                            )),
                            Some((_, p)) if w.drainits.iter().any(|d| d.admin_port == Some(*p)) => {
                                problems.push(format!(
                                    "Service {name}: targetPort {} is drainit's admin port",
                                    port_text(&target)
                                ))
                            }
                            Some(_) => {}
                        }
                    }
                }
            }
            Object::Pdb(pdb) => {
                let name = pdb.metadata.name.clone().unwrap_or_default();
                let spec = pdb.spec.as_ref();
                let selector = spec
                    .and_then(|s| s.selector.as_ref())
                    .and_then(|s| s.match_labels.clone())
                    .unwrap_or_default();
                let behind = selected(&namespace_of(&pdb.metadata), &selector);
                if behind.is_empty() {
                    problems.push(format!(
                        "PodDisruptionBudget {name}: selects no Deployment in this file"
                    ));
                }
                let min = spec.and_then(|s| s.min_available.clone());
                let max = spec.and_then(|s| s.max_unavailable.clone());
                if min.is_some() == max.is_some() {
                    problems.push(format!(
                        "PodDisruptionBudget {name}: set exactly one of minAvailable and maxUnavailable"
                    ));
                }
                for w in &behind {
                    pdb_covered.push(&w.name);
                    if let Some(IntOrString::Int(m)) = min {
                        if m >= w.replicas {
                            problems.push(format!(
                                "PodDisruptionBudget {name}: minAvailable {m} >= {} replicas of {} \
                                 blocks every eviction (node drains hang)",
                                w.replicas, w.name
                            ));
                        }
                    }
                    if let Some(IntOrString::Int(m)) = max {
                        if m < 1 {
                            problems.push(format!(
                                "PodDisruptionBudget {name}: maxUnavailable {m} blocks every eviction"
                            ));
                        }
                    }
                }
            }
            Object::Ingress(ing) => check_ingress(ing, &objects, &workloads, &mut problems),
            _ => {}
        }
    }
    for w in &workloads {
        if w.replicas > 1 && !pdb_covered.contains(&w.name.as_str()) {
            problems.push(format!(
                "Deployment {}: {} replicas but no PodDisruptionBudget selects them",
                w.name, w.replicas
            ));
        }
    }
    problems
}

const ALB_ATTRIBUTES: &str = "alb.ingress.kubernetes.io/target-group-attributes";
const ALB_TARGET_TYPE: &str = "alb.ingress.kubernetes.io/target-type";
const ALB_HEALTHCHECK_PORT: &str = "alb.ingress.kubernetes.io/healthcheck-port";
const ALB_HEALTHCHECK_PATH: &str = "alb.ingress.kubernetes.io/healthcheck-path";
const READINESS_GATE_LABEL: &str = "elbv2.k8s.aws/pod-readiness-gate-inject";

/// `deregistration_delay.timeout_seconds` from the target-group attributes.
fn deregistration_delay(
    annotations: &BTreeMap<String, String>,
) -> Option<Result<Duration, String>> {
    let attributes = annotations.get(ALB_ATTRIBUTES)?;
    let value = attributes
        .split(',')
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| k.trim() == "deregistration_delay.timeout_seconds")
        .map(|(_, v)| v.trim())?;
    Some(
        value
            .parse::<u64>()
            .map(Duration::from_secs)
            .map_err(|_| format!("deregistration_delay.timeout_seconds={value} is not a number")),
    )
}

fn check_ingress(
    ing: &Ingress,
    objects: &[Object],
    workloads: &[Workload],
    problems: &mut Vec<String>,
) {
    let name = ing.metadata.name.clone().unwrap_or_default();
    let ns = namespace_of(&ing.metadata);
    let annotations = ing.metadata.annotations.clone().unwrap_or_default();
    let spec = ing.spec.as_ref();
    let backends: Vec<&str> = spec
        .iter()
        .flat_map(|s| s.rules.iter().flatten())
        .flat_map(|r| r.http.iter().flat_map(|h| h.paths.iter()))
        .filter_map(|p| p.backend.service.as_ref().map(|s| s.name.as_str()))
        .chain(
            spec.and_then(|s| s.default_backend.as_ref())
                .and_then(|b| b.service.as_ref())
                .map(|s| s.name.as_str()),
        )
        .collect();
    if backends.is_empty() {
        problems.push(format!("Ingress {name}: has no service backend"));
    }
    // The workloads behind the Ingress, through its Services.
    let mut behind: Vec<&Workload> = Vec::new();
    for backend in &backends {
        let service = objects.iter().find_map(|o| match o {
            Object::Service(s)
                if s.metadata.name.as_deref() == Some(*backend)
                    && namespace_of(&s.metadata) == ns =>
            {
                Some(s)
            }
            _ => None,
        });
        let Some(service) = service else {
            problems.push(format!(
                "Ingress {name}: backend Service {backend} is not in this file"
            ));
            continue;
        };
        let selector = service
            .spec
            .as_ref()
            .and_then(|s| s.selector.clone())
            .unwrap_or_default();
        behind.extend(
            workloads
                .iter()
                .filter(|w| w.namespace == ns && selects(&selector, &w.labels)),
        );
    }

    if let Some(delay) = deregistration_delay(&annotations) {
        match delay {
            Err(e) => problems.push(format!("Ingress {name}: {e}")),
            Ok(delay) => {
                for w in &behind {
                    for d in &w.drainits {
                        if delay > d.propagation_delay {
                            problems.push(format!(
                                "Ingress {name}: deregistration delay {}s is longer than the \
                                 propagation delay {} of {}/{}: the app stops while the ALB \
                                 still has requests for it",
                                delay.as_secs(),
                                humantime::format_duration(d.propagation_delay),
                                w.name,
                                d.container
                            ));
                        }
                    }
                }
            }
        }
    }
    if annotations.get(ALB_TARGET_TYPE).map(String::as_str) == Some("ip") {
        let gated = objects.iter().any(|o| match o {
            Object::Namespace(n) => {
                n.metadata.name.as_deref() == Some(ns.as_str())
                    && n.metadata
                        .labels
                        .as_ref()
                        .and_then(|l| l.get(READINESS_GATE_LABEL))
                        .map(String::as_str)
                        == Some("enabled")
            }
            _ => false,
        });
        if !gated {
            problems.push(format!(
                "Ingress {name}: target-type ip, but namespace {ns} is not declared here with \
                 {READINESS_GATE_LABEL}: enabled"
            ));
        }
    }
    if let Some(port) = annotations
        .get(ALB_HEALTHCHECK_PORT)
        .and_then(|p| p.parse::<u16>().ok())
    {
        let on_admin = behind
            .iter()
            .any(|w| w.drainits.iter().any(|d| d.admin_port == Some(port)));
        let path = annotations
            .get(ALB_HEALTHCHECK_PATH)
            .map(String::as_str)
            .unwrap_or("/");
        if on_admin && path != "/ready" {
            problems.push(format!(
                "Ingress {name}: the ALB health check goes to drainit's admin port, path {path}: want /ready"
            ));
        }
    }
}

// ---------------------------------------------------------------------------
// Helpers for the tests
// ---------------------------------------------------------------------------

fn examples_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("examples")
        .join("kubernetes")
}

fn read_example(name: &str) -> String {
    let path = examples_dir().join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn load(name: &str) -> Vec<Object> {
    parse_manifest(&read_example(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn deployments(objects: &[Object]) -> Vec<&Deployment> {
    objects
        .iter()
        .filter_map(|o| match o {
            Object::Deployment(d) => Some(&**d),
            _ => None,
        })
        .collect()
}

fn pod_spec(d: &Deployment) -> &PodSpec {
    d.spec.template.spec.as_ref().unwrap()
}

/// The drainit configurations of the one Deployment in an example.
fn drainits_of(name: &str) -> (Vec<Drainit>, Deployment) {
    let objects = load(name);
    let deps = deployments(&objects);
    assert_eq!(deps.len(), 1, "{name}: expected one Deployment");
    let d = deps[0].clone();
    let mut problems = Vec::new();
    let workload = check_pod(&d, &mut problems).unwrap();
    assert!(problems.is_empty(), "{name}: {problems:#?}");
    (workload.drainits, d)
}

fn grace(d: &Deployment) -> Duration {
    Duration::from_secs(pod_spec(d).termination_grace_period_seconds.unwrap() as u64)
}

// ---------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------

#[test]
fn every_example_deserialises_and_passes_the_checks() {
    let mut found: Vec<String> = std::fs::read_dir(examples_dir())
        .expect("examples/kubernetes exists")
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".yaml") || n.ends_with(".yml"))
        .collect();
    found.sort();
    for expected in EXPECTED_EXAMPLES {
        assert!(
            found.iter().any(|f| f == expected),
            "missing example {expected}; found {found:?}"
        );
    }
    let mut failures = Vec::new();
    for name in &found {
        for problem in check_manifest(&read_example(name)) {
            failures.push(format!("{name}: {problem}"));
        }
    }
    assert!(
        failures.is_empty(),
        "example manifests have problems:\n{}",
        failures.join("\n")
    );
}

#[test]
fn entrypoint_example_drains_on_sigterm_without_a_hook() {
    let (drainits, d) = drainits_of("entrypoint.yaml");
    assert_eq!(drainits.len(), 1);
    let dr = &drainits[0];
    assert!(
        matches!(&dr.mode, Mode::Wrapper { app } if app.first().map(String::as_str) == Some("/web"))
    );
    let c = &pod_spec(&d).containers[0];
    assert!(
        c.lifecycle
            .as_ref()
            .and_then(|l| l.pre_stop.as_ref())
            .is_none(),
        "mode 1 has no preStop"
    );
    // Settings come from DRAINIT_* variables here, grace period included.
    let env: Vec<&str> = c.env.iter().flatten().map(|e| e.name.as_str()).collect();
    assert!(env.contains(&"DRAINIT_GRACE_PERIOD"), "{env:?}");
    assert_eq!(dr.grace_period, Some(grace(&d)));
    assert!(dr.propagation_delay > Duration::ZERO);
    assert_eq!(dr.stop_signal, "TERM");
    assert_eq!(dr.admin_port, Some(9095));
}

#[test]
fn prestop_example_hooks_the_admin_port_and_allows_only_the_node() {
    let (drainits, d) = drainits_of("entrypoint-prestop.yaml");
    let dr = &drainits[0];
    let c = &pod_spec(&d).containers[0];
    let hook = c
        .lifecycle
        .as_ref()
        .unwrap()
        .pre_stop
        .as_ref()
        .unwrap()
        .http_get
        .as_ref()
        .unwrap();
    assert_eq!(hook.path.as_deref(), Some("/prestop"));
    assert_eq!(resolve_port(&hook.port, c).unwrap(), 9095);
    // Options as arguments here; the grace period matches the pod's.
    assert!(c
        .command
        .as_ref()
        .unwrap()
        .iter()
        .any(|a| a.starts_with("--grace-period")));
    assert_eq!(dr.grace_period, Some(grace(&d)));
    // The downward-API recipe: HOST_IP = status.hostIP, expanded in the flag.
    let host_ip = c
        .env
        .iter()
        .flatten()
        .find(|e| e.name == "HOST_IP")
        .unwrap();
    assert_eq!(
        host_ip
            .value_from
            .as_ref()
            .unwrap()
            .field_ref
            .as_ref()
            .unwrap()
            .field_path,
        "status.hostIP"
    );
    assert_eq!(
        dr.prestop_allow_from,
        vec![format!("{HOST_IP_PLACEHOLDER}/32")]
    );
}

#[test]
fn classic_sidecar_example_hooks_the_app_to_the_sidecar() {
    let (drainits, d) = drainits_of("sidecar-classic.yaml");
    let pod = pod_spec(&d);
    assert!(pod.init_containers.is_none());
    assert_eq!(pod.containers.len(), 2);
    assert_eq!(drainits.len(), 1);
    let sidecar = &drainits[0];
    assert_eq!(sidecar.mode, Mode::Sidecar);
    assert!(sidecar
        .ready_check
        .as_deref()
        .unwrap()
        .contains("127.0.0.1:8080"));
    let app = pod
        .containers
        .iter()
        .find(|c| c.name != sidecar.container)
        .unwrap();
    assert!(
        app.command.is_none() && !image_is_drainit(app.image.as_deref()),
        "the app image is unchanged"
    );
    let hook = app
        .lifecycle
        .as_ref()
        .unwrap()
        .pre_stop
        .as_ref()
        .unwrap()
        .http_get
        .as_ref()
        .unwrap();
    assert_eq!(hook.port, IntOrString::Int(9095));
    assert_eq!(hook.path.as_deref(), Some("/prestop"));
    assert!(sidecar.prestop_token.is_some());
}

#[test]
fn native_sidecar_example_is_a_restartable_init_container() {
    let (drainits, d) = drainits_of("sidecar-native.yaml");
    let pod = pod_spec(&d);
    let init = pod.init_containers.as_ref().expect("initContainers");
    assert_eq!(init.len(), 1);
    assert_eq!(init[0].restart_policy.as_deref(), Some("Always"));
    assert!(init[0].startup_probe.is_none());
    assert_eq!(drainits.len(), 1);
    assert_eq!(drainits[0].container, init[0].name);
    assert_eq!(drainits[0].mode, Mode::Sidecar);
    for c in &pod.containers {
        let hook = c
            .lifecycle
            .as_ref()
            .and_then(|l| l.pre_stop.as_ref())
            .and_then(|h| h.http_get.as_ref());
        assert_eq!(
            hook.and_then(|h| h.path.as_deref()),
            Some("/prestop"),
            "{}",
            c.name
        );
    }
}

#[test]
fn alb_example_fits_deregistration_into_the_propagation_delay() {
    let objects = load("aws-alb.yaml");
    let namespace = objects
        .iter()
        .find_map(|o| match o {
            Object::Namespace(n) => Some(n),
            _ => None,
        })
        .expect("a Namespace");
    let labels = namespace.metadata.labels.as_ref().unwrap();
    assert_eq!(
        labels.get(READINESS_GATE_LABEL).map(String::as_str),
        Some("enabled")
    );
    let ingress = objects
        .iter()
        .find_map(|o| match o {
            Object::Ingress(i) => Some(i),
            _ => None,
        })
        .expect("an Ingress");
    assert_eq!(ingress.metadata.namespace, namespace.metadata.name);
    assert_eq!(
        ingress.spec.as_ref().unwrap().ingress_class_name.as_deref(),
        Some("alb")
    );
    let annotations = ingress.metadata.annotations.as_ref().unwrap();
    assert_eq!(
        annotations.get(ALB_TARGET_TYPE).map(String::as_str),
        Some("ip")
    );
    let dereg = deregistration_delay(annotations)
        .expect("a deregistration delay")
        .unwrap();

    let (drainits, d) = drainits_of("aws-alb.yaml");
    assert_eq!(d.metadata.namespace, namespace.metadata.name);
    let dr = &drainits[0];
    assert!(
        dereg <= dr.propagation_delay,
        "{dereg:?} > {:?}",
        dr.propagation_delay
    );
    assert!(dr.propagation_delay + dr.kill_margin + MIN_APP_DRAIN <= grace(&d));
    assert_eq!(
        dr.prestop_allow_from,
        vec![format!("{HOST_IP_PLACEHOLDER}/32")]
    );
}

#[test]
fn nginx_example_stops_with_quit_inside_the_budget() {
    let (drainits, d) = drainits_of("nginx.yaml");
    let dr = &drainits[0];
    assert_eq!(dr.stop_signal, "QUIT");
    assert!(dr.drain_on.contains(&"TERM".to_string()) && dr.drain_on.contains(&"QUIT".to_string()));
    assert!(matches!(&dr.mode, Mode::Wrapper { app } if app.iter().any(|a| a == "nginx")));
    // nginx's own bound on a graceful shutdown ends before drainit's deadline.
    let objects = load("nginx.yaml");
    let conf = objects
        .iter()
        .find_map(|o| match o {
            Object::ConfigMap(c) => c.data.as_ref().and_then(|d| d.get("nginx.conf")).cloned(),
            _ => None,
        })
        .expect("nginx.conf in a ConfigMap");
    let timeout = conf
        .lines()
        .map(str::trim)
        .find_map(|l| l.strip_prefix("worker_shutdown_timeout "))
        .map(|v| humantime::parse_duration(v.trim_end_matches(';')).unwrap())
        .expect("worker_shutdown_timeout");
    assert!(
        dr.propagation_delay + timeout + dr.kill_margin < grace(&d),
        "worker_shutdown_timeout {timeout:?} does not fit"
    );
}

/// A small manifest that passes every check; the broken ones are mutations.
const GOOD: &str = r#"
apiVersion: apps/v1
kind: Deployment
metadata:
  name: app
spec:
  replicas: 2
  selector:
    matchLabels: {app: demo}
  template:
    metadata:
      labels: {app: demo}
    spec:
      terminationGracePeriodSeconds: 30
      containers:
        - name: app
          image: ghcr.io/example/app:1
          command: ["/drainit", "--propagation-delay=10s", "--grace-period=30s", "--"]
          args: ["/app"]
          env:
            - name: DRAINIT_KILL_MARGIN
              value: "2s"
          ports:
            - {name: http, containerPort: 8080}
            - {name: admin, containerPort: 9095}
          lifecycle:
            preStop:
              httpGet: {path: /prestop, port: admin}
          readinessProbe:
            httpGet: {path: /ready, port: admin}
          livenessProbe:
            httpGet: {path: /live, port: admin}
---
apiVersion: v1
kind: Service
metadata:
  name: app
spec:
  selector: {app: demo}
  ports:
    - {port: 80, targetPort: http}
---
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata:
  name: app
spec:
  maxUnavailable: 1
  selector:
    matchLabels: {app: demo}
"#;

const GOOD_SIDECAR: &str = r#"
apiVersion: apps/v1
kind: Deployment
metadata:
  name: app
spec:
  selector:
    matchLabels: {app: demo}
  template:
    metadata:
      labels: {app: demo}
    spec:
      terminationGracePeriodSeconds: 30
      containers:
        - name: app
          image: ghcr.io/example/app:1
          ports:
            - {name: http, containerPort: 8080}
          lifecycle:
            preStop:
              httpGet: {path: /prestop, port: 9095}
        - name: drainit
          image: ghcr.io/example/drainit:0.1.0
          args: ["sidecar"]
          env:
            - {name: DRAINIT_GRACE_PERIOD, value: "30s"}
            - {name: DRAINIT_READY_CHECK, value: "tcp://127.0.0.1:8080"}
          readinessProbe:
            httpGet: {path: /ready, port: 9095}
          livenessProbe:
            httpGet: {path: /live, port: 9095}
"#;

const GOOD_ALB: &str = r#"
apiVersion: v1
kind: Namespace
metadata:
  name: shop
  labels:
    elbv2.k8s.aws/pod-readiness-gate-inject: enabled
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: app
  namespace: shop
  annotations:
    alb.ingress.kubernetes.io/target-type: ip
    alb.ingress.kubernetes.io/target-group-attributes: deregistration_delay.timeout_seconds=20
spec:
  ingressClassName: alb
  defaultBackend:
    service:
      name: app
      port: {number: 80}
---
apiVersion: v1
kind: Service
metadata:
  name: app
  namespace: shop
spec:
  selector: {app: demo}
  ports:
    - {port: 80, targetPort: 8080}
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: app
  namespace: shop
spec:
  selector:
    matchLabels: {app: demo}
  template:
    metadata:
      labels: {app: demo}
    spec:
      terminationGracePeriodSeconds: 60
      containers:
        - name: app
          image: ghcr.io/example/app:1
          command: ["/drainit", "--propagation-delay=30s", "--grace-period=60s", "--", "/app"]
          ports:
            - {containerPort: 8080}
          readinessProbe:
            httpGet: {path: /ready, port: 9095}
          livenessProbe:
            httpGet: {path: /live, port: 9095}
"#;

/// Apply `(from, to)` replacements, each of which must change the text.
fn mutate(base: &str, edits: &[(&str, &str)]) -> String {
    let mut text = base.to_string();
    for (from, to) in edits {
        assert!(text.contains(from), "mutation target {from:?} not found");
        text = text.replacen(from, to, 1);
    }
    text
}

#[test]
fn checker_flags_broken_manifests() {
    // The bases pass: the negative cases below fail for their own reason.
    for (name, base) in [
        ("GOOD", GOOD),
        ("GOOD_SIDECAR", GOOD_SIDECAR),
        ("GOOD_ALB", GOOD_ALB),
    ] {
        assert_eq!(
            check_manifest(base),
            Vec::<String>::new(),
            "{name} should pass"
        );
    }

    let cases: Vec<(&str, String, &[&str])> = vec![
        (
            "budget too big and liveness on /ready, together",
            mutate(
                GOOD,
                &[
                    ("--propagation-delay=10s", "--propagation-delay=40s"),
                    ("httpGet: {path: /live, port: admin}", "httpGet: {path: /ready, port: admin}"),
                ],
            ),
            &["timing budget does not fit", "livenessProbe on /ready"],
        ),
        (
            "budget leaves the app too little",
            mutate(GOOD, &[("--propagation-delay=10s", "--propagation-delay=25s")]),
            &["timing budget does not fit"],
        ),
        (
            "budget from a DRAINIT_* variable",
            mutate(GOOD, &[("value: \"2s\"", "value: \"20s\"")]),
            &["timing budget does not fit"],
        ),
        (
            "grace period differs from the pod's",
            mutate(GOOD, &[("terminationGracePeriodSeconds: 30", "terminationGracePeriodSeconds: 60")]),
            &["differs from terminationGracePeriodSeconds"],
        ),
        (
            "grace period not set",
            mutate(GOOD, &[("\"--grace-period=30s\", ", "")]),
            &["--grace-period (DRAINIT_GRACE_PERIOD) is not set"],
        ),
        (
            "unknown kind",
            mutate(GOOD, &[("kind: PodDisruptionBudget", "kind: PodDisruptionBudgett")]),
            &["unknown kind \"PodDisruptionBudgett\""],
        ),
        (
            "misspelt field",
            mutate(GOOD, &[("livenessProbe:", "livenesProbe:")]),
            &["unknown to apps/v1 Deployment", "livenesProbe"],
        ),
        (
            "not YAML",
            mutate(GOOD, &[("replicas: 2", "replicas: [2")]),
            &["YAML does not parse"],
        ),
        (
            "wrong type",
            mutate(GOOD, &[("replicas: 2", "replicas: two")]),
            &["not a valid apps/v1 Deployment"],
        ),
        (
            "no readiness probe",
            mutate(GOOD, &[("          readinessProbe:\n            httpGet: {path: /ready, port: admin}\n", "")]),
            &["has no readinessProbe"],
        ),
        (
            "readiness on the app port",
            mutate(GOOD, &[("httpGet: {path: /ready, port: admin}", "httpGet: {path: /ready, port: http}")]),
            &["readinessProbe is /ready on port 8080"],
        ),
        (
            "a probe on /prestop",
            mutate(GOOD, &[("httpGet: {path: /ready, port: admin}", "httpGet: {path: /prestop, port: admin}")]),
            &["readinessProbe on /prestop"],
        ),
        (
            "preStop to the wrong path",
            mutate(GOOD, &[("httpGet: {path: /prestop, port: admin}", "httpGet: {path: /shutdown, port: admin}")]),
            &["preStop httpGet path is /shutdown"],
        ),
        (
            "preStop to the app port",
            mutate(GOOD, &[("httpGet: {path: /prestop, port: admin}", "httpGet: {path: /prestop, port: 8080}")]),
            &["no drainit admin port"],
        ),
        (
            "preStop sleep",
            mutate(GOOD, &[("httpGet: {path: /prestop, port: admin}", "sleep: {seconds: 10}")]),
            &["preStop is not an httpGet"],
        ),
        (
            "admin listener moved but probes not",
            mutate(GOOD, &[("\"--grace-period=30s\",", "\"--grace-period=30s\", \"--admin-listen=0.0.0.0:9000\",")]),
            &["want /ready on the admin port 9000"],
        ),
        (
            "unknown drainit option",
            mutate(GOOD, &[("--propagation-delay=10s", "--propagation-dealy=10s")]),
            &["unknown drainit option --propagation-dealy"],
        ),
        (
            "unknown DRAINIT_ variable",
            mutate(GOOD, &[("DRAINIT_KILL_MARGIN", "DRAINIT_KILL_MARGN")]),
            &["DRAINIT_KILL_MARGN is no drainit setting"],
        ),
        (
            "bad duration",
            mutate(GOOD, &[("--propagation-delay=10s", "--propagation-delay=10 parsecs")]),
            &["--propagation-delay \"10 parsecs\""],
        ),
        (
            "bad stop signal",
            mutate(GOOD, &[("\"--\"]", "\"--stop-signal=SIGQUITE\", \"--\"]")]),
            &["--stop-signal \"SIGQUITE\": not a signal"],
        ),
        (
            "no app command",
            mutate(GOOD, &[("          args: [\"/app\"]\n", "")]),
            &["no app command"],
        ),
        (
            "undefined $(VAR)",
            mutate(GOOD, &[("\"--\"]", "\"--prestop-allow-from=$(HOST_IP)/32\", \"--\"]")]),
            &["$(HOST_IP) refers to no variable"],
        ),
        (
            "Service sends traffic to the admin port",
            mutate(GOOD, &[("targetPort: http", "targetPort: admin")]),
            &["targetPort admin is drainit's admin port"],
        ),
        (
            "Service selects nothing",
            mutate(GOOD, &[("  selector: {app: demo}\n  ports:", "  selector: {app: other}\n  ports:")]),
            &["Service app: selects no Deployment"],
        ),
        (
            "PDB that blocks every eviction",
            mutate(GOOD, &[("maxUnavailable: 1", "minAvailable: 2")]),
            &["blocks every eviction"],
        ),
        (
            "replicas without a PDB",
            GOOD.split("\n---\napiVersion: policy/v1").next().unwrap().to_string(),
            &["no PodDisruptionBudget selects them"],
        ),
        (
            "no drainit at all",
            mutate(GOOD, &[("[\"/drainit\",", "[\"/tini\","), ("            - name: DRAINIT_KILL_MARGIN\n              value: \"2s\"\n", "")]),
            &["no container in this manifest runs drainit"],
        ),
        (
            "sidecar app without a hook",
            mutate(GOOD_SIDECAR, &[("          lifecycle:\n            preStop:\n              httpGet: {path: /prestop, port: 9095}\n", "")]),
            &["has no preStop httpGet to the sidecar"],
        ),
        (
            "hook names the sidecar's port from the app container",
            mutate(
                GOOD_SIDECAR,
                &[
                    ("httpGet: {path: /prestop, port: 9095}", "httpGet: {path: /prestop, port: admin}"),
                    ("          args: [\"sidecar\"]\n", "          args: [\"sidecar\"]\n          ports:\n            - {name: admin, containerPort: 9095}\n"),
                ],
            ),
            &["port \"admin\" is not a port of container \"app\""],
        ),
        (
            "sidecar without a ready check",
            mutate(GOOD_SIDECAR, &[("            - {name: DRAINIT_READY_CHECK, value: \"tcp://127.0.0.1:8080\"}\n", "")]),
            &["`drainit sidecar` needs --ready-check"],
        ),
        (
            "sidecar token the hook does not send",
            mutate(GOOD_SIDECAR, &[("            - {name: DRAINIT_GRACE_PERIOD, value: \"30s\"}\n", "            - {name: DRAINIT_GRACE_PERIOD, value: \"30s\"}\n            - {name: DRAINIT_PRESTOP_TOKEN, value: \"s3cret\"}\n")]),
            &["lacks the X-Drainit-Token header"],
        ),
        (
            "ALB deregistration delay longer than the propagation delay",
            mutate(GOOD_ALB, &[("timeout_seconds=20", "timeout_seconds=45")]),
            &["deregistration delay 45s is longer than the propagation delay 30s"],
        ),
        (
            "ALB in IP mode without the readiness-gate label",
            mutate(GOOD_ALB, &[("elbv2.k8s.aws/pod-readiness-gate-inject: enabled", "team: shop")]),
            &["is not declared here with elbv2.k8s.aws/pod-readiness-gate-inject: enabled"],
        ),
    ];

    let mut unflagged = Vec::new();
    for (what, manifest, expected) in &cases {
        let problems = check_manifest(manifest);
        for needle in expected.iter() {
            if !problems.iter().any(|p| p.contains(needle)) {
                unflagged.push(format!(
                    "{what}: expected a problem containing {needle:?}, got {problems:#?}"
                ));
            }
        }
    }
    assert!(
        unflagged.is_empty(),
        "the checker missed:\n{}",
        unflagged.join("\n")
    );
}

#[test]
fn drainit_argument_parsing_follows_the_cli_contract() {
    let env = HashMap::from([
        (
            "DRAINIT_PROPAGATION_DELAY".to_string(),
            EnvValue::Literal("20s".into()),
        ),
        (
            "DRAINIT_KILL_MARGIN".to_string(),
            EnvValue::Literal("4s".into()),
        ),
    ]);
    let argv = |s: &str| s.split_whitespace().map(String::from).collect::<Vec<_>>();

    // Arguments win over variables; options stop at the first non-option.
    let d = parse_drainit(
        "c",
        &argv("/drainit --propagation-delay 7s -v sh -c --kill-margin"),
        &env,
    )
    .unwrap();
    assert_eq!(d.propagation_delay, Duration::from_secs(7));
    assert_eq!(d.kill_margin, Duration::from_secs(4));
    assert_eq!(
        d.mode,
        Mode::Wrapper {
            app: argv("sh -c --kill-margin")
        }
    );

    // Defaults when nothing is set.
    let d = parse_drainit("c", &argv("/drainit -- /app"), &HashMap::new()).unwrap();
    assert_eq!(
        (
            d.propagation_delay,
            d.kill_margin,
            d.grace_period,
            d.admin_port
        ),
        (
            Duration::from_secs(5),
            Duration::from_secs(2),
            None,
            Some(9095)
        )
    );
    assert_eq!(
        (d.stop_signal.as_str(), d.drain_on.clone()),
        ("TERM", vec!["TERM".to_string()])
    );

    // The subcommand, with its own options after it.
    let d = parse_drainit(
        "c",
        &argv("/drainit --ready-check tcp://127.0.0.1:8080 sidecar --app-process web --admin-listen [::]:9100"),
        &HashMap::new(),
    )
    .unwrap();
    assert_eq!((d.mode, d.admin_port), (Mode::Sidecar, Some(9100)));

    let d = parse_drainit(
        "c",
        &argv("/drainit --admin-listen off --stop-signal SIGQUIT -- nginx"),
        &HashMap::new(),
    )
    .unwrap();
    assert_eq!((d.admin_port, d.stop_signal.as_str()), (None, "QUIT"));

    for (bad, why) in [
        (
            "/drainit --app-process web -- /app",
            "is a `drainit sidecar` option",
        ),
        ("/drainit sidecar /app", "takes no command"),
        (
            "/drainit --ready-check ftp://x:1 -- /app",
            "--ready-check \"ftp://x:1\"",
        ),
        (
            "/drainit --ready-check http://127.0.0.1:9095/ready -- /app",
            "points at drainit's own admin port",
        ),
        (
            "/drainit --prestop-allow-from node-ip/32 -- /app",
            "is not an IP address",
        ),
        (
            "/drainit --prestop-allow-from 10.0.0.0/33 -- /app",
            "bad prefix length",
        ),
        ("/drainit --signal-target pgid -- /app", "--signal-target"),
        ("/drainit --rewrite TERM -- /app", "expected FROM:TO"),
        ("/drainit --unready-delay -- /app", "--unready-delay \"--\""),
        ("/drainit --propagation-delay", "needs a value"),
        ("/drainit -x -- /app", "unknown drainit option -x"),
    ] {
        let errors = parse_drainit("c", &argv(bad), &HashMap::new()).expect_err(bad);
        assert!(errors.iter().any(|e| e.contains(why)), "{bad}: {errors:?}");
    }
}

/// Run the real drainit with a container's options and `DRAINIT_*`
/// variables (app command replaced by `true`, admin server on an ephemeral
/// loopback port, `--strict` so a budget drainit rejects is an error).
/// `Ok` if it accepted them: it ran `true` and exited 0, or (sidecar) was
/// still running after two seconds.
fn run_real_drainit(d: &Drainit) -> Result<(), String> {
    use std::process::{Command, Stdio};
    let mut args = Vec::new();
    let mut rest = d.options.iter().skip(1);
    while let Some(arg) = rest.next() {
        if arg == "--admin-listen" {
            rest.next();
        } else if !arg.starts_with("--admin-listen=") {
            args.push(arg.clone());
        }
    }
    if matches!(d.mode, Mode::Wrapper { .. }) {
        args.push("true".into());
    }
    let mut child = Command::new(env!("CARGO_BIN_EXE_drainit"))
        .args(&args)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .envs(d.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .env("DRAINIT_ADMIN_LISTEN", "127.0.0.1:0")
        .env("DRAINIT_STRICT", "true")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("spawn drainit: {e}"))?;
    let deadline = std::time::Instant::now() + Duration::from_secs(2);
    let status = loop {
        if let Some(status) = child.try_wait().map_err(|e| e.to_string())? {
            break Some(status);
        }
        if std::time::Instant::now() >= deadline {
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    if status.is_none() {
        let _ = child.kill();
    }
    let output = child.wait_with_output().map_err(|e| e.to_string())?;
    match status {
        None => Ok(()),
        Some(s) if s.success() => Ok(()),
        Some(s) => Err(format!(
            "drainit {args:?} with {:?} exited {s}: {}",
            d.env,
            String::from_utf8_lossy(&output.stderr)
        )),
    }
}

#[test]
fn the_real_drainit_accepts_every_example() {
    let mut checked = 0;
    let mut failures = Vec::new();
    for name in EXPECTED_EXAMPLES {
        for d in deployments(&load(name)) {
            let mut problems = Vec::new();
            let workload = check_pod(d, &mut problems).expect("a pod template");
            for dr in &workload.drainits {
                checked += 1;
                if let Err(e) = run_real_drainit(dr) {
                    failures.push(format!("{name}/{}: {e}", dr.container));
                }
            }
        }
    }
    assert!(
        checked >= EXPECTED_EXAMPLES.len(),
        "only {checked} drainit containers"
    );
    assert!(failures.is_empty(), "{}", failures.join("\n"));

    // And the same run does reject what drainit must reject.
    let env = HashMap::from([(
        "DRAINIT_PROPAGATION_DELAY".to_string(),
        EnvValue::Literal("40s".into()),
    )]);
    let argv: Vec<String> = ["/drainit", "--grace-period=30s", "--", "/app"]
        .map(String::from)
        .to_vec();
    let too_long = parse_drainit("c", &argv, &env).unwrap();
    let err = run_real_drainit(&too_long).expect_err("a 40s delay in a 30s grace period");
    assert!(err.contains("exited"), "{err}");
    let mut misspelt = too_long.clone();
    misspelt.env = vec![("DRAINIT_PROPAGATION_DELAY".into(), "10 parsecs".into())];
    run_real_drainit(&misspelt).expect_err("a bad duration");
}

#[test]
fn env_expansion_follows_kubernetes() {
    let mut vars = HashMap::new();
    vars.insert("A".to_string(), EnvValue::Literal("x".into()));
    let mut problems = Vec::new();
    assert_eq!(
        expand("$(A)/32 $$(A) $A $(", &vars, &mut problems),
        "x/32 $(A) $A $("
    );
    assert!(problems.is_empty());
    assert_eq!(expand("$(B)", &vars, &mut problems), "$(B)");
    assert_eq!(problems.len(), 1);
    assert!(image_is_drainit(Some("ghcr.io/example/drainit:0.1.0")));
    assert!(image_is_drainit(Some("drainit@sha256:00")));
    assert!(!image_is_drainit(Some(
        "ghcr.io/example/nginx-drainit:1.27"
    )));
    assert!(!image_is_drainit(Some("ghcr.io/drainit/web:1")));
}
