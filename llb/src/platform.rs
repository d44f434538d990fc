//! Platforms (`os/arch[/variant]`): what FROM --platform, TARGETPLATFORM and image indexes select by.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// An OCI platform, normalised as containerd's `platforms.Normalize` does, so `linux/aarch64` and `linux/arm64/v8`
/// name the same thing and produce the same op digests.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Platform {
    /// Operating system, e.g. `linux`.
    pub os: String,
    /// CPU architecture in GOARCH spelling, e.g. `amd64`.
    pub architecture: String,
    /// Architecture variant, e.g. `v7` for arm; absent when the architecture has none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
}

/// Why a platform string was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlatformError {
    /// Empty, too many parts, or an unknown OS/architecture spelling.
    #[error("invalid platform {0:?}: expected os/arch[/variant], e.g. linux/amd64")]
    Invalid(String),
    /// One word that is neither an OS nor an architecture Go knows (containerd's `platforms.Parse` refuses it
    /// rather than guess).
    #[error("{0:?}: unknown operating system or architecture: expected os/arch[/variant], e.g. linux/amd64")]
    Unknown(String),
}

/// The operating systems Go knows (containerd's `isKnownOS`).
const KNOWN_OS: &[&str] = &[
    "aix",
    "android",
    "darwin",
    "dragonfly",
    "freebsd",
    "hurd",
    "illumos",
    "ios",
    "js",
    "linux",
    "nacl",
    "netbsd",
    "openbsd",
    "plan9",
    "solaris",
    "windows",
    "zos",
];

/// The architectures Go knows (containerd's `isKnownArch`).
const KNOWN_ARCH: &[&str] = &[
    "386",
    "amd64",
    "amd64p32",
    "arm",
    "armbe",
    "arm64",
    "arm64be",
    "ppc64",
    "ppc64le",
    "loong64",
    "mips",
    "mipsle",
    "mips64",
    "mips64le",
    "mips64p32",
    "mips64p32le",
    "ppc",
    "riscv",
    "riscv64",
    "s390",
    "s390x",
    "sparc",
    "sparc64",
    "wasm",
];

impl Platform {
    /// The platform kiln itself runs on: the default for BUILDPLATFORM and TARGETPLATFORM.
    pub fn host() -> Platform {
        let (architecture, variant) = normalize_arch(std::env::consts::ARCH, "");
        Platform {
            os: "linux".to_string(),
            architecture,
            variant,
        }
    }

    /// Whether an image made for `candidate` serves a request for this platform: the same OS and architecture,
    /// and the same variant when this one names a variant. How indexes are searched, in archives, the store and
    /// registries alike.
    pub fn matches(&self, candidate: &Platform) -> bool {
        candidate.os == self.os
            && candidate.architecture == self.architecture
            && (self.variant.is_none() || candidate.variant == self.variant)
    }
}

fn normalize_arch(arch: &str, variant: &str) -> (String, Option<String>) {
    let arch = arch.to_ascii_lowercase();
    let variant = variant.to_ascii_lowercase();
    let (a, v): (&str, &str) = match arch.as_str() {
        "i386" | "i686" | "x86" => ("386", ""),
        "x86_64" | "x86-64" | "amd64" => {
            // amd64 variants (v2, v3) are kept; v1 is the default and is dropped.
            if variant == "v1" {
                ("amd64", "")
            } else {
                ("amd64", variant.as_str())
            }
        }
        "aarch64" | "arm64" => match variant.as_str() {
            "8" | "v8" | "" => ("arm64", ""),
            other => ("arm64", other),
        },
        "armhf" => ("arm", "v7"),
        "armel" => ("arm", "v6"),
        "arm" => match variant.as_str() {
            "" | "7" => ("arm", "v7"),
            "5" | "6" | "8" => {
                return ("arm".to_string(), Some(format!("v{variant}")));
            }
            other => ("arm", other),
        },
        other => (other, variant.as_str()),
    };
    let v = if v.is_empty() {
        None
    } else {
        Some(v.to_string())
    };
    (a.to_string(), v)
}

impl FromStr for Platform {
    type Err = PlatformError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || PlatformError::Invalid(s.to_string());
        let parts: Vec<&str> = s.trim().split('/').collect();
        let valid_part = |p: &&str| {
            !p.is_empty()
                && p.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        };
        if parts.is_empty() || parts.len() > 3 || !parts.iter().all(valid_part) {
            return Err(bad());
        }
        // A lone OS takes this machine's architecture, a lone architecture ("arm64") means linux, and a lone word
        // that is neither is refused, as containerd's parser does.
        let (os, arch, variant) = match parts.as_slice() {
            [one] if KNOWN_OS.contains(&one.to_ascii_lowercase().as_str()) => {
                let host = Platform::host();
                return Ok(Platform {
                    os: one.to_ascii_lowercase(),
                    architecture: host.architecture,
                    variant: host.variant,
                });
            }
            [one] if KNOWN_ARCH.contains(&normalize_arch(one, "").0.as_str()) => {
                ("linux", *one, "")
            }
            [_] => return Err(PlatformError::Unknown(s.trim().to_string())),
            [os, arch] => (*os, *arch, ""),
            [os, arch, variant] => (*os, *arch, *variant),
            _ => return Err(bad()),
        };
        let (architecture, variant) = normalize_arch(arch, variant);
        Ok(Platform {
            os: os.to_ascii_lowercase(),
            architecture,
            variant,
        })
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> String {
        s.parse::<Platform>().unwrap().to_string()
    }

    #[test]
    fn normalises_like_containerd() {
        assert_eq!(p("linux/amd64"), "linux/amd64");
        assert_eq!(p("linux/x86_64"), "linux/amd64");
        assert_eq!(p("linux/aarch64"), "linux/arm64");
        assert_eq!(p("linux/arm64/v8"), "linux/arm64");
        assert_eq!(p("linux/arm"), "linux/arm/v7");
        assert_eq!(p("linux/arm/v6"), "linux/arm/v6");
        assert_eq!(p("arm64"), "linux/arm64");
        assert_eq!(p("Linux/AMD64"), "linux/amd64");
    }

    #[test]
    fn rejects_malformed() {
        for bad in [
            "",
            "/",
            "linux/",
            "a/b/c/d",
            "linux/am d64",
            "linux//v7",
            "bogus",
        ] {
            assert!(bad.parse::<Platform>().is_err(), "{bad}");
        }
    }
}
