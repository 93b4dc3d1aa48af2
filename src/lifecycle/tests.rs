//! Every trigger order as a table: a row is a sequence of inputs at given
//! times, with the steps the machine must ask for and what `/ready` and
//! the phase must say after each input.

use super::*;

const DELAY: Duration = Duration::from_secs(5);
const GRACE: Duration = Duration::from_secs(30);
const MARGIN: Duration = Duration::from_secs(2);

fn s(seconds: u64) -> Duration {
    Duration::from_secs(seconds)
}

fn ms(millis: u64) -> Duration {
    Duration::from_millis(millis)
}

fn timeline() -> Timeline {
    Timeline {
        propagation_delay: DELAY,
        auto: false,
        unready_delay: Duration::ZERO,
        grace_period: GRACE,
        kill_margin: MARGIN,
        has_ready_check: false,
        app_exit: AppExitSeen::Reaped,
        await_endpoint: false,
    }
}

/// One input of a row.
#[derive(Debug, Clone, Copy)]
enum Input {
    /// An event at this time after the start.
    At(Duration, Event),
    /// Let the clock run to this time after the start, firing every timer on the way.
    Until(Duration),
}

/// What a row expects after its inputs.
struct Expect {
    /// Every step asked for, with the time it was asked for (after the start).
    steps: Vec<(Duration, Step)>,
    /// The phase at the end.
    phase: Phase,
}

const PRESTOP: Event = Event::Drain(Trigger::Prestop);
const TERM: Event = Event::Drain(Trigger::Signal(Sig::TERM));

fn exited(code: i32) -> Event {
    Event::AppExited(AppExit::Process(ProcessExit::Code(code)))
}

/// Runs `inputs` on a fresh machine (app started at 0) and returns every
/// step with its time, plus `/ready` sampled at `probes`.
fn run(
    timeline: Timeline,
    inputs: &[Input],
    probes: &[Duration],
) -> (Machine, Vec<(Duration, Step)>, Vec<bool>) {
    let start = Instant::now();
    let mut machine = Machine::new(timeline, start);
    machine.started(Some(42), start);
    let mut steps = Vec::new();
    let mut ready = Vec::new();
    let mut probes = probes.iter().copied().peekable();
    let mut sample = |machine: &Machine, upto: Duration, ready: &mut Vec<bool>| {
        while let Some(at) = probes.next_if(|at| *at <= upto) {
            ready.push(machine.state().ready(start + at));
        }
    };
    let mut fire_until =
        |machine: &mut Machine, until: Duration, steps: &mut Vec<_>, ready: &mut Vec<bool>| {
            while let Some(timer) = machine.next_timer().filter(|t| *t <= start + until) {
                sample(machine, timer - start - Duration::from_nanos(1), ready);
                for step in machine.on_timer(timer) {
                    steps.push((timer - start, step));
                }
            }
            sample(machine, until, ready);
        };
    for input in inputs {
        match *input {
            Input::At(at, event) => {
                fire_until(&mut machine, at, &mut steps, &mut ready);
                for step in machine.handle(event, start + at) {
                    steps.push((at, step));
                }
            }
            Input::Until(until) => fire_until(&mut machine, until, &mut steps, &mut ready),
        }
    }
    (machine, steps, ready)
}

fn check(name: &str, timeline: Timeline, inputs: &[Input], expect: Expect) {
    let (machine, steps, _) = run(timeline, inputs, &[]);
    assert_eq!(steps, expect.steps, "{name}: steps");
    assert_eq!(machine.state().phase(), expect.phase, "{name}: phase");
}

fn stop(at: Duration) -> (Duration, Step) {
    (
        at,
        Step::Stop {
            after: at,
            cause: StopCause::Timer,
        },
    )
}

