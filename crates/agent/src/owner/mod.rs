//! Owner first: the policy the owner sets, the signals that tell what the owner is doing, the
//! pure governor that turns both into "run or pause, on how many slots", and the status file
//! that tells the owner what the agent does and why.
//!
//! The agent's governor loop (in `steward`) reads the signals every [`GOVERNOR_TICK`], so work
//! pauses well within a second of the owner coming back.

pub mod governor;
pub mod policy;
pub mod signals;
pub mod status;
pub(crate) mod steward;

/// How often the governor looks at the signals.
pub const GOVERNOR_TICK: std::time::Duration = std::time::Duration::from_millis(250);
