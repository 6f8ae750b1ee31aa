//! The owner's policy: what this machine lends to the pool and when, read from a TOML file and
//! from command-line overrides.
//!
//! Invariants:
//! - A policy that parsed is whole and consistent: every percentage is 0 to 100, the battery
//!   thresholds are ordered, every hour range has two different ends, every cap is at least 1.
//! - Unknown fields are refused, and every error names its origin (the file, or the flags) and
//!   the field, so a typo never silently falls back to a default.
//! - The defaults are safe on a laptop someone is typing on: work runs only after five idle
//!   minutes, on mains power, on half the cores, and stops when the owner's own programs are
//!   busy.

use std::path::Path;

use crate::AgentError;

/// A cap given as a share of the machine or as an absolute amount.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cap {
    /// No cap: the whole machine.
    Off,
    /// This percentage of the machine, 1 to 100.
    Percent(u8),
    /// This many (cores or bytes).
    Amount(u64),
}

impl Cap {
    /// The cap applied to a machine that has `total` (cores or bytes): never more than the
    /// machine has, never below one unit.
    pub fn of(self, total: u64) -> u64 {
        let capped = match self {
            Cap::Off => total,
            Cap::Percent(percent) => total.saturating_mul(u64::from(percent)) / 100,
            Cap::Amount(amount) => amount.min(total),
        };
        capped.max(1).min(total.max(1))
    }
}

/// A daily window of local time, `start` included and `end` excluded; it wraps past midnight
/// when `end` comes before `start` (`22:00-07:00`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HourRange {
    pub start_minute: u16,
    pub end_minute: u16,
}

impl HourRange {
    pub fn contains(&self, minute_of_day: u16) -> bool {
        if self.start_minute < self.end_minute {
            (self.start_minute..self.end_minute).contains(&minute_of_day)
        } else {
            minute_of_day >= self.start_minute || minute_of_day < self.end_minute
        }
    }

    fn parse(text: &str) -> Result<Self, String> {
        let invalid = || format!("{text:?} is not a range of local time such as \"22:00-07:00\"");
        let (start, end) = text.trim().split_once('-').ok_or_else(invalid)?;
        let minute = |clock: &str| -> Option<u16> {
            let (hours, minutes) = clock.trim().split_once(':')?;
            let hours: u16 = hours.parse().ok()?;
            let minutes: u16 = minutes.parse().ok()?;
            (minutes < 60 && (hours < 24 || (hours == 24 && minutes == 0)))
                .then_some(hours * 60 + minutes)
        };
        let start_minute = minute(start).ok_or_else(invalid)?;
        let end_minute = minute(end).ok_or_else(invalid)? % (24 * 60);
        if start_minute % (24 * 60) == end_minute && start_minute != 0 {
            return Err(format!(
                "{text:?} starts and ends at the same time; write \"00:00-24:00\" for the whole day"
            ));
        }
        Ok(Self {
            start_minute: start_minute % (24 * 60),
            end_minute,
        })
    }
}

impl std::fmt::Display for HourRange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let end = if self.end_minute == 0 && self.start_minute == 0 {
            24 * 60
        } else {
            self.end_minute
        };
        write!(
            f,
            "{:02}:{:02}-{:02}:{:02}",
            self.start_minute / 60,
            self.start_minute % 60,
            end / 60,
            end % 60
        )
    }
}

/// Everything the owner decides. See the README's "Owners" section for the file format.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnerPolicy {
    /// `slots`: attempts at once; `None` runs as many as `cores` allows.
    pub slots_max: Option<u32>,
    /// `cores`: cores lent to the pool (each attempt keeps at most one busy), reported to the
    /// coordinator, and the default number of slots.
    pub cores_max: Cap,
    /// `memory`: memory lent to tasks, reported to the coordinator; no more work is taken while
    /// the memory limits of running attempts add up to this.
    pub memory_max: Cap,
    /// `disk`: bytes of task data kept on disk (the blob cache), reported as free disk.
    pub disk_max_bytes: Option<u64>,
    /// `idle_for`: run only when no keyboard or mouse input came for this long; 0 is off.
    pub idle_for_ms: u64,
    /// `ac_only`: run only on mains power.
    pub ac_only: bool,
    /// `battery_stop_below`: on battery (when `ac_only` is off), stop below this charge.
    pub battery_stop_below_percent: Option<u8>,
    /// `battery_resume_at`: after such a stop, run again only once the charge is back to this.
    pub battery_resume_at_percent: u8,
    /// `owner_cpu_max`: pause while everything but this agent uses more than this share of the
    /// whole machine's CPU for `owner_cpu_for`.
    pub owner_cpu_max_percent: Option<u8>,
    /// `owner_cpu_for`: how long the owner's CPU use must stay above (or back below) the limit
    /// before work pauses (or resumes).
    pub owner_cpu_for_ms: u64,
    /// `hours`: local-time windows in which work may run; empty is any time.
    pub hours: Vec<HourRange>,
    /// `pools`: pool names and coordinator URLs this agent may join; empty is any.
    pub pools: Vec<String>,
    /// `release_after`: a pause longer than this gives the running attempts back to the pool.
    pub release_after_ms: u64,
}

