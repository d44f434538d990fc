//! `kiln check`: BuildKit's build checks with file:line locations and the `# check=` directive.

use kiln_tests::{run, Context};

use crate::KILN;

#[test]
fn reports_rules_with_locations() {
    let ctx = Context::new().file(
        "Dockerfile",
        "FROM busybox as Builder\nMAINTAINER me\nRUN echo $NOPE_UNDEFINED\nCMD echo hi\nCMD echo twice\n",
    );
    let r = run(KILN, &["check", ctx.path().to_str().expect("utf-8")], None);
    assert_eq!(r.code, 0, "{}", r.stderr);
    for rule in [
        "FromAsCasing",
        "StageNameCasing",
        "MaintainerDeprecated",
        "JSONArgsRecommended",
        "MultipleInstructionsDisallowed",
    ] {
        assert!(
            r.stdout.contains(rule),
            "{rule} missing from:\n{}",
            r.stdout
        );
    }
    assert!(
        r.stdout.contains("Dockerfile:2:1: MaintainerDeprecated"),
        "{}",
        r.stdout
    );
}

#[test]
fn check_directive_skips_rules_and_turns_findings_into_errors() {
    let ctx = Context::new().file(
        "Dockerfile",
        "# check=skip=JSONArgsRecommended;error=true\nFROM busybox\nMAINTAINER me\nCMD echo hi\n",
    );
    let r = run(KILN, &["check", ctx.path().to_str().expect("utf-8")], None);
    assert_eq!(r.code, 1, "{}\n{}", r.stdout, r.stderr);
    assert!(r.stdout.contains("MaintainerDeprecated"));
    assert!(!r.stdout.contains("JSONArgsRecommended"));
    let via_build = run(
        KILN,
        &["build", "--check", ctx.path().to_str().expect("utf-8")],
        None,
    );
    assert_eq!(
        via_build.code, 1,
        "kiln build --check reports the same: {}",
        via_build.stdout
    );
    assert!(via_build.stdout.contains("MaintainerDeprecated"));
    let clean = Context::new().file(
        "Dockerfile",
        "# check=error=true\nFROM busybox\nCMD [\"true\"]\n",
    );
    let r = run(
        KILN,
        &["check", clean.path().to_str().expect("utf-8")],
        None,
    );
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
}

#[test]
fn a_duplicate_stage_name_fails_the_check_and_hides_no_finding() {
    // BuildKit's lint reports every warning beside the build error; kiln's build refuses a repeated stage name,
    // so `kiln check` reports it as an error, exits non-zero, and still reports the later stages' findings.
    let ctx = Context::new().file(
        "Dockerfile",
        "FROM busybox AS a\nFROM busybox AS a\nWORKDIR app\nFROM busybox${TAG}\nCOPY $NOPE /x\n",
    );
    let dir = ctx.path().to_str().expect("utf-8");
    let r = run(KILN, &["check", dir], None);
    assert_ne!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    for rule in [
        "Dockerfile:2:1: DuplicateStageName",
        "Dockerfile:3:1: WorkdirRelativePath",
        "Dockerfile:4:1: UndefinedArgInFrom",
        "Dockerfile:5:1: UndefinedVar",
    ] {
        assert!(
            r.stdout.contains(rule),
            "{rule} missing from:\n{}",
            r.stdout
        );
    }
    assert!(
        r.stderr.contains("duplicate stage name \"a\""),
        "{}",
        r.stderr
    );
    let build = run(KILN, &["build", dir], None);
    assert_ne!(build.code, 0, "kiln build refuses it too: {}", build.stderr);
}
