//! BuildKit's check rules as its linter describes them (`linter/ruleset.go`): the description and documentation
//! link that `--call=check`, the rawjson stream and the metadata file carry beside each finding.

/// One rule's description.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rule {
    /// BuildKit's rule name, e.g. `FromAsCasing`.
    pub name: &'static str,
    /// What the rule asks for, in BuildKit's words.
    pub description: &'static str,
    /// Its documentation page (BuildKit gives none for InvalidBaseImagePlatform).
    pub url: Option<&'static str>,
}

const RULES: &[Rule] = &[
    Rule {
        name: "StageNameCasing",
        description: "Stage names should be lowercase",
        url: Some("https://docs.docker.com/go/dockerfile/rule/stage-name-casing/"),
    },
    Rule {
        name: "FromAsCasing",
        description: "The 'as' keyword should match the case of the 'from' keyword",
        url: Some("https://docs.docker.com/go/dockerfile/rule/from-as-casing/"),
    },
    Rule {
        name: "NoEmptyContinuation",
        description: "Empty continuation lines will become errors in a future release",
        url: Some("https://docs.docker.com/go/dockerfile/rule/no-empty-continuation/"),
    },
    Rule {
        name: "ConsistentInstructionCasing",
        description: "All commands within the Dockerfile should use the same casing (either upper or lower)",
        url: Some("https://docs.docker.com/go/dockerfile/rule/consistent-instruction-casing/"),
    },
    Rule {
        name: "DuplicateStageName",
        description: "Stage names should be unique",
        url: Some("https://docs.docker.com/go/dockerfile/rule/duplicate-stage-name/"),
    },
    Rule {
        name: "ReservedStageName",
        description: "Reserved words should not be used as stage names",
        url: Some("https://docs.docker.com/go/dockerfile/rule/reserved-stage-name/"),
    },
    Rule {
        name: "JSONArgsRecommended",
        description: "JSON arguments recommended for ENTRYPOINT/CMD to prevent unintended behavior related to OS signals",
        url: Some("https://docs.docker.com/go/dockerfile/rule/json-args-recommended/"),
    },
    Rule {
        name: "MaintainerDeprecated",
        description: "The MAINTAINER instruction is deprecated, use a label instead to define an image author",
        url: Some("https://docs.docker.com/go/dockerfile/rule/maintainer-deprecated/"),
    },
    Rule {
        name: "UndefinedArgInFrom",
        description: "FROM command must use declared ARGs",
        url: Some("https://docs.docker.com/go/dockerfile/rule/undefined-arg-in-from/"),
    },
    Rule {
        name: "WorkdirRelativePath",
        description: "Relative workdir without an absolute workdir declared within the build can have unexpected results if the base image changes",
        url: Some("https://docs.docker.com/go/dockerfile/rule/workdir-relative-path/"),
    },
    Rule {
        name: "UndefinedVar",
        description: "Variables should be defined before their use",
        url: Some("https://docs.docker.com/go/dockerfile/rule/undefined-var/"),
    },
    Rule {
        name: "MultipleInstructionsDisallowed",
        description: "Multiple instructions of the same type should not be used in the same stage",
        url: Some("https://docs.docker.com/go/dockerfile/rule/multiple-instructions-disallowed/"),
    },
    Rule {
        name: "LegacyKeyValueFormat",
        description: "Legacy key/value format with whitespace separator should not be used",
        url: Some("https://docs.docker.com/go/dockerfile/rule/legacy-key-value-format/"),
    },
    Rule {
        name: "InvalidBaseImagePlatform",
        description: "Base image platform does not match expected target platform",
        url: None,
    },
    Rule {
        name: "RedundantTargetPlatform",
        description: "Setting platform to predefined $TARGETPLATFORM in FROM is redundant as this is the default behavior",
        url: Some("https://docs.docker.com/go/dockerfile/rule/redundant-target-platform/"),
    },
    Rule {
        name: "SecretsUsedInArgOrEnv",
        description: "Sensitive data should not be used in the ARG or ENV commands",
        url: Some("https://docs.docker.com/go/dockerfile/rule/secrets-used-in-arg-or-env/"),
    },
    Rule {
        name: "InvalidDefaultArgInFrom",
        description: "Default value for global ARG results in an empty or invalid base image name",
        url: Some("https://docs.docker.com/go/dockerfile/rule/invalid-default-arg-in-from/"),
    },
    Rule {
        name: "FromPlatformFlagConstDisallowed",
        description: "FROM --platform flag should not use a constant value",
        url: Some("https://docs.docker.com/go/dockerfile/rule/from-platform-flag-const-disallowed/"),
    },
    Rule {
        name: "CopyIgnoredFile",
        description: "Attempting to Copy file that is excluded by .dockerignore",
        url: Some("https://docs.docker.com/go/dockerfile/rule/copy-ignored-file/"),
    },
    Rule {
        name: "InvalidDefinitionDescription",
        description: "Comment for build stage or argument should follow the format: `# <arg/stage name> <description>`. If this is not intended to be a description comment, add an empty line or comment between the instruction and the comment.",
        url: Some("https://docs.docker.com/go/dockerfile/rule/invalid-definition-description/"),
    },
    Rule {
        name: "ExposeProtoCasing",
        description: "Protocol in EXPOSE instruction should be lowercase",
        url: Some("https://docs.docker.com/go/dockerfile/rule/expose-proto-casing/"),
    },
    Rule {
        name: "ExposeInvalidFormat",
        description: "IP address and host-port mapping should not be used in EXPOSE instruction. This will become an error in a future release",
        url: Some("https://docs.docker.com/go/dockerfile/rule/expose-invalid-format/"),
    },
];

/// The description of the rule named `name`, when BuildKit has that rule.
pub fn describe(name: &str) -> Option<&'static Rule> {
    RULES.iter().find(|r| r.name == name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_rule_kiln_reports_is_described() {
        assert_eq!(RULES.len(), 22);
        let r = describe("FromAsCasing").expect("described");
        assert_eq!(
            r.url,
            Some("https://docs.docker.com/go/dockerfile/rule/from-as-casing/")
        );
        assert_eq!(
            describe("InvalidBaseImagePlatform").and_then(|r| r.url),
            None
        );
        assert!(describe("NoSuchRule").is_none());
    }
}
