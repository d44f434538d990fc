//! Attestations as BuildKit attaches them to an image: in-toto statements ([`statement`]) about one platform's
//! image manifest, stored as the layers of an attestation manifest that the image index lists after the images
//! ([`manifest`]), and the SBOM kiln makes itself from the image's package databases ([`sbom`]).

pub mod manifest;
pub mod sbom;
pub mod statement;

pub use manifest::{is_attestation, retarget, store_attestation_manifest};
pub use statement::{image_purl, image_subjects, Attestation, Statement, Subject};

/// The media type of an in-toto statement layer (BuildKit's `intoto.PayloadType`).
pub const MEDIA_IN_TOTO: &str = "application/vnd.in-toto+json";
/// The `artifactType` of an attestation manifest (BuildKit's `attestationManifestArtifactType`).
pub const ARTIFACT_ATTESTATION_MANIFEST: &str =
    "application/vnd.docker.attestation.manifest.v1+json";
/// The media type of the empty config an OCI artifact manifest carries.
pub const MEDIA_EMPTY: &str = "application/vnd.oci.empty.v1+json";
/// The layer annotation naming a statement's predicate type.
pub const ANNOTATION_PREDICATE_TYPE: &str = "in-toto.io/predicate-type";
/// The index-descriptor annotation saying what an entry is (`attestation-manifest`).
pub const ANNOTATION_REFERENCE_TYPE: &str = "vnd.docker.reference.type";
/// The index-descriptor annotation naming the image manifest an attestation manifest is about.
pub const ANNOTATION_REFERENCE_DIGEST: &str = "vnd.docker.reference.digest";
/// The value of [`ANNOTATION_REFERENCE_TYPE`] on an attestation manifest's descriptor.
pub const REFERENCE_TYPE_ATTESTATION: &str = "attestation-manifest";
/// The predicate type of SLSA provenance v1.
pub const PREDICATE_SLSA_V1: &str = "https://slsa.dev/provenance/v1";
/// The predicate type of SLSA provenance v0.2.
pub const PREDICATE_SLSA_V02: &str = "https://slsa.dev/provenance/v0.2";
/// The predicate type of an SPDX document.
pub const PREDICATE_SPDX: &str = "https://spdx.dev/Document";
