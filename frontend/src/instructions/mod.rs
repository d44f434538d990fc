//! The instructions layer: each parser node checked and turned into a typed command (BuildKit's
//! `instructions` package). Argument counts, flags and forms are validated here; variables are expanded later,
//! at lowering, because their values depend on the stage being built.

mod command;
pub mod device;
mod duration;
pub mod flags;
pub mod mounts;
mod stages;

pub use command::mount_spec;
pub use command::{
    AddCommand, ArgDecl, CmdLine, Command, CopyCommand, FromCommand, HealthcheckCommand,
    Instruction, KeyValue, RunCommand, SourceFile,
};
pub use stages::{parse_dockerfile, parse_dockerfile_for_checks, Stage, Stages};
