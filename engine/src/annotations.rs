//! Image annotations in BuildKit's syntax: `--annotation [TYPE[\[PLATFORM\]]:]KEY=VALUE` (buildx's flag) and the
//! output options `annotation[-TYPE][\[PLATFORM\]].KEY=VALUE` (BuildKit's `exptypes.ParseAnnotationKey`). TYPE is
//! `manifest` (the default), `manifest-descriptor` (the index's or OCI layout's entry for a manifest), `index` or
//! `index-descriptor` (the OCI layout's entry for the index); a platform limits a manifest annotation to that
//! platform's image. Where each lands follows BuildKit's image writer, and so do its refusals.

use std::collections::BTreeMap;

use oci::Platform;

/// Where an annotation is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum AnnotationKind {
    /// The image manifest (BuildKit's default).
    Manifest,
    /// The descriptor that points at the manifest: its entry in the index, or in an OCI layout's `index.json`.
    ManifestDescriptor,
    /// The image index itself (multi-platform builds only).
    Index,
    /// The descriptor that points at the index: its entry in an OCI layout's `index.json`.
    IndexDescriptor,
}

impl AnnotationKind {
    fn parse(s: &str) -> Option<AnnotationKind> {
        Some(match s {
            "" | "manifest" => AnnotationKind::Manifest,
            "manifest-descriptor" => AnnotationKind::ManifestDescriptor,
            "index" => AnnotationKind::Index,
            "index-descriptor" => AnnotationKind::IndexDescriptor,
            _ => return None,
        })
    }
}

/// One annotation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Annotation {
    /// Where it goes.
    pub kind: AnnotationKind,
    /// For manifest annotations: only this platform's image (`None`: every image).
    pub platform: Option<Platform>,
    /// The annotation's key, e.g. `org.opencontainers.image.title`.
    pub key: String,
    /// Its value.
    pub value: String,
}

/// Why an annotation is refused, in BuildKit's (or buildx's) words.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AnnotationError {
    /// `--annotation` without `=`.
    #[error("invalid annotation {0:?}, expected key=value")]
    NotKeyValue(String),
    /// The key is none of the accepted forms.
    #[error("invalid annotation format, expected <type>:<key>=<value>, got {0:?}")]
    Format(String),
    /// A type that is none of manifest, manifest-descriptor, index, index-descriptor.
    #[error("unknown annotation type {0:?} (valid: manifest, manifest-descriptor, index, index-descriptor)")]
    UnknownType(String),
    /// The platform in brackets does not parse.
    #[error("invalid platform {platform:?} in annotation {key:?}: {reason}")]
    Platform {
        /// The annotation's key as given.
        key: String,
        /// The bracketed platform.
        platform: String,
        /// Why it does not parse.
        reason: String,
    },
    /// A platform-specific annotation for a platform the build does not make.
    #[error("invalid annotation: no platform {0} found in source")]
    NoSuchPlatform(String),
    /// Index annotations on a single-platform image, which has no index.
    #[error("index annotations not supported for single platform export")]
    IndexOnSinglePlatform,
    /// Descriptor or index annotations with Docker media types, which have no place for them.
    #[error("cannot export annotations with \"oci-mediatypes=false\"")]
    DockerMediaTypes,
}

fn is_type_char(c: char) -> bool {
    c.is_ascii_lowercase() || c == '-'
}

fn is_platform_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == '/' || c == '-'
}

/// `[PLATFORM]` at the start of `s`: the platform text and the rest; `None` when `s` does not start with `[`.
fn bracketed(s: &str) -> Option<Result<(&str, &str), ()>> {
    let inner = s.strip_prefix('[')?;
    Some(match inner.split_once(']') {
        Some((p, rest)) if !p.is_empty() && p.chars().all(is_platform_char) => Ok((p, rest)),
        _ => Err(()),
    })
}

fn platform(key: &str, p: &str) -> Result<Platform, AnnotationError> {
    p.parse()
        .map_err(|e: oci::PlatformError| AnnotationError::Platform {
            key: key.to_string(),
            platform: p.to_string(),
            reason: e.to_string(),
        })
}

fn non_blank_key(k: &str) -> bool {
    !k.is_empty() && !k.chars().any(char::is_whitespace)
}

