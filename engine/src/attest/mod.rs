//! What a build attests, as BuildKit's attestation options say it (`--attest type=provenance,mode=max`,
//! `--provenance`, `--sbom`): which statements to make ([`AttestRequest`]), the SLSA provenance predicate
//! ([`provenance`]) and the SBOM of each platform's final filesystem ([`sbom`]). The statements themselves and the
//! attestation manifests are the exporter's (`exporter::attestation`).

pub mod provenance;
pub mod sbom;

use std::collections::BTreeMap;

use crate::error::BuildError;

/// SLSA provenance options (BuildKit's `attest:provenance` attributes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProvenanceOptions {
    /// `mode=min` (no build-arg values, secrets or Dockerfile) or `mode=max`.
    pub max: bool,
    /// `version=v1` (default) or `version=v0.2`.
    pub version: SlsaVersion,
    /// `builder-id=`: the SLSA builder id.
    pub builder_id: String,
    /// `filename=`: its name in a local output (`provenance.json`).
    pub filename: String,
    /// `reproducible=true`: marked as reproducible.
    pub reproducible: bool,
    /// `inline-only=true`: only in outputs that hold images, not written to a local directory.
    pub inline_only: bool,
}

/// Which SLSA provenance predicate to write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SlsaVersion {
    /// `https://slsa.dev/provenance/v1` (BuildKit's default).
    V1,
    /// `https://slsa.dev/provenance/v0.2`.
    V02,
}

/// SBOM options (BuildKit's `attest:sbom` attributes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SbomOptions {
    /// Its name in a local output.
    pub filename: String,
}

/// The attestations a build is asked for: none by default, as BuildKit makes none unless asked, except that a
/// pushed image gets mode=min provenance when no flag spoke of provenance, as buildx asks BuildKit for it
/// (see [`AttestRequest::default_for_push`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AttestRequest {
    /// SLSA provenance, when asked.
    pub provenance: Option<ProvenanceOptions>,
    /// Whether a flag decided provenance (`--provenance`, `--attest type=provenance`, either way).
    pub provenance_decided: bool,
    /// An SBOM, when asked.
    pub sbom: Option<SbomOptions>,
    /// What was asked that kiln does not do (an SBOM generator image...): said as warnings by the build.
    pub notes: Vec<String>,
}

impl AttestRequest {
    /// Whether anything is to be attested.
    pub fn any(&self) -> bool {
        self.provenance.is_some() || self.sbom.is_some()
    }

    /// Gives a build that pushes mode=min provenance when no flag decided provenance: what `docker buildx build
    /// --push` attaches by default.
    pub fn default_for_push(&mut self, pushes: bool) {
        if pushes && !self.provenance_decided && self.provenance.is_none() {
            self.provenance = Some(ProvenanceOptions {
                max: false,
                version: SlsaVersion::V1,
                builder_id: String::new(),
                filename: "provenance.json".to_string(),
                reproducible: false,
                inline_only: false,
            });
        }
    }

    /// Applies one `--attest type=…,k=v` flag: the last one of a type wins, `disabled=true` turns it off.
    pub fn add_attest(&mut self, spec: &str) -> Result<(), BuildError> {
        let attrs = parse_attrs(spec)?;
        let kind = attrs.get("type").cloned().ok_or_else(|| {
            BuildError::Invalid(format!(
                "--attest {spec}: type= is required (type=provenance or type=sbom)"
            ))
        })?;
        self.apply(&kind, attrs, &format!("--attest {spec}"))
    }

    /// Applies `--provenance=VALUE`: `true`/`false`, or attributes (`mode=max`) as `--attest type=provenance,…`.
    pub fn set_provenance(&mut self, value: &str) -> Result<(), BuildError> {
        self.shorthand("provenance", value)
    }

    /// Applies `--sbom=VALUE`: `true`/`false`, or attributes as `--attest type=sbom,…`.
    pub fn set_sbom(&mut self, value: &str) -> Result<(), BuildError> {
        self.shorthand("sbom", value)
    }

    fn shorthand(&mut self, kind: &str, value: &str) -> Result<(), BuildError> {
        let flag = format!("--{kind}={value}");
        let attrs = match parse_bool(value) {
            Some(true) => BTreeMap::new(),
            Some(false) => BTreeMap::from([("disabled".to_string(), "true".to_string())]),
            None => parse_attrs(value)?,
        };
        if let Some(t) = attrs.get("type") {
            if t != kind {
                return Err(BuildError::Invalid(format!(
                    "{flag}: type={t} is not {kind}"
                )));
            }
        }
        self.apply(kind, attrs, &flag)
    }

