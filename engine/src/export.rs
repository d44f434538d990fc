//! Output dispatch: a finished build's final filesystems become what each output asks for — images in kiln's
//! store (pushed when asked), OCI layouts and docker archives, a local directory, a tar.

use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};

use exporter::{ArchiveFormat, Compression, ExportOptions, LayerSource, Tagged};
use oci::store::Store;
use solver::snapshot::Snapshotter;

use crate::annotations::Annotations;
use crate::error::BuildError;
use crate::events::{ImageResult, Outcome, Progress};
use crate::output::{write_to, Output, OutputError};

/// One target platform's result: the snapshot of its final filesystem (none for an empty `FROM scratch`).
pub(crate) struct Built {
    /// The platform.
    pub platform: oci::Platform,
    /// Its final snapshot.
    pub snapshot: Option<String>,
    /// Its image config.
    pub image: oci::Image,
    /// What is attested about it (provenance, SBOM): wrapped per output, about the image that output holds.
    pub attestations: Vec<exporter::attestation::Attestation>,
}

/// What every output is made from.
pub(crate) struct Exporting<'a> {
    /// kiln's store.
    pub store: &'a Store,
    /// The registry client (pushes).
    pub client: &'a oci::registry::Client,
    /// The snapshots.
    pub snapshots: &'a Snapshotter,
    /// One result per target platform.
    pub built: &'a [Built],
    /// The `-t` names.
    pub names: &'a [String],
    /// SOURCE_DATE_EPOCH.
    pub epoch: Option<i64>,
}

/// What an image output produced: the manifest (or, for several platforms, the index) and the config digest of a
/// single-platform image (its image id).
struct Produced {
    manifest: oci::manifest::Descriptor,
    config: Option<oci::Digest>,
}

fn fail(e: impl std::fmt::Display) -> BuildError {
    BuildError::Failed(e.to_string())
}

