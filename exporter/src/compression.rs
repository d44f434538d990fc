//! The compressions a layer can be written with. Image assembly and the registry re-compression both pick one, so
//! it lives apart from either.

/// Layer compression.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    /// gzip at a level (0–9), compressed on every core with the same bytes whatever their number.
    Gzip(u32),
    /// zstd at a level (1–22).
    Zstd(i32),
    /// No compression.
    None,
}

impl Compression {
    pub(crate) fn tag(&self) -> String {
        match self {
            // "pgzip2": the block-parallel encoder, whose bytes differ from a one-stream gzip of the same level
            // (its second format: a gzip member ends after each block libdeflate deflated).
            Compression::Gzip(l) => format!("pgzip2-{l}"),
            Compression::Zstd(l) => format!("zstd-{l}"),
            Compression::None => "none".to_string(),
        }
    }
}
