//! `RUN --mount=...` values: BuildKit's comma-separated `key=value` syntax (CSV quoting allowed), defaults per mount
//! type, and validation with messages that name the offending key.

/// The kind of a RUN mount.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MountType {
    /// Read-only (by default) view of the context, a stage or an image.
    Bind,
    /// Persistent cache directory.
    Cache,
    /// Fresh tmpfs.
    Tmpfs,
    /// Secret file or env variable.
    Secret,
    /// SSH agent socket.
    Ssh,
}

/// One parsed `--mount`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountSpec {
    /// Type.
    pub kind: MountType,
    /// Mount point (absolute or relative to WORKDIR, resolved at lowering).
    pub target: String,
    /// Path inside `from` (bind, cache).
    pub source: Option<String>,
    /// Stage name, index or image the mount comes from.
    pub from: Option<String>,
    /// Read-only.
    pub readonly: bool,
    /// Cache/secret/ssh id.
    pub id: Option<String>,
    /// Cache sharing: shared, private or locked.
    pub sharing: Option<String>,
    /// Mode bits.
    pub mode: Option<u32>,
    /// Owner uid.
    pub uid: Option<u32>,
    /// Owner gid.
    pub gid: Option<u32>,
    /// Secret/ssh: fail when missing.
    pub required: bool,
    /// tmpfs size in bytes.
    pub size: Option<u64>,
    /// Secret exposed as this environment variable.
    pub env: Option<String>,
}

/// Splits a CSV record as Go's encoding/csv does for one line: commas separate fields, a field may be
/// double-quoted, `""` inside quotes is a literal quote.
pub(crate) fn split_csv(text: &str) -> Result<Vec<String>, String> {
    let mut fields = Vec::new();
    let mut cur = String::new();
    let mut chars = text.chars().peekable();
    let mut at_start = true;
    let mut quoted = false;
    while let Some(c) = chars.next() {
        if quoted {
            if c == '"' {
                if chars.peek() == Some(&'"') {
                    chars.next();
                    cur.push('"');
                } else {
                    quoted = false;
                }
            } else {
                cur.push(c);
            }
            continue;
        }
        match c {
            '"' if at_start => {
                quoted = true;
                at_start = false;
            }
            ',' => {
                fields.push(std::mem::take(&mut cur));
                at_start = true;
            }
            c => {
                cur.push(c);
                at_start = false;
            }
        }
    }
    if quoted {
        return Err(format!("unterminated quote in --mount={text}"));
    }
    fields.push(cur);
    Ok(fields)
}

fn parse_bool(key: &str, value: Option<&str>) -> Result<bool, String> {
    match value.map(|v| v.to_ascii_lowercase()) {
        None => Ok(true),
        Some(v) if v == "true" || v == "1" => Ok(true),
        Some(v) if v == "false" || v == "0" => Ok(false),
        Some(v) => Err(format!(
            "invalid value for {key}: {v} (expected true or false)"
        )),
    }
}

fn parse_u32(key: &str, value: &str, radix: u32) -> Result<u32, String> {
    u32::from_str_radix(value, radix).map_err(|_| format!("invalid value for {key}: {value}"))
}

/// Parses a size such as `64m`, `1g`, `1024` (bytes), with Docker's binary units.
pub(crate) fn parse_size(value: &str) -> Result<u64, String> {
    let v = value.trim().to_ascii_lowercase();
    let digits_end = v
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(v.len());
    let (num, unit) = v.split_at(digits_end);
    let n: f64 = num.parse().map_err(|_| format!("invalid size: {value}"))?;
    let mult: u64 = match unit.trim_end_matches(['b', 'i']) {
        "" => 1,
        "k" => 1 << 10,
        "m" => 1 << 20,
        "g" => 1 << 30,
        "t" => 1 << 40,
        _ => return Err(format!("invalid size: {value}")),
    };
    Ok((n * mult as f64) as u64)
}

/// Parses one `--mount` value as written (no variables).
pub(crate) fn parse_mount(value: &str) -> Result<MountSpec, String> {
    parse_mount_fields(&split_csv(value)?)
}

