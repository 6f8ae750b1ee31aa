//! Sealed blobs: age's payload design. A header of 8 magic bytes and a 32-byte random salt;
//! a subkey from HKDF-SHA256 of the key and salt; then STREAM (32-bit big-endian counter and
//! last-chunk flag in the nonce) over ChaCha20-Poly1305, in chunks of 64 KiB of plaintext.
//!
//! The nonce prefix is all zeros: the subkey is fresh for every blob, so no nonce repeats under
//! one subkey. The last chunk's flag is what makes a cut stream fail to open; the counter is
//! what makes reordered chunks fail. Streams are read a chunk at a time, never whole.

use std::io::{self, Read, Write};

use aead_stream::{DecryptorBE32, EncryptorBE32, KeyInit};
use chacha20poly1305::ChaCha20Poly1305;
use hkdf::Hkdf;
use sha2::Sha256;
use zeroize::Zeroizing;

use crate::keys::fill_random;
use crate::{DataKey, SealError};

/// Plaintext bytes of every chunk but the last, which may be shorter (and is empty only when
/// the whole plaintext is).
pub const CHUNK_BYTES: usize = 64 * 1024;

/// The first bytes of every sealed blob.
pub const MAGIC: [u8; 8] = *b"ccseal1\n";

/// Bytes of the random salt after the magic.
const SALT_BYTES: usize = 32;

/// Bytes before the first chunk: the magic and the salt.
pub const HEADER_BYTES: usize = MAGIC.len() + SALT_BYTES;

/// Bytes the AEAD tag adds to every chunk.
pub const TAG_BYTES: usize = 16;

/// Bytes of a full chunk as sealed.
const SEALED_CHUNK_BYTES: usize = CHUNK_BYTES + TAG_BYTES;

/// The HKDF `info` of a blob's subkey.
const SUBKEY_INFO: &[u8] = b"crowdcloud sealed blob v1";

/// The exact length [`seal`] writes for a plaintext of `plain_len` bytes.
pub fn sealed_len(plain_len: u64) -> u64 {
    let chunks = plain_len.div_ceil(CHUNK_BYTES as u64).max(1);
    (HEADER_BYTES as u64)
        .saturating_add(plain_len)
        .saturating_add(chunks.saturating_mul(TAG_BYTES as u64))
}

/// The AEAD of one blob: keyed by HKDF-SHA256(ikm = the key, salt = the blob's salt).
fn blob_cipher(key: &DataKey, salt: &[u8; SALT_BYTES]) -> ChaCha20Poly1305 {
    let mut subkey = Zeroizing::new([0u8; 32]);
    Hkdf::<Sha256>::new(Some(salt), key.as_bytes())
        .expand(SUBKEY_INFO, subkey.as_mut_slice())
        .expect("32 bytes are within HKDF-SHA256's output limit");
    ChaCha20Poly1305::new_from_slice(subkey.as_slice())
        .expect("a ChaCha20-Poly1305 key is 32 bytes")
}

/// Reads from `reader` until `buffer` holds `len_bytes` bytes or the stream ends.
fn fill(
    reader: &mut impl Read,
    buffer: &mut Vec<u8>,
    len_bytes: usize,
    doing: &'static str,
) -> Result<(), SealError> {
    let mut filled = buffer.len();
    buffer.resize(len_bytes, 0);
    while filled < len_bytes {
        match reader.read(&mut buffer[filled..]) {
            Ok(0) => break,
            Ok(read_bytes) => filled += read_bytes,
            Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
            Err(source) => {
                buffer.truncate(filled);
                return Err(SealError::Io { doing, source });
            }
        }
    }
    buffer.truncate(filled);
    Ok(())
}

fn write_all(writer: &mut impl Write, bytes: &[u8], doing: &'static str) -> Result<(), SealError> {
    writer
        .write_all(bytes)
        .map_err(|source| SealError::Io { doing, source })
}

