//! Where a tar stream's big files lie, found from the stream alone. Parallel gzip cuts its blocks at the start and
//! the end of every regular file of at least [`BIG`] bytes, so that the compressed blocks of such a file depend
//! only on the file's own bytes and not on what precedes it in the layer: they can be made while the build still
//! writes the layer (see [`crate::speculate`]) and give the same bytes as the export would. Because the cuts are
//! found by reading the tar headers in the stream — not told by whoever renders it — a layer's blob is the same
//! whether it is compressed from a snapshot directory, a stored tar or a pulled layer.
//!
//! The reading follows Go's `archive/tar` (what containerd and BuildKit read layers with): a header's size field
//! is octal or, with its high bit set, base-256; a PAX header's `size` record overrides the next entry's; link,
//! symlink, device, directory and FIFO entries carry no data whatever their size says. A stream that stops looking
//! like a tar (a bad header checksum) gets no more cuts: the output is still a function of the bytes alone.

/// The smallest file whose data starts and ends a block of its own: the cut costs a partial block's worth of
/// dictionary, nothing on a file this size, and files this big hold most of a large layer's bytes (shared
/// libraries, wheels, model weights).
pub const BIG: u64 = 1 << 20;

/// The most of a PAX header's records kept to look for `size`: a larger one (long xattrs) is skipped.
const PAX_MAX: usize = 64 << 10;

/// What the bytes just consumed end at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// The next byte is the first of a regular file of `size` bytes (at least [`BIG`]).
    BigStart {
        /// The file's size.
        size: u64,
    },
    /// The last byte consumed was the last of that file.
    BigEnd,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// A big regular file's data.
    Big,
    /// A PAX extended header's records, read for `size`.
    Pax,
    /// Any other entry's data.
    Skip,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Reading a 512-byte header; `have` bytes of it so far.
    Header { have: usize },
    /// An entry's data, `left` bytes to go, then `pad` bytes of padding.
    Data { left: u64, pad: u64, kind: Kind },
    /// Padding to the next 512-byte boundary.
    Pad { left: u64 },
    /// Not a tar this reader understands: no more events.
    Lost,
}

/// Follows a tar stream written to it piece by piece.
pub struct TarCursor {
    state: State,
    header: [u8; 512],
    pax: Vec<u8>,
    /// The size a PAX header gave the next entry.
    next_size: Option<u64>,
}

impl Default for TarCursor {
    fn default() -> Self {
        TarCursor {
            state: State::Header { have: 0 },
            header: [0; 512],
            pax: Vec::new(),
            next_size: None,
        }
    }
}

impl TarCursor {
    /// Consumes the first bytes of `data` up to the next event (all of it when none comes), and says how many and
    /// which event follows them. Consumes at least one byte of a non-empty `data`.
    pub fn step(&mut self, data: &[u8]) -> (usize, Option<Event>) {
        if data.is_empty() {
            return (0, None);
        }
        match self.state {
            State::Lost => (data.len(), None),
            State::Header { have } => {
                let n = (512 - have).min(data.len());
                self.header[have..have + n].copy_from_slice(&data[..n]);
                if have + n < 512 {
                    self.state = State::Header { have: have + n };
                    return (n, None);
                }
                (n, self.parse_header())
            }
            State::Data { left, pad, kind } => {
                let n = left.min(data.len() as u64) as usize;
                if kind == Kind::Pax && self.pax.len() + n <= PAX_MAX {
                    self.pax.extend_from_slice(&data[..n]);
                }
                let left = left - n as u64;
                if left > 0 {
                    self.state = State::Data { left, pad, kind };
                    return (n, None);
                }
                if kind == Kind::Pax {
                    self.next_size = pax_size(&self.pax);
                    self.pax.clear();
                }
                self.state = if pad > 0 {
                    State::Pad { left: pad }
                } else {
                    State::Header { have: 0 }
                };
                (n, (kind == Kind::Big).then_some(Event::BigEnd))
            }
            State::Pad { left } => {
                let n = left.min(data.len() as u64) as usize;
                let left = left - n as u64;
                self.state = if left > 0 {
                    State::Pad { left }
                } else {
                    State::Header { have: 0 }
                };
                (n, None)
            }
        }
    }

