//! Registry credentials where Docker keeps them: `$DOCKER_CONFIG/config.json`, else `~/.docker/config.json` —
//! `auths` (base64 `user:password`), `credHelpers` (per registry) and `credsStore` (for all), the helpers being
//! `docker-credential-<name>` programs spoken to over stdin/stdout. `kiln login`/`logout` write the same file, keeping
//! every other key in it, so docker, podman, skopeo and kiln share one login.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use base64::Engine as _;
use serde_json::{json, Map, Value};

use super::RegistryError;
use crate::reference::{DOCKER_HUB, DOCKER_HUB_CONFIG_KEY, DOCKER_HUB_ENDPOINT};

/// A user name and its secret (password or token).
#[derive(Clone, PartialEq, Eq)]
pub struct Credential {
    /// User name.
    pub username: String,
    /// Password or access token.
    pub secret: String,
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Credential({}, <secret>)", self.username)
    }
}

/// Docker's config file, located as docker locates it.
#[derive(Debug, Clone)]
pub struct DockerConfig {
    /// The config.json path.
    pub path: PathBuf,
}

fn err(path: &Path, e: impl std::fmt::Display) -> RegistryError {
    RegistryError::Credentials(format!("{}: {e}", path.display()))
}

/// The key config.json files a registry under: Docker Hub has its historical URL, others their host.
pub fn config_key(registry: &str) -> String {
    if is_docker_hub(registry) {
        DOCKER_HUB_CONFIG_KEY.to_string()
    } else {
        registry.to_string()
    }
}

fn is_docker_hub(registry: &str) -> bool {
    matches!(
        registry,
        DOCKER_HUB | DOCKER_HUB_ENDPOINT | "index.docker.io" | DOCKER_HUB_CONFIG_KEY
    )
}

/// The host part of a config.json key (`https://host/v1/` → `host`), so that keys written by older clients match.
fn key_host(key: &str) -> &str {
    let k = key
        .strip_prefix("https://")
        .or_else(|| key.strip_prefix("http://"))
        .unwrap_or(key);
    k.split('/').next().unwrap_or(k)
}

impl DockerConfig {
    /// `$DOCKER_CONFIG/config.json`, else `$HOME/.docker/config.json`.
    pub fn locate() -> DockerConfig {
        let dir = std::env::var_os("DOCKER_CONFIG")
            .map(PathBuf::from)
            .unwrap_or_else(|| {
                std::env::var_os("HOME")
                    .map(PathBuf::from)
                    .unwrap_or_else(|| PathBuf::from("/root"))
                    .join(".docker")
            });
        DockerConfig {
            path: dir.join("config.json"),
        }
    }

    fn read(&self) -> Result<Map<String, Value>, RegistryError> {
        match std::fs::read(&self.path) {
            Ok(b) if b.iter().all(u8::is_ascii_whitespace) => Ok(Map::new()),
            Ok(b) => match serde_json::from_slice::<Value>(&b).map_err(|e| err(&self.path, e))? {
                Value::Object(m) => Ok(m),
                _ => Err(err(&self.path, "not a JSON object")),
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Map::new()),
            Err(e) => Err(err(&self.path, e)),
        }
    }

