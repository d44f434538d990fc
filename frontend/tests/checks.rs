//! Build checks: each rule fires on a Dockerfile that should trip it, at the right line, and stays quiet on one
//! that should not.

use frontend::checks::run_checks;
use frontend::BuildOpts;

fn findings(src: &str) -> Vec<(String, usize)> {
    findings_with(src, &BuildOpts::default())
}

fn findings_with(src: &str, opts: &BuildOpts) -> Vec<(String, usize)> {
    let df = frontend::parser::parse(src).expect("parses");
    run_checks(&df, opts)
        .unwrap_or_else(|e| panic!("checks failed: {e}"))
        .findings
        .into_iter()
        .map(|f| (f.rule.to_string(), f.span.start_line))
        .collect()
}

fn has(f: &[(String, usize)], rule: &str, line: usize) -> bool {
    f.iter().any(|(r, l)| r == rule && *l == line)
}

#[test]
fn every_rule_fires_where_it_should() {
    let cases: &[(&str, &str, usize)] = &[
        ("FROM busybox\nCMD echo hi\n", "JSONArgsRecommended", 2),
        (
            "FROM busybox\nENTRYPOINT run.sh\n",
            "JSONArgsRecommended",
            2,
        ),
        ("FROM busybox as build\n", "FromAsCasing", 1),
        ("from busybox AS build\n", "FromAsCasing", 1),
        ("FROM busybox AS Build\n", "StageNameCasing", 1),
        (
            "FROM busybox AS a\nFROM busybox AS a\n",
            "DuplicateStageName",
            2,
        ),
        ("FROM busybox AS scratch\n", "ReservedStageName", 1),
        ("FROM busybox\nCOPY $NOPE /x\n", "UndefinedVar", 2),
        ("FROM busybox${TAG}\n", "UndefinedArgInFrom", 1),
        (
            "ARG TAG=\nFROM busybox:${TAG}\n",
            "InvalidDefaultArgInFrom",
            2,
        ),
        ("ARG IMG=\nFROM ${IMG}\n", "InvalidDefaultArgInFrom", 2),
        (
            "ARG IMG=Base\nFROM busybox AS Base\nFROM ${IMG}\n",
            "InvalidDefaultArgInFrom",
            3,
        ),
        ("FROM busybox\nMAINTAINER me\n", "MaintainerDeprecated", 2),
        (
            "FROM busybox\nrun true\nRUN true\nRUN false\n",
            "ConsistentInstructionCasing",
            2,
        ),
        (
            "FROM busybox\nCMD [\"a\"]\nCMD [\"b\"]\n",
            "MultipleInstructionsDisallowed",
            2,
        ),
        (
            "FROM busybox\nHEALTHCHECK NONE\nHEALTHCHECK NONE\n",
            "MultipleInstructionsDisallowed",
            2,
        ),
        ("FROM busybox\nENV A b\n", "LegacyKeyValueFormat", 2),
        ("FROM busybox\nLABEL a b\n", "LegacyKeyValueFormat", 2),
        ("FROM busybox\nWORKDIR app\n", "WorkdirRelativePath", 2),
        (
            "FROM busybox\nARG API_TOKEN=x\n",
            "SecretsUsedInArgOrEnv",
            2,
        ),
        (
            "FROM busybox\nENV DB_PASSWORD=x\n",
            "SecretsUsedInArgOrEnv",
            2,
        ),
        (
            "FROM --platform=linux/amd64 busybox\n",
            "FromPlatformFlagConstDisallowed",
            1,
        ),
        (
            "FROM --platform=$TARGETPLATFORM busybox\n",
            "RedundantTargetPlatform",
            1,
        ),
    ];
    for (src, rule, line) in cases {
        let f = findings(src);
        assert!(
            has(&f, rule, *line),
            "{rule} at line {line} missing for {src:?}: {f:?}"
        );
    }
}

