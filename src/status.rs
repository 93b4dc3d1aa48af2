//! What the admin server answers from: the [`Snapshot`] the event loop
//! publishes (the drain machine's state and the drain's traffic report, one
//! value), and `/status`, that snapshot and the settings in force as JSON.
//!
//! Built with `serde_json::json!`, so no serde derives land in the binary.

use std::time::{Duration, SystemTime};

use serde_json::{json, Value};
use tokio::time::Instant;

use crate::cli::Settings;
use crate::lifecycle::{AppExit, CheckResult, Status};
use crate::process_exit::ProcessExit;
use crate::settings::{AdminListen, KubernetesApi, SignalTarget, TrafficPorts};
use crate::traffic::DrainReport;

/// The settings as `/status` shows them; the token's value is never shown.
pub fn settings_json(settings: &Settings, mode: &str) -> Value {
    let duration = |d: Duration| humantime::format_duration(d).to_string();
    json!({
        "mode": mode,
        "propagation_delay": settings.propagation_delay.to_string(),
        "propagation_delay_min": duration(settings.propagation_delay_min),
        "propagation_delay_max": duration(settings.propagation_delay_max),
        "quiet_window": settings.quiet_window.map(duration),
        "traffic_ports": match &settings.traffic_ports {
            TrafficPorts::AllListening => "all".to_string(),
            TrafficPorts::Only(ports) => ports.iter().map(ToString::to_string).collect::<Vec<_>>().join(","),
        },
        "unready_delay": duration(settings.unready_delay),
        "grace_period": duration(settings.grace_period),
        "kill_margin": duration(settings.kill_margin),
        "leftover_grace": duration(settings.leftover_grace),
        "stop_signal": settings.stop_signal.to_string(),
        "drain_on": settings.drain_on.0.iter().map(ToString::to_string).collect::<Vec<_>>(),
        "ready_check": settings.ready_check.as_ref().map(ToString::to_string),
        "ready_check_interval": duration(settings.ready_check_interval),
        "admin_listen": match settings.admin_listen {
            AdminListen::Off => "off".to_string(),
            AdminListen::At(addr) => addr.to_string(),
        },
        "signal_target": match settings.signal_target {
            SignalTarget::Child => "child",
            SignalTarget::Group => "group",
        },
        "rewrites": settings.rewrites.iter().map(|r| {
            format!("{}:{}", r.from, r.to.map_or_else(|| "0".to_string(), |to| to.to_string()))
        }).collect::<Vec<_>>(),
        "prestop_allow_from": settings.prestop_allow_from.as_ref().map(|list| {
            list.node.then(|| "node".to_string()).into_iter()
                .chain(list.networks.iter().map(ToString::to_string))
                .collect::<Vec<_>>()
        }),
        "prestop_token_required": settings.prestop_token.is_some(),
        "strict": settings.strict,
        "drain_notify": settings.drain_notify.as_ref().map(ToString::to_string),
        "kubernetes": match settings.kubernetes {
            KubernetesApi::Auto => "auto",
            KubernetesApi::Off => "off",
        },
        "remap_exit": settings.remap_exit.iter().map(|r| format!("{}:{}", r.from, r.to)).collect::<Vec<_>>(),
    })
}

/// The event loop's one published value, on a watch channel for the
/// admin server; nothing in the loop reads it back.
#[derive(Debug, Clone)]
pub struct Snapshot {
    /// The drain machine's state.
    pub machine: Status,
    /// What the drain's traffic showed, once the stop signal went out.
    pub traffic: Option<DrainReport>,
}

/// Renders the current snapshot with the settings.
pub fn render(snapshot: &Snapshot, settings: &Value) -> String {
    let status = &snapshot.machine;
    let now = Instant::now();
    let ago = |t: Instant| now.saturating_duration_since(t).as_secs_f64();
    let transitions: Vec<Value> = status
        .transitions
        .iter()
        .map(|t| json!({ "phase": t.phase.name(), "at": rfc3339(t.at), "seconds_ago": ago(t.instant) }))
        .collect();
    let state = &status.state;
    let drain = state.drain().map(|drain| {
        json!({
            "trigger": drain.trigger.to_string(),
            "seconds": ago(drain.since),
            "stop_signal_sent_after_seconds": state.stop_sent().map(|t| t.saturating_duration_since(drain.since).as_secs_f64()),
            "deadline_hit": state.deadline_hit(),
            "endpoint_removed_after_seconds": status.endpoint_removed.map(|t| t.saturating_duration_since(drain.since).as_secs_f64()),
            "deadline": {
                "source": status.deadline.source(),
                "grace_seconds": status.deadline.grace.as_secs_f64(),
                "kill_after_seconds": status.deadline.kill_after.as_secs_f64(),
                "propagation_delay_seconds": status.deadline.propagation_delay.as_secs_f64(),
                "why": status.deadline.to_string(),
            },
            "traffic": snapshot.traffic.as_ref().map(|report| report.to_json()),
        })
    });
    let exit = state.exit().map(|exit| {
        let (code, signal) = match exit {
            AppExit::Process(ProcessExit::Code(code)) => (Some(code), None),
            AppExit::Process(ProcessExit::Signal(sig)) => (None, Some(sig.to_string())),
            AppExit::Process(ProcessExit::Undecoded(_)) | AppExit::Gone => (None, None),
        };
        json!({ "code": code, "signal": signal, "exit_code": exit.exit_code() })
    });
    let check = status.app_check.map(|c| match c {
        CheckResult::Ready => "ready",
        CheckResult::NotReady => "not ready",
        CheckResult::Refused => "refused",
    });
    let body = json!({
        "phase": status.phase().name(),
        "ready": state.ready(now),
        "transitions": transitions,
        "drain": drain,
        "app": { "pid": status.child_pid, "check": check, "exit": exit },
        "settings": settings,
    });
    format!("{body}\n")
}

fn rfc3339(at: SystemTime) -> String {
    humantime::format_rfc3339_millis(at).to_string()
}
