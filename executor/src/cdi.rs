//! CDI (the Container Device Interface): the spec files that describe a host's devices (`/etc/cdi`,
//! `/var/run/cdi`), read and checked as the CDI library BuildKit vendors reads them, device names resolved as
//! BuildKit's cdidevices manager resolves them, and a device's container edits (device nodes, mounts, env,
//! additional groups) applied to a step's [`Process`]. kiln reads JSON spec files only (it carries no YAML
//! parser); a `.yaml` spec is reported as unreadable and skipped, as a spec that fails to load is there.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::process::{DeviceNode, Mount, Process};

/// The directories CDI specs are read from when kiln.toml names none (the CDI library's defaults; a later one
/// wins over an earlier one for a device both define).
pub const DEFAULT_SPEC_DIRS: [&str; 2] = ["/etc/cdi", "/var/run/cdi"];

/// A spec's annotation that names the class a request may use instead of a device name (BuildKit's).
const CLASS_ANNOTATION: &str = "org.mobyproject.buildkit.device.class";
/// A spec's or device's annotation that lets builds use the device without `--allow device` (BuildKit's).
const AUTOALLOW_ANNOTATION: &str = "org.mobyproject.buildkit.device.autoallow";

/// The CDI versions the library knows.
const VERSIONS: [&str; 10] = [
    "0.1.0", "0.2.0", "0.3.0", "0.4.0", "0.5.0", "0.6.0", "0.7.0", "0.8.0", "1.0.0", "1.1.0",
];

/// Why a device could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CdiError {
    /// A required device no spec registers (BuildKit's wording), with why specs were skipped, if any were.
    #[error("required device {name:?} is not registered{}", skipped(.problems))]
    NotRegistered {
        /// The name as the step gave it.
        name: String,
        /// The spec files that could not be read, each with its reason.
        problems: Vec<String>,
    },
    /// A device node's host path is not a device and the spec does not say what it is.
    #[error("failed to stat CDI host device {path:?}: {reason}")]
    HostDevice {
        /// The host path.
        path: String,
        /// Why.
        reason: String,
    },
    /// The spec says the node is of one type, the host's node is of another.
    #[error("CDI device ({path:?}, {host_path:?}), host type mismatch ({spec}, {host})")]
    TypeMismatch {
        /// The path inside the step.
        path: String,
        /// The host path.
        host_path: String,
        /// The spec's type.
        spec: String,
        /// The host node's type.
        host: String,
    },
    /// A mount kiln's runtimes cannot make.
    #[error("CDI mount of {host_path} at {container_path}: type {kind:?} is not supported (bind and tmpfs are)")]
    MountType {
        /// The host path.
        host_path: String,
        /// The path inside the step.
        container_path: String,
        /// The mount type.
        kind: String,
    },
}

fn skipped(problems: &[String]) -> String {
    if problems.is_empty() {
        String::new()
    } else {
        format!(" (CDI specs skipped: {})", problems.join("; "))
    }
}

/// A CDI spec file (`cdiVersion`, `kind`, `devices`, spec-wide `containerEdits`).
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Spec {
    /// The CDI version the file follows.
    pub cdi_version: String,
    /// `vendor/class`.
    pub kind: String,
    /// Meta information (BuildKit reads its class and autoallow annotations here).
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
    /// The devices.
    pub devices: Vec<Device>,
    /// Edits made for every device of the spec a step uses.
    #[serde(default)]
    pub container_edits: Edits,
}

/// One device of a spec.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Device {
    /// Its name within the kind (`vendor/class=name` qualified).
    pub name: String,
    /// Meta information.
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
    /// What the device adds to a step.
    #[serde(default)]
    pub container_edits: Edits,
}

