//! The join code exchange of `crowdcloud join`: a new device proves it knows the short code that
//! the pool owner reads off `crowdcloud up`, and receives its credentials, without the code ever
//! crossing the network and without trusting whoever answers on the LAN.
//!
//! The protocol, over TLS to the certificate the joiner pinned (from discovery):
//! 1. The joiner starts SPAKE2 (side A) with the code as password and sends its message.
//!    Side B's identity is `crowdcloud coordinator sha256:<fingerprint as the joiner sees it>`.
//! 2. The coordinator answers with its SPAKE2 message only (side B, identity built from its own
//!    certificate's fingerprint). Nothing in it depends on the code in a way anyone can test.
//! 3. The joiner derives the keys and sends its key confirmation, an HMAC over the transcript.
//! 4. The coordinator checks that confirmation. This is the one place where a guess of the code
//!    is tested, so the coordinator counts a failure here as a wrong try. On success it answers
//!    with its own confirmation and the credentials sealed (ChaCha20-Poly1305) under a key
//!    derived from the SPAKE2 key.
//! 5. The joiner checks the coordinator's confirmation before it opens and uses the credentials.
//!
//! Why this holds against someone on the LAN:
//! - An impostor joiner tests exactly one guess per exchange, at step 4, where it is counted
//!   against the code's few tries (see the coordinator's join desk): five tries at 10^8 codes.
//!   An exchange abandoned before step 4 has tested nothing, so abandoning costs the code
//!   nothing and gains the impostor nothing.
//! - An impostor coordinator (its own certificate, advertised by mDNS) gets one guess per
//!   exchange the joiner runs with it: the joiner's confirmation tests only the code the
//!   impostor's own message was made with. It cannot produce a confirmation or a seal that the
//!   joiner accepts unless it guessed right, so the joiner ends up with nothing.
//! - A relay that terminates the joiner's TLS with its own certificate and forwards the SPAKE2
//!   messages to the real coordinator fails: the joiner binds the relay's fingerprint into the
//!   identities and the coordinator binds its own, so the two sides derive different keys and
//!   the joiner's confirmation does not verify.
//!
//! This crate is pure computation: no I/O, and every random choice comes from a seed the caller
//! draws, so the coordinator's injected entropy stays its only source.

use rand::SeedableRng;
use ring::{aead, hkdf, hmac};
use spake2::{Ed25519Group, Identity, Password, Spake2};

use wire::Fingerprint;

/// Digits in a join code.
pub const CODE_DIGITS: usize = 8;

const JOINER_IDENTITY: &[u8] = b"crowdcloud joiner";
const KEY_SALT: &[u8] = b"crowdcloud-join-v1";
const NONCE_BYTES: usize = 12;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PairingError {
    #[error(
        "a join code has {CODE_DIGITS} digits (e.g. 4821-0937); read it again off `crowdcloud up` on the pool owner's machine"
    )]
    MalformedCode,
    #[error(
        "the other side's exchange message is malformed; both sides must run the same crowdcloud version"
    )]
    MalformedMessage,
    #[error(
        "the machine that answered does not prove it knows the code, so it may not be the pool (someone on the network may be impersonating it); check the pool's certificate with the owner and try again"
    )]
    CoordinatorNotConfirmed,
    #[error("the joiner did not prove it knows the code")]
    JoinerNotConfirmed,
    #[error("the sealed credentials do not open with the exchange's key; try joining again")]
    Unsealing,
}

/// A join code in its canonical form (digits only) from what a person typed: spaces and dashes
/// are dropped.
pub fn normalize_code(typed: &str) -> Result<String, PairingError> {
    let digits: String = typed
        .chars()
        .filter(|c| !matches!(c, ' ' | '-' | '_'))
        .collect();
    if digits.len() != CODE_DIGITS || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(PairingError::MalformedCode);
    }
    Ok(digits)
}

/// A fresh code from 64 random bits, as people read it: `dddd-dddd`.
pub fn code_from_random(random: u64) -> String {
    let value = random % 10u64.pow(CODE_DIGITS as u32);
    let digits = format!("{value:0width$}", width = CODE_DIGITS);
    format!("{}-{}", &digits[..4], &digits[4..])
}

fn coordinator_identity(fingerprint: &Fingerprint) -> Identity {
    Identity::new(format!("crowdcloud coordinator {fingerprint}").as_bytes())
}

fn rng_from(seed: [u8; 32]) -> rand::rngs::StdRng {
    rand::rngs::StdRng::from_seed(seed)
}