#[test]
fn trigger_orders() {
    use Input::{At, Until};
    let started = |t| Step::DrainStarted(t);
    let prestop = Trigger::Prestop;
    let term = Trigger::Signal(Sig::TERM);
    let table: Vec<(&str, Timeline, Vec<Input>, Expect)> = vec![
        (
            "prestop then the kubelet's SIGTERM gives one delay",
            timeline(),
            vec![At(s(1), PRESTOP), At(s(4), TERM), Until(s(20))],
            Expect {
                steps: vec![
                    (s(1), started(prestop)),
                    (
                        s(4),
                        Step::Joined {
                            trigger: term,
                            after: s(3),
                        },
                    ),
                    (
                        s(6),
                        Step::Stop {
                            after: s(5),
                            cause: StopCause::Timer,
                        },
                    ),
                ],
                phase: Phase::Stopping,
            },
        ),
        (
            "SIGTERM then prestop gives one delay",
            timeline(),
            vec![At(s(0), TERM), At(s(3), PRESTOP), Until(s(20))],
            Expect {
                steps: vec![
                    (s(0), started(term)),
                    (
                        s(3),
                        Step::Joined {
                            trigger: prestop,
                            after: s(3),
                        },
                    ),
                    stop(s(5)),
                ],
                phase: Phase::Stopping,
            },
        ),
        (
            "a second SIGTERM during Stopping joins, it is never passed on",
            timeline(),
            vec![At(s(0), TERM), Until(s(6)), At(s(7), TERM)],
            Expect {
                steps: vec![
                    (s(0), started(term)),
                    stop(s(5)),
                    (
                        s(7),
                        Step::Joined {
                            trigger: term,
                            after: s(7),
                        },
                    ),
                ],
                phase: Phase::Stopping,
            },
        ),
        (
            "the app exits during the delay: no stop signal",
            timeline(),
            vec![At(s(0), PRESTOP), At(s(2), exited(7)), Until(s(40))],
            Expect {
                steps: vec![
                    (s(0), started(prestop)),
                    (
                        s(2),
                        Step::Finished {
                            exit: AppExit::Process(ProcessExit::Code(7)),
                            after: s(2),
                            drained: true,
                        },
                    ),
                ],
                phase: Phase::Exited,
            },
        ),
        (
            "the app exits while Running",
            timeline(),
            vec![At(s(3), exited(0)), At(s(4), PRESTOP)],
            Expect {
                steps: vec![(
                    s(3),
                    Step::Finished {
                        exit: AppExit::Process(ProcessExit::Code(0)),
                        after: s(3),
                        drained: false,
                    },
                )],
                phase: Phase::Exited,
            },
        ),
        (
            "an app that ignores the stop signal is killed at grace - margin",
            timeline(),
            vec![At(s(0), TERM), Until(s(60))],
            Expect {
                steps: vec![
                    (s(0), started(term)),
                    stop(s(5)),
                    (
                        s(28),
                        Step::Kill {
                            after: s(28),
                            app_had: Some(s(23)),
                        },
                    ),
                ],
                phase: Phase::Stopping,
            },
        ),
        (
            "a zero delay stops at once",
            Timeline {
                propagation_delay: Duration::ZERO,
                ..timeline()
            },
            vec![At(s(1), TERM)],
            Expect {
                steps: vec![
                    (s(1), started(term)),
                    (
                        s(1),
                        Step::Stop {
                            after: s(0),
                            cause: StopCause::Timer,
                        },
                    ),
                ],
                phase: Phase::Stopping,
            },
        ),
        (
            "a deadline before the delay's end kills without a stop signal",
            Timeline {
                grace_period: s(4),
                kill_margin: s(1),
                ..timeline()
            },
            vec![At(s(0), PRESTOP), Until(s(10))],
            Expect {
                steps: vec![
                    (s(0), started(prestop)),
                    (
                        s(3),
                        Step::Kill {
                            after: s(3),
                            app_had: None,
                        },
                    ),
                ],
                phase: Phase::Stopping,
            },
        ),
        (
            "a sidecar's deadline ends the machine",
            Timeline {
                app_exit: AppExitSeen::Inferred,
                has_ready_check: true,
                ..timeline()
            },
            vec![
                At(s(0), Event::AppCheck(CheckResult::Ready)),
                At(s(1), TERM),
                Until(s(40)),
            ],
            Expect {
                steps: vec![
                    (s(0), Step::CheckPassed),
                    (s(1), started(term)),
                    (
                        s(6),
                        Step::Stop {
                            after: s(5),
                            cause: StopCause::Timer,
                        },
                    ),
                    (
                        s(29),
                        Step::Kill {
                            after: s(28),
                            app_had: Some(s(23)),
                        },
                    ),
                    (
                        s(29),
                        Step::Finished {
                            exit: AppExit::Gone,
                            after: s(23),
                            drained: true,
                        },
                    ),
                ],
                phase: Phase::Exited,
            },
        ),
        (
            "a sidecar learns the app is gone when its check is refused",
            Timeline {
                app_exit: AppExitSeen::Inferred,
                has_ready_check: true,
                ..timeline()
            },
            vec![
                At(s(0), Event::AppCheck(CheckResult::Ready)),
                At(s(1), Event::AppCheck(CheckResult::Refused)),
                At(s(2), TERM),
                At(s(3), Event::AppCheck(CheckResult::Refused)),
            ],
            Expect {
                steps: vec![
                    (s(0), Step::CheckPassed),
                    (s(1), Step::CheckChanged(CheckResult::Refused)),
                    (s(2), started(term)),
                    (
                        s(3),
                        Step::Finished {
                            exit: AppExit::Gone,
                            after: s(1),
                            drained: true,
                        },
                    ),
                ],
                phase: Phase::Exited,
            },
        ),
        (
            "a sidecar takes the app for gone only when refused twice in a row",
            Timeline {
                app_exit: AppExitSeen::Inferred,
                has_ready_check: true,
                ..timeline()
            },
            vec![
                At(s(0), Event::AppCheck(CheckResult::Ready)),
                At(s(1), TERM),
                At(s(2), Event::AppCheck(CheckResult::Refused)),
                At(s(3), Event::AppCheck(CheckResult::NotReady)),
                At(s(4), Event::AppCheck(CheckResult::Refused)),
                At(ms(4_100), Event::AppCheck(CheckResult::Refused)),
            ],
            Expect {
                steps: vec![
                    (s(0), Step::CheckPassed),
                    (s(1), started(term)),
                    (
                        ms(4_100),
                        Step::Finished {
                            exit: AppExit::Gone,
                            after: ms(3_100),
                            drained: true,
                        },
                    ),
                ],
                phase: Phase::Exited,
            },
        ),
        (
            "auto: the evidence ends the delay before its ceiling",
            Timeline {
                auto: true,
                propagation_delay: s(20),
                ..timeline()
            },
            vec![
                At(s(1), TERM),
                At(ms(4_500), Event::DelayOver),
                At(s(9), Event::DelayOver),
            ],
            Expect {
                steps: vec![
                    (s(1), started(term)),
                    (
                        ms(4_500),
                        Step::Stop {
                            after: ms(3_500),
                            cause: StopCause::Quiet,
                        },
                    ),
                ],
                phase: Phase::Stopping,
            },
        ),
        (
            "auto: without evidence the ceiling ends it",
            Timeline {
                auto: true,
                propagation_delay: s(20),
                ..timeline()
            },
            vec![At(s(1), TERM), Until(s(22))],
            Expect {
                steps: vec![
                    (s(1), started(term)),
                    (
                        s(21),
                        Step::Stop {
                            after: s(20),
                            cause: StopCause::Timer,
                        },
                    ),
                ],
                phase: Phase::Stopping,
            },
        ),
        (
            "a fixed delay ignores evidence",
            timeline(),
            vec![At(s(0), TERM), At(s(2), Event::DelayOver), Until(s(6))],
            Expect {
                steps: vec![(s(0), started(term)), stop(s(5))],
                phase: Phase::Stopping,
            },
        ),
        (
            "a drain while Starting (check never passed) still follows the timeline",
            Timeline {
                has_ready_check: true,
                ..timeline()
            },
            vec![
                At(s(1), Event::AppCheck(CheckResult::Refused)),
                At(s(2), PRESTOP),
                Until(s(8)),
            ],
            Expect {
                steps: vec![
                    (s(2), started(prestop)),
                    (
                        s(7),
                        Step::Stop {
                            after: s(5),
                            cause: StopCause::Timer,
                        },
                    ),
                ],
                phase: Phase::Stopping,
            },
        ),
    ];
    for (name, timeline, inputs, expect) in table {
        check(name, timeline, &inputs, expect);
    }
}

