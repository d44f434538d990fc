//! The SLSA provenance predicate of one platform's result, in the shape BuildKit's `NewPredicate` and
//! `NewProvenanceCreator` give it: the frontend and its arguments, the base images (and downloads) with their
//! digests as resolved dependencies, the builder's platform and the run's times; `mode=max` adds the build steps
//! (kiln's LLB ops), the Dockerfile's source and each step's place in it, `mode=min` leaves out build-arg and
//! label values, secrets and ssh ids. `version=v0.2` converts it as BuildKit's `ConvertToSLSA02` does.

use std::collections::BTreeMap;
use std::sync::Arc;

use base64::Engine as _;
use serde_json::{json, Map, Value};
use solver::llb::{Definition, MountKind, Op, SourceOp, VertexId};

use super::{ProvenanceOptions, SlsaVersion};
use crate::request::BuildRequest;
use exporter::attestation::{image_purl, Attestation, PREDICATE_SLSA_V02, PREDICATE_SLSA_V1};

/// BuildKit's SLSA v1 build type.
pub const BUILD_TYPE_V1: &str =
    "https://github.com/moby/buildkit/blob/master/docs/attestations/slsa-definitions.md";
/// BuildKit's SLSA v0.2 build type.
pub const BUILD_TYPE_V02: &str = "https://mobyproject.org/buildkit@v1";

/// What one platform's provenance is made from.
pub struct ProvenanceInput<'a> {
    /// The request.
    pub request: &'a BuildRequest,
    /// The build graph.
    pub definition: &'a Definition,
    /// This platform's final vertex (none for an empty `FROM scratch`).
    pub root: Option<VertexId>,
    /// When the build started and finished (seconds since 1970).
    pub started: i64,
    /// When the build finished.
    pub finished: i64,
    /// The build's id (BuildKit's invocation id).
    pub invocation_id: &'a str,
}

/// The provenance attestation of one platform.
pub fn attestation(
    opts: &ProvenanceOptions,
    input: &ProvenanceInput<'_>,
) -> Result<Attestation, serde_json::Error> {
    let v1 = predicate_v1(opts, input);
    let (predicate_type, predicate) = match opts.version {
        SlsaVersion::V1 => (PREDICATE_SLSA_V1, v1),
        SlsaVersion::V02 => (PREDICATE_SLSA_V02, to_v02(&v1)),
    };
    Ok(Attestation {
        predicate_type: predicate_type.to_string(),
        predicate: Arc::new(serde_json::to_vec_pretty(&predicate)?),
        filename: opts.filename.clone(),
        inline_only: opts.inline_only,
    })
}

/// The sources the result was built from: resolved dependencies (images, downloads, repositories) and the local
/// directories, which provenance names but cannot pin.
struct Sources {
    materials: Vec<Value>,
    locals: Vec<String>,
    secrets: BTreeMap<String, bool>,
    ssh: BTreeMap<String, bool>,
}