/// What a device (or a spec) adds to a step.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Edits {
    /// `KEY=value` variables.
    #[serde(default)]
    pub env: Vec<String>,
    /// Device nodes.
    #[serde(default)]
    pub device_nodes: Vec<Node>,
    /// Network devices (not supported: reported, not moved).
    #[serde(default)]
    pub net_devices: Vec<serde_json::Value>,
    /// OCI hooks (not run by kiln: reported).
    #[serde(default)]
    pub hooks: Vec<Hook>,
    /// Mounts.
    #[serde(default)]
    pub mounts: Vec<SpecMount>,
    /// Intel RDT settings (not supported: reported).
    #[serde(default)]
    pub intel_rdt: Option<serde_json::Value>,
    /// Supplementary groups of the process.
    #[serde(default, rename = "additionalGids")]
    pub additional_gids: Vec<u32>,
}

/// A device node of the edits.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Node {
    /// Path inside the step.
    pub path: String,
    /// The host's node (default: `path`).
    #[serde(default)]
    pub host_path: String,
    /// `c`, `u`, `b` or `p`; read from the host's node when empty.
    #[serde(default, rename = "type")]
    pub kind: String,
    /// Major number (read from the host's node when 0).
    #[serde(default)]
    pub major: i64,
    /// Minor number.
    #[serde(default)]
    pub minor: i64,
    /// Mode bits of the node.
    #[serde(default)]
    pub file_mode: Option<u32>,
    /// Cgroup access: some of `rwm` (default all).
    #[serde(default)]
    pub permissions: String,
    /// Owner.
    #[serde(default)]
    pub uid: Option<u32>,
    /// Group.
    #[serde(default)]
    pub gid: Option<u32>,
}

/// A mount of the edits.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct SpecMount {
    /// What is mounted.
    pub host_path: String,
    /// Where, inside the step.
    pub container_path: String,
    /// Mount options (`ro` makes a bind read-only).
    #[serde(default)]
    pub options: Vec<String>,
    /// Mount type (bind when empty).
    #[serde(default, rename = "type")]
    pub kind: String,
}

/// An OCI hook of the edits.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Hook {
    /// `prestart`, `createRuntime`, ...
    pub hook_name: String,
    /// The program.
    pub path: String,
    /// Its arguments.
    #[serde(default)]
    pub args: Vec<String>,
    /// Its environment.
    #[serde(default)]
    pub env: Vec<String>,
    /// Its time limit in seconds.
    #[serde(default)]
    pub timeout: Option<i64>,
}

fn valid_vendor_or_class(name: &str) -> Result<(), String> {
    let b = name.as_bytes();
    let (Some(first), Some(last)) = (b.first(), b.last()) else {
        return Err("empty name".into());
    };
    if !first.is_ascii_alphabetic() {
        return Err(format!("{name:?}, should start with letter"));
    }
    if let Some(c) = name[1..name.len().saturating_sub(1).max(1)]
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.')))
    {
        return Err(format!("invalid character '{c}' in name {name:?}"));
    }
    if !last.is_ascii_alphanumeric() {
        return Err(format!("{name:?}, should end with a letter or digit"));
    }
    Ok(())
}

fn valid_device_name(name: &str) -> Result<(), String> {
    let b = name.as_bytes();
    let (Some(first), Some(last)) = (b.first(), b.last()) else {
        return Err("invalid (empty) device name".into());
    };
    if !first.is_ascii_alphanumeric() {
        return Err(format!(
            "invalid class {name:?}, should start with a letter or digit"
        ));
    }
    if name.len() > 2 {
        if let Some(c) = name[1..name.len() - 1]
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | ':')))
        {
            return Err(format!("invalid character '{c}' in device name {name:?}"));
        }
    }
    if !last.is_ascii_alphanumeric() {
        return Err(format!(
            "invalid name {name:?}, should end with a letter or digit"
        ));
    }
    Ok(())
}

impl Edits {
    fn validate(&self) -> Result<(), String> {
        for e in self
            .env
            .iter()
            .chain(self.hooks.iter().flat_map(|h| &h.env))
        {
            if e.find('=').is_none_or(|i| i == 0) {
                return Err(format!("invalid environment variable {e:?}"));
            }
        }
        for d in &self.device_nodes {
            if d.path.is_empty() {
                return Err("invalid (empty) device path".into());
            }
            if !matches!(d.kind.as_str(), "" | "b" | "c" | "u" | "p") {
                return Err(format!("device {:?}: invalid type {:?}", d.path, d.kind));
            }
            if d.permissions.chars().any(|c| !matches!(c, 'r' | 'w' | 'm')) {
                return Err(format!(
                    "device {:?}: invalid permissions {:?}",
                    d.path, d.permissions
                ));
            }
        }
        for m in &self.mounts {
            if m.host_path.is_empty() {
                return Err("invalid mount, empty host path".into());
            }
            if m.container_path.is_empty() {
                return Err("invalid mount, empty container path".into());
            }
        }
        Ok(())
    }

