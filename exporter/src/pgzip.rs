//! Parallel gzip whose bytes do not depend on the number of threads. The input is cut into 1 MiB blocks — fixed
//! ones, except that a tar stream's big files (1 MiB and more) start and end blocks of their own, found in the
//! stream by [`crate::tarcut`], so that a big file's blocks depend on its bytes alone and may have been made
//! ahead ([`crate::speculate`]); each is deflated on its own (raw deflate, ended with a sync flush so it stops on a byte boundary and without the
//! final-block bit), and the blocks are written in order inside a gzip member, whose CRC-32 is combined from the
//! blocks' CRCs. A block that takes the full match search is deflated by libdeflate (~3× zlib's speed at level 6
//! on binaries and Python sources here, output ~1% smaller), whose stream always ends with a final block: the
//! member ends after such a block and the next block starts a new one. A gzip file is a series of members (RFC
//! 1952), and every gzip reader that layers are read with (Go's, containerd's, `gzip -d`, flate2's
//! `MultiGzDecoder`) reads them all. Because a block's bytes depend only on its own input and the
//! level, one thread or eight give the same output — unlike buildah's parallel gzip. The price is that no block
//! sees its predecessor's last 32 KiB as a dictionary: under 1% on typical layers.
//!
//! Each block is first judged from three 32 KiB samples (start, middle, end), so that deflate's expensive match
//! search runs only where it pays; the judgement depends only on the bytes and the level, so the output stays
//! deterministic:
//! - a block that neither Huffman coding alone nor a quick (level 1) match search can shrink by 1% (random data,
//!   wheels, model weights) is written as stored deflate blocks: already-compressed layers cost almost nothing to
//!   "compress";
//! - a block whose samples the full deflate at the requested level shrinks less than 1% beyond Huffman coding alone
//!   (text without repeats, such as base64) is Huffman-coded without a match search: ~4× faster than level 6 on such
//!   data, for the same size;
//! - at levels up to 6 (the default), a block whose samples the full deflate shrinks less than 3% beyond run-length
//!   matching alone (distance-1 matches: runs such as tar's zero padding between incompressible files — a layer of
//!   wheels, images or archives) is deflated with the RLE strategy: ~3× faster than level 6 there. Levels 7–9 ask
//!   for size and always get the full match search;
//! - every other block is deflated at the requested level.

use std::collections::BTreeMap;
use std::io::{self, Write};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use crate::speculate::{Blocks, Speculation};
use crate::tarcut::{Event, TarCursor};
use zlib_rs::{Deflate, DeflateConfig, DeflateFlush, Status, Strategy};

/// Input bytes per block: fixed, so the output never depends on how many threads there are.
pub const BLOCK: usize = 1 << 20;

/// gzip header: no name, no mtime, OS "unknown" — nothing that varies between runs or machines.
const HEADER: [u8; 10] = [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff];

struct Done {
    seq: u64,
    data: Vec<u8>,
    /// The block's input buffer, given back to be filled again.
    input: Vec<u8>,
    crc: u32,
    len: u64,
    /// The block's deflate stream is final (libdeflate's): its gzip member ends after it.
    ends_member: bool,
    last: bool,
}

fn stored(block: &[u8], last: bool, out: &mut Vec<u8>) {
    // Stored deflate blocks hold at most 65,535 bytes each. An empty last block still needs its header.
    let mut chunks: Vec<&[u8]> = block.chunks(65_535).collect();
    if chunks.is_empty() {
        chunks.push(&[]);
    }
    let n = chunks.len();
    for (i, c) in chunks.into_iter().enumerate() {
        let fin = last && i + 1 == n;
        out.push(u8::from(fin)); // BFINAL, BTYPE=00, then aligned to the byte.
        let len = c.len() as u16;
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(&(!len).to_le_bytes());
        out.extend_from_slice(c);
    }
    if !last {
        // Keep the sync-flush shape: an empty stored block marks the boundary like deflate's sync flush does.
        out.extend_from_slice(&[0, 0, 0, 0xff, 0xff]);
    }
}

/// Bytes of each sample [`plan`] compresses.
const SAMPLE: usize = 32 << 10;

/// How much more (in percent of the full deflate's size) a block may take under the RLE strategy.
const RLE_MARGIN_PERCENT: usize = 3;

/// The highest level at which [`plan`] may choose the RLE strategy: above it the caller asked for size.
const RLE_MAX_LEVEL: u32 = 6;

/// How one block is compressed; see the module's doc.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Plan {
    /// Written as stored deflate blocks.
    Stored,
    /// Huffman coding only, no match search.
    Huffman,
    /// Run-length matches only (distance 1).
    Rle,
    /// Full deflate at the requested level.
    Deflate,
}

