//! The governor: a pure function from the owner's policy, what the machine's signals read now,
//! and the time, to whether work may run and on how many slots.
//!
//! Invariants:
//! - No I/O, no clock, no randomness: the same policy, readings, time and state give the same
//!   decision. Hysteresis lives only in [`GovernorState`], passed in and out.
//! - A reading that is unknown never lets work run under a rule that needs it: an unknown idle
//!   time, power source or owner CPU use stops work when the policy asks for that condition.
//! - When several rules stop work, the reason names the first of: allowed hours, power, owner
//!   activity, owner CPU use; the reason of a stop is always non-empty.

use super::policy::{OwnerPolicy, human_duration};

/// How long no keyboard or mouse input has come.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IdleReading {
    /// No input for at least this long.
    IdleFor { idle_ms: u64 },
    /// Nothing readable tells; the text says why.
    Unknown(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PowerSource {
    Mains,
    Battery,
    Unknown(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PowerReading {
    pub source: PowerSource,
    /// Charge of the machine's batteries, when it has any.
    pub battery_percent: Option<u8>,
}

/// The share of the whole machine's CPU used by everything but this agent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CpuReading {
    OwnerPercent(u8),
    Unknown(String),
}

/// Everything the governor looks at, read at one moment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Readings {
    pub idle: IdleReading,
    pub power: PowerReading,
    pub owner_cpu: CpuReading,
    pub machine_cores: u32,
}

/// When a decision is made: a monotonic time for the rules that need a duration, and the local
/// time of day for the allowed hours.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Now {
    pub monotonic_ms: u64,
    pub minute_of_day: u16,
}

/// What the governor remembers between decisions, for the rules with hysteresis.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GovernorState {
    /// The battery fell below `battery_stop_below` and has not yet come back to
    /// `battery_resume_at`.
    pub battery_low: bool,
    /// The owner's CPU use has been over the limit for long enough: work stays paused until it
    /// has been back under the limit for as long.
    pub owner_cpu_busy: bool,
    owner_cpu_over_since_ms: Option<u64>,
    owner_cpu_under_since_ms: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub run: bool,
    /// Why work stops, or what lets it run; for people.
    pub reason: String,
    /// Attempts at once the policy allows (also while stopped, for the status).
    pub slots: u32,
}

pub fn decide(
    policy: &OwnerPolicy,
    readings: &Readings,
    now: Now,
    state: &mut GovernorState,
) -> Decision {
    // Every rule sees every reading, so hysteresis state stays current even while another
    // rule already stops work.
    let power = power_rule(policy, &readings.power, state);
    let cpu = owner_cpu_rule(policy, &readings.owner_cpu, now, state);
    let hours = hours_rule(policy, now);
    let idle = idle_rule(policy, &readings.idle);
    let slots = policy.slots_for(readings.machine_cores);
    match [hours, power, idle, cpu].into_iter().flatten().next() {
        Some(reason) => Decision {
            run: false,
            reason,
            slots,
        },
        None => Decision {
            run: true,
            reason: running_reason(policy, readings),
            slots,
        },
    }
}

fn hours_rule(policy: &OwnerPolicy, now: Now) -> Option<String> {
    if policy.hours.is_empty() || policy.hours.iter().any(|r| r.contains(now.minute_of_day)) {
        return None;
    }
    let ranges: Vec<String> = policy.hours.iter().map(ToString::to_string).collect();
    Some(format!(
        "outside the allowed hours ({}; now {:02}:{:02})",
        ranges.join(", "),
        now.minute_of_day / 60,
        now.minute_of_day % 60
    ))
}

fn power_rule(
    policy: &OwnerPolicy,
    power: &PowerReading,
    state: &mut GovernorState,
) -> Option<String> {
    match (policy.battery_stop_below_percent, power.battery_percent) {
        (Some(stop_below), Some(percent)) if percent < stop_below => state.battery_low = true,
        (Some(_), Some(percent)) if percent >= policy.battery_resume_at_percent => {
            state.battery_low = false;
        }
        (None, _) => state.battery_low = false,
        _ => {}
    }
    let at = |percent: Option<u8>| percent.map_or_else(String::new, |p| format!(" at {p} %"));
    match &power.source {
        PowerSource::Mains => None,
        PowerSource::Battery if policy.ac_only => {
            Some(format!("on battery{}", at(power.battery_percent)))
        }
        PowerSource::Battery => match (policy.battery_stop_below_percent, power.battery_percent) {
            (None, _) => None,
            (Some(_), None) => Some("on battery, and its charge cannot be read".to_owned()),
            (Some(stop_below), Some(percent)) if state.battery_low => Some(format!(
                "on battery at {percent} % (stops below {stop_below} %, runs again from {} %)",
                policy.battery_resume_at_percent
            )),
            (Some(_), Some(_)) => None,
        },
        PowerSource::Unknown(why) if policy.ac_only => Some(format!(
            "cannot tell whether the machine is on AC power ({why})"
        )),
        PowerSource::Unknown(_) => None,
    }
}

