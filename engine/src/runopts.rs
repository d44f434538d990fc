//! The flags that shape every RUN step of a build as `docker build` has them: `--add-host`, `--shm-size` and
//! `--ulimit` (read here as buildx and docker/go-units read them), and the `device` entitlement that CDI devices
//! (`RUN --device`) need, checked before any step runs as BuildKit's ValidateEntitlements checks it.

use std::collections::BTreeSet;
use std::net::IpAddr;

use solver::llb::{Definition, HostIp, Op, Ulimit, VertexId};

use crate::error::BuildError;

/// `--add-host host=ip` or `host:ip` (buildx's toBuildkitExtraHosts: `=` first, else the first `:`, so
/// `h:::1` is an IPv6 address; an address in brackets is taken out of them). The name is lower-cased and the
/// address written in its canonical form, as BuildKit's dockerui parses and prints them.
pub fn parse_add_host(spec: &str) -> Result<HostIp, String> {
    let (host, ip) = spec
        .split_once('=')
        .or_else(|| spec.split_once(':'))
        .filter(|(h, ip)| !h.is_empty() && !ip.is_empty())
        .ok_or_else(|| format!("invalid host {spec}"))?;
    if ip == "host-gateway" {
        return Err(format!(
            "invalid host {spec}: kiln has no host-gateway address to give (name the host's address instead)"
        ));
    }
    let ip = match ip.strip_prefix('[').and_then(|i| i.strip_suffix(']')) {
        Some(inner) if !inner.is_empty() => inner,
        _ => ip,
    };
    let addr: IpAddr = ip.parse().map_err(|_| format!("invalid host {spec}"))?;
    // Go prints an IPv4-mapped IPv6 address as the IPv4 one.
    let addr = match addr {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(addr, IpAddr::V4),
        v4 => v4,
    };
    Ok(HostIp {
        host: host.to_lowercase(),
        ip: addr.to_string(),
    })
}

/// The resource names docker/go-units accepts (`as` is left out there too).
const ULIMIT_NAMES: [&str; 15] = [
    "core",
    "cpu",
    "data",
    "fsize",
    "locks",
    "memlock",
    "msgqueue",
    "nice",
    "nofile",
    "nproc",
    "rss",
    "rtprio",
    "rttime",
    "sigpending",
    "stack",
];

/// `--ulimit name=soft[:hard]` as docker/go-units' ParseUlimit reads it, with its messages: the hard limit is the
/// soft one when not given, -1 is unlimited, and the soft limit may not exceed the hard one.
pub fn parse_ulimit(spec: &str) -> Result<Ulimit, String> {
    let (name, values) = spec
        .split_once('=')
        .ok_or_else(|| format!("invalid ulimit argument: {spec}"))?;
    if !ULIMIT_NAMES.contains(&name) {
        return Err(format!("invalid ulimit type: {name}"));
    }
    let number = |v: &str| {
        v.parse::<i64>()
            .map_err(|_| format!("strconv.ParseInt: parsing {v:?}: invalid syntax"))
    };
    let parts: Vec<&str> = values.split(':').collect();
    let (soft, hard) = match parts.as_slice() {
        [s] => (number(s)?, number(s)?),
        [s, h] => (number(s)?, number(h)?),
        _ => {
            return Err(format!(
                "too many limit value arguments - {values}, can only have up to two, `soft[:hard]`"
            ))
        }
    };
    if hard != -1 {
        if soft == -1 {
            return Err(format!(
                "ulimit soft limit must be less than or equal to hard limit: soft: -1 (unlimited), hard: {hard}"
            ));
        }
        if soft > hard {
            return Err(format!(
                "ulimit soft limit must be less than or equal to hard limit: {soft} > {hard}"
            ));
        }
    }
    Ok(Ulimit {
        name: name.to_string(),
        soft,
        hard,
    })
}

/// `--shm-size`: bytes, or a number with b, k, m or g (binary units, as Docker's MemBytes reads it); 0 leaves the
/// runtime's 64 MiB `/dev/shm`.
pub fn parse_shm_size(spec: &str) -> Result<Option<u64>, String> {
    let bytes =
        crate::size::parse_bytes(spec).map_err(|e| format!("invalid size: '{spec}': {e}"))?;
    Ok((bytes > 0).then_some(bytes))
}

/// What `--allow` grants of the `device` entitlement: every device (`device`), or the devices named
/// (`device=vendor.com/class=name`, repeatable), as BuildKit's DevicesConfig.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeviceGrant {
    /// `--allow device`.
    pub all: bool,
    /// `--allow device=NAME`.
    pub names: Vec<String>,
}

/// Checks every `--allow` value (BuildKit's entitlements: `network.host`, `security.insecure`, `device` or
/// `device=NAME`) and returns what it grants of devices.
pub fn device_grant(allow: &BTreeSet<String>) -> Result<DeviceGrant, BuildError> {
    let mut grant = DeviceGrant::default();
    for a in allow {
        match a.split_once('=') {
            None if a == "device" => grant.all = true,
            None if a == "network.host" || a == "security.insecure" => {}
            Some(("device", "")) => grant.all = true,
            Some(("device", rest)) => {
                let mut fields = rest.split(',');
                let name = fields.next().unwrap_or_default();
                if let Some(f) = fields.next() {
                    return Err(BuildError::Invalid(format!(
                        "--allow {a}: unknown device config key {:?} (kiln takes device=NAME)",
                        f.split_once('=').map_or(f, |(k, _)| k)
                    )));
                }
                grant.names.push(name.to_string());
            }
            _ => {
                return Err(BuildError::Invalid(format!(
                    "--allow {a}: unknown entitlement {a} (valid: network.host, security.insecure, device, device=NAME)"
                )))
            }
        }
    }
    Ok(grant)
}

