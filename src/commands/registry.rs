//! `kiln pull`, `kiln push`, `kiln login`, `kiln logout`.

use std::io::Read;

use engine::registry::{self, RegistryOptions};
use oci::registry::credentials::Credential;

use super::open_root;
use crate::cli::{LoginArgs, LogoutArgs, PullArgs, PushArgs, RegistryArgs};
use crate::Failure;

/// The registry flags as the engine takes them.
pub fn options(args: &RegistryArgs) -> RegistryOptions {
    RegistryOptions {
        insecure: args.insecure.clone(),
        ca: args.ca.clone(),
    }
}

/// Prints the lines the engine says about a push.
fn say(event: engine::Event) {
    if let engine::Event::Message(line) = event {
        eprintln!("{line}");
    }
}

/// Runs `kiln pull`.
pub fn pull(args: &PullArgs) -> Result<(), Failure> {
    let platform = engine::images::platform_or_host(args.platform.as_deref())?;
    let root = open_root(&args.root);
    let p = registry::pull(&root, &options(&args.registry), &args.name, &platform)?;
    println!(
        "{}: pulled {} ({} bytes downloaded)",
        p.reference, p.resolved, p.downloaded
    );
    Ok(())
}

/// Runs `kiln push`.
pub fn push(args: &PushArgs) -> Result<(), Failure> {
    let compression = match args.compression.as_str() {
        "gzip" => exporter::Compression::Gzip(6),
        "zstd" => exporter::Compression::Zstd(3),
        "uncompressed" => exporter::Compression::None,
        other => {
            return Err(Failure::Usage(format!(
                "--compression={other}: valid values are gzip, zstd, uncompressed"
            )))
        }
    };
    let root = open_root(&args.root);
    let opts = options(&args.registry);
    let dest = args.destination.as_deref();
    let pushed = registry::push(&root, &opts, &args.name, dest, compression, &say)?;
    if let Some(f) = &args.digest_file {
        std::fs::write(f, pushed.to_string()).map_err(|e| Failure::Build(e.to_string()))?;
    }
    Ok(())
}

/// Runs `kiln login`: checks the credential against the registry, then saves it as `docker login` does.
pub fn login(args: &LoginArgs) -> Result<(), Failure> {
    let registry = registry::registry_name(args.registry.as_deref());
    let username = args
        .username
        .clone()
        .ok_or_else(|| Failure::Usage("kiln login needs -u USER".to_string()))?;
    let password = match (&args.password, args.password_stdin) {
        (Some(_), true) => {
            return Err(Failure::Usage(
                "--password and --password-stdin are mutually exclusive".to_string(),
            ))
        }
        (Some(p), false) => p.clone(),
        (None, true) => {
            let mut s = String::new();
            std::io::stdin()
                .read_to_string(&mut s)
                .map_err(|e| Failure::Usage(format!("reading the password from stdin: {e}")))?;
            s.trim_end_matches(['\n', '\r']).to_string()
        }
        (None, false) => {
            return Err(Failure::Usage(
                "kiln login needs --password-stdin (or -p PASSWORD)".to_string(),
            ))
        }
    };
    if password.is_empty() {
        return Err(Failure::Usage("the password is empty".to_string()));
    }
    let cred = Credential {
        username,
        secret: password,
    };
    let saved = registry::login(&options(&args.registry_args), &registry, cred)?;
    println!("Login Succeeded ({registry}; saved in {})", saved.display());
    Ok(())
}

/// Runs `kiln logout`.
pub fn logout(args: &LogoutArgs) -> Result<(), Failure> {
    let registry = registry::registry_name(args.registry.as_deref());
    if registry::logout(&registry)? {
        println!("Removing login credentials for {registry}");
    } else {
        println!("Not logged in to {registry}");
    }
    Ok(())
}
