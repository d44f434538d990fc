//! Big files compressed while the build still writes the layer that holds them. A step's layer is final only
//! when the step ends, but most of a large layer's bytes sit in big files (shared libraries, wheels, model
//! weights) that are complete long before: parallel gzip cuts its blocks at such a file's first and last byte
//! ([`crate::tarcut`]), so the file's compressed blocks depend on its bytes alone and can be made as soon as the
//! file stops changing, on a core the step leaves idle. When the layer is compressed, each block of a big file
//! whose CRC-32 and length match the block made ahead is taken from here instead of compressed again: the same
//! bytes either way, so the blob never depends on what was guessed or when.
//!
//! A [`Speculation`] is installed for the process ([`Speculation::install`]) for the length of a build and its
//! export; every parallel gzip writer at its level consults it. Its files live in a directory of their own, removed
//! when it is dropped (and, after a crash, by the next kiln command that opens the store).

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use crate::pgzip::{deflate_block, BLOCK};
pub use crate::tarcut::BIG;

/// What opens a speculation file: a format tag, then the level (one byte) and the file's size (8 bytes).
const MAGIC: &[u8; 8] = b"kspec-1\n";

/// One block made ahead: its input's CRC-32 and length, and its deflate bytes as [`deflate_block`] made them.
pub(crate) struct Block {
    /// CRC-32 of the block's input.
    pub crc: u32,
    /// The input's length.
    pub len: u64,
    /// The block's deflate stream is final (its gzip member ends after it).
    pub ends_member: bool,
}

/// Big files' compressed blocks made during a build.
pub struct Speculation {
    dir: PathBuf,
    level: u32,
    /// (file size, first block's CRC-32) → the file holding its blocks.
    index: Mutex<HashMap<(u64, u32), PathBuf>>,
    next: AtomicU64,
    /// Bytes of big files compressed ahead so far.
    made: AtomicU64,
    /// Bytes of those a layer's compression took.
    used: AtomicU64,
}

/// The speculation installed for this process.
static CURRENT: Mutex<Option<Arc<Speculation>>> = Mutex::new(None);

/// Keeps a speculation installed; dropping it uninstalls it.
pub struct Installed(Arc<Speculation>);

impl Drop for Installed {
    fn drop(&mut self) {
        if let Ok(mut c) = CURRENT.lock() {
            if c.as_ref().is_some_and(|s| Arc::ptr_eq(s, &self.0)) {
                *c = None;
            }
        }
    }
}