impl Default for OwnerPolicy {
    fn default() -> Self {
        Self {
            slots_max: None,
            cores_max: Cap::Percent(50),
            memory_max: Cap::Percent(25),
            disk_max_bytes: Some(4 << 30),
            idle_for_ms: 5 * 60_000,
            ac_only: true,
            battery_stop_below_percent: Some(40),
            battery_resume_at_percent: 60,
            owner_cpu_max_percent: Some(30),
            owner_cpu_for_ms: 3_000,
            hours: Vec::new(),
            pools: Vec::new(),
            release_after_ms: 15 * 60_000,
        }
    }
}

/// Field values that replace the file's, such as those given as command-line flags. Each value
/// is written as it would be in the file and checked the same way.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PolicyOverrides {
    fields: toml::Table,
}

impl PolicyOverrides {
    pub fn set(&mut self, field: &str, value: impl Into<toml::Value>) {
        self.fields.insert(field.to_owned(), value.into());
    }

    /// A machine given over to the pool: no idle, power, owner CPU or hours conditions, and no
    /// core or memory caps beyond the machine's (slots still apply).
    pub fn dedicated(&mut self) {
        self.set("idle_for", "off");
        self.set("ac_only", false);
        self.set("battery_stop_below", "off");
        self.set("owner_cpu_max", "off");
        self.set("hours", toml::Value::Array(Vec::new()));
        self.set("cores", "off");
        self.set("memory", "off");
    }

    pub fn is_empty(&self) -> bool {
        self.fields.is_empty()
    }
}

const FIELDS: &[&str] = &[
    "slots",
    "cores",
    "memory",
    "disk",
    "idle_for",
    "ac_only",
    "battery_stop_below",
    "battery_resume_at",
    "owner_cpu_max",
    "owner_cpu_for",
    "hours",
    "pools",
    "release_after",
];

/// Entries of `pools`, hour ranges and the file itself are bounded so a policy stays small.
const POOLS_MAX: usize = 64;
const HOURS_MAX: usize = 48;
const POLICY_FILE_BYTES_MAX: u64 = 64 << 10;

impl OwnerPolicy {
    /// The policy of `file` (the defaults when `None`) with `overrides` on top.
    pub fn load(file: Option<&Path>, overrides: &PolicyOverrides) -> Result<Self, AgentError> {
        let mut policy = match file {
            Some(path) => {
                let origin = path.display().to_string();
                let io = |source| AgentError::Io {
                    path: origin.clone(),
                    source,
                };
                let size_bytes = std::fs::metadata(path).map_err(io)?.len();
                if size_bytes > POLICY_FILE_BYTES_MAX {
                    return Err(AgentError::PolicySyntax {
                        origin,
                        message: format!(
                            "the file has {size_bytes} bytes; a policy is at most {POLICY_FILE_BYTES_MAX}"
                        ),
                    });
                }
                let text = std::fs::read_to_string(path).map_err(io)?;
                Self::from_toml(&text, &origin)?
            }
            None => Self::default(),
        };
        policy.apply(&overrides.fields, "command line")?;
        Ok(policy)
    }

    /// The defaults with the fields of `text` on top; `origin` names the text in errors.
    pub fn from_toml(text: &str, origin: &str) -> Result<Self, AgentError> {
        let table: toml::Table =
            toml::from_str(text).map_err(|error| AgentError::PolicySyntax {
                origin: origin.to_owned(),
                message: error.message().to_owned(),
            })?;
        let mut policy = Self::default();
        policy.apply(&table, origin)?;
        Ok(policy)
    }