/// Parses one `--annotation` value as buildx does: `KEY=VALUE` (a manifest annotation), or
/// `TYPE[\[PLATFORM\]]:KEY=VALUE`.
pub fn parse_flag(spec: &str) -> Result<Annotation, AnnotationError> {
    let (k, v) = spec
        .split_once('=')
        .ok_or_else(|| AnnotationError::NotKeyValue(spec.to_string()))?;
    let format = || AnnotationError::Format(spec.to_string());
    // buildx's `^(?:([a-z-]+)(?:\[([A-Za-z0-9_/-]+)\])?:)?(\S+)$`.
    let type_len = k.find(|c| !is_type_char(c)).unwrap_or(k.len());
    let (typ, rest) = k.split_at(type_len);
    let prefixed = if typ.is_empty() {
        None
    } else {
        match bracketed(rest) {
            Some(Ok((p, after))) => after.strip_prefix(':').map(|key| (Some(p), key)),
            Some(Err(())) => None,
            None => rest.strip_prefix(':').map(|key| (None, key)),
        }
    };
    let (typ, plat, key) = match prefixed {
        Some((p, key)) if non_blank_key(key) => (typ, p, key),
        _ if non_blank_key(k) => ("", None, k),
        _ => return Err(format()),
    };
    let kind =
        AnnotationKind::parse(typ).ok_or_else(|| AnnotationError::UnknownType(typ.into()))?;
    Ok(Annotation {
        kind,
        platform: plat.map(|p| platform(k, p)).transpose()?,
        key: key.to_string(),
        value: v.to_string(),
    })
}

/// Parses an output option as BuildKit's exporters do: `annotation.KEY`, `annotation-TYPE.KEY`,
/// `annotation[PLATFORM].KEY`, `annotation-TYPE[PLATFORM].KEY`; `Ok(None)` when `key` is no annotation option.
pub fn parse_option(key: &str, value: &str) -> Result<Option<Annotation>, AnnotationError> {
    // BuildKit's `^annotation(?:-([a-z-]+))?(?:\[([A-Za-z0-9_/-]+)\])?\.(\S+)$`.
    let Some(rest) = key.strip_prefix("annotation") else {
        return Ok(None);
    };
    let (typ, rest) = match rest.strip_prefix('-') {
        Some(r) => r.split_at(r.find(|c| !is_type_char(c)).unwrap_or(r.len())),
        None => ("", rest),
    };
    let (plat, rest) = match bracketed(rest) {
        Some(Ok((p, after))) => (Some(p), after),
        Some(Err(())) => return Ok(None),
        None => (None, rest),
    };
    let Some(name) = rest.strip_prefix('.').filter(|n| non_blank_key(n)) else {
        return Ok(None);
    };
    let kind =
        AnnotationKind::parse(typ).ok_or_else(|| AnnotationError::UnknownType(typ.into()))?;
    Ok(Some(Annotation {
        kind,
        platform: plat.map(|p| platform(key, p)).transpose()?,
        key: name.to_string(),
        value: value.to_string(),
    }))
}

/// The annotations of one image output, in the order given (a later one of the same place and key wins).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Annotations(pub Vec<Annotation>);

impl Annotations {
    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    fn collect(
        &self,
        kind: AnnotationKind,
        platform: Option<&Platform>,
    ) -> BTreeMap<String, String> {
        // Generic ones first, then the platform's, so a platform's own value wins as in BuildKit.
        let generic = self
            .0
            .iter()
            .filter(|a| a.kind == kind && a.platform.is_none());
        let own = self
            .0
            .iter()
            .filter(|a| a.kind == kind && a.platform.is_some() && a.platform.as_ref() == platform);
        generic
            .chain(own)
            .map(|a| (a.key.clone(), a.value.clone()))
            .collect()
    }

    /// What goes into the manifest of `platform`'s image.
    pub fn manifest(&self, platform: &Platform) -> BTreeMap<String, String> {
        self.collect(AnnotationKind::Manifest, Some(platform))
    }

    /// What goes onto the descriptor of `platform`'s manifest.
    pub fn manifest_descriptor(&self, platform: &Platform) -> BTreeMap<String, String> {
        self.collect(AnnotationKind::ManifestDescriptor, Some(platform))
    }

    /// What goes into the index.
    pub fn index(&self) -> BTreeMap<String, String> {
        self.collect(AnnotationKind::Index, None)
    }

    /// What goes onto the descriptor of the index.
    pub fn index_descriptor(&self) -> BTreeMap<String, String> {
        self.collect(AnnotationKind::IndexDescriptor, None)
    }

