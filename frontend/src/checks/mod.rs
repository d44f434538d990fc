//! BuildKit's build checks (`kiln check`, `kiln build --check`): rules that flag Dockerfiles which build but
//! probably do not do what their author meant. Text-level rules run over the nodes (and NoEmptyContinuation and
//! InvalidDefinitionDescription over the text around them); UndefinedVar, UndefinedArgInFrom, WorkdirRelativePath,
//! CopyIgnoredFile, ExposeProtoCasing, ExposeInvalidFormat and InvalidBaseImagePlatform fire while every stage is
//! lowered, where variables have values (the last only where a resolver answered for the base image).

pub mod catalogue;
mod config;
mod rules;
mod text;

pub use crate::finding::Finding;
pub use config::CheckConfig;
pub(crate) use text::preceding_comments;

use crate::error::FrontendError;
use crate::instructions::parse_dockerfile_for_checks;
use crate::lower::{lower_all_for_checks, BuildOpts, ImageResolver, NoResolver};
use crate::parser::Dockerfile;

/// The rules kiln implements, with BuildKit's names.
pub const RULES: [&str; 22] = [
    "JSONArgsRecommended",
    "FromAsCasing",
    "StageNameCasing",
    "NoEmptyContinuation",
    "DuplicateStageName",
    "ReservedStageName",
    "UndefinedVar",
    "UndefinedArgInFrom",
    "InvalidDefaultArgInFrom",
    "MaintainerDeprecated",
    "ConsistentInstructionCasing",
    "MultipleInstructionsDisallowed",
    "LegacyKeyValueFormat",
    "WorkdirRelativePath",
    "SecretsUsedInArgOrEnv",
    "CopyIgnoredFile",
    "FromPlatformFlagConstDisallowed",
    "RedundantTargetPlatform",
    "InvalidDefinitionDescription",
    "ExposeProtoCasing",
    "ExposeInvalidFormat",
    "InvalidBaseImagePlatform",
];

/// Rules BuildKit marks experimental: they run only when the check directive names them under
/// `experimental=` (or says `experimental=all`).
pub const EXPERIMENTAL_RULES: [&str; 1] = ["InvalidDefinitionDescription"];

/// What a check run found, and how the Dockerfile wants it treated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckReport {
    /// Findings of enabled rules, in line order.
    pub findings: Vec<Finding>,
    /// The `# check=` directive.
    pub config: CheckConfig,
    /// Why the Dockerfile cannot be built: a repeated stage name, an instruction that does not parse, stages that
    /// fail to lower.
    pub errors: Vec<FrontendError>,
}

/// Runs every rule over `df` as it would be built with `opts`. A Dockerfile that cannot be built still gets
/// every finding that can be made, as BuildKit's lint reports its warnings beside the build error: a repeated
/// stage name is one of the `errors`, and the stages are still lowered; an instruction that does not parse
/// leaves the text-level findings.
pub fn run_checks(df: &Dockerfile, opts: &BuildOpts) -> Result<CheckReport, FrontendError> {
    run_checks_with(df, opts, &NoResolver)
}

/// [`run_checks`] with base images resolved by `resolver`, which InvalidBaseImagePlatform needs: it compares
/// the platform of each base image's config with the platform the build asked for.
pub fn run_checks_with(
    df: &Dockerfile,
    opts: &BuildOpts,
    resolver: &dyn ImageResolver,
) -> Result<CheckReport, FrontendError> {
    // A BUILDKIT_DOCKERFILE_CHECK build arg replaces the Dockerfile's directive, as BuildKit's dockerui reads it.
    let config = match opts.build_args.get("BUILDKIT_DOCKERFILE_CHECK") {
        Some(arg) => CheckConfig::parse(Some(arg)).map_err(|e| {
            FrontendError::request(format!(
                "build arg BUILDKIT_DOCKERFILE_CHECK: {}",
                e.message
            ))
        })?,
        None => CheckConfig::parse(df.directives.check.as_deref())?,
    };
    let mut findings = text::empty_continuations(df);
    findings.extend(rules::static_findings(&df.children));
    let comments = text::preceding_comments(df);
    findings.extend(text::invalid_definition_descriptions(df, &comments));
    let mut errors = Vec::new();
    match parse_dockerfile_for_checks(df) {
        Ok((stages, duplicates)) => {
            errors = duplicates;
            match lower_all_for_checks(df, &stages, opts, resolver) {
                Ok((lowering_findings, lowering_errors)) => {
                    findings.extend(lowering_findings);
                    for e in lowering_errors {
                        if !errors.contains(&e) {
                            errors.push(e);
                        }
                    }
                }
                Err(e) => errors.push(e),
            }
            findings.extend(invalid_default_arg_in_from(df, &stages, opts));
        }
        Err(e) => errors.push(e),
    }
    let local = text::instruction_configs(&config, &comments);
    let by_line: std::collections::HashMap<usize, usize> = df
        .children
        .iter()
        .enumerate()
        .map(|(i, n)| (n.span.start_line, i))
        .collect();
    findings.retain(|f| {
        if DOCUMENT_RULES.contains(&f.rule) {
            return config.enabled(f.rule);
        }
        match governing_instruction(df, &by_line, f).and_then(|i| local[i].as_ref()) {
            Some(merged) => merged.enabled(f.rule),
            None => config.enabled(f.rule),
        }
    });
    findings.sort_by(|a, b| (a.span.start_line, a.rule).cmp(&(b.span.start_line, b.rule)));
    findings.dedup();
    Ok(CheckReport {
        findings,
        config,
        errors,
    })
}

