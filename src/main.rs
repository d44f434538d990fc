//! The `kiln` command: argument parsing, rendering the engine's events, printing its errors, exit codes. Build
//! logic lives in the `engine` crate and the crates below it.

mod cli;
mod commands;
mod progress;
mod request;
mod signals;

use std::process::ExitCode;

use clap::Parser;

/// Each engine error as a [`Failure`]: a usage error (the request or the Dockerfile was at fault) or a failure.
macro_rules! failures {
    ($($t:ty => $usage:expr),* $(,)?) => {$(
        impl From<$t> for Failure {
            fn from(e: $t) -> Failure {
                #[allow(clippy::redundant_closure_call)]
                let usage = ($usage)(&e);
                if usage {
                    Failure::Usage(e.to_string())
                } else {
                    Failure::Build(e.to_string())
                }
            }
        }
    )*};
}

failures! {
    engine::BuildError => engine::BuildError::is_usage,
    engine::gc::GcError => engine::gc::GcError::is_usage,
    engine::images::ImageError => engine::images::ImageError::is_usage,
    engine::registry::RegistryOpError => engine::registry::RegistryOpError::is_usage,
    engine::doctor::DoctorError => |_: &engine::doctor::DoctorError| false,
    engine::root::RootError => |_: &engine::root::RootError| false,
    engine::stdin_context::StageError => |_: &engine::stdin_context::StageError| true,
    oci::PlatformError => |_: &oci::PlatformError| true,
}

/// How a command failed, mapped to kiln's exit codes.
#[derive(Debug)]
pub enum Failure {
    /// Exit 1: the build itself failed (a RUN exited non-zero, a check configured as an error).
    Build(String),
    /// Exit 2: bad usage or a bad Dockerfile; the message is already rendered.
    Usage(String),
    /// Exit with this code and no message: what was to be said is printed (`--call=check` with findings).
    Exit(u8),
    /// Exit 128 + the signal: the build was stopped by SIGINT or SIGTERM (and cleaned up after).
    Interrupted(i32),
}

/// Large buffers go back to the kernel when freed, and threads share two malloc arenas. glibc's default raises its
/// mmap threshold to the largest block freed so far (up to 32 MiB), after which multi-MiB buffers come from
/// per-thread arenas that keep what is freed: a torch push held 140 MiB of RSS for ~40 MiB of live buffers. kiln's
/// big buffers (compression blocks, upload chunks, file copies) are pooled and reused, so with a fixed threshold
/// its RSS follows what is live; the arenas of short-lived threads (a build's compressor, each compression's
/// workers) kept another ~25 MiB of small freed blocks in a `build --push` until they share two (malloc traffic is
/// light once the big buffers are pooled). BENCHMARKS.md says where the memory goes.
fn bound_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets malloc parameters; it is called before any other thread exists.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 1 << 20);
        libc::mallopt(libc::M_ARENA_MAX, 2);
    }
}

fn main() -> ExitCode {
    bound_allocator();
    let cli = match cli::Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let code = if e.use_stderr() { 2 } else { 0 };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    // An ordinary user's kiln works inside a user namespace of its own (before any thread starts).
    if let Err(e) = engine::rootless::enter() {
        eprintln!("error: rootless: {e}");
        return ExitCode::from(1);
    }
    // A reader that went away (`kiln images | head`) makes `println!` panic; that is the end of the output, not a
    // bug to report: its message is kept off stderr, the command unwinds (its cleanup runs) and kiln exits 141
    // (128 + SIGPIPE), as a tool that SIGPIPE killed would. SIGPIPE's default cannot simply be restored: kiln
    // writes to sockets (registries), where EPIPE must stay an error.
    let report = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if !is_broken_stdout(info.payload()) {
            report(info)
        }
    }));
    let result =
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| dispatch(cli.command))) {
            Ok(r) => r,
            Err(p) if is_broken_stdout(&*p) => return ExitCode::from(141),
            Err(p) => std::panic::resume_unwind(p),
        };
    report_own_peak_rss();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Build(msg)) => {
            eprintln!("error: {msg}");
            ExitCode::from(1)
        }
        Err(Failure::Usage(msg)) => {
            eprintln!("error: {msg}");
            ExitCode::from(2)
        }
        Err(Failure::Exit(code)) => ExitCode::from(code),
        Err(Failure::Interrupted(signal)) => {
            eprintln!("error: the build was stopped by signal {signal}; its running steps were killed and cleaned up");
            ExitCode::from((128 + signal).clamp(0, 255) as u8)
        }
    }
}

/// With `KILN_PEAK_RSS=FILE`, writes kiln's own peak resident set (VmHWM, KiB) to FILE at exit: what the
/// benchmarks report as kiln's memory. GNU time's peak is the largest of kiln and every process it waited for,
/// which for a build is usually a RUN step's (pip unpacking torch), not kiln's.
fn report_own_peak_rss() {
    let Some(path) = std::env::var_os("KILN_PEAK_RSS") else {
        return;
    };
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    if let Some(kib) = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
    {
        let _ = std::fs::write(path, format!("{kib}\n"));
    }
}

/// Whether a panic is std's "failed printing to stdout" for a closed pipe.
fn is_broken_stdout(payload: &(dyn std::any::Any + Send)) -> bool {
    let msg = payload
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| payload.downcast_ref::<&str>().copied())
        .unwrap_or("");
    msg.starts_with("failed printing to stdout") && msg.contains("Broken pipe")
}

/// Runs the command the arguments name.
fn dispatch(command: cli::Command) -> Result<(), Failure> {
    match command {
        cli::Command::Graph(args) => commands::graph::run(&args),
        cli::Command::Check(args) => commands::check::run(&args.request, &args.root),
        cli::Command::Build(args) => commands::build::run(&args),
        cli::Command::Import(args) => commands::images::import(&args),
        cli::Command::Images(args) => commands::images::list(&args),
        cli::Command::Load(args) => commands::images::load(&args),
        cli::Command::Save(args) => commands::images::save(&args),
        cli::Command::Tag(args) => commands::images::tag(&args),
        cli::Command::Rmi(args) => commands::images::rmi(&args),
        cli::Command::Inspect(args) => commands::images::inspect(&args),
        cli::Command::Pull(args) => commands::registry::pull(&args),
        cli::Command::Push(args) => commands::registry::push(&args),
        cli::Command::Login(args) => commands::registry::login(&args),
        cli::Command::Logout(args) => commands::registry::logout(&args),
        cli::Command::Du(args) => commands::gc::du(&args),
        cli::Command::Prune(args) => commands::gc::prune(&args),
        cli::Command::Doctor(args) => commands::doctor::run(&args),
    }
}
