//! The one error of the crate: each message says what went wrong and what to do about it.

use std::io;

/// Why sealing, opening, wrapping or unwrapping failed.
#[derive(Debug, thiserror::Error)]
pub enum SealError {
    /// The bytes are not what they were said to be (not sealed data, a manifest too large or
    /// unreadable, a wrapped key of the wrong length); the message says which.
    #[error("{0}")]
    Format(String),
    /// Authentication failed: the sealed data was changed, cut, extended or reordered, or it
    /// was sealed under another key. The two cannot be told apart, by design.
    #[error(
        "sealed data was changed or sealed under another key: fetch it again, and if it fails \
         again the copy is corrupt"
    )]
    Tampered,
    /// A wrapped key did not open: made for another holder or another purpose, or changed.
    #[error(
        "this key was not wrapped for this holder and purpose, or it was changed: ask the \
         requester to grant it (crowdcloud keys grant)"
    )]
    NotForThisHolder,
    /// A key or wrapped key given as text is not the hex it should be.
    #[error("{what} {value:?} is malformed: expected {expected}")]
    Malformed {
        what: &'static str,
        value: String,
        expected: &'static str,
    },
    /// The public key cannot be encrypted to (a low-order X25519 point, such as all zeros).
    #[error(
        "encryption key {0} is not a usable X25519 public key: ask its holder for their key again"
    )]
    UnusableKey(String),
    /// The plaintext has more chunks than STREAM's 32-bit counter can number (256 TiB).
    #[error("the plaintext is too long to seal as one blob (256 TiB at most): split it")]
    TooLong,
    /// Reading or writing a stream failed; `doing` says which.
    #[error("{doing}: {source}")]
    Io {
        doing: &'static str,
        #[source]
        source: io::Error,
    },
}