    fn apply(&mut self, table: &toml::Table, origin: &str) -> Result<(), AgentError> {
        for (field, value) in table {
            let invalid = |problem: String| AgentError::Policy {
                origin: origin.to_owned(),
                field: field.clone(),
                problem,
            };
            match field.as_str() {
                "slots" => {
                    self.slots_max = match value {
                        toml::Value::String(text) if is_off(text) => None,
                        _ => {
                            let slots = integer(value).map_err(invalid)?;
                            if !(1..=u64::from(wire::limits::SLOTS_PER_NODE_MAX)).contains(&slots) {
                                return Err(invalid(format!(
                                    "{slots} is not between 1 and {}",
                                    wire::limits::SLOTS_PER_NODE_MAX
                                )));
                            }
                            Some(slots as u32)
                        }
                    }
                }
                "cores" => self.cores_max = cap(value, integer).map_err(invalid)?,
                "memory" => self.memory_max = cap(value, size).map_err(invalid)?,
                "disk" => {
                    self.disk_max_bytes = match value {
                        toml::Value::String(text) if is_off(text) => None,
                        _ => Some(size(value).map_err(invalid)?.max(1)),
                    }
                }
                "idle_for" => self.idle_for_ms = duration_or_off(value).map_err(invalid)?,
                "ac_only" => {
                    self.ac_only = value
                        .as_bool()
                        .ok_or_else(|| invalid(format!("{} is not true or false", shown(value))))?
                }
                "battery_stop_below" => {
                    self.battery_stop_below_percent = match value {
                        toml::Value::String(text) if is_off(text) => None,
                        _ => Some(percent(value).map_err(invalid)?),
                    }
                }
                "battery_resume_at" => {
                    self.battery_resume_at_percent = percent(value).map_err(invalid)?
                }
                "owner_cpu_max" => {
                    self.owner_cpu_max_percent = match value {
                        toml::Value::String(text) if is_off(text) => None,
                        _ => Some(percent(value).map_err(invalid)?),
                    }
                }
                "owner_cpu_for" => self.owner_cpu_for_ms = duration(value).map_err(invalid)?,
                "hours" => {
                    let ranges = strings(value, HOURS_MAX).map_err(invalid)?;
                    self.hours = ranges
                        .iter()
                        .map(|text| HourRange::parse(text))
                        .collect::<Result<_, _>>()
                        .map_err(invalid)?;
                }
                "pools" => {
                    let pools = strings(value, POOLS_MAX).map_err(invalid)?;
                    if let Some(empty) = pools.iter().find(|pool| pool.trim().is_empty()) {
                        return Err(invalid(format!(
                            "{empty:?} is empty; give a pool name or a coordinator URL"
                        )));
                    }
                    self.pools = pools;
                }
                "release_after" => self.release_after_ms = duration(value).map_err(invalid)?,
                _ => {
                    return Err(invalid(format!(
                        "unknown field; the fields are {}",
                        FIELDS.join(", ")
                    )));
                }
            }
        }
        if let Some(stop_below) = self.battery_stop_below_percent
            && stop_below >= self.battery_resume_at_percent
        {
            return Err(AgentError::Policy {
                origin: origin.to_owned(),
                field: "battery_resume_at".to_owned(),
                problem: format!(
                    "{} % must be above battery_stop_below ({stop_below} %), so work does not stop and start at the same charge",
                    self.battery_resume_at_percent
                ),
            });
        }
        Ok(())
    }

    /// Attempts at once on a machine with `machine_cores`: `slots`, or one per lent core.
    pub fn slots_for(&self, machine_cores: u32) -> u32 {
        let cores = self.cores_max.of(u64::from(machine_cores)) as u32;
        match (self.slots_max, self.cores_max) {
            (Some(slots), Cap::Off) => slots,
            (Some(slots), _) => slots.min(cores),
            (None, _) => cores,
        }
    }

    /// May this agent work for the coordinator at `url` whose pool is called `pool_name`
    /// (unknown before it answers)?
    pub fn allows_pool(&self, url: &str, pool_name: Option<&str>) -> bool {
        if self.pools.is_empty() {
            return true;
        }
        let url = normalise_url(url);
        self.pools.iter().any(|entry| {
            if entry.contains("://") {
                normalise_url(entry) == url
            } else {
                pool_name.is_some_and(|name| name == entry.trim())
            }
        })
    }

