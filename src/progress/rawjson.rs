//! `--progress=rawjson`: BuildKit's own status stream, one `SolveStatus` a line as buildx's rawjson display encodes
//! them (`client/graph.go`'s field names: `vertexes` with `digest`, `inputs`, `name`, `started`, `completed`,
//! `cached`, `error`; `statuses`; `logs` with `vertex`, `stream`, base64 `data`, `timestamp`; `warnings` with
//! `vertex`, `level`, base64 `short`, `detail`, `url`, `range`), so tools that read buildx's stream read kiln's.
//! Vertices are named by their graph digests, stable across builds of the same step.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::SystemTime;

use base64::Engine as _;
use engine::Event;
use serde_json::{json, Map, Value};
use solver::llb::VertexId;

/// A vertex as the stream last described it.
#[derive(Clone)]
struct Vertex {
    digest: String,
    inputs: Vec<String>,
    name: String,
    started: String,
}

/// Turns kiln's events into BuildKit `SolveStatus` objects.
#[derive(Default)]
pub struct RawJson {
    vertices: Mutex<BTreeMap<VertexId, Vertex>>,
}

/// Go's `time.Time` in JSON: RFC 3339 with nanoseconds, trailing zeros dropped, in UTC.
pub fn timestamp(t: SystemTime) -> String {
    let d = t.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs() as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let mut out = format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    );
    let nanos = d.subsec_nanos();
    if nanos > 0 {
        let frac = format!("{nanos:09}");
        out.push('.');
        out.push_str(frac.trim_end_matches('0'));
    }
    out.push('Z');
    out
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

impl RawJson {
    fn get(&self, vertex: VertexId) -> Option<Vertex> {
        self.vertices
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&vertex)
            .cloned()
    }

    /// A vertex record with what the stream knows of it.
    fn vertex(v: &Vertex, extra: &[(&str, Value)]) -> Value {
        let mut m = Map::new();
        m.insert("digest".into(), v.digest.clone().into());
        if !v.inputs.is_empty() {
            m.insert("inputs".into(), v.inputs.clone().into());
        }
        if !v.name.is_empty() {
            m.insert("name".into(), v.name.clone().into());
        }
        m.insert("started".into(), v.started.clone().into());
        for (k, val) in extra {
            m.insert((*k).to_string(), val.clone());
        }
        Value::Object(m)
    }

    /// The `SolveStatus` for `event`, at `now`; `None` for what BuildKit's stream has no place for (kiln's
    /// summary lines, cache-miss explanations) and for the internal vertices no display shows.
    pub fn render(&self, event: &Event, now: SystemTime) -> Option<Value> {
        let at = timestamp(now);
        match event {
            Event::Started {
                vertex,
                name,
                digest,
                inputs,
            } => {
                let v = Vertex {
                    digest: digest.to_string(),
                    inputs: inputs.iter().map(|d| d.to_string()).collect(),
                    name: name.clone(),
                    started: at,
                };
                self.vertices
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(*vertex, v.clone());
                (!name.is_empty()).then(|| json!({"vertexes": [Self::vertex(&v, &[])]}))
            }
            Event::Cached { vertex } => {
                let v = self.get(*vertex).filter(|v| !v.name.is_empty())?;
                Some(json!({"vertexes": [Self::vertex(&v, &[
                    ("completed", at.into()),
                    ("cached", true.into()),
                ])]}))
            }
            Event::Done {
                vertex,
                cached: false,
                ..
            } => {
                let v = self.get(*vertex).filter(|v| !v.name.is_empty())?;
                Some(json!({"vertexes": [Self::vertex(&v, &[("completed", at.into())])]}))
            }
            Event::Done { cached: true, .. } => None,
            Event::Error { vertex, message } => {
                let v = self.get(*vertex)?;
                Some(json!({"vertexes": [Self::vertex(&v, &[
                    ("completed", at.into()),
                    ("error", message.clone().into()),
                ])]}))
            }
            Event::Log { vertex, line } => {
                let v = self.get(*vertex).filter(|v| !v.name.is_empty())?;
                Some(json!({"logs": [{
                    "vertex": v.digest,
                    "stream": 1,
                    "data": b64(format!("{line}\n").as_bytes()),
                    "timestamp": at,
                }]}))
            }
            Event::Progress {
                vertex,
                current,
                total,
            } => {
                let v = self.get(*vertex)?;
                let mut s = json!({
                    "id": v.name,
                    "vertex": v.digest,
                    "current": current,
                    "timestamp": at,
                    "started": v.started,
                });
                if let Some(t) = total {
                    s["total"] = (*t).into();
                }
                Some(json!({"statuses": [s]}))
            }
            Event::Warning { vertex, message } => {
                let mut w = json!({"level": 1, "short": b64(message.as_bytes())});
                if let Some(v) = vertex.and_then(|v| self.get(v)) {
                    w["vertex"] = v.digest.into();
                }
                Some(json!({"warnings": [w]}))
            }
            Event::CheckWarning {
                rule,
                message,
                line,
            } => Some(json!({"warnings": [check_warning(rule, message, *line)]})),
            Event::Missed { .. } | Event::Message(_) | Event::Exported(_) => None,
        }
    }
}

/// A build check finding as BuildKit's `client.VertexWarning`: `Rule: message (line N)` as the short text, the
/// rule's description as the detail, its page as the url, the line as the range. The rawjson stream and the
/// metadata file's `buildx.build.warnings` both carry it so.
pub fn check_warning(rule: &str, message: &str, line: usize) -> serde_json::Value {
    let short = format!("{rule}: {message} (line {line})");
    let mut w = json!({
        "level": 1,
        "short": b64(short.as_bytes()),
        "range": [{"start": {"line": line}, "end": {"line": line}}],
    });
    if let Some(r) = frontend::checks::catalogue::describe(rule) {
        w["detail"] = json!([b64(r.description.as_bytes())]);
        if let Some(url) = r.url {
            w["url"] = url.into();
        }
    }
    w
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn timestamps_are_go_rfc3339_nano() {
        let t = SystemTime::UNIX_EPOCH + Duration::new(1_700_000_000, 120_000_000);
        assert_eq!(timestamp(t), "2023-11-14T22:13:20.12Z");
        assert_eq!(timestamp(SystemTime::UNIX_EPOCH), "1970-01-01T00:00:00Z");
        let leap = SystemTime::UNIX_EPOCH + Duration::from_secs(951_782_400);
        assert_eq!(timestamp(leap), "2000-02-29T00:00:00Z");
    }
}
