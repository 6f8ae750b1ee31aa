//! The join desk: the owner's live join code and the code exchanges in flight.
//!
//! Bounds (the code is short, so guessing must be expensive):
//! - At most one code is live; a new one replaces it. It lives [`CODE_TTL_MS`] and is used once.
//! - Every started exchange spends one of the code's [`CODE_TRIES`] tries, whether or not it
//!   finishes: with SPAKE2 each exchange lets the other side test exactly one guess.
//! - Exchanges start at most one per [`START_SPACING_MS`] across the pool, at most
//!   [`EXCHANGES_MAX`] are in flight, and each expires after [`EXCHANGE_TTL_MS`].
//!
//! Codes and exchanges live in memory only: a restarted coordinator has no live code, and
//! `crowdcloud up` shows a fresh one at start.

use std::collections::{HashMap, HashSet};
use std::sync::OnceLock;

use parking_lot::Mutex;

use pairing::AwaitingJoiner;
use wire::Fingerprint;

use crate::env::Entropy;

/// How long a join code stays valid.
pub(crate) const CODE_TTL_MS: u64 = 10 * 60 * 1000;
/// Exchanges one code allows, the one that succeeds included.
pub(crate) const CODE_TRIES: u32 = 5;
/// Exchanges that may be in flight at once.
pub(crate) const EXCHANGES_MAX: usize = 8;
/// How long an exchange may take between its start and its finish.
pub(crate) const EXCHANGE_TTL_MS: u64 = 60 * 1000;
/// The least time between two exchange starts, across the pool.
pub(crate) const START_SPACING_MS: u64 = 200;

struct LiveCode {
    code: String,
    generation: u64,
    expires_at_ms: u64,
    tries_left: u32,
    grants_api_token: bool,
}

struct Exchange {
    generation: u64,
    device_name: String,
    expires_at_ms: u64,
    pending: AwaitingJoiner,
}

#[derive(Default)]
struct Desk {
    code: Option<LiveCode>,
    generations: u64,
    exchanges: HashMap<String, Exchange>,
    last_start_ms: Option<u64>,
}

