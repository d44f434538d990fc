//! What both ends of kiln need of OCI: digests, image configs, and (later) the content store and registry client.