/// The keys both sides derive from the SPAKE2 key, each for one purpose.
struct Keys {
    coordinator_confirm: hmac::Key,
    joiner_confirm: hmac::Key,
    seal: [u8; 32],
}

struct KeyLength(usize);

impl hkdf::KeyType for KeyLength {
    fn len(&self) -> usize {
        self.0
    }
}

impl Keys {
    fn derive(shared_key: &[u8], session: &str) -> Self {
        let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, KEY_SALT).extract(shared_key);
        let expand = |label: &[u8]| {
            let mut out = [0u8; 32];
            prk.expand(&[session.as_bytes(), b"\n", label], KeyLength(32))
                .and_then(|okm| okm.fill(&mut out))
                .expect("32 bytes is within HKDF-SHA256's output bound");
            out
        };
        Self {
            coordinator_confirm: hmac::Key::new(
                hmac::HMAC_SHA256,
                &expand(b"coordinator confirms"),
            ),
            joiner_confirm: hmac::Key::new(hmac::HMAC_SHA256, &expand(b"joiner confirms")),
            seal: expand(b"seal"),
        }
    }
}

/// What both confirmations cover: the session and both messages, length-prefixed.
fn transcript(session: &str, joiner_message: &[u8], coordinator_message: &[u8]) -> Vec<u8> {
    let mut bytes = Vec::new();
    for part in [session.as_bytes(), joiner_message, coordinator_message] {
        bytes.extend_from_slice(&(part.len() as u32).to_be_bytes());
        bytes.extend_from_slice(part);
    }
    bytes
}

/// The joiner after step 1.
pub struct Joiner {
    spake: Spake2<Ed25519Group>,
    message: Vec<u8>,
}

impl std::fmt::Debug for Joiner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Joiner").finish_non_exhaustive()
    }
}

impl Joiner {
    /// Starts the exchange for `code`, binding `seen`: the fingerprint of the certificate the
    /// joiner's TLS connection is pinned to.
    pub fn start(code: &str, seen: &Fingerprint, seed: [u8; 32]) -> Result<Self, PairingError> {
        let code = normalize_code(code)?;
        let (spake, message) = Spake2::<Ed25519Group>::start_a_with_rng(
            &Password::new(code.as_bytes()),
            &Identity::new(JOINER_IDENTITY),
            &coordinator_identity(seen),
            rng_from(seed),
        );
        Ok(Self { spake, message })
    }

    pub fn message(&self) -> &[u8] {
        &self.message
    }

    /// Step 3: derives the keys from the coordinator's message and makes the joiner's
    /// confirmation. The coordinator's own confirmation comes with the credentials, in step 5.
    pub fn confirm(
        self,
        session: &str,
        coordinator_message: &[u8],
    ) -> Result<JoinerKeys, PairingError> {
        let shared = self
            .spake
            .finish(coordinator_message)
            .map_err(|_| PairingError::MalformedMessage)?;
        let keys = Keys::derive(&shared, session);
        let transcript = transcript(session, &self.message, coordinator_message);
        Ok(JoinerKeys {
            confirmation: hmac::sign(&keys.joiner_confirm, &transcript)
                .as_ref()
                .to_vec(),
            coordinator_confirm: keys.coordinator_confirm,
            transcript,
            seal: keys.seal,
            session: session.to_owned(),
        })
    }
}

/// The joiner's keys after step 3.
pub struct JoinerKeys {
    confirmation: Vec<u8>,
    coordinator_confirm: hmac::Key,
    transcript: Vec<u8>,
    seal: [u8; 32],
    session: String,
}

impl std::fmt::Debug for JoinerKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JoinerKeys").finish_non_exhaustive()
    }
}

impl JoinerKeys {
    /// The joiner's confirmation to send in step 3.
    pub fn confirmation(&self) -> &[u8] {
        &self.confirmation
    }