/// Writes every output; what they came to.
pub(crate) fn export(
    x: &Exporting<'_>,
    outputs: &[Output],
    progress: &dyn Progress,
) -> Result<Outcome, BuildError> {
    let (store, snapshots, built, names, epoch) = (x.store, x.snapshots, x.built, x.names, x.epoch);
    // One time for the whole build: an image with no layer made here and no SOURCE_DATE_EPOCH takes it, in every
    // output alike (the store, archives, a push), so they all hold the same config and image ID.
    let build_time = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .ok()
        .and_then(|d| i64::try_from(d.as_secs()).ok());
    let resolve =
        |opts: &crate::output::LayerOptions, compression: Compression, oci: bool| ExportOptions {
            build_time,
            ..opts.resolve(compression, oci, epoch)
        };
    if outputs.is_empty() {
        progress.event(crate::events::Event::Warning {
            vertex: None,
            message: "no output specified (-t or -o): the build result stays only in kiln's cache"
                .to_string(),
        });
        return Ok(Outcome::NoOutput);
    }
    let mut layers: Vec<Vec<LayerSource>> = Vec::new();
    for b in built {
        layers.push(match &b.snapshot {
            Some(id) => snapshots
                .chain_ids(id)?
                .into_iter()
                .map(|s| LayerSource {
                    diff: snapshots.diff_dir(&s),
                    unpacked_from: snapshots.unpacked_from(&s).and_then(|m| m.parse().ok()),
                    created: snapshots.created(&s),
                    id: s,
                })
                .collect(),
            None => Vec::new(),
        });
    }
    let mut all_names: Vec<String> = names.to_vec();
    for o in outputs {
        if let Output::Image { names, .. } = o {
            all_names.extend(names.iter().cloned());
        }
    }
    // One platform: its image, named. Several: each platform's image, then an index of them, named.
    // With an archive, each image's blobs go into it as they are made (see `exporter::ArchiveStream`). Annotations
    // land where BuildKit's image writer puts them: manifests, their descriptors, the index, its descriptor.
    let attested = built.iter().any(|b| !b.attestations.is_empty());
    let export = |options: &ExportOptions,
                  ann: &Annotations,
                  names: &[String],
                  subject_names: &[String],
                  mut archive: Option<&mut exporter::ArchiveStream<'_>>|
     -> Result<Produced, BuildError> {
        // Attestations go into image-holding outputs in the OCI vocabulary; an image with any becomes an index,
        // even of one platform, as BuildKit's image writer makes it.
        let attest = attested && options.oci_media_types;
        let one = |b: &Built,
                   layers: &[LayerSource],
                   names: &[String],
                   archive: Option<&mut exporter::ArchiveStream<'_>>|
         -> Result<exporter::ExportedImage, BuildError> {
            let mut image = exporter::export_annotated_image(
                store,
                layers,
                b.image.clone(),
                options,
                &ann.manifest(&b.platform),
                names,
                archive,
            )?;
            image
                .manifest
                .annotations
                .extend(ann.manifest_descriptor(&b.platform));
            Ok(image)
        };
        if let ([only], false) = (built, attest) {
            let image = one(only, &layers[0], names, archive)?;
            return Ok(Produced {
                manifest: image.manifest,
                config: Some(image.config),
            });
        }
        let mut images = Vec::new();
        let mut attestations = Vec::new();
        for (b, l) in built.iter().zip(&layers) {
            let image = one(b, l, &[], archive.as_deref_mut())?;
            if attest && !b.attestations.is_empty() {
                attestations.push(attestation_manifest(store, b, &image, subject_names)?);
            }
            images.push((b.platform.clone(), image));
        }
        let config = match &images[..] {
            [(_, only)] => Some(only.config.clone()),
            _ => None,
        };
        let mut index = exporter::export_index(
            store,
            &images,
            &attestations,
            options.oci_media_types,
            &ann.index(),
            names,
        )?;
        index.annotations.extend(ann.index_descriptor());
        Ok(Produced {
            manifest: index,
            config,
        })
    };
    let tagged = |names: &[String], image: &Produced| {
        [Tagged {
            manifest: image.manifest.clone(),
            names: names.to_vec(),
        }]
    };
    // The digest reported is that of the image that leaves the machine when there is one.
    let mut exported: Option<(Produced, Vec<String>)> = None;
    for o in outputs {
        match o {
            Output::Image {
                layers: opts,
                push,
                names: own,
            } => {
                // Kiln's own store keeps layers uncompressed unless told otherwise (nothing is gained by
                // compressing what stays on this disk); a push gets gzip, made once per snapshot and remembered,
                // an archive written to a file gzip compressed straight into it.
                let targets = if own.is_empty() { names } else { &own[..] };
                let mut image = export(
                    &resolve(opts, Compression::None, true),
                    &opts.annotations,
                    &all_names,
                    targets,
                    None,
                )?;
                if *push {
                    let refs = targets
                        .iter()
                        .map(|t| crate::registry::parse_reference(t))
                        .collect::<Result<Vec<_>, _>>()?;
                    let level = resolve(opts, Compression::Gzip(6), true).compression;
                    let pushed = crate::registry::push_image(
                        x.client,
                        store,
                        &image.manifest.digest,
                        level,
                        &refs,
                        progress,
                    )?;
                    let size = store.blob_size(&pushed)?;
                    image.manifest =
                        oci::manifest::Descriptor::new(&image.manifest.media_type, pushed, size);
                }
                if exported.is_none() || *push {
                    exported = Some((image, all_names.clone()));
                }
            }
            Output::Archive {
                dest,
                tar,
                docker,
                names,
                layers: opts,
            } => {
                let options = resolve(opts, Compression::Gzip(6), !docker);
                let format = if *docker {
                    ArchiveFormat::Docker
                } else {
                    ArchiveFormat::Oci
                };
                let image = if *tar {
                    let mut produced = None;
                    write_to(dest, |w| {
                        let mut archive = exporter::ArchiveStream::new(w);
                        let image =
                            export(&options, &opts.annotations, &[], names, Some(&mut archive))
                                .map_err(|e| e.to_string())?;
                        archive
                            .finish(store, &tagged(names, &image), format)
                            .map_err(|e| e.to_string())?;
                        produced = Some(image);
                        Ok(())
                    })
                    .map_err(written)?;
                    produced.ok_or_else(|| fail("the archive was written without an image"))?
                } else {
                    let image = export(&options, &opts.annotations, &[], names, None)?;
                    exporter::write_layout_dir(store, &tagged(names, &image), Path::new(dest))?;
                    image
                };
                exported = Some((image, names.clone()));
            }
            Output::Load {
                endpoint,
                names,
                layers: opts,
            } => {
                // The engine unpacks what it loads: layers go uncompressed unless asked otherwise, which spares
                // compressing here and decompressing there (BuildKit's docker exporter gzips them).
                let options = resolve(opts, Compression::None, false);
                let mut produced = None;
                let said = endpoint.load(|w| {
                    let mut archive = exporter::ArchiveStream::new(w);
                    let image = export(&options, &opts.annotations, &[], names, Some(&mut archive))
                        .map_err(|e| e.to_string())?;
                    archive
                        .finish(store, &tagged(names, &image), ArchiveFormat::Docker)
                        .map_err(|e| e.to_string())?;
                    produced = Some(image);
                    Ok(())
                })?;
                let image =
                    produced.ok_or_else(|| fail("the image was loaded without an image"))?;
                progress.event(crate::events::Event::Message(format!(
                    "loaded into the {} engine at unix://{}: {said}",
                    endpoint.kind,
                    endpoint.socket.display()
                )));
                exported = Some((image, names.clone()));
            }
            Output::Local { dest } => {
                // Several platforms: one directory per platform (`linux_amd64/`), as BuildKit writes them.
                for b in built {
                    let dir = if built.len() > 1 {
                        Path::new(dest).join(platform_dir(&b.platform))
                    } else {
                        Path::new(dest).to_path_buf()
                    };
                    std::fs::create_dir_all(&dir)?;
                    with_final_fs(snapshots, b.snapshot.as_deref(), |fs_root| {
                        copy_tree(fs_root, &dir)
                    })?;
                    write_local_attestations(b, &dir)?;
                }
            }
            Output::Tar { dest } => {
                let diff = exporter::diff::DiffOptions {
                    source_date_epoch: epoch,
                };
                if let [only] = built {
                    with_final_fs(snapshots, only.snapshot.as_deref(), |fs_root| {
                        write_to(dest, |w| {
                            exporter::diff::write_diff(fs_root, w, diff)
                                .map(|_| ())
                                .map_err(|e| e.to_string())
                        })
                        .map_err(|e| e.to_string())
                    })?;
                } else {
                    with_final_fss(snapshots, built, &mut Vec::new(), &mut |trees| {
                        write_to(dest, |w| {
                            exporter::diff::write_trees(trees, w, diff)
                                .map(|_| ())
                                .map_err(|e| e.to_string())
                        })
                        .map_err(|e| e.to_string())
                    })?;
                }
            }
        }
    }
    Ok(match exported {
        Some((image, names)) => Outcome::Image(ImageResult {
            digest: image.manifest.digest,
            config: image.config,
            names,
        }),
        None => Outcome::Files,
    })
}