fn sources(def: &Definition, roots: &[VertexId]) -> Sources {
    let mut s = Sources {
        materials: Vec::new(),
        locals: Vec::new(),
        secrets: BTreeMap::new(),
        ssh: BTreeMap::new(),
    };
    let mut seen = std::collections::BTreeSet::new();
    for id in def.closure(roots) {
        match &def.vertex(id).op {
            Op::Source(SourceOp::Image(i)) => {
                let (name, digest) = match i.reference.split_once('@') {
                    Some((n, d)) => (n.to_string(), Some(d.to_string())),
                    None => (i.reference.clone(), None),
                };
                let uri = image_purl(&name, Some(&i.platform));
                if !seen.insert(uri.clone()) {
                    continue;
                }
                let mut m = json!({ "uri": uri });
                if let Some((alg, hex)) = digest.as_deref().and_then(|d| d.split_once(':')) {
                    m["digest"] = json!({ alg: hex });
                }
                s.materials.push(m);
            }
            Op::Source(SourceOp::Http(h)) => {
                let mut m = json!({ "uri": h.url });
                if let Some((alg, hex)) = h.checksum.as_deref().and_then(|d| d.split_once(':')) {
                    m["digest"] = json!({ alg: hex });
                }
                s.materials.push(m);
            }
            Op::Source(SourceOp::Git(g)) => {
                let mut m = json!({ "uri": g.remote });
                match g.checksum.as_deref() {
                    Some(c) if c.len() == 64 => m["digest"] = json!({ "sha256": c }),
                    Some(c) => m["digest"] = json!({ "sha1": c }),
                    None => {}
                }
                s.materials.push(m);
            }
            Op::Source(SourceOp::OciLayout(o)) => {
                s.materials
                    .push(json!({ "uri": format!("pkg:oci/{}?ref={}", o.path, o.reference) }));
            }
            Op::Source(SourceOp::Local(l)) if !s.locals.contains(&l.name) => {
                s.locals.push(l.name.clone());
            }
            Op::Exec(e) => {
                for m in &e.mounts {
                    match &m.kind {
                        MountKind::Secret { id, required, .. } => {
                            s.secrets.insert(id.clone(), !required);
                        }
                        MountKind::Ssh { id, required, .. } => {
                            s.ssh.insert(id.clone(), !required);
                        }
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    s.locals.sort();
    s
}

/// The frontend's arguments as BuildKit's dockerfile frontend receives them from buildx (`build-arg:K`,
/// `label:K`, `target`, `context:NAME`), the host-specific ones (`platform`) left out as its `FilterArgs` does.
fn frontend_args(req: &BuildRequest) -> Map<String, Value> {
    let mut args = Map::new();
    for (k, v) in &req.opts.build_args {
        args.insert(format!("build-arg:{k}"), json!(v));
    }
    for (k, v) in &req.opts.labels {
        args.insert(format!("label:{k}"), json!(v));
    }
    if let Some(t) = &req.opts.target {
        args.insert("target".into(), json!(t));
    }
    for (name, ctx) in &req.opts.build_contexts {
        let v = match ctx {
            frontend::NamedContext::Local(_) => format!("local:{name}"),
            frontend::NamedContext::Image(r) => format!("docker-image://{r}"),
            frontend::NamedContext::OciLayout { path, reference } => {
                format!("oci-layout://{path}:{reference}")
            }
        };
        args.insert(format!("context:{name}"), json!(v));
    }
    args
}

/// The Dockerfile's name as the frontend's `filename` argument gives it (relative to the context when inside it).
fn dockerfile_path(req: &BuildRequest) -> String {
    match &req.dockerfile.path {
        None => "Dockerfile".to_string(),
        Some(p) => {
            let ctx = std::fs::canonicalize(&req.context).unwrap_or_else(|_| req.context.clone());
            let abs = std::fs::canonicalize(p).unwrap_or_else(|_| p.clone());
            abs.strip_prefix(&ctx)
                .map(|r| r.display().to_string())
                .unwrap_or_else(|_| {
                    p.file_name()
                        .map(|n| n.to_string_lossy().into_owned())
                        .unwrap_or_else(|| "Dockerfile".to_string())
                })
        }
    }
}

/// `mode=max`'s build steps in BuildKit's `buildConfig` shape: `stepN` ids in dependency order, each with its op
/// (kiln's LLB op, not BuildKit's protobuf op) and its inputs as `stepM:0`; and each step's Dockerfile lines.
fn build_config(def: &Definition, root: VertexId) -> (Value, Map<String, Value>) {
    let order = def.closure(&[root]);
    let index: BTreeMap<VertexId, usize> = order.iter().enumerate().map(|(i, v)| (*v, i)).collect();
    let mut steps = Vec::new();
    let mut mapping = Map::new();
    let mut locations = Map::new();
    for (i, id) in order.iter().enumerate() {
        let v = def.vertex(*id);
        let inputs: Vec<String> = v
            .inputs
            .iter()
            .filter_map(|input| index.get(input).map(|n| format!("step{n}:0")))
            .collect();
        let mut step = json!({
            "id": format!("step{i}"),
            "op": serde_json::to_value(&v.op).unwrap_or(Value::Null),
        });
        if !inputs.is_empty() {
            step["inputs"] = json!(inputs);
        }
        steps.push(step);
        mapping.insert(def.digest(*id).to_string(), json!(format!("step{i}")));
        if let Some((start, end)) = v.meta.lines {
            locations.insert(
                format!("step{i}"),
                json!({"locations": [{"ranges": [{"start": {"line": start}, "end": {"line": end}}]}]}),
            );
        }
    }
    (
        json!({ "llbDefinition": steps, "digestMapping": mapping }),
        locations,
    )
}

/// The SLSA v1 predicate.
fn predicate_v1(opts: &ProvenanceOptions, input: &ProvenanceInput<'_>) -> Value {
    let req = input.request;
    let roots: Vec<VertexId> = input.root.into_iter().collect();
    let src = sources(input.definition, &roots);
    let mut args = frontend_args(req);
    let mut complete_request = true;
    if !opts.max {
        let before = args.len();
        args.retain(|k, _| !k.starts_with("build-arg:") && !k.starts_with("label:"));
        complete_request = args.len() == before;
    }
    let mut request = json!({ "frontend": "dockerfile.v0" });
    if !args.is_empty() {
        request["args"] = Value::Object(args);
    }
    if opts.max {
        let list = |m: &BTreeMap<String, bool>| -> Vec<Value> {
            m.iter()
                .map(|(id, optional)| {
                    if *optional {
                        json!({"id": id, "optional": true})
                    } else {
                        json!({"id": id})
                    }
                })
                .collect()
        };
        if !src.secrets.is_empty() {
            request["secrets"] = json!(list(&src.secrets));
        }
        if !src.ssh.is_empty() {
            request["ssh"] = json!(list(&src.ssh));
        }
    }
    let mut locals: Vec<Value> = src.locals.iter().map(|n| json!({ "name": n })).collect();
    // The Dockerfile comes to BuildKit as a local of its own.
    locals.push(json!({ "name": "dockerfile" }));
    request["locals"] = json!(locals);
    // The Dockerfile (and a context) come from local directories, which provenance names but cannot pin: BuildKit
    // then calls the materials incomplete, and the build not hermetic, whatever else it used.
    let incomplete_materials = true;
    let mut internal = json!({ "builderPlatform": oci::Platform::host().to_string() });
    let mut metadata = json!({
        "invocationId": input.invocation_id,
        "startedOn": exporter::image::rfc3339(input.started),
        "finishedOn": exporter::image::rfc3339(input.finished),
        "buildkit_completeness": {
            "request": complete_request,
            "resolvedDependencies": !incomplete_materials,
        },
        "buildkit_metadata": {},
    });
    if opts.reproducible {
        metadata["buildkit_reproducible"] = json!(true);
    }
    if let (true, Some(root)) = (opts.max, input.root) {
        let (config, locations) = build_config(input.definition, root);
        internal["buildConfig"] = config;
        metadata["buildkit_metadata"]["source"] = json!({
            "locations": locations,
            "infos": [{
                "filename": dockerfile_path(req),
                "language": "Dockerfile",
                "data": base64::engine::general_purpose::STANDARD.encode(&req.dockerfile.bytes),
            }],
        });
    }
    json!({
        "buildDefinition": {
            "buildType": BUILD_TYPE_V1,
            "externalParameters": {
                "configSource": { "path": dockerfile_path(req) },
                "request": request,
            },
            "internalParameters": internal,
            "resolvedDependencies": src.materials,
        },
        "runDetails": {
            "builder": { "id": opts.builder_id },
            "metadata": metadata,
        },
    })
}

/// The v1 predicate in SLSA v0.2's shape (BuildKit's `ConvertToSLSA02`).
fn to_v02(v1: &Value) -> Value {
    let bd = &v1["buildDefinition"];
    let md = &v1["runDetails"]["metadata"];
    let mut out = json!({
        "builder": { "id": v1["runDetails"]["builder"]["id"] },
        "buildType": BUILD_TYPE_V02,
        "materials": bd["resolvedDependencies"],
        "invocation": {
            "configSource": bd["externalParameters"]["configSource"],
            "parameters": bd["externalParameters"]["request"],
            "environment": { "platform": bd["internalParameters"]["builderPlatform"] },
        },
        "metadata": {
            "buildInvocationID": md["invocationId"],
            "buildStartedOn": md["startedOn"],
            "buildFinishedOn": md["finishedOn"],
            "completeness": {
                "parameters": md["buildkit_completeness"]["request"],
                "environment": true,
                "materials": md["buildkit_completeness"]["resolvedDependencies"],
            },
            "reproducible": md.get("buildkit_reproducible").cloned().unwrap_or(json!(false)),
            "https://mobyproject.org/buildkit@v1#metadata": md["buildkit_metadata"],
        },
    });
    if let Some(c) = bd["internalParameters"].get("buildConfig") {
        out["buildConfig"] = c.clone();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::request::Dockerfile;

    fn input_for(text: &str, max: bool) -> Value {
        let d = Dockerfile::parse("Dockerfile".into(), None, text.as_bytes()).unwrap();
        let mut req = BuildRequest::new(d, ".");
        req.opts.build_args.insert("VERSION".into(), "1.2".into());
        req.opts.target = Some("app".into());
        let mut def = Definition::new();
        let base = def.add(
            Op::Source(SourceOp::Image(solver::llb::ImageSource {
                reference: "docker.io/library/debian:12@sha256:abcd".into(),
                platform: "linux/amd64".parse().unwrap(),
                resolve_mode: Default::default(),
            })),
            vec![],
            solver::llb::VertexMeta {
                description: "[app 1/1] FROM debian:12".into(),
                stage: None,
                lines: Some((1, 1)),
                ignore_cache: false,
                slot: None,
            },
        );
        let opts = ProvenanceOptions {
            max,
            version: SlsaVersion::V1,
            builder_id: String::new(),
            filename: "provenance.json".into(),
            reproducible: false,
            inline_only: false,
        };
        let a = attestation(
            &opts,
            &ProvenanceInput {
                request: &req,
                definition: &def,
                root: Some(base),
                started: 0,
                finished: 1,
                invocation_id: "abc",
            },
        )
        .unwrap();
        assert_eq!(a.predicate_type, PREDICATE_SLSA_V1);
        serde_json::from_slice(&a.predicate).unwrap()
    }

    #[test]
    fn min_names_the_frontend_and_the_pinned_base_without_build_arg_values() {
        let p = input_for("FROM debian:12\n", false);
        let bd = &p["buildDefinition"];
        assert_eq!(bd["buildType"], BUILD_TYPE_V1);
        assert_eq!(
            bd["externalParameters"]["request"]["frontend"],
            "dockerfile.v0"
        );
        assert_eq!(bd["externalParameters"]["request"]["args"]["target"], "app");
        assert!(bd["externalParameters"]["request"]["args"]
            .get("build-arg:VERSION")
            .is_none());
        assert_eq!(
            p["runDetails"]["metadata"]["buildkit_completeness"]["request"],
            false
        );
        assert_eq!(
            bd["resolvedDependencies"][0],
            json!({"uri": "pkg:docker/debian@12?platform=linux%2Famd64", "digest": {"sha256": "abcd"}})
        );
        assert_eq!(
            bd["externalParameters"]["configSource"]["path"],
            "Dockerfile"
        );
        assert!(bd["internalParameters"].get("buildConfig").is_none());
        assert_eq!(
            p["runDetails"]["metadata"]["startedOn"],
            "1970-01-01T00:00:00Z"
        );
    }

    #[test]
    fn max_adds_build_arg_values_steps_and_the_dockerfile() {
        let p = input_for("FROM debian:12\n", true);
        let bd = &p["buildDefinition"];
        assert_eq!(
            bd["externalParameters"]["request"]["args"]["build-arg:VERSION"],
            "1.2"
        );
        assert_eq!(
            bd["internalParameters"]["buildConfig"]["llbDefinition"][0]["id"],
            "step0"
        );
        let src = &p["runDetails"]["metadata"]["buildkit_metadata"]["source"];
        assert_eq!(src["infos"][0]["data"], "RlJPTSBkZWJpYW46MTIK");
        assert_eq!(
            src["locations"]["step0"]["locations"][0]["ranges"][0]["start"]["line"],
            1
        );
        let v02 = to_v02(&p);
        assert_eq!(v02["buildType"], BUILD_TYPE_V02);
        assert_eq!(v02["materials"], bd["resolvedDependencies"]);
    }
}
