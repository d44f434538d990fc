//! `ADD <url>`: the HTTP(S) source. The file is downloaded (streamed to disk, hashed on the way) when the step's
//! cache key is computed, because its content is part of the key, as BuildKit keys an HTTP source by what it
//! fetched: an unchanged file keeps every later step cached, a changed one re-runs what depends on it. The file
//! gets mode 0600 unless the op says otherwise, and the server's Last-Modified as its mtime.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use sha2::{Digest as _, Sha256};

use crate::llb::HttpSource;

/// A download kept for the step that made it.
#[derive(Debug, Clone)]
pub struct Fetched {
    /// The downloaded bytes on disk (scratch space, removed with the worker's downloads).
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
}

/// One URL's download, made by whichever step asks first.
type Once = OnceLock<Result<Fetched, String>>;

/// Why a download failed: one line with the URL and what the server said.
fn fail(url: &str, what: impl std::fmt::Display) -> String {
    format!("{url}: {what}")
}

impl Downloads {
    /// Fetches `src` into `dir` (once per build) and checks `--checksum`.
    pub fn fetch(&self, src: &HttpSource, dir: &Path) -> Result<Fetched, String> {
        let (cell, n) = {
            let mut done = self.done.lock().map_err(|e| e.to_string())?;
            let n = done.len();
            (done.entry(src.url.clone()).or_default().clone(), n)
        };
        let fetched = cell.get_or_init(|| download(&src.url, &dir.join(format!("download-{n}"))));
        check(src, fetched.clone()?)
    }
}

/// GETs `url` into `path`, hashing it on the way.
fn download(url: &str, path: &Path) -> Result<Fetched, String> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| fail(url, format!("{}: {e}", dir.display())))?;
    }
    let client = reqwest::blocking::Client::builder()
        .user_agent(concat!("kiln/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| fail(url, e))?;
    let mut resp = client.get(url).send().map_err(|e| fail(url, e))?;
    let status = resp.status();
    if !status.is_success() {
        return Err(fail(url, format!("GET answered HTTP {status}")));
    }
    let modified = resp
        .headers()
        .get(reqwest::header::LAST_MODIFIED)
        .and_then(|v| v.to_str().ok())
        .and_then(parse_http_date);
    let mut out = std::fs::File::create(path).map_err(|e| fail(url, e))?;
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
    Ok(Fetched {
        path: path.to_path_buf(),
        digest: oci::Digest::from_sha256_bytes(&hasher.finalize().into()),
        modified,
    })
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
fn check(src: &HttpSource, f: Fetched) -> Result<Fetched, String> {
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
