//! `ADD <url>`: the HTTP(S) source. The file is downloaded (streamed to disk, hashed on the way) when the step's
//! cache key is computed, because its content is part of the key, as BuildKit keys an HTTP source by what it
//! fetched: an unchanged file keeps every later step cached, a changed one re-runs what depends on it. The file
//! gets mode 0600 unless the op says otherwise, and the server's Last-Modified as its mtime.
//!
//! A response with an ETag is kept in the root (`downloads/`), and the next build asks with `If-None-Match`, as
//! BuildKit does: a `304 Not Modified` costs no transfer, and the kept bytes serve a step that must run again.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use crate::llb::HttpSource;

/// A download kept for the step that made it.
#[derive(Debug, Clone)]
pub struct Fetched {
    /// The downloaded bytes on disk (scratch space, or the root's kept downloads; never written to).
    pub path: PathBuf,
    /// Their digest.
    pub digest: oci::Digest,
    /// Last-Modified, as seconds since the epoch.
    pub modified: Option<i64>,
}

/// Downloads of this build, by URL: a URL named twice is fetched once, even by two steps at the same moment (the
/// second waits for the first).
#[derive(Debug, Default)]
pub struct Downloads {
    done: Mutex<BTreeMap<String, Arc<Once>>>,
    /// Where responses with an ETag are kept across builds (none: every build downloads in full).
    kept: Option<PathBuf>,
}

/// One URL's download, made by whichever step asks first.
type Once = OnceLock<Result<Fetched, DownloadError>>;

/// What is remembered of a URL whose response had an ETag: `<sha256 of the URL>.json` beside the bytes, which are
/// kept under their own digest.
#[derive(Debug, Serialize, Deserialize)]
struct Kept {
    url: String,
    etag: String,
    digest: oci::Digest,
    modified: Option<i64>,
}

/// Why `ADD <url>` could not bring its file in: the URL and what went wrong (the server's status, a broken
/// transfer, a checksum mismatch, local I/O), as one line. Cloneable, because every step that names the same URL
/// shares one download and so its failure.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{url}: {reason}")]
pub struct DownloadError {
    /// The URL asked for.
    pub url: String,
    /// What went wrong.
    pub reason: String,
}

/// Why a download failed: one line with the URL and what the server said.
fn fail(url: &str, what: impl std::fmt::Display) -> DownloadError {
    DownloadError {
        url: url.to_string(),
        reason: what.to_string(),
    }
}

impl Downloads {
    /// Downloads that keep ETag'd responses in `dir` (made if missing) for conditional requests by later builds.
    pub fn keeping(dir: PathBuf) -> Downloads {
        Downloads {
            done: Mutex::default(),
            kept: Some(dir),
        }
    }

    /// Fetches `src` into `dir` (once per build) and checks `--checksum`.
    pub fn fetch(&self, src: &HttpSource, dir: &Path) -> Result<Fetched, DownloadError> {
        let (cell, n) = {
            let mut done = self.done.lock().map_err(|e| fail(&src.url, e))?;
            let n = done.len();
            (done.entry(src.url.clone()).or_default().clone(), n)
        };
        let fetched = cell.get_or_init(|| {
            download(
                &src.url,
                &dir.join(format!("download-{n}")),
                self.kept.as_deref(),
            )
        });
        check(src, fetched.clone()?)
    }
}

fn memo_path(kept: &Path, url: &str) -> PathBuf {
    kept.join(format!(
        "{}.json",
        oci::Digest::sha256_of(url.as_bytes()).hex()
    ))
}

/// What `kept` remembers of `url`, if its bytes are still there.
fn remembered(kept: &Path, url: &str) -> Option<(Kept, PathBuf)> {
    let memo: Kept = serde_json::from_slice(&std::fs::read(memo_path(kept, url)).ok()?).ok()?;
    let bytes = kept.join(memo.digest.hex());
    (memo.url == url && bytes.is_file()).then_some((memo, bytes))
}

