//! A writer that hashes what passes through it, so the diffID (uncompressed) and the blob digest (compressed)
//! come out of the one pass that writes the layer, and a lazy layer's digest out of a render into a sink.

use std::io::Write;

use crate::Digest;
use sha2::{Digest as _, Sha256};

/// Hashes and counts everything written to the inner writer.
pub struct HashingWriter<W: Write> {
    inner: W,
    hasher: Sha256,
    size: u64,
}

impl<W: Write> HashingWriter<W> {
    /// Wraps `inner`.
    pub fn new(inner: W) -> Self {
        HashingWriter {
            inner,
            hasher: Sha256::new(),
            size: 0,
        }
    }

    /// The inner writer, the digest and the byte count of what was written.
    pub fn finish(self) -> (W, Digest, u64) {
        let d = Digest::from_sha256_bytes(&self.hasher.finalize().into());
        (self.inner, d, self.size)
    }
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.size += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}
