//! kiln's command line, as clap structs: flag names follow `docker buildx build` where they overlap.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// A daemonless Dockerfile image builder.
#[derive(Debug, Parser)]
#[command(name = "kiln", version, about, propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Print the build graph a Dockerfile lowers to, without running anything.
    Graph(GraphArgs),
    /// Run BuildKit's build checks over a Dockerfile.
    Check(CheckArgs),
    /// Build an image from a Dockerfile.
    Build(Box<BuildArgs>),
    /// Make a one-layer image from a root filesystem tar (like `docker import`).
    Import(ImportArgs),
    /// List the images in kiln's store.
    Images(RootArgs),
    /// Load images from an OCI layout tar or a docker archive (like `docker load`).
    Load(LoadArgs),
    /// Write images of the store to an OCI layout tar or a docker archive (like `docker save`).
    Save(SaveArgs),
    /// Give an image of the store another name.
    Tag(TagArgs),
    /// Remove names from the store (the content goes with `kiln prune`).
    Rmi(RmiArgs),
    /// Print an image's manifest and config as JSON.
    Inspect(InspectArgs),
    /// Pull an image from a registry into the store.
    Pull(PullArgs),
    /// Push an image of the store to a registry.
    Push(PushArgs),
    /// Log in to a registry (credentials go to Docker's config.json, shared with docker, podman and skopeo).
    Login(LoginArgs),
    /// Log out of a registry.
    Logout(LogoutArgs),
    /// Show what kiln's root holds: images, build cache records and snapshots, cache mounts, loose blobs.
    Du(DuArgs),
    /// Remove build cache, least recently used first (images stay; `kiln rmi` removes those).
    Prune(PruneArgs),
    /// Check the whole root (blobs, images, cache records, snapshots, leftovers of interrupted builds); --repair
    /// removes what is damaged or dangles.
    Doctor(DoctorArgs),
}

/// `kiln doctor`.
#[derive(Debug, Args)]
pub struct DoctorArgs {
    #[command(flatten)]
    pub root: RootArgs,
    /// Remove what is damaged or dangles, and the leftovers of interrupted builds.
    #[arg(long)]
    pub repair: bool,
    /// Skip reading every blob back to check its digest.
    #[arg(long)]
    pub quick: bool,
}

/// `kiln du`.
#[derive(Debug, Clone, Args)]
pub struct DuArgs {
    #[command(flatten)]
    pub root: RootArgs,
    /// Also list every cache record with its size and when it was last used.
    #[arg(short, long)]
    pub verbose: bool,
}

/// `kiln prune`.
#[derive(Debug, Clone, Args)]
pub struct PruneArgs {
    #[command(flatten)]
    pub root: RootArgs,
    /// Also remove cache mount contents and the context stat caches.
    #[arg(short, long)]
    pub all: bool,
    /// Keep the most recently used build cache up to this size (e.g. 10g); remove the rest. BuildKit's older
    /// name of --reserved-space.
    #[arg(long = "keep-storage", value_name = "SIZE")]
    pub keep_storage: Option<String>,
    /// Never prune the build cache below this size; alone, prune down to it.
    #[arg(long = "reserved-space", value_name = "SIZE")]
    pub reserved_space: Option<String>,
    /// Prune while the build cache is larger than this (down to it).
    #[arg(long = "max-used-space", value_name = "SIZE")]
    pub max_used_space: Option<String>,
    /// Prune until the root's filesystem has this much free (or the reserved space is reached).
    #[arg(long = "min-free-space", value_name = "SIZE")]
    pub min_free_space: Option<String>,
    /// Only remove build cache unused for this long: until=DURATION (e.g. until=24h).
    #[arg(long, value_name = "until=DURATION")]
    pub filter: Option<String>,
    /// Do not ask for confirmation (required: kiln never prompts).
    #[arg(short, long)]
    pub force: bool,
}

