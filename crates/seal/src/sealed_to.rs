//! Blobs sealed to one holder's key: what a node makes of a private task's stdout, stderr and
//! outputs, so that only the requester reads them. Each blob gets a fresh key, wrapped to the
//! holder with HPKE and written in front of the sealed stream; the wrap's context names the
//! attempt, so a blob moved to another attempt's result does not open.

use std::io::{Read, Write};

use crate::SealError;
use crate::keys::{DataKey, EncryptionKey, EncryptionSecret};
use crate::stream::{open, seal, sealed_len};
use crate::wrap::{WRAPPED_KEY_BYTES, WrapContext, WrappedKey, unwrap, wrap};

/// The exact size of [`seal_to`]'s output for a plaintext of `plain_len` bytes.
pub fn sealed_to_len(plain_len: u64) -> u64 {
    WRAPPED_KEY_BYTES as u64 + sealed_len(plain_len)
}

/// A fresh key and its wrap to one holder: what [`seal_to_prepared`] seals one blob with.
/// Made ahead (while a task runs, say), it takes the wrap's public-key work off the path.
pub struct PreparedKey {
    key: DataKey,
    wrapped: WrappedKey,
}

/// A fresh key wrapped to `recipient` for `context`, to seal one blob with.
pub fn prepare_to(
    recipient: &EncryptionKey,
    context: WrapContext,
) -> Result<PreparedKey, SealError> {
    let key = DataKey::generate();
    let wrapped = wrap(&key, recipient, context)?;
    Ok(PreparedKey { key, wrapped })
}

/// Seals `plain` under a fresh key wrapped to `recipient` for `context`; returns the bytes
/// written.
pub fn seal_to<R: Read, W: Write>(
    recipient: &EncryptionKey,
    context: WrapContext,
    plain: R,
    sealed: W,
) -> Result<u64, SealError> {
    seal_to_prepared(prepare_to(recipient, context)?, plain, sealed)
}

/// [`seal_to`] with a key made ahead; each prepared key seals one blob only.
pub fn seal_to_prepared<R: Read, W: Write>(
    prepared: PreparedKey,
    plain: R,
    mut sealed: W,
) -> Result<u64, SealError> {
    let PreparedKey { key, wrapped } = prepared;
    sealed
        .write_all(wrapped.as_bytes())
        .map_err(|source| SealError::Io {
            doing: "writing the sealed data",
            source,
        })?;
    Ok(WRAPPED_KEY_BYTES as u64 + seal(&key, plain, sealed)?)
}

/// Opens what [`seal_to`] sealed to the holder of `secret` for `context`; returns the
/// plaintext bytes written. As with [`open`], bytes written before a failure are the caller's
/// to discard.
pub fn open_from<R: Read, W: Write>(
    secret: &EncryptionSecret,
    context: WrapContext,
    mut sealed: R,
    plain: W,
) -> Result<u64, SealError> {
    let mut wrapped = [0u8; WRAPPED_KEY_BYTES];
    sealed
        .read_exact(&mut wrapped)
        .map_err(|source| match source.kind() {
            std::io::ErrorKind::UnexpectedEof => {
                SealError::Format("not sealed data (too short for its key): fetch it again".into())
            }
            _ => SealError::Io {
                doing: "reading sealed data",
                source,
            },
        })?;
    let key = unwrap(&WrappedKey::from_bytes(&wrapped)?, secret, context)?;
    open(&key, sealed, plain)
}
