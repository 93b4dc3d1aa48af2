//! Settings after parsing: the checks across flags no single parser can
//! see, the values derived from them, and (in the leaf modules) each
//! flag's value type beside its parser. The clap struct itself is
//! [`crate::cli::Settings`]; this layer imports no mechanism, so
//! `drainit-check` reads drainit's settings without its runtime.

pub mod admin;
pub mod choices;
pub mod delay;
pub mod drain_notify;
pub mod exit_remap;
pub mod kubernetes;
pub mod ready_check;
pub mod signal_flags;
pub mod traffic_ports;

use std::time::Duration;

pub use self::admin::{AdminListen, CidrList};
pub use self::choices::{LogFormat, SignalTarget};
pub use self::delay::{AutoBounds, PropagationDelay};
pub use self::drain_notify::DrainNotify;
pub use self::exit_remap::ExitRemap;
pub use self::kubernetes::KubernetesApi;
pub use self::ready_check::{ParseReadyCheckError, ReadyCheck};
pub use self::signal_flags::SigList;
pub use self::traffic_ports::{TrafficPorts, TrafficPortsError};
use crate::cli::{Cli, Mode, Settings};

/// A combination of flags that cannot work together.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SettingsError {
    /// `/ready` would still answer 200 when the app is told to stop.
    #[error(
        "--unready-delay {unready} must be shorter than --propagation-delay {propagation}: /ready would still answer 200 when the app is told to stop"
    )]
    UnreadyDelayTooLong {
        /// `--unready-delay`, formatted.
        unready: String,
        /// `--propagation-delay`, formatted.
        propagation: String,
    },
    /// The floor of `auto` above its ceiling.
    #[error("--propagation-delay-min {min} is above --propagation-delay-max {max}")]
    FloorAboveCeiling {
        /// `--propagation-delay-min`, formatted.
        min: String,
        /// `--propagation-delay-max`, formatted.
        max: String,
    },
    /// The same exit code is remapped to two different codes.
    #[error(
        "--remap-exit maps {from} twice (to {first} and to {second}): keep one rule per exit code"
    )]
    AmbiguousRemap {
        /// The code listed twice.
        from: u8,
        /// Its first target.
        first: u8,
        /// Its other target.
        second: u8,
    },
    /// `drainit sidecar` without `--ready-check`.
    #[error("sidecar mode needs --ready-check URL (e.g. http://127.0.0.1:8080/healthz) to follow the app")]
    SidecarNeedsReadyCheck,
    /// `drainit sidecar --drain-notify SIGNAL` with no way to find the app:
    /// the signal could never be sent, and every drain would only warn.
    #[error("sidecar mode sends --drain-notify {signal} only to an app it can find: add --app-pid-file PATH or --app-process NAME (shareProcessNamespace), or use --drain-notify http://127.0.0.1:PORT/PATH")]
    SidecarCannotNotify {
        /// The signal asked for.
        signal: String,
    },
}

impl Cli {
    /// Checks the settings ([`Settings::validate`]) and what the mode needs
    /// of them.
    pub fn validate(&self) -> Result<(), SettingsError> {
        self.settings.validate()?;
        if matches!(self.mode, Some(Mode::Sidecar(_))) && self.settings.ready_check.is_none() {
            return Err(SettingsError::SidecarNeedsReadyCheck);
        }
        if let (Some(Mode::Sidecar(sidecar)), Some(DrainNotify::Signal(signal))) =
            (&self.mode, &self.settings.drain_notify)
        {
            if sidecar.app_pid_file.is_none() && sidecar.app_process.is_none() {
                return Err(SettingsError::SidecarCannotNotify {
                    signal: signal.to_string(),
                });
            }
        }
        Ok(())
    }
}

impl Settings {
    /// Checks the combinations of flags no single parser can see.
    pub fn validate(&self) -> Result<(), SettingsError> {
        // Refused rather than clamped: the user asked for /ready to stay up
        // for a time that never comes, and a pod that fails to start shows
        // the mistake at deploy time, while a clamp warning is easily missed.
        let format = |d: Duration| humantime::format_duration(d).to_string();
        if !self.unready_delay.is_zero() && self.unready_delay >= self.shortest_delay() {
            return Err(SettingsError::UnreadyDelayTooLong {
                unready: format(self.unready_delay),
                propagation: match self.propagation_delay {
                    PropagationDelay::Fixed(delay) => format(delay),
                    PropagationDelay::Auto => {
                        format!(
                            "auto (--propagation-delay-min {})",
                            format(self.propagation_delay_min)
                        )
                    }
                },
            });
        }
        if self.propagation_delay_min > self.propagation_delay_max {
            return Err(SettingsError::FloorAboveCeiling {
                min: format(self.propagation_delay_min),
                max: format(self.propagation_delay_max),
            });
        }
        for (i, rule) in self.remap_exit.iter().enumerate() {
            let other = self.remap_exit[..i]
                .iter()
                .find(|earlier| earlier.from == rule.from && earlier.to != rule.to);
            if let Some(earlier) = other {
                return Err(SettingsError::AmbiguousRemap {
                    from: rule.from,
                    first: earlier.to,
                    second: rule.to,
                });
            }
        }
        Ok(())
    }

    /// The bounds of `--propagation-delay auto`.
    pub fn auto_bounds(&self) -> AutoBounds {
        AutoBounds {
            min: self.propagation_delay_min,
            max: self.propagation_delay_max,
            quiet_window: self.quiet_window,
        }
    }

    /// The longest the app may keep serving after a drain starts: the
    /// fixed delay, or the ceiling of `auto`. The budget is checked with it.
    pub fn longest_delay(&self) -> Duration {
        match self.propagation_delay {
            PropagationDelay::Fixed(delay) => delay,
            PropagationDelay::Auto => self.propagation_delay_max,
        }
    }

    /// The soonest the stop signal can go out: the fixed delay, or the
    /// floor of `auto`.
    pub fn shortest_delay(&self) -> Duration {
        match self.propagation_delay {
            PropagationDelay::Fixed(delay) => delay,
            PropagationDelay::Auto => self.propagation_delay_min,
        }
    }

    /// drainit's exit code after `--remap-exit`: the first rule for `code`
    /// wins; codes without a rule pass unchanged.
    pub fn remap_exit(&self, code: u8) -> u8 {
        self.remap_exit
            .iter()
            .find(|rule| rule.from == code)
            .map_or(code, |rule| rule.to)
    }
}
