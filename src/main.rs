//! The `kiln` command: argument parsing, wiring and exit codes. Build logic lives in the library crates.

mod cache_io;
mod cli;
mod commands;
mod config;
mod outputs;
mod progress;
mod request;
mod resolver;
mod root;
mod rootless;
mod signals;
mod stdin_context;

use std::process::ExitCode;

use clap::Parser;

/// How a command failed, mapped to kiln's exit codes.
#[derive(Debug)]
pub enum Failure {
    /// Exit 1: the build itself failed (a RUN exited non-zero, a check configured as an error).
    Build(String),
    /// Exit 2: bad usage or a bad Dockerfile; the message is already rendered.
    Usage(String),
    /// Exit 128 + the signal: the build was stopped by SIGINT or SIGTERM (and cleaned up after).
    Interrupted(i32),
}

fn main() -> ExitCode {
    let cli = match cli::Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let code = if e.use_stderr() { 2 } else { 0 };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    // An ordinary user's kiln works inside a user namespace of its own (before any thread starts).
    if let Err(e) = rootless::enter() {
        eprintln!("error: rootless: {e}");
        return ExitCode::from(1);
    }
    let result = match cli.command {
        cli::Command::Graph(args) => commands::graph::run(&args),
        cli::Command::Check(args) => commands::check::run(&args),
        cli::Command::Build(args) => commands::build::run(&args),
        cli::Command::Import(args) => commands::import::run(&args),
        cli::Command::Images(args) => commands::images::run(&args),
        cli::Command::Load(args) => commands::archive::load(&args),
        cli::Command::Save(args) => commands::archive::save(&args),
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
    };
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
        Err(Failure::Interrupted(signal)) => {
            eprintln!("error: the build was stopped by signal {signal}; its running steps were killed and cleaned up");
            ExitCode::from((128 + signal).clamp(0, 255) as u8)
        }
    }
}
