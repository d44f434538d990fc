//! Where kiln keeps its state: `--root`, else KILN_ROOT, else /var/lib/kiln for root and $XDG_DATA_HOME/kiln
//! (or ~/.local/share/kiln) for other users.

use std::path::PathBuf;

use crate::cli::RootArgs;

/// The root directory for this invocation.
pub fn root_dir(args: &RootArgs) -> PathBuf {
    if let Some(r) = &args.root {
        return r.clone();
    }
    let is_root = std::fs::metadata("/proc/self")
        .map(|m| std::os::unix::fs::MetadataExt::uid(&m) == 0)
        .unwrap_or(false);
    if is_root {
        return PathBuf::from("/var/lib/kiln");
    }
    if let Some(x) = std::env::var_os("XDG_DATA_HOME") {
        return PathBuf::from(x).join("kiln");
    }
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("."));
    home.join(".local/share/kiln")
}
