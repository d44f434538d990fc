//! `-o/--output` specs in BuildKit's syntax: `type=image[,name=N][,push=true]`, `type=registry` (buildx's alias of
//! `type=image,push=true`), `type=oci,dest=PATH[,tar=false]`, `type=docker,dest=FILE|-` (without `dest=`: loaded
//! into the Docker engine, what `--load` means), `type=local,dest=DIR`, `type=tar,dest=FILE|-`; a bare path means
//! `type=local,dest=PATH`, `-` a tar on stdout. Image-writing types take BuildKit's layer options: `compression=`,
//! `compression-level=`, `force-compression=`, `oci-mediatypes=`, `rewrite-timestamp=`, `source-date-epoch=`,
//! kiln's `layer-max-size=`, and the annotation options `annotation[-TYPE][\[PLATFORM\]].KEY=VALUE`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use exporter::{Compression, ExportOptions};

use crate::annotations::{self, Annotations};
use crate::docker_api::Endpoint;

/// Why an output spec is none, or an output file could not be written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OutputError {
    /// The `-o` spec does not parse.
    #[error("{0}")]
    Spec(String),
    /// Writing the output failed.
    #[error("{0}")]
    Write(String),
}

/// Options of an image-writing output, as given (unset ones take the output type's defaults): its layers' and its
/// annotations.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LayerOptions {
    /// `compression=gzip|zstd|uncompressed`.
    pub compression: Option<String>,
    /// `compression-level=N`.
    pub level: Option<i32>,
    /// `oci-mediatypes=true|false`.
    pub oci_media_types: Option<bool>,
    /// `rewrite-timestamp=true|false`.
    pub rewrite_timestamp: Option<bool>,
    /// `force-compression=true|false`.
    pub force_compression: bool,
    /// `source-date-epoch=N`, or `source-date-epoch=` for none: this output's SOURCE_DATE_EPOCH instead of the
    /// build's.
    pub source_date_epoch: Option<Option<i64>>,
    /// `layer-max-size=SIZE` (kiln's own): split a step's layer larger than this into several.
    pub layer_max_size: Option<u64>,
    /// `annotation*.KEY=VALUE` options, then the build's `--annotation` flags.
    pub annotations: Annotations,
}

impl LayerOptions {
    /// The export options for an output whose defaults are `default_compression` and `default_oci`.
    pub fn resolve(
        &self,
        default_compression: Compression,
        default_oci: bool,
        epoch: Option<i64>,
    ) -> ExportOptions {
        let compression = match (self.compression.as_deref(), self.level) {
            (Some("uncompressed"), _) => Compression::None,
            (Some("gzip"), l) => Compression::Gzip(l.unwrap_or(6).clamp(0, 9) as u32),
            (Some("zstd"), l) => Compression::Zstd(l.unwrap_or(3).clamp(1, 22)),
            (_, Some(l)) => match default_compression {
                Compression::Gzip(_) => Compression::Gzip(l.clamp(0, 9) as u32),
                Compression::Zstd(_) => Compression::Zstd(l.clamp(1, 22)),
                Compression::None => Compression::None,
            },
            _ => default_compression,
        };
        ExportOptions {
            compression,
            // Docker has no zstd media type: zstd layers take OCI's, as BuildKit forces.
            oci_media_types: self.oci_media_types.unwrap_or(default_oci)
                || matches!(compression, Compression::Zstd(_)),
            source_date_epoch: self.source_date_epoch.unwrap_or(epoch),
            clamp_file_times: self.rewrite_timestamp.unwrap_or(true),
            force_compression: self.force_compression,
            layer_max_size: self.layer_max_size,
            build_time: None,
        }
    }
}

