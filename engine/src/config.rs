//! kiln's configuration file, in the shape of BuildKit's buildkitd.toml for what they share: per-registry
//! `mirrors`, `http` (plain HTTP allowed) and `ca` (extra roots). Found at $KILN_CONFIG, else
//! /etc/kiln/kiln.toml for root and $XDG_CONFIG_HOME/kiln/kiln.toml (~/.config/kiln/kiln.toml) for others; a
//! missing file is an empty configuration, a malformed one an error naming the file.
//!
//! ```toml
//! [registry."docker.io"]
//!   mirrors = ["mirror.internal:5000"]
//! [registry."mirror.internal:5000"]
//!   http = true
//! [registry."registry.corp"]
//!   ca = ["/etc/ssl/corp-ca.pem"]
//! ```

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Deserialize;

/// One registry's settings.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct RegistryConfig {
    /// Hosts to pull from before this registry, in order.
    #[serde(default)]
    pub mirrors: Vec<String>,
    /// Plain HTTP allowed.
    #[serde(default)]
    pub http: bool,
    /// PEM files of roots to trust.
    #[serde(default)]
    pub ca: Vec<PathBuf>,
}

/// The whole file.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Settings per registry host.
    #[serde(default)]
    pub registry: BTreeMap<String, RegistryConfig>,
    /// `[gc]`: automatic garbage collection after builds.
    #[serde(default)]
    pub gc: GcConfig,
    /// `[cdi]`: where CDI device specs are read from.
    #[serde(default)]
    pub cdi: CdiConfig,
}

/// `[cdi]`: `spec-dirs = ["/etc/cdi", "/var/run/cdi"]` (BuildKit's `specDirs` is read too), the directories whose
/// JSON CDI specs `RUN --device` resolves against; a later one wins for a device two define.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct CdiConfig {
    /// The spec directories (default: `/etc/cdi`, `/var/run/cdi`).
    #[serde(default, alias = "specDirs")]
    pub spec_dirs: Option<Vec<PathBuf>>,
}

impl CdiConfig {
    /// The directories to read: the configured ones, else the CDI defaults.
    pub fn dirs(&self) -> Vec<PathBuf> {
        self.spec_dirs.clone().unwrap_or_else(|| {
            executor::cdi::DEFAULT_SPEC_DIRS
                .iter()
                .map(PathBuf::from)
                .collect()
        })
    }
}

/// `[gc]`: before and after a build (when no other build holds the root), the least recently used build cache is
/// pruned as BuildKit's gc policies keep a root within its bounds: `max-used-space = "20g"`, `min-free-space =
/// "10g"`, `reserved-space = "2g"` (never pruned below), or `keep-storage = "10g"` alone (pruned down to it); a size
/// may be a percentage of the root's filesystem (`"20%"`). With none set, BuildKit's default applies (reserved
/// 10% up to 10 GB, max used 80% up to 100 GB, min free 20%); `enabled = false` turns automatic GC off.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct GcConfig {
    /// BuildKit's older name of the reserved space: alone, the size the build cache is brought back down to.
    #[serde(default)]
    pub keep_storage: Option<String>,
    /// The build cache is never pruned below this.
    #[serde(default)]
    pub reserved_space: Option<String>,
    /// The build cache is pruned while it is larger than this.
    #[serde(default)]
    pub max_used_space: Option<String>,
    /// The build cache is pruned while the root's filesystem has less free than this.
    #[serde(default)]
    pub min_free_space: Option<String>,
    /// `false` turns automatic GC off (the default policy included); `kiln prune` still works.
    #[serde(default)]
    pub enabled: Option<bool>,
}

/// Where the configuration file is looked for.
pub fn path() -> PathBuf {
    if let Some(p) = std::env::var_os("KILN_CONFIG") {
        return PathBuf::from(p);
    }
    let is_root = std::fs::metadata("/proc/self")
        .map(|m| std::os::unix::fs::MetadataExt::uid(&m) == 0)
        .unwrap_or(false);
    if is_root {
        return PathBuf::from("/etc/kiln/kiln.toml");
    }
    std::env::var_os("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")))
        .unwrap_or_else(|| PathBuf::from("."))
        .join("kiln/kiln.toml")
}

/// Why the configuration file could not be used; both name the file.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// It could not be read.
    #[error("{path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// It is not valid kiln.toml.
    #[error("{origin}: {reason}")]
    Parse {
        /// The file.
        origin: String,
        /// The TOML parser's message.
        reason: String,
    },
}

/// Parses a configuration text; `origin` names it in errors.
pub fn parse(text: &str, origin: &str) -> Result<Config, ConfigError> {
    toml::from_str(text).map_err(|e| ConfigError::Parse {
        origin: origin.to_string(),
        reason: e.to_string().trim_end().to_string(),
    })
}

/// Reads the configuration file (empty when there is none).
pub fn load() -> Result<Config, ConfigError> {
    let p = path();
    match std::fs::read_to_string(&p) {
        Ok(text) => parse(&text, &p.display().to_string()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Config::default()),
        Err(source) => Err(ConfigError::Read {
            path: p.display().to_string(),
            source,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buildkit_shaped_registry_sections() {
        let c = parse(
            "[registry.\"docker.io\"]\nmirrors = [\"m:5000\"]\n[registry.\"m:5000\"]\nhttp = true\nca = [\"/x.pem\"]\n",
            "kiln.toml",
        )
        .unwrap();
        assert_eq!(c.registry["docker.io"].mirrors, ["m:5000"]);
        assert!(c.registry["m:5000"].http);
        assert_eq!(c.registry["m:5000"].ca, [PathBuf::from("/x.pem")]);
        let e = parse("[registry.\"a\"]\nmirorrs = []\n", "kiln.toml")
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("kiln.toml") && e.contains("mirorrs"), "{e}");
        assert_eq!(parse("", "k").unwrap(), Config::default());
        let cdi = parse("[cdi]\nspecDirs = [\"/a\"]\n", "k").unwrap().cdi;
        assert_eq!(cdi.dirs(), [PathBuf::from("/a")]);
        assert_eq!(
            Config::default().cdi.dirs(),
            [PathBuf::from("/etc/cdi"), PathBuf::from("/var/run/cdi")]
        );
    }
}