    /// Whether the allow-list could still admit the coordinator at `url` once its pool name is
    /// known: false only when every entry is a URL and none is this one.
    pub fn may_allow_url(&self, url: &str) -> bool {
        self.allows_pool(url, None) || self.pools.iter().any(|entry| !entry.contains("://"))
    }

    /// One line for people: what the policy lends and when.
    pub fn summary(&self) -> String {
        let cap = |cap: Cap, unit: &dyn Fn(u64) -> String| match cap {
            Cap::Off => "all".to_owned(),
            Cap::Percent(percent) => format!("{percent} %"),
            Cap::Amount(amount) => unit(amount),
        };
        let mut parts = vec![
            format!(
                "slots {}",
                self.slots_max
                    .map_or_else(|| "by cores".to_owned(), |slots| slots.to_string())
            ),
            format!("cores {}", cap(self.cores_max, &|n| n.to_string())),
            format!("memory {}", cap(self.memory_max, &human_bytes)),
            format!(
                "disk {}",
                self.disk_max_bytes
                    .map_or_else(|| "any".to_owned(), human_bytes)
            ),
        ];
        parts.push(if self.idle_for_ms == 0 {
            "idle not required".to_owned()
        } else {
            format!("after {} idle", human_duration(self.idle_for_ms))
        });
        parts.push(match (self.ac_only, self.battery_stop_below_percent) {
            (true, _) => "on AC only".to_owned(),
            (false, Some(stop)) => format!(
                "on battery down to {stop} % (again from {} %)",
                self.battery_resume_at_percent
            ),
            (false, None) => "on any power".to_owned(),
        });
        if let Some(max) = self.owner_cpu_max_percent {
            parts.push(format!(
                "pause above {max} % owner CPU for {}",
                human_duration(self.owner_cpu_for_ms)
            ));
        }
        if !self.hours.is_empty() {
            let hours: Vec<String> = self.hours.iter().map(HourRange::to_string).collect();
            parts.push(format!("hours {}", hours.join(", ")));
        }
        if !self.pools.is_empty() {
            parts.push(format!("pools {}", self.pools.join(", ")));
        }
        parts.push(format!(
            "release after {} paused",
            human_duration(self.release_after_ms)
        ));
        parts.join("; ")
    }
}

/// A value as it was written, for error messages.
fn shown(value: &toml::Value) -> String {
    match value {
        toml::Value::String(text) => format!("{text:?}"),
        toml::Value::Integer(n) => n.to_string(),
        toml::Value::Float(n) => n.to_string(),
        toml::Value::Boolean(b) => b.to_string(),
        toml::Value::Datetime(when) => when.to_string(),
        toml::Value::Array(_) => "a list".to_owned(),
        toml::Value::Table(_) => "a table".to_owned(),
    }
}

fn normalise_url(url: &str) -> String {
    url.trim().trim_end_matches('/').to_ascii_lowercase()
}

fn is_off(text: &str) -> bool {
    text.trim().eq_ignore_ascii_case("off")
}

fn integer(value: &toml::Value) -> Result<u64, String> {
    match value {
        toml::Value::Integer(n) if *n >= 0 => Ok(*n as u64),
        _ => Err(format!("{} is not a whole number", shown(value))),
    }
}

fn size(value: &toml::Value) -> Result<u64, String> {
    match value {
        toml::Value::Integer(n) if *n >= 0 => Ok(*n as u64),
        toml::Value::String(text) => jobspec::parse_bytes(text, "").map_err(|_| {
            format!("{text:?} is not a size such as \"512MiB\", \"4GiB\" or \"1.5GB\"")
        }),
        _ => Err(format!("{} is not a size such as \"4GiB\"", shown(value))),
    }
}

fn duration(value: &toml::Value) -> Result<u64, String> {
    match value {
        toml::Value::Integer(n) if *n >= 0 => Ok(*n as u64),
        toml::Value::String(text) => jobspec::parse_duration_ms(text, "").map_err(|_| {
            format!("{text:?} is not a duration such as \"500ms\", \"30s\" or \"5m\"")
        }),
        _ => Err(format!("{} is not a duration such as \"5m\"", shown(value))),
    }
}

