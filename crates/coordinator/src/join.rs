//! The join desk: the owner's live join code and the code exchanges in flight.
//!
//! Bounds (the code is short, so guessing must be expensive, but strangers on the LAN must not
//! be able to spoil a code the owner just gave out):
//! - At most one code is live; a new one replaces it. It lives [`CODE_TTL_MS`] and is used once.
//! - A try is spent only by a wrong key confirmation from a joiner: that is the one place where
//!   the exchange tests a guess of the code (see the `pairing` crate). The code dies after
//!   [`CODE_TRIES`] of them, whoever made them, so guesses stay bounded per code. A start, a
//!   malformed message or an abandoned exchange spends nothing.
//! - Limits are per source (the peer's IPv4 address or IPv6 /64): one source may spend at most
//!   [`WRONG_TRIES_PER_SOURCE_MAX`] of a code's tries, so one host cannot kill the code for
//!   everyone else; it may start one exchange per [`START_SPACING_MS`] and hold at most
//!   [`EXCHANGES_PER_SOURCE_MAX`] in flight.
//! - At most [`EXCHANGES_MAX`] exchanges are in flight in all, each for at most
//!   [`EXCHANGE_TTL_MS`]. When they are all taken, a start from a source that holds fewer takes
//!   the oldest slot of the source that holds the most, so a few sources cannot keep the others
//!   out. The table of recent starts holds at most [`SOURCES_MAX`] sources.
//!
//! Codes and exchanges live in memory only: a restarted coordinator has no live code, and
//! `crowdcloud up` shows a fresh one at start.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::sync::OnceLock;

use parking_lot::Mutex;

use pairing::AwaitingJoiner;
use wire::Fingerprint;

use crate::env::Entropy;

/// How long a join code stays valid.
pub(crate) const CODE_TTL_MS: u64 = 10 * 60 * 1000;
/// Wrong confirmations one code survives: one fewer than this, and the next one burns it.
pub(crate) const CODE_TRIES: u32 = 5;
/// Wrong confirmations one source may make with one code.
pub(crate) const WRONG_TRIES_PER_SOURCE_MAX: u32 = 2;
/// Exchanges that may be in flight at once, in all and from one source.
pub(crate) const EXCHANGES_MAX: usize = 8;
pub(crate) const EXCHANGES_PER_SOURCE_MAX: usize = 2;
/// How long an exchange may take between its start and its finish; `crowdcloud join` finishes
/// right after it starts.
pub(crate) const EXCHANGE_TTL_MS: u64 = 10 * 1000;
/// The least time between two exchange starts from one source.
pub(crate) const START_SPACING_MS: u64 = 200;
/// Sources remembered for their last start; more at once within [`START_SPACING_MS`] wait.
pub(crate) const SOURCES_MAX: usize = 256;

/// Where an exchange comes from, as far as limits go: an IPv4 address, or the /64 network of an
/// IPv6 address (one host may hold many addresses of its network).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct Source(IpAddr);

impl Source {
    pub(crate) fn of(address: IpAddr) -> Self {
        match address {
            IpAddr::V4(v4) => Self(IpAddr::V4(v4)),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => Self(IpAddr::V4(v4)),
                None => {
                    let network = u128::from(v6) & !((1u128 << 64) - 1);
                    Self(IpAddr::V6(network.into()))
                }
            },
        }
    }
}

struct LiveCode {
    code: String,
    generation: u64,
    expires_at_ms: u64,
    tries_left: u32,
    grants_api_token: bool,
    /// One entry per wrong confirmation, so at most [`CODE_TRIES`].
    wrong_tries_by: Vec<Source>,
}

struct Exchange {
    generation: u64,
    source: Source,
    device_name: String,
    started_at_ms: u64,
    pending: AwaitingJoiner,
}

#[derive(Default)]
struct Desk {
    code: Option<LiveCode>,
    generations: u64,
    exchanges: HashMap<String, Exchange>,
    /// When each source last started an exchange, for those within [`START_SPACING_MS`].
    recent_starts: HashMap<Source, u64>,
}

/// Why an exchange cannot go on; each says what to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum JoinRefusal {
    NoTls,
    NoCode,
    Malformed(String),
    Busy(String),
    Failed(String),
}

