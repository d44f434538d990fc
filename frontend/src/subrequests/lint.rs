//! The lint subrequest's result (BuildKit's `frontend.lint`, what `docker buildx build --call=check` prints):
//! the check report as BuildKit's `lint.LintResults`, its JSON, and buildx's text for it.

use serde::Serialize;

use super::{base64_bytes, print_source, Location};
use crate::checks::catalogue::describe;
use crate::checks::CheckReport;

/// BuildKit's `lint.LintResults`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LintResults {
    /// The findings, by line.
    pub warnings: Vec<Warning>,
    /// The Dockerfile the locations point into.
    pub sources: Vec<SourceInfo>,
    /// Why the Dockerfile cannot be built, when it cannot (the first reason).
    #[serde(rename = "buildError", skip_serializing_if = "Option::is_none")]
    pub build_error: Option<BuildError>,
}

/// One finding: BuildKit's `lint.Warning`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Warning {
    /// The rule's name.
    #[serde(rename = "ruleName")]
    pub rule_name: String,
    /// The rule's description, from BuildKit's rule set.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub description: String,
    /// The rule's documentation page (none for a rule BuildKit gives none).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub url: String,
    /// What is wrong.
    pub detail: String,
    /// The instruction at fault.
    pub location: Location,
}

/// A source: BuildKit's `pb.SourceInfo`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SourceInfo {
    /// The Dockerfile's name.
    pub filename: String,
    /// Its bytes (base64 in JSON).
    #[serde(serialize_with = "base64_bytes")]
    pub data: Vec<u8>,
    /// Always `Dockerfile`.
    pub language: String,
}

/// BuildKit's `lint.BuildError`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BuildError {
    /// The error.
    pub message: String,
    /// Where, when the Dockerfile's text is at fault.
    pub location: Location,
}

impl LintResults {
    /// The results of `report` over the Dockerfile `filename`, whose bytes are `source`.
    pub fn new(report: &CheckReport, filename: &str, source: &[u8]) -> LintResults {
        let warnings = report
            .findings
            .iter()
            .map(|f| Warning {
                rule_name: f.rule.to_string(),
                description: describe(f.rule).map_or("", |r| r.description).to_string(),
                url: describe(f.rule)
                    .and_then(|r| r.url)
                    .unwrap_or("")
                    .to_string(),
                detail: f.message.clone(),
                location: Location::of(f.span),
            })
            .collect();
        let build_error = report.errors.first().map(|e| BuildError {
            message: e.message.clone(),
            location: match e.span {
                Some(span) => Location::of(span),
                None => Location {
                    source_index: 0,
                    ranges: Vec::new(),
                },
            },
        });
        LintResults {
            warnings,
            sources: vec![SourceInfo {
                filename: filename.to_string(),
                data: source.to_vec(),
                language: "Dockerfile".to_string(),
            }],
            build_error,
        }
    }

    /// BuildKit's `result.statuscode`: 1 when anything was found or the Dockerfile cannot be built.
    pub fn status(&self) -> i32 {
        i32::from(!self.warnings.is_empty() || self.build_error.is_some())
    }

    /// The warnings as buildx prints them: `Check complete, N warnings have been found!`, then for each a blank
    /// line, `WARNING: Rule`, its detail and the Dockerfile lines around it (BuildKit's `errdefs.Source.Print`);
    /// `Check complete, no warnings found.` when there are none and the Dockerfile builds.
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        match self.warnings.len() {
            0 => {}
            1 => out.push_str("Check complete, 1 warning has been found!\n"),
            n => out.push_str(&format!("Check complete, {n} warnings have been found!\n")),
        }
        let source = &self.sources[0];
        for w in &self.warnings {
            out.push_str(&format!("\nWARNING: {}", w.rule_name));
            if !w.url.is_empty() {
                out.push_str(&format!(" - {}", w.url));
            }
            out.push_str(&format!("\n{}\n", w.detail));
            out.push_str(&print_source(&source.filename, &source.data, &w.location));
        }
        if self.warnings.is_empty() && self.build_error.is_none() {
            out.push_str("Check complete, no warnings found.\n");
        }
        out
    }

    /// The build error as buildx prints it after the warnings: the message, then the lines around it.
    pub fn error_text(&self) -> Option<String> {
        let e = self.build_error.as_ref()?;
        let source = &self.sources[0];
        let mut out = format!("{}\n", e.message);
        out.push_str(&print_source(&source.filename, &source.data, &e.location));
        Some(out)
    }
}