/// Deflates `input` (raw deflate, window 32 KiB) at `level` with `strategy`, ended by `flush`, into `out`.
fn deflate_into(
    input: &[u8],
    level: u32,
    strategy: Strategy,
    flush: DeflateFlush,
    out: &mut Vec<u8>,
) -> io::Result<()> {
    let mut d = Deflate::new_with_config(DeflateConfig {
        level: level.min(9) as i32,
        window_bits: -15,
        strategy,
        ..DeflateConfig::default()
    });
    out.clear();
    // The bound covers a finished stream; a sync flush adds at most an empty stored block.
    out.resize(zlib_rs::compress_bound(input.len()) + 64, 0);
    let status = d
        .compress(input, out, flush)
        .map_err(|e| io::Error::other(format!("deflate: {}", e.as_str())))?;
    let written = d.total_out() as usize;
    let finished = flush != DeflateFlush::Finish || status == Status::StreamEnd;
    if d.total_in() as usize != input.len() || written >= out.len() || !finished {
        return Err(io::Error::other("deflate did not finish its block"));
    }
    out.truncate(written);
    Ok(())
}

/// Judges a block from three samples (start, middle, end); cheapest test first, so an ordinary block costs one
/// Huffman-only pass, one full deflate and one run-length deflate of its middle sample, and a random one three
/// byte counts and three quick match searches.
fn plan(block: &[u8], level: u32) -> io::Result<Plan> {
    if level == 0 || block.len() < 4 * SAMPLE {
        return Ok(Plan::Deflate);
    }
    let mid = block.len() / 2 - SAMPLE / 2;
    let samples = [
        &block[mid..mid + SAMPLE],
        &block[..SAMPLE],
        &block[block.len() - SAMPLE..],
    ];
    let mut out = Vec::new();
    let mut size = |sample: &[u8], level: u32, strategy: Strategy| -> io::Result<usize> {
        deflate_into(sample, level, strategy, DeflateFlush::Finish, &mut out)?;
        Ok(out.len())
    };
    let shrinks = |n: usize| n * 100 < SAMPLE * 99;
    // Each sample's Huffman-only size, measured only when needed: an ordinary block shrinks on its first sample
    // and fails the Huffman test there, so its other two are never coded.
    let mut huffman: [Option<usize>; 3] = [None; 3];
    let mut any_shrinks = false;
    for (h, sample) in huffman.iter_mut().zip(samples) {
        // Random data (most of a layer of wheels, weights or archives) shows by its byte counts alone that
        // Huffman coding cannot shrink it: the pass is skipped only when its outcome is certain.
        if order0_bound(sample) * 1000 >= SAMPLE * 995 {
            continue;
        }
        let n = size(sample, level, Strategy::HuffmanOnly)?;
        *h = Some(n);
        if shrinks(n) {
            any_shrinks = true;
            break;
        }
    }
    if !any_shrinks {
        // Evenly spread bytes can still repeat (a file twice in a layer, a repeating pattern): only when a quick
        // match search finds nothing either is the block stored.
        for sample in samples {
            if shrinks(size(sample, 1, Strategy::Default)?) {
                return Ok(Plan::Deflate);
            }
        }
        return Ok(Plan::Stored);
    }
    // The full deflate's sizes, measured only as far as needed: an ordinary block fails the Huffman test on its
    // first sample and the RLE test on its first sample too.
    let mut full: [Option<usize>; 3] = [None; 3];
    let mut huffman_enough = true;
    for ((h, sample), f) in huffman.into_iter().zip(samples).zip(full.iter_mut()) {
        let h = match h {
            Some(h) => h,
            None => size(sample, level, Strategy::HuffmanOnly)?,
        };
        let n = full_deflate(sample, level)?.len();
        *f = Some(n);
        if h * 100 > n * 101 {
            huffman_enough = false;
            break;
        }
    }
    if huffman_enough {
        return Ok(Plan::Huffman);
    }
    if level > RLE_MAX_LEVEL {
        return Ok(Plan::Deflate);
    }
    for (sample, f) in samples.into_iter().zip(full) {
        let n = match f {
            Some(n) => n,
            None => full_deflate(sample, level)?.len(),
        };
        if size(sample, level, Strategy::Rle)? * 100 > n * (100 + RLE_MARGIN_PERCENT) {
            return Ok(Plan::Deflate);
        }
    }
    Ok(Plan::Rle)
}

/// A lower bound, in bytes, on any coding of `sample` that gives each byte a code of its own (Huffman coding
/// alone, static codes, stored): its order-0 entropy. It is computed in floating point, so [`plan`] uses it only
/// with a margin, to skip a pass whose outcome it makes certain; the plan never depends on its last bits.
fn order0_bound(sample: &[u8]) -> usize {
    let mut counts = [0u32; 256];
    for &b in sample {
        counts[b as usize] += 1;
    }
    let n = sample.len() as f64;
    let bits: f64 = counts
        .iter()
        .filter(|&&c| c > 0)
        .map(|&c| {
            let c = f64::from(c);
            c * (n / c).log2()
        })
        .sum();
    (bits / 8.0) as usize
}

