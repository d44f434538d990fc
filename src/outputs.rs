//! `-o/--output` specs in BuildKit's syntax: `type=image[,name=N]`, `type=oci,dest=PATH[,tar=false]`,
//! `type=local,dest=DIR`, `type=tar,dest=FILE|-`; a bare path means `type=local,dest=PATH`, `-` a tar on stdout.

use std::collections::BTreeMap;
use std::path::PathBuf;

/// One output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// Into kiln's store, under these names.
    Image {
        /// `name=` values.
        names: Vec<String>,
    },
    /// An OCI layout, as a tar file (or stdout with `-`) or a directory.
    Oci {
        /// Destination.
        dest: String,
        /// Write a tar (default) or a directory.
        tar: bool,
    },
    /// The final filesystem into a directory.
    Local {
        /// Destination directory.
        dest: PathBuf,
    },
    /// The final filesystem as one tar.
    Tar {
        /// Destination file or `-`.
        dest: String,
    },
}

/// Parses one `-o` value.
pub fn parse(spec: &str) -> Result<Output, String> {
    if !spec.contains('=') {
        return Ok(if spec == "-" {
            Output::Tar {
                dest: "-".to_string(),
            }
        } else {
            Output::Local {
                dest: PathBuf::from(spec),
            }
        });
    }
    let mut kv = BTreeMap::new();
    for part in spec.split(',') {
        let (k, v) = part
            .split_once('=')
            .ok_or_else(|| format!("-o {spec}: {part:?} is not key=value"))?;
        kv.insert(k.trim().to_string(), v.trim().to_string());
    }
    let dest = |kv: &BTreeMap<String, String>| {
        kv.get("dest")
            .cloned()
            .ok_or_else(|| format!("-o {spec}: this output type needs dest="))
    };
    match kv.get("type").map(String::as_str) {
        Some("image") => Ok(Output::Image {
            names: kv
                .get("name")
                .map(|n| n.split(',').map(str::to_string).collect())
                .unwrap_or_default(),
        }),
        Some("oci") => Ok(Output::Oci {
            dest: dest(&kv)?,
            tar: kv.get("tar").map(|t| t != "false").unwrap_or(true),
        }),
        Some("local") => Ok(Output::Local {
            dest: PathBuf::from(dest(&kv)?),
        }),
        Some("tar") => Ok(Output::Tar { dest: dest(&kv)? }),
        Some(other) => Err(format!(
            "-o {spec}: output type {other:?} is not supported (image, oci, local, tar; docker and push come later)"
        )),
        None => Err(format!("-o {spec}: missing type=")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs() {
        assert_eq!(parse("out").unwrap(), Output::Local { dest: "out".into() });
        assert_eq!(parse("-").unwrap(), Output::Tar { dest: "-".into() });
        assert_eq!(
            parse("type=oci,dest=a.tar").unwrap(),
            Output::Oci {
                dest: "a.tar".into(),
                tar: true
            }
        );
        assert_eq!(
            parse("type=oci,dest=d,tar=false").unwrap(),
            Output::Oci {
                dest: "d".into(),
                tar: false
            }
        );
        assert_eq!(
            parse("type=image,name=app:1").unwrap(),
            Output::Image {
                names: vec!["app:1".into()]
            }
        );
        assert!(parse("type=docker,dest=x").is_err());
        assert!(parse("type=local").is_err());
        assert!(parse("dest=x").is_err());
    }
}
