//! Image references as Docker spells and normalises them (`python` → `docker.io/library/python:latest`), split
//! into what a registry client needs: the registry host, the repository, and a tag or a digest.

use std::fmt;

use crate::{Digest, DigestError};

/// Why a string is not an image reference; the CLI prefixes the reference itself.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReferenceError {
    /// Empty, or holding whitespace or control characters.
    #[error("must be non-empty and contain no whitespace")]
    Blank,
    /// The digest after `@` does not parse.
    #[error(transparent)]
    Digest(#[from] DigestError),
    /// The tag after `:` is not a valid tag.
    #[error("invalid tag {0:?}")]
    Tag(String),
    /// Empty path segments, or a leading or trailing `/`.
    #[error("invalid repository name")]
    Repository,
    /// Characters Docker refuses in a repository path.
    #[error("repository name must be lowercase letters, digits and separators")]
    Characters,
    /// Upper-case letters where only lower-case ones may be, in Docker's words (the repository as normalised).
    #[error("invalid reference format: repository name ({0}) must be lowercase")]
    UpperCase(String),
}

/// Docker Hub's canonical registry name in references.
pub const DOCKER_HUB: &str = "docker.io";
/// The host that serves Docker Hub's distribution API.
pub const DOCKER_HUB_ENDPOINT: &str = "registry-1.docker.io";
/// The key Docker's config.json uses for Docker Hub credentials.
pub const DOCKER_HUB_CONFIG_KEY: &str = "https://index.docker.io/v1/";

/// A fully normalised image reference.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Reference {
    /// Registry host (with port), e.g. `docker.io`, `localhost:5000`.
    pub registry: String,
    /// Repository path inside the registry, e.g. `library/python`.
    pub repository: String,
    /// Tag, when the reference names one (`latest` is filled in when neither tag nor digest is given).
    pub tag: Option<String>,
    /// Digest, when the reference pins one.
    pub digest: Option<Digest>,
}

impl Reference {
    /// Parses and normalises a reference the way `docker pull` does.
    pub fn parse(r: &str) -> Result<Reference, ReferenceError> {
        if r.is_empty() || r.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(ReferenceError::Blank);
        }
        let (name_tag, digest) = match r.split_once('@') {
            Some((n, d)) => (n, Some(d.parse::<Digest>()?)),
            None => (r, None),
        };
        let (name, tag) = match name_tag.rfind(':') {
            Some(i) if !name_tag[i + 1..].contains('/') => {
                (&name_tag[..i], Some(&name_tag[i + 1..]))
            }
            _ => (name_tag, None),
        };
        if let Some(t) = tag {
            let valid = !t.is_empty()
                && t.len() <= 128
                && t.chars()
                    .next()
                    .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_')
                && t.chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
            if !valid {
                return Err(ReferenceError::Tag(t.to_string()));
            }
        }
        if name.is_empty() || name.starts_with('/') || name.ends_with('/') || name.contains("//") {
            return Err(ReferenceError::Repository);
        }
        let first = name.split('/').next().unwrap_or("");
        let has_host = name.contains('/')
            && (first.contains('.') || first.contains(':') || first == "localhost");
        let path = if has_host {
            &name[first.len() + 1..]
        } else {
            name
        };
        let valid = |c: char| {
            c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '_' | '-' | '/')
        };
        if !path.chars().all(valid) {
            if path.chars().all(|c| valid(c.to_ascii_lowercase())) {
                // Only upper-case letters are wrong: Docker's wording, with the repository as it normalises it.
                let remote = if has_host || name.contains('/') {
                    path.to_string()
                } else {
                    format!("library/{path}")
                };
                return Err(ReferenceError::UpperCase(remote));
            }
            return Err(ReferenceError::Characters);
        }
        let (registry, repository) = if has_host {
            let host = if first == "index.docker.io" {
                DOCKER_HUB
            } else {
                first
            };
            (host.to_string(), path.to_string())
        } else if name.contains('/') {
            (DOCKER_HUB.to_string(), name.to_string())
        } else {
            (DOCKER_HUB.to_string(), format!("library/{name}"))
        };
        let tag = match (tag, &digest) {
            (Some(t), _) => Some(t.to_string()),
            (None, Some(_)) => None,
            (None, None) => Some("latest".to_string()),
        };
        Ok(Reference {
            registry,
            repository,
            tag,
            digest,
        })
    }

    /// `registry/repository`, the name without tag or digest.
    pub fn name(&self) -> String {
        format!("{}/{}", self.registry, self.repository)
    }

    /// The tag or digest that a manifest request asks for: the digest when pinned, else the tag.
    pub fn manifest_reference(&self) -> String {
        match (&self.digest, &self.tag) {
            (Some(d), _) => d.to_string(),
            (None, Some(t)) => t.clone(),
            (None, None) => "latest".to_string(),
        }
    }

    /// The host to send distribution API requests to (Docker Hub's API has its own host).
    pub fn endpoint_host(&self) -> &str {
        if self.registry == DOCKER_HUB {
            DOCKER_HUB_ENDPOINT
        } else {
            &self.registry
        }
    }

    /// This reference with its digest replaced (the tag is kept, as `name:tag@digest`).
    pub fn with_digest(&self, digest: Digest) -> Reference {
        Reference {
            digest: Some(digest),
            ..self.clone()
        }
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)?;
        if let Some(t) = &self.tag {
            write!(f, ":{t}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

/// Docker's reference normalisation as a string: `python` → `docker.io/library/python:latest`, `me/app` →
/// `docker.io/me/app:latest`, a registry host kept as is, a digest kept instead of a default tag.
pub fn normalize(r: &str) -> Result<String, ReferenceError> {
    Reference::parse(r).map(|x| x.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts() {
        let r = Reference::parse("python:3.12").unwrap();
        assert_eq!(r.registry, "docker.io");
        assert_eq!(r.repository, "library/python");
        assert_eq!(r.endpoint_host(), "registry-1.docker.io");
        assert_eq!(r.manifest_reference(), "3.12");
        let r = Reference::parse("127.0.0.1:5000/a/b").unwrap();
        assert_eq!(
            (r.registry.as_str(), r.repository.as_str()),
            ("127.0.0.1:5000", "a/b")
        );
        assert_eq!(r.tag.as_deref(), Some("latest"));
        let d = format!("sha256:{}", "b".repeat(64));
        let r = Reference::parse(&format!("ghcr.io/o/r:v1@{d}")).unwrap();
        assert_eq!(r.manifest_reference(), d);
        assert_eq!(r.to_string(), format!("ghcr.io/o/r:v1@{d}"));
        assert_eq!(
            Reference::parse("index.docker.io/library/busybox")
                .unwrap()
                .to_string(),
            "docker.io/library/busybox:latest"
        );
        assert!(Reference::parse("example.com/Upper").is_err());
        assert_eq!(
            Reference::parse("Foo").unwrap_err().to_string(),
            "invalid reference format: repository name (library/Foo) must be lowercase"
        );
    }
}
