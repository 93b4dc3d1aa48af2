//! What the app left behind: every remaining descendant gets SIGTERM,
//! `--leftover-grace` to go, then SIGKILL, before drainit exits.
//!
//! "Descendant" depends on where drainit runs:
//! - as PID 1, every other process of the PID namespace (the kernel
//!   SIGKILLs them all when init exits, so they get their SIGTERM first):
//!   `kill(-1)` reaches each one, whatever its group or session;
//! - as a subreaper, the processes re-parented to drainit (orphans of the
//!   app, in any group or session) and the members of the app's process
//!   group; those appearing later (re-parented as their parents die) are
//!   signalled when they appear.
//!
//! SIGCONT goes only to the ones that are stopped, so that they can act on
//! the SIGTERM; a running process sees the SIGTERM alone. The wait reaps
//! throughout, so zombies never count as alive.

use std::collections::HashSet;
use std::time::Duration;

use tokio::time::Instant;
use tracing::{error, info, warn};

use crate::child::{self, Process};
use crate::durations::secs;
use crate::os;
use crate::reaper;
use crate::signal_stream::SignalStream;
use crate::signals::Sig;

/// How often the wait re-checks between SIGCHLDs.
const POLL: Duration = Duration::from_millis(20);
/// How long SIGKILLed leftovers get to disappear before drainit gives up.
const KILLED_WAIT: Duration = Duration::from_secs(5);

/// One process as `/proc/PID/stat` shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Seen {
    pid: i32,
    ppid: i32,
    pgid: i32,
    stopped: bool,
}

/// Where the leftovers are, and how to reach them.
struct Scope {
    me: i32,
    /// PID 1 with a `/proc` of its own namespace (else only `kill(-1)` works).
    pid1: bool,
    proc_is_ours: bool,
    app_group: Option<i32>,
}

impl Scope {
    fn new(app_group: Option<i32>) -> Scope {
        let me = i32::try_from(std::process::id()).unwrap_or(0);
        // /proc/self names drainit by its pid in the namespace /proc was
        // mounted for: 1 (as PID 1) only if that is drainit's own.
        let proc_self = std::fs::read_link("/proc/self")
            .ok()
            .and_then(|p| p.to_str()?.parse::<i32>().ok());
        Scope {
            me,
            pid1: os::is_pid1(),
            proc_is_ours: proc_self == Some(me),
            app_group,
        }
    }

    /// Every leftover `/proc` shows now.
    fn scan(&self) -> Vec<Seen> {
        if !self.proc_is_ours {
            return Vec::new();
        }
        let Ok(entries) = std::fs::read_dir("/proc") else {
            return Vec::new();
        };
        entries
            .flatten()
            .filter_map(|entry| entry.file_name().to_str()?.parse::<i32>().ok())
            .filter(|pid| *pid != self.me)
            .filter_map(read_stat)
            .filter(|seen| self.pid1 || seen.ppid == self.me || Some(seen.pgid) == self.app_group)
            .collect()
    }

    /// Whether any leftover is still alive (after reaping what exited).
    fn any_alive(&self, reaped: &dyn Fn()) -> bool {
        reap_exited(reaped);
        self.alive(|| self.scan())
    }

    /// Whether a leftover is alive; `scan` gives what `/proc` shows after
    /// the last reap (not needed as PID 1, where `kill(-1, 0)` answers).
    fn alive(&self, scan: impl FnOnce() -> Vec<Seen>) -> bool {
        if self.pid1 {
            return exists(-1);
        }
        self.app_group.is_some_and(|group| exists(-group)) || !scan().is_empty()
    }

    /// Sends `sig` to every leftover, and SIGCONT after a SIGTERM to the
    /// stopped ones; records who was seen in `signalled`.
    fn broadcast(&self, sig: Sig, signalled: &mut HashSet<i32>) {
        if self.pid1 {
            let _ = child::kill(-1, sig);
        }
        if let Some(group) = self.app_group {
            let _ = child::kill(-group, sig);
        }
        for seen in self.scan() {
            signalled.insert(seen.pid);
            // kill(-1) and the group signal reached these already.
            let reached = self.pid1 || Some(seen.pgid) == self.app_group;
            self.signal_one(seen, sig, !reached);
        }
    }