/// The coordinator's answer to a start.
pub(crate) struct Started {
    pub(crate) session: String,
    pub(crate) message: Vec<u8>,
}

/// What a finished exchange hands the caller: who joined and what the code grants. The caller
/// makes the credentials and seals them.
pub(crate) struct Joined {
    pub(crate) device_name: String,
    pub(crate) grants_api_token: bool,
    pub(crate) sealer: pairing::Sealer,
}

#[derive(Default)]
pub(crate) struct JoinDesk {
    /// The certificate this coordinator serves, once it serves TLS.
    fingerprint: OnceLock<Fingerprint>,
    /// Hashes of the owner's API tokens: they may manage tokens and make join codes.
    owner_token_hashes: Mutex<HashSet<String>>,
    desk: Mutex<Desk>,
}

fn busy(message: &str) -> JoinRefusal {
    JoinRefusal::Busy(message.to_owned())
}

impl Desk {
    /// Forgets what has run out by `now_ms`: the code, exchanges and spacing records.
    fn expire(&mut self, now_ms: u64) {
        self.exchanges
            .retain(|_, e| e.started_at_ms + EXCHANGE_TTL_MS > now_ms);
        self.recent_starts
            .retain(|_, last_ms| *last_ms + START_SPACING_MS > now_ms);
        if self
            .code
            .as_ref()
            .is_some_and(|code| code.expires_at_ms <= now_ms)
        {
            self.code = None;
        }
    }

    fn in_flight_from(&self, source: Source) -> usize {
        self.exchanges
            .values()
            .filter(|e| e.source == source)
            .count()
    }

    /// Checks the per-source and global limits for a start from `source`, making room when all
    /// slots are taken and a source holds more than `source` would.
    fn admit(&mut self, source: Source) -> Result<(), JoinRefusal> {
        if self.recent_starts.contains_key(&source) {
            return Err(busy(
                "join attempts from this device come too fast; wait a second and try again",
            ));
        }
        if self.recent_starts.len() >= SOURCES_MAX {
            return Err(busy(
                "too many devices are joining at once; wait a second and try again",
            ));
        }
        let held = self.in_flight_from(source);
        if held >= EXCHANGES_PER_SOURCE_MAX {
            return Err(busy(
                "this device has join exchanges in flight; let them finish or wait 10 seconds and try again",
            ));
        }
        if self.exchanges.len() >= EXCHANGES_MAX {
            self.evict_for(held)?;
        }
        Ok(())
    }

    /// Ends the oldest exchange of the source holding the most, if it holds more than `held`.
    fn evict_for(&mut self, held: usize) -> Result<(), JoinRefusal> {
        let mut per_source: HashMap<Source, usize> = HashMap::new();
        for exchange in self.exchanges.values() {
            *per_source.entry(exchange.source).or_default() += 1;
        }
        let heaviest = per_source
            .into_iter()
            .max_by_key(|(_, count)| *count)
            .filter(|(_, count)| *count > held + 1)
            .map(|(source, _)| source);
        let victim = heaviest.and_then(|heaviest| {
            self.exchanges
                .iter()
                .filter(|(_, e)| e.source == heaviest)
                .min_by_key(|(_, e)| e.started_at_ms)
                .map(|(session, _)| session.clone())
        });
        match victim {
            Some(session) => {
                self.exchanges.remove(&session);
                Ok(())
            }
            None => Err(busy(
                "too many join attempts at once; wait a few seconds and try again",
            )),
        }
    }
}

impl JoinDesk {
    pub(crate) fn set_fingerprint(&self, fingerprint: Fingerprint) {
        let _ = self.fingerprint.set(fingerprint);
    }

    pub(crate) fn fingerprint(&self) -> Option<Fingerprint> {
        self.fingerprint.get().copied()
    }

    pub(crate) fn add_owner_token(&self, token_hash: String) {
        self.owner_token_hashes.lock().insert(token_hash);
    }

    pub(crate) fn is_owner_token(&self, token_hash: &str) -> bool {
        self.owner_token_hashes.lock().contains(token_hash)
    }