    /// The header just read: the state after it, and the event when a big file's data comes next.
    fn parse_header(&mut self) -> Option<Event> {
        let h = &self.header;
        self.state = State::Header { have: 0 };
        if h.iter().all(|&b| b == 0) {
            // The end-of-archive blocks (or padding after them).
            return None;
        }
        let (Some(sum), Some(size)) = (octal(&h[148..156]), field_size(&h[124..136])) else {
            self.state = State::Lost;
            return None;
        };
        let unsigned: u64 = h
            .iter()
            .enumerate()
            .map(|(i, &b)| u64::from(if (148..156).contains(&i) { b' ' } else { b }))
            .sum();
        let signed: i64 = h
            .iter()
            .enumerate()
            .map(|(i, &b)| {
                i64::from(if (148..156).contains(&i) {
                    b' ' as i8
                } else {
                    b as i8
                })
            })
            .sum();
        if sum != unsigned && i64::try_from(sum).ok() != Some(signed) {
            self.state = State::Lost;
            return None;
        }
        let flag = h[156];
        let (size, kind) = match flag {
            b'x' => (size, Kind::Pax),
            b'g' | b'L' | b'K' => (size, Kind::Skip),
            // Header-only entries: hard and symbolic links, devices, directories, FIFOs.
            b'1'..=b'6' => {
                self.next_size = None;
                (0, Kind::Skip)
            }
            b'0' | 0 | b'7' => {
                let size = self.next_size.take().unwrap_or(size);
                (size, if size >= BIG { Kind::Big } else { Kind::Skip })
            }
            _ => (self.next_size.take().unwrap_or(size), Kind::Skip),
        };
        let pad = (512 - size % 512) % 512;
        self.state = match (size, pad) {
            (0, _) => State::Header { have: 0 },
            _ => State::Data {
                left: size,
                pad,
                kind,
            },
        };
        (kind == Kind::Big).then_some(Event::BigStart { size })
    }
}

/// An octal header field (leading spaces or NULs, digits, then a space or NUL); `None` when it is not one.
fn octal(field: &[u8]) -> Option<u64> {
    let s: &[u8] = {
        let start = field.iter().position(|&b| b != b' ' && b != 0)?;
        let rest = &field[start..];
        let end = rest
            .iter()
            .position(|&b| b == b' ' || b == 0)
            .unwrap_or(rest.len());
        &rest[..end]
    };
    if s.is_empty() || s.len() > 21 {
        return None;
    }
    s.iter().try_fold(0u64, |acc, &b| match b {
        b'0'..=b'7' => Some(acc * 8 + u64::from(b - b'0')),
        _ => None,
    })
}

/// A size field: octal, or base-256 (GNU) when its first byte's high bit is set. An all-NUL field is 0.
fn field_size(field: &[u8]) -> Option<u64> {
    if field[0] & 0x80 != 0 {
        if field[0] & 0x40 != 0 {
            return None; // negative
        }
        let mut v: u64 = u64::from(field[0] & 0x3f);
        for &b in &field[1..] {
            v = v.checked_mul(256)? + u64::from(b);
        }
        return Some(v);
    }
    if field.iter().all(|&b| b == 0 || b == b' ') {
        return Some(0);
    }
    octal(field)
}

