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
}

impl Write for EagerFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.file.write(buf)?;
        self.written += n as u64;
        if self.written - self.requested >= STEP {
            start_writeback(&self.file, self.requested, self.written - self.requested);
            self.requested = self.written;
        }
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
}
