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

/// Bytes handed to the hashing thread at once.
const CHUNK: usize = 1 << 20;

/// A sink that hashes on a thread of its own: whoever writes (a layer render reading 20,000 files and a 300 MiB
/// one) keeps reading while the previous megabyte is hashed, so a layer digest costs about the larger of the two
/// rather than their sum. Used where only the digest and size are wanted.
pub struct ThreadedHasher {
    buf: Vec<u8>,
    full: Option<std::sync::mpsc::SyncSender<Vec<u8>>>,
    empty: std::sync::mpsc::Receiver<Vec<u8>>,
    worker: Option<std::thread::JoinHandle<(Digest, u64)>>,
}

impl ThreadedHasher {
    /// Starts the hashing thread.
    pub fn new() -> ThreadedHasher {
        let (full_tx, full_rx) = std::sync::mpsc::sync_channel::<Vec<u8>>(2);
        let (empty_tx, empty_rx) = std::sync::mpsc::sync_channel::<Vec<u8>>(4);
        let worker = std::thread::spawn(move || {
            let mut hasher = Sha256::new();
            let mut size = 0u64;
            for mut chunk in full_rx {
                hasher.update(&chunk);
                size += chunk.len() as u64;
                chunk.clear();
                // The writer may have finished and dropped its end: a lost buffer is only an allocation.
                let _ = empty_tx.try_send(chunk);
            }
            (Digest::from_sha256_bytes(&hasher.finalize().into()), size)
        });
        ThreadedHasher {
            buf: Vec::with_capacity(CHUNK),
            full: Some(full_tx),
            empty: empty_rx,
            worker: Some(worker),
        }
    }

    fn send(&mut self) -> std::io::Result<()> {
        let next = self
            .empty
            .try_recv()
            .unwrap_or_else(|_| Vec::with_capacity(CHUNK));
        let chunk = std::mem::replace(&mut self.buf, next);
        match &self.full {
            Some(tx) if tx.send(chunk).is_ok() => Ok(()),
            _ => Err(std::io::Error::other("the hashing thread stopped")),
        }
    }

    /// The digest and byte count of everything written.
    pub fn finish(mut self) -> std::io::Result<(Digest, u64)> {
        if !self.buf.is_empty() {
            self.send()?;
        }
        self.full = None;
        match self.worker.take().map(|w| w.join()) {
            Some(Ok(r)) => Ok(r),
            _ => Err(std::io::Error::other("the hashing thread panicked")),
        }
    }
}

impl Default for ThreadedHasher {
    fn default() -> Self {
        ThreadedHasher::new()
    }
}

impl Write for ThreadedHasher {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        let n = data.len().min(CHUNK - self.buf.len());
        self.buf.extend_from_slice(&data[..n]);
        if self.buf.len() == CHUNK {
            self.send()?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for ThreadedHasher {
    fn drop(&mut self) {
        // Closing the channel ends the thread; joining keeps no thread behind an abandoned hash.
        self.full = None;
        if let Some(w) = self.worker.take() {
            let _ = w.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_threaded_hasher_agrees_with_hashing_in_place() {
        let data: Vec<u8> = (0..(3 * CHUNK + 12_345))
            .map(|i| (i * 7 % 251) as u8)
            .collect();
        let mut t = ThreadedHasher::new();
        // Odd write sizes cross chunk boundaries.
        for piece in data.chunks(77_777) {
            t.write_all(piece).expect("write");
        }
        let (d, n) = t.finish().expect("finish");
        assert_eq!(n, data.len() as u64);
        assert_eq!(d, Digest::sha256_of(&data));
        assert_eq!(
            ThreadedHasher::new().finish().expect("empty"),
            (Digest::sha256_of(b""), 0)
        );
    }
}