    fn append(&mut self, o: &Edits) {
        self.env.extend(o.env.iter().cloned());
        self.device_nodes.extend(o.device_nodes.iter().cloned());
        self.net_devices.extend(o.net_devices.iter().cloned());
        self.hooks.extend(o.hooks.iter().cloned());
        self.mounts.extend(o.mounts.iter().cloned());
        if o.intel_rdt.is_some() {
            self.intel_rdt = o.intel_rdt.clone();
        }
        self.additional_gids
            .extend(o.additional_gids.iter().copied());
    }
}

/// Parses and checks a spec file's text (JSON), as the CDI library's ReadSpec does: a known version, a valid
/// `vendor/class` kind, valid device names (each once), valid edits, at least one device.
pub fn parse_spec(text: &str) -> Result<Spec, String> {
    let spec: Spec =
        serde_json::from_str(text).map_err(|e| format!("failed to unmarshal CDI Spec: {e}"))?;
    if !VERSIONS.contains(&spec.cdi_version.trim_start_matches('v')) {
        return Err(format!("invalid version {:?}", spec.cdi_version));
    }
    let (vendor, class) = spec.kind.split_once('/').unwrap_or(("", &spec.kind));
    valid_vendor_or_class(vendor).map_err(|e| format!("invalid CDI Spec: invalid vendor. {e}"))?;
    valid_vendor_or_class(class).map_err(|e| format!("invalid CDI Spec: invalid class. {e}"))?;
    spec.container_edits
        .validate()
        .map_err(|e| format!("invalid CDI Spec: {e}"))?;
    let mut seen = BTreeSet::new();
    for d in &spec.devices {
        valid_device_name(&d.name)
            .and_then(|_| d.container_edits.validate())
            .map_err(|e| format!("invalid CDI Spec: failed add device {:?}: {e}", d.name))?;
        if d.container_edits == Edits::default() {
            return Err(format!(
                "invalid CDI Spec: failed add device {:?}: invalid device, empty device edits",
                d.name
            ));
        }
        if !seen.insert(d.name.as_str()) {
            return Err(format!(
                "invalid CDI Spec: invalid spec, multiple device {:?}",
                d.name
            ));
        }
    }
    if spec.devices.is_empty() {
        return Err("invalid CDI Spec: invalid spec, no devices".into());
    }
    Ok(spec)
}

/// Every device the spec directories register, by qualified name (`vendor/class=name`).
#[derive(Debug, Clone, Default)]
pub struct Registry {
    specs: Vec<Spec>,
    /// Qualified name → (index into `specs`, index of the device in it).
    devices: BTreeMap<String, (usize, usize)>,
    /// The spec files that could not be used, each with its reason.
    problems: Vec<String>,
}