fn idle_rule(policy: &OwnerPolicy, idle: &IdleReading) -> Option<String> {
    if policy.idle_for_ms == 0 {
        return None;
    }
    match idle {
        IdleReading::IdleFor { idle_ms } if *idle_ms >= policy.idle_for_ms => None,
        IdleReading::IdleFor { idle_ms } => Some(format!(
            "the owner is active (idle for {} of the {} required)",
            human_duration(*idle_ms - idle_ms % 1000),
            human_duration(policy.idle_for_ms)
        )),
        IdleReading::Unknown(why) => Some(format!(
            "idle time unknown ({why}); work waits for an idle owner unless idle_for is off"
        )),
    }
}

fn owner_cpu_rule(
    policy: &OwnerPolicy,
    cpu: &CpuReading,
    now: Now,
    state: &mut GovernorState,
) -> Option<String> {
    let Some(max) = policy.owner_cpu_max_percent else {
        state.owner_cpu_busy = false;
        state.owner_cpu_over_since_ms = None;
        state.owner_cpu_under_since_ms = None;
        return None;
    };
    let percent = match cpu {
        CpuReading::OwnerPercent(percent) => *percent,
        CpuReading::Unknown(why) => {
            return Some(format!("the owner's CPU use cannot be read ({why})"));
        }
    };
    let held_for =
        |since: &mut Option<u64>| now.monotonic_ms - *since.get_or_insert(now.monotonic_ms);
    if percent > max {
        state.owner_cpu_under_since_ms = None;
        if held_for(&mut state.owner_cpu_over_since_ms) >= policy.owner_cpu_for_ms {
            state.owner_cpu_busy = true;
        }
    } else {
        state.owner_cpu_over_since_ms = None;
        if held_for(&mut state.owner_cpu_under_since_ms) >= policy.owner_cpu_for_ms {
            state.owner_cpu_busy = false;
        }
    }
    state
        .owner_cpu_busy
        .then(|| format!("the owner's programs use {percent} % of the CPU (limit {max} %)"))
}

fn running_reason(policy: &OwnerPolicy, readings: &Readings) -> String {
    let mut parts = Vec::new();
    if policy.idle_for_ms > 0
        && let IdleReading::IdleFor { idle_ms } = readings.idle
    {
        parts.push(format!(
            "idle for {}",
            human_duration(idle_ms - idle_ms % 1000)
        ));
    }
    parts.push(
        match (&readings.power.source, readings.power.battery_percent) {
            (PowerSource::Mains, _) => "on AC power".to_owned(),
            (PowerSource::Battery, Some(percent)) => format!("on battery at {percent} %"),
            (PowerSource::Battery, None) => "on battery".to_owned(),
            (PowerSource::Unknown(_), _) => "power source unknown".to_owned(),
        },
    );
    if !policy.hours.is_empty() {
        parts.push("within the allowed hours".to_owned());
    }
    format!("allowed: {}", parts.join(", "))
}

#[cfg(test)]
mod tests {
    use super::super::policy::{Cap, HourRange};
    use super::*;

    fn calm() -> Readings {
        Readings {
            idle: IdleReading::IdleFor { idle_ms: 600_000 },
            power: PowerReading {
                source: PowerSource::Mains,
                battery_percent: Some(90),
            },
            owner_cpu: CpuReading::OwnerPercent(5),
            machine_cores: 8,
        }
    }

    fn at(monotonic_ms: u64) -> Now {
        Now {
            monotonic_ms,
            minute_of_day: 12 * 60,
        }
    }

    fn once(policy: &OwnerPolicy, readings: &Readings) -> Decision {
        decide(policy, readings, at(0), &mut GovernorState::default())
    }

    #[test]
    fn a_calm_machine_runs_on_the_policys_slots() {
        let decision = once(&OwnerPolicy::default(), &calm());
        assert!(decision.run, "{decision:?}");
        assert_eq!(decision.slots, 4, "half of 8 cores");
        assert_eq!(decision.reason, "allowed: idle for 10 min, on AC power");
    }

