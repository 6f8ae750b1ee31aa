//! Capped in-memory stdout and stderr.
//!
//! A guest may write up to the cap; the first byte past it stops the guest with a trap, and the
//! pipe remembers the overflow so the attempt ends as
//! [`crate::Outcome::OutputTooLarge`] with what was written up to the cap kept.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use parking_lot::Mutex;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamError};

#[derive(Debug, Clone)]
pub(crate) struct CappedPipe {
    inner: Arc<Mutex<Captured>>,
}

#[derive(Debug)]
struct Captured {
    bytes: BytesMut,
    cap_bytes: usize,
    overflowed: bool,
}

impl CappedPipe {
    pub(crate) fn new(cap_bytes: u64) -> Self {
        let cap_bytes = usize::try_from(cap_bytes).unwrap_or(usize::MAX);
        Self {
            inner: Arc::new(Mutex::new(Captured {
                bytes: BytesMut::new(),
                cap_bytes,
                overflowed: false,
            })),
        }
    }

    pub(crate) fn overflowed(&self) -> bool {
        self.inner.lock().overflowed
    }

    pub(crate) fn take(&self) -> Vec<u8> {
        std::mem::take(&mut self.inner.lock().bytes).to_vec()
    }

    /// Appends what fits; returns false if anything did not.
    fn append(&self, bytes: &[u8]) -> bool {
        let mut captured = self.inner.lock();
        let room = captured.cap_bytes - captured.bytes.len();
        let fits = bytes.len().min(room);
        captured.bytes.extend_from_slice(&bytes[..fits]);
        if fits < bytes.len() {
            captured.overflowed = true;
        }
        fits == bytes.len()
    }
}

impl IsTerminal for CappedPipe {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for CappedPipe {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }

    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for CappedPipe {
    async fn ready(&mut self) {}
}

impl OutputStream for CappedPipe {
    fn write(&mut self, bytes: Bytes) -> Result<(), StreamError> {
        if self.append(&bytes) {
            Ok(())
        } else {
            Err(StreamError::trap("output stream exceeded its byte limit"))
        }
    }

    fn flush(&mut self) -> Result<(), StreamError> {
        Ok(())
    }

    fn check_write(&mut self) -> Result<usize, StreamError> {
        let captured = self.inner.lock();
        // Never report zero room: a guest would wait for room forever. One more byte is let
        // through to `write`, which then stops the guest.
        Ok((captured.cap_bytes - captured.bytes.len()).max(1))
    }
}

impl tokio::io::AsyncWrite for CappedPipe {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if self.append(buf) {
            Poll::Ready(Ok(buf.len()))
        } else {
            Poll::Ready(Err(io::Error::other(
                "output stream exceeded its byte limit",
            )))
        }
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_up_to_the_cap_are_kept_and_the_next_byte_overflows() {
        let mut pipe = CappedPipe::new(4);
        assert!(pipe.write(Bytes::from_static(b"abcd")).is_ok());
        assert!(!pipe.overflowed());
        assert_eq!(pipe.check_write().unwrap(), 1);
        assert!(pipe.write(Bytes::from_static(b"e")).is_err());
        assert!(pipe.overflowed());
        assert_eq!(pipe.take(), b"abcd");
    }

    #[test]
    fn a_write_straddling_the_cap_keeps_the_part_that_fits() {
        let mut pipe = CappedPipe::new(3);
        assert!(pipe.write(Bytes::from_static(b"abcdef")).is_err());
        assert_eq!(pipe.take(), b"abc");
    }
}