/// GETs `url` into `path`, hashing it on the way; with `kept`, asks `If-None-Match` for what an earlier build
/// kept and keeps what comes with an ETag.
fn download(url: &str, path: &Path, kept: Option<&Path>) -> Result<Fetched, DownloadError> {
    let dir = match kept {
        Some(k) => k,
        None => path.parent().unwrap_or(Path::new(".")),
    };
    std::fs::create_dir_all(dir).map_err(|e| fail(url, format!("{}: {e}", dir.display())))?;
    let client = reqwest::blocking::Client::builder()
        .user_agent(concat!("kiln/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| fail(url, e))?;
    let before = kept.and_then(|k| remembered(k, url));
    let mut req = client.get(url);
    if let Some((memo, _)) = &before {
        req = req.header(reqwest::header::IF_NONE_MATCH, &memo.etag);
    }
    let mut resp = req.send().map_err(|e| fail(url, e))?;
    let status = resp.status();
    if status == reqwest::StatusCode::NOT_MODIFIED {
        if let Some((memo, bytes)) = before {
            return Ok(Fetched {
                path: bytes,
                digest: memo.digest,
                modified: memo.modified,
            });
        }
    }
    if !status.is_success() {
        return Err(fail(url, format!("GET answered HTTP {status}")));
    }
    let modified = resp
        .headers()
        .get(reqwest::header::LAST_MODIFIED)
        .and_then(|v| v.to_str().ok())
        .and_then(parse_http_date);
    let etag = resp
        .headers()
        .get(reqwest::header::ETAG)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    // Kept bytes are written beside their final name and renamed once hashed, so a killed build leaves only a
    // temporary (swept by the next build) and a kept file is always whole.
    let (write_to, keep) = match (kept, &etag) {
        (Some(k), Some(_)) => (
            k.join(format!(".tmp-{}-{}", std::process::id(), unique())),
            true,
        ),
        _ => (path.to_path_buf(), false),
    };
    let written = (|| {
        let mut out = std::fs::File::create(&write_to).map_err(|e| fail(url, e))?;
        let mut hasher = Sha256::new();
        let mut buf = vec![0u8; 256 << 10];
        loop {
            let k = resp
                .read(&mut buf)
                .map_err(|e| fail(url, format!("download broke: {e}")))?;
            if k == 0 {
                break;
            }
            hasher.update(&buf[..k]);
            out.write_all(&buf[..k]).map_err(|e| fail(url, e))?;
        }
        Ok::<_, DownloadError>(oci::Digest::from_sha256_bytes(&hasher.finalize().into()))
    })();
    let digest = match written {
        Ok(d) => d,
        Err(e) => {
            let _ = std::fs::remove_file(&write_to);
            return Err(e);
        }
    };
    if let (true, Some(k), Some(etag)) = (keep, kept, etag) {
        let bytes = k.join(digest.hex());
        std::fs::rename(&write_to, &bytes).map_err(|e| fail(url, e))?;
        let memo = Kept {
            url: url.to_string(),
            etag,
            digest: digest.clone(),
            modified,
        };
        // The memo is a hint: losing it costs one full download.
        let tmp = k.join(format!(".tmp-{}-{}", std::process::id(), unique()));
        if let Ok(text) = serde_json::to_vec(&memo) {
            if std::fs::write(&tmp, text).is_ok() {
                let _ = std::fs::rename(&tmp, memo_path(k, url));
            }
        }
        let _ = std::fs::remove_file(&tmp);
        return Ok(Fetched {
            path: bytes,
            digest,
            modified,
        });
    }
    Ok(Fetched {
        path: path.to_path_buf(),
        digest,
        modified,
    })
}

/// A number no other temporary of this process has used.
fn unique() -> usize {
    static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    N.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

/// Seconds since the epoch of an IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`, what servers send).
fn parse_http_date(s: &str) -> Option<i64> {
    let parts: Vec<&str> = s.split_whitespace().collect();
    let [_, day, month, year, time, "GMT"] = parts.as_slice() else {
        return None;
    };
    let months = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let m = months.iter().position(|x| x == month)? as i64 + 1;
    let (d, y): (i64, i64) = (day.parse().ok()?, year.parse().ok()?);
    let hms: Vec<i64> = time
        .split(':')
        .map(|x| x.parse().ok())
        .collect::<Option<_>>()?;
    let [h, mi, se] = hms.as_slice() else {
        return None;
    };
    // Days from the civil date (Howard Hinnant's algorithm).
    let y2 = if m <= 2 { y - 1 } else { y };
    let era = y2.div_euclid(400);
    let yoe = y2 - era * 400;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(days * 86_400 + h * 3600 + mi * 60 + se)
}

/// `ADD --checksum=sha256:...` must match what came.
fn check(src: &HttpSource, f: Fetched) -> Result<Fetched, DownloadError> {
    match &src.checksum {
        Some(want) if want != &f.digest.to_string() => Err(fail(
            &src.url,
            format!(
                "checksum mismatch: --checksum={want}, downloaded {}",
                f.digest
            ),
        )),
        _ => Ok(f),
    }
}

/// Writes the downloaded file into `diff` under its name, with its mode and time.
pub fn place(src: &HttpSource, f: &Fetched, diff: &Path) -> std::io::Result<()> {
    let dest = diff.join(&src.filename);
    std::fs::copy(&f.path, &dest)?;
    let mode = src.mode.unwrap_or(0o600);
    std::fs::set_permissions(&dest, std::os::unix::fs::PermissionsExt::from_mode(mode))?;
    if let Some(secs) = f.modified {
        let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs.max(0) as u64);
        std::fs::File::options()
            .write(true)
            .open(&dest)?
            .set_modified(t)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_dates_as_servers_send_them() {
        assert_eq!(
            parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT"),
            Some(784_111_777)
        );
        assert_eq!(parse_http_date("Thu, 01 Jan 1970 00:00:00 GMT"), Some(0));
        assert_eq!(
            parse_http_date("Tue, 29 Feb 2028 12:00:00 GMT"),
            Some(1_835_438_400)
        );
        assert_eq!(parse_http_date("Sunday, 06-Nov-94 08:49:37 GMT"), None);
        assert_eq!(parse_http_date("garbage"), None);
    }
}
