//! kiln's exporter: snapshots to layers and images. Its implementation arrives with the store/exporter issue.
