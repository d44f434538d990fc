//! Instruction flags (`--name=value`) with BuildKit's BFlags rules: declared flags only, booleans bare or
//! `=true|false`, strings need `=`, arrays repeat.

use std::collections::BTreeMap;

/// What a flag holds once parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FlagValue {
    /// A boolean flag: `--link`, `--link=false`.
    Bool(bool),
    /// A string flag given once.
    String(String),
    /// A repeatable flag, in order.
    List(Vec<String>),
}

/// The kind a flag is declared with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlagKind {
    /// `--x` or `--x=true|false`.
    Bool,
    /// `--x=value`, at most once.
    String,
    /// `--x=value`, any number of times.
    List,
}

/// The flags of one instruction, checked against what the instruction declares.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Flags {
    values: BTreeMap<String, FlagValue>,
    used: Vec<String>,
}

impl Flags {
    /// Parses `words` (as the parser extracted them, quotes removed) against the declared `(name, kind)` pairs.
    /// Errors carry BuildKit's wording so users can search for them.
    pub(crate) fn parse(words: &[String], declared: &[(&str, FlagKind)]) -> Result<Flags, String> {
        let mut flags = Flags::default();
        for word in words {
            let Some(body) = word.strip_prefix("--") else {
                return Err(format!("arg {word:?} must start with '--'"));
            };
            if body.is_empty() {
                break;
            }
            let (name, value) = match body.split_once('=') {
                Some((n, v)) => (n, Some(v)),
                None => (body, None),
            };
            let Some((_, kind)) = declared.iter().find(|(n, _)| *n == name) else {
                let valid: Vec<String> = declared.iter().map(|(n, _)| format!("--{n}")).collect();
                // BuildKit's wording for a near miss (its testMountInvalid: `--mont` gives "did you mean mount?").
                let near = crate::suggest::nearest(name, declared.iter().map(|(n, _)| *n));
                let hint = match near {
                    Some(n) => format!("did you mean {n}?"),
                    None if valid.is_empty() => "this instruction takes no flags".to_string(),
                    None => format!("valid flags: {}", valid.join(", ")),
                };
                return Err(format!("unknown flag: --{name} ({hint})"));
            };
            let parsed = match (kind, value) {
                (FlagKind::Bool, None) => FlagValue::Bool(true),
                (FlagKind::Bool, Some(v)) => match v.to_ascii_lowercase().as_str() {
                    "" | "true" => FlagValue::Bool(true),
                    "false" => FlagValue::Bool(false),
                    _ => {
                        return Err(format!(
                            "expecting boolean value for flag --{name}, not: {v}"
                        ))
                    }
                },
                (FlagKind::String | FlagKind::List, None) => {
                    return Err(format!(
                        "missing a value on flag: --{name} (write --{name}=VALUE)"
                    ))
                }
                (FlagKind::String, Some(v)) => {
                    if flags.values.contains_key(name) {
                        return Err(format!("duplicate flag specified: --{name}"));
                    }
                    FlagValue::String(v.to_string())
                }
                (FlagKind::List, Some(v)) => {
                    if let Some(FlagValue::List(list)) = flags.values.get_mut(name) {
                        list.push(v.to_string());
                        continue;
                    }
                    FlagValue::List(vec![v.to_string()])
                }
            };
            flags.used.push(name.to_string());
            flags.values.insert(name.to_string(), parsed);
        }
        Ok(flags)
    }

    /// A string flag's value, if given.
    pub fn string(&self, name: &str) -> Option<&str> {
        match self.values.get(name) {
            Some(FlagValue::String(s)) => Some(s),
            _ => None,
        }
    }

    /// A boolean flag's value, if given.
    pub fn bool(&self, name: &str) -> Option<bool> {
        match self.values.get(name) {
            Some(FlagValue::Bool(b)) => Some(*b),
            _ => None,
        }
    }

    /// A list flag's values (empty when not given).
    pub fn list(&self, name: &str) -> Vec<String> {
        match self.values.get(name) {
            Some(FlagValue::List(l)) => l.clone(),
            _ => Vec::new(),
        }
    }

    /// Names of the flags given, in order of first use.
    pub fn used(&self) -> &[String] {
        &self.used
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DECL: &[(&str, FlagKind)] = &[
        ("b", FlagKind::Bool),
        ("s", FlagKind::String),
        ("l", FlagKind::List),
    ];

    fn p(words: &[&str]) -> Result<Flags, String> {
        let w: Vec<String> = words.iter().map(|s| s.to_string()).collect();
        Flags::parse(&w, DECL)
    }

    #[test]
    fn buildkit_bflags_rules() {
        assert_eq!(p(&[]).unwrap().bool("b"), None);
        assert_eq!(p(&["--b"]).unwrap().bool("b"), Some(true));
        assert_eq!(p(&["--b=true"]).unwrap().bool("b"), Some(true));
        assert_eq!(p(&["--b=FALSE"]).unwrap().bool("b"), Some(false));
        assert!(p(&["--b=false1"])
            .unwrap_err()
            .contains("expecting boolean"));
        assert!(p(&["--s"]).unwrap_err().contains("missing a value"));
        assert_eq!(p(&["--s="]).unwrap().string("s"), Some(""));
        assert!(p(&["--s=1", "--s=2"])
            .unwrap_err()
            .contains("duplicate flag"));
        assert!(p(&["--nope=1"])
            .unwrap_err()
            .contains("unknown flag: --nope"));
        assert_eq!(p(&["--l=a", "--l=b"]).unwrap().list("l"), ["a", "b"]);
        assert_eq!(
            p(&["--s=x", "--", "--l=a"]).unwrap().list("l"),
            Vec::<String>::new()
        );
        assert_eq!(p(&["--l=a", "--b"]).unwrap().used(), ["l", "b"]);
    }

    #[test]
    fn a_near_miss_gets_buildkits_suggestion() {
        let run = &[("mount", FlagKind::List), ("network", FlagKind::String)];
        let err = Flags::parse(&["--mont=type=tmpfs".to_string()], run).unwrap_err();
        assert_eq!(err, "unknown flag: --mont (did you mean mount?)");
        let err = Flags::parse(&["--bogus".to_string()], run).unwrap_err();
        assert_eq!(
            err,
            "unknown flag: --bogus (valid flags: --mount, --network)"
        );
    }
}