thread_local! {
    /// This thread's libdeflate compressor and its level, made at its first full deflate.
    static FULL: std::cell::RefCell<Option<(u32, libdeflater::Compressor)>> =
        const { std::cell::RefCell::new(None) };
}

/// `input` deflated with the full match search at `level` (1–9) by libdeflate (~3× zlib's speed at level 6 on
/// binaries and Python sources here, output ~1% smaller), as one final deflate stream.
fn full_deflate(input: &[u8], level: u32) -> io::Result<Vec<u8>> {
    let mut out = Vec::new();
    full_deflate_into(input, level, &mut out)?;
    Ok(out)
}

/// [`full_deflate`] into `out` (a buffer given back by an earlier block, so the big ones are not allocated anew).
fn full_deflate_into(input: &[u8], level: u32, out: &mut Vec<u8>) -> io::Result<()> {
    FULL.with(|cell| {
        let mut cell = cell.borrow_mut();
        let c = match &mut *cell {
            Some((l, c)) if *l == level => c,
            slot => {
                let lvl = libdeflater::CompressionLvl::new(level.clamp(1, 9) as i32)
                    .map_err(|_| io::Error::other(format!("gzip level {level}")))?;
                &mut slot.insert((level, libdeflater::Compressor::new(lvl))).1
            }
        };
        out.clear();
        out.resize(c.deflate_compress_bound(input.len()), 0);
        let n = c
            .deflate_compress(input, out)
            .map_err(|e| io::Error::other(format!("deflate: {e:?}")))?;
        out.truncate(n);
        Ok(())
    })
}

/// Whether `out` is no smaller than `block` written as stored blocks.
fn no_smaller_than_stored(out: &[u8], block: &[u8]) -> bool {
    out.len() >= block.len() + 5 * block.len().div_ceil(65_535).max(1) + 5
}

/// Compresses one block as its plan says; `true` with it when the block's deflate stream is final (a full
/// deflate by libdeflate, which ends its stream), so that its gzip member must end after it. `out` is the buffer
/// to compress into (its contents are dropped).
pub(crate) fn deflate_block(
    block: &[u8],
    level: u32,
    last: bool,
    mut out: Vec<u8>,
) -> io::Result<(Vec<u8>, bool)> {
    out.clear();
    let strategy = match plan(block, level)? {
        Plan::Stored => {
            out.reserve(block.len() + 1024);
            stored(block, last, &mut out);
            return Ok((out, false));
        }
        Plan::Huffman => Strategy::HuffmanOnly,
        Plan::Rle => Strategy::Rle,
        Plan::Deflate if level >= 1 => {
            full_deflate_into(block, level, &mut out)?;
            if no_smaller_than_stored(&out, block) {
                out.clear();
                stored(block, last, &mut out);
                return Ok((out, false));
            }
            return Ok((out, true));
        }
        Plan::Deflate => Strategy::Default,
    };
    let flush = if last {
        DeflateFlush::Finish
    } else {
        DeflateFlush::SyncFlush
    };
    deflate_into(block, level, strategy, flush, &mut out)?;
    if no_smaller_than_stored(&out, block) {
        out.clear();
        stored(block, last, &mut out);
    }
    Ok((out, false))
}

/// A gzip writer that compresses on `threads` threads with thread-count-independent output. Its block buffers —
/// inputs and outputs — go round and are filled again rather than allocated per block: a push or export of a
/// multi-GiB layer allocates the same few MiB once, and the allocator is never left holding freed blocks in
/// every thread's arena (glibc kept ~60 MiB of them across the torch push before).
pub struct ParallelGzip<W: Write> {
    inner: Option<W>,
    level: u32,
    buf: Vec<u8>,
    next_seq: u64,
    next_out: u64,
    jobs: Option<mpsc::SyncSender<(u64, Vec<u8>, bool)>>,
    results: mpsc::Receiver<io::Result<Done>>,
    workers: Vec<JoinHandle<()>>,
    pending: BTreeMap<u64, Done>,
    in_flight: usize,
    max_in_flight: usize,
    crc: Option<(u32, u64)>,
    wrote_header: bool,
    /// Input buffers given back by the workers.
    spare_inputs: Vec<Vec<u8>>,
    /// Output buffers written out, for the workers to compress into again.
    spare_outputs: Arc<Mutex<Vec<Vec<u8>>>>,
    /// Input buffers allocated so far (the rest were given back ones).
    inputs_made: usize,
    /// Where in the tar stream the input is.
    cursor: TarCursor,
    /// The big file whose data the current block holds.
    big: Option<BigFile>,
    /// Blocks made ahead, when a speculation is installed at this level.
    speculation: Option<Arc<Speculation>>,
    /// Blocks taken from the speculation.
    taken: u64,
}

/// A big file the input is inside: its size, which of its blocks comes next, and the blocks made ahead for it.
struct BigFile {
    size: u64,
    block: u64,
    ahead: Option<Blocks>,
}