    fn write(&self, config: &Map<String, Value>) -> Result<(), RegistryError> {
        let dir = self.path.parent().unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir).map_err(|e| err(dir, e))?;
        let tmp = self.path.with_extension("json.kiln-tmp");
        let bytes = serde_json::to_vec_pretty(config).map_err(|e| err(&self.path, e))?;
        {
            use std::os::unix::fs::OpenOptionsExt;
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&tmp)
                .map_err(|e| err(&tmp, e))?;
            f.write_all(&bytes)
                .and_then(|_| f.write_all(b"\n"))
                .and_then(|_| f.sync_all())
                .map_err(|e| err(&tmp, e))?;
        }
        std::fs::rename(&tmp, &self.path).map_err(|e| err(&self.path, e))
    }

    fn helper_for(config: &Map<String, Value>, registry: &str) -> Option<String> {
        let key = config_key(registry);
        if let Some(Value::Object(helpers)) = config.get("credHelpers") {
            for (k, v) in helpers {
                if (k == &key || key_host(k) == key_host(&key)) && v.is_string() {
                    return v.as_str().map(str::to_string);
                }
            }
        }
        config
            .get("credsStore")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
    }

    /// The credential for `registry`, if any: a credential helper's answer, else `auths`.
    pub fn get(&self, registry: &str) -> Result<Option<Credential>, RegistryError> {
        let config = self.read()?;
        let key = config_key(registry);
        if let Some(helper) = Self::helper_for(&config, registry) {
            if let Some(c) = helper_get(&helper, &key)? {
                return Ok(Some(c));
            }
        }
        let Some(Value::Object(auths)) = config.get("auths") else {
            return Ok(None);
        };
        let entry = auths.get(&key).or_else(|| {
            auths
                .iter()
                .find(|(k, _)| {
                    key_host(k) == key_host(&key)
                        || (is_docker_hub(registry) && is_docker_hub(key_host(k)))
                })
                .map(|(_, v)| v)
        });
        let Some(entry) = entry else { return Ok(None) };
        if let Some(auth) = entry
            .get("auth")
            .and_then(Value::as_str)
            .filter(|a| !a.is_empty())
        {
            let raw = base64::engine::general_purpose::STANDARD
                .decode(auth.trim())
                .map_err(|e| err(&self.path, format!("auths[{key:?}].auth: {e}")))?;
            let text = String::from_utf8(raw)
                .map_err(|_| err(&self.path, format!("auths[{key:?}].auth is not UTF-8")))?;
            let (u, p) = text.split_once(':').ok_or_else(|| {
                err(
                    &self.path,
                    format!("auths[{key:?}].auth is not base64 of user:password"),
                )
            })?;
            return Ok(Some(Credential {
                username: u.to_string(),
                secret: p.to_string(),
            }));
        }
        match (
            entry.get("username").and_then(Value::as_str),
            entry.get("password").and_then(Value::as_str),
        ) {
            (Some(u), Some(p)) => Ok(Some(Credential {
                username: u.to_string(),
                secret: p.to_string(),
            })),
            _ => Ok(None),
        }
    }

    /// Stores a credential as `docker login` does: through the credential helper when one is configured, else
    /// base64 in `auths`.
    pub fn store(&self, registry: &str, c: &Credential) -> Result<(), RegistryError> {
        let mut config = self.read()?;
        let key = config_key(registry);
        let auths = config
            .entry("auths")
            .or_insert_with(|| Value::Object(Map::new()));
        if !auths.is_object() {
            *auths = Value::Object(Map::new());
        }
        if let Some(helper) = Self::helper_for(&config, registry) {
            let payload = json!({"ServerURL": key, "Username": c.username, "Secret": c.secret});
            run_helper(&helper, "store", payload.to_string().as_bytes())?;
            // Docker leaves an empty entry so that `docker info` and friends list the login.
            if let Some(Value::Object(a)) = config.get_mut("auths") {
                a.insert(key, json!({}));
            }
        } else if let Some(Value::Object(a)) = config.get_mut("auths") {
            let auth = base64::engine::general_purpose::STANDARD
                .encode(format!("{}:{}", c.username, c.secret));
            a.insert(key, json!({ "auth": auth }));
        }
        self.write(&config)
    }

    /// Removes the credential for `registry`; whether there was one.
    pub fn erase(&self, registry: &str) -> Result<bool, RegistryError> {
        let mut config = self.read()?;
        let key = config_key(registry);
        let mut found = false;
        if let Some(helper) = Self::helper_for(&config, registry) {
            found |= run_helper(&helper, "erase", key.as_bytes()).is_ok();
        }
        if let Some(Value::Object(a)) = config.get_mut("auths") {
            let keys: Vec<String> = a
                .keys()
                .filter(|k| *k == &key || key_host(k) == key_host(&key))
                .cloned()
                .collect();
            for k in keys {
                a.remove(&k);
                found = true;
            }
        }
        if found {
            self.write(&config)?;
        }
        Ok(found)
    }
}

fn run_helper(helper: &str, verb: &str, input: &[u8]) -> Result<Vec<u8>, RegistryError> {
    let program = format!("docker-credential-{helper}");
    let mut child = Command::new(&program)
        .arg(verb)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| RegistryError::Credentials(format!("{program}: {e}")))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(input)
            .map_err(|e| RegistryError::Credentials(format!("{program} {verb}: {e}")))?;
    }
    let out = child
        .wait_with_output()
        .map_err(|e| RegistryError::Credentials(format!("{program} {verb}: {e}")))?;
    if !out.status.success() {
        let msg = String::from_utf8_lossy(if out.stdout.is_empty() {
            &out.stderr
        } else {
            &out.stdout
        })
        .trim()
        .to_string();
        return Err(RegistryError::Credentials(format!(
            "{program} {verb}: {msg}"
        )));
    }
    Ok(out.stdout)
}