    /// One poll of a round: reaps what exited, signals the leftovers that
    /// appeared since the last poll (orphans re-parented as their parents
    /// die) and says whether any is still alive, from one `/proc` scan.
    fn catch_up_and_check(
        &self,
        sig: Sig,
        signalled: &mut HashSet<i32>,
        reaped: &dyn Fn(),
    ) -> bool {
        reap_exited(reaped);
        let seen = self.scan();
        for leftover in &seen {
            if signalled.insert(leftover.pid) {
                self.signal_one(*leftover, sig, true);
            }
        }
        self.alive(|| seen)
    }

    /// `sig` (when `send`) and, after a SIGTERM, SIGCONT if it is stopped;
    /// through a pidfd checked to still name the process that was seen.
    fn signal_one(&self, seen: Seen, sig: Sig, send: bool) {
        let wake = sig == Sig::TERM && seen.stopped;
        if !send && !wake {
            return;
        }
        let Some(process) = Process::verified(seen.pid, |pid| read_stat(pid) == Some(seen)) else {
            return;
        };
        if send {
            let _ = process.signal(sig);
        }
        if wake {
            let _ = process.signal(Sig::CONT);
        }
    }
}

/// Stops the app's leftovers; returns once none is left (or SIGKILL failed).
/// `reaped` is called for every zombie reaped on the way (`/metrics`
/// counts them).
pub async fn stop(
    app_group: Option<i32>,
    grace: Duration,
    signals: &mut SignalStream,
    reaped: &dyn Fn(),
) {
    let scope = Scope::new(app_group);
    if !scope.any_alive(reaped) {
        return;
    }
    info!("app exited; sending SIGTERM to the processes it left behind");
    if round(&scope, Sig::TERM, grace, signals, reaped).await {
        info!("leftover processes exited");
        return;
    }
    warn!(grace = %secs(grace), "leftover processes still running after --leftover-grace; SIGKILL");
    if !round(&scope, Sig::KILL, KILLED_WAIT, signals, reaped).await {
        error!("leftover processes survived SIGKILL; exiting anyway");
    }
}

/// `sig` to every leftover, then up to `limit` for all of them to go, late
/// ones getting `sig` as they appear; whether none is left.
async fn round(
    scope: &Scope,
    sig: Sig,
    limit: Duration,
    signals: &mut SignalStream,
    reaped: &dyn Fn(),
) -> bool {
    let mut signalled = HashSet::new();
    scope.broadcast(sig, &mut signalled);
    wait_until_gone(limit, signals, || {
        !scope.catch_up_and_check(sig, &mut signalled, reaped)
    })
    .await
}

/// Reaps every exited child (the leftovers' zombies among them).
fn reap_exited(reaped: &dyn Fn()) {
    while reaper::reap(1024, |_, _| {
        reaped();
    }) == reaper::Pass::More
    {}
}

/// Waits until `gone()` holds, waking on any signal (SIGCHLD above all)
/// and every [`POLL`], for at most `limit`. Other signals are dropped: the
/// app they were meant for is gone.
async fn wait_until_gone(
    limit: Duration,
    signals: &mut SignalStream,
    mut gone: impl FnMut() -> bool,
) -> bool {
    let deadline = Instant::now().checked_add(limit);
    loop {
        if gone() {
            return true;
        }
        let now = Instant::now();
        if deadline.is_some_and(|deadline| now >= deadline) {
            return false;
        }
        let wake = deadline.map_or(now + POLL, |deadline| deadline.min(now + POLL));
        tokio::select! {
            Some(_) = signals.next() => {}
            () = tokio::time::sleep_until(wake) => {}
        }
    }
}

/// Pid, parent, group and stopped-ness from `/proc/PID/stat`.
fn read_stat(pid: i32) -> Option<Seen> {
    os::with_proc_stat(pid, |mut fields| {
        let state = fields.next()?;
        let ppid = fields.next()?.parse().ok()?;
        let pgid = fields.next()?.parse().ok()?;
        (state != "Z" && state != "X").then_some(Seen {
            pid,
            ppid,
            pgid,
            stopped: state == "T" || state == "t",
        })
    })
}

/// Whether `kill(target, 0)` finds a process: `-pgid` for a group with a
/// member, `-1` (as PID 1) for any process besides drainit. Zombies count:
/// the reap before it has collected drainit's own; those of other parents
/// die with their parent.
fn exists(target: i32) -> bool {
    // SAFETY: kill(2) with signal 0 takes two integers and sends nothing.
    unsafe { libc::kill(target, 0) == 0 }
}