fn duration_or_off(value: &toml::Value) -> Result<u64, String> {
    match value {
        toml::Value::String(text) if is_off(text) => Ok(0),
        _ => duration(value),
    }
}

fn percent(value: &toml::Value) -> Result<u8, String> {
    let number = match value {
        toml::Value::Integer(n) => Some(*n),
        toml::Value::String(text) => text
            .trim()
            .strip_suffix('%')
            .and_then(|n| n.trim().parse::<i64>().ok()),
        _ => None,
    };
    match number {
        Some(n) if (0..=100).contains(&n) => Ok(n as u8),
        _ => Err(format!(
            "{} is not a percentage such as \"30%\"",
            shown(value)
        )),
    }
}

/// `"off"`, `"50%"`, or an amount read by `amount`.
fn cap(
    value: &toml::Value,
    amount: fn(&toml::Value) -> Result<u64, String>,
) -> Result<Cap, String> {
    if let toml::Value::String(text) = value {
        if is_off(text) {
            return Ok(Cap::Off);
        }
        if text.trim().ends_with('%') {
            let percent = percent(value)?;
            if percent == 0 {
                return Err("0 % would lend nothing; give at least 1 %".to_owned());
            }
            return Ok(Cap::Percent(percent));
        }
    }
    match amount(value)? {
        0 => Err("0 would lend nothing; give at least 1".to_owned()),
        amount => Ok(Cap::Amount(amount)),
    }
}

fn strings(value: &toml::Value, count_max: usize) -> Result<Vec<String>, String> {
    let toml::Value::Array(items) = value else {
        return Err(format!(
            "{} is not a list of strings such as [\"…\"]",
            shown(value)
        ));
    };
    if items.len() > count_max {
        return Err(format!("{} entries; give at most {count_max}", items.len()));
    }
    items
        .iter()
        .map(|item| {
            item.as_str()
                .map(str::to_owned)
                .ok_or_else(|| format!("{} is not a string", shown(item)))
        })
        .collect()
}

/// A duration for people: `45 s`, `5 min`, `1 h 30 min`.
pub fn human_duration(ms: u64) -> String {
    let seconds = ms / 1000;
    match seconds {
        0 if ms > 0 => format!("{ms} ms"),
        0..60 => format!("{seconds} s"),
        60..3600 if seconds.is_multiple_of(60) => format!("{} min", seconds / 60),
        60..3600 => format!("{} min {} s", seconds / 60, seconds % 60),
        _ if seconds.is_multiple_of(3600) => format!("{} h", seconds / 3600),
        _ => format!("{} h {} min", seconds / 3600, seconds % 3600 / 60),
    }
}

