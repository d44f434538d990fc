//! The `# check=` parser directive: `skip=Rule1,Rule2` (or `skip=all`), `experimental=Rule1` (or
//! `experimental=all`) and `error=true`, separated by `;`.

use crate::error::FrontendError;

/// What the Dockerfile's check directive asks for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CheckConfig {
    /// Rules not to report.
    pub skip: Vec<String>,
    /// `skip=all`.
    pub skip_all: bool,
    /// Findings fail the build.
    pub error: bool,
    /// Experimental rules asked for by name.
    pub experimental: Vec<String>,
    /// `experimental=all`.
    pub experimental_all: bool,
}

impl CheckConfig {
    /// Parses the directive's value (`None` when the Dockerfile has none).
    pub fn parse(value: Option<&str>) -> Result<CheckConfig, FrontendError> {
        let mut cfg = CheckConfig::default();
        let Some(value) = value else { return Ok(cfg) };
        // BuildKit allows a trailing `// comment`-style note after the options.
        let value = value.split("//").next().unwrap_or("").trim();
        for part in value.split(';').map(str::trim).filter(|p| !p.is_empty()) {
            let (k, v) = part.split_once('=').ok_or_else(|| {
                FrontendError::request(format!(
                    "invalid check directive {part:?}: expected key=value (skip=..., error=true)"
                ))
            })?;
            match k.trim().to_ascii_lowercase().as_str() {
                "skip" => {
                    for rule in v.split(',').map(str::trim).filter(|r| !r.is_empty()) {
                        if rule.eq_ignore_ascii_case("all") {
                            cfg.skip_all = true;
                        } else {
                            cfg.skip.push(rule.to_string());
                        }
                    }
                }
                "error" => {
                    cfg.error = match v.trim().to_ascii_lowercase().as_str() {
                        "true" => true,
                        "false" => false,
                        other => {
                            return Err(FrontendError::request(format!(
                                "invalid check directive: error={other} (expected true or false)"
                            )))
                        }
                    }
                }
                "experimental" => {
                    for rule in v.split(',').map(str::trim).filter(|r| !r.is_empty()) {
                        if rule.eq_ignore_ascii_case("all") {
                            cfg.experimental_all = true;
                        } else {
                            cfg.experimental.push(rule.to_string());
                        }
                    }
                }
                other => {
                    return Err(FrontendError::request(format!(
                        "invalid check directive key {other:?} (valid: skip, error, experimental)"
                    )))
                }
            }
        }
        Ok(cfg)
    }

    /// This configuration with `local`'s skipped and experimental rules added, as BuildKit merges the `check=`
    /// comment above an instruction into the Dockerfile's configuration (`error=` stays the Dockerfile's).
    pub fn merged(&self, local: &CheckConfig) -> CheckConfig {
        let mut out = self.clone();
        out.skip_all |= local.skip_all;
        out.skip.extend(local.skip.iter().cloned());
        out.experimental_all |= local.experimental_all;
        out.experimental.extend(local.experimental.iter().cloned());
        out
    }

    /// Whether `rule` is reported. As in BuildKit's linter, an experimental rule runs only when the directive
    /// names it under `experimental=` (or says `experimental=all`), and `skip=` does not apply to it.
    pub fn enabled(&self, rule: &str) -> bool {
        if super::EXPERIMENTAL_RULES.contains(&rule) {
            return self.experimental_all
                || self
                    .experimental
                    .iter()
                    .any(|s| s.eq_ignore_ascii_case(rule));
        }
        !self.skip_all && !self.skip.iter().any(|s| s.eq_ignore_ascii_case(rule))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_skip_and_error() {
        let c =
            CheckConfig::parse(Some("skip=JSONArgsRecommended,FromAsCasing;error=true")).unwrap();
        assert!(c.error);
        assert!(!c.enabled("FromAsCasing"));
        assert!(c.enabled("UndefinedVar"));
        let all = CheckConfig::parse(Some("skip=all")).unwrap();
        assert!(!all.enabled("UndefinedVar"));
        assert!(CheckConfig::parse(Some("error=maybe")).is_err());
        assert!(CheckConfig::parse(Some("nonsense")).is_err());
        assert_eq!(CheckConfig::parse(None).unwrap(), CheckConfig::default());
    }

    #[test]
    fn experimental_rules_run_only_when_named() {
        let rule = "InvalidDefinitionDescription";
        assert!(!CheckConfig::default().enabled(rule));
        let named =
            CheckConfig::parse(Some("skip=all;experimental=InvalidDefinitionDescription")).unwrap();
        assert!(
            named.enabled(rule),
            "skip=all does not apply to experimental rules"
        );
        assert!(!named.enabled("UndefinedVar"));
        assert!(CheckConfig::parse(Some("experimental=all"))
            .unwrap()
            .enabled(rule));
        assert!(!CheckConfig::parse(Some("experimental=Other"))
            .unwrap()
            .enabled(rule));
    }
}
