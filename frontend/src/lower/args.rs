//! Build arguments: the predefined platform and proxy ARGs, and the expansion scope of a stage (declared ARGs
//! overlaid by ENV, as BuildKit resolves `$NAME` in an instruction).

use std::collections::BTreeMap;

use oci::Platform;

use crate::shell::Env;

/// ARGs every build defines without a declaration in the global scope; a stage must still `ARG NAME` to use them.
pub const PLATFORM_ARGS: [&str; 8] = [
    "TARGETPLATFORM",
    "TARGETOS",
    "TARGETARCH",
    "TARGETVARIANT",
    "BUILDPLATFORM",
    "BUILDOS",
    "BUILDARCH",
    "BUILDVARIANT",
];

/// Proxy ARGs: passed to RUN without a declaration and kept out of the image history, as Docker does.
pub const PROXY_ARGS: [&str; 10] = [
    "HTTP_PROXY",
    "http_proxy",
    "HTTPS_PROXY",
    "https_proxy",
    "FTP_PROXY",
    "ftp_proxy",
    "NO_PROXY",
    "no_proxy",
    "ALL_PROXY",
    "all_proxy",
];

/// True for the proxy ARGs.
pub fn is_proxy_arg(name: &str) -> bool {
    PROXY_ARGS.contains(&name)
}

/// True for the predefined platform ARGs (and TARGETSTAGE).
pub fn is_builtin(name: &str) -> bool {
    PLATFORM_ARGS.contains(&name) || name == "TARGETSTAGE"
}

/// The values of the predefined platform ARGs for a build.
pub fn platform_values(target: &Platform, build: &Platform) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for (prefix, p) in [("TARGET", target), ("BUILD", build)] {
        out.push((format!("{prefix}PLATFORM"), p.to_string()));
        out.push((format!("{prefix}OS"), p.os.clone()));
        out.push((format!("{prefix}ARCH"), p.architecture.clone()));
        out.push((
            format!("{prefix}VARIANT"),
            p.variant.clone().unwrap_or_default(),
        ));
    }
    out
}

/// The names and values words are expanded against; setting a name again replaces its value.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Scope {
    values: BTreeMap<String, String>,
}

impl Scope {
    /// Adds or overrides `name`.
    pub fn set(&mut self, name: &str, value: &str) {
        self.values.insert(name.to_string(), value.to_string());
    }

    /// The value of `name`.
    pub fn value(&self, name: &str) -> Option<&str> {
        self.values.get(name).map(String::as_str)
    }
}

impl Env for Scope {
    fn get(&self, key: &str) -> Option<String> {
        self.value(key).map(str::to_string)
    }

    fn keys(&self) -> Vec<String> {
        self.values.keys().cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn platform_values_split_the_triple() {
        let t: Platform = "linux/arm/v7".parse().unwrap();
        let b: Platform = "linux/amd64".parse().unwrap();
        let v = platform_values(&t, &b);
        assert!(v.contains(&("TARGETVARIANT".into(), "v7".into())));
        assert!(v.contains(&("BUILDARCH".into(), "amd64".into())));
        assert!(v.contains(&("BUILDVARIANT".into(), "".into())));
    }

    #[test]
    fn scope_later_wins() {
        let mut s = Scope::default();
        s.set("A", "1");
        s.set("B", "2");
        s.set("A", "3");
        assert_eq!(s.value("A"), Some("3"));
        assert_eq!(s.keys(), ["A", "B"]);
    }
}