/// A `--layer-max-size` / `layer-max-size=` value: bytes, or a number with k, m or g (binary units); at least
/// 1 MiB, since a smaller limit would make a layer of nearly every file.
pub fn parse_layer_max_size(v: &str) -> Result<u64, String> {
    match crate::size::parse_bytes(v) {
        Ok(n) if n >= 1 << 20 => Ok(n),
        Ok(_) => Err(format!("layer-max-size={v:?} is below the 1m minimum")),
        Err(e) => Err(format!("layer-max-size={v:?}: {e}")),
    }
}

/// One output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// Into kiln's store, under these names.
    Image {
        /// `name=` values.
        names: Vec<String>,
        /// `push=true`: also push the names to their registries.
        push: bool,
        /// Layer options.
        layers: LayerOptions,
    },
    /// An OCI layout, as a tar file (or stdout with `-`) or a directory; or a docker archive.
    Archive {
        /// Destination.
        dest: String,
        /// Write a tar (default) or a directory (OCI only).
        tar: bool,
        /// `type=docker`.
        docker: bool,
        /// `name=` values, recorded in the archive.
        names: Vec<String>,
        /// Layer options.
        layers: LayerOptions,
    },
    /// Into a running Docker (or Podman) engine, as a docker archive streamed to its API: `--load`, or
    /// `-o type=docker` without `dest=`, as buildx's docker exporter loads what it makes.
    Load {
        /// The engine's API socket.
        endpoint: Endpoint,
        /// `name=` values: the names the engine gives the image.
        names: Vec<String>,
        /// Layer options.
        layers: LayerOptions,
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

/// Splits `a=1,b=2`, allowing a quoted value to hold commas (`"name=a:1,b:2"` as buildx's CSV reading does).
fn split_csv(spec: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    for c in spec.chars() {
        match c {
            '"' => quoted = !quoted,
            ',' if !quoted => out.push(std::mem::take(&mut cur)),
            c => cur.push(c),
        }
    }
    out.push(cur);
    out
}

fn parse_bool(spec: &str, key: &str, v: &str) -> Result<bool, String> {
    match v {
        "true" | "1" => Ok(true),
        "false" | "0" => Ok(false),
        _ => Err(format!("-o {spec}: {key}={v:?} is not true or false")),
    }
}

/// Parses one `-o` value.
pub fn parse(spec: &str) -> Result<Output, OutputError> {
    parse_spec(spec).map_err(OutputError::Spec)
}

fn parse_spec(spec: &str) -> Result<Output, String> {
    if spec.trim().is_empty() {
        return Err(
            "-o \"\": the output is empty: give a directory, `-` (a tar on stdout) or type=...[,dest=...]"
                .to_string(),
        );
    }
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
    for part in split_csv(spec) {
        let (k, v) = part
            .split_once('=')
            .ok_or_else(|| format!("-o {spec}: {part:?} is not key=value"))?;
        kv.insert(k.trim().to_string(), v.trim().to_string());
    }
    let mut kind = kv
        .remove("type")
        .ok_or_else(|| format!("-o {spec}: missing type="))?;
    // buildx's alias: `type=registry` is the image exporter with `push=true`, whatever else is given.
    let registry = kind == "registry";
    if registry {
        kind = "image".to_string();
    }
    let image_like = matches!(kind.as_str(), "image" | "oci" | "docker");
    let mut layers = LayerOptions::default();
    let mut names = Vec::new();
    let mut dest = None;
    let mut tar = true;
    let mut push = false;
    for (k, v) in &kv {
        if image_like {
            if let Some(a) =
                annotations::parse_option(k, v).map_err(|e| format!("-o {spec}: {e}"))?
            {
                layers.annotations.0.push(a);
                continue;
            }
        }
        match (k.as_str(), image_like) {
            ("dest", _) if kind != "image" => dest = Some(v.clone()),
            ("name", true) => {
                names.extend(v.split(',').filter(|n| !n.is_empty()).map(str::to_string))
            }
            ("tar", _) if kind == "oci" => tar = parse_bool(spec, k, v)?,
            ("push", _) if kind == "image" => push = parse_bool(spec, k, v)?,
            ("compression", true) => match v.as_str() {
                "gzip" | "zstd" | "uncompressed" => layers.compression = Some(v.clone()),
                _ => {
                    return Err(format!(
                        "-o {spec}: compression={v:?} is not gzip, zstd or uncompressed"
                    ))
                }
            },
            ("compression-level", true) => {
                layers.level =
                    Some(v.parse().map_err(|_| {
                        format!("-o {spec}: compression-level={v:?} is not a number")
                    })?)
            }
            ("force-compression", true) => layers.force_compression = parse_bool(spec, k, v)?,
            ("oci-mediatypes", true) => layers.oci_media_types = Some(parse_bool(spec, k, v)?),
            ("rewrite-timestamp", true) => layers.rewrite_timestamp = Some(parse_bool(spec, k, v)?),
            ("layer-max-size", true) => {
                layers.layer_max_size =
                    Some(parse_layer_max_size(v).map_err(|e| format!("-o {spec}: {e}"))?)
            }
            ("source-date-epoch", true) => {
                layers.source_date_epoch = Some(match v.as_str() {
                    "" => None,
                    n => Some(n.parse().map_err(|_| {
                        format!("-o {spec}: source-date-epoch={v:?} is not a number of seconds")
                    })?),
                })
            }
            _ => return Err(format!("-o {spec}: {k}= is not an option of type={kind}")),
        }
    }
    let need_dest = || {
        dest.clone()
            .filter(|d| !d.is_empty())
            .ok_or_else(|| format!("-o {spec}: type={kind} needs dest="))
    };
    match kind.as_str() {
        "image" => Ok(Output::Image {
            names,
            push: push || registry,
            layers,
        }),
        "docker" if dest.is_none() => Ok(Output::Load {
            endpoint: Endpoint::docker().map_err(|e| format!("-o {spec}: {e}"))?,
            names,
            layers,
        }),
        "oci" | "docker" => Ok(Output::Archive {
            dest: need_dest()?,
            tar: tar || kind == "docker",
            docker: kind == "docker",
            names,
            layers,
        }),
        "local" => Ok(Output::Local {
            dest: PathBuf::from(need_dest()?),
        }),
        "tar" => Ok(Output::Tar { dest: need_dest()? }),
        other => Err(format!(
            "-o {spec}: output type {other:?} is not supported (image, registry, oci, docker, local, tar)"
        )),
    }
}

/// Checks, before a build starts, that the file `path` given to `flag` (`--iidfile`, `--metadata-file`, an `-o`
/// destination) can be made: its directory exists and it is not itself a directory. A build is never run to fail
/// at its last step over a mistyped path.
pub fn check_file_destination(flag: &str, path: &Path) -> Result<(), OutputError> {
    check_file(&format!("{flag} {}", path.display()), path)
}

/// [`check_file_destination`], its errors starting with `label`.
fn check_file(label: &str, path: &Path) -> Result<(), OutputError> {
    let bad = |why: String| OutputError::Spec(format!("{label}: {why}"));
    if path.as_os_str().is_empty() {
        return Err(bad("the path is empty".to_string()));
    }
    if path.is_dir() {
        return Err(bad("is a directory".to_string()));
    }
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    match std::fs::metadata(dir) {
        Ok(m) if m.is_dir() => Ok(()),
        Ok(_) => Err(bad(format!("{} is not a directory", dir.display()))),
        Err(_) => Err(bad(format!("directory {} does not exist", dir.display()))),
    }
}

/// Checks that a directory output `dest` can be made: the nearest part of it that exists is a directory (the rest
/// is created by the export).
fn check_dir_destination(label: &str, dest: &Path) -> Result<(), OutputError> {
    let mut at = Some(dest);
    while let Some(p) = at {
        if let Ok(m) = std::fs::metadata(p) {
            if m.is_dir() {
                return Ok(());
            }
            return Err(OutputError::Spec(format!(
                "{label}{}: {} exists and is not a directory",
                dest.display(),
                p.display()
            )));
        }
        at = p.parent().filter(|p| !p.as_os_str().is_empty());
    }
    Ok(())
}

/// Checks every output's destination before the build starts (see [`check_file_destination`]); stdout (`-`)
/// and devices or pipes given as files are taken as they are.
pub fn check_destinations(outputs: &[Output]) -> Result<(), OutputError> {
    for o in outputs {
        match o {
            Output::Image { .. } | Output::Load { .. } => {}
            Output::Archive {
                dest, tar: false, ..
            } => check_dir_destination("-o type=oci,tar=false,dest=", Path::new(dest))?,
            Output::Archive { dest, docker, .. } => {
                let flag = if *docker {
                    "-o type=docker,dest="
                } else {
                    "-o type=oci,dest="
                };
                check_stream_destination(flag, dest)?
            }
            Output::Tar { dest } => check_stream_destination("-o type=tar,dest=", dest)?,
            Output::Local { dest } => check_dir_destination("-o type=local,dest=", dest)?,
        }
    }
    Ok(())
}

fn check_stream_destination(label: &str, dest: &str) -> Result<(), OutputError> {
    if dest == "-" || std::fs::metadata(dest).is_ok_and(|m| !m.is_file() && !m.is_dir()) {
        return Ok(());
    }
    check_file(&format!("{label}{dest}"), Path::new(dest))
}

/// Writes an output file through `DEST.kiln-partial` and a rename, so a failed build never leaves a truncated
/// archive under the name a user (or a CI step) looks for; `-` writes to stdout. A file takes an image archive's
/// blobs by in-kernel copies (`ArchiveOut`).
pub(crate) fn write_to(
    dest: &str,
    f: impl FnOnce(&mut dyn exporter::ArchiveOut) -> Result<(), String>,
) -> Result<(), OutputError> {
    if dest == "-" {
        let mut out = std::io::stdout().lock();
        return f(&mut out).map_err(OutputError::Write);
    }
    // A device or pipe (`-o /dev/null`, a process substitution) is written as it is: a temporary renamed over it
    // would replace the device node with a file.
    if std::fs::metadata(dest).is_ok_and(|m| !m.is_file() && !m.is_dir()) {
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .open(dest)
            .map_err(|e| OutputError::Write(format!("{dest}: {e}")))?;
        return f(&mut file).map_err(OutputError::Write);
    }
    let tmp = format!("{dest}.kiln-partial");
    let file =
        std::fs::File::create(&tmp).map_err(|e| OutputError::Write(format!("{tmp}: {e}")))?;
    let mut file = oci::writeback::EagerFile::new(file);
    let result = f(&mut file).and_then(|_| file.get_ref().sync_all().map_err(|e| e.to_string()));
    match result {
        Ok(()) => {
            std::fs::rename(&tmp, dest).map_err(|e| OutputError::Write(format!("{dest}: {e}")))
        }
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            Err(OutputError::Write(e))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_device_destination_is_written_not_replaced() {
        let d = tempfile::tempdir().unwrap();
        let null = d.path().join("null");
        let made = rustix::fs::mknodat(
            rustix::fs::CWD,
            &null,
            rustix::fs::FileType::CharacterDevice,
            rustix::fs::Mode::from_raw_mode(0o666),
            rustix::fs::makedev(1, 3),
        );
        if made.is_err() {
            eprintln!("cannot make a device node here (not root?): nothing to check");
            return;
        }
        let dest = null.to_str().unwrap();
        write_to(dest, |w| {
            w.write_all(b"archive bytes").map_err(|e| e.to_string())
        })
        .unwrap();
        let m = std::fs::symlink_metadata(&null).unwrap();
        assert!(
            std::os::unix::fs::FileTypeExt::is_char_device(&m.file_type()),
            "the device node is still there"
        );
        assert!(!d.path().join("null.kiln-partial").exists());
    }

    #[test]
    fn specs() {
        assert_eq!(parse("out").unwrap(), Output::Local { dest: "out".into() });
        assert_eq!(parse("-").unwrap(), Output::Tar { dest: "-".into() });
        assert_eq!(
            parse("type=oci,dest=a.tar").unwrap(),
            Output::Archive {
                dest: "a.tar".into(),
                tar: true,
                docker: false,
                names: vec![],
                layers: LayerOptions::default(),
            }
        );
        assert!(matches!(
            parse("type=oci,dest=d,tar=false").unwrap(),
            Output::Archive { tar: false, .. }
        ));
        assert!(matches!(
            parse("type=docker,dest=x,name=app:1").unwrap(),
            Output::Archive { docker: true, tar: true, ref names, .. } if names == &["app:1"]
        ));
        assert_eq!(
            parse("type=image,\"name=app:1,app:2\",push=true").unwrap(),
            Output::Image {
                names: vec!["app:1".into(), "app:2".into()],
                push: true,
                layers: LayerOptions::default(),
            }
        );
        assert!(parse("type=local").is_err());
        assert!(parse("dest=x").is_err());
        assert!(parse("type=registry,dest=x").is_err());
        assert!(parse("type=bogus").is_err());
        assert_eq!(
            parse("type=registry,name=r/app:1").unwrap(),
            Output::Image {
                names: vec!["r/app:1".into()],
                push: true,
                layers: LayerOptions::default(),
            }
        );
        assert!(matches!(
            parse("type=registry,push=false").unwrap(),
            Output::Image { push: true, .. }
        ));
        let Output::Archive { layers, .. } =
            parse("type=oci,dest=x,annotation.a=1,annotation-index.b=2").unwrap()
        else {
            panic!("an archive")
        };
        assert_eq!(layers.annotations.0.len(), 2);
        assert!(parse("type=oci,dest=x,annotation-bogus.a=1").is_err());
        assert!(parse("type=local,dest=x,annotation.a=1").is_err());
        assert!(parse("type=oci,dest=x,compression=brotli").is_err());
        assert!(parse("type=oci,dest=x,frobnicate=1").is_err());
        assert!(parse("type=oci,dest=x,source-date-epoch=soon").is_err());
        assert!(matches!(
            parse("type=oci,dest=x,source-date-epoch=").unwrap(),
            Output::Archive {
                layers: LayerOptions {
                    source_date_epoch: Some(None),
                    ..
                },
                ..
            }
        ));
        assert!(parse("type=local,dest=x,compression=gzip").is_err());
    }

    #[test]
    fn layer_options_resolve_like_buildkit() {
        let o = |s: &str| match parse(s).unwrap() {
            Output::Archive { layers, .. } | Output::Image { layers, .. } => layers,
            _ => unreachable!(),
        };
        let gz = Compression::Gzip(6);
        assert_eq!(o("type=oci,dest=x").resolve(gz, true, None).compression, gz);
        assert_eq!(
            o("type=oci,dest=x,compression-level=1")
                .resolve(gz, true, None)
                .compression,
            Compression::Gzip(1)
        );
        let z = o("type=docker,dest=x,compression=zstd").resolve(gz, false, Some(5));
        assert_eq!(z.compression, Compression::Zstd(3));
        assert!(z.oci_media_types, "zstd forces OCI media types");
        let d = o("type=docker,dest=x,oci-mediatypes=false").resolve(gz, true, None);
        assert!(!d.oci_media_types);
        assert_eq!(
            o("type=image,compression=uncompressed")
                .resolve(gz, true, None)
                .compression,
            Compression::None
        );
        assert!(
            !o("type=oci,dest=x,rewrite-timestamp=false")
                .resolve(gz, true, Some(1))
                .clamp_file_times
        );
    }
}