/// How kiln reaches registries.
#[derive(Debug, Clone, Default, Args)]
pub struct RegistryArgs {
    /// A registry (host[:port]) that may be reached over plain HTTP, as Docker's insecure-registries; loopback
    /// registries always may.
    #[arg(
        long = "insecure-registry",
        value_name = "HOST",
        env = "KILN_INSECURE_REGISTRY",
        value_delimiter = ','
    )]
    pub insecure: Vec<String>,
    /// A PEM file of certificates to trust for registries, beside the system's.
    #[arg(
        long = "registry-ca",
        value_name = "FILE",
        env = "KILN_REGISTRY_CA",
        value_delimiter = ','
    )]
    pub ca: Vec<PathBuf>,
}

/// `kiln pull`.
#[derive(Debug, Clone, Args)]
pub struct PullArgs {
    #[command(flatten)]
    pub root: RootArgs,
    #[command(flatten)]
    pub registry: RegistryArgs,
    /// The image, `name[:tag|@digest]`.
    #[arg(value_name = "NAME")]
    pub name: String,
    /// Which image of a multi-platform index to take (default: this machine's).
    #[arg(long)]
    pub platform: Option<String>,
}

/// `kiln push`.
#[derive(Debug, Clone, Args)]
pub struct PushArgs {
    #[command(flatten)]
    pub root: RootArgs,
    #[command(flatten)]
    pub registry: RegistryArgs,
    /// The image in the store.
    #[arg(value_name = "NAME")]
    pub name: String,
    /// Where to push it (default: NAME itself).
    #[arg(value_name = "DESTINATION")]
    pub destination: Option<String>,
    /// Layer compression of what is pushed (uncompressed layers of the store are compressed once and kept).
    #[arg(long, default_value = "gzip", value_name = "gzip|zstd|uncompressed")]
    pub compression: String,
    /// Write the pushed manifest's digest to this file.
    #[arg(long = "digestfile", value_name = "FILE")]
    pub digest_file: Option<PathBuf>,
}

/// `kiln login`.
#[derive(Debug, Clone, Args)]
pub struct LoginArgs {
    #[command(flatten)]
    pub registry_args: RegistryArgs,
    /// The registry (default: Docker Hub).
    #[arg(value_name = "REGISTRY")]
    pub registry: Option<String>,
    /// User name.
    #[arg(short = 'u', long)]
    pub username: Option<String>,
    /// Password (prefer --password-stdin: a flag shows in the process list).
    #[arg(short = 'p', long)]
    pub password: Option<String>,
    /// Read the password from stdin.
    #[arg(long = "password-stdin")]
    pub password_stdin: bool,
}

/// `kiln logout`.
#[derive(Debug, Clone, Args)]
pub struct LogoutArgs {
    /// The registry (default: Docker Hub).
    #[arg(value_name = "REGISTRY")]
    pub registry: Option<String>,
}

/// `kiln load`.
#[derive(Debug, Clone, Args)]
pub struct LoadArgs {
    #[command(flatten)]
    pub root: RootArgs,
    /// The archive (plain or gzip), or `-` for stdin.
    #[arg(
        short = 'i',
        long = "input",
        value_name = "FILE|-",
        default_value = "-"
    )]
    pub input: PathBuf,
    /// Which image of a multi-platform index to take (default: this machine's).
    #[arg(long)]
    pub platform: Option<String>,
}

/// Archive formats of `kiln save`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SaveFormat {
    /// An OCI image layout tar.
    Oci,
    /// A docker archive (`docker load` reads it; it is an OCI layout too).
    Docker,
}

/// `kiln save`.
#[derive(Debug, Clone, Args)]
pub struct SaveArgs {
    #[command(flatten)]
    pub root: RootArgs,
    /// Images to save.
    #[arg(value_name = "NAME", required = true)]
    pub names: Vec<String>,
    /// Where to write (`-` for stdout).
    #[arg(short = 'o', long = "output", value_name = "FILE|-")]
    pub output: String,
    /// Archive format.
    #[arg(long, value_enum, default_value = "docker")]
    pub format: SaveFormat,
}

