//! The operations a vertex can hold. Each is plain data with a canonical serialization (fields in declaration
//! order, maps sorted); inputs are referred to by their position in the vertex's input list, never by identity,
//! so an op's bytes do not depend on where its inputs came from.

use crate::Platform;
use serde::{Deserialize, Serialize};

/// One LLB operation.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Op {
    /// Brings content in from outside the graph.
    Source(SourceOp),
    /// Runs a process over a root filesystem and mounts.
    Exec(ExecOp),
    /// Copies, creates or removes files, without a sandbox.
    File(FileOp),
    /// Stacks its inputs' filesystems, later inputs on top (COPY --link).
    Merge(MergeOp),
}

/// Where a source's content comes from.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "source", rename_all = "snake_case")]
pub enum SourceOp {
    /// A container image by reference.
    Image(ImageSource),
    /// A directory the client provides (the build context or a named context).
    Local(LocalSource),
    /// A file downloaded over HTTP(S) (ADD URL).
    Http(HttpSource),
    /// A git repository (ADD git URL).
    Git(GitSource),
    /// An image inside an OCI layout directory (`--build-context name=oci-layout://...`).
    OciLayout(OciLayoutSource),
}

/// How an image reference is resolved to a manifest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ResolveMode {
    /// Use a local copy when there is one, else pull.
    #[default]
    Default,
    /// Always ask the registry (`--pull`).
    ForcePull,
    /// Prefer what the local store holds.
    PreferLocal,
}

/// An image source.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ImageSource {
    /// A normalised reference, e.g. `docker.io/library/alpine:3.20`.
    pub reference: String,
    /// The platform to select from an index.
    pub platform: Platform,
    /// Pull policy.
    pub resolve_mode: ResolveMode,
}

/// A local directory: the context, or a named context given as a directory.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct LocalSource {
    /// Which client directory: `context`, `dockerfile`, or a named context's name.
    pub name: String,
    /// Only these paths are transferred (and hashed); empty means everything.
    pub include_patterns: Vec<String>,
    /// .dockerignore patterns, in Docker's pattern syntax.
    pub exclude_patterns: Vec<String>,
    /// Paths that must be followed if they are symlinks.
    pub follow_paths: Vec<String>,
}

/// An HTTP(S) download.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct HttpSource {
    /// The URL.
    pub url: String,
    /// `ADD --checksum`: the content must have this digest.
    pub checksum: Option<String>,
    /// The file name to store it under (from the URL's last path segment).
    pub filename: String,
    /// Mode bits of the downloaded file.
    pub mode: Option<u32>,
}

/// A git checkout.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct GitSource {
    /// The remote URL without the fragment.
    pub remote: String,
    /// Branch, tag or commit from the URL fragment.
    pub reference: Option<String>,
    /// Sub-directory from the URL fragment.
    pub subdir: Option<String>,
    /// `ADD --keep-git-dir`.
    pub keep_git_dir: bool,
    /// `ADD --checksum`: the commit the ref must resolve to.
    pub checksum: Option<String>,
}

/// An image in an OCI layout.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct OciLayoutSource {
    /// The layout directory as the user named it.
    pub path: String,
    /// Tag or digest inside the layout.
    pub reference: String,
    /// The platform to select from an index.
    pub platform: Platform,
}

/// Network access of a process.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NetworkMode {
    /// Its own namespace with outbound access.
    #[default]
    Default,
    /// Loopback only.
    None,
    /// The host's network (needs `--allow network.host`).
    Host,
}

/// Privilege of a process.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SecurityMode {
    /// Docker's default capability set and seccomp profile.
    #[default]
    Sandbox,
    /// All capabilities, no seccomp (needs `--allow security.insecure`).
    Insecure,
}