/// The attestation manifest of `b`'s image in one output: its statements about `image`, named by the output's
/// image names as BuildKit's image exporter names subjects.
fn attestation_manifest(
    store: &Store,
    b: &Built,
    image: &exporter::ExportedImage,
    names: &[String],
) -> Result<oci::manifest::Descriptor, BuildError> {
    use exporter::attestation::{image_subjects, Statement};
    let mut statements = Vec::new();
    for a in &b.attestations {
        let subjects = image_subjects(names, &b.platform, &image.manifest.digest);
        let bytes = Statement::bytes(a, subjects).map_err(fail)?;
        statements.push((a.predicate_type.clone(), bytes));
    }
    Ok(exporter::attestation::store_attestation_manifest(
        store,
        &image.manifest,
        &statements,
    )?)
}

/// `-o type=local` with attestations: each statement (BuildKit's `inline-only` ones excepted) written next to the
/// files as BuildKit's local exporter writes it (`provenance.json`, `sbom.spdx.json`, mode 0600), its subjects
/// every regular file of the output with its sha256.
fn write_local_attestations(b: &Built, dir: &Path) -> Result<(), BuildError> {
    use std::io::Write as _;
    let wanted: Vec<_> = b.attestations.iter().filter(|a| !a.inline_only).collect();
    if wanted.is_empty() {
        return Ok(());
    }
    let mut subjects = Vec::new();
    file_subjects(dir, dir, &mut subjects)?;
    subjects.sort_by(|a, b| a.name.cmp(&b.name));
    for a in wanted {
        let bytes = exporter::attestation::Statement::bytes(a, subjects.clone()).map_err(fail)?;
        // Indented, as BuildKit writes the file.
        let v: serde_json::Value = serde_json::from_slice(&bytes).map_err(fail)?;
        let pretty = serde_json::to_vec_pretty(&v).map_err(fail)?;
        let path = dir.join(&a.filename);
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&path)
            .map_err(|e| fail(format!("{}: {e}", path.display())))?;
        f.write_all(&pretty)
            .map_err(|e| fail(format!("{}: {e}", path.display())))?;
    }
    Ok(())
}