impl Registry {
    /// Reads every `.json` and `.yaml` file directly in each of `dirs` (sub-directories are skipped); a later
    /// directory's device wins over an earlier one's, two files of one directory defining a device drop it, and a
    /// file that cannot be read or checked is skipped with its reason kept, as the CDI library's cache does.
    pub fn scan(dirs: &[PathBuf]) -> Registry {
        let mut r = Registry::default();
        let mut origin: BTreeMap<String, (usize, PathBuf)> = BTreeMap::new();
        let mut conflicts = BTreeSet::new();
        for (priority, dir) in dirs.iter().enumerate() {
            let mut files: Vec<PathBuf> = match std::fs::read_dir(dir) {
                Ok(d) => d.flatten().map(|e| e.path()).collect(),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => {
                    r.problems.push(format!("{}: {e}", dir.display()));
                    continue;
                }
            };
            files.sort();
            for path in files {
                let ext = path.extension().and_then(|e| e.to_str());
                if path.is_dir() || !matches!(ext, Some("json" | "yaml")) {
                    continue;
                }
                let loaded = if ext == Some("yaml") {
                    Err("YAML CDI specs are not supported by kiln (write the spec as JSON, e.g. nvidia-ctk cdi generate --format=json)".to_string())
                } else {
                    std::fs::read_to_string(&path)
                        .map_err(|e| e.to_string())
                        .and_then(|t| parse_spec(&t))
                };
                let spec = match loaded {
                    Ok(s) => s,
                    Err(e) => {
                        r.problems.push(format!("{}: {e}", path.display()));
                        continue;
                    }
                };
                let index = r.specs.len();
                for (i, d) in spec.devices.iter().enumerate() {
                    let name = format!("{}={}", spec.kind, d.name);
                    if let Some((p, other)) = origin.get(&name) {
                        if *p == priority {
                            r.problems.push(format!(
                                "conflicting device {name:?} (specs {:?}, {:?})",
                                path.display().to_string(),
                                other.display().to_string()
                            ));
                            conflicts.insert(name.clone());
                        }
                    }
                    origin.insert(name.clone(), (priority, path.clone()));
                    r.devices.insert(name, (index, i));
                }
                r.specs.push(spec);
            }
        }
        for c in conflicts {
            r.devices.remove(&c);
        }
        r
    }

    /// The spec files that could not be used, each with its reason.
    pub fn problems(&self) -> &[String] {
        &self.problems
    }

    fn device(&self, name: &str) -> Option<(&Spec, &Device)> {
        let (s, d) = *self.devices.get(name)?;
        let spec = self.specs.get(s)?;
        Some((spec, spec.devices.get(d)?))
    }

    fn annotations(&self, name: &str) -> BTreeMap<String, String> {
        let mut out = BTreeMap::new();
        if let Some((spec, dev)) = self.device(name) {
            out.extend(spec.annotations.clone());
            out.extend(dev.annotations.clone());
        }
        out
    }

    /// The registered devices a request names, as BuildKit's parseDevice finds them: `vendor/class=name` itself,
    /// `vendor/class` the first device of that kind, `vendor/class=*` all of them; otherwise (or when none
    /// matched) the devices whose class annotation is the request. Nothing found is an error for a required
    /// request and an empty list for an optional one.
    pub fn find(&self, request: &str, optional: bool) -> Result<Vec<String>, CdiError> {
        let (kind, name) = request.split_once('=').unwrap_or((request, ""));
        let qualified = kind
            .split_once('/')
            .is_some_and(|(v, c)| !v.is_empty() && !c.is_empty());
        let of_kind = || {
            self.devices
                .keys()
                .filter(move |d| d.strip_prefix(kind).is_some_and(|r| r.starts_with('=')))
        };
        let mut out: Vec<String> = Vec::new();
        if qualified {
            match name {
                "" => out.extend(of_kind().next().cloned()),
                "*" => out.extend(of_kind().cloned()),
                _ => out.extend(
                    self.devices
                        .contains_key(request)
                        .then(|| request.to_string()),
                ),
            }
        }
        if out.is_empty() {
            out.extend(
                self.devices
                    .keys()
                    .filter(|d| {
                        self.annotations(d)
                            .get(CLASS_ANNOTATION)
                            .map(String::as_str)
                            == Some(request)
                    })
                    .cloned(),
            );
        }
        if out.is_empty() && !optional {
            return Err(CdiError::NotRegistered {
                name: request.to_string(),
                problems: self.problems.clone(),
            });
        }
        Ok(out)
    }

    /// Whether the device's spec or the device itself carries BuildKit's autoallow annotation (then no
    /// entitlement is needed for it).
    pub fn auto_allowed(&self, name: &str) -> bool {
        self.annotations(name)
            .get(AUTOALLOW_ANNOTATION)
            .is_some_and(|v| matches!(v.as_str(), "1" | "t" | "T" | "true" | "TRUE" | "True"))
    }