/// Why an exchange cannot go on; each says what to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum JoinRefusal {
    NoTls,
    NoCode,
    Busy(String),
    Failed(String),
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
        });
        code
    }

    /// Step 2 of the exchange: spends a try of the live code and answers the joiner with the
    /// session, the coordinator's SPAKE2 message and its confirmation.
    pub(crate) fn start(
        &self,
        device_name: &str,
        joiner_message: &[u8],
        now_ms: u64,
        entropy: &dyn Entropy,
    ) -> Result<(String, Vec<u8>, Vec<u8>), JoinRefusal> {
        let fingerprint = self.fingerprint().ok_or(JoinRefusal::NoTls)?;
        let mut desk = self.desk.lock();
        desk.exchanges.retain(|_, e| e.expires_at_ms > now_ms);
        if desk
            .code
            .as_ref()
            .is_some_and(|code| code.expires_at_ms <= now_ms || code.tries_left == 0)
        {
            desk.code = None;
        }
        let busy = desk
            .last_start_ms
            .is_some_and(|last| now_ms < last + START_SPACING_MS)
            || desk.exchanges.len() >= EXCHANGES_MAX;
        let Some(code) = desk.code.as_mut() else {
            return Err(JoinRefusal::NoCode);
        };
        if busy {
            return Err(JoinRefusal::Busy(
                "too many join attempts at once; wait a second and try again".to_owned(),
            ));
        }
        code.tries_left -= 1;
        let (code_text, generation) = (code.code.clone(), code.generation);
        desk.last_start_ms = Some(now_ms);
        let session = format!("{:016x}{:016x}", entropy.next_u64(), entropy.next_u64());
        let pairing::Responded {
            message,
            confirmation,
            pending,
        } = pairing::respond(
            &code_text,
            &fingerprint,
            &session,
            joiner_message,
            entropy.secret(),
        )
        .map_err(|error| JoinRefusal::Failed(error.to_string()))?;
        desk.exchanges.insert(
            session.clone(),
            Exchange {
                generation,
                device_name: device_name.to_owned(),
                expires_at_ms: now_ms + EXCHANGE_TTL_MS,
                pending,
            },
        );
        Ok((session, message, confirmation))
    }

    /// Step 4: checks the joiner's confirmation. Success uses the code up; either way the
    /// exchange is over.
    pub(crate) fn finish(
        &self,
        session: &str,
        joiner_confirmation: &[u8],
        now_ms: u64,
    ) -> Result<Joined, JoinRefusal> {
        let mut desk = self.desk.lock();
        let exchange = desk
            .exchanges
            .remove(session)
            .filter(|e| e.expires_at_ms > now_ms)
            .ok_or_else(|| {
                JoinRefusal::Failed(
                    "this join exchange is unknown or expired; run `crowdcloud join` again"
                        .to_owned(),
                )
            })?;
        let live = desk
            .code
            .as_ref()
            .filter(|code| code.generation == exchange.generation && code.expires_at_ms > now_ms)
            .map(|code| code.grants_api_token);
        let Some(grants_api_token) = live else {
            return Err(JoinRefusal::Failed(
                "the join code was replaced, used or expired meanwhile; get a fresh one with `crowdcloud join-code` on the owner's machine".to_owned(),
            ));
        };
        let sealer = exchange.pending.check(joiner_confirmation).map_err(|_| {
            JoinRefusal::Failed("the joiner did not prove it knows the join code".to_owned())
        })?;
        desk.code = None;
        Ok(Joined {
            device_name: exchange.device_name,
            grants_api_token,
            sealer,
        })
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
mod tests {
    use super::*;
    use crate::env::SeededEntropy;

    fn desk_with_code(fingerprint: Fingerprint) -> (JoinDesk, String) {
        let desk = JoinDesk::default();
        desk.set_fingerprint(fingerprint);
        let code = desk.new_code(0, 12345678, false);
        (desk, code)
    }

    #[test]
    fn a_joiner_with_the_code_is_let_in_once() {
        let entropy = SeededEntropy::from_seed(1);
        let fingerprint = Fingerprint([3; 32]);
        let (desk, code) = desk_with_code(fingerprint);
        let joiner = pairing::Joiner::start(&code, &fingerprint, [9; 32]).unwrap();
        let (session, message, confirmation) = desk
            .start("laptop", joiner.message(), 1_000, &entropy)
            .unwrap();
        let keys = joiner.confirm(&session, &message, &confirmation).unwrap();
        let joined = desk.finish(&session, keys.confirmation(), 2_000).unwrap();
        assert_eq!(joined.device_name, "laptop");
        assert_eq!(desk.tries_left(2_000), None, "the code is used up");
        let again = pairing::Joiner::start(&code, &fingerprint, [8; 32]).unwrap();
        assert_eq!(
            desk.start("other", again.message(), 3_000, &entropy).err(),
            Some(JoinRefusal::NoCode)
        );
    }

    #[test]
    fn wrong_guesses_burn_the_code_and_starts_are_spaced() {
        let entropy = SeededEntropy::from_seed(2);
        let fingerprint = Fingerprint([4; 32]);
        let (desk, _code) = desk_with_code(fingerprint);
        let mut now_ms = 1_000;
        for _ in 0..CODE_TRIES {
            let guess = pairing::Joiner::start("0000-0000", &fingerprint, [7; 32]).unwrap();
            let (session, message, confirmation) = desk
                .start("guesser", guess.message(), now_ms, &entropy)
                .unwrap();
            assert!(guess.confirm(&session, &message, &confirmation).is_err());
            assert!(matches!(
                desk.start("guesser", b"x", now_ms + 1, &entropy),
                Err(JoinRefusal::Busy(_)) | Err(JoinRefusal::NoCode)
            ));
            now_ms += START_SPACING_MS;
        }
        let late = pairing::Joiner::start("1234-5678", &fingerprint, [6; 32]).unwrap();
        assert_eq!(
            desk.start("late", late.message(), now_ms, &entropy).err(),
            Some(JoinRefusal::NoCode),
            "after its tries the code is dead, even for the right guess"
        );
    }

    #[test]
    fn codes_expire_and_plain_http_cannot_pair() {
        let entropy = SeededEntropy::from_seed(3);
        let fingerprint = Fingerprint([5; 32]);
        let (desk, code) = desk_with_code(fingerprint);
        let joiner = pairing::Joiner::start(&code, &fingerprint, [1; 32]).unwrap();
        assert_eq!(
            desk.start("late", joiner.message(), CODE_TTL_MS, &entropy)
                .err(),
            Some(JoinRefusal::NoCode)
        );
        let plain = JoinDesk::default();
        plain.new_code(0, 1, false);
        assert_eq!(
            plain.start("x", joiner.message(), 1, &entropy).err(),
            Some(JoinRefusal::NoTls)
        );
    }
}
