//! What each step leaves in the image: history entries worded as BuildKit words them, and the shell that
//! shell-form commands run through.

use oci::History;

use super::stage::StageState;

/// The history comment BuildKit gives Dockerfile steps.
pub(super) const HISTORY_COMMENT: &str = "buildkit.dockerfile.v0";

pub(super) fn history(st: &mut StageState, created_by: String, empty_layer: bool) {
    st.image.history.push(History {
        created: None,
        created_by,
        comment: HISTORY_COMMENT.to_string(),
        empty_layer,
    });
}

/// Go's `%q` of a string slice: `["a" "b"]`, as BuildKit writes CMD and ENTRYPOINT history.
pub(super) fn go_quoted_list(items: &[String]) -> String {
    let quoted: Vec<String> = items.iter().map(|s| crate::parser::quote_go(s)).collect();
    format!("[{}]", quoted.join(" "))
}

/// BuildKit's HEALTHCHECK history: Go's `%+v` of its HealthcheckConfig value (`dispatchHealthcheck`), e.g.
/// `{Test:[CMD-SHELL curl -f x] Interval:5s Timeout:0s StartPeriod:0s StartInterval:0s Retries:3}`.
pub(super) fn go_healthcheck(hc: &oci::Healthcheck) -> String {
    format!(
        "{{Test:[{}] Interval:{} Timeout:{} StartPeriod:{} StartInterval:{} Retries:{}}}",
        hc.test.join(" "),
        go_duration(hc.interval),
        go_duration(hc.timeout),
        go_duration(hc.start_period),
        go_duration(hc.start_interval),
        hc.retries
    )
}

/// Go's `time.Duration.String()` of `nanos`: `0s`, `1.5s`, `1m0s`, `2h3m4.005s`, `250ms`, `3µs`, `7ns`.
pub(super) fn go_duration(nanos: i64) -> String {
    fn with_fraction(whole: u64, rem: u64, digits: usize) -> String {
        if rem == 0 {
            return whole.to_string();
        }
        let frac = format!("{rem:0digits$}");
        format!("{whole}.{}", frac.trim_end_matches('0'))
    }
    if nanos == 0 {
        return "0s".to_string();
    }
    let u = nanos.unsigned_abs();
    let text = if u < 1_000 {
        format!("{u}ns")
    } else if u < 1_000_000 {
        format!("{}µs", with_fraction(u / 1_000, u % 1_000, 3))
    } else if u < 1_000_000_000 {
        format!("{}ms", with_fraction(u / 1_000_000, u % 1_000_000, 6))
    } else {
        let secs = u / 1_000_000_000;
        let (h, m, s) = (secs / 3600, secs / 60 % 60, secs % 60);
        let mut out = String::new();
        if h > 0 {
            out.push_str(&format!("{h}h"));
        }
        if h > 0 || m > 0 {
            out.push_str(&format!("{m}m"));
        }
        out.push_str(&with_fraction(s, u % 1_000_000_000, 9));
        out.push('s');
        out
    };
    if nanos < 0 {
        format!("-{text}")
    } else {
        text
    }
}

/// The stage's shell for shell-form commands.
pub(super) fn shell_of(st: &StageState) -> Vec<String> {
    if st.image.config.shell.is_empty() {
        vec!["/bin/sh".to_string(), "-c".to_string()]
    } else {
        st.image.config.shell.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_print_as_go_prints_them() {
        for (nanos, want) in [
            (0, "0s"),
            (7, "7ns"),
            (3_000, "3µs"),
            (1_500, "1.5µs"),
            (250_000_000, "250ms"),
            (1_500_000_000, "1.5s"),
            (60_000_000_000, "1m0s"),
            (3_600_000_000_000, "1h0m0s"),
            (7_384_005_000_000, "2h3m4.005s"),
            (-5_000_000_000, "-5s"),
        ] {
            assert_eq!(go_duration(nanos), want, "{nanos}");
        }
    }

    #[test]
    fn a_healthcheck_prints_as_go_prints_its_struct() {
        let hc = oci::Healthcheck {
            test: vec!["CMD-SHELL".into(), "wget -q localhost || exit 1".into()],
            interval: 5_000_000_000,
            timeout: 2_000_000_000,
            retries: 4,
            ..Default::default()
        };
        assert_eq!(
            go_healthcheck(&hc),
            "{Test:[CMD-SHELL wget -q localhost || exit 1] Interval:5s Timeout:2s StartPeriod:0s \
             StartInterval:0s Retries:4}"
        );
    }
}
