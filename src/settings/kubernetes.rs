//! `--kubernetes` and where the in-cluster convention's files and names
//! are found: the flags of the optional Kubernetes API use (issue 18).

use clap::ValueEnum;

/// Whether drainit uses the Kubernetes API when it finds itself in a pod.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum KubernetesApi {
    /// Use it when the in-cluster convention is there (a service account
    /// token and `KUBERNETES_SERVICE_HOST`); else behave as without it.
    Auto,
    /// Never use it.
    Off,
}

/// Where the service account's files are mounted in every pod that has one.
pub const SERVICE_ACCOUNT_DIR: &str = "/var/run/secrets/kubernetes.io/serviceaccount";