    /// The edits of the devices `names` (qualified, as [`Registry::find`] gives them): each spec's own edits
    /// once, before the first of its devices, then each device's, as the CDI cache's InjectDevices gathers them.
    pub fn edits(&self, names: &[String]) -> Edits {
        let mut out = Edits::default();
        let mut specs_done = BTreeSet::new();
        for n in names {
            let Some(&(s, d)) = self.devices.get(n) else {
                continue;
            };
            if specs_done.insert(s) {
                out.append(&self.specs[s].container_edits);
            }
            out.append(&self.specs[s].devices[d].container_edits);
        }
        out
    }
}

/// `c`/`u`, `b` or `p` and the major and minor numbers and mode of a host node, or why it is none.
fn host_node(path: &Path) -> Result<(String, i64, i64, u32), String> {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    let m = std::fs::symlink_metadata(path).map_err(|e| e.to_string())?;
    let t = m.file_type();
    let kind = if t.is_block_device() {
        "b"
    } else if t.is_char_device() {
        "c"
    } else if t.is_fifo() {
        "p"
    } else {
        return Err("not a device node".into());
    };
    let rdev = m.rdev();
    Ok((
        kind.to_string(),
        i64::from(libc::major(rdev)),
        i64::from(libc::minor(rdev)),
        m.mode() & 0o7777,
    ))
}

/// A spec's device node completed from the host's node (the CDI library's fillMissingInfo).
fn fill_node(n: &Node) -> Result<DeviceNode, CdiError> {
    let host_path = if n.host_path.is_empty() {
        n.path.clone()
    } else {
        n.host_path.clone()
    };
    let minimal = !n.kind.is_empty() && (n.major != 0 || n.kind == "p");
    let mut node = DeviceNode {
        path: n.path.clone(),
        host_path: PathBuf::from(&host_path),
        kind: if n.kind == "u" {
            "c".into()
        } else {
            n.kind.clone()
        },
        major: n.major,
        minor: n.minor,
        file_mode: n.file_mode,
        permissions: if n.permissions.is_empty() {
            "rwm".into()
        } else {
            n.permissions.clone()
        },
        uid: n.uid,
        gid: n.gid,
    };
    let (kind, major, minor, mode) = match host_node(Path::new(&host_path)) {
        Ok(info) => info,
        Err(_) if minimal => return Ok(node),
        Err(reason) => {
            return Err(CdiError::HostDevice {
                path: host_path,
                reason,
            })
        }
    };
    node.file_mode.get_or_insert(mode);
    if minimal {
        return Ok(node);
    }
    if node.kind.is_empty() {
        node.kind = kind.clone();
    }
    if node.kind != kind {
        return Err(CdiError::TypeMismatch {
            path: n.path.clone(),
            host_path,
            spec: n.kind.clone(),
            host: kind,
        });
    }
    if node.kind != "p" && node.major == 0 {
        node.major = major;
        node.minor = minor;
    }
    Ok(node)
}