/// The fields of a `--mount` value (`key=value` or a bare key), each value's variables expanded by `expand` —
/// every key's but `from`'s, which BuildKit refuses to expand (a stage to mount from is named as written) — for
/// [`parse_mount_fields`].
pub(crate) fn expanded_mount_fields<E>(
    value: &str,
    mut expand: impl FnMut(&str) -> Result<String, E>,
) -> Result<Result<Vec<String>, String>, E> {
    let fields = match split_csv(value) {
        Ok(f) => f,
        Err(e) => return Ok(Err(e)),
    };
    let mut out = Vec::with_capacity(fields.len());
    for f in fields {
        let Some((k, v)) = f.split_once('=') else {
            out.push(f);
            continue;
        };
        if k.trim().eq_ignore_ascii_case("from") {
            if asks_expansion(v) {
                return Ok(Err(
                    "'from' doesn't support variable expansion, define alias stage instead"
                        .to_string(),
                ));
            }
            out.push(f);
            continue;
        }
        out.push(format!("{k}={}", expand(v)?));
    }
    Ok(Ok(out))
}

/// Whether a value names a variable: a `$` with something after it (BuildKit's test, `\$.`).
pub(crate) fn asks_expansion(v: &str) -> bool {
    v.find('$').is_some_and(|i| i + 1 < v.len())
}

/// Parses the fields of one `--mount` value whose variables are expanded.
pub(crate) fn parse_mount_fields(fields: &[String]) -> Result<MountSpec, String> {
    let mut kind = MountType::Bind;
    for f in fields {
        if let Some(("type", t)) = f.split_once('=').map(|(k, v)| (k.trim(), v.trim())) {
            kind = match t.to_ascii_lowercase().as_str() {
                "bind" => MountType::Bind,
                "cache" => MountType::Cache,
                "tmpfs" => MountType::Tmpfs,
                "secret" => MountType::Secret,
                "ssh" => MountType::Ssh,
                other => {
                    let hint = crate::suggest::hint_or_list(
                        other,
                        &["bind", "cache", "tmpfs", "secret", "ssh"],
                    );
                    return Err(format!("unsupported mount type {other:?} ({hint})"));
                }
            };
        }
    }
    let mut m = MountSpec {
        kind,
        target: String::new(),
        source: None,
        from: None,
        readonly: kind == MountType::Bind,
        id: None,
        sharing: None,
        mode: None,
        uid: None,
        gid: None,
        required: false,
        size: None,
        env: None,
    };
    let mut readonly_set = false;
    for f in fields {
        let f = f.trim();
        if f.is_empty() {
            continue;
        }
        let (key, value) = match f.split_once('=') {
            Some((k, v)) => (k.trim().to_ascii_lowercase(), Some(v.trim())),
            None => (f.to_ascii_lowercase(), None),
        };
        let need = |v: Option<&str>| {
            v.map(str::to_string)
                .ok_or_else(|| format!("mount option {key} needs a value"))
        };
        match key.as_str() {
            "type" => {}
            "readonly" | "ro" => {
                m.readonly = parse_bool(&key, value)?;
                readonly_set = true;
            }
            "readwrite" | "rw" => {
                m.readonly = !parse_bool(&key, value)?;
                readonly_set = true;
            }
            "required" => m.required = parse_bool(&key, value)?,
            "target" | "dst" | "destination" => m.target = need(value)?,
            "source" | "src" => m.source = Some(need(value)?),
            "from" => m.from = Some(need(value)?),
            "id" => m.id = Some(need(value)?),
            "env" => m.env = Some(need(value)?),
            "sharing" => {
                let s = need(value)?.to_ascii_lowercase();
                if !matches!(s.as_str(), "shared" | "private" | "locked") {
                    return Err(format!(
                        "unsupported sharing value {s:?} (valid: shared, private, locked)"
                    ));
                }
                m.sharing = Some(s);
            }
            "mode" => m.mode = Some(parse_u32(&key, &need(value)?, 8)?),
            "uid" => m.uid = Some(parse_u32(&key, &need(value)?, 10)?),
            "gid" => m.gid = Some(parse_u32(&key, &need(value)?, 10)?),
            "size" => m.size = Some(parse_size(&need(value)?)?),
            _ => {
                const KEYS: [&str; 19] = [
                    "type",
                    "readonly",
                    "ro",
                    "readwrite",
                    "rw",
                    "required",
                    "target",
                    "dst",
                    "destination",
                    "source",
                    "src",
                    "from",
                    "id",
                    "env",
                    "sharing",
                    "mode",
                    "uid",
                    "gid",
                    "size",
                ];
                let hint = crate::suggest::hint(&key, KEYS);
                return Err(format!("unexpected key '{key}' in '{f}'{hint}"));
            }
        }
    }
    validate(&mut m, readonly_set)?;
    Ok(m)
}