fn helper_get(helper: &str, key: &str) -> Result<Option<Credential>, RegistryError> {
    match run_helper(helper, "get", key.as_bytes()) {
        Ok(out) => {
            let v: Value = serde_json::from_slice(&out).map_err(|e| {
                RegistryError::Credentials(format!("docker-credential-{helper} get: {e}"))
            })?;
            let u = v.get("Username").and_then(Value::as_str).unwrap_or("");
            let s = v.get("Secret").and_then(Value::as_str).unwrap_or("");
            Ok((!s.is_empty()).then(|| Credential {
                username: u.to_string(),
                secret: s.to_string(),
            }))
        }
        // The helpers' protocol: "credentials not found in native keychain" means none, not a failure.
        Err(RegistryError::Credentials(m)) if m.contains("credentials not found") => Ok(None),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cred(u: &str, p: &str) -> Credential {
        Credential {
            username: u.into(),
            secret: p.into(),
        }
    }

    #[test]
    fn login_logout_round_trip_keeps_other_keys() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = DockerConfig {
            path: dir.path().join("config.json"),
        };
        std::fs::write(&cfg.path, r#"{"psFormat":"table","auths":{}}"#).unwrap();
        cfg.store("docker.io", &cred("me", "pw:with:colons"))
            .unwrap();
        cfg.store("127.0.0.1:5000", &cred("u", "p")).unwrap();
        let v: Value = serde_json::from_slice(&std::fs::read(&cfg.path).unwrap()).unwrap();
        assert_eq!(v["psFormat"], "table");
        assert_eq!(
            v["auths"]["https://index.docker.io/v1/"]["auth"],
            base64::engine::general_purpose::STANDARD.encode("me:pw:with:colons")
        );
        assert_eq!(
            cfg.get("registry-1.docker.io").unwrap(),
            Some(cred("me", "pw:with:colons"))
        );
        assert_eq!(cfg.get("127.0.0.1:5000").unwrap(), Some(cred("u", "p")));
        assert_eq!(cfg.get("127.0.0.1:5001").unwrap(), None);
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&cfg.path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert!(cfg.erase("127.0.0.1:5000").unwrap());
        assert!(!cfg.erase("127.0.0.1:5000").unwrap());
        assert_eq!(cfg.get("127.0.0.1:5000").unwrap(), None);
    }

    #[test]
    fn keys_written_as_urls_by_other_clients_match() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = DockerConfig {
            path: dir.path().join("config.json"),
        };
        std::fs::write(
            &cfg.path,
            r#"{"auths":{"https://ghcr.io":{"username":"a","password":"b"},"index.docker.io":{"auth":"eDp5"}}}"#,
        )
        .unwrap();
        assert_eq!(cfg.get("ghcr.io").unwrap(), Some(cred("a", "b")));
        assert_eq!(cfg.get("docker.io").unwrap(), Some(cred("x", "y")));
        std::fs::write(&cfg.path, r#"{"auths":{"h":{"auth":"!!"}}}"#).unwrap();
        let e = cfg.get("h").unwrap_err().to_string();
        assert!(e.contains("config.json") && e.contains("auths"), "{e}");
    }

    #[test]
    fn credential_helpers_are_asked_first() {
        let dir = tempfile::tempdir().unwrap();
        let bin = dir.path().join("docker-credential-fake");
        std::fs::write(
            &bin,
            "#!/bin/sh\nread server\ncase \"$1\" in get) [ \"$server\" = reg.example ] && echo '{\"Username\":\"h\",\"Secret\":\"s\"}' || { echo 'credentials not found in native keychain'; exit 1; } ;; esac\n",
        )
        .unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).unwrap();
        let cfg = DockerConfig {
            path: dir.path().join("config.json"),
        };
        std::fs::write(&cfg.path, r#"{"credHelpers":{"reg.example":"fake"}}"#).unwrap();
        let path = format!(
            "{}:{}",
            dir.path().display(),
            std::env::var("PATH").unwrap_or_default()
        );
        // The helper is found through PATH, as docker finds it; set only for this process's children.
        std::env::set_var("PATH", path);
        assert_eq!(cfg.get("reg.example").unwrap(), Some(cred("h", "s")));
        assert_eq!(cfg.get("other.example").unwrap(), None);
    }
}
