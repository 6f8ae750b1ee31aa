//! `status.json` in the agent's data dir: what the running agent does and why, for
//! `crowdcloud agent status` and for the owner's own tools.
//!
//! Invariants: the file is replaced atomically (written aside, then renamed), so a reader never
//! sees half of it; it is rewritten at least every second while the agent runs, so a file older
//! than [`STATUS_STALE_AFTER_MS`] means the agent is not running.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use wire::{AttemptId, JobId};

use crate::AgentError;

pub const STATUS_FILE: &str = "status.json";
/// A status not rewritten for this long belongs to an agent that is no longer running.
pub const STATUS_STALE_AFTER_MS: u64 = 5_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AgentState {
    /// Registering with the coordinator.
    Starting,
    /// The policy lets work run: running attempts or waiting for some.
    Working,
    /// The policy stopped work; attempts are held, paused.
    Paused,
    /// Shutting down.
    Draining,
    /// Stopped cleanly.
    Stopped,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunningAttempt {
    pub attempt_id: AttemptId,
    pub job_id: JobId,
    pub task_index: u32,
    pub paused: bool,
    /// Fuel the attempt has used so far; it stands still while paused.
    pub fuel_used: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentStatus {
    pub state: AgentState,
    /// Why work is paused, or what lets it run.
    pub reason: String,
    /// Attempts at once the policy allows now.
    pub slots: u32,
    pub running: Vec<RunningAttempt>,
    /// The policy in force, in one line.
    pub policy: String,
    pub coordinator: String,
    pub pool_name: Option<String>,
    pub node_id: Option<String>,
    pub pid: u32,
    /// Milliseconds since the Unix epoch.
    pub updated_at_ms: u64,
}

pub fn status_path(data_dir: &Path) -> PathBuf {
    data_dir.join(STATUS_FILE)
}

pub(crate) fn write_status(data_dir: &Path, status: &AgentStatus) -> std::io::Result<()> {
    let path = status_path(data_dir);
    let aside = data_dir.join(format!("{STATUS_FILE}.{}.tmp", std::process::id()));
    let json = serde_json::to_vec_pretty(status).map_err(std::io::Error::other)?;
    std::fs::write(&aside, json)?;
    std::fs::rename(&aside, &path)
}

/// The status of the agent whose data dir this is; `None` when it never wrote one.
pub fn read_status(data_dir: &Path) -> Result<Option<AgentStatus>, AgentError> {
    let path = status_path(data_dir);
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(AgentError::Io {
                path: path.display().to_string(),
                source,
            });
        }
    };
    serde_json::from_str(&text)
        .map(Some)
        .map_err(|error| AgentError::Status {
            path: path.display().to_string(),
            message: error.to_string(),
        })
}

/// The machine's wall clock, in Unix milliseconds.
// `status.json` is stamped with the machine's time, for the owner to read, and the peer
// listener checks tickets' expiries, which are the coordinator's wall clock, against it.
#[allow(clippy::disallowed_methods)]
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|since| since.as_millis() as u64)
        .unwrap_or(0)
}

impl AgentStatus {
    /// Whether the agent that wrote this still runs, as of `now_ms`.
    pub fn is_live(&self, now_ms: u64) -> bool {
        self.state != AgentState::Stopped
            && now_ms.saturating_sub(self.updated_at_ms) <= STATUS_STALE_AFTER_MS
    }

    /// One line for people: `running 3 tasks`, `paused: on battery at 41 %`, `not running`.
    pub fn headline(&self, now_ms: u64) -> String {
        if !self.is_live(now_ms) {
            return "not running".to_owned();
        }
        let tasks = |n: usize| match n {
            1 => "1 task".to_owned(),
            n => format!("{n} tasks"),
        };
        match self.state {
            AgentState::Starting => format!("starting: joining {}", self.coordinator),
            AgentState::Working if self.running.is_empty() => format!(
                "waiting for work ({} slot{})",
                self.slots,
                if self.slots == 1 { "" } else { "s" }
            ),
            AgentState::Working => format!("running {}", tasks(self.running.len())),
            AgentState::Paused if self.running.is_empty() => format!("paused: {}", self.reason),
            AgentState::Paused => format!(
                "paused: {} ({} held)",
                self.reason,
                tasks(self.running.len())
            ),
            AgentState::Draining => format!("stopping: finishing {}", tasks(self.running.len())),
            AgentState::Stopped => "not running".to_owned(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(state: AgentState, running: usize) -> AgentStatus {
        AgentStatus {
            state,
            reason: "on battery at 41 %".to_owned(),
            slots: 2,
            running: (0..running)
                .map(|i| RunningAttempt {
                    attempt_id: AttemptId(i as u64 + 1),
                    job_id: JobId(7),
                    task_index: i as u32,
                    paused: state == AgentState::Paused,
                    fuel_used: 1000,
                })
                .collect(),
            policy: "slots by cores".to_owned(),
            coordinator: "http://127.0.0.1:7878".to_owned(),
            pool_name: Some("family".to_owned()),
            node_id: None,
            pid: 1,
            updated_at_ms: 10_000,
        }
    }

    #[test]
    fn headlines_say_what_and_why() {
        assert_eq!(
            status(AgentState::Working, 3).headline(10_500),
            "running 3 tasks"
        );
        assert_eq!(
            status(AgentState::Working, 1).headline(10_500),
            "running 1 task"
        );
        assert_eq!(
            status(AgentState::Working, 0).headline(10_500),
            "waiting for work (2 slots)"
        );
        assert_eq!(
            status(AgentState::Paused, 0).headline(10_500),
            "paused: on battery at 41 %"
        );
        assert_eq!(
            status(AgentState::Paused, 2).headline(10_500),
            "paused: on battery at 41 % (2 tasks held)"
        );
        assert_eq!(
            status(AgentState::Working, 3).headline(15_001),
            "not running"
        );
        assert_eq!(
            status(AgentState::Stopped, 0).headline(10_000),
            "not running"
        );
    }

    #[test]
    fn the_file_round_trips_and_is_absent_before_the_first_write() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(read_status(dir.path()).unwrap(), None);
        let written = status(AgentState::Paused, 2);
        write_status(dir.path(), &written).unwrap();
        assert_eq!(read_status(dir.path()).unwrap(), Some(written));
        std::fs::write(status_path(dir.path()), "{").unwrap();
        let message = read_status(dir.path()).unwrap_err().to_string();
        assert!(message.contains("status.json"), "{message}");
    }
}
