//! The app's traffic, one front door: the I/O that reads the app's TCP
//! sockets (`sockets`, `sock_diag`, `accounting`, the `sampler` thread),
//! the pure evidence that decides when `--propagation-delay auto` ends and
//! reports every drain (`evidence`), and the event loop's adapter between
//! the two ([`TrafficWatch`]).
//!
//! Names say which is which: a [`Sample`] is what one dump counted, its
//! [`Evidence`] what the pure logic takes from it, [`DrainEvidence`] one
//! drain's evidence (not the drain machine's `lifecycle::Drain`), and a
//! [`DrainReport`] what that drain tells the logs, `/status` and
//! `/metrics`.

mod accounting;
mod evidence;
mod sampler;
mod sock_diag;
mod sockets;
mod watch;

pub use self::evidence::{
    Decision, DelayEnd, DrainEvidence, DrainReport, EndReason, Evidence, TrafficHistory,
};
pub use self::sampler::Sampler;
pub use self::sockets::{OwnClients, PortCounter, Sample, TrafficError, DRAIN_INTERVAL};
pub(crate) use self::watch::TrafficWatch;

// For the I/O modules' `super::TrafficPorts`.
use crate::settings::TrafficPorts;