/// Seals everything `plain` gives under `key` into `sealed`, and returns the bytes written
/// (always [`sealed_len`] of the plaintext's length). Every seal has a fresh salt, so sealing
/// one plaintext twice gives two different blobs.
///
/// Reads a chunk at a time. `sealed` is not flushed.
pub fn seal<R: Read, W: Write>(
    key: &DataKey,
    mut plain: R,
    mut sealed: W,
) -> Result<u64, SealError> {
    const DOING_READ: &str = "reading the plaintext to seal";
    const DOING_WRITE: &str = "writing sealed data";
    let mut salt = [0u8; SALT_BYTES];
    fill_random(&mut salt);
    write_all(&mut sealed, &MAGIC, DOING_WRITE)?;
    write_all(&mut sealed, &salt, DOING_WRITE)?;
    let mut written_bytes = HEADER_BYTES as u64;
    let mut encryptor = EncryptorBE32::from_aead(blob_cipher(key, &salt), &Default::default());
    let mut buffer = Vec::with_capacity(SEALED_CHUNK_BYTES);
    loop {
        // One byte past a chunk tells whether this chunk is the last.
        fill(&mut plain, &mut buffer, CHUNK_BYTES + 1, DOING_READ)?;
        if buffer.len() <= CHUNK_BYTES {
            encryptor
                .encrypt_last_in_place(b"", &mut buffer)
                .expect("ChaCha20-Poly1305 seals any chunk of 64 KiB");
            write_all(&mut sealed, &buffer, DOING_WRITE)?;
            return Ok(written_bytes + buffer.len() as u64);
        }
        let next_byte = buffer[CHUNK_BYTES];
        buffer.truncate(CHUNK_BYTES);
        // The only failure is the counter's end, 2^32 chunks in.
        encryptor
            .encrypt_next_in_place(b"", &mut buffer)
            .map_err(|_| SealError::TooLong)?;
        write_all(&mut sealed, &buffer, DOING_WRITE)?;
        written_bytes += buffer.len() as u64;
        buffer.clear();
        buffer.push(next_byte);
    }
}

/// Reads the header of a sealed blob and returns its salt.
fn read_header(sealed: &mut impl Read) -> Result<[u8; SALT_BYTES], SealError> {
    let mut header = Vec::with_capacity(HEADER_BYTES);
    fill(sealed, &mut header, HEADER_BYTES, "reading sealed data")?;
    if !header.starts_with(&MAGIC) {
        return Err(SealError::Format(
            "not sealed data (bad header): it does not begin as a sealed blob does; check that \
             this is the sealed blob, not its plaintext or another file"
                .to_owned(),
        ));
    }
    header[MAGIC.len()..]
        .try_into()
        .map_err(|_| SealError::Tampered)
}

/// Opens a blob [`seal`]ed under `key`, writing the plaintext to `plain`, and returns the
/// plaintext bytes written.
///
/// Any change to the blob, a cut anywhere, bytes appended, chunks reordered or another key
/// fail with [`SealError::Tampered`]; a blob that is not sealed data at all fails with
/// [`SealError::Format`]. The plaintext is written a chunk at a time as each chunk
/// authenticates, so on an error `plain` may already hold some of it: the caller discards
/// it (writes into a temporary file and deletes that on error). Reads a chunk at a time.
pub fn open<R: Read, W: Write>(
    key: &DataKey,
    mut sealed: R,
    mut plain: W,
) -> Result<u64, SealError> {
    const DOING_READ: &str = "reading sealed data";
    const DOING_WRITE: &str = "writing the opened plaintext";
    let salt = read_header(&mut sealed)?;
    let mut decryptor = DecryptorBE32::from_aead(blob_cipher(key, &salt), &Default::default());
    let mut written_bytes = 0u64;
    let mut first_chunk = true;
    let mut buffer = Vec::with_capacity(SEALED_CHUNK_BYTES + 1);
    loop {
        // One byte past a chunk tells whether this chunk is the last.
        fill(&mut sealed, &mut buffer, SEALED_CHUNK_BYTES + 1, DOING_READ)?;
        if buffer.len() <= SEALED_CHUNK_BYTES {
            // An empty last chunk after full ones is never sealed: the last chunk is empty only
            // when the whole plaintext is, so each plaintext has one form.
            if buffer.len() < TAG_BYTES || (buffer.len() == TAG_BYTES && !first_chunk) {
                return Err(SealError::Tampered);
            }
            decryptor
                .decrypt_last_in_place(b"", &mut buffer)
                .map_err(|_| SealError::Tampered)?;
            write_all(&mut plain, &buffer, DOING_WRITE)?;
            return Ok(written_bytes + buffer.len() as u64);
        }
        let next_byte = buffer[SEALED_CHUNK_BYTES];
        buffer.truncate(SEALED_CHUNK_BYTES);
        decryptor
            .decrypt_next_in_place(b"", &mut buffer)
            .map_err(|_| SealError::Tampered)?;
        write_all(&mut plain, &buffer, DOING_WRITE)?;
        written_bytes += buffer.len() as u64;
        first_chunk = false;
        buffer.clear();
        buffer.push(next_byte);
    }
}

/// [`seal`] of bytes in memory.
pub fn seal_bytes(key: &DataKey, plain: &[u8]) -> Vec<u8> {
    let mut sealed =
        Vec::with_capacity(usize::try_from(sealed_len(plain.len() as u64)).unwrap_or(0));
    seal(key, plain, &mut sealed)
        .expect("sealing from memory into memory has no I/O to fail, and fits the chunk counter");
    sealed
}

/// [`open`] of bytes in memory; on an error no plaintext is returned.
pub fn open_bytes(key: &DataKey, sealed: &[u8]) -> Result<Vec<u8>, SealError> {
    let mut plain = Vec::with_capacity(sealed.len().saturating_sub(HEADER_BYTES));
    open(key, sealed, &mut plain)?;
    Ok(plain)
}