impl<W: Write> ParallelGzip<W> {
    /// A writer at gzip `level` (0–9) using `threads` compression threads (at least one).
    pub fn new(inner: W, level: u32, threads: usize) -> ParallelGzip<W> {
        let threads = threads.max(1);
        let (job_tx, job_rx) = mpsc::sync_channel::<(u64, Vec<u8>, bool)>(threads);
        let job_rx = Arc::new(Mutex::new(job_rx));
        let (res_tx, res_rx) = mpsc::channel();
        let spare_outputs: Arc<Mutex<Vec<Vec<u8>>>> = Arc::default();
        let level = level.min(9);
        let workers = (0..threads)
            .map(|_| {
                let rx = job_rx.clone();
                let tx = res_tx.clone();
                let spare = spare_outputs.clone();
                std::thread::spawn(move || loop {
                    let job = match rx.lock() {
                        Ok(r) => r.recv(),
                        Err(_) => return,
                    };
                    let Ok((seq, data, last)) = job else {
                        return;
                    };
                    let mut h = crc32fast::Hasher::new();
                    h.update(&data);
                    let out = spare
                        .lock()
                        .ok()
                        .and_then(|mut s| s.pop())
                        .unwrap_or_default();
                    let r = deflate_block(&data, level, last, out).map(|(out, ends)| Done {
                        seq,
                        data: out,
                        crc: h.finalize(),
                        len: data.len() as u64,
                        input: data,
                        ends_member: ends,
                        last,
                    });
                    if tx.send(r).is_err() {
                        return;
                    }
                })
            })
            .collect();
        ParallelGzip {
            inner: Some(inner),
            level,
            buf: Vec::with_capacity(BLOCK),
            next_seq: 0,
            next_out: 0,
            jobs: Some(job_tx),
            results: res_rx,
            workers,
            pending: BTreeMap::new(),
            in_flight: 0,
            max_in_flight: threads * 2,
            crc: None,
            wrote_header: false,
            spare_inputs: Vec::new(),
            spare_outputs,
            inputs_made: 1,
            cursor: TarCursor::default(),
            big: None,
            speculation: Speculation::current(level),
            taken: 0,
        }
    }

    /// Blocks of big files taken from the speculation instead of compressed.
    pub fn taken(&self) -> u64 {
        self.taken
    }

    /// Ends the current block here (nothing when it is empty).
    fn cut(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        self.submit(false)
    }

    /// The current block — of a big file — as made ahead, when the speculation holds it: the same bytes the
    /// workers would make, checked by the input's CRC-32 and length.
    fn made_ahead(&mut self) -> Option<Done> {
        let spec = self.speculation.as_ref()?;
        let big = self.big.as_mut()?;
        let index = big.block;
        big.block += 1;
        let crc = match (index, &big.ahead) {
            (0, _) => {
                let crc = crc32fast::hash(&self.buf);
                big.ahead = spec.find(big.size, crc);
                crc
            }
            (_, Some(_)) => crc32fast::hash(&self.buf),
            (_, None) => return None,
        };
        let ahead = big.ahead.as_mut()?;
        let mut data = self
            .spare_outputs
            .lock()
            .ok()
            .and_then(|mut s| s.pop())
            .unwrap_or_default();
        match ahead.next(&mut data) {
            Ok(Some(b)) if b.crc == crc && b.len == self.buf.len() as u64 => Some(Done {
                seq: self.next_seq,
                data,
                input: Vec::new(),
                crc,
                len: b.len,
                ends_member: b.ends_member,
                last: false,
            }),
            Ok(Some(_)) => None,
            // A short or unreadable file of blocks: none of the rest is taken.
            Ok(None) | Err(_) => {
                big.ahead = None;
                None
            }
        }
    }

    fn inner(&mut self) -> io::Result<&mut W> {
        self.inner
            .as_mut()
            .ok_or_else(|| io::Error::other("gzip writer already finished"))
    }

    fn write_ready(&mut self) -> io::Result<()> {
        if !self.wrote_header {
            self.inner()?.write_all(&HEADER)?;
            self.wrote_header = true;
        }
        while let Some(mut done) = self.pending.remove(&self.next_out) {
            self.inner()?.write_all(&done.data)?;
            if let Ok(mut spare) = self.spare_outputs.lock() {
                spare.push(std::mem::take(&mut done.data));
            }
            let member = match self.crc {
                None => (done.crc, done.len),
                Some((crc, len)) => {
                    let mut a = crc32fast::Hasher::new_with_initial_len(crc, len);
                    a.combine(&crc32fast::Hasher::new_with_initial_len(done.crc, done.len));
                    (a.finalize(), len + done.len)
                }
            };
            self.crc = Some(member);
            if done.ends_member && !done.last {
                // Its stream ended: this member's trailer, and the next member's header.
                let inner = self.inner()?;
                inner.write_all(&member.0.to_le_bytes())?;
                inner.write_all(&(member.1 as u32).to_le_bytes())?;
                inner.write_all(&HEADER)?;
                self.crc = None;
            }
            self.next_out += 1;
        }
        Ok(())
    }