fn human_bytes(bytes: u64) -> String {
    const UNITS: [(&str, u64); 4] = [
        ("TiB", 1 << 40),
        ("GiB", 1 << 30),
        ("MiB", 1 << 20),
        ("KiB", 1 << 10),
    ];
    for (unit, scale) in UNITS {
        if bytes >= scale {
            let tenths = bytes * 10 / scale;
            return if tenths.is_multiple_of(10) {
                format!("{} {unit}", tenths / 10)
            } else {
                format!("{}.{} {unit}", tenths / 10, tenths % 10)
            };
        }
    }
    format!("{bytes} B")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<OwnerPolicy, String> {
        OwnerPolicy::from_toml(text, "policy.toml").map_err(|error| error.to_string())
    }

    #[test]
    fn defaults_are_safe_for_a_laptop_in_use() {
        let policy = OwnerPolicy::default();
        assert_eq!(policy.idle_for_ms, 300_000);
        assert!(policy.ac_only);
        assert_eq!(policy.cores_max, Cap::Percent(50));
        assert_eq!(policy.owner_cpu_max_percent, Some(30));
        assert_eq!(policy.slots_for(8), 4);
        assert_eq!(policy.slots_for(1), 1);
        assert_eq!(parse("").unwrap(), policy);
    }

    #[test]
    fn every_field_parses_in_its_readable_form() {
        let policy = parse(
            r#"
            slots = 3
            cores = "75%"
            memory = "2GiB"
            disk = "10GB"
            idle_for = "2m"
            ac_only = false
            battery_stop_below = "35%"
            battery_resume_at = 80
            owner_cpu_max = "20%"
            owner_cpu_for = "1500ms"
            hours = ["22:00-07:00", "12:00-13:30"]
            pools = ["family", "http://10.0.0.2:7878/"]
            release_after = "90s"
            "#,
        )
        .unwrap();
        assert_eq!(policy.slots_max, Some(3));
        assert_eq!(policy.cores_max, Cap::Percent(75));
        assert_eq!(policy.memory_max, Cap::Amount(2 << 30));
        assert_eq!(policy.disk_max_bytes, Some(10_000_000_000));
        assert_eq!(policy.idle_for_ms, 120_000);
        assert!(!policy.ac_only);
        assert_eq!(policy.battery_stop_below_percent, Some(35));
        assert_eq!(policy.battery_resume_at_percent, 80);
        assert_eq!(policy.owner_cpu_max_percent, Some(20));
        assert_eq!(policy.owner_cpu_for_ms, 1500);
        assert_eq!(
            policy.hours,
            [
                HourRange {
                    start_minute: 22 * 60,
                    end_minute: 7 * 60
                },
                HourRange {
                    start_minute: 12 * 60,
                    end_minute: 13 * 60 + 30
                }
            ]
        );
        assert_eq!(policy.release_after_ms, 90_000);
        assert_eq!(policy.slots_for(8), 3);
        assert_eq!(policy.slots_for(2), 1);
        let summary = policy.summary();
        assert!(
            summary.contains("hours 22:00-07:00, 12:00-13:30"),
            "{summary}"
        );
        assert!(summary.contains("memory 2 GiB"), "{summary}");
    }

    #[test]
    fn off_turns_a_condition_or_cap_off() {
        let policy = parse(
            r#"
            cores = "off"
            memory = "off"
            disk = "off"
            idle_for = "off"
            owner_cpu_max = "off"
            battery_stop_below = "off"
            slots = 6
            "#,
        )
        .unwrap();
        assert_eq!(policy.cores_max, Cap::Off);
        assert_eq!(policy.idle_for_ms, 0);
        assert_eq!(policy.owner_cpu_max_percent, None);
        assert_eq!(policy.disk_max_bytes, None);
        // Without a core cap, the owner's slot count stands even above the machine's cores.
        assert_eq!(policy.slots_for(2), 6);
    }

    #[test]
    fn errors_name_the_origin_and_the_field() {
        let cases = [
            ("colour = \"blue\"", "policy.toml: colour: unknown field"),
            ("slots = 0", "policy.toml: slots: 0 is not between 1"),
            (
                "cores = \"0%\"",
                "policy.toml: cores: 0 % would lend nothing",
            ),
            (
                "cores = \"150%\"",
                "policy.toml: cores: \"150%\" is not a percentage",
            ),
            (
                "memory = \"lots\"",
                "policy.toml: memory: \"lots\" is not a size",
            ),
            (
                "idle_for = \"soon\"",
                "policy.toml: idle_for: \"soon\" is not a duration",
            ),
            (
                "ac_only = \"yes\"",
                "policy.toml: ac_only: \"yes\" is not true or false",
            ),
            (
                "hours = [\"9-17\"]",
                "policy.toml: hours: \"9-17\" is not a range",
            ),
            (
                "hours = [\"25:00-07:00\"]",
                "policy.toml: hours: \"25:00-07:00\"",
            ),
            (
                "hours = [\"08:00-08:00\"]",
                "starts and ends at the same time",
            ),
            (
                "hours = \"22:00-07:00\"",
                "policy.toml: hours: \"22:00-07:00\" is not a list",
            ),
            ("pools = [\"\"]", "policy.toml: pools: \"\" is empty"),
            (
                "ac_only = false\nbattery_stop_below = \"60%\"\nbattery_resume_at = \"50%\"",
                "policy.toml: battery_resume_at: 50 % must be above battery_stop_below",
            ),
            ("slots = ", "policy.toml: "),
        ];
        for (text, expected) in cases {
            let message = parse(text).unwrap_err();
            assert!(
                message.starts_with(expected) || message.contains(expected),
                "{text:?} gave {message:?}"
            );
            assert!(!message.ends_with('.'), "{message:?}");
        }
    }

    #[test]
    fn overrides_win_over_the_file_and_are_checked_too() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("policy.toml");
        std::fs::write(
            &path,
            "cores = 4\nidle_for = \"10m\"\npools = [\"family\"]\n",
        )
        .unwrap();
        let mut overrides = PolicyOverrides::default();
        overrides.set("idle_for", "1m");
        let policy = OwnerPolicy::load(Some(&path), &overrides).unwrap();
        assert_eq!(policy.cores_max, Cap::Amount(4));
        assert_eq!(policy.idle_for_ms, 60_000);
        assert_eq!(policy.pools, ["family"]);

        overrides.dedicated();
        let policy = OwnerPolicy::load(Some(&path), &overrides).unwrap();
        assert_eq!(policy.idle_for_ms, 0);
        assert!(!policy.ac_only);
        assert_eq!(policy.cores_max, Cap::Off);
        assert_eq!(policy.pools, ["family"], "dedicated keeps the allow-list");

        let mut bad = PolicyOverrides::default();
        bad.set("hours", toml::Value::Array(vec!["noon".into()]));
        let message = OwnerPolicy::load(None, &bad).unwrap_err().to_string();
        assert!(message.starts_with("command line: hours:"), "{message}");

        let missing = OwnerPolicy::load(
            Some(&dir.path().join("nope.toml")),
            &PolicyOverrides::default(),
        )
        .unwrap_err()
        .to_string();
        assert!(missing.contains("nope.toml"), "{missing}");
    }

    #[test]
    fn hour_ranges_wrap_past_midnight() {
        let night = HourRange::parse("22:00-07:00").unwrap();
        assert!(night.contains(22 * 60));
        assert!(night.contains(23 * 60 + 59));
        assert!(night.contains(0));
        assert!(night.contains(6 * 60 + 59));
        assert!(!night.contains(7 * 60));
        assert!(!night.contains(12 * 60));
        let day = HourRange::parse("09:30-17:00").unwrap();
        assert!(!day.contains(9 * 60 + 29));
        assert!(day.contains(9 * 60 + 30));
        assert!(!day.contains(17 * 60));
        let all = HourRange::parse("00:00-24:00").unwrap();
        assert!(all.contains(0) && all.contains(12 * 60) && all.contains(24 * 60 - 1));
        assert_eq!(all.to_string(), "00:00-24:00");
        assert_eq!(night.to_string(), "22:00-07:00");
        let to_midnight = HourRange::parse("18:00-24:00").unwrap();
        assert!(to_midnight.contains(23 * 60 + 59) && !to_midnight.contains(0));
    }

    #[test]
    fn the_allow_list_takes_pool_names_and_coordinator_urls() {
        let any = OwnerPolicy::default();
        assert!(any.allows_pool("http://x:1", Some("family")));
        let policy = parse(r#"pools = ["family", "http://10.0.0.2:7878"]"#).unwrap();
        assert!(policy.allows_pool("HTTP://10.0.0.2:7878/", None));
        assert!(policy.allows_pool("http://other:1", Some("family")));
        assert!(!policy.allows_pool("http://other:1", Some("work")));
        assert!(
            policy.may_allow_url("http://other:1"),
            "its name may still be family"
        );
        let urls_only = parse(r#"pools = ["http://10.0.0.2:7878"]"#).unwrap();
        assert!(!urls_only.may_allow_url("http://other:1"));
        assert!(urls_only.may_allow_url("http://10.0.0.2:7878"));
    }

    #[test]
    fn caps_never_exceed_the_machine_nor_fall_to_zero() {
        assert_eq!(Cap::Percent(50).of(3), 1);
        assert_eq!(Cap::Percent(1).of(2), 1);
        assert_eq!(Cap::Amount(16).of(4), 4);
        assert_eq!(Cap::Off.of(8), 8);
        assert_eq!(Cap::Percent(25).of(16 << 30), 4 << 30);
    }

    #[test]
    fn durations_read_well() {
        assert_eq!(human_duration(250), "250 ms");
        assert_eq!(human_duration(12_000), "12 s");
        assert_eq!(human_duration(300_000), "5 min");
        assert_eq!(human_duration(90_000), "1 min 30 s");
        assert_eq!(human_duration(5_400_000), "1 h 30 min");
        assert_eq!(human_bytes(4 << 30), "4 GiB");
        assert_eq!(human_bytes(1536 << 20), "1.5 GiB");
    }
}