    #[test]
    fn an_active_owner_stops_work_until_idle_long_enough() {
        let policy = OwnerPolicy::default();
        let mut readings = calm();
        readings.idle = IdleReading::IdleFor { idle_ms: 12_345 };
        let decision = once(&policy, &readings);
        assert!(!decision.run);
        assert_eq!(
            decision.reason,
            "the owner is active (idle for 12 s of the 5 min required)"
        );
        readings.idle = IdleReading::IdleFor { idle_ms: 299_999 };
        assert!(!once(&policy, &readings).run);
        readings.idle = IdleReading::IdleFor { idle_ms: 300_000 };
        assert!(once(&policy, &readings).run);
    }

    #[test]
    fn unknown_idle_stops_work_only_when_idle_is_required() {
        let mut readings = calm();
        readings.idle = IdleReading::Unknown("no input device is readable".to_owned());
        let decision = once(&OwnerPolicy::default(), &readings);
        assert!(!decision.run);
        assert!(
            decision
                .reason
                .starts_with("idle time unknown (no input device is readable)")
        );
        let policy = OwnerPolicy {
            idle_for_ms: 0,
            ..OwnerPolicy::default()
        };
        assert!(once(&policy, &readings).run);
    }

    #[test]
    fn ac_only_stops_on_battery_whatever_the_charge() {
        let policy = OwnerPolicy::default();
        let mut readings = calm();
        readings.power = PowerReading {
            source: PowerSource::Battery,
            battery_percent: Some(41),
        };
        let decision = once(&policy, &readings);
        assert!(!decision.run);
        assert_eq!(decision.reason, "on battery at 41 %");
        readings.power.battery_percent = Some(100);
        assert!(!once(&policy, &readings).run);
        readings.power.battery_percent = None;
        assert_eq!(once(&policy, &readings).reason, "on battery");
        readings.power.source = PowerSource::Unknown("no readable power supply".to_owned());
        assert!(!once(&policy, &readings).run);
        let policy = OwnerPolicy {
            ac_only: false,
            battery_stop_below_percent: None,
            ..policy
        };
        assert!(
            once(&policy, &readings).run,
            "unknown power is fine when AC is not required"
        );
    }

    #[test]
    fn battery_hysteresis_stops_below_and_resumes_only_at_the_higher_mark() {
        let policy = OwnerPolicy {
            ac_only: false,
            battery_stop_below_percent: Some(40),
            battery_resume_at_percent: 60,
            ..OwnerPolicy::default()
        };
        let mut state = GovernorState::default();
        let mut step = |source: PowerSource, percent: u8| {
            let mut readings = calm();
            readings.power = PowerReading {
                source,
                battery_percent: Some(percent),
            };
            decide(&policy, &readings, at(0), &mut state)
        };
        assert!(step(PowerSource::Battery, 55).run);
        assert!(step(PowerSource::Battery, 40).run);
        let low = step(PowerSource::Battery, 39);
        assert!(!low.run);
        assert_eq!(
            low.reason,
            "on battery at 39 % (stops below 40 %, runs again from 60 %)"
        );
        assert!(
            !step(PowerSource::Battery, 41).run,
            "no flapping around 40 %"
        );
        assert!(step(PowerSource::Mains, 45).run, "mains power always runs");
        assert!(
            !step(PowerSource::Battery, 45).run,
            "unplugged before reaching 60 %: still low"
        );
        assert!(step(PowerSource::Mains, 60).run);
        assert!(
            step(PowerSource::Battery, 59).run,
            "back at 60 % cleared it"
        );
        let mut readings = calm();
        readings.power = PowerReading {
            source: PowerSource::Battery,
            battery_percent: None,
        };
        assert!(!decide(&policy, &readings, at(0), &mut GovernorState::default()).run);
    }

    #[test]
    fn owner_cpu_must_stay_over_the_limit_for_the_window_and_under_it_as_long() {
        let policy = OwnerPolicy {
            owner_cpu_max_percent: Some(30),
            owner_cpu_for_ms: 2_000,
            ..OwnerPolicy::default()
        };
        let mut state = GovernorState::default();
        let mut step = |ms: u64, percent: u8| {
            let mut readings = calm();
            readings.owner_cpu = CpuReading::OwnerPercent(percent);
            decide(&policy, &readings, at(ms), &mut state).run
        };
        assert!(step(0, 80));
        assert!(step(1_000, 90));
        assert!(step(1_500, 20), "a dip restarts the window");
        assert!(step(2_000, 80));
        assert!(step(3_999, 80));
        assert!(!step(4_000, 80));
        assert!(
            !step(4_500, 30),
            "30 % is at the limit, not over; the calm window starts"
        );
        assert!(!step(6_000, 95), "a spike restarts the calm window");
        assert!(!step(6_250, 10));
        assert!(!step(8_249, 10));
        assert!(step(8_250, 10));
    }