#[test]
fn ready_answers_follow_the_state() {
    use Input::{At, Until};
    let checked = Timeline {
        has_ready_check: true,
        ..timeline()
    };
    let unready = Timeline {
        unready_delay: s(2),
        ..timeline()
    };
    let late_unready = Timeline {
        // Longer than the delay: Stopping must still never be ready.
        unready_delay: s(60),
        ..timeline()
    };
    // name, timeline, inputs, when to ask /ready, what it must answer
    type Row = (&'static str, Timeline, Vec<Input>, Vec<Duration>, Vec<bool>);
    let table: Vec<Row> = vec![
        (
            "no check: ready at once, 503 from the drain's start",
            timeline(),
            vec![At(s(10), PRESTOP), Until(s(20))],
            vec![s(0), s(9), ms(10_100), s(14), s(16)],
            vec![true, true, false, false, false],
        ),
        (
            "a check gates Starting, a failure and a recovery move Running",
            checked,
            vec![
                At(s(1), Event::AppCheck(CheckResult::NotReady)),
                At(s(2), Event::AppCheck(CheckResult::Ready)),
                At(s(3), Event::AppCheck(CheckResult::NotReady)),
                At(s(4), Event::AppCheck(CheckResult::Ready)),
                Until(s(5)),
            ],
            vec![ms(1500), ms(2500), ms(3500), ms(4500)],
            vec![false, true, false, true],
        ),
        (
            "the unready delay keeps /ready 200 for its length",
            unready,
            vec![At(s(10), TERM), Until(s(20))],
            vec![s(10), ms(11_900), s(12), s(16)],
            vec![true, true, false, false],
        ),
        (
            "an unready delay past the propagation delay ends at the stop signal",
            late_unready,
            vec![At(s(10), TERM), Until(s(20))],
            vec![s(10), ms(14_900), s(15), s(19)],
            vec![true, true, false, false],
        ),
        (
            "a drain while not ready never turns ready",
            Timeline {
                unready_delay: s(3),
                has_ready_check: true,
                ..timeline()
            },
            vec![
                At(s(1), PRESTOP),
                At(s(2), Event::AppCheck(CheckResult::Ready)),
                Until(s(10)),
            ],
            vec![ms(1500), ms(2500), s(7)],
            vec![false, false, false],
        ),
        (
            "exited is never ready",
            timeline(),
            vec![At(s(1), exited(0)), Until(s(3))],
            vec![ms(500), s(2)],
            vec![true, false],
        ),
    ];
    for (name, timeline, inputs, probes, expected) in table {
        let (_, _, ready) = run(timeline, &inputs, &probes);
        assert_eq!(ready, expected, "{name}");
    }
}

#[test]
fn huge_durations_never_overflow() {
    // Times beyond what an Instant can hold mean "never", not a panic.
    let huge = Duration::from_secs(u64::MAX);
    let timeline = Timeline {
        propagation_delay: huge,
        auto: false,
        unready_delay: huge,
        grace_period: huge,
        kill_margin: Duration::ZERO,
        has_ready_check: false,
        app_exit: AppExitSeen::Reaped,
        await_endpoint: false,
    };
    let start = Instant::now();
    let mut machine = Machine::new(timeline, start);
    machine.started(None, start);
    let steps = machine.handle(PRESTOP, start);
    assert_eq!(steps, vec![Step::DrainStarted(Trigger::Prestop)]);
    assert!(machine.state().ready(start + s(3600)));
    assert_eq!(
        machine
            .next_timer()
            .filter(|t| *t < start + s(86_400 * 300)),
        None
    );
    let problem = timeline
        .budget_problem()
        .expect("a delay as long as the grace period");
    assert!(problem.contains("leave the app 0.0s"), "{problem}");
}

#[test]
fn phases_only_move_forward_and_are_recorded_once() {
    let (machine, _, _) = run(
        timeline(),
        &[
            Input::At(s(1), PRESTOP),
            Input::Until(s(7)),
            Input::At(s(8), exited(0)),
            Input::At(s(9), TERM),
        ],
        &[],
    );
    let phases: Vec<Phase> = machine
        .status()
        .transitions
        .iter()
        .map(|t| t.phase)
        .collect();
    assert_eq!(phases, Phase::ALL);
    assert_eq!(
        machine.finished(),
        Some(AppExit::Process(ProcessExit::Code(0)))
    );
}

#[test]
fn budget_check() {
    assert!(timeline().budget_problem().is_none());
    let tight = Timeline {
        propagation_delay: s(28),
        ..timeline()
    };
    let problem = tight
        .budget_problem()
        .expect("28s + 2s leave nothing of 30s");
    assert!(problem.contains("leave the app 0.0s"), "{problem}");
}

/// A deletion's grace shorter than the delay plus the margin: the delay is
/// cut so the stop signal goes out and the app has time to stop before
/// the kubelet's SIGKILL (issue 18); the kill moves earlier too.
#[test]
fn a_short_deletion_grace_cuts_the_delay_and_moves_the_kill() {
    let long_delay = Timeline {
        propagation_delay: s(10),
        ..timeline()
    };
    let (machine, steps, _) = run(
        long_delay,
        &[
            Input::At(s(1), TERM),
            Input::At(ms(1200), Event::Deletion(Deletion::Grace(s(5)))),
            Input::Until(s(40)),
        ],
        &[],
    );
    let deadline = machine.deadline();
    // 5 s grace − 2 s margin = kill 3 s into the drain; the app keeps
    // half of it (1.5 s), the delay gets the other half.
    assert_eq!(deadline.kill_after, s(3));
    assert_eq!(deadline.propagation_delay, ms(1500));
    assert_eq!(deadline.delay_cut_from, Some(s(10)));
    assert_eq!(deadline.source(), "deletion");
    let times: Vec<_> = steps
        .iter()
        .filter(|(_, step)| matches!(step, Step::Stop { .. } | Step::Kill { .. }))
        .map(|(at, step)| (*at, std::mem::discriminant(step)))
        .collect();
    let stop = std::mem::discriminant(&Step::Stop {
        after: s(0),
        cause: StopCause::Timer,
    });
    let kill = std::mem::discriminant(&Step::Kill {
        after: s(0),
        app_had: None,
    });
    assert_eq!(times, vec![(ms(2500), stop), (s(4), kill)], "{steps:?}");
    // The report says the deletion cut it.
    assert!(
        steps.contains(&(
            ms(2500),
            Step::Stop {
                after: ms(1500),
                cause: StopCause::Cut {
                    to: ms(1500),
                    grace: s(5)
                }
            }
        )),
        "{steps:?}"
    );
    assert!(
        deadline.to_string().contains("cut from 10.0s to 1.5s"),
        "{deadline}"
    );
}

/// The answer arriving after the cut delay has already passed stops the
/// app at once; a grace too short for any delay stops it at once too.
#[test]
fn a_late_answer_or_a_tiny_grace_stops_at_once() {
    let long_delay = Timeline {
        propagation_delay: s(10),
        ..timeline()
    };
    let (_, steps, _) = run(
        long_delay,
        &[
            Input::At(s(0), TERM),
            Input::At(s(2), Event::Deletion(Deletion::Grace(s(6)))),
        ],
        &[],
    );
    assert_eq!(
        steps.last(),
        Some(&(
            s(2),
            Step::Stop {
                after: s(2),
                cause: StopCause::Cut {
                    to: s(2),
                    grace: s(6)
                }
            }
        )),
        "{steps:?}"
    );
    let tiny = long_delay.deadline_for(Deletion::Grace(s(2)));
    assert_eq!((tiny.kill_after, tiny.propagation_delay), (s(0), s(0)));
}

/// No deletion, or a longer one, keeps --grace-period and says why; an
/// answer outside a drain, or a second one, changes nothing.
#[test]
fn no_deletion_or_a_longer_grace_keeps_the_configured_deadline() {
    let none = timeline().deadline_for(Deletion::None);
    assert_eq!((none.kill_after, none.propagation_delay), (s(28), DELAY));
    assert!(none.to_string().contains("no API deletion"), "{none}");
    assert_eq!(none.source(), "grace_period_no_deletion");
    let longer = timeline().deadline_for(Deletion::Grace(s(60)));
    assert_eq!(
        (longer.kill_after, longer.propagation_delay),
        (s(28), DELAY)
    );
    assert_eq!(longer.source(), "grace_period_deletion_longer");
    // Enough room: the delay stays, only the kill moves.
    let roomy = timeline().deadline_for(Deletion::Grace(s(20)));
    assert_eq!((roomy.kill_after, roomy.propagation_delay), (s(18), DELAY));
    assert_eq!(roomy.delay_cut_from, None);

    let (machine, steps, _) = run(
        timeline(),
        &[
            Input::At(s(0), Event::Deletion(Deletion::Grace(s(3)))),
            Input::At(s(1), TERM),
            Input::At(s(2), Event::Deletion(Deletion::None)),
            Input::At(ms(2100), Event::Deletion(Deletion::Grace(s(3)))),
        ],
        &[],
    );
    assert_eq!(machine.deadline().source(), "grace_period_no_deletion");
    assert_eq!(
        steps
            .iter()
            .filter(|(_, step)| matches!(step, Step::DeadlineSet(_)))
            .count(),
        1,
        "{steps:?}"
    );
}

/// `auto` with the API in use: quiet traffic does not end the delay
/// before the endpoint's removal is seen; the removal then ends it. A
/// failed watch releases the hold; the ceiling still ends it.
#[test]
fn auto_waits_for_the_endpoint_removal_when_the_api_is_in_use() {
    let auto = Timeline {
        auto: true,
        await_endpoint: true,
        propagation_delay: s(20),
        ..timeline()
    };
    let (machine, steps, _) = run(
        auto,
        &[
            Input::At(s(0), TERM),
            Input::At(s(2), Event::DelayOver),
            // Every later sample is quiet too: said once.
            Input::At(s(3), Event::DelayOver),
            Input::At(s(5), Event::Endpoint(EndpointNews::Removed)),
        ],
        &[],
    );
    assert_eq!(
        steps[1..],
        [
            (s(2), Step::QuietHeld { after: s(2) }),
            (s(5), Step::EndpointRemoved { after: s(5) }),
            (
                s(5),
                Step::Stop {
                    after: s(5),
                    cause: StopCause::Endpoint { seen: true }
                }
            ),
        ],
        "{steps:?}"
    );
    assert!(machine.status().endpoint_removed.is_some());

    let (_, steps, _) = run(
        auto,
        &[
            Input::At(s(0), TERM),
            Input::At(s(1), Event::Endpoint(EndpointNews::Removed)),
            Input::At(s(3), Event::DelayOver),
        ],
        &[],
    );
    assert_eq!(
        steps.last(),
        Some(&(
            s(3),
            Step::Stop {
                after: s(3),
                cause: StopCause::Quiet
            }
        )),
        "{steps:?}"
    );

    let (_, steps, _) = run(
        auto,
        &[
            Input::At(s(0), TERM),
            Input::At(s(2), Event::DelayOver),
            Input::At(s(4), Event::Endpoint(EndpointNews::Unknown)),
        ],
        &[],
    );
    assert_eq!(
        steps.last(),
        Some(&(
            s(4),
            Step::Stop {
                after: s(4),
                cause: StopCause::Endpoint { seen: false }
            }
        )),
        "{steps:?}"
    );

    let (_, steps, _) = run(
        auto,
        &[
            Input::At(s(0), TERM),
            Input::At(s(2), Event::DelayOver),
            Input::Until(s(21)),
        ],
        &[],
    );
    assert!(
        steps.contains(&(
            s(20),
            Step::Stop {
                after: s(20),
                cause: StopCause::Timer
            }
        )),
        "{steps:?}"
    );
}