    /// Refuses what BuildKit's image writer refuses, before anything is built: a platform the build does not
    /// make, index annotations without an index, and anything but manifest annotations with Docker media types.
    pub fn check(
        &self,
        platforms: &[Platform],
        oci_media_types: bool,
    ) -> Result<(), AnnotationError> {
        for a in &self.0 {
            if let Some(p) = &a.platform {
                if !platforms.contains(p) {
                    return Err(AnnotationError::NoSuchPlatform(p.to_string()));
                }
            }
            if !oci_media_types && a.kind != AnnotationKind::Manifest {
                return Err(AnnotationError::DockerMediaTypes);
            }
        }
        let indexed = self.0.iter().any(|a| {
            matches!(
                a.kind,
                AnnotationKind::Index | AnnotationKind::IndexDescriptor
            )
        });
        if platforms.len() < 2 && indexed {
            return Err(AnnotationError::IndexOnSinglePlatform);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(kind: AnnotationKind, platform: Option<&str>, key: &str, value: &str) -> Annotation {
        Annotation {
            kind,
            platform: platform.map(|p| p.parse().unwrap()),
            key: key.into(),
            value: value.into(),
        }
    }

    #[test]
    fn flags_read_as_buildx_reads_them() {
        use AnnotationKind::*;
        assert_eq!(parse_flag("k=v").unwrap(), a(Manifest, None, "k", "v"));
        assert_eq!(
            parse_flag("org.opencontainers.image.url=https://x/y=z").unwrap(),
            a(
                Manifest,
                None,
                "org.opencontainers.image.url",
                "https://x/y=z"
            )
        );
        assert_eq!(parse_flag("index:k=v").unwrap(), a(Index, None, "k", "v"));
        assert_eq!(
            parse_flag("manifest-descriptor:k=v").unwrap(),
            a(ManifestDescriptor, None, "k", "v")
        );
        assert_eq!(
            parse_flag("index-descriptor:k=").unwrap(),
            a(IndexDescriptor, None, "k", "")
        );
        assert_eq!(
            parse_flag("manifest[linux/arm64]:k=v").unwrap(),
            a(Manifest, Some("linux/arm64"), "k", "v")
        );
        assert_eq!(
            parse_flag("k").unwrap_err(),
            AnnotationError::NotKeyValue("k".into())
        );
        assert_eq!(
            parse_flag("bogus:k=v").unwrap_err(),
            AnnotationError::UnknownType("bogus".into())
        );
        assert!(matches!(parse_flag("=v"), Err(AnnotationError::Format(_))));
        assert!(matches!(
            parse_flag("manifest[linux/amd64/x/y]:k=v"),
            Err(AnnotationError::Platform { .. })
        ));
    }

    #[test]
    fn options_read_as_buildkit_reads_them() {
        use AnnotationKind::*;
        assert_eq!(
            parse_option("annotation.k", "v").unwrap(),
            Some(a(Manifest, None, "k", "v"))
        );
        assert_eq!(
            parse_option("annotation-index.k", "v").unwrap(),
            Some(a(Index, None, "k", "v"))
        );
        assert_eq!(
            parse_option("annotation[linux/amd64].k", "v").unwrap(),
            Some(a(Manifest, Some("linux/amd64"), "k", "v"))
        );
        assert_eq!(
            parse_option("annotation-manifest-descriptor[linux/arm64].a.b", "v").unwrap(),
            Some(a(ManifestDescriptor, Some("linux/arm64"), "a.b", "v"))
        );
        assert_eq!(parse_option("name", "v").unwrap(), None);
        assert_eq!(parse_option("annotationk", "v").unwrap(), None);
        assert_eq!(
            parse_option("annotation-bogus.k", "v").unwrap_err(),
            AnnotationError::UnknownType("bogus".into())
        );
    }

    #[test]
    fn each_lands_where_buildkit_puts_it_and_is_refused_where_it_is() {
        let amd: Platform = "linux/amd64".parse().unwrap();
        let arm: Platform = "linux/arm64".parse().unwrap();
        let all = Annotations(vec![
            parse_flag("k=generic").unwrap(),
            parse_flag("manifest[linux/arm64]:k=arm").unwrap(),
            parse_flag("index:i=1").unwrap(),
            parse_flag("manifest-descriptor:d=1").unwrap(),
        ]);
        assert_eq!(all.manifest(&amd)["k"], "generic");
        assert_eq!(all.manifest(&arm)["k"], "arm");
        assert_eq!(all.index()["i"], "1");
        assert_eq!(all.manifest_descriptor(&arm)["d"], "1");
        assert!(all.index_descriptor().is_empty());
        assert_eq!(all.check(&[amd.clone(), arm.clone()], true), Ok(()));
        assert_eq!(
            all.check(std::slice::from_ref(&amd), true),
            Err(AnnotationError::NoSuchPlatform("linux/arm64".into()))
        );
        assert_eq!(
            all.check(&[amd.clone(), arm.clone()], false),
            Err(AnnotationError::DockerMediaTypes)
        );
        let index_only = Annotations(vec![parse_flag("index:i=1").unwrap()]);
        assert_eq!(
            index_only.check(&[amd], true),
            Err(AnnotationError::IndexOnSinglePlatform)
        );
    }
}
