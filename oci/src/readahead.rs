//! A reader whose reads happen on a thread of its own: the reading counterpart of [`crate::Offloaded`]. Applying a
//! compressed layer is two single-threaded stages — inflating, and making the files (mostly system time) — and on
//! one thread they cost their sum; with the inflating done ahead in 1 MiB pieces, they cost about the larger.

use std::io::{self, Read};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};

/// Bytes read ahead at once.
const CHUNK: usize = 1 << 20;

/// Pieces read ahead and not yet taken; with the one being filled and the one being read, the memory held is
/// `(AHEAD + 2) * CHUNK`.
const AHEAD: usize = 2;

/// The reading end: the bytes of the source, in order, as the thread of [`read_ahead`] produced them.
pub struct ReadAhead {
    full: Receiver<io::Result<Vec<u8>>>,
    empty: SyncSender<Vec<u8>>,
    cur: Vec<u8>,
    pos: usize,
    failed: bool,
}

/// Runs `use_it` with a reader of `src` whose reads run on a second thread, ahead of the caller. An error of `src`
/// reaches the caller at the point of the stream where it happened; once `use_it` returns, the thread stops at its
/// next piece, so a caller that gives up early never waits for the rest of the source.
pub fn read_ahead<R: Read + Send, T>(src: R, use_it: impl FnOnce(&mut ReadAhead) -> T) -> T {
    let (full_tx, full_rx) = sync_channel(AHEAD);
    let (empty_tx, empty_rx) = sync_channel(AHEAD + 2);
    std::thread::scope(|s| {
        s.spawn(move || fill(src, &full_tx, &empty_rx));
        let mut reader = ReadAhead {
            full: full_rx,
            empty: empty_tx,
            cur: Vec::new(),
            pos: 0,
            failed: false,
        };
        let out = use_it(&mut reader);
        // Hangs up, so a thread blocked on handing over a piece stops now.
        drop(reader);
        out
    })
}

/// The thread's side: reads pieces until the end of `src`, an error (handed over in its place), or the reader
/// hanging up.
fn fill<R: Read>(mut src: R, full: &SyncSender<io::Result<Vec<u8>>>, empty: &Receiver<Vec<u8>>) {
    loop {
        let mut buf = empty
            .try_recv()
            .unwrap_or_else(|_| Vec::with_capacity(CHUNK));
        buf.clear();
        match (&mut src).take(CHUNK as u64).read_to_end(&mut buf) {
            Ok(0) => return,
            Ok(_) => {
                if full.send(Ok(buf)).is_err() {
                    return;
                }
            }
            Err(e) => {
                let _ = full.send(Err(e));
                return;
            }
        }
    }
}

impl Read for ReadAhead {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if out.is_empty() {
            return Ok(0);
        }
        while self.pos == self.cur.len() {
            if self.failed {
                return Err(io::Error::other("reading stopped at an earlier error"));
            }
            match self.full.recv() {
                Ok(Ok(next)) => {
                    let used = std::mem::replace(&mut self.cur, next);
                    self.pos = 0;
                    // The thread may have stopped: a lost buffer only costs an allocation.
                    let _ = self.empty.try_send(used);
                }
                Ok(Err(e)) => {
                    self.failed = true;
                    return Err(e);
                }
                // The thread is done: the source ended.
                Err(_) => return Ok(0),
            }
        }
        let n = out.len().min(self.cur.len() - self.pos);
        out[..n].copy_from_slice(&self.cur[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A source of `len` patterned bytes that fails with `fail` once `fail_at` bytes were read.
    struct Source {
        at: usize,
        len: usize,
        fail_at: Option<usize>,
    }

    impl Read for Source {
        fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
            if self.fail_at.is_some_and(|f| self.at >= f) {
                return Err(io::Error::new(io::ErrorKind::InvalidData, "bad source"));
            }
            let end = self.len.min(self.at + out.len().min(7_777));
            let end = self.fail_at.map_or(end, |f| end.min(f));
            for (i, b) in out[..end - self.at].iter_mut().enumerate() {
                *b = ((self.at + i) % 251) as u8;
            }
            let n = end - self.at;
            self.at = end;
            Ok(n)
        }
    }

    fn pattern(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i % 251) as u8).collect()
    }

    #[test]
    fn every_byte_arrives_in_order_whatever_the_read_sizes() {
        for len in [0, 1, CHUNK - 1, CHUNK, 3 * CHUNK + 12_345] {
            let src = Source {
                at: 0,
                len,
                fail_at: None,
            };
            let got = read_ahead(src, |r| {
                let mut got = Vec::new();
                let mut small = [0u8; 513];
                // Odd-sized reads first (as a tar reader's), then the rest at once.
                for _ in 0..5 {
                    let n = r.read(&mut small).unwrap();
                    got.extend_from_slice(&small[..n]);
                }
                r.read_to_end(&mut got).unwrap();
                assert_eq!(r.read(&mut small).unwrap(), 0, "the end stays the end");
                got
            });
            assert_eq!(got, pattern(len), "{len} bytes");
        }
    }

    #[test]
    fn an_error_of_the_source_arrives_where_it_happened_and_reading_stays_failed() {
        let fail_at = 2 * CHUNK + 100;
        let src = Source {
            at: 0,
            len: 10 * CHUNK,
            fail_at: Some(fail_at),
        };
        read_ahead(src, |r| {
            let mut got = Vec::new();
            let e = r.read_to_end(&mut got).unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::InvalidData);
            // Whole pieces before the failing one arrive; the failing piece's own bytes do not.
            assert_eq!(got, pattern(2 * CHUNK));
            assert!(r.read(&mut [0u8; 10]).is_err());
        });
    }

    #[test]
    fn a_reader_that_stops_early_does_not_wait_for_the_rest() {
        // A source far larger than what is read ahead: returning must not read it all (the test would take long
        // and hold the memory); the thread stops at its next hand-over.
        let src = Source {
            at: 0,
            len: usize::MAX / 2,
            fail_at: None,
        };
        let first = read_ahead(src, |r| {
            let mut b = [0u8; 4];
            r.read_exact(&mut b).unwrap();
            b
        });
        assert_eq!(first, [0, 1, 2, 3]);
    }
}
