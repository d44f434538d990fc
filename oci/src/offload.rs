//! A writer whose writes happen on a thread of its own. Making a layer is a chain of single-threaded stages —
//! reading the snapshot, SHA-256 of the tar, compressing, SHA-256 of the blob, writing the file — and on the same
//! thread they cost their sum; handed over in 1 MiB chunks, the producer goes on while the previous megabyte is
//! hashed and written, so they cost about the largest of them.

use std::io::{self, Write};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::thread::JoinHandle;

use crate::{Digest, HashingWriter};

/// Bytes handed over at once.
const CHUNK: usize = 1 << 20;

/// Writes to `W` on a thread of its own; [`Offloaded::finish`] gives `W` back once everything is written.
pub struct Offloaded<W: Write + Send + 'static> {
    buf: Vec<u8>,
    full: Option<SyncSender<Vec<u8>>>,
    empty: Receiver<Vec<u8>>,
    worker: Option<JoinHandle<io::Result<W>>>,
}

impl<W: Write + Send + 'static> Offloaded<W> {
    /// Starts the thread that writes to `inner`.
    pub fn new(mut inner: W) -> Offloaded<W> {
        let (full_tx, full_rx) = sync_channel::<Vec<u8>>(2);
        let (empty_tx, empty_rx) = sync_channel::<Vec<u8>>(4);
        let worker = std::thread::spawn(move || {
            for mut chunk in full_rx {
                inner.write_all(&chunk)?;
                chunk.clear();
                // The writer may be gone already: a lost buffer only costs an allocation.
                let _ = empty_tx.try_send(chunk);
            }
            inner.flush()?;
            Ok(inner)
        });
        Offloaded {
            buf: Vec::with_capacity(CHUNK),
            full: Some(full_tx),
            empty: empty_rx,
            worker: Some(worker),
        }
    }

    fn send(&mut self) -> io::Result<()> {
        let next = self
            .empty
            .try_recv()
            .unwrap_or_else(|_| Vec::with_capacity(CHUNK));
        let chunk = std::mem::replace(&mut self.buf, next);
        match &self.full {
            Some(tx) if tx.send(chunk).is_ok() => Ok(()),
            // The thread stopped on an error: finishing reports it.
            _ => Err(self
                .stop()
                .err()
                .unwrap_or_else(|| io::Error::other("writer thread stopped"))),
        }
    }

    fn stop(&mut self) -> io::Result<W> {
        self.full = None;
        match self.worker.take().map(|w| w.join()) {
            Some(Ok(r)) => r,
            Some(Err(_)) => Err(io::Error::other("writer thread panicked")),
            None => Err(io::Error::other("writer thread already stopped")),
        }
    }

    /// Writes what is buffered, waits for the thread, and gives back the inner writer (or the first error it met).
    pub fn finish(mut self) -> io::Result<W> {
        if !self.buf.is_empty() {
            self.send()?;
        }
        self.stop()
    }
}

impl<W: Write + Send + 'static> Write for Offloaded<W> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let n = data.len().min(CHUNK - self.buf.len());
        self.buf.extend_from_slice(&data[..n]);
        if self.buf.len() == CHUNK {
            self.send()?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<W: Write + Send + 'static> Drop for Offloaded<W> {
    fn drop(&mut self) {
        // Closing the channel ends the thread; joining leaves no thread behind an abandoned write.
        if self.worker.is_some() {
            let _ = self.stop();
        }
    }
}

/// Passes writes through to `W` and hashes them on a thread of its own: the digest of a stream that another
/// stage (a compressor, a store writer) consumes, without adding the hash to that stage's thread.
pub struct HashedAside<W: Write> {
    inner: W,
    hash: Offloaded<HashingWriter<io::Sink>>,
}

impl<W: Write> HashedAside<W> {
    /// Wraps `inner`.
    pub fn new(inner: W) -> HashedAside<W> {
        HashedAside {
            inner,
            hash: Offloaded::new(HashingWriter::new(io::sink())),
        }
    }

    /// The inner writer, and the digest and size of everything written through.
    pub fn finish(self) -> io::Result<(W, Digest, u64)> {
        let (_, digest, size) = self.hash.finish()?.finish();
        Ok((self.inner, digest, size))
    }
}

impl<W: Write> Write for HashedAside<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hash.write_all(&buf[..n])?;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn everything_written_arrives_in_order() {
        let data: Vec<u8> = (0..(3 * CHUNK + 12_345))
            .map(|i| (i * 7 % 251) as u8)
            .collect();
        let mut w = Offloaded::new(HashingWriter::new(Vec::new()));
        // Odd write sizes cross chunk boundaries.
        for piece in data.chunks(77_777) {
            w.write_all(piece).expect("write");
        }
        let (inner, d, n) = w.finish().expect("finish").finish();
        assert_eq!(inner, data);
        assert_eq!((d, n), (Digest::sha256_of(&data), data.len() as u64));

        let mut aside = HashedAside::new(Vec::new());
        aside.write_all(&data).expect("write");
        let (inner, d, n) = aside.finish().expect("finish");
        assert_eq!(inner, data);
        assert_eq!((d, n), (Digest::sha256_of(&data), data.len() as u64));
    }

    struct Failing(usize);
    impl Write for Failing {
        fn write(&mut self, b: &[u8]) -> io::Result<usize> {
            if self.0 < b.len() {
                return Err(io::Error::other("disk full"));
            }
            self.0 -= b.len();
            Ok(b.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn the_inner_writers_error_comes_back() {
        let mut w = Offloaded::new(Failing(CHUNK + 10));
        let chunk = vec![0u8; CHUNK];
        let mut failed = None;
        for _ in 0..8 {
            if let Err(e) = w.write_all(&chunk) {
                failed = Some(e);
                break;
            }
        }
        let e = match failed {
            Some(e) => e,
            None => w.finish().err().expect("an error"),
        };
        assert!(e.to_string().contains("disk full"), "{e}");
    }
}