    /// Step 5: checks the coordinator's confirmation, then opens its sealed answer. Nothing is
    /// opened from a coordinator that did not prove it knows the code.
    pub fn open(
        &self,
        coordinator_confirmation: &[u8],
        sealed: &[u8],
    ) -> Result<Vec<u8>, PairingError> {
        hmac::verify(
            &self.coordinator_confirm,
            &self.transcript,
            coordinator_confirmation,
        )
        .map_err(|_| PairingError::CoordinatorNotConfirmed)?;
        if sealed.len() < NONCE_BYTES {
            return Err(PairingError::Unsealing);
        }
        let (nonce, ciphertext) = sealed.split_at(NONCE_BYTES);
        let nonce =
            aead::Nonce::try_assume_unique_for_key(nonce).map_err(|_| PairingError::Unsealing)?;
        let mut buffer = ciphertext.to_vec();
        let plain = aead_key(&self.seal)
            .open_in_place(nonce, aead::Aad::from(self.session.as_bytes()), &mut buffer)
            .map_err(|_| PairingError::Unsealing)?;
        Ok(plain.to_vec())
    }
}

fn aead_key(key: &[u8; 32]) -> aead::LessSafeKey {
    aead::LessSafeKey::new(
        aead::UnboundKey::new(&aead::CHACHA20_POLY1305, key)
            .expect("ChaCha20-Poly1305 takes a 32-byte key"),
    )
}

/// The coordinator's answer to step 1: its message, and what it keeps for step 4.
pub struct Responded {
    pub message: Vec<u8>,
    pub pending: AwaitingJoiner,
}

impl std::fmt::Debug for Responded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Responded").finish_non_exhaustive()
    }
}

/// The coordinator's side of one exchange, waiting for the joiner's confirmation.
pub struct AwaitingJoiner {
    keys: Keys,
    transcript: Vec<u8>,
    session: String,
}

impl std::fmt::Debug for AwaitingJoiner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AwaitingJoiner")
            .field("session", &self.session)
            .finish_non_exhaustive()
    }
}

/// The coordinator's step 2: its SPAKE2 message for the joiner's `message`, under `code` and its
/// own certificate's fingerprint. A malformed joiner message fails here, before any guess of
/// the code can be tested.
pub fn respond(
    code: &str,
    own: &Fingerprint,
    session: &str,
    joiner_message: &[u8],
    seed: [u8; 32],
) -> Result<Responded, PairingError> {
    let code = normalize_code(code)?;
    let (spake, message) = Spake2::<Ed25519Group>::start_b_with_rng(
        &Password::new(code.as_bytes()),
        &Identity::new(JOINER_IDENTITY),
        &coordinator_identity(own),
        rng_from(seed),
    );
    let shared = spake
        .finish(joiner_message)
        .map_err(|_| PairingError::MalformedMessage)?;
    let keys = Keys::derive(&shared, session);
    let transcript = transcript(session, joiner_message, &message);
    Ok(Responded {
        message,
        pending: AwaitingJoiner {
            keys,
            transcript,
            session: session.to_owned(),
        },
    })
}

impl AwaitingJoiner {
    /// Step 4, first half: checks the joiner's confirmation; a failure is a wrong guess of the
    /// code. The caller makes the credentials only after this holds, and seals them with the
    /// returned [`Sealer`], which also carries the coordinator's confirmation.
    pub fn check(self, joiner_confirmation: &[u8]) -> Result<Sealer, PairingError> {
        hmac::verify(
            &self.keys.joiner_confirm,
            &self.transcript,
            joiner_confirmation,
        )
        .map_err(|_| PairingError::JoinerNotConfirmed)?;
        Ok(Sealer {
            confirmation: hmac::sign(&self.keys.coordinator_confirm, &self.transcript)
                .as_ref()
                .to_vec(),
            seal: self.keys.seal,
            session: self.session,
        })
    }
}

/// Seals the credentials for a joiner that confirmed.
pub struct Sealer {
    confirmation: Vec<u8>,
    seal: [u8; 32],
    session: String,
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sealer").finish_non_exhaustive()
    }
}

impl Sealer {
    /// The coordinator's confirmation for step 5: HMAC by its confirmation key over the
    /// transcript.
    pub fn confirmation(&self) -> &[u8] {
        &self.confirmation
    }

    /// `grant` sealed with a nonce the caller drew: nonce, then ciphertext and tag.
    pub fn seal(&self, grant: &[u8], nonce: [u8; NONCE_BYTES]) -> Vec<u8> {
        let mut buffer = grant.to_vec();
        aead_key(&self.seal)
            .seal_in_place_append_tag(
                aead::Nonce::assume_unique_for_key(nonce),
                aead::Aad::from(self.session.as_bytes()),
                &mut buffer,
            )
            .expect("ChaCha20-Poly1305 seals any message under 256 GiB");
        let mut sealed = nonce.to_vec();
        sealed.extend_from_slice(&buffer);
        sealed
    }
}

#[cfg(test)]
mod tests;