    fn collect_one(&mut self) -> io::Result<()> {
        let done = self
            .results
            .recv()
            .map_err(|_| io::Error::other("a gzip worker stopped"))??;
        self.in_flight -= 1;
        let mut done = done;
        let mut input = std::mem::take(&mut done.input);
        input.clear();
        self.spare_inputs.push(input);
        self.pending.insert(done.seq, done);
        self.write_ready()
    }

    fn submit(&mut self, last: bool) -> io::Result<()> {
        // Blocks taken from the speculation wait in `pending` behind the workers' ones: they count too, or a run
        // of them behind one slow block would pile up.
        while self.in_flight > 0 && self.in_flight + self.pending.len() >= self.max_in_flight {
            self.collect_one()?;
        }
        if !last {
            if let Some(done) = self.made_ahead() {
                let done_len = done.len;
                self.buf.clear();
                self.pending.insert(done.seq, done);
                self.next_seq += 1;
                self.taken += 1;
                if let Some(spec) = &self.speculation {
                    spec.note_used(done_len);
                }
                return self.write_ready();
            }
        }
        let next = if last {
            Vec::new()
        } else {
            self.spare_inputs.pop().unwrap_or_else(|| {
                self.inputs_made += 1;
                Vec::with_capacity(BLOCK)
            })
        };
        let block = std::mem::replace(&mut self.buf, next);
        let jobs = self
            .jobs
            .as_ref()
            .ok_or_else(|| io::Error::other("gzip writer already finished"))?;
        jobs.send((self.next_seq, block, last))
            .map_err(|_| io::Error::other("gzip workers stopped"))?;
        self.next_seq += 1;
        self.in_flight += 1;
        Ok(())
    }

    /// Writes the last block and the gzip trailer, and returns the inner writer.
    pub fn finish(mut self) -> io::Result<W> {
        self.submit(true)?;
        while self.in_flight > 0 {
            self.collect_one()?;
        }
        self.write_ready()?;
        let (crc, len) = self.crc.unwrap_or((0, 0));
        let mut inner = self
            .inner
            .take()
            .ok_or_else(|| io::Error::other("gzip writer already finished"))?;
        inner.write_all(&crc.to_le_bytes())?;
        inner.write_all(&(len as u32).to_le_bytes())?;
        Ok(inner)
    }

    /// The level in use.
    pub fn level(&self) -> u32 {
        self.level
    }
}

impl<W: Write> Write for ParallelGzip<W> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let room = BLOCK - self.buf.len();
        let (n, event) = self.cursor.step(&data[..room.min(data.len())]);
        self.buf.extend_from_slice(&data[..n]);
        match event {
            Some(Event::BigStart { size }) => {
                self.cut()?;
                self.big = Some(BigFile {
                    size,
                    block: 0,
                    ahead: None,
                });
            }
            Some(Event::BigEnd) => {
                self.cut()?;
                self.big = None;
            }
            None if self.buf.len() == BLOCK => self.submit(false)?,
            None => {}
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        // Blocks are fixed-size: flushing early would change the output, so only finished blocks are written.
        self.inner()?.flush()
    }
}