/// A process to run: BuildKit's ExecOp.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ExecOp {
    /// argv.
    pub args: Vec<String>,
    /// `KEY=value`, in order.
    pub env: Vec<String>,
    /// Working directory (absolute).
    pub cwd: String,
    /// `user[:group]` as the Dockerfile gave it, resolved inside the rootfs at run time.
    pub user: String,
    /// Mounts; the one at `/` with `output: true` is the root filesystem whose changes form the new snapshot.
    pub mounts: Vec<Mount>,
    /// Network mode.
    pub network: NetworkMode,
    /// Security mode.
    pub security: SecurityMode,
    /// Proxy variables from build args (`http_proxy` and the rest, each in both cases), added to the environment
    /// when the process runs. Left out of the serialization, and so of the digest and every cache key: BuildKit
    /// keeps its ProxyEnv out of the cache key, so a different proxy never reruns a step (its testBuiltinArgs).
    #[serde(skip)]
    pub proxy_env: Vec<String>,
    /// `kiln build --add-host`: lines added to the step's `/etc/hosts` (BuildKit's `Meta.ExtraHosts`). Part of the
    /// digest; the cache key keeps the names but not the addresses, as BuildKit's exec CacheMap clears `IP`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub extra_hosts: Vec<HostIp>,
    /// `kiln build --ulimit`: resource limits of the step's process (BuildKit's `Meta.Ulimit`), part of the key.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ulimits: Vec<Ulimit>,
    /// `RUN --device`: CDI devices injected into the step (BuildKit's `ExecOp.CdiDevices`), part of the key;
    /// each needs the `device` entitlement.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cdi_devices: Vec<CdiDevice>,
}

/// One `/etc/hosts` entry a build adds to its steps (`--add-host host=ip`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct HostIp {
    /// The name (lower-cased, as BuildKit's dockerui reads it).
    pub host: String,
    /// The address, as text (IPv4 or IPv6).
    pub ip: String,
}

/// One resource limit (`--ulimit nofile=1024:2048`), as docker/go-units parses it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Ulimit {
    /// The resource's short name (`nofile`, `nproc`, ...).
    pub name: String,
    /// Soft limit; -1 is unlimited.
    pub soft: i64,
    /// Hard limit; -1 is unlimited.
    pub hard: i64,
}

/// A CDI device a step asks for (`RUN --device=vendor.com/class=name`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct CdiDevice {
    /// `vendor.com/class=name`, `vendor.com/class` (the first of that kind), `vendor.com/class=*` (all of it), or
    /// a class annotation's value.
    pub name: String,
    /// A device that is not registered is skipped with a warning instead of failing the build.
    pub optional: bool,
}

/// Sharing mode of a cache mount.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CacheSharing {
    /// Concurrent writers share one directory.
    #[default]
    Shared,
    /// Each concurrent writer gets its own copy.
    Private,
    /// Writers take turns.
    Locked,
}

/// What kind of mount, with its kind-specific options.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum MountKind {
    /// The input's filesystem (root or `--mount=type=bind`).
    Bind,
    /// A persistent cache directory shared across builds.
    Cache {
        /// Cache id (defaults to the target path).
        id: String,
        /// Sharing mode.
        sharing: CacheSharing,
        /// uid of a freshly created cache directory.
        uid: u32,
        /// gid of a freshly created cache directory.
        gid: u32,
        /// Mode of a freshly created cache directory.
        mode: u32,
        /// uid, gid or mode were given: BuildKit gives such a cache a base (a directory with those settings)
        /// that a step ignoring the cache rebuilds, so under `--no-cache` the step starts the cache afresh. A
        /// cache without one (and no `from=`) keeps its contents.
        #[serde(default, skip_serializing_if = "is_false")]
        settings: bool,
    },
    /// A fresh tmpfs.
    Tmpfs {
        /// Size limit in bytes.
        size: Option<u64>,
    },
    /// A secret file (or env variable) that never lands in a layer.
    Secret {
        /// Secret id.
        id: String,
        /// Expose as this environment variable instead of (or besides) a file.
        env: Option<String>,
        /// Owner uid.
        uid: u32,
        /// Owner gid.
        gid: u32,
        /// File mode.
        mode: u32,
        /// Fail when the secret is not provided.
        required: bool,
    },
    /// An SSH agent socket.
    Ssh {
        /// Agent id.
        id: String,
        /// Owner uid.
        uid: u32,
        /// Owner gid.
        gid: u32,
        /// Socket mode.
        mode: u32,
        /// Fail when no agent is provided.
        required: bool,
    },
}

/// One mount of an exec.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Mount {
    /// Index into the vertex's inputs; `None` for scratch (or for cache/tmpfs/secret/ssh mounts).
    pub input: Option<usize>,
    /// Path inside the input that is mounted (`/` for all of it).
    pub selector: String,
    /// Mount point inside the process.
    pub target: String,
    /// Read-only.
    pub readonly: bool,
    /// Whether this mount's changes are the op's output (only the root mount of a RUN).
    pub output: bool,
    /// Kind and its options.
    pub kind: MountKind,
}