impl Edits {
    /// Makes these edits to `p` (the CDI library's Apply): variables set (replacing the same name), device nodes
    /// added (replacing one at the same path; owned by the process's user when the spec names none), mounts
    /// added (replacing one at the same path), supplementary groups added. Returns what kiln does not do
    /// (hooks, network devices, Intel RDT), for the step's log.
    pub fn apply(&self, p: &mut Process) -> Result<Vec<String>, CdiError> {
        for e in &self.env {
            let name = e.split_once('=').map_or(e.as_str(), |(k, _)| k);
            p.env
                .retain(|x| x.split_once('=').map_or(x.as_str(), |(k, _)| k) != name);
            p.env.push(e.clone());
        }
        for n in &self.device_nodes {
            let mut node = fill_node(n)?;
            if node.uid.is_none() && p.uid > 0 {
                node.uid = Some(p.uid);
            }
            if node.gid.is_none() && p.gid > 0 {
                node.gid = Some(p.gid);
            }
            p.devices.retain(|d| d.path != node.path);
            p.devices.push(node);
        }
        for m in &self.mounts {
            let target = m.container_path.clone();
            let mount = match m.kind.as_str() {
                "" | "bind" | "rbind" => Mount::Bind {
                    source: PathBuf::from(&m.host_path),
                    target: target.clone(),
                    readonly: m.options.iter().any(|o| o == "ro"),
                },
                "tmpfs" => Mount::Tmpfs {
                    target: target.clone(),
                    size: None,
                },
                other => {
                    return Err(CdiError::MountType {
                        host_path: m.host_path.clone(),
                        container_path: target,
                        kind: other.to_string(),
                    })
                }
            };
            p.mounts.retain(|x| match x {
                Mount::Bind { target: t, .. } | Mount::Tmpfs { target: t, .. } => *t != target,
            });
            p.mounts.push(mount);
        }
        for g in &self.additional_gids {
            if *g != 0 && !p.additional_gids.contains(g) {
                p.additional_gids.push(*g);
            }
        }
        let mut ignored = Vec::new();
        for h in &self.hooks {
            ignored.push(format!(
                "CDI {} hook {} is not run by kiln",
                h.hook_name, h.path
            ));
        }
        if !self.net_devices.is_empty() {
            ignored.push("CDI network devices are not moved into steps by kiln".to_string());
        }
        if self.intel_rdt.is_some() {
            ignored.push("CDI Intel RDT settings are not applied by kiln".to_string());
        }
        Ok(ignored)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SPEC: &str = r#"{
        "cdiVersion": "0.6.0",
        "kind": "kiln.test/fake",
        "annotations": {"org.mobyproject.buildkit.device.class": "fakes"},
        "devices": [
            {"name": "zero", "containerEdits": {"deviceNodes": [{"path": "/dev/fake0", "hostPath": "/dev/null"}]}},
            {"name": "one", "containerEdits": {"env": ["ONE=1"]}}
        ],
        "containerEdits": {"env": ["FAKE=yes"], "mounts": [{"hostPath": "/etc/hostname", "containerPath": "/etc/fake", "options": ["ro", "bind"]}]}
    }"#;

    fn registry(files: &[(&str, &str)]) -> (tempfile::TempDir, Registry) {
        let dir = tempfile::tempdir().expect("tempdir");
        for (name, text) in files {
            std::fs::write(dir.path().join(name), text).expect("write");
        }
        let r = Registry::scan(&[dir.path().to_path_buf()]);
        (dir, r)
    }

    #[test]
    fn specs_are_checked_as_the_cdi_library_checks_them() {
        assert!(parse_spec(SPEC).is_ok());
        let bad = |from: &str, to: &str| parse_spec(&SPEC.replacen(from, to, 1)).unwrap_err();
        assert_eq!(bad("0.6.0", "9.9.9"), "invalid version \"9.9.9\"");
        assert_eq!(
            bad("kiln.test/fake", "fake"),
            "invalid CDI Spec: invalid vendor. empty name"
        );
        assert_eq!(
            bad("kiln.test/fake", "kiln.test/f@ke"),
            "invalid CDI Spec: invalid class. invalid character '@' in name \"f@ke\""
        );
        assert_eq!(
            bad("\"one\"", "\"zero\""),
            "invalid CDI Spec: invalid spec, multiple device \"zero\""
        );
        assert_eq!(
            bad("\"name\": \"one\"", "\"name\": \"-x\""),
            "invalid CDI Spec: failed add device \"-x\": invalid class \"-x\", should start with a letter or digit"
        );
        assert_eq!(
            bad("ONE=1", "=1"),
            "invalid CDI Spec: failed add device \"one\": invalid environment variable \"=1\""
        );
        assert!(bad("\"deviceNodes\"", "\"devicenodes\"")
            .starts_with("failed to unmarshal CDI Spec: unknown field `devicenodes`"));
    }

