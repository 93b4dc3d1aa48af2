//! The optional Kubernetes API client: plumbing beside `traffic`, owned by
//! the event loop like the rest (feature `kubernetes`; without it this is
//! a stub that is never in use).
//!
//! What drainit asks the API, all of it bounded in time and none of it on
//! a path that must not block:
//! - at start, its Pod (at most a second, before the app starts):
//!   `spec.terminationGracePeriodSeconds` becomes the default
//!   `--grace-period`;
//! - when a drain starts, its Pod again: the deletion's own grace goes to
//!   the drain machine as [`Event::Deletion`](crate::lifecycle::Event::Deletion), which may shorten the
//!   delay and the deadline, never lengthen them;
//! - during a drain, the namespace's EndpointSlices (list, then watch
//!   with bookmarks; 410 Gone relists) until this pod's endpoints are
//!   gone or not serving: [`Event::Endpoint`](crate::lifecycle::Event::Endpoint), reported beside the
//!   traffic, and with `auto` the delay's end waits for it;
//! - an Event on the pod when a drain starts and when it ends, posted by
//!   one task from a short queue (full: dropped).
//!
//! Outside a pod, with `--kubernetes off`, without a token or CA, with
//! RBAC refusing, or with the API slow or down at start, drainit behaves
//! as without it, after one line that says what is missing.

#[cfg(feature = "kubernetes")]
mod client;
#[cfg(feature = "kubernetes")]
mod endpoints;
#[cfg(feature = "kubernetes")]
mod https;
#[cfg(feature = "kubernetes")]
mod objects;

#[cfg(not(feature = "kubernetes"))]
pub use self::absent::{start, Kube};
#[cfg(feature = "kubernetes")]
pub use self::client::{start, Kube};

#[cfg(not(feature = "kubernetes"))]
mod absent {
    use tokio::sync::mpsc;
    use tracing::debug;

    use crate::cli::Settings;
    use crate::lifecycle::{Event, Trigger};

    /// Built without the feature: never in use.
    pub enum Kube {}

    impl Kube {
        /// Never called: no value exists.
        pub fn drain_started(&mut self, _trigger: Trigger, _summary: String) {}
        /// Never called: no value exists.
        pub fn drain_ended(&mut self, _summary: String, _warning: bool) {}
        /// Never called: no value exists.
        pub async fn finish(self) {}
    }

    /// Without the feature there is no API client.
    pub async fn start(_settings: &mut Settings, _machine: mpsc::Sender<Event>) -> Option<Kube> {
        debug!("built without the kubernetes feature: the Kubernetes API is not used");
        None
    }
}