impl Speculation {
    /// A speculation for gzip `level` in a directory of its own under `parent`, named by the process id and a
    /// counter (the store removes those of processes no longer running when it is opened).
    pub fn new(parent: &Path, level: u32) -> io::Result<Arc<Speculation>> {
        // One directory per speculation: the process id (what the clean-up above reads), then a counter.
        static MADE: AtomicU64 = AtomicU64::new(0);
        let n = MADE.fetch_add(1, Ordering::SeqCst);
        let dir = parent.join(format!("{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir)?;
        Ok(Arc::new(Speculation {
            dir,
            level: level.min(9),
            index: Mutex::default(),
            next: AtomicU64::new(0),
            made: AtomicU64::new(0),
            used: AtomicU64::new(0),
        }))
    }

    /// Makes this the process's speculation until the guard is dropped.
    pub fn install(self: &Arc<Self>) -> Installed {
        if let Ok(mut c) = CURRENT.lock() {
            *c = Some(self.clone());
        }
        Installed(self.clone())
    }

    /// The installed speculation for gzip `level`, if any.
    pub(crate) fn current(level: u32) -> Option<Arc<Speculation>> {
        CURRENT
            .lock()
            .ok()?
            .as_ref()
            .filter(|s| s.level == level.min(9))
            .cloned()
    }

    /// The directory its files are kept in.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Bytes of big files compressed ahead so far.
    pub fn made(&self) -> u64 {
        self.made.load(Ordering::SeqCst)
    }

    /// Bytes of big files compressed ahead that a layer's compression took.
    pub fn used(&self) -> u64 {
        self.used.load(Ordering::SeqCst)
    }

    /// Counts `n` bytes taken by a layer's compression.
    pub(crate) fn note_used(&self, n: u64) {
        self.used.fetch_add(n, Ordering::SeqCst);
    }

    /// Compresses the open file `f` block by block, as parallel gzip would inside a layer, and keeps the blocks
    /// for [`Speculation::find`]. `stop`, asked between blocks, abandons it. Returns whether the blocks were kept
    /// (not for anything but a regular file of [`BIG`] bytes or more, one that changed size while read, or a
    /// stopped one). The caller opens the file: it knows where it may be opened from.
    pub fn compress_file(&self, mut f: File, stop: &dyn Fn() -> bool) -> io::Result<bool> {
        let meta = f.metadata()?;
        let size = meta.len();
        if !meta.is_file() || size < BIG {
            return Ok(false);
        }
        let n = self.next.fetch_add(1, Ordering::SeqCst);
        let tmp = self.dir.join(format!("{n}.tmp"));
        let made = self.write_blocks(&mut f, size, &tmp, stop);
        let first = match made {
            Ok(Some(first)) if f.metadata()?.len() == size => first,
            other => {
                let _ = std::fs::remove_file(&tmp);
                return other.map(|_| false);
            }
        };
        let done = self.dir.join(n.to_string());
        std::fs::rename(&tmp, &done)?;
        if let Ok(mut index) = self.index.lock() {
            index.insert((size, first), done);
        }
        self.made.fetch_add(size, Ordering::SeqCst);
        Ok(true)
    }

    /// Writes `f`'s blocks to `to`; the first block's CRC, or `None` when stopped or the file was shorter.
    fn write_blocks(
        &self,
        f: &mut File,
        size: u64,
        to: &Path,
        stop: &dyn Fn() -> bool,
    ) -> io::Result<Option<u32>> {
        let mut out = BufWriter::with_capacity(1 << 20, File::create(to)?);
        out.write_all(MAGIC)?;
        out.write_all(&[self.level as u8])?;
        out.write_all(&size.to_le_bytes())?;
        // A round of one block per thread at a time, compressed side by side (the threads inherit the caller's
        // priority), written in order.
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
        let mut inputs: Vec<Vec<u8>> = (0..threads).map(|_| Vec::with_capacity(BLOCK)).collect();
        let mut outputs: Vec<Vec<u8>> = vec![Vec::new(); threads];
        let mut first = None;
        let mut left = size;
        while left > 0 {
            if stop() {
                return Ok(None);
            }
            let mut round = 0;
            for input in inputs.iter_mut() {
                if left == 0 {
                    break;
                }
                let len = left.min(BLOCK as u64) as usize;
                input.resize(len, 0);
                if f.read_exact(input).is_err() {
                    return Ok(None);
                }
                left -= len as u64;
                round += 1;
            }
            let level = self.level;
            let made: Vec<io::Result<(u32, Vec<u8>, bool)>> = std::thread::scope(|scope| {
                let jobs: Vec<_> = inputs[..round]
                    .iter()
                    .zip(outputs.drain(..round))
                    .map(|(input, out)| {
                        scope.spawn(move || {
                            let crc = crc32fast::hash(input);
                            deflate_block(input, level, false, out).map(|(d, e)| (crc, d, e))
                        })
                    })
                    .collect();
                jobs.into_iter()
                    .map(|j| {
                        j.join().unwrap_or_else(|_| {
                            Err(io::Error::other("a compression thread failed"))
                        })
                    })
                    .collect()
            });
            for (input, block) in inputs.iter().zip(made) {
                let (crc, data, ends) = block?;
                first.get_or_insert(crc);
                out.write_all(&crc.to_le_bytes())?;
                out.write_all(&(input.len() as u32).to_le_bytes())?;
                out.write_all(&[u8::from(ends)])?;
                out.write_all(&(data.len() as u32).to_le_bytes())?;
                out.write_all(&data)?;
                outputs.push(data);
            }
            outputs.resize_with(threads, Vec::new);
        }
        out.into_inner().map_err(|e| e.into_error())?;
        Ok(first)
    }

    /// The blocks made ahead for a file of `size` bytes whose first block's CRC-32 is `first_crc`.
    pub(crate) fn find(&self, size: u64, first_crc: u32) -> Option<Blocks> {
        let path = self.index.lock().ok()?.get(&(size, first_crc))?.clone();
        let mut r = BufReader::with_capacity(1 << 20, File::open(path).ok()?);
        let mut head = [0u8; 17];
        r.read_exact(&mut head).ok()?;
        let ok = &head[..8] == MAGIC
            && u32::from(head[8]) == self.level
            && head[9..17] == size.to_le_bytes();
        ok.then_some(Blocks { r })
    }
}

impl Drop for Speculation {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A big file's blocks made ahead, read in order.
pub(crate) struct Blocks {
    r: BufReader<File>,
}

impl Blocks {
    /// The next block, its deflate bytes into `data`; `None` after the last.
    pub(crate) fn next(&mut self, data: &mut Vec<u8>) -> io::Result<Option<Block>> {
        let mut head = [0u8; 13];
        match self.r.read_exact(&mut head) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
            Err(e) => return Err(e),
        }
        let word = |i: usize| u32::from_le_bytes([head[i], head[i + 1], head[i + 2], head[i + 3]]);
        let n = word(9) as usize;
        data.clear();
        data.resize(n, 0);
        self.r.read_exact(data)?;
        Ok(Some(Block {
            crc: word(0),
            len: u64::from(word(4)),
            ends_member: head[8] != 0,
        }))
    }
}
