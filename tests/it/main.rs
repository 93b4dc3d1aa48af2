//! The integration tests that can share one process, as one test binary:
//! each module was a binary of its own, and linking the same helpers
//! seventeen times cost more than running them.
//!
//! A new test file goes here as a module (`tests/it/NAME.rs` plus a
//! `mod NAME;` line below) and reaches the helpers as `crate::common`
//! and `crate::pid1_support`. Only tests that change the test process
//! itself in a way that other tests would see keep a binary of their
//! own: `tests/pid1_leftovers.rs` (makes this process a subreaper) and
//! `tests/container.rs` (its own `main`, one engine for every case).

#[path = "../common/mod.rs"]
mod common;
#[path = "../pid1_support/mod.rs"]
mod pid1_support;

mod admin;
mod admin_connections;
mod admin_prestop;
mod auto_delay;
mod cli;
mod install;
mod logging;
mod pid1;
mod pid1_hardening;
mod pid1_limits;
mod pid1_signals;
mod pid1_tty;
mod prestop_node;
mod ready_check;
mod ready_check_dns;
mod rollout;
mod sidecar;
mod timeline;
mod traffic;