/// Every regular file under `dir` as a statement subject: its path relative to `base` and its sha256.
fn file_subjects(
    base: &Path,
    dir: &Path,
    out: &mut Vec<exporter::attestation::Subject>,
) -> Result<(), BuildError> {
    let entries = std::fs::read_dir(dir).map_err(|e| fail(format!("{}: {e}", dir.display())))?;
    for e in entries {
        let e = e.map_err(|e| fail(format!("{}: {e}", dir.display())))?;
        let kind = e.file_type().map_err(|e| fail(format!("{}: {e}", e)))?;
        let path = e.path();
        if kind.is_dir() {
            file_subjects(base, &path, out)?;
        } else if kind.is_file() {
            let mut f =
                std::fs::File::open(&path).map_err(|e| fail(format!("{}: {e}", path.display())))?;
            let mut h = oci::HashingWriter::new(std::io::sink());
            std::io::copy(&mut f, &mut h).map_err(|e| fail(format!("{}: {e}", path.display())))?;
            let (_, digest, _) = h.finish();
            let name = path
                .strip_prefix(base)
                .unwrap_or(&path)
                .display()
                .to_string();
            out.push(exporter::attestation::Subject::sha256(name, &digest));
        }
    }
    Ok(())
}

/// A failed output write, as the build reports it.
fn written(e: OutputError) -> BuildError {
    BuildError::Output(e)
}

/// `linux/arm/v7` → `linux_arm_v7`: a platform's directory in multi-platform local and tar outputs.
fn platform_dir(p: &oci::Platform) -> String {
    p.to_string().replace('/', "_")
}

/// Copies a final filesystem into `dest` (`-o type=local`).
fn copy_tree(fs_root: &Path, dest: &Path) -> Result<(), String> {
    let copy = solver::llb::CopyAction::whole_tree(0);
    let input = solver::fileop::Input {
        root: fs_root.to_path_buf(),
        default_owner: None,
        ignore: vec![],
        reused: None,
    };
    solver::fileop::apply(dest, &[solver::llb::FileAction::Copy(copy)], &[input])
        .map_err(|e| e.to_string())
}

/// Named filesystem trees (`linux_amd64` → a mounted view), what a multi-platform tar output is written from.
type Trees<'a> = [(String, &'a Path)];

/// Mounts every platform's final filesystem (recursively, one per level) and calls `f` with all of them, each
/// under its platform's directory name.
fn with_final_fss(
    snapshots: &Snapshotter,
    rest: &[Built],
    trees: &mut Vec<(String, PathBuf)>,
    f: &mut dyn FnMut(&Trees) -> Result<(), String>,
) -> Result<(), BuildError> {
    match rest.split_first() {
        None => {
            let borrowed: Vec<(String, &Path)> = trees
                .iter()
                .map(|(n, p)| (n.clone(), p.as_path()))
                .collect();
            f(&borrowed).map_err(BuildError::Failed)
        }
        Some((b, rest)) => {
            let mut inner: Result<(), BuildError> = Ok(());
            with_final_fs(snapshots, b.snapshot.as_deref(), |fs_root| {
                trees.push((platform_dir(&b.platform), fs_root.to_path_buf()));
                inner = with_final_fss(snapshots, rest, trees, f);
                trees.pop();
                Ok(())
            })?;
            inner
        }
    }
}

/// Calls `f` with `snapshot`'s final filesystem mounted read-only (an empty directory for none).
pub(crate) fn with_final_fs(
    snapshots: &Snapshotter,
    snapshot: Option<&str>,
    f: impl FnOnce(&Path) -> Result<(), String>,
) -> Result<(), BuildError> {
    let view = view_dir()?;
    let result = match snapshot {
        Some(id) => {
            let m = snapshots.mount_readonly(id, &view)?;
            let r = f(m.path());
            drop(m);
            r
        }
        None => f(&view),
    };
    let _ = std::fs::remove_dir(&view);
    result.map_err(BuildError::Failed)
}

/// An empty directory to mount a final filesystem on; each call its own, as several may be mounted at once.
fn view_dir() -> Result<PathBuf, BuildError> {
    static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let p = std::env::temp_dir().join(format!("kiln-view-{}-{n}", std::process::id()));
    std::fs::create_dir_all(&p).map_err(|e| fail(format!("{}: {e}", p.display())))?;
    Ok(p)
}
