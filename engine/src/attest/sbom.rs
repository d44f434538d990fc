//! The SBOM attestation of one platform's final filesystem: kiln's own scan of the package databases in it
//! (`exporter::attestation::sbom`), as an SPDX 2.3 document — no scanner image is pulled or run.

use std::path::Path;
use std::sync::Arc;

use exporter::attestation::sbom;
use exporter::attestation::{Attestation, PREDICATE_SPDX};

use super::SbomOptions;
use crate::error::BuildError;

/// What a scan made: the attestation and how many packages it lists.
pub struct Made {
    /// The attestation.
    pub attestation: Attestation,
    /// The number of packages listed.
    pub packages: usize,
}

/// Scans the filesystem mounted at `fs_root` and makes its SBOM attestation, the document named `name` and
/// created at `created` (seconds since 1970).
pub fn attestation(
    opts: &SbomOptions,
    fs_root: &Path,
    name: &str,
    created: i64,
) -> Result<Made, BuildError> {
    let scan = sbom::scan(fs_root).map_err(|e| {
        BuildError::Failed(format!(
            "making the SBOM: cannot read the image's filesystem: {e}"
        ))
    })?;
    let doc = sbom::spdx::document(&scan, name, &exporter::image::rfc3339(created))
        .map_err(|e| BuildError::Failed(format!("making the SBOM: {e}")))?;
    Ok(Made {
        packages: scan.packages.len(),
        attestation: Attestation {
            predicate_type: PREDICATE_SPDX.to_string(),
            predicate: Arc::new(doc),
            filename: opts.filename.clone(),
            inline_only: false,
        },
    })
}

/// The SBOM attestation of one platform's result: its final snapshot mounted read-only and scanned; the time it
/// took and what it found said as a message. Dated SOURCE_DATE_EPOCH when set, else the build's start.
pub(crate) fn made(
    opts: &SbomOptions,
    snapshots: &solver::snapshot::Snapshotter,
    b: &crate::export::Built,
    name: &str,
    epoch: Option<i64>,
    started: i64,
    progress: &dyn crate::events::Progress,
) -> Result<Attestation, BuildError> {
    let t = std::time::Instant::now();
    let mut made = None;
    crate::export::with_final_fs(snapshots, b.snapshot.as_deref(), |fs_root| {
        made = Some(
            attestation(opts, fs_root, name, epoch.unwrap_or(started))
                .map_err(|e| e.to_string())?,
        );
        Ok(())
    })?;
    let made =
        made.ok_or_else(|| BuildError::Failed("making the SBOM: nothing was scanned".into()))?;
    progress.event(crate::events::Event::Message(format!(
        "kiln: SBOM of {}: {} package(s) listed in {:.2} s",
        b.platform,
        made.packages,
        t.elapsed().as_secs_f64()
    )));
    Ok(made.attestation)
}
