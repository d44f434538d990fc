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