fn validate(m: &mut MountSpec, readonly_set: bool) -> Result<(), String> {
    let kind_name = format!("{:?}", m.kind).to_ascii_lowercase();
    match m.kind {
        MountType::Secret | MountType::Ssh => {
            if m.from.is_some() {
                return Err(format!("{kind_name} mount cannot have a from= source"));
            }
            if m.kind == MountType::Secret {
                if m.id.is_none() {
                    let base = m
                        .target
                        .rsplit('/')
                        .find(|s| !s.is_empty())
                        .map(str::to_string);
                    m.id = base;
                }
                let Some(id) = m.id.clone() else {
                    return Err("secret mount needs an id= or a target=".to_string());
                };
                if m.target.is_empty() && m.env.is_none() {
                    m.target = format!("/run/secrets/{id}");
                }
                m.mode.get_or_insert(0o400);
            } else {
                m.id.get_or_insert_with(|| "default".to_string());
                if m.target.is_empty() {
                    m.target = "/run/buildkit/ssh_agent.0".to_string();
                }
                m.mode.get_or_insert(0o600);
            }
            if !readonly_set {
                m.readonly = true;
            }
        }
        MountType::Bind | MountType::Cache | MountType::Tmpfs => {
            // A bind mount without a target mounts at the working directory (BuildKit's dispatchRunMounts joins
            // an empty target to it), so only cache and tmpfs mounts need one here.
            if m.target.is_empty() && m.kind != MountType::Bind {
                return Err(format!("{kind_name} mount needs a target= path"));
            }
            if m.kind == MountType::Tmpfs && m.from.is_some() {
                return Err("tmpfs mount cannot have a from= source".to_string());
            }
            if m.sharing.is_some() && m.kind != MountType::Cache {
                return Err("sharing= is only valid for cache mounts".to_string());
            }
        }
    }
    if m.size.is_some() && m.kind != MountType::Tmpfs {
        return Err("size= is only valid for tmpfs mounts".to_string());
    }
    if m.env.is_some() && m.kind != MountType::Secret {
        return Err("env= is only valid for secret mounts".to_string());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bind_defaults_to_readonly_and_cache_gets_its_target_as_id() {
        let b = parse_mount("target=/src,from=build,source=/out").unwrap();
        assert_eq!(b.kind, MountType::Bind);
        assert!(b.readonly);
        assert_eq!(b.from.as_deref(), Some("build"));
        let c = parse_mount("type=cache,target=/root/.cache/pip,sharing=locked").unwrap();
        assert_eq!(c.id, None, "defaults to the resolved target at lowering");
        assert!(!c.readonly);
        let rw = parse_mount("type=bind,target=/x,rw").unwrap();
        assert!(!rw.readonly);
    }

    #[test]
    fn secret_and_ssh_defaults() {
        let s = parse_mount("type=secret,id=aws").unwrap();
        assert_eq!(s.target, "/run/secrets/aws");
        assert_eq!(s.mode, Some(0o400));
        let t = parse_mount("type=secret,target=/etc/ssl/ca.pem").unwrap();
        assert_eq!(t.id.as_deref(), Some("ca.pem"));
        let e = parse_mount("type=secret,id=tok,env=TOKEN,required").unwrap();
        assert!(e.required);
        assert_eq!(e.target, "");
        let ssh = parse_mount("type=ssh").unwrap();
        assert_eq!(ssh.id.as_deref(), Some("default"));
        assert_eq!(ssh.target, "/run/buildkit/ssh_agent.0");
    }

    #[test]
    fn errors_name_the_cause() {
        assert!(parse_mount("type=nfs,target=/x")
            .unwrap_err()
            .contains("unsupported mount type"));
        assert!(parse_mount("type=cache").unwrap_err().contains("target"));
        assert!(parse_mount("target=/x,bogus=1")
            .unwrap_err()
            .contains("unexpected key 'bogus'"));
        assert!(parse_mount("type=cache,target=/x,sharing=all")
            .unwrap_err()
            .contains("sharing"));
        assert!(parse_mount("type=tmpfs,target=/x,size=lots")
            .unwrap_err()
            .contains("size"));
        assert!(parse_mount("\"target=/x").is_err());
    }

    #[test]
    fn csv_quotes_and_sizes() {
        let m = parse_mount("\"target=/a,b\",type=bind").unwrap();
        assert_eq!(m.target, "/a,b");
        assert_eq!(parse_size("64m").unwrap(), 64 << 20);
        assert_eq!(parse_size("1GiB").unwrap(), 1 << 30);
        assert_eq!(parse_size("100").unwrap(), 100);
    }
}
