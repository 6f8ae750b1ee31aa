//! Reading or writing through, hashing what passes with BLAKE3: how a sealed blob's plaintext
//! and ciphertext get the names the manifest gives them, as they stream.

use std::io::{Read, Write};

use wire::BlobHash;

/// An I/O adapter that hashes every byte read from or written to `inner`.
pub struct Hashing<T> {
    inner: T,
    hasher: blake3::Hasher,
}

impl<T> Hashing<T> {
    pub fn new(inner: T) -> Self {
        Self {
            inner,
            hasher: blake3::Hasher::new(),
        }
    }

    /// The inner reader or writer, and the hash of what passed.
    pub fn finish(self) -> (T, BlobHash) {
        (self.inner, BlobHash::from(self.hasher.finalize()))
    }
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buffer: &mut [u8]) -> std::io::Result<usize> {
        let read = self.inner.read(buffer)?;
        self.hasher.update(&buffer[..read]);
        Ok(read)
    }
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        let written = self.inner.write(bytes)?;
        self.hasher.update(&bytes[..written]);
        Ok(written)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}
