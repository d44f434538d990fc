//! Helpers for kiln's end-to-end tests, which drive the real `kiln` binary.