impl<W: Write> Drop for ParallelGzip<W> {
    fn drop(&mut self) {
        self.jobs.take();
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn gz(data: &[u8], threads: usize, level: u32) -> Vec<u8> {
        let mut w = ParallelGzip::new(Vec::new(), level, threads);
        // Odd write sizes, to cross block boundaries mid-write.
        for chunk in data.chunks(77_777) {
            w.write_all(chunk).unwrap();
        }
        w.finish().unwrap()
    }

    fn mixed(n: usize) -> Vec<u8> {
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        (0..n)
            .map(|i| {
                if (i / 300_000) % 2 == 0 {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    state as u8
                } else {
                    b"the quick brown fox jumps over the lazy dog\n"[i % 44]
                }
            })
            .collect()
    }

    #[test]
    fn fully_deflated_blocks_end_their_gzip_member() {
        // Prose with repeats: every block takes the full match search (libdeflate), whose stream is final.
        let prose: Vec<u8> = (0..3 * BLOCK)
            .map(|i| {
                b"the quick brown fox jumps over the lazy dog, again and again\n"[i % 60]
                    ^ (i / 7919) as u8
            })
            .collect();
        assert_eq!(plan(&prose[..BLOCK], 6).unwrap(), Plan::Deflate);
        let out = gz(&prose, 2, 6);
        let mut first = Vec::new();
        flate2::read::GzDecoder::new(&out[..])
            .read_to_end(&mut first)
            .unwrap();
        assert_eq!(first, prose[..BLOCK], "one member per block");
        let mut all = Vec::new();
        flate2::read::MultiGzDecoder::new(&out[..])
            .read_to_end(&mut all)
            .unwrap();
        assert_eq!(all, prose);
        // Blocks that are not fully deflated share one member.
        let random = random_bytes(3 * BLOCK);
        let mut first = Vec::new();
        flate2::read::GzDecoder::new(&gz(&random, 2, 6)[..])
            .read_to_end(&mut first)
            .unwrap();
        assert_eq!(first, random);
    }

    #[test]
    fn same_bytes_for_any_thread_count_and_readable_by_gzip_readers() {
        let inputs: Vec<Vec<u8>> = vec![
            vec![],
            vec![7],
            vec![b'a'; BLOCK],
            vec![b'b'; BLOCK + 1],
            mixed(10 << 20),
        ];
        for input in &inputs {
            let one = gz(input, 1, 6);
            for t in [2, 3, 8] {
                assert_eq!(gz(input, t, 6), one, "{} bytes, {t} threads", input.len());
            }
            let mut back = Vec::new();
            flate2::read::MultiGzDecoder::new(&one[..])
                .read_to_end(&mut back)
                .unwrap();
            assert_eq!(&back, input, "{} bytes round-trip", input.len());
        }
    }

    #[test]
    fn gzip_the_tool_reads_it() {
        let mut input = mixed(3 << 20);
        input.extend_from_slice(&base64_like(2 << 20));
        let out = gz(&input, 2, 6);
        let mut child = std::process::Command::new("gzip")
            .args(["-dc"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("gzip is installed");
        let mut stdin = child.stdin.take().unwrap();
        let writer = std::thread::spawn(move || stdin.write_all(&out));
        let o = child.wait_with_output().unwrap();
        writer.join().unwrap().unwrap();
        assert!(o.status.success());
        assert_eq!(o.stdout, input, "gzip -t and -d accept it");
    }

    /// `n` bytes of a xorshift generator: what no compressor shrinks.
    fn random_bytes(n: usize) -> Vec<u8> {
        let mut state = 0x2545_f491_4f6c_dd1du64;
        (0..n)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                (state >> 32) as u8
            })
            .collect()
    }

    #[test]
    fn incompressible_blocks_are_recognised_by_their_samples() {
        let random = random_bytes(BLOCK);
        assert_eq!(plan(&random, 6).unwrap(), Plan::Stored);
        // A run is all that run-length matching needs.
        assert_eq!(plan(&vec![b'x'; BLOCK], 6).unwrap(), Plan::Rle);
        assert_eq!(plan(&vec![b'x'; BLOCK], 9).unwrap(), Plan::Deflate);
        let mut half = random.clone();
        half[BLOCK / 2..].fill(b'y');
        assert_eq!(
            plan(&half, 6).unwrap(),
            Plan::Rle,
            "a compressible sample keeps compression"
        );
        assert_eq!(
            plan(&random[..64 << 10], 6).unwrap(),
            Plan::Deflate,
            "small blocks are always deflated"
        );
        assert_eq!(plan(&random, 0).unwrap(), Plan::Deflate, "level 0 stores");
        // Evenly spread bytes that repeat: Huffman coding gains nothing, matches gain everything.
        let ramp: Vec<u8> = (0..BLOCK as u32).map(|i| (i % 251) as u8).collect();
        assert_eq!(plan(&ramp, 6).unwrap(), Plan::Deflate);
        let mut twice = random[..BLOCK / 2].to_vec();
        for (i, b) in twice.iter_mut().enumerate() {
            *b = random[i % 20_000];
        }
        twice.extend_from_slice(&twice.clone());
        assert_eq!(
            plan(&twice, 6).unwrap(),
            Plan::Deflate,
            "random data that repeats within the window"
        );
    }

    #[test]
    fn the_entropy_bound_is_below_every_huffman_coding_and_random_samples_reach_it() {
        let random = random_bytes(SAMPLE);
        let text = base64_like(SAMPLE);
        let ramp: Vec<u8> = (0..SAMPLE as u32).map(|i| (i % 251) as u8).collect();
        let skewed: Vec<u8> = random.iter().map(|&b| b & 0x3f | b >> 7).collect();
        let mut out = Vec::new();
        for sample in [&random, &text, &ramp, &skewed, &vec![0u8; SAMPLE]] {
            deflate_into(
                sample,
                6,
                Strategy::HuffmanOnly,
                DeflateFlush::Finish,
                &mut out,
            )
            .unwrap();
            assert!(order0_bound(sample) <= out.len(), "a lower bound");
        }
        assert!(
            order0_bound(&random) * 1000 >= SAMPLE * 995,
            "random bytes skip the Huffman passes"
        );
        assert!(order0_bound(&text) * 1000 < SAMPLE * 995);
        assert!(
            order0_bound(&ramp) * 1000 >= SAMPLE * 995,
            "evenly spread bytes too: the match search still judges them (see above)"
        );
    }

    /// Checks that `input` gives the same bytes on one thread and two, and that a gzip reader gets it back.
    fn round_trips_on_any_thread_count(input: &[u8]) {
        let out = gz(input, 2, 6);
        assert_eq!(gz(input, 1, 6), out, "same bytes for any thread count");
        let mut back = Vec::new();
        flate2::read::MultiGzDecoder::new(&out[..])
            .read_to_end(&mut back)
            .unwrap();
        assert_eq!(back, input);
    }

    /// Checks that `block` is planned as `want` at level 6 and comes out at most `margin_percent` larger than the
    /// full deflate; returns its compressed size.
    fn planned_within(block: &[u8], want: Plan, margin_percent: usize) -> usize {
        assert_eq!(plan(block, 6).unwrap(), want);
        let mut full = Vec::new();
        deflate_into(block, 6, Strategy::Default, DeflateFlush::Finish, &mut full).unwrap();
        let (out, _) = deflate_block(block, 6, true, Vec::new()).unwrap();
        assert!(
            out.len() * 100 <= full.len() * (100 + margin_percent),
            "{want:?}: {} against full deflate {}",
            out.len(),
            full.len()
        );
        out.len()
    }

    /// Base64 of random bytes: 6 bits of entropy per byte and no repeats for a match search to find.
    fn base64_like(n: usize) -> Vec<u8> {
        const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let mut state = 0x1234_5678_9abc_def1u64;
        (0..n)
            .map(|i| {
                if i % 77 == 76 {
                    return b'\n';
                }
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                ALPHABET[(state >> 58) as usize]
            })
            .collect()
    }

    #[test]
    fn text_without_repeats_is_huffman_coded_as_small_as_full_deflate() {
        let text = base64_like(BLOCK);
        let size = planned_within(&text, Plan::Huffman, 1);
        assert!(size * 100 < text.len() * 80, "it does compress");
        // Text with repeats keeps the match search: Huffman alone would lose most of its gain.
        let prose: Vec<u8> = b"the quick brown fox jumps over the lazy dog\n"
            .iter()
            .copied()
            .cycle()
            .take(BLOCK)
            .collect();
        assert_eq!(plan(&prose, 6).unwrap(), Plan::Deflate);
        // Whatever the plan, the stream round-trips through a gzip reader.
        let mut input = base64_like(3 * BLOCK + 12_345);
        input.extend_from_slice(&prose);
        round_trips_on_any_thread_count(&input);
    }

    /// A tar stream of small incompressible files (wheels, images, archives): 512-byte headers, 1–4 KiB of random
    /// content, zero padding to the next 512 bytes.
    fn tar_of_random_files(n: usize) -> Vec<u8> {
        let mut state = 0x0bad_cafe_dead_beefu64;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let mut out = Vec::with_capacity(n);
        let mut i = 0u64;
        while out.len() < n {
            let mut header = [0u8; 512];
            let name = format!("files/{:02}/f{i}.bin", i / 1000);
            header[..name.len()].copy_from_slice(name.as_bytes());
            let size = 1024 + next() % 3072;
            let fields = format!("0000644\0{:07o}\0{:07o}\0{size:011o}\0{:011o}\0", 0, 0, 0);
            header[100..100 + fields.len()].copy_from_slice(fields.as_bytes());
            header[257..263].copy_from_slice(b"ustar\0");
            out.extend_from_slice(&header);
            for _ in 0..size {
                out.push(next() as u8);
            }
            out.resize(out.len().div_ceil(512) * 512, 0);
            i += 1;
        }
        out.truncate(n);
        out
    }

    #[test]
    fn small_incompressible_files_in_a_tar_take_run_length_matching() {
        let tar = tar_of_random_files(BLOCK);
        let size = planned_within(&tar, Plan::Rle, RLE_MARGIN_PERCENT);
        assert!(
            size * 100 < tar.len() * 90,
            "the padding and headers still compress: {size} of {}",
            tar.len()
        );
        assert_eq!(
            plan(&tar, 9).unwrap(),
            Plan::Deflate,
            "level 9 asks for size"
        );
        let input = tar_of_random_files(3 * BLOCK + 777);
        round_trips_on_any_thread_count(&input);
    }

    #[test]
    fn random_data_is_stored_not_grown() {
        let random = mixed(600_000)[..300_000].to_vec();
        let out = gz(&random, 2, 6);
        assert!(
            out.len() < random.len() + 100,
            "{} > {} + overhead",
            out.len(),
            random.len()
        );
        let text = vec![b'x'; 2 << 20];
        assert!(gz(&text, 2, 6).len() < 20_000, "text still compresses");
    }

    /// A tar of `before` (small files), then `big`, then a small file.
    fn tar_with(before: &[&[u8]], big: &[u8]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        let mut add = |name: String, data: &[u8]| {
            let mut h = tar::Header::new_gnu();
            h.set_size(data.len() as u64);
            h.set_mode(0o644);
            h.set_entry_type(tar::EntryType::Regular);
            b.append_data(&mut h, name, data).unwrap();
        };
        for (i, d) in before.iter().enumerate() {
            add(format!("small{i}"), d);
        }
        add("lib/big.so".to_string(), big);
        add("after".to_string(), b"tail");
        b.into_inner().unwrap()
    }

    fn gz_tar(tar: &[u8], threads: usize) -> (Vec<u8>, u64) {
        let mut w = ParallelGzip::new(Vec::new(), 6, threads);
        for chunk in tar.chunks(77_777) {
            w.write_all(chunk).unwrap();
        }
        let taken = w.taken();
        (w.finish().unwrap(), taken)
    }

    fn find(hay: &[u8], needle: &[u8]) -> bool {
        hay.windows(needle.len()).any(|w| w == needle)
    }

    #[test]
    fn a_big_file_is_compressed_the_same_wherever_it_lies_in_the_layer() {
        let big = mixed(3 * BLOCK + 12_345);
        let a = tar_with(&[&mixed(700_000)], &big);
        let b = tar_with(&[&random_bytes(300_001), b"x"], &big);
        let (ga, _) = gz_tar(&a, 2);
        let (gb, _) = gz_tar(&b, 3);
        // The big file's blocks, compressed alone as the writer cuts them, appear in both blobs.
        for block in big.chunks(BLOCK) {
            let (alone, _) = deflate_block(block, 6, false, Vec::new()).unwrap();
            assert!(find(&ga, &alone) && find(&gb, &alone));
        }
        assert_eq!(gunzip(&ga), a);
        assert_eq!(gunzip(&gb), b);
        assert_eq!(gz_tar(&a, 1).0, ga, "any thread count, the same bytes");
    }

    fn gunzip(gz: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        flate2::read::MultiGzDecoder::new(gz)
            .read_to_end(&mut out)
            .unwrap();
        out
    }

    #[test]
    fn blocks_made_ahead_are_taken_and_change_nothing() {
        let big = mixed(4 * BLOCK + 999);
        let tar = tar_with(&[&mixed(5000)], &big);
        let (plain, taken) = gz_tar(&tar, 2);
        assert_eq!(taken, 0);
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("big.so");
        std::fs::write(&file, &big).unwrap();
        let spec = crate::speculate::Speculation::new(&dir.path().join("spec"), 6).unwrap();
        let open = || std::fs::File::open(&file).unwrap();
        assert!(spec.compress_file(open(), &|| false).unwrap());
        {
            let _on = spec.install();
            let (ahead, taken) = gz_tar(&tar, 2);
            assert_eq!(taken, 5, "every block of the big file");
            assert_eq!(ahead, plain);
            // The file changed after it was compressed ahead (its third block): that block is compressed again,
            // the others still taken, and the blob is what the changed layer gives without any.
            let mut changed = big.clone();
            changed[2 * BLOCK + 5] ^= 0xff;
            let tar2 = tar_with(&[&mixed(5000)], &changed);
            let (ahead2, taken2) = gz_tar(&tar2, 2);
            assert_eq!(taken2, 4);
            drop(_on);
            assert_eq!(ahead2, gz_tar(&tar2, 2).0);
        }
        // A file of blocks cut short (a full disk while it was written, say): what it holds is taken, the rest
        // compressed, the same bytes.
        let kept = std::fs::read_dir(dir.path().join("spec"))
            .unwrap()
            .flatten()
            .flat_map(|d| std::fs::read_dir(d.path()).unwrap().flatten())
            .map(|f| f.path())
            .find(|p| !p.to_string_lossy().ends_with(".tmp"))
            .unwrap();
        let len = std::fs::metadata(&kept).unwrap().len();
        std::fs::OpenOptions::new()
            .write(true)
            .open(&kept)
            .unwrap()
            .set_len(len / 2)
            .unwrap();
        {
            let _on = spec.install();
            let (short, taken) = gz_tar(&tar, 2);
            assert!(taken < 5, "{taken} blocks taken from half a file");
            assert_eq!(short, plain);
        }
        // Another level's writer takes nothing.
        let _on = spec.install();
        let mut w = ParallelGzip::new(Vec::new(), 5, 2);
        w.write_all(&tar).unwrap();
        assert_eq!(w.taken(), 0);
    }

    #[test]
    fn block_buffers_go_round_instead_of_being_allocated_per_block() {
        let data: Vec<u8> = (0..64 * BLOCK as u32 / 4)
            .flat_map(|i| (i % 1000).to_le_bytes())
            .collect();
        let mut gz = ParallelGzip::new(Vec::new(), 6, 2);
        gz.write_all(&data).unwrap();
        // 64 blocks went through; at most the blocks in flight, the one being filled and one spare were made.
        assert!(
            gz.inputs_made <= gz.max_in_flight + 2,
            "{} input buffers for 64 blocks",
            gz.inputs_made
        );
        let outputs = gz.spare_outputs.lock().unwrap().len();
        assert!(outputs <= gz.max_in_flight + 2, "{outputs} output buffers");
        let out = gz.finish().unwrap();
        let mut back = Vec::new();
        flate2::read::MultiGzDecoder::new(&out[..])
            .read_to_end(&mut back)
            .unwrap();
        assert!(back == data);
    }
}