    #[test]
    fn names_resolve_as_buildkit_resolves_them() {
        let (_d, r) = registry(&[
            ("fake.json", SPEC),
            ("other.yaml", "cdiVersion: 0.6.0\n"),
            ("notes.txt", "x"),
        ]);
        assert_eq!(
            r.find("kiln.test/fake=zero", false).unwrap(),
            ["kiln.test/fake=zero"]
        );
        // The first device of the kind, in name order, and all of them.
        assert_eq!(
            r.find("kiln.test/fake", false).unwrap(),
            ["kiln.test/fake=one"]
        );
        assert_eq!(
            r.find("kiln.test/fake=*", false).unwrap(),
            ["kiln.test/fake=one", "kiln.test/fake=zero"]
        );
        assert_eq!(
            r.find("fakes", false).unwrap().len(),
            2,
            "by class annotation"
        );
        assert_eq!(
            r.find("kiln.test/fake=two", true).unwrap(),
            Vec::<String>::new()
        );
        let e = r.find("kiln.test/fake=two", false).unwrap_err().to_string();
        assert!(
            e.starts_with(
                "required device \"kiln.test/fake=two\" is not registered (CDI specs skipped: "
            ) && e.contains("other.yaml: YAML CDI specs are not supported"),
            "{e}"
        );
        assert!(!r.auto_allowed("kiln.test/fake=zero"));
    }

    #[test]
    fn a_later_directory_wins_and_a_conflict_in_one_drops_the_device() {
        let a = tempfile::tempdir().expect("tempdir");
        let b = tempfile::tempdir().expect("tempdir");
        std::fs::write(a.path().join("x.json"), SPEC).expect("write");
        let later = SPEC.replace("FAKE=yes", "FAKE=later");
        std::fs::write(b.path().join("x.json"), &later).expect("write");
        let r = Registry::scan(&[a.path().into(), b.path().into()]);
        assert_eq!(
            r.edits(&["kiln.test/fake=one".into()]).env,
            ["FAKE=later", "ONE=1"]
        );
        std::fs::write(b.path().join("y.json"), &later).expect("write");
        let r = Registry::scan(&[a.path().into(), b.path().into()]);
        assert!(r.find("kiln.test/fake=one", false).is_err());
        assert!(r
            .problems()
            .iter()
            .any(|p| p.starts_with("conflicting device")));
    }

    #[test]
    fn edits_fill_nodes_from_the_host_and_replace_what_they_name() {
        let (_d, r) = registry(&[("fake.json", SPEC)]);
        let names = r.find("kiln.test/fake=*", false).unwrap();
        let edits = r.edits(&names);
        // The spec's own edits once, then each device's.
        assert_eq!(edits.env, ["FAKE=yes", "ONE=1"]);
        let mut p = crate::process::Process {
            args: vec!["true".into()],
            env: vec!["FAKE=no".into(), "PATH=/bin".into()],
            cwd: "/".into(),
            uid: 1000,
            gid: 0,
            additional_gids: vec![],
            hostname: "h".into(),
            rootfs: "/".into(),
            mounts: vec![],
            network: crate::process::Network::Isolated,
            limits: Default::default(),
            privileged: false,
            rlimits: vec![],
            devices: vec![],
        };
        assert!(edits.apply(&mut p).unwrap().is_empty());
        assert_eq!(p.env, ["PATH=/bin", "FAKE=yes", "ONE=1"]);
        assert_eq!(p.devices.len(), 1);
        let n = &p.devices[0];
        assert_eq!(
            (
                n.path.as_str(),
                n.kind.as_str(),
                n.major,
                n.minor,
                n.uid,
                n.gid
            ),
            ("/dev/fake0", "c", 1, 3, Some(1000), None)
        );
        assert_eq!(n.host_path, PathBuf::from("/dev/null"));
        assert_eq!(
            p.mounts,
            [Mount::Bind {
                source: "/etc/hostname".into(),
                target: "/etc/fake".into(),
                readonly: true
            }]
        );
        let missing = Edits {
            device_nodes: vec![Node {
                path: "/dev/nope".into(),
                ..Node::default()
            }],
            ..Edits::default()
        };
        assert!(missing
            .apply(&mut p)
            .unwrap_err()
            .to_string()
            .starts_with("failed to stat CDI host device \"/dev/nope\""));
    }
}