/// `kiln tag`.
#[derive(Debug, Clone, Args)]
pub struct TagArgs {
    #[command(flatten)]
    pub root: RootArgs,
    /// The image, by name.
    #[arg(value_name = "SOURCE")]
    pub source: String,
    /// The new name.
    #[arg(value_name = "TARGET")]
    pub target: String,
}

/// `kiln rmi`.
#[derive(Debug, Clone, Args)]
pub struct RmiArgs {
    #[command(flatten)]
    pub root: RootArgs,
    /// Names to remove.
    #[arg(value_name = "NAME", required = true)]
    pub names: Vec<String>,
}

/// `kiln inspect`.
#[derive(Debug, Clone, Args)]
pub struct InspectArgs {
    #[command(flatten)]
    pub root: RootArgs,
    /// The image, by name.
    #[arg(value_name = "NAME")]
    pub name: String,
    /// Print each attestation's in-toto statement (provenance, SBOM) in the `Attestations` list.
    #[arg(long)]
    pub attestations: bool,
}

/// `kiln check`: the request, and the root whose store its base images are resolved from (InvalidBaseImagePlatform
/// compares their platforms with the build's).
#[derive(Debug, Clone, Args)]
pub struct CheckArgs {
    #[command(flatten)]
    pub request: RequestArgs,
    #[command(flatten)]
    pub root: RootArgs,
}

/// Where kiln keeps its store, snapshots and cache.
#[derive(Debug, Clone, Args)]
pub struct RootArgs {
    /// kiln's root directory (default: /var/lib/kiln as root, else $XDG_DATA_HOME/kiln).
    #[arg(long, env = "KILN_ROOT", value_name = "DIR")]
    pub root: Option<PathBuf>,
}