/// The `size` record of PAX extended header records ("LEN key=value\n" each), when there is a valid one.
fn pax_size(records: &[u8]) -> Option<u64> {
    let mut rest = records;
    let mut found = None;
    while !rest.is_empty() {
        let sp = rest.iter().position(|&b| b == b' ')?;
        let len: usize = std::str::from_utf8(&rest[..sp]).ok()?.parse().ok()?;
        if len <= sp + 1 || len > rest.len() {
            return None;
        }
        let record = &rest[sp + 1..len - 1];
        if let Some(v) = record.strip_prefix(b"size=") {
            found = std::str::from_utf8(v).ok().and_then(|v| v.parse().ok());
        }
        rest = &rest[len..];
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The events of `stream` fed in pieces of `piece` bytes, with the stream offset each one falls at.
    fn events(stream: &[u8], piece: usize) -> Vec<(usize, Event)> {
        let mut c = TarCursor::default();
        let mut out = Vec::new();
        let mut at = 0;
        for chunk in stream.chunks(piece) {
            let mut chunk = chunk;
            while !chunk.is_empty() {
                let (n, ev) = c.step(chunk);
                assert!(n > 0);
                at += n;
                chunk = &chunk[n..];
                if let Some(ev) = ev {
                    out.push((at, ev));
                }
            }
        }
        out
    }

    fn tar_of(files: &[(&str, usize)], pax_first: bool) -> (Vec<u8>, Vec<(usize, usize)>) {
        let mut b = tar::Builder::new(Vec::new());
        if pax_first {
            b.append_pax_extensions([("SCHILY.xattr.user.a", &b"v"[..])])
                .unwrap();
        }
        let mut spans = Vec::new();
        for (name, size) in files {
            let mut h = tar::Header::new_gnu();
            h.set_size(*size as u64);
            h.set_mode(0o644);
            h.set_entry_type(tar::EntryType::Regular);
            b.append_data(&mut h, name, std::io::empty()).unwrap();
            let start = b.get_ref().len();
            let data: Vec<u8> = (0..*size).map(|i| (i % 251) as u8).collect();
            b.get_mut().extend_from_slice(&data);
            let pad = (512 - size % 512) % 512;
            b.get_mut().extend(std::iter::repeat_n(0, pad));
            spans.push((start, start + size));
        }
        (b.into_inner().unwrap(), spans)
    }

    #[test]
    fn big_files_are_found_whatever_the_write_sizes() {
        let long = format!("{}/lib.so", "d".repeat(150));
        let (stream, spans) = tar_of(
            &[
                ("small", 1000),
                ("big", (BIG as usize) + 3),
                (long.as_str(), 2 * BIG as usize),
                ("under", BIG as usize - 1),
            ],
            true,
        );
        let want = vec![
            (spans[1].0, Event::BigStart { size: BIG + 3 }),
            (spans[1].1, Event::BigEnd),
            (spans[2].0, Event::BigStart { size: 2 * BIG }),
            (spans[2].1, Event::BigEnd),
        ];
        for piece in [1, 7, 512, 4096, 1 << 20, stream.len()] {
            assert_eq!(events(&stream, piece), want, "pieces of {piece}");
        }
        // Parsed with the tar reader the layers are read with, the spans hold the files' data.
        let mut a = tar::Archive::new(&stream[..]);
        let offsets: Vec<u64> = a
            .entries()
            .unwrap()
            .map(|e| e.unwrap().raw_file_position())
            .collect();
        assert_eq!(offsets[1], spans[1].0 as u64);
    }

    #[test]
    fn a_pax_size_overrides_the_header_and_links_carry_no_data() {
        let mut b = tar::Builder::new(Vec::new());
        let size = BIG + 10;
        let sz = size.to_string();
        b.append_pax_extensions([("size", sz.as_bytes())]).unwrap();
        let mut h = tar::Header::new_ustar();
        h.set_size(0); // the PAX record is what counts
        h.set_entry_type(tar::EntryType::Regular);
        h.set_cksum();
        b.get_mut().extend_from_slice(h.as_bytes());
        let start = b.get_ref().len();
        b.get_mut().extend(std::iter::repeat_n(7u8, size as usize));
        b.get_mut()
            .extend(std::iter::repeat_n(0, ((512 - size % 512) % 512) as usize));
        // A hard link whose size field says 2 MiB has no data (as Go's reader has it).
        let mut l = tar::Header::new_gnu();
        l.set_entry_type(tar::EntryType::Link);
        l.set_size(2 * BIG);
        l.set_cksum();
        b.get_mut().extend_from_slice(l.as_bytes());
        let mut h2 = tar::Header::new_gnu();
        h2.set_size(BIG);
        h2.set_entry_type(tar::EntryType::Regular);
        h2.set_cksum();
        b.get_mut().extend_from_slice(h2.as_bytes());
        let start2 = b.get_ref().len();
        b.get_mut().extend(std::iter::repeat_n(9u8, BIG as usize));
        let stream = b.into_inner().unwrap();
        assert_eq!(
            events(&stream, 4096),
            vec![
                (start, Event::BigStart { size }),
                (start + size as usize, Event::BigEnd),
                (start2, Event::BigStart { size: BIG }),
                (start2 + BIG as usize, Event::BigEnd),
            ]
        );
    }

    #[test]
    fn base_256_sizes_are_read() {
        let mut f = [0u8; 12];
        f[0] = 0x80;
        f[4..].copy_from_slice(&(9u64 << 30).to_be_bytes()[..]);
        assert_eq!(field_size(&f), Some(9 << 30));
        assert_eq!(field_size(b"00000001000\0"), Some(512));
        assert_eq!(field_size(b"0000000x000\0"), None);
    }

    #[test]
    fn what_is_not_a_tar_has_no_events() {
        let noise: Vec<u8> = (0..3 << 20)
            .map(|i: u32| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        assert_eq!(events(&noise, 65536), vec![]);
        let mut c = TarCursor::default();
        let (n, _) = c.step(&noise);
        assert_eq!(n, 512);
        assert_eq!(c.step(&noise[512..]), (noise.len() - 512, None));
    }
}