/// Whether any step `roots` need asks for a CDI device.
pub fn wants_devices(def: &Definition, roots: &[VertexId]) -> bool {
    def.closure(roots)
        .into_iter()
        .any(|id| matches!(&def.vertex(id).op, Op::Exec(e) if !e.cdi_devices.is_empty()))
}

/// Refuses a step's CDI devices that `grant` does not cover, in BuildKit's words (`device X is requested by the
/// build but not allowed`), and a required device no spec registers (`required device "X" is not registered`), all
/// before any step runs; an optional one that is missing is returned as a warning.
pub fn check_devices(
    def: &Definition,
    roots: &[VertexId],
    grant: &DeviceGrant,
    registry: &executor::cdi::Registry,
) -> Result<Vec<String>, BuildError> {
    let mut warnings = Vec::new();
    let mut granted = BTreeSet::new();
    for n in &grant.names {
        let found = registry
            .find(n, false)
            .map_err(|e| BuildError::Invalid(format!("--allow device={n}: {e}")))?;
        granted.extend(found);
    }
    for id in def.closure(roots) {
        let v = def.vertex(id);
        let Op::Exec(e) = &v.op else { continue };
        let mut forbidden = Vec::new();
        for d in &e.cdi_devices {
            let found = registry
                .find(&d.name, d.optional)
                .map_err(|err| BuildError::Invalid(format!("{}: {err}", v.meta.description)))?;
            if found.is_empty() {
                warnings.push(format!("Optional device {:?} is not registered", d.name));
            }
            for f in found {
                if !grant.all && !granted.contains(&f) && !registry.auto_allowed(&f) {
                    forbidden.push(f);
                }
            }
        }
        forbidden.dedup();
        let said = match forbidden.as_slice() {
            [] => continue,
            [one] => format!("device {one} is requested by the build but not allowed"),
            many => format!(
                "devices {} are requested by the build but not allowed",
                many.join(", ")
            ),
        };
        return Err(BuildError::Invalid(format!(
            "{}: {said} (RUN --device needs `--allow device`)",
            v.meta.description
        )));
    }
    Ok(warnings)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host(h: &str, ip: &str) -> HostIp {
        HostIp {
            host: h.into(),
            ip: ip.into(),
        }
    }

    #[test]
    fn add_host_takes_both_forms_as_buildx_does() {
        assert_eq!(parse_add_host("db:10.0.0.5"), Ok(host("db", "10.0.0.5")));
        assert_eq!(parse_add_host("DB=10.0.0.5"), Ok(host("db", "10.0.0.5")));
        assert_eq!(parse_add_host("v6:::1"), Ok(host("v6", "::1")));
        assert_eq!(
            parse_add_host("v6=[2001:db8::0001]"),
            Ok(host("v6", "2001:db8::1"))
        );
        assert_eq!(parse_add_host("m=::ffff:1.2.3.4"), Ok(host("m", "1.2.3.4")));
        assert_eq!(parse_add_host("nohost"), Err("invalid host nohost".into()));
        assert_eq!(
            parse_add_host("=1.2.3.4"),
            Err("invalid host =1.2.3.4".into())
        );
        assert_eq!(
            parse_add_host("a=1.2.3"),
            Err("invalid host a=1.2.3".into())
        );
        assert!(parse_add_host("a:host-gateway")
            .unwrap_err()
            .contains("host-gateway"));
    }

    #[test]
    fn ulimits_as_go_units_parses_them() {
        let u = |n: &str, s, h| Ulimit {
            name: n.into(),
            soft: s,
            hard: h,
        };
        assert_eq!(
            parse_ulimit("nofile=1024:2048"),
            Ok(u("nofile", 1024, 2048))
        );
        assert_eq!(parse_ulimit("nproc=512"), Ok(u("nproc", 512, 512)));
        assert_eq!(parse_ulimit("core=-1"), Ok(u("core", -1, -1)));
        assert_eq!(parse_ulimit("core=0:-1"), Ok(u("core", 0, -1)));
        assert_eq!(
            parse_ulimit("nofile"),
            Err("invalid ulimit argument: nofile".into())
        );
        assert_eq!(parse_ulimit("as=1"), Err("invalid ulimit type: as".into()));
        assert_eq!(
            parse_ulimit("nofile=1:2:3"),
            Err(
                "too many limit value arguments - 1:2:3, can only have up to two, `soft[:hard]`"
                    .into()
            )
        );
        assert_eq!(
            parse_ulimit("nofile=4096:1024"),
            Err("ulimit soft limit must be less than or equal to hard limit: 4096 > 1024".into())
        );
        assert_eq!(
            parse_ulimit("nofile=-1:1024"),
            Err("ulimit soft limit must be less than or equal to hard limit: soft: -1 (unlimited), hard: 1024".into())
        );
        assert!(parse_ulimit("nofile=many")
            .unwrap_err()
            .contains("invalid syntax"));
    }

    #[test]
    fn shm_sizes_and_entitlements() {
        assert_eq!(parse_shm_size("128m"), Ok(Some(128 << 20)));
        assert_eq!(parse_shm_size("0"), Ok(None));
        assert!(parse_shm_size("lots")
            .unwrap_err()
            .starts_with("invalid size: 'lots'"));
        let set = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<BTreeSet<_>>();
        assert!(device_grant(&set(&["device"])).unwrap().all);
        assert_eq!(
            device_grant(&set(&["device=kiln.test/fake=zero", "network.host"])).unwrap(),
            DeviceGrant {
                all: false,
                names: vec!["kiln.test/fake=zero".into()]
            }
        );
        assert!(device_grant(&set(&["devices"]))
            .unwrap_err()
            .to_string()
            .contains("unknown entitlement devices"));
    }
}
