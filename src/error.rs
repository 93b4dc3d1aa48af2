//! drainit's own failures (the app's are exit codes, not errors).

use std::net::SocketAddr;

/// A reason drainit cannot do its job; each maps to an exit code.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The admin address is taken or not ours.
    #[error("failed to listen on admin address {addr} (--admin-listen): {source}")]
    AdminBind {
        /// The address from `--admin-listen`.
        addr: SocketAddr,
        /// What bind said.
        source: std::io::Error,
    },
    /// The admin server could not start.
    #[error("failed to start the admin server: {0}")]
    Admin(std::io::Error),
    /// The signalfd for the handled signals could not be opened.
    #[error("failed to open the signal stream (signalfd): {0}")]
    Signals(std::io::Error),
    /// `--strict` and a budget that does not fit.
    #[error("{0} (--strict)")]
    Budget(String),
    /// `drainit install DIR` could not put the binary there.
    #[error(transparent)]
    Install(#[from] crate::install::InstallError),
    /// The async runtime could not be built.
    #[error("failed to start the runtime: {0}")]
    Runtime(std::io::Error),
}

impl Error {
    /// drainit's exit code for this failure: 2 for bad settings, 1 otherwise.
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::Budget(_) => 2,
            _ => 1,
        }
    }
}