    fn apply(
        &mut self,
        kind: &str,
        attrs: BTreeMap<String, String>,
        flag: &str,
    ) -> Result<(), BuildError> {
        let invalid = |m: String| BuildError::Invalid(format!("{flag}: {m}"));
        let disabled = match attrs.get("disabled") {
            Some(v) => parse_bool(v).ok_or_else(|| invalid(format!("invalid disabled={v}")))?,
            None => false,
        };
        match kind {
            "provenance" => {
                self.provenance_decided = true;
                if disabled {
                    self.provenance = None;
                    return Ok(());
                }
                // `--provenance=true` is buildx's default, mode=min; attributes without a mode take BuildKit's
                // default, max.
                let max = match attrs.get("mode").map(String::as_str) {
                    None => !attrs.is_empty() && attrs.keys().any(|k| k != "type"),
                    Some("min") => false,
                    Some("max" | "full") => true,
                    Some(m) => return Err(invalid(format!("invalid mode \"{m}\""))),
                };
                let version = match attrs.get("version").map(String::as_str) {
                    None | Some("v1") => SlsaVersion::V1,
                    Some("v0.2") => SlsaVersion::V02,
                    Some(v) => {
                        return Err(invalid(format!("invalid provenance SLSA version: {v}")))
                    }
                };
                let flag_of = |k: &str| -> Result<bool, BuildError> {
                    match attrs.get(k) {
                        None => Ok(false),
                        Some(v) => parse_bool(v)
                            .ok_or_else(|| invalid(format!("failed to parse {k} flag \"{v}\""))),
                    }
                };
                self.provenance = Some(ProvenanceOptions {
                    max,
                    version,
                    builder_id: attrs.get("builder-id").cloned().unwrap_or_default(),
                    filename: attrs
                        .get("filename")
                        .cloned()
                        .unwrap_or_else(|| "provenance.json".to_string()),
                    reproducible: flag_of("reproducible")?,
                    inline_only: flag_of("inline-only")?,
                });
            }
            "sbom" => {
                if disabled {
                    self.sbom = None;
                    return Ok(());
                }
                for key in ["generator", "scan-context", "scan-stage"] {
                    if let Some(v) = attrs.get(key) {
                        self.notes.push(format!(
                            "{flag}: {key}={v} is not used: kiln makes the SBOM itself, from the final image's package databases"
                        ));
                    }
                }
                self.sbom = Some(SbomOptions {
                    filename: attrs
                        .get("filename")
                        .cloned()
                        .unwrap_or_else(|| "sbom.spdx.json".to_string()),
                });
            }
            other => {
                return Err(invalid(format!(
                    "unknown attestation type \"{other}\" (provenance or sbom)"
                )))
            }
        }
        Ok(())
    }
}

fn parse_bool(v: &str) -> Option<bool> {
    match v.to_ascii_lowercase().as_str() {
        "true" | "1" | "t" => Some(true),
        "false" | "0" | "f" => Some(false),
        _ => None,
    }
}

/// `k=v,k2=v2` (a key alone has an empty value, as BuildKit's parser gives it).
fn parse_attrs(spec: &str) -> Result<BTreeMap<String, String>, BuildError> {
    let mut out = BTreeMap::new();
    for field in spec.split(',').filter(|f| !f.is_empty()) {
        let (k, v) = field.split_once('=').unwrap_or((field, ""));
        out.insert(k.trim().to_string(), v.to_string());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_as_buildx_spells_them() {
        let mut a = AttestRequest::default();
        assert!(!a.any());
        a.set_provenance("true").unwrap();
        assert!(
            !a.provenance.as_ref().unwrap().max,
            "--provenance=true is mode=min"
        );
        a.set_provenance("mode=max").unwrap();
        let p = a.provenance.clone().unwrap();
        assert!(p.max);
        assert_eq!(
            (p.version, p.filename.as_str()),
            (SlsaVersion::V1, "provenance.json")
        );
        a.add_attest("type=provenance,mode=min,version=v0.2,builder-id=ci")
            .unwrap();
        let p = a.provenance.clone().unwrap();
        assert_eq!(
            (p.max, p.version, p.builder_id.as_str()),
            (false, SlsaVersion::V02, "ci")
        );
        a.set_provenance("false").unwrap();
        assert!(a.provenance.is_none());
        a.default_for_push(true);
        assert!(
            a.provenance.is_none(),
            "--provenance=false holds for a push"
        );
        let mut pushed = AttestRequest::default();
        pushed.default_for_push(false);
        assert!(
            pushed.provenance.is_none(),
            "nothing pushed, nothing attested"
        );
        pushed.default_for_push(true);
        assert!(
            pushed.provenance.as_ref().is_some_and(|p| !p.max),
            "a push gets mode=min"
        );
        a.set_sbom("true").unwrap();
        assert_eq!(a.sbom.as_ref().unwrap().filename, "sbom.spdx.json");
        a.add_attest("type=sbom,generator=docker/buildkit-syft-scanner")
            .unwrap();
        assert_eq!(a.notes.len(), 1);
        a.add_attest("type=sbom,disabled=true").unwrap();
        assert!(a.sbom.is_none());
        let e = a.add_attest("type=vex").unwrap_err().to_string();
        assert!(e.contains("unknown attestation type \"vex\""), "{e}");
        let e = a.set_provenance("mode=most").unwrap_err().to_string();
        assert!(e.contains("invalid mode \"most\""), "{e}");
        assert!(a.add_attest("mode=max").is_err(), "type= is required");
    }
}
