//! A file whose dirty pages are sent to the disk while it is still being written. A blob or an archive of
//! hundreds of MiB ends with an fsync; left alone, the kernel writes little back before that, and the fsync then
//! waits for all of it (0.2–0.3 s for 300 MiB here). Asking for writeback of each 8 MiB as soon as it is written
//! overlaps the disk with the compression that produces the next bytes, and leaves the final fsync little to do.

use std::fs::File;
use std::io::{self, Write};
use std::os::fd::AsRawFd;

/// Bytes written between two writeback requests.
const STEP: u64 = 8 << 20;

/// A file being written from start to end, with writeback started behind the writes.
pub struct EagerFile {
    file: File,
    written: u64,
    requested: u64,
}

impl EagerFile {
    /// Wraps a file opened for writing at its start.
    pub fn new(file: File) -> EagerFile {
        EagerFile {
            file,
            written: 0,
            requested: 0,
        }
    }

    /// The file.
    pub fn get_ref(&self) -> &File {
        &self.file
    }

    /// The file, for its owner to sync and close.
    pub fn into_inner(self) -> File {
        self.file
    }

    /// Appends exactly `len` bytes read from `src` at its current position. The bytes move from file to file
    /// inside the kernel (`copy_file_range`), without the read into this process and the write back out that
    /// a copy through a buffer costs: writing a 367 MB layer's archive took a median 0.26 s that way here, 0.16 s
    /// this way, and varied less. Where the kernel cannot copy between the two (another filesystem on an old
    /// kernel, a device), the rest goes through a buffer. A source shorter than `len` is an error.
    pub fn append_from(&mut self, src: &mut File, len: u64) -> io::Result<()> {
        let mut left = len;
        while left > 0 {
            let want = left.min(STEP) as usize;
            match rustix::fs::copy_file_range(&*src, None, &self.file, None, want) {
                Ok(0) => return Err(short_source()),
                Ok(n) => {
                    self.advance(n as u64);
                    left -= n as u64;
                }
                Err(e)
                    if e == rustix::io::Errno::XDEV
                        || e == rustix::io::Errno::INVAL
                        || e == rustix::io::Errno::NOSYS
                        || e == rustix::io::Errno::OPNOTSUPP =>
                {
                    return copy_through(src, self, left);
                }
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    /// A second writer that carries on at this file's end on a duplicate descriptor (which shares the file's
    /// offset), for another thread to write a long run of bytes (an archive's layer as it is compressed) while
    /// this one waits; [`EagerFile::rejoin`] takes its position back before anything is written here again.
    pub fn split_off(&self) -> io::Result<EagerFile> {
        Ok(EagerFile {
            file: self.file.try_clone()?,
            written: self.written,
            requested: self.requested,
        })
    }

    /// Continues where a writer made by [`EagerFile::split_off`] stopped.
    pub fn rejoin(&mut self, other: EagerFile) {
        self.written = other.written;
        self.requested = other.requested;
    }

    fn advance(&mut self, n: u64) {
        self.written += n;
        if self.written - self.requested >= STEP {
            start_writeback(&self.file, self.requested, self.written - self.requested);
            self.requested = self.written;
        }
    }
}

fn short_source() -> io::Error {
    io::Error::new(
        io::ErrorKind::UnexpectedEof,
        "the source is shorter than its size",
    )
}

/// Copies exactly `len` bytes of `src` to `out` in 1 MiB pieces; a source that ends early is an error.
pub fn copy_through<R: io::Read + ?Sized, W: Write + ?Sized>(
    src: &mut R,
    out: &mut W,
    len: u64,
) -> io::Result<()> {
    let mut buf = vec![0u8; (1 << 20).min(len as usize).max(1)];
    let mut left = len;
    while left > 0 {
        let want = buf.len().min(left as usize);
        let n = src.read(&mut buf[..want])?;
        if n == 0 {
            return Err(short_source());
        }
        out.write_all(&buf[..n])?;
        left -= n as u64;
    }
    Ok(())
}

impl Write for EagerFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.file.write(buf)?;
        self.advance(n as u64);
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

/// Asks the kernel to start writing `len` bytes at `offset` back without waiting. Only a hint: an error (a
/// filesystem or file kind without it) changes nothing, since the owner's fsync still makes the bytes durable.
fn start_writeback(file: &File, offset: u64, len: u64) {
    let (Ok(offset), Ok(len)) = (i64::try_from(offset), i64::try_from(len)) else {
        return;
    };
    // SAFETY: sync_file_range reads no memory of this process; the descriptor is open for the call's duration.
    unsafe {
        libc::sync_file_range(file.as_raw_fd(), offset, len, libc::SYNC_FILE_RANGE_WRITE);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_arrive_whole_across_writeback_steps() {
        let d = tempfile::tempdir().expect("tempdir");
        let p = d.path().join("f");
        let mut f = EagerFile::new(File::create(&p).expect("create"));
        let data: Vec<u8> = (0..(STEP as usize * 2 + 777))
            .map(|i| (i % 253) as u8)
            .collect();
        for c in data.chunks(1 << 20) {
            f.write_all(c).expect("write");
        }
        assert_eq!(f.requested, 2 * STEP, "writeback asked for each whole step");
        f.into_inner().sync_all().expect("sync");
        assert_eq!(std::fs::read(&p).expect("read"), data);
    }

    #[test]
    fn appended_files_land_after_written_bytes_and_a_short_source_fails() {
        let d = tempfile::tempdir().expect("tempdir");
        let src_path = d.path().join("src");
        let data: Vec<u8> = (0..(STEP as usize + 4321))
            .map(|i| (i % 251) as u8)
            .collect();
        std::fs::write(&src_path, &data).expect("write source");
        let p = d.path().join("f");
        let mut f = EagerFile::new(File::create(&p).expect("create"));
        f.write_all(b"head").expect("write");
        let mut src = File::open(&src_path).expect("open");
        f.append_from(&mut src, data.len() as u64).expect("append");
        f.write_all(b"tail").expect("write");
        assert_eq!(f.requested, 4 + STEP, "writeback asked for across the copy");
        let mut src = File::open(&src_path).expect("open");
        let err = f
            .append_from(&mut src, data.len() as u64 + 1)
            .expect_err("one byte more than the source holds");
        assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
        drop(f);
        let got = std::fs::read(&p).expect("read");
        assert_eq!(&got[..4], b"head");
        assert_eq!(&got[4..4 + data.len()], &data[..]);
        assert_eq!(&got[4 + data.len()..8 + data.len()], b"tail");
    }

    #[test]
    fn a_split_off_writer_continues_at_the_end_and_hands_its_position_back() {
        let d = tempfile::tempdir().expect("tempdir");
        let p = d.path().join("f");
        let mut f = EagerFile::new(File::create(&p).expect("create"));
        f.write_all(b"head").expect("write");
        let mut aside = f.split_off().expect("split");
        let data = vec![7u8; STEP as usize + 10];
        let aside = std::thread::spawn(move || {
            aside.write_all(&data).expect("write aside");
            aside
        })
        .join()
        .expect("thread");
        f.rejoin(aside);
        assert_eq!(f.written, 4 + STEP + 10, "the other writer's bytes counted");
        assert!(
            f.requested > STEP,
            "writeback asked for by the other writer"
        );
        f.write_all(b"tail").expect("write");
        drop(f);
        let got = std::fs::read(&p).expect("read");
        assert_eq!(got.len(), 4 + STEP as usize + 10 + 4);
        assert_eq!(
            (&got[..4], &got[got.len() - 4..]),
            (&b"head"[..], &b"tail"[..])
        );
        assert!(got[4..got.len() - 4].iter().all(|&b| b == 7));
    }

    #[test]
    fn a_device_takes_the_copy_through_a_buffer() {
        let d = tempfile::tempdir().expect("tempdir");
        let src_path = d.path().join("src");
        std::fs::write(&src_path, b"some bytes").expect("write source");
        let null = std::fs::OpenOptions::new()
            .write(true)
            .open("/dev/null")
            .expect("open /dev/null");
        let mut f = EagerFile::new(null);
        let mut src = File::open(&src_path).expect("open");
        f.append_from(&mut src, 10).expect("append to a device");
    }
}