/// A user or group: numeric, or a name resolved against the rootfs's /etc/passwd and /etc/group.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UserRef {
    /// Numeric id.
    Id(u32),
    /// Name to resolve.
    Name(String),
}

/// `--chown=user[:group]`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Chown {
    /// Owner.
    pub user: UserRef,
    /// Group; when absent, the user's primary group (or the same id when numeric).
    pub group: Option<UserRef>,
}

/// `--chmod`: octal, or symbolic (`u+x`, as BuildKit 1.14 accepts).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FileMode {
    /// Octal mode bits.
    Octal(u32),
    /// Symbolic mode, applied relative to each file's own mode.
    Symbolic(String),
}

/// Copy from one of the vertex's inputs into the op's filesystem.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct CopyAction {
    /// Index into the vertex's inputs the files come from.
    pub source: usize,
    /// Source path (may hold wildcards when `allow_wildcard`).
    pub src: String,
    /// Destination path (absolute; a trailing `/` means "into this directory").
    pub dest: String,
    /// New owner.
    pub chown: Option<Chown>,
    /// New mode.
    pub mode: Option<FileMode>,
    /// Follow a symlink named as the source.
    pub follow_symlinks: bool,
    /// Copy a directory's contents rather than the directory itself.
    pub copy_dir_contents: bool,
    /// ADD: unpack a local tar archive.
    pub unpack_archive: bool,
    /// Create missing parent directories of the destination.
    pub create_dest_path: bool,
    /// Expand wildcards in `src`.
    pub allow_wildcard: bool,
    /// A wildcard that matches nothing is not an error.
    pub allow_empty_wildcard: bool,
    /// Only paths matching these are copied.
    pub include_patterns: Vec<String>,
    /// `--exclude` patterns.
    pub exclude_patterns: Vec<String>,
    /// `--parents`: keep the source's parent directories below the destination.
    pub parents: bool,
}

impl CopyAction {
    /// Everything of input `source` copied onto the destination's root: how merges and `-o type=local` lay one
    /// whole filesystem over another.
    pub fn whole_tree(source: usize) -> CopyAction {
        CopyAction {
            source,
            src: "/".to_string(),
            dest: "/".to_string(),
            chown: None,
            mode: None,
            follow_symlinks: false,
            copy_dir_contents: true,
            unpack_archive: false,
            create_dest_path: true,
            allow_wildcard: false,
            allow_empty_wildcard: true,
            include_patterns: vec![],
            exclude_patterns: vec![],
            parents: false,
        }
    }
}

/// One file action; a file op applies its actions in order.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum FileAction {
    /// Copy files in.
    Copy(CopyAction),
    /// Create a file with given content (heredoc files).
    Mkfile {
        /// Absolute path.
        path: String,
        /// Mode bits.
        mode: u32,
        /// Content.
        data: String,
        /// Owner.
        chown: Option<Chown>,
    },
    /// Create a directory (WORKDIR).
    Mkdir {
        /// Absolute path.
        path: String,
        /// Mode bits.
        mode: u32,
        /// Create parents.
        make_parents: bool,
        /// Owner.
        chown: Option<Chown>,
    },
    /// Remove a path.
    Rm {
        /// Absolute path.
        path: String,
        /// Missing path is not an error.
        allow_not_found: bool,
        /// Expand wildcards.
        allow_wildcard: bool,
    },
}

/// File operations over a base filesystem.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct FileOp {
    /// Index into the vertex's inputs of the base filesystem; `None` starts from an empty one.
    pub base: Option<usize>,
    /// Actions, applied in order.
    pub actions: Vec<FileAction>,
}

/// Layers its inputs (by index) in order; the result equals copying each on top of the previous.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct MergeOp {
    /// Input indexes, bottom first.
    pub layers: Vec<usize>,
}

impl Op {
    /// A short name of the op's kind, for graph renderings and progress.
    pub fn kind(&self) -> &'static str {
        match self {
            Op::Source(SourceOp::Image(_)) => "image",
            Op::Source(SourceOp::Local(_)) => "local",
            Op::Source(SourceOp::Http(_)) => "http",
            Op::Source(SourceOp::Git(_)) => "git",
            Op::Source(SourceOp::OciLayout(_)) => "oci-layout",
            Op::Exec(_) => "exec",
            Op::File(_) => "file",
            Op::Merge(_) => "merge",
        }
    }
}

fn is_false(b: &bool) -> bool {
    !*b
}
