//! EXPOSE port specs as BuildKit reads them (`dockerfile2llb/convert_expose.go`): `[ip:][hostPort:]port[/proto]`,
//! where the port may be a range. An IP address or a host port is accepted but only the container port is
//! exposed; the ExposeInvalidFormat and ExposeProtoCasing checks flag such specs.

use std::net::IpAddr;

use crate::finding::Finding;
use crate::parser::Span;

/// What one spec yields: the build checks it trips (reported even when the spec is then refused, as BuildKit
/// lints a spec before validating its numbers), and its `port/proto` entries or why it is invalid.
pub(crate) struct PortSpec {
    pub findings: Vec<Finding>,
    pub ports: Result<Vec<String>, String>,
}

/// Parses one expanded EXPOSE word; `span` locates the instruction for the findings.
pub(crate) fn parse_port_spec(raw: &str, span: Span) -> PortSpec {
    let mut findings = Vec::new();
    let (ip, host_port, container) = split_parts(raw);
    // The protocol follows the first `/`; none means tcp.
    let (port, proto) = container.split_once('/').unwrap_or((container, ""));
    if port.is_empty() {
        return PortSpec {
            findings,
            ports: Err(format!("EXPOSE {raw}: no port specified")),
        };
    }
    let proto_lower = proto.to_ascii_lowercase();
    if !matches!(proto_lower.as_str(), "" | "tcp" | "udp" | "sctp") {
        return PortSpec {
            findings,
            ports: Err(format!(
                "EXPOSE {raw}: invalid protocol {proto_lower:?} (tcp, udp or sctp)"
            )),
        };
    }
    if proto != proto_lower {
        findings.push(Finding::new(
            "ExposeProtoCasing",
            span,
            format!("Defined protocol '{raw}' in EXPOSE instruction should be lowercase"),
        ));
    }
    if !ip.is_empty() || !host_port.is_empty() {
        findings.push(Finding::new(
            "ExposeInvalidFormat",
            span,
            format!("EXPOSE instruction should not define an IP address or host-port mapping, found '{raw}'"),
        ));
    }
    let proto = if proto_lower.is_empty() {
        "tcp".to_string()
    } else {
        proto_lower
    };
    PortSpec {
        findings,
        ports: expand(raw, ip, host_port, port, &proto),
    }
}

fn expand(
    raw: &str,
    ip: &str,
    host_port: &str,
    port: &str,
    proto: &str,
) -> Result<Vec<String>, String> {
    if !ip.is_empty() {
        let bare = match ip.strip_prefix('[') {
            Some(rest) => rest
                .strip_suffix(']')
                .ok_or_else(|| format!("EXPOSE {raw}: invalid IP address {ip}"))?,
            None => ip,
        };
        bare.parse::<IpAddr>()
            .map_err(|_| format!("EXPOSE {raw}: invalid IP address {ip}"))?;
    }
    let (lo, hi) = port_range(raw, port)?;
    if !host_port.is_empty() {
        let (host_lo, host_hi) = port_range(raw, host_port)?;
        // A host range may differ in length only when the container port is a single port.
        if hi - lo != host_hi - host_lo && hi != lo {
            return Err(format!(
                "EXPOSE {raw}: invalid ranges specified for container and host ports: {port} and {host_port}"
            ));
        }
    }
    Ok((lo..=hi).map(|p| format!("{p}/{proto}")).collect())
}

/// `start[-end]`, each 0 to 65535, end not below start.
fn port_range(raw: &str, ports: &str) -> Result<(u32, u32), String> {
    let bad = || format!("EXPOSE {raw}: invalid port {ports:?}");
    let number = |s: &str| {
        s.parse::<i64>()
            .ok()
            .filter(|n| (0..=65_535).contains(n))
            .map(|n| n as u32)
            .ok_or_else(bad)
    };
    match ports.split_once('-') {
        Some((start, end)) if start != end => {
            let (lo, hi) = (number(start)?, number(end)?);
            if hi < lo {
                return Err(format!("EXPOSE {raw}: invalid range {ports:?}"));
            }
            Ok((lo, hi))
        }
        Some((start, _)) => number(start).map(|p| (p, p)),
        None => number(ports).map(|p| (p, p)),
    }
}

/// `[ip:][host:]container` split at colons; an IPv6 address keeps the colons of everything before the last two.
fn split_parts(raw: &str) -> (&str, &str, &str) {
    let parts: Vec<&str> = raw.split(':').collect();
    match parts.len() {
        1 => ("", "", raw),
        2 => ("", parts[0], parts[1]),
        n => {
            let container_at = raw.len() - parts[n - 1].len();
            let host_at = container_at - 1 - parts[n - 2].len();
            (&raw[..host_at - 1], parts[n - 2], parts[n - 1])
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ports(raw: &str) -> Result<Vec<String>, String> {
        parse_port_spec(raw, Span::default()).ports
    }

    fn rules(raw: &str) -> Vec<&'static str> {
        parse_port_spec(raw, Span::default())
            .findings
            .iter()
            .map(|f| f.rule)
            .collect()
    }

    #[test]
    fn specs_expose_the_container_port() {
        assert_eq!(ports("80").unwrap(), ["80/tcp"]);
        assert_eq!(ports("53/UDP").unwrap(), ["53/udp"]);
        assert_eq!(
            ports("8000-8002").unwrap(),
            ["8000/tcp", "8001/tcp", "8002/tcp"]
        );
        assert_eq!(ports("5000:5000").unwrap(), ["5000/tcp"]);
        assert_eq!(ports("127.0.0.1:80:80").unwrap(), ["80/tcp"]);
        assert_eq!(ports("[::1]:8080:8080").unwrap(), ["8080/tcp"]);
        assert_eq!(ports("::1:8080:8080").unwrap(), ["8080/tcp"]);
        assert_eq!(ports("8000-8010:80").unwrap(), ["80/tcp"]);
        for bad in [
            "http",
            "80/icmp",
            "/tcp",
            "70000",
            "9-1",
            "1.2.3:80:80",
            "1-2:1-3",
        ] {
            assert!(ports(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn lint_before_validation() {
        assert_eq!(rules("80/TcP"), ["ExposeProtoCasing"]);
        assert_eq!(rules("80/tcp"), Vec::<&str>::new());
        assert_eq!(rules("5000:5000"), ["ExposeInvalidFormat"]);
        assert_eq!(
            rules("nope:80/UDP"),
            ["ExposeProtoCasing", "ExposeInvalidFormat"]
        );
        assert_eq!(rules("80/icmp"), Vec::<&str>::new());
    }
}
