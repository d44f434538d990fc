//! The executor alone, without kiln build around it: runs `/bin/true` N times in ROOTFS and prints the median
//! milliseconds per run. `bench/runs.sh` calls it beside whole builds.
//!
//! Usage (as root): `overhead ROOTFS N builtin|runc|PATH default|none`

use std::time::Instant;

use executor::process::{Network, Process};
use executor::runtime::Runtime;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let [_, rootfs, n, runtime, network] = args.as_slice() else {
        return Err("usage: overhead ROOTFS N builtin|runc|PATH default|none".into());
    };
    let n: usize = n.parse()?;
    let work = tempfile::tempdir()?;
    let rt = Runtime::named(runtime, work.path());
    let p = Process {
        args: vec!["/bin/true".into()],
        env: vec!["PATH=/bin".into()],
        cwd: "/".into(),
        uid: 0,
        gid: 0,
        additional_gids: vec![],
        hostname: executor::process::SANDBOX_HOSTNAME.into(),
        rootfs: std::fs::canonicalize(rootfs)?,
        mounts: vec![],
        network: if network == "none" {
            Network::Isolated
        } else {
            Network::Outbound
        },
        limits: Default::default(),
        privileged: false,
        rlimits: vec![],
        devices: vec![],
    };
    let mut times = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        let o = rt.run(&p, &|_| {}, &|| false)?;
        times.push(t.elapsed().as_secs_f64() * 1000.0);
        if o.exit_code != 0 {
            return Err(format!("exit code {}: {:?}", o.exit_code, o.output).into());
        }
    }
    rt.finish();
    times.sort_by(f64::total_cmp);
    println!("{:.2}", times[n / 2]);
    Ok(())
}