/// `kiln build`.
#[derive(Debug, Clone, Args)]
pub struct BuildArgs {
    #[command(flatten)]
    pub request: RequestArgs,
    #[command(flatten)]
    pub root: RootArgs,
    /// Name (and tag) for the image, `name:tag`; implies `-o type=image`.
    #[arg(short = 't', long = "tag", value_name = "NAME")]
    pub tags: Vec<String>,
    /// Output: type=image[,name=N], type=registry, type=oci,dest=FILE|DIR[,tar=false], type=docker[,dest=FILE],
    /// type=local,dest=DIR, type=tar,dest=FILE.
    #[arg(short = 'o', long = "output", value_name = "SPEC")]
    pub outputs: Vec<String>,
    /// Load the image into the running Docker engine (DOCKER_HOST or /var/run/docker.sock), or Podman's with
    /// --load=podman (CONTAINER_HOST or /run/podman/podman.sock); shorthand for -o type=docker.
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "docker", value_name = "docker|podman")]
    pub load: Option<String>,
    /// Add an annotation to the image: KEY=VALUE (on the manifest), or TYPE:KEY=VALUE with TYPE manifest,
    /// manifest-descriptor, index or index-descriptor (a manifest type may name a platform: manifest[linux/arm64]:K=V).
    #[arg(long = "annotation", value_name = "[TYPE:]KEY=VALUE")]
    pub annotations: Vec<String>,
    /// Attach a provenance attestation (SLSA v1): true (mode=min), false, or attributes such as mode=max,
    /// version=v0.2, builder-id=ID; shorthand for --attest type=provenance,....
    #[arg(long, value_name = "true|false|ATTRS")]
    pub provenance: Option<String>,
    /// Attach an SBOM attestation (SPDX 2.3, made by kiln from the image's package databases): true or false;
    /// shorthand for --attest type=sbom.
    #[arg(long, value_name = "true|false|ATTRS")]
    pub sbom: Option<String>,
    /// Attach an attestation: type=provenance[,mode=min|max,version=v1|v0.2,...] or type=sbom (repeatable).
    #[arg(long = "attest", value_name = "type=TYPE[,KEY=VALUE...]")]
    pub attest: Vec<String>,
    /// Suppress the build output and print the image ID (config digest) on success.
    #[arg(short = 'q', long)]
    pub quiet: bool,
    /// Do not use the cache for any step.
    #[arg(long)]
    pub no_cache: bool,
    /// Do not use the cache for the steps of these stages.
    #[arg(long = "no-cache-filter", value_name = "STAGE")]
    pub no_cache_filter: Vec<String>,
    /// Progress output: auto (tty on a terminal, else plain), tty, plain, rawjson (BuildKit's SolveStatus stream), kiln-json (kiln's own events) or quiet.
    #[arg(long, default_value = "auto", value_name = "TYPE")]
    pub progress: String,
    /// Write the image id (config digest) to this file.
    #[arg(long, value_name = "FILE")]
    pub iidfile: Option<PathBuf>,
    /// Write build results (BuildKit's keys, e.g. containerimage.digest) as JSON to this file.
    #[arg(long = "metadata-file", value_name = "FILE")]
    pub metadata_file: Option<PathBuf>,
    /// A secret for RUN --mount=type=secret: id=ID,src=FILE or id=ID,env=VAR.
    #[arg(long = "secret", value_name = "SPEC")]
    pub secrets: Vec<String>,
    /// An SSH agent for RUN --mount=type=ssh: `default` ($SSH_AUTH_SOCK) or ID=SOCKET.
    #[arg(long = "ssh", value_name = "default|ID=SOCKET")]
    pub ssh: Vec<String>,
    /// Set a label on the image.
    #[arg(long = "label", value_name = "KEY=VALUE")]
    pub labels: Vec<String>,
    /// Default network of RUN steps: default, none or host.
    #[arg(long, default_value = "default")]
    pub network: String,
    /// Extra privileges: network.host, security.insecure, device (every CDI device) or device=NAME.
    #[arg(long = "allow", value_name = "ENTITLEMENT")]
    pub allow: Vec<String>,
    /// Add a line to every RUN step's /etc/hosts: host=ip or host:ip.
    #[arg(long = "add-host", value_name = "HOST=IP")]
    pub add_hosts: Vec<String>,
    /// Size of every RUN step's /dev/shm (bytes, or with a unit: 128m, 1g; default 64m).
    #[arg(long = "shm-size", value_name = "SIZE")]
    pub shm_size: Option<String>,
    /// A resource limit of every RUN step's process: name=soft[:hard], e.g. nofile=1024:2048.
    #[arg(long = "ulimit", value_name = "NAME=SOFT[:HARD]")]
    pub ulimits: Vec<String>,
    /// How many steps may run at once (default: the CPU count).
    #[arg(long = "max-parallelism", value_name = "N")]
    pub max_parallelism: Option<usize>,
    /// What runs RUN steps: kiln's own sandbox (`builtin`), or an OCI runtime binary such as runc, by name or
    /// path, fed the same spec.
    #[arg(
        long,
        env = "KILN_RUNTIME",
        default_value = "builtin",
        value_name = "builtin|runc|PATH"
    )]
    pub runtime: String,
    /// Run the build checks and report them instead of building: `--call=check` (as `docker build --check`).
    #[arg(long)]
    pub check: bool,
    /// Instead of building, answer a frontend subrequest as `docker buildx build --call` does: `check` (the
    /// build checks), `outline` (the target's build args, secrets and SSH ids) or `targets` (the stages), with
    /// `,format=json` for BuildKit's JSON and `,ignorestatus=true`; `build` (the default) builds.
    #[arg(long, value_name = "build|check|outline|targets[,format=json]")]
    pub call: Option<String>,
    /// Memory limit of each RUN step (bytes, or with a unit: 64m, 1g); a step over it is OOM-killed.
    #[arg(long, value_name = "SIZE")]
    pub memory: Option<String>,
    /// CPU time of each RUN step, in cores (1.5 = one and a half).
    #[arg(long, value_name = "N")]
    pub cpus: Option<f64>,
    /// Most processes and threads of each RUN step at once.
    #[arg(long = "pids-limit", value_name = "N")]
    pub pids_limit: Option<i64>,
    /// Write the build's timeline as Chrome trace-event JSON (open it in Perfetto or chrome://tracing).
    #[arg(long, value_name = "FILE")]
    pub trace: Option<PathBuf>,
    /// Always pull base images from their registries, even when the store has them.
    #[arg(long)]
    pub pull: bool,
    /// Push the image to the registries of its names (shorthand for -o type=image,push=true).
    #[arg(long)]
    pub push: bool,
    /// Split a step's layer larger than SIZE (e.g. 2g) into several layers along directory boundaries, so every
    /// blob fits a registry's size limit.
    #[arg(long = "layer-max-size", value_name = "SIZE")]
    pub layer_max_size: Option<String>,
    /// Import a build cache: type=local,src=DIR, type=registry,ref=REF, or a bare REF. May be repeated.
    #[arg(long = "cache-from", value_name = "SPEC")]
    pub cache_from: Vec<String>,
    /// Export the build cache: type=local,dest=DIR or type=registry,ref=REF, with mode=min|max and
    /// cache-mounts=true. May be repeated.
    #[arg(long = "cache-to", value_name = "SPEC")]
    pub cache_to: Vec<String>,
    #[command(flatten)]
    pub registry: RegistryArgs,
}