    /// A fresh code, replacing any live one; exchanges under the old code can no longer finish.
    pub(crate) fn new_code(&self, now_ms: u64, random: u64, grants_api_token: bool) -> String {
        let mut desk = self.desk.lock();
        desk.generations += 1;
        let code = pairing::code_from_random(random);
        desk.code = Some(LiveCode {
            code: code.clone(),
            generation: desk.generations,
            expires_at_ms: now_ms + CODE_TTL_MS,
            tries_left: CODE_TRIES,
            grants_api_token,
            wrong_tries_by: Vec::new(),
        });
        code
    }

    /// Step 2 of the exchange: answers the joiner at `source` with the session and the
    /// coordinator's SPAKE2 message. It spends no try: nothing in the answer tests the code.
    pub(crate) fn start(
        &self,
        source: Source,
        device_name: &str,
        joiner_message: &[u8],
        now_ms: u64,
        entropy: &dyn Entropy,
    ) -> Result<Started, JoinRefusal> {
        let fingerprint = self.fingerprint().ok_or(JoinRefusal::NoTls)?;
        let mut desk = self.desk.lock();
        desk.expire(now_ms);
        let Some(code) = desk.code.as_ref() else {
            return Err(JoinRefusal::NoCode);
        };
        let wrong_here = code.wrong_tries_by.iter().filter(|s| **s == source).count();
        if wrong_here >= WRONG_TRIES_PER_SOURCE_MAX as usize {
            return Err(JoinRefusal::Failed(
                "this device made too many wrong tries with this code; get a fresh one with `crowdcloud join-code` on the owner's machine".to_owned(),
            ));
        }
        let (code_text, generation) = (code.code.clone(), code.generation);
        desk.admit(source)?;
        // Spaced even when the message turns out malformed: the check costs the coordinator work.
        desk.recent_starts.insert(source, now_ms);
        let session = format!("{:016x}{:016x}", entropy.next_u64(), entropy.next_u64());
        let pairing::Responded { message, pending } = pairing::respond(
            &code_text,
            &fingerprint,
            &session,
            joiner_message,
            entropy.secret(),
        )
        .map_err(|error| JoinRefusal::Malformed(error.to_string()))?;
        desk.exchanges.insert(
            session.clone(),
            Exchange {
                generation,
                source,
                device_name: device_name.to_owned(),
                started_at_ms: now_ms,
                pending,
            },
        );
        Ok(Started { session, message })
    }

    /// Step 4: checks the joiner's confirmation. Success uses the code up; a wrong confirmation
    /// is a wrong guess and spends a try, charged to the source that started the exchange.
    /// Either way the exchange is over.
    pub(crate) fn finish(
        &self,
        session: &str,
        joiner_confirmation: &[u8],
        now_ms: u64,
    ) -> Result<Joined, JoinRefusal> {
        let mut desk = self.desk.lock();
        desk.expire(now_ms);
        let exchange = desk.exchanges.remove(session).ok_or_else(|| {
            JoinRefusal::Failed(
                "this join exchange is unknown or expired; run `crowdcloud join` again".to_owned(),
            )
        })?;
        let Some(code) = desk
            .code
            .as_mut()
            .filter(|code| code.generation == exchange.generation)
        else {
            return Err(JoinRefusal::Failed(
                "the join code was replaced, used or expired meanwhile; get a fresh one with `crowdcloud join-code` on the owner's machine".to_owned(),
            ));
        };
        let grants_api_token = code.grants_api_token;
        match exchange.pending.check(joiner_confirmation) {
            Ok(sealer) => {
                desk.code = None;
                Ok(Joined {
                    device_name: exchange.device_name,
                    grants_api_token,
                    sealer,
                })
            }
            Err(_) => {
                code.tries_left = code.tries_left.saturating_sub(1);
                code.wrong_tries_by.push(exchange.source);
                if code.tries_left == 0 {
                    desk.code = None;
                }
                Err(JoinRefusal::Failed(
                    "this device's proof does not match the code: the code was mistyped, or another machine relays the connection to the pool; check the code and run `crowdcloud join` again".to_owned(),
                ))
            }
        }
    }

    /// Tries left on the live code.
    #[cfg(test)]
    pub(crate) fn tries_left(&self, now_ms: u64) -> Option<u32> {
        let desk = self.desk.lock();
        desk.code
            .as_ref()
            .filter(|code| code.expires_at_ms > now_ms)
            .map(|code| code.tries_left)
    }
}

#[cfg(test)]
mod tests;
