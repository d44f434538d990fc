//! Cache records brought in from elsewhere (`--cache-from`): a cache exported by another machine is read as a
//! list of portable records — a step's key, what the key was made of, and the layer blobs of its result — and
//! nothing else is fetched until a step of this build hits one. A record whose blob cannot be fetched is a miss,
//! never a failure.

use std::collections::HashMap;

use oci::manifest::Descriptor;
use oci::Digest;
use serde::{Deserialize, Serialize};

use super::key::KeyParts;

/// One step of an exported cache.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortableRecord {
    /// The step's cache key (`parts.key()`).
    pub key: Digest,
    /// What the key was made of, so that a later miss against it can be explained.
    pub parts: KeyParts,
    /// What the step was.
    pub description: String,
    /// The step's place in its Dockerfile.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slot: Option<String>,
    /// The layer blobs of the step's result, bottom first (its whole snapshot chain).
    pub layers: Vec<Descriptor>,
}

/// Where an imported cache's blobs come from (a directory, a registry): fetches one into the store, verified.
pub trait BlobSource: Sync + Send {
    /// Puts `blob` into the store, checking its digest; an error makes the record a miss.
    fn fetch(&self, blob: &Descriptor) -> Result<(), BlobError>;
    /// Names the source in messages (`registry.example/cache:main`, `/ci/cache`).
    fn describe(&self) -> String;
}

/// Why a [`BlobSource`] could not bring a blob into the store; the record that needed it is then a miss, and the
/// message tells the user why their imported cache was not used.
#[derive(Debug, thiserror::Error)]
pub enum BlobError {
    /// The store refused or failed to ingest it (a digest mismatch among others).
    #[error(transparent)]
    Store(#[from] oci::store::StoreError),
    /// Reading the blob from a directory failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The blob's file.
        path: std::path::PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// Fetching the blob from a registry failed.
    #[error(transparent)]
    Registry(#[from] oci::registry::RegistryError),
    /// Another source's reason, as it put it.
    #[error("{0}")]
    Other(String),
}

impl From<String> for BlobError {
    fn from(reason: String) -> BlobError {
        BlobError::Other(reason)
    }
}

/// Every imported record by key, each with the source it came from (the first source naming a key wins, as
/// `--cache-from` flags are given in order of preference).
#[derive(Default)]
pub struct ImportedCache {
    records: HashMap<Digest, (PortableRecord, usize)>,
    sources: Vec<Box<dyn BlobSource>>,
}

impl ImportedCache {
    /// No records.
    pub fn new() -> ImportedCache {
        ImportedCache::default()
    }

    /// Adds the records of one source. A record whose key does not match its parts is dropped: it could only
    /// ever be a wrong hit.
    pub fn add(&mut self, source: Box<dyn BlobSource>, records: Vec<PortableRecord>) {
        let index = self.sources.len();
        self.sources.push(source);
        for r in records {
            if r.parts.key() == r.key {
                self.records.entry(r.key.clone()).or_insert((r, index));
            }
        }
    }

    /// The record for `key` and where its blobs are.
    pub fn get(&self, key: &Digest) -> Option<(&PortableRecord, &dyn BlobSource)> {
        let (r, i) = self.records.get(key)?;
        Some((r, self.sources.get(*i)?.as_ref()))
    }

    /// Number of records.
    pub fn len(&self) -> usize {
        self.records.len()
    }

    /// True when nothing was imported.
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }
}

/// The digest naming a chain of layers (bottom first): imported snapshots are remembered by it, so two records
/// sharing their lower layers share those snapshots.
pub fn chain_id(layers: &[Descriptor]) -> Digest {
    let joined: Vec<String> = layers.iter().map(|l| l.digest.to_string()).collect();
    Digest::sha256_of(joined.join("\n").as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Nowhere;
    impl BlobSource for Nowhere {
        fn fetch(&self, _: &Descriptor) -> Result<(), BlobError> {
            Err(BlobError::Other("nowhere".into()))
        }
        fn describe(&self) -> String {
            "nowhere".into()
        }
    }

    fn record(path: &str) -> PortableRecord {
        let parts = crate::cache::key::mkdir_parts(path);
        PortableRecord {
            key: parts.key(),
            parts,
            description: path.into(),
            slot: None,
            layers: vec![],
        }
    }

    #[test]
    fn records_are_found_by_key_and_a_forged_key_is_dropped() {
        let mut c = ImportedCache::new();
        let good = record("/a");
        let mut forged = record("/b");
        forged.key = record("/c").key;
        c.add(Box::new(Nowhere), vec![good.clone(), forged]);
        assert_eq!(c.len(), 1);
        assert_eq!(
            c.get(&good.key).map(|(r, _)| r.description.clone()),
            Some("/a".into())
        );
        assert!(c.get(&record("/c").key).is_none());
    }

    #[test]
    fn chain_ids_depend_on_every_layer_in_order() {
        let d = |s: &str| Descriptor::new("x", Digest::sha256_of(s.as_bytes()), 1);
        assert_ne!(chain_id(&[d("a"), d("b")]), chain_id(&[d("b"), d("a")]));
        assert_ne!(chain_id(&[d("a")]), chain_id(&[d("a"), d("b")]));
        assert_eq!(chain_id(&[d("a"), d("b")]), chain_id(&[d("a"), d("b")]));
    }
}
