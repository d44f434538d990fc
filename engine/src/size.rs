//! Sizes as users write them in flags and kiln.toml (`--memory`, `kiln prune --keep-storage`, `[gc]`,
//! KILN_REGISTRY_CHUNK): bytes, or a number with b, k, m or g in binary units (Docker's flag rules). This is the
//! one reader of the CLI and the engine. The frontend keeps a second one for `RUN --mount=type=tmpfs,size=`
//! (`frontend::instructions::mounts::parse_size`) on purpose: it follows BuildKit's reading of a Dockerfile
//! (also `t`, and the `ki`/`mi`/`gi` spellings, errors worded "invalid size: ..."), the frontend may depend on
//! no engine, and one set of rules for both would change what a flag or a Dockerfile accepts.

/// Why a size was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SizeError {
    /// Not a number with a unit.
    #[error("not a size (e.g. 512m, 2g)")]
    NotASize,
    /// Negative or not finite.
    #[error("must be positive")]
    Negative,
    /// Below Docker's 6 MiB minimum of memory limits.
    #[error("must be at least 6m (Docker's minimum)")]
    BelowMinimum,
}

/// A memory limit as Docker's flags take it: [`parse_bytes`], at least Docker's 6 MiB minimum.
pub fn parse_size(s: &str) -> Result<u64, SizeError> {
    let bytes = parse_bytes(s)?;
    if bytes < 6 << 20 {
        return Err(SizeError::BelowMinimum);
    }
    Ok(bytes)
}

/// A size in bytes, or a number with b, k, m or g (binary units); zero allowed.
pub fn parse_bytes(s: &str) -> Result<u64, SizeError> {
    let t = s.trim().to_ascii_lowercase();
    let (num, mult) = match t.trim_end_matches('b').chars().last() {
        Some('k') => (&t[..t.trim_end_matches('b').len() - 1], 1u64 << 10),
        Some('m') => (&t[..t.trim_end_matches('b').len() - 1], 1 << 20),
        Some('g') => (&t[..t.trim_end_matches('b').len() - 1], 1 << 30),
        _ => (t.trim_end_matches('b'), 1),
    };
    let n: f64 = num.parse().map_err(|_| SizeError::NotASize)?;
    if !(n >= 0.0 && n.is_finite()) {
        return Err(SizeError::Negative);
    }
    Ok((n * mult as f64) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_as_docker_reads_them() {
        assert_eq!(parse_size("64m"), Ok(64 << 20));
        assert_eq!(parse_size("1g"), Ok(1 << 30));
        assert_eq!(parse_size("1.5GB"), Ok(3 << 29));
        assert_eq!(parse_size("8388608"), Ok(8 << 20));
        assert!(parse_size("1k").is_err(), "below the minimum");
        assert!(parse_size("lots").is_err());
        assert!(parse_size("-5m").is_err());
        assert_eq!(parse_bytes("0"), Ok(0));
    }
}