/// `kiln import`.
#[derive(Debug, Clone, Args)]
pub struct ImportArgs {
    #[command(flatten)]
    pub root: RootArgs,
    /// A tar of a root filesystem (plain or gzip), or `-` for stdin.
    #[arg(value_name = "FILE|-")]
    pub file: PathBuf,
    /// The image name, `name[:tag]`.
    #[arg(value_name = "NAME[:TAG]")]
    pub name: String,
    /// Platform recorded in the image config (default: this machine's).
    #[arg(long)]
    pub platform: Option<String>,
}

/// The parts of a build request that decide what the Dockerfile lowers to.
#[derive(Debug, Clone, Args)]
pub struct RequestArgs {
    /// Name of the Dockerfile (default: CONTEXT/Dockerfile; `-` reads it from stdin).
    #[arg(short = 'f', long = "file", value_name = "FILE")]
    pub file: Option<PathBuf>,
    /// The stage to build (default: the last one).
    #[arg(long, value_name = "STAGE")]
    pub target: Option<String>,
    /// Set a build-time variable; a bare KEY takes its value from the environment.
    #[arg(long = "build-arg", value_name = "KEY[=VALUE]")]
    pub build_args: Vec<String>,
    /// Additional build context: NAME=DIR, NAME=docker-image://REF or NAME=oci-layout://PATH[:TAG].
    #[arg(long = "build-context", value_name = "NAME=VALUE")]
    pub build_contexts: Vec<String>,
    /// Target platform (os/arch[/variant]); default: this machine's.
    #[arg(long, value_name = "PLATFORM")]
    pub platform: Option<String>,
    /// The build context directory.
    #[arg(value_name = "CONTEXT")]
    pub context: PathBuf,
}

/// Output format of `kiln graph`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum GraphFormat {
    /// Graphviz dot.
    Dot,
    /// JSON: vertices with digests, inputs, ops and descriptions.
    Json,
}

/// `kiln graph`.
#[derive(Debug, Clone, Args)]
pub struct GraphArgs {
    #[command(flatten)]
    pub request: RequestArgs,
    /// Output format.
    #[arg(long, value_enum, default_value = "dot")]
    pub format: GraphFormat,
}
