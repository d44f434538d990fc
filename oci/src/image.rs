//! kiln's own image config type: Docker's image JSON with the fields `oci-spec` drops (Healthcheck, Shell,
//! OnBuild, ArgsEscaped) kept, and maps held sorted so serialization is canonical.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Serializes as `{}`: the value type of Docker's `ExposedPorts` and `Volumes` sets.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Empty {}

/// The runtime defaults an image carries (Docker's `config` object). Field names and omission rules follow Docker's
/// JSON so that docker, podman and containerd read it unchanged.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ContainerConfig {
    /// USER.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub user: String,
    /// EXPOSE, as `port/proto` keys.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub exposed_ports: BTreeMap<String, Empty>,
    /// ENV, as `KEY=value` in definition order (order matters for later expansion, so not a map).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub env: Vec<String>,
    /// ENTRYPOINT; `None` when never set (distinct from an empty list).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entrypoint: Option<Vec<String>>,
    /// CMD; `None` when never set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cmd: Option<Vec<String>>,
    /// VOLUME paths.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub volumes: BTreeMap<String, Empty>,
    /// WORKDIR.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub working_dir: String,
    /// LABEL and MAINTAINER.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// STOPSIGNAL.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub stop_signal: String,
    /// Docker sets it for Windows shell-form commands; kept so configs round-trip.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub args_escaped: bool,
    /// HEALTHCHECK.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub healthcheck: Option<Healthcheck>,
    /// ONBUILD triggers, as their original instruction text.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub on_build: Vec<String>,
    /// SHELL.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub shell: Vec<String>,
}

impl ContainerConfig {
    /// The value of `key` in `env`, the last definition winning.
    pub fn env_value(&self, key: &str) -> Option<&str> {
        self.env.iter().rev().find_map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv.as_str(), ""));
            (k == key).then_some(v)
        })
    }

    /// Sets `key` in `env`, replacing an earlier definition in place as Docker does.
    pub fn set_env(&mut self, key: &str, value: &str) {
        let entry = format!("{key}={value}");
        let existing = self
            .env
            .iter_mut()
            .find(|kv| kv.split_once('=').map_or(kv.as_str(), |(k, _)| k) == key);
        match existing {
            Some(slot) => *slot = entry,
            None => self.env.push(entry),
        }
    }
}

/// Docker's healthcheck; durations are Go `time.Duration` nanoseconds, 0 meaning "inherit".
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Healthcheck {
    /// `["NONE"]`, `["CMD", args...]` or `["CMD-SHELL", command]`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub test: Vec<String>,
    /// --interval.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub interval: i64,
    /// --timeout.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub timeout: i64,
    /// --start-period.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub start_period: i64,
    /// --start-interval.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub start_interval: i64,
    /// --retries.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub retries: i64,
}

fn is_zero(v: &i64) -> bool {
    *v == 0
}

/// One history entry: what a step was, for `docker history`. `created_by` reads as BuildKit writes it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct History {
    /// RFC 3339 time; clamped to SOURCE_DATE_EPOCH when that is set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
    /// The instruction as BuildKit describes it, e.g. `RUN /bin/sh -c make # buildkit`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub created_by: String,
    /// `buildkit.dockerfile.v0` for Dockerfile steps.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub comment: String,
    /// True when the step changed only the config, so no layer corresponds to it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub empty_layer: bool,
}

/// The layer list of an image config.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RootFs {
    /// Always `layers`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Uncompressed layer digests, bottom first.
    pub diff_ids: Vec<crate::Digest>,
}

impl Default for RootFs {
    fn default() -> Self {
        RootFs {
            kind: "layers".to_string(),
            diff_ids: Vec::new(),
        }
    }
}

/// A whole image config blob (the `application/vnd.oci.image.config.v1+json` document).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Image {
    /// Creation time, RFC 3339.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
    /// Who made the image: Dockerfile's MAINTAINER sets it, as BuildKit does, rather than a label.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub author: Option<String>,
    /// GOARCH spelling.
    pub architecture: String,
    /// GOOS spelling.
    pub os: String,
    /// Architecture variant.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
    /// Runtime defaults.
    #[serde(default)]
    pub config: ContainerConfig,
    /// Layers.
    #[serde(default)]
    pub rootfs: RootFs,
    /// One entry per step, layers and empty layers alike.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub history: Vec<History>,
    /// The cache records of the steps that made this image (`kiln build --cache-to type=inline`), so that a
    /// later build naming the image in `--cache-from` can reuse them; opaque here, read by the CLI's cache import.
    /// Never inherited: a build sets it (or clears it) for every image it makes.
    #[serde(
        rename = "kiln.cache.v1",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub inline_cache: Option<serde_json::Value>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_docker_only_fields_through_a_round_trip() {
        let json = r#"{"architecture":"amd64","os":"linux","config":{"Healthcheck":{"Test":["CMD","true"],"Interval":30000000000},"Shell":["/bin/bash","-c"],"OnBuild":["RUN true"],"ArgsEscaped":true},"rootfs":{"type":"layers","diff_ids":[]}}"#;
        let img: Image = serde_json::from_str(json).unwrap();
        assert_eq!(img.config.shell, ["/bin/bash", "-c"]);
        assert_eq!(img.config.on_build, ["RUN true"]);
        assert!(img.config.args_escaped);
        let again = serde_json::to_string(&img).unwrap();
        assert_eq!(serde_json::from_str::<Image>(&again).unwrap(), img);
        assert!(again.contains("\"Healthcheck\""));
    }

    #[test]
    fn env_set_replaces_in_place() {
        let mut c = ContainerConfig::default();
        c.set_env("A", "1");
        c.set_env("B", "2");
        c.set_env("A", "3");
        assert_eq!(c.env, ["A=3", "B=2"]);
        assert_eq!(c.env_value("A"), Some("3"));
        assert_eq!(c.env_value("C"), None);
    }
}