/// Rules BuildKit runs with the Dockerfile's check configuration alone, whatever `# check=` comment is above the
/// instruction at fault; every other rule honours such a comment.
const DOCUMENT_RULES: [&str; 6] = [
    "NoEmptyContinuation",
    "DuplicateStageName",
    "ReservedStageName",
    "ConsistentInstructionCasing",
    "InvalidDefaultArgInFrom",
    "InvalidBaseImagePlatform",
];

/// The index of the instruction whose `# check=` comment governs finding `f`: the one at fault, except for
/// MultipleInstructionsDisallowed, which BuildKit reports at an overridden instruction while linting the next
/// instruction of that kind.
fn governing_instruction(
    df: &Dockerfile,
    by_line: &std::collections::HashMap<usize, usize>,
    f: &Finding,
) -> Option<usize> {
    let at = *by_line.get(&f.span.start_line)?;
    if f.rule != "MultipleInstructionsDisallowed" {
        return Some(at);
    }
    let keyword = &df.children[at].keyword;
    (at + 1..df.children.len()).find(|&i| &df.children[i].keyword == keyword)
}

/// InvalidDefaultArgInFrom: with no build args given, a FROM whose default ARG values expand to an empty or
/// invalid image name.
fn invalid_default_arg_in_from(
    df: &Dockerfile,
    stages: &crate::instructions::Stages,
    _opts: &BuildOpts,
) -> Vec<Finding> {
    let mut out = Vec::new();
    let lexer = crate::shell::Lexer::new(df.directives.escape);
    let mut scope = crate::lower::Scope::default();
    for inst in &stages.meta_args {
        if let crate::instructions::Command::Arg(decls) = &inst.command {
            for d in decls {
                if let Some(v) = &d.default {
                    if let Ok(e) = lexer.process_word(v, &scope) {
                        scope.set(&d.name, &e);
                    }
                }
            }
        }
    }
    for stage in &stages.stages {
        let base = &stage.from.base;
        if !base.contains('$') {
            continue;
        }
        let Ok(expanded) = lexer.process_word(base, &scope) else {
            continue;
        };
        // FROM compares its word to the (lower-cased) stage names exactly, as lowering does: `FROM $B` with
        // B=Foo names the image Foo, an invalid one, even after `AS Foo`.
        let is_stage = stages.stages[..stage.index]
            .iter()
            .any(|s| s.name.as_deref() == Some(expanded.as_str()));
        if expanded.is_empty()
            || (!is_stage && crate::lower::normalize_reference(&expanded).is_err())
        {
            out.push(Finding::new(
                "InvalidDefaultArgInFrom",
                stage.from_node.span,
                format!("Default value for ARG {base} results in empty or invalid base image name"),
            ));
        }
    }
    out
}

/// The SecretsUsedInArgOrEnv rule's test: a name with a word such as `password`, `token` or `secret` between
/// underscores (or at either end), unless a word such as `public`, `file` or `version` is there too, as BuildKit
/// matches it.
pub fn looks_secret(name: &str) -> bool {
    const WORDS: [&str; 10] = [
        "apikey",
        "auth",
        "credential",
        "credentials",
        "key",
        "password",
        "pword",
        "passwd",
        "secret",
        "token",
    ];
    const ALLOWED: [&str; 3] = ["public", "file", "version"];
    let lower = name.to_ascii_lowercase();
    let parts: Vec<&str> = lower.split('_').collect();
    if parts.iter().any(|p| ALLOWED.contains(p)) {
        return false;
    }
    parts.iter().any(|p| WORDS.contains(p))
}