    #[test]
    fn owner_cpu_with_no_window_reacts_at_once_and_says_why() {
        let policy = OwnerPolicy {
            owner_cpu_for_ms: 0,
            ..OwnerPolicy::default()
        };
        let mut state = GovernorState::default();
        let mut readings = calm();
        readings.owner_cpu = CpuReading::OwnerPercent(65);
        let decision = decide(&policy, &readings, at(0), &mut state);
        assert!(!decision.run);
        assert_eq!(
            decision.reason,
            "the owner's programs use 65 % of the CPU (limit 30 %)"
        );
        readings.owner_cpu = CpuReading::OwnerPercent(3);
        assert!(decide(&policy, &readings, at(250), &mut state).run);
        readings.owner_cpu = CpuReading::Unknown("cannot read /proc/stat".to_owned());
        assert!(!decide(&policy, &readings, at(500), &mut state).run);
        let off = OwnerPolicy {
            owner_cpu_max_percent: None,
            ..policy
        };
        assert!(decide(&off, &readings, at(750), &mut state).run);
    }

    #[test]
    fn allowed_hours_wrap_past_midnight() {
        let policy = OwnerPolicy {
            hours: vec![HourRange {
                start_minute: 22 * 60,
                end_minute: 7 * 60,
            }],
            ..OwnerPolicy::default()
        };
        let mut state = GovernorState::default();
        let mut at_minute = |minute_of_day: u16| {
            decide(
                &policy,
                &calm(),
                Now {
                    monotonic_ms: 0,
                    minute_of_day,
                },
                &mut state,
            )
        };
        let noon = at_minute(12 * 60);
        assert!(!noon.run);
        assert_eq!(
            noon.reason,
            "outside the allowed hours (22:00-07:00; now 12:00)"
        );
        assert!(at_minute(23 * 60).run);
        assert!(at_minute(3 * 60).run);
        assert!(!at_minute(7 * 60).run);
        assert!(at_minute(22 * 60).run);
    }

    #[test]
    fn the_first_stopping_rule_names_the_reason() {
        let policy = OwnerPolicy {
            hours: vec![HourRange {
                start_minute: 0,
                end_minute: 60,
            }],
            owner_cpu_for_ms: 0,
            ..OwnerPolicy::default()
        };
        let everything_wrong = Readings {
            idle: IdleReading::IdleFor { idle_ms: 0 },
            power: PowerReading {
                source: PowerSource::Battery,
                battery_percent: Some(10),
            },
            owner_cpu: CpuReading::OwnerPercent(99),
            machine_cores: 2,
        };
        let reason = |readings: &Readings, minute_of_day| {
            decide(
                &policy,
                readings,
                Now {
                    monotonic_ms: 0,
                    minute_of_day,
                },
                &mut GovernorState::default(),
            )
            .reason
        };
        assert!(reason(&everything_wrong, 120).starts_with("outside the allowed hours"));
        assert!(reason(&everything_wrong, 30).starts_with("on battery"));
        let mut readings = everything_wrong.clone();
        readings.power.source = PowerSource::Mains;
        assert!(reason(&readings, 30).starts_with("the owner is active"));
        readings.idle = IdleReading::IdleFor { idle_ms: 3_600_000 };
        assert!(reason(&readings, 30).starts_with("the owner's programs use"));
    }

    #[test]
    fn slots_follow_the_policy_also_while_stopped() {
        let policy = OwnerPolicy {
            slots_max: Some(3),
            cores_max: Cap::Amount(2),
            ..OwnerPolicy::default()
        };
        let mut readings = calm();
        assert_eq!(once(&policy, &readings).slots, 2);
        readings.idle = IdleReading::IdleFor { idle_ms: 0 };
        let stopped = once(&policy, &readings);
        assert!(!stopped.run);
        assert_eq!(stopped.slots, 2);
        let uncapped = OwnerPolicy {
            slots_max: Some(3),
            cores_max: Cap::Off,
            ..OwnerPolicy::default()
        };
        assert_eq!(once(&uncapped, &calm()).slots, 3);
    }
}