#[test]
fn quiet_on_good_dockerfiles() {
    let src = "\
# syntax=docker/dockerfile:1
ARG BASE=busybox
FROM ${BASE} AS build
ARG PUBLIC_KEY_URL=x
ENV A=b
WORKDIR /app
WORKDIR sub
COPY . .
RUN echo $A $PUBLIC_KEY_URL
FROM --platform=$BUILDPLATFORM busybox AS tools
FROM build
CMD [\"true\"]
";
    assert_eq!(findings(src), Vec::<(String, usize)>::new());
}

#[test]
fn copy_ignored_file_uses_dockerignore() {
    let opts = BuildOpts {
        ignore_patterns: vec!["secrets/**".to_string(), "*.log".to_string()],
        ..BuildOpts::default()
    };
    let f = findings_with(
        "FROM busybox\nCOPY secrets/key /k\nCOPY app.log /l\nCOPY src /src\n",
        &opts,
    );
    assert!(has(&f, "CopyIgnoredFile", 2), "{f:?}");
    assert!(has(&f, "CopyIgnoredFile", 3), "{f:?}");
    assert!(!has(&f, "CopyIgnoredFile", 4), "{f:?}");
}

#[test]
fn copy_ignored_file_is_not_checked_when_dockerignore_has_exceptions() {
    // BuildKit's validateCopySourcePath: an exception may re-include something below an excluded source.
    let opts = BuildOpts {
        ignore_patterns: vec![
            "build/".to_string(),
            "!build/keep/".to_string(),
            "*.log".to_string(),
        ],
        ..BuildOpts::default()
    };
    let f = findings_with("FROM busybox\nCOPY build /b\nCOPY app.log /l\n", &opts);
    assert!(!has(&f, "CopyIgnoredFile", 2), "{f:?}");
    assert!(!has(&f, "CopyIgnoredFile", 3), "{f:?}");
}

#[test]
fn check_directive_skips_and_errors() {
    let df = frontend::parser::parse(
        "# check=skip=MaintainerDeprecated;error=true\nFROM busybox\nMAINTAINER x\nCMD a\n",
    )
    .expect("parses");
    let report = run_checks(&df, &BuildOpts::default()).expect("checks run");
    assert!(report.config.error);
    let rules: Vec<&str> = report.findings.iter().map(|f| f.rule).collect();
    assert_eq!(rules, ["JSONArgsRecommended"]);
    let df =
        frontend::parser::parse("# check=skip=all\nFROM busybox\nMAINTAINER x\n").expect("parses");
    assert!(run_checks(&df, &BuildOpts::default())
        .expect("checks")
        .findings
        .is_empty());
}

/// (rule, line, message) of every finding, and the errors' messages.
fn report(src: &str) -> (Vec<(String, usize, String)>, Vec<String>) {
    report_with(src, &BuildOpts::default(), &frontend::NoResolver)
}

fn report_with(
    src: &str,
    opts: &BuildOpts,
    resolver: &dyn frontend::ImageResolver,
) -> (Vec<(String, usize, String)>, Vec<String>) {
    let df = frontend::parser::parse(src).expect("parses");
    let r = frontend::checks::run_checks_with(&df, opts, resolver)
        .unwrap_or_else(|e| panic!("checks failed: {e}"));
    (
        r.findings
            .into_iter()
            .map(|f| (f.rule.to_string(), f.span.start_line, f.message))
            .collect(),
        r.errors.into_iter().map(|e| e.message).collect(),
    )
}

/// A finding as [`report`] lists it: rule, line, message.
type Found = (String, usize, String);

fn finding(rule: &str, line: usize, message: &str) -> Found {
    (rule.to_string(), line, message.to_string())
}

/// BuildKit's testNoEmptyContinuation: one finding, at the last line of the instruction continued over an
/// empty line.
#[test]
fn no_empty_continuation() {
    let (f, errors) = report(
        "\nFROM scratch\n# warning: empty continuation line\nCOPY Dockerfile \\\n\n.\nCOPY Dockerfile \\\n.\n",
    );
    assert_eq!(
        f,
        [finding("NoEmptyContinuation", 6, "Empty continuation line")]
    );
    assert!(errors.is_empty(), "{errors:?}");
}

/// BuildKit's testExposeProtoCasing.
#[test]
fn expose_proto_casing() {
    let (f, errors) = report("\nFROM scratch\nEXPOSE 80/TcP 8080/TCP 8080/udp\n");
    assert_eq!(
        f,
        [
            finding(
                "ExposeProtoCasing",
                3,
                "Defined protocol '80/TcP' in EXPOSE instruction should be lowercase"
            ),
            finding(
                "ExposeProtoCasing",
                3,
                "Defined protocol '8080/TCP' in EXPOSE instruction should be lowercase"
            ),
        ]
    );
    assert!(errors.is_empty(), "{errors:?}");
}

/// BuildKit's testExposeInvalidFormat: IP addresses and host ports are flagged, and the spec still builds
/// (only the container port is exposed).
#[test]
fn expose_invalid_format() {
    let src = "\nFROM scratch\nEXPOSE 127.0.0.1:80:80 [::1]:8080:8080 5000:5000 8000\n";
    let (mut f, errors) = report(src);
    f.sort();
    let msg = |p: &str| {
        format!(
            "EXPOSE instruction should not define an IP address or host-port mapping, found '{p}'"
        )
    };
    let mut want = vec![
        finding("ExposeInvalidFormat", 3, &msg("127.0.0.1:80:80")),
        finding("ExposeInvalidFormat", 3, &msg("[::1]:8080:8080")),
        finding("ExposeInvalidFormat", 3, &msg("5000:5000")),
    ];
    want.sort();
    assert_eq!(f, want);
    assert!(errors.is_empty(), "{errors:?}");
    let df = frontend::parser::parse(src).expect("parses");
    let l = frontend::lower(&df, &BuildOpts::default(), &frontend::NoResolver).expect("lowers");
    let mut exposed: Vec<&String> = l.target.image.config.exposed_ports.keys().collect();
    exposed.sort();
    assert_eq!(exposed, ["5000/tcp", "80/tcp", "8000/tcp", "8080/tcp"]);
}

/// BuildKit's testDefinitionDescription: the experimental rule runs only when the check directive names it
/// (`skip=all` does not turn it off), and a comment right above a named FROM or an ARG must start with its name.
#[test]
fn invalid_definition_description() {
    let good = "# check=skip=all;experimental=InvalidDefinitionDescription
# foo this is the foo
ARG foo=bar

# base this is the base image
FROM scratch AS base

# version this is the version number
ARG version=latest

# baz this is the baz
ARG foo=baz bar=qux baz=quux
#
ARG bit=bat

# comment for something other than ARG or FROM
COPY Dockerfile .
";
    assert_eq!(report(good).0, []);
    let bad = "# check=experimental=InvalidDefinitionDescription
# bar this is the bar
ARG foo=bar
# BasE this is the BasE image
FROM scratch AS base
# definitely a bad comment
ARG version=latest
# definitely a bad comment
ARG foo=baz bar=qux baz=quux
";
    let rule = "InvalidDefinitionDescription";
    assert_eq!(
        report(bad).0,
        [
            finding(
                rule,
                3,
                "Comment for ARG should follow the format: `# foo <description>`"
            ),
            finding(
                rule,
                5,
                "Comment for FROM should follow the format: `# base <description>`"
            ),
            finding(
                rule,
                7,
                "Comment for ARG should follow the format: `# version <description>`"
            ),
            finding(
                rule,
                9,
                "Comment for ARG should follow the format: `# <arg_key> <description>`"
            ),
        ]
    );
    // Without the directive's experimental= the rule does not run.
    let plain = bad.replacen("# check=experimental=InvalidDefinitionDescription", "", 1);
    assert_eq!(report(&plain).0, []);
    let all = bad.replacen(
        "experimental=InvalidDefinitionDescription",
        "experimental=all",
        1,
    );
    assert_eq!(report(&all).0.len(), 4);
}

/// BuildKit's testDuplicateStageName: the repeat is flagged with BuildKit's message, and distinct names are not.
#[test]
fn duplicate_stage_name() {
    let (f, _) = report("\nFROM scratch AS b\nFROM scratch AS b\n");
    assert_eq!(
        f,
        [finding(
            "DuplicateStageName",
            3,
            "Duplicate stage name \"b\", stage names should be unique"
        )]
    );
    assert_eq!(report("\nFROM scratch AS b1\nFROM scratch AS b2\n").0, []);
}

/// A repeated stage name (which kiln's build refuses) is an error of the report, and does not hide the findings
/// of the rules that need lowering, as BuildKit's lint goes on to report every warning.
#[test]
fn duplicate_stage_name_is_an_error_beside_every_other_finding() {
    let (f, errors) = report(
        "FROM busybox AS a\nFROM busybox AS a\nWORKDIR app\nFROM busybox${TAG}\nCOPY $NOPE /x\n",
    );
    for (rule, line) in [
        ("DuplicateStageName", 2),
        ("WorkdirRelativePath", 3),
        ("UndefinedArgInFrom", 4),
        ("UndefinedVar", 5),
    ] {
        assert!(
            f.iter().any(|(r, l, _)| r == rule && *l == line),
            "{rule} at line {line} missing: {f:?}"
        );
    }
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(errors[0].contains("duplicate stage name"), "{errors:?}");
}

/// BuildKit's testWarningsBeforeError: an instruction that does not parse is an error, and the findings of the
/// lines before it are still reported.
#[test]
fn findings_before_an_unknown_instruction_are_reported() {
    let (f, errors) = report("\nFROM scratch AS BadStageName\nMAINTAINER me@example.org\nBADCMD\n");
    let rules: Vec<(&str, usize)> = f.iter().map(|(r, l, _)| (r.as_str(), *l)).collect();
    assert_eq!(rules, [("StageNameCasing", 2), ("MaintainerDeprecated", 3)]);
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(
        errors[0].contains("unknown instruction: BADCMD"),
        "{errors:?}"
    );
}

/// A resolver whose every image is linux/arm64.
struct Arm64Only;

impl frontend::ImageResolver for Arm64Only {
    fn resolve(
        &self,
        _reference: &str,
        _platform: &oci::Platform,
    ) -> Result<Option<frontend::ResolvedImage>, frontend::ResolveError> {
        let image = oci::Image {
            os: "linux".to_string(),
            architecture: "arm64".to_string(),
            ..oci::Image::default()
        };
        Ok(Some(frontend::ResolvedImage {
            digest: None,
            image,
        }))
    }
}

/// BuildKit's testBaseImagePlatformMismatch: a base image whose config is for another platform than the build's.
#[test]
fn invalid_base_image_platform() {
    let src = "\nFROM registry.example/base:latest\nENV foo=bar\n";
    let amd64 = BuildOpts {
        target_platform: Some("linux/amd64".parse().expect("platform")),
        ..BuildOpts::default()
    };
    let (f, errors) = report_with(src, &amd64, &Arm64Only);
    assert_eq!(
        f,
        [finding(
            "InvalidBaseImagePlatform",
            2,
            "Base image registry.example/base:latest was pulled with platform \"linux/arm64\", expected \"linux/amd64\" for current build"
        )]
    );
    assert!(errors.is_empty(), "{errors:?}");
    let arm64 = BuildOpts {
        target_platform: Some("linux/arm64".parse().expect("platform")),
        ..BuildOpts::default()
    };
    assert_eq!(report_with(src, &arm64, &Arm64Only).0, []);
    // Without a resolver (as `kiln check` runs) nothing is known of the image.
    assert_eq!(report_with(src, &amd64, &frontend::NoResolver).0, []);
}

/// BuildKit's testReservedStageName, with its messages.
#[test]
fn reserved_stage_name() {
    let (f, _) = report("\nFROM scratch AS scratch\nFROM scratch AS context\n");
    assert_eq!(
        f,
        [
            finding(
                "ReservedStageName",
                2,
                "Stage name should not use the same name as reserved stage \"scratch\""
            ),
            finding(
                "ReservedStageName",
                3,
                "Stage name should not use the same name as reserved stage \"context\""
            ),
        ]
    );
    assert_eq!(report("\nFROM scratch\nFROM scratch AS a\n").0, []);
}

/// BuildKit's testSecretsUsedInArgOrEnv, up to its per-instruction check comments (ported in
/// `check_comments_configure_one_instruction`): `public`, `file` and `version` words make a name no secret.
#[test]
fn secrets_used_in_arg_or_env() {
    let src = "# check=skip=InvalidDefinitionDescription

FROM scratch
ARG SECRET_PASSPHRASE
ENV SUPER_Secret=foo
ENV password=bar secret=baz
ARG super_duper_secret_token=foo auth=bar
ENV apikey=bar sunflower=foo
ENV git_key=
ENV PUBLIC_KEY=
ARG public_token
ARG SECRET_PASSPHRASE_FILE
ENV password_file=bar secret_File=baz
ARG AUTH_MODULE_VERSION
";
    let (mut f, errors) = report(src);
    f.sort();
    let msg = |kw: &str, name: &str| {
        format!("Do not use ARG or ENV instructions for sensitive data ({kw} \"{name}\")")
    };
    let mut want = vec![
        finding("SecretsUsedInArgOrEnv", 4, &msg("ARG", "SECRET_PASSPHRASE")),
        finding("SecretsUsedInArgOrEnv", 5, &msg("ENV", "SUPER_Secret")),
        finding("SecretsUsedInArgOrEnv", 6, &msg("ENV", "password")),
        finding("SecretsUsedInArgOrEnv", 6, &msg("ENV", "secret")),
        finding("SecretsUsedInArgOrEnv", 7, &msg("ARG", "auth")),
        finding(
            "SecretsUsedInArgOrEnv",
            7,
            &msg("ARG", "super_duper_secret_token"),
        ),
        finding("SecretsUsedInArgOrEnv", 8, &msg("ENV", "apikey")),
        finding("SecretsUsedInArgOrEnv", 9, &msg("ENV", "git_key")),
    ];
    want.sort();
    assert_eq!(f, want);
    assert!(errors.is_empty(), "{errors:?}");
}

/// BuildKit's testSecretsUsedInArgOrEnv, its per-instruction `# check=` comments included: such a comment
/// configures the checks of the instruction below it only.
#[test]
fn check_comments_configure_one_instruction() {
    let src = "# check=skip=InvalidDefinitionDescription

FROM scratch
ARG password_file
# check=skip=SecretsUsedInArgOrEnv // allow secret in environment
ENV password=bar
# check=skip=SecretsUsedInArgOrEnv // allow secret in arg
ARG password
# check=skip=all // is local to only this instruction
ENV alternate_password=bar
# check=skip=all // is local to only this instruction
ARG alternate_password
ENV api_token=x
";
    let (f, errors) = report(src);
    assert_eq!(
        f,
        [finding(
            "SecretsUsedInArgOrEnv",
            13,
            "Do not use ARG or ENV instructions for sensitive data (ENV \"api_token\")"
        )]
    );
    assert!(errors.is_empty(), "{errors:?}");
    // MultipleInstructionsDisallowed is reported at the overridden CMD but follows the comment of the CMD that
    // overrides it; rules of the whole Dockerfile (ConsistentInstructionCasing) ignore such comments.
    let src =
        "FROM scratch\nCMD [\"a\"]\n# check=skip=MultipleInstructionsDisallowed\nCMD [\"b\"]\n";
    assert_eq!(report(src).0, []);
    let src =
        "FROM scratch\n# check=skip=MultipleInstructionsDisallowed\nCMD [\"a\"]\nCMD [\"b\"]\n";
    assert_eq!(
        report(src).0,
        [finding(
            "MultipleInstructionsDisallowed",
            3,
            "Multiple CMD instructions should not be used in the same stage because only the last one will be used"
        )]
    );
    let src = "FROM scratch\nRUN true\n# check=skip=all\nrun true\n";
    let rules: Vec<String> = report(src).0.into_iter().map(|f| f.0).collect();
    assert_eq!(rules, ["ConsistentInstructionCasing"]);
}

/// BuildKit's testRuleCheckOption: the directive's skip= and error=, and a BUILDKIT_DOCKERFILE_CHECK build arg
/// that replaces the directive.
#[test]
fn check_options_and_the_build_arg_that_replaces_them() {
    let body = "FROM scratch as base\ncopy Dockerfile .\n";
    let run = |directive: &str, arg: Option<&str>| {
        let mut opts = BuildOpts::default();
        if let Some(a) = arg {
            opts.build_args
                .insert("BUILDKIT_DOCKERFILE_CHECK".to_string(), a.to_string());
        }
        let df = frontend::parser::parse(&format!("{directive}\n{body}")).expect("parses");
        let r = run_checks(&df, &opts).expect("checks run");
        let rules: Vec<&str> = r.findings.iter().map(|f| f.rule).collect();
        (rules, r.config.error)
    };
    assert_eq!(run("#check=skip=all", None), (vec![], false));
    assert_eq!(run("#check=skip=all;error=true", None), (vec![], true));
    assert_eq!(
        run("#check=skip=ConsistentInstructionCasing,FromAsCasing", None),
        (vec![], false)
    );
    assert_eq!(
        run("#check=skip=ConsistentInstructionCasing;error=true", None),
        (vec!["FromAsCasing"], true)
    );
    assert_eq!(
        run(
            "#check=skip=all",
            Some("skip=ConsistentInstructionCasing;error=true")
        ),
        (vec!["FromAsCasing"], true)
    );
    assert_eq!(run("#check=error=true", Some("skip=all")), (vec![], false));
    let df = frontend::parser::parse(body).expect("parses");
    let mut opts = BuildOpts::default();
    opts.build_args
        .insert("BUILDKIT_DOCKERFILE_CHECK".to_string(), "bogus".to_string());
    assert!(run_checks(&df, &opts).is_err());
}

/// BuildKit's testUndeclaredArg and testUnmatchedVars: UndefinedArgInFrom and UndefinedVar suggest a near name.
#[test]
fn undefined_names_suggest_a_near_one() {
    let messages = |src: &str, rule: &str| -> Vec<String> {
        report(src)
            .0
            .into_iter()
            .filter(|f| f.0 == rule)
            .map(|f| f.2)
            .collect()
    };
    assert_eq!(
        messages(
            "\nFROM --platform=$BULIDPLATFORM scratch\nCOPY Dockerfile .\n",
            "UndefinedArgInFrom"
        ),
        ["FROM argument 'BULIDPLATFORM' is not declared (did you mean BUILDPLATFORM?)"]
    );
    assert_eq!(
        messages(
            "\nARG MY_OS=linux\nARG MY_ARCH=amd64\nFROM --platform=linux/${MYARCH} busybox\nCOPY Dockerfile .\n",
            "UndefinedArgInFrom"
        ),
        ["FROM argument 'MYARCH' is not declared (did you mean MY_ARCH?)"]
    );
    assert_eq!(
        messages(
            "\nARG tag=latest\nFROM busybox:${tag}${version} AS b\nCOPY Dockerfile .\n",
            "UndefinedArgInFrom"
        ),
        ["FROM argument 'version' is not declared"]
    );
    assert_eq!(
        messages(
            "\nFROM alpine\nARG DIR_BINARIES=binaries/\nARG DIR_ASSETS=assets/\nARG DIR_CONFIG=config/\nCOPY $DIR_ASSET .\n",
            "UndefinedVar"
        ),
        ["Usage of undefined variable '$DIR_ASSET' (did you mean $DIR_ASSETS?)"]
    );
    assert_eq!(
        messages(
            "\nFROM alpine\nCOPY $foo .\nARG foo=bar\nRUN echo $foo\n",
            "UndefinedVar"
        ),
        ["Usage of undefined variable '$foo'"]
    );
}

/// BuildKit's testCopyIgnoredFiles and testCopyIgnoredFileContextRoot: ADD says Add, the source is shown cleaned,
/// and the context root is flagged only when a pattern excludes everything.
#[test]
fn copy_ignored_file_messages_and_the_context_root() {
    let with = |patterns: &[&str], src: &str| {
        let opts = BuildOpts {
            ignore_patterns: patterns.iter().map(|p| p.to_string()).collect(),
            ..BuildOpts::default()
        };
        report_with(src, &opts, &frontend::NoResolver).0
    };
    assert_eq!(
        with(
            &["Dockerfile"],
            "\nFROM scratch\nCOPY ./Dockerfile .\nADD Dockerfile /windy\n"
        ),
        [
            finding(
                "CopyIgnoredFile",
                3,
                "Attempting to Copy file \"Dockerfile\" that is excluded by .dockerignore"
            ),
            finding(
                "CopyIgnoredFile",
                4,
                "Attempting to Add file \"Dockerfile\" that is excluded by .dockerignore"
            ),
        ]
    );
    assert_eq!(
        with(
            &["foobar"],
            "\nFROM scratch AS base\nCOPY Dockerfile /foobar\nADD Dockerfile /windy\n\nFROM base\nCOPY --from=base /foobar /Dockerfile\n"
        ),
        []
    );
    assert_eq!(
        with(
            &["**", "!Dockerfile"],
            "\nFROM scratch\nCOPY ./Dockerfile .\n"
        ),
        []
    );
    assert_eq!(
        with(&["**", "!Dockerfile"], "\nFROM scratch\nCOPY . .\n"),
        []
    );
    assert_eq!(with(&[".*"], "\nFROM scratch\nCOPY . .\n"), []);
    assert_eq!(
        with(&["*"], "\nFROM scratch\nCOPY . .\n"),
        [finding(
            "CopyIgnoredFile",
            3,
            "Attempting to Copy file \".\" that is excluded by .dockerignore"
        )]
    );
}

/// BuildKit's testJSONArgsRecommended: no finding under a SHELL of the stage or of the stage it is built on.
#[test]
fn json_args_recommended_unless_a_shell_is_set() {
    let msg = |kw: &str| {
        format!("JSON arguments recommended for {kw} to prevent unintended behavior related to OS signals")
    };
    assert_eq!(
        report("\nFROM scratch\nCMD mycommand\n").0,
        [finding("JSONArgsRecommended", 3, &msg("CMD"))]
    );
    assert_eq!(
        report("\nFROM scratch\nENTRYPOINT mycommand\n").0,
        [finding("JSONArgsRecommended", 3, &msg("ENTRYPOINT"))]
    );
    for kw in ["CMD", "ENTRYPOINT"] {
        let own = format!("\nFROM scratch\nSHELL [\"/usr/bin/customshell\"]\n{kw} mycommand\n");
        assert_eq!(report(&own).0, [], "{own}");
        let inherited = format!(
            "\nFROM scratch AS base\nSHELL [\"/usr/bin/customshell\"]\n\nFROM base\n{kw} mycommand\n"
        );
        assert_eq!(report(&inherited).0, [], "{inherited}");
        let other = format!(
            "\nFROM scratch AS base\nSHELL [\"/usr/bin/customshell\"]\n\nFROM scratch\n{kw} mycommand\n"
        );
        assert_eq!(
            report(&other).0,
            [finding("JSONArgsRecommended", 6, &msg(kw))]
        );
    }
}

/// BuildKit's testFromPlatformFlagConstDisallowed: not reported when the stage's name names the platform's OS or
/// architecture.
#[test]
fn from_platform_flag_const_disallowed_unless_the_stage_names_it() {
    assert_eq!(
        report("\nFROM --platform=linux/amd64 scratch\n").0,
        [finding(
            "FromPlatformFlagConstDisallowed",
            2,
            "FROM --platform flag should not use constant value \"linux/amd64\""
        )]
    );
    assert_eq!(
        report("\nFROM --platform=linux/amd64 scratch AS my_amd64_stage\n").0,
        []
    );
    assert_eq!(
        report("\nFROM --platform=linux/amd64 scratch AS linux\n").0,
        []
    );
}

/// The other scenarios of BuildKit's lint tests, each with what BuildKit reports (rule, line, message):
/// testConsistentInstructionCasing, testMaintainerDeprecated, testMultipleInstructionsDisallowed,
/// testLegacyKeyValueFormat, testRedundantTargetPlatform, testWorkdirRelativePath, testStageName and
/// testInvalidDefaultArgInFrom.
#[test]
fn buildkit_lint_scenarios() {
    let casing = |kw: &str, case: &str| {
        format!("Command '{kw}' should match the case of the command majority ({case})")
    };
    let multiple = |kw: &str| {
        format!("Multiple {kw} instructions should not be used in the same stage because only the last one will be used")
    };
    let legacy = |kw: &str| {
        format!("\"{kw} key=value\" should be used instead of legacy \"{kw} key value\" format")
    };
    let rule = "ConsistentInstructionCasing";
    let cases: Vec<(&str, Vec<Found>)> = vec![
        (
            "\n#\n#\nFrom scratch as base\nFROM scratch AS base2\n",
            vec![finding(rule, 4, &casing("From", "uppercase"))],
        ),
        (
            "\nFROM scratch\n#\ncopy Dockerfile /foo\nCOPY Dockerfile /bar\n",
            vec![finding(rule, 4, &casing("copy", "uppercase"))],
        ),
        (
            "\n#\n#\nfrOM scratch as base\nfrom scratch as base2\n",
            vec![finding(rule, 4, &casing("frOM", "lowercase"))],
        ),
        (
            "\nfrom scratch\n#\nCOPY Dockerfile /foo\ncopy Dockerfile /bar\n",
            vec![finding(rule, 4, &casing("COPY", "lowercase"))],
        ),
        (
            "\n#\n#\nfrom scratch\nCOPY Dockerfile /foo\nCOPY Dockerfile /bar\nCOPY Dockerfile /baz\n",
            vec![finding(rule, 4, &casing("from", "uppercase"))],
        ),
        (
            "\n#\n#\nFROM scratch\ncopy Dockerfile /foo\ncopy Dockerfile /bar\ncopy Dockerfile /baz\n",
            vec![finding(rule, 4, &casing("FROM", "lowercase"))],
        ),
        ("\nfrom scratch\ncopy Dockerfile /foo\ncopy Dockerfile /bar\n", vec![]),
        ("\nFROM alpine\nRUN <<'EOT'\nenv\nEOT\n", vec![]),
        (
            "\nFROM scratch\nMAINTAINER me@example.org\n",
            vec![finding(
                "MaintainerDeprecated",
                3,
                "Maintainer instruction is deprecated in favor of using label",
            )],
        ),
        ("\nFROM scratch\nLABEL org.opencontainers.image.authors=\"me@example.org\"\n", vec![]),
        ("\nFROM scratch\n# check=skip=JSONArgsRecommended\nCMD mycommand\n", vec![]),
        ("\nFROM scratch\n# check=skip=MaintainerDeprecated\nMAINTAINER me@example.org\n", vec![]),
        (
            "\nFROM scratch\nENTRYPOINT [\"/myapp\"]\nENTRYPOINT [\"/myotherapp\"]\nCMD [\"/myapp\"]\nCMD [\"/myotherapp\"]\nHEALTHCHECK CMD [\"/myapp\"]\nHEALTHCHECK CMD [\"/myotherapp\"]\n",
            vec![
                finding("MultipleInstructionsDisallowed", 3, &multiple("ENTRYPOINT")),
                finding("MultipleInstructionsDisallowed", 5, &multiple("CMD")),
                finding("MultipleInstructionsDisallowed", 7, &multiple("HEALTHCHECK")),
            ],
        ),
        (
            "\nFROM scratch\nENTRYPOINT [\"/myapp\"]\nCMD [\"/myapp\"]\nHEALTHCHECK CMD [\"/myapp\"]\nCOPY <<EOF /a.txt\nHello, World!\nEOF\nENTRYPOINT [\"/myotherapp\"]\nCMD [\"/myotherapp\"]\nHEALTHCHECK CMD [\"/myotherapp\"]\n",
            vec![
                finding("MultipleInstructionsDisallowed", 3, &multiple("ENTRYPOINT")),
                finding("MultipleInstructionsDisallowed", 4, &multiple("CMD")),
                finding("MultipleInstructionsDisallowed", 5, &multiple("HEALTHCHECK")),
            ],
        ),
        (
            "\nFROM scratch AS a\nENTRYPOINT [\"/myapp\"]\nCMD [\"/myapp\"]\nHEALTHCHECK CMD [\"/myapp\"]\n\nFROM a AS b\nENTRYPOINT [\"/myotherapp\"]\nCMD [\"/myotherapp\"]\nHEALTHCHECK CMD [\"/myotherapp\"]\n",
            vec![],
        ),
        (
            "\nFROM scratch\nENV testkey value\nLABEL key value\n",
            vec![
                finding("LegacyKeyValueFormat", 3, &legacy("ENV")),
                finding("LegacyKeyValueFormat", 4, &legacy("LABEL")),
            ],
        ),
        ("\nFROM scratch\nENV testkey=value\nLABEL key=value\n", vec![]),
        (
            "\nFROM scratch\n# check=skip=LegacyKeyValueFormat\nENV testkey value\n# check=skip=LegacyKeyValueFormat\nLABEL key value\n",
            vec![],
        ),
        (
            "\nFROM --platform=$TARGETPLATFORM scratch\n",
            vec![finding(
                "RedundantTargetPlatform",
                2,
                "Setting platform to predefined $TARGETPLATFORM in FROM is redundant as this is the default behavior",
            )],
        ),
        (
            "\nFROM --platform=${TARGETPLATFORM} scratch\n",
            vec![finding(
                "RedundantTargetPlatform",
                2,
                "Setting platform to predefined ${TARGETPLATFORM} in FROM is redundant as this is the default behavior",
            )],
        ),
        ("\n# check=skip=RedundantTargetPlatform\nFROM --platform=$TARGETPLATFORM scratch\n", vec![]),
        (
            "\nFROM scratch\nWORKDIR app/\n",
            vec![finding(
                "WorkdirRelativePath",
                3,
                "Relative workdir \"app/\" can have unexpected results if the base image changes",
            )],
        ),
        ("\nFROM scratch AS a\nWORKDIR /app\n\nFROM a AS b\nWORKDIR subdir/\n", vec![]),
        ("\nFROM scratch\n# check=skip=WorkdirRelativePath\nWORKDIR app/\n", vec![]),
        (
            "\n#\n#\nFROM scratch AS BadStageName\n\n#\n#\nFROM scratch as base2\n\nFROM scratch AS base3\n",
            vec![
                finding("StageNameCasing", 4, "Stage name 'BadStageName' should be lowercase"),
                finding("FromAsCasing", 8, "'as' and 'FROM' keywords' casing do not match"),
            ],
        ),
        (
            "\n#\n#\nfrom scratch AS base\n\nfrom scratch as base2\n",
            vec![finding("FromAsCasing", 4, "'AS' and 'from' keywords' casing do not match")],
        ),
        ("\nARG base=scratch\nFROM $base\nCOPY Dockerfile .\n", vec![]),
        ("\nARG BUILDPLATFORM=linux/amd64\nFROM --platform=$BUILDPLATFORM scratch\nCOPY Dockerfile .\n", vec![]),
        ("\nFROM --platform=$BUILDPLATFORM scratch\nCOPY Dockerfile .\n", vec![]),
        ("\nARG DEBUG\nFROM scratch${DEBUG}\nCOPY Dockerfile .\n", vec![]),
        ("\nARG DEBUG\nFROM scra${DEBUG:-tch}\nCOPY Dockerfile .\n", vec![]),
        ("\nARG DEBUG=\"\"\nFROM scratch${DEBUG-@bogus}\nCOPY Dockerfile .\n", vec![]),
        ("\nFROM scratch\nARG foo\nCOPY Dockerfile${foo} .\n", vec![]),
        ("\nFROM alpine AS base\nARG foo=Dockerfile\n\nFROM base\nCOPY $foo .\n", vec![]),
        ("\nFROM alpine\nRUN echo $PATH\n", vec![]),
    ];
    for (src, want) in cases {
        assert_eq!(report(src).0, want, "{src}");
    }
    // testInvalidDefaultArgInFrom: judged on the defaults, whatever the build args.
    let invalid = |src: &str, arg: (&str, &str)| {
        let mut opts = BuildOpts::default();
        opts.build_args.insert(arg.0.to_string(), arg.1.to_string());
        report_with(src, &opts, &frontend::NoResolver).0
    };
    let msg = |base: &str| {
        format!("Default value for ARG {base} results in empty or invalid base image name")
    };
    assert_eq!(
        invalid(
            "\nARG VERSION\nFROM busybox:$VERSION\n",
            ("VERSION", "latest")
        ),
        [finding(
            "InvalidDefaultArgInFrom",
            3,
            &msg("busybox:$VERSION")
        )]
    );
    assert_eq!(
        invalid("\nARG IMAGE\nFROM $IMAGE\n", ("IMAGE", "busybox:latest")),
        [finding("InvalidDefaultArgInFrom", 3, &msg("$IMAGE"))]
    );
    assert_eq!(
        invalid(
            "\nARG SFX=\"box:\"\nFROM busy${SFX}\n",
            ("SFX", "box:latest")
        ),
        [finding("InvalidDefaultArgInFrom", 3, &msg("busy${SFX}"))]
    );
    assert_eq!(
        invalid(
            "\nARG VERSION=\"latest\"\nFROM busybox:${VERSION}\n",
            ("VERSION", "latest")
        ),
        []
    );
    assert_eq!(
        invalid(
            "\nARG BUSYBOX_VARIANT=\"\"\nFROM busybox:stable${BUSYBOX_VARIANT}\n",
            ("BUSYBOX_VARIANT", "-musl")
        ),
        []
    );
    assert_eq!(
        invalid(
            "\n\tARG BUSYBOX_VARIANT\n\tFROM busybox:stable${BUSYBOX_VARIANT}\n\t",
            ("BUSYBOX_VARIANT", "-musl")
        ),
        []
    );
}
