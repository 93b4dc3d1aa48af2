//! Every trigger order, on a paused clock.

use std::sync::Mutex;

use tokio::task::JoinHandle;

use super::*;

const DELAY: Duration = Duration::from_secs(5);
const GRACE: Duration = Duration::from_secs(30);
const MARGIN: Duration = Duration::from_secs(2);

type Log = Arc<Mutex<Vec<(&'static str, Duration)>>>;

/// Records each action with its time since the harness started.
struct Recorder {
    log: Log,
    start: Instant,
}

impl Recorder {
    fn record(&self, action: &'static str) {
        self.log
            .lock()
            .expect("log lock")
            .push((action, self.start.elapsed()));
    }
}

impl Actions for Recorder {
    fn stop(&mut self) {
        self.record("stop");
    }
    fn kill(&mut self) {
        self.record("kill");
    }
    fn drain_started(&mut self) {
        self.record("drain");
    }
}

struct Harness {
    events: mpsc::Sender<Event>,
    status: watch::Receiver<Status>,
    log: Log,
    metrics: Arc<Metrics>,
    task: JoinHandle<AppExit>,
    start: Instant,
}

fn timeline() -> Timeline {
    Timeline {
        propagation_delay: DELAY,
        unready_delay: Duration::ZERO,
        grace_period: GRACE,
        kill_margin: MARGIN,
        has_ready_check: false,
        sidecar: false,
    }
}

impl Harness {
    async fn start(timeline: Timeline) -> Harness {
        let log = Log::default();
        let start = Instant::now();
        let metrics = Arc::new(Metrics::new());
        let recorder = Recorder {
            log: log.clone(),
            start,
        };
        let (lifecycle, status) = Lifecycle::new(timeline, recorder, metrics.clone());
        let (events, receiver) = mpsc::channel(16);
        let task = tokio::spawn(lifecycle.run(receiver));
        let harness = Harness {
            events,
            status,
            log,
            metrics,
            task,
            start,
        };
        harness.send(Event::Spawned(42)).await;
        harness
    }

    async fn send(&self, event: Event) {
        self.events.send(event).await.expect("lifecycle is running");
        settle().await;
    }

    /// Moves the paused clock to `at` after the start, firing timers on the way.
    async fn at(&self, at: Duration) {
        tokio::time::sleep_until(self.start + at).await;
        settle().await;
    }

    fn phase(&self) -> Phase {
        self.status.borrow().phase
    }

    fn ready(&self) -> bool {
        self.status.borrow().ready
    }

    fn actions(&self) -> Vec<(&'static str, Duration)> {
        self.log.lock().expect("log lock").clone()
    }

    async fn exit(self, exit: AppExit) -> AppExit {
        let _ = self.events.send(Event::AppExited(exit)).await;
        self.task.await.expect("lifecycle task")
    }
}

async fn settle() {
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
}

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

#[tokio::test(start_paused = true)]
async fn prestop_then_sigterm_gives_one_delay() {
    let h = Harness::start(timeline()).await;
    assert_eq!((h.phase(), h.ready()), (Phase::Running, true));
    h.at(secs(1)).await;
    h.send(Event::Drain(Trigger::Prestop)).await;
    assert_eq!((h.phase(), h.ready()), (Phase::Draining, false));
    // The kubelet's SIGTERM arrives when the hook has been running a while.
    h.at(secs(4)).await;
    h.send(Event::Drain(Trigger::Signal(Sig::TERM))).await;
    assert_eq!(h.status.borrow().drain_trigger, Some(Trigger::Prestop));
    h.at(secs(5)).await;
    assert_eq!(
        h.phase(),
        Phase::Draining,
        "stop signal must not come before the delay"
    );
    h.at(secs(6)).await;
    assert_eq!(h.phase(), Phase::Stopping);
    assert_eq!(h.actions(), [("drain", secs(1)), ("stop", secs(6))]);
    let exit = h.exit(AppExit::Code(0)).await;
    assert_eq!(exit, AppExit::Code(0));
}

#[tokio::test(start_paused = true)]
async fn sigterm_then_prestop_gives_one_delay() {
    let h = Harness::start(timeline()).await;
    h.send(Event::Drain(Trigger::Signal(Sig::TERM))).await;
    h.at(secs(3)).await;
    h.send(Event::Drain(Trigger::Prestop)).await;
    h.at(secs(20)).await;
    assert_eq!(h.actions(), [("drain", secs(0)), ("stop", secs(5))]);
    assert_eq!(
        h.status.borrow().drain_trigger,
        Some(Trigger::Signal(Sig::TERM))
    );
    assert_eq!(h.exit(AppExit::Code(3)).await.exit_code(), 3);
}

#[tokio::test(start_paused = true)]
async fn second_prestop_does_not_extend_the_delay() {
    let h = Harness::start(timeline()).await;
    h.send(Event::Drain(Trigger::Prestop)).await;
    h.at(secs(4)).await;
    h.send(Event::Drain(Trigger::Prestop)).await;
    h.at(secs(8)).await;
    assert_eq!(h.actions(), [("drain", secs(0)), ("stop", secs(5))]);
    let drains = h.metrics.render(&h.status.borrow());
    assert!(
        drains.contains("drainit_drains_total{trigger=\"prestop\"} 1"),
        "{drains}"
    );
}

#[tokio::test(start_paused = true)]
async fn app_exit_during_the_delay_ends_without_a_stop_signal() {
    let h = Harness::start(timeline()).await;
    h.send(Event::Drain(Trigger::Prestop)).await;
    h.at(secs(2)).await;
    let status = h.status.clone();
    let exit = h.exit(AppExit::Code(7)).await;
    assert_eq!(exit.exit_code(), 7);
    assert_eq!(status.borrow().phase, Phase::Exited);
    assert!(status.borrow().stop_sent.is_none());
}

#[tokio::test(start_paused = true)]
async fn app_exit_during_stopping() {
    let h = Harness::start(timeline()).await;
    h.send(Event::Drain(Trigger::Signal(Sig::TERM))).await;
    h.at(secs(6)).await;
    assert_eq!(h.phase(), Phase::Stopping);
    let log = h.log.clone();
    let status = h.status.clone();
    assert_eq!(
        h.exit(AppExit::Signal(Sig::TERM)).await.exit_code(),
        128 + 15
    );
    assert_eq!(status.borrow().phase, Phase::Exited);
    assert!(!log.lock().expect("log").iter().any(|(a, _)| *a == "kill"));
}

#[tokio::test(start_paused = true)]
async fn app_exit_while_running() {
    let h = Harness::start(timeline()).await;
    h.at(secs(100)).await;
    assert!(h.actions().is_empty());
    assert_eq!(h.exit(AppExit::Code(1)).await, AppExit::Code(1));
}

#[tokio::test(start_paused = true)]
async fn app_ignoring_the_stop_signal_is_killed_at_grace_minus_margin() {
    let h = Harness::start(timeline()).await;
    h.at(secs(10)).await;
    h.send(Event::Drain(Trigger::Prestop)).await;
    h.at(secs(10 + 27)).await;
    assert!(!h.status.borrow().deadline_hit);
    h.at(secs(10 + 28)).await;
    assert!(h.status.borrow().deadline_hit);
    assert_eq!(
        h.actions(),
        [("drain", secs(10)), ("stop", secs(15)), ("kill", secs(38))]
    );
    let metrics = h.metrics.render(&h.status.borrow());
    assert!(
        metrics.contains("drainit_forced_kills_total 1"),
        "{metrics}"
    );
    assert_eq!(h.exit(AppExit::Signal(Sig::KILL)).await.exit_code(), 137);
}

#[tokio::test(start_paused = true)]
async fn unready_delay_keeps_ready_for_a_while() {
    let h = Harness::start(Timeline {
        unready_delay: secs(2),
        ..timeline()
    })
    .await;
    h.send(Event::Drain(Trigger::Prestop)).await;
    assert_eq!((h.phase(), h.ready()), (Phase::Draining, true));
    h.at(Duration::from_millis(1999)).await;
    assert!(h.ready());
    h.at(secs(2)).await;
    assert!(!h.ready());
    assert_eq!(h.phase(), Phase::Draining);
}

#[tokio::test(start_paused = true)]
async fn zero_delay_stops_at_once() {
    let h = Harness::start(Timeline {
        propagation_delay: Duration::ZERO,
        ..timeline()
    })
    .await;
    h.send(Event::Drain(Trigger::Signal(Sig::TERM))).await;
    assert_eq!(h.phase(), Phase::Stopping);
    assert_eq!(h.actions(), [("drain", secs(0)), ("stop", secs(0))]);
}

#[tokio::test(start_paused = true)]
async fn ready_check_gates_starting_and_running() {
    let h = Harness::start(Timeline {
        has_ready_check: true,
        ..timeline()
    })
    .await;
    assert_eq!((h.phase(), h.ready()), (Phase::Starting, false));
    h.send(Event::AppCheck(CheckResult::Refused)).await;
    assert_eq!((h.phase(), h.ready()), (Phase::Starting, false));
    h.send(Event::AppCheck(CheckResult::Ready)).await;
    assert_eq!((h.phase(), h.ready()), (Phase::Running, true));
    h.send(Event::AppCheck(CheckResult::NotReady)).await;
    assert_eq!((h.phase(), h.ready()), (Phase::Running, false));
    h.send(Event::AppCheck(CheckResult::Ready)).await;
    assert!(h.ready());
    h.send(Event::Drain(Trigger::Prestop)).await;
    h.send(Event::AppCheck(CheckResult::Ready)).await;
    assert!(!h.ready(), "once draining, never ready again");
}

#[tokio::test(start_paused = true)]
async fn drain_while_starting_never_turns_ready() {
    let h = Harness::start(Timeline {
        has_ready_check: true,
        ..timeline()
    })
    .await;
    h.send(Event::Drain(Trigger::Signal(Sig::TERM))).await;
    h.send(Event::AppCheck(CheckResult::Ready)).await;
    assert_eq!((h.phase(), h.ready()), (Phase::Draining, false));
}

#[tokio::test(start_paused = true)]
async fn trigger_after_exit_is_ignored() {
    let h = Harness::start(timeline()).await;
    let status = h.status.clone();
    let _ = h.exit(AppExit::Code(0)).await;
    let phases: Vec<Phase> = status
        .borrow()
        .transitions
        .iter()
        .map(|t| t.phase)
        .collect();
    assert_eq!(phases, [Phase::Starting, Phase::Running, Phase::Exited]);
}

#[tokio::test(start_paused = true)]
async fn sidecar_ends_when_the_app_is_gone() {
    let h = Harness::start(Timeline {
        has_ready_check: true,
        sidecar: true,
        ..timeline()
    })
    .await;
    h.send(Event::AppCheck(CheckResult::Ready)).await;
    h.send(Event::AppCheck(CheckResult::Refused)).await;
    assert_eq!(
        h.phase(),
        Phase::Running,
        "a refused check outside a drain is only unready"
    );
    h.send(Event::Drain(Trigger::Signal(Sig::TERM))).await;
    h.at(secs(5)).await;
    assert_eq!(h.phase(), Phase::Stopping);
    h.events
        .send(Event::AppCheck(CheckResult::Refused))
        .await
        .expect("running");
    assert_eq!(h.task.await.expect("task"), AppExit::Gone);
}

#[tokio::test(start_paused = true)]
async fn sidecar_ends_at_the_deadline() {
    let h = Harness::start(Timeline {
        has_ready_check: true,
        sidecar: true,
        ..timeline()
    })
    .await;
    h.send(Event::AppCheck(CheckResult::Ready)).await;
    h.send(Event::Drain(Trigger::Prestop)).await;
    let exit = h.task.await.expect("task");
    assert_eq!(exit, AppExit::Gone);
    assert_eq!(h.start.elapsed(), secs(28));
}

#[test]
fn budget_check() {
    assert!(timeline().budget_problem().is_none());
    let tight = Timeline {
        propagation_delay: secs(28),
        ..timeline()
    };
    let problem = tight.budget_problem().expect("28s + 2s does not fit 30s");
    assert!(
        problem.contains("28.0s") && problem.contains("30.0s"),
        "{problem}"
    );
}
