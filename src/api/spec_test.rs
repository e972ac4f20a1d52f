//! Keeps `api-spec/openapi.yaml` and the router honest with each other.
//!
//! * Every operation in the spec reaches a real handler (not the router's
//!   `404 page not found`, not `405`, not `501`), bare and under version
//!   prefixes, and answers with a status the spec declares for it.
//! * Every Docker Engine API v1.47 endpoint the spec does not describe is
//!   answered with `501` and is covered by the spec's `x-not-implemented`
//!   list, so a route added to the router but not to the spec fails here.
//! * The spec itself is well-formed: OpenAPI 3.x, every operation has
//!   responses, every `$ref` resolves, every path template parameter is
//!   declared.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use axum::Router;
use clap::Parser;
use serde_json::Value;
use tokio::sync::watch;
use tower::ServiceExt;

use super::AppState;
use crate::config::{DaemonConfig, Flags};
use crate::events::EventBus;
use crate::image::layout::Layout;
use crate::image::registry::RegistrySettings;
use crate::image::ImageService;
use crate::store::Store;
use crate::system::HostInfo;

const SPEC: &str = include_str!("../../api-spec/openapi.yaml");

/// Stands in for `{name}`: slashes and a port, as real references have.
const SAMPLE_NAME: &str = "127.0.0.1:5000/some/image:tag";
/// Stands in for `{id}` and any other path parameter.
const SAMPLE_ID: &str = "0123456789ab";
/// Stands in for the router's `{*rest}` wildcard.
const SAMPLE_REST: &str = "some/thing";

const PREFIXES: &[&str] = &["", "/v1.47", "/v1.24"];

const HTTP_METHODS: &[&str] = &[
    "get", "put", "post", "delete", "options", "head", "patch", "trace",
];

/// Every endpoint of the Docker Engine API v1.47, as (method, template).
const DOCKER_ENDPOINTS: &[(&str, &str)] = &[
    // Containers
    ("GET", "/containers/json"),
    ("POST", "/containers/create"),
    ("GET", "/containers/{id}/json"),
    ("GET", "/containers/{id}/top"),
    ("GET", "/containers/{id}/logs"),
    ("GET", "/containers/{id}/changes"),
    ("GET", "/containers/{id}/export"),
    ("GET", "/containers/{id}/stats"),
    ("POST", "/containers/{id}/resize"),
    ("POST", "/containers/{id}/start"),
    ("POST", "/containers/{id}/stop"),
    ("POST", "/containers/{id}/restart"),
    ("POST", "/containers/{id}/kill"),
    ("POST", "/containers/{id}/update"),
    ("POST", "/containers/{id}/rename"),
    ("POST", "/containers/{id}/pause"),
    ("POST", "/containers/{id}/unpause"),
    ("POST", "/containers/{id}/attach"),
    ("GET", "/containers/{id}/attach/ws"),
    ("POST", "/containers/{id}/wait"),
    ("DELETE", "/containers/{id}"),
    ("HEAD", "/containers/{id}/archive"),
    ("GET", "/containers/{id}/archive"),
    ("PUT", "/containers/{id}/archive"),
    ("POST", "/containers/prune"),
    // Exec
    ("POST", "/containers/{id}/exec"),
    ("POST", "/exec/{id}/start"),
    ("POST", "/exec/{id}/resize"),
    ("GET", "/exec/{id}/json"),
    // Images
    ("GET", "/images/json"),
    ("POST", "/build"),
    ("POST", "/build/prune"),
    ("POST", "/images/create"),
    ("GET", "/images/{name}/json"),
    ("GET", "/images/{name}/history"),
    ("POST", "/images/{name}/push"),
    ("POST", "/images/{name}/tag"),
    ("DELETE", "/images/{name}"),
    ("GET", "/images/search"),
    ("POST", "/images/prune"),
    ("POST", "/commit"),
    ("GET", "/images/{name}/get"),
    ("GET", "/images/get"),
    ("POST", "/images/load"),
    // System
    ("POST", "/auth"),
    ("GET", "/info"),
    ("GET", "/version"),
    ("GET", "/_ping"),
    ("HEAD", "/_ping"),
    ("GET", "/events"),
    ("GET", "/system/df"),
    // Distribution and session
    ("GET", "/distribution/{name}/json"),
    ("POST", "/session"),
    // Networks
    ("GET", "/networks"),
    ("GET", "/networks/{id}"),
    ("DELETE", "/networks/{id}"),
    ("POST", "/networks/create"),
    ("POST", "/networks/{id}/connect"),
    ("POST", "/networks/{id}/disconnect"),
    ("POST", "/networks/prune"),
    // Volumes
    ("GET", "/volumes"),
    ("POST", "/volumes/create"),
    ("GET", "/volumes/{name}"),
    ("PUT", "/volumes/{name}"),
    ("DELETE", "/volumes/{name}"),
    ("POST", "/volumes/prune"),
    // Swarm
    ("GET", "/swarm"),
    ("POST", "/swarm/init"),
    ("POST", "/swarm/join"),
    ("POST", "/swarm/leave"),
    ("POST", "/swarm/update"),
    ("GET", "/swarm/unlockkey"),
    ("POST", "/swarm/unlock"),
    ("GET", "/nodes"),
    ("GET", "/nodes/{id}"),
    ("DELETE", "/nodes/{id}"),
    ("POST", "/nodes/{id}/update"),
    ("GET", "/services"),
    ("POST", "/services/create"),
    ("GET", "/services/{id}"),
    ("DELETE", "/services/{id}"),
    ("POST", "/services/{id}/update"),
    ("GET", "/services/{id}/logs"),
    ("GET", "/tasks"),
    ("GET", "/tasks/{id}"),
    ("GET", "/tasks/{id}/logs"),
    ("GET", "/secrets"),
    ("POST", "/secrets/create"),
    ("GET", "/secrets/{id}"),
    ("DELETE", "/secrets/{id}"),
    ("POST", "/secrets/{id}/update"),
    ("GET", "/configs"),
    ("POST", "/configs/create"),
    ("GET", "/configs/{id}"),
    ("DELETE", "/configs/{id}"),
    ("POST", "/configs/{id}/update"),
    // Plugins
    ("GET", "/plugins"),
    ("GET", "/plugins/privileges"),
    ("POST", "/plugins/pull"),
    ("GET", "/plugins/{name}/json"),
    ("DELETE", "/plugins/{name}"),
    ("POST", "/plugins/{name}/enable"),
    ("POST", "/plugins/{name}/disable"),
    ("POST", "/plugins/{name}/upgrade"),
    ("POST", "/plugins/create"),
    ("POST", "/plugins/{name}/push"),
    ("POST", "/plugins/{name}/set"),
];

/// Paths dockerd does not have: the router itself must say `page not found`.
const NOT_DOCKER: &[(&str, &str)] = &[
    ("GET", "/"),
    ("GET", "/nonexistent"),
    ("POST", "/nonexistent/deeper"),
    ("GET", "/images/{name}/bogus"),
    ("POST", "/images/{name}/bogus"),
    ("GET", "/system"),
];

fn spec() -> Value {
    serde_norway::from_str(SPEC).expect("api-spec/openapi.yaml is valid YAML")
}

/// `(METHOD, path template)` of every operation in the spec.
fn spec_operations(spec: &Value) -> Vec<(String, String)> {
    let paths = spec["paths"].as_object().expect("spec has paths");
    let mut ops = vec![];
    for (path, item) in paths {
        let item = item.as_object().expect("path item is an object");
        for m in HTTP_METHODS {
            if item.contains_key(*m) {
                ops.push((m.to_ascii_uppercase(), path.clone()));
            }
        }
    }
    ops
}

/// Fills a path template with sample values.
fn concrete(template: &str) -> String {
    template
        .split('/')
        .map(|seg| match seg {
            "{name}" => SAMPLE_NAME,
            s if s.starts_with("{*") => SAMPLE_REST,
            s if s.starts_with('{') => SAMPLE_ID,
            s => s,
        })
        .collect::<Vec<_>>()
        .join("/")
}

/// Matches a concrete path against a router pattern where `{*rest}` and
/// `{name}` (image names contain slashes) stand for one or more segments.
fn pattern_matches(pattern: &str, path: &str) -> bool {
    fn go(p: &[&str], s: &[&str]) -> bool {
        match p.split_first() {
            None => s.is_empty(),
            Some((seg, rest)) if *seg == "{name}" || seg.starts_with("{*") => {
                (1..=s.len()).any(|n| go(rest, &s[n..]))
            }
            Some((seg, rest)) if seg.starts_with('{') => !s.is_empty() && go(rest, &s[1..]),
            Some((seg, rest)) => s.first() == Some(seg) && go(rest, &s[1..]),
        }
    }
    let p: Vec<&str> = pattern.split('/').collect();
    let s: Vec<&str> = path.split('/').collect();
    go(&p, &s)
}

/// The spec's `x-not-implemented` routes as (pattern, methods).
fn not_implemented_routes(spec: &Value) -> Vec<(String, Vec<String>)> {
    spec["x-not-implemented"]["routes"]
        .as_array()
        .expect("x-not-implemented.routes is a list")
        .iter()
        .map(|r| {
            let path = r["path"].as_str().expect("route has a path").to_string();
            let methods = r["methods"]
                .as_array()
                .expect("route has methods")
                .iter()
                .map(|m| m.as_str().expect("method is a string").to_ascii_uppercase())
                .collect();
            (path, methods)
        })
        .collect()
}

/// A real application on a throw-away data root.
struct Harness {
    app: Router,
    _shutdown: watch::Sender<bool>,
    _dir: tempfile::TempDir,
}

fn harness() -> Harness {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path();
    let arg = |p: &str| root.join(p).display().to_string();
    let flags = Flags::try_parse_from([
        "mydockerd".to_string(),
        "--data-root".into(),
        arg("data"),
        "--exec-root".into(),
        arg("exec"),
        "--pidfile".into(),
        arg("mydockerd.pid"),
        "--host".into(),
        format!("unix://{}", arg("mydocker.sock")),
    ])
    .expect("flags parse");
    let config = DaemonConfig::from_parts(&flags, Some("{}")).expect("config");
    let layout = Layout::new(&config.data_root);
    layout.create_dirs().expect("layout dirs");
    let store = Store::open_in_memory().expect("in-memory store");
    let events = EventBus::new();
    let images = Arc::new(ImageService::new(
        store.clone(),
        layout,
        events.clone(),
        RegistrySettings::default(),
    ));
    let containers = crate::container::ContainerService::new(
        store.clone(),
        images.clone(),
        events.clone(),
        &config.data_root,
        &config.exec_root,
        "/nonexistent/mydockerd".into(),
    );
    let networks = Arc::new(crate::network::NetworkService::new(
        store.clone(),
        events.clone(),
        crate::network::NetSettings::from_config(&config),
        &config.exec_root,
    ));
    let (tx, rx) = watch::channel(false);
    let state = AppState {
        images,
        containers,
        networks,
        events,
        config: Arc::new(config),
        host: Arc::new(HostInfo::probe()),
        shutdown: rx,
    };
    Harness {
        app: super::app(state),
        _shutdown: tx,
        _dir: dir,
    }
}

/// How the service answered one request.
#[derive(Debug)]
enum Answer {
    /// No route: `404 page not found` or `405`.
    NoRoute(StatusCode),
    /// `501`, with its message.
    NotImplemented(String),
    /// Anything else: a handler answered.
    Handled(StatusCode, String),
}

async fn ask(app: &Router, method: &str, path: &str) -> Answer {
    let req = Request::builder()
        .method(Method::from_bytes(method.as_bytes()).expect("method"))
        .uri(path)
        .body(Body::empty())
        .expect("request");
    let resp = tokio::time::timeout(Duration::from_secs(5), app.clone().oneshot(req))
        .await
        .unwrap_or_else(|_| panic!("{method} {path}: no response within 5s"))
        .expect("infallible");
    let status = resp.status();
    // Success bodies may be endless streams (`/events`): read errors only.
    let message = if status.is_client_error() || status.is_server_error() {
        let bytes = tokio::time::timeout(
            Duration::from_secs(5),
            axum::body::to_bytes(resp.into_body(), 1 << 20),
        )
        .await
        .unwrap_or_else(|_| panic!("{method} {path}: error body not complete within 5s"))
        .unwrap_or_default();
        serde_json::from_slice::<Value>(&bytes)
            .ok()
            .and_then(|v| v["message"].as_str().map(String::from))
            .unwrap_or_else(|| String::from_utf8_lossy(&bytes).into_owned())
    } else {
        String::new()
    };
    match status {
        StatusCode::METHOD_NOT_ALLOWED => Answer::NoRoute(status),
        StatusCode::NOT_FOUND if message == "page not found" => Answer::NoRoute(status),
        StatusCode::NOT_IMPLEMENTED => Answer::NotImplemented(message),
        _ => Answer::Handled(status, message),
    }
}

/// Resolves a local `$ref` (`#/a/b`) in the spec.
fn resolve<'a>(spec: &'a Value, reference: &str) -> Option<&'a Value> {
    spec.pointer(reference.strip_prefix('#')?)
}

fn deref<'a>(spec: &'a Value, v: &'a Value) -> &'a Value {
    match v.get("$ref").and_then(Value::as_str) {
        Some(r) => resolve(spec, r).unwrap_or_else(|| panic!("unresolved $ref {r}")),
        None => v,
    }
}

fn collect_refs(v: &Value, at: &str, out: &mut Vec<(String, String)>) {
    match v {
        Value::Object(m) => {
            for (k, x) in m {
                if k == "$ref" {
                    if let Some(r) = x.as_str() {
                        out.push((at.to_string(), r.to_string()));
                    }
                }
                collect_refs(x, &format!("{at}/{k}"), out);
            }
        }
        Value::Array(a) => {
            for (i, x) in a.iter().enumerate() {
                collect_refs(x, &format!("{at}/{i}"), out);
            }
        }
        _ => {}
    }
}

#[test]
fn spec_is_well_formed() {
    let spec = spec();
    let version = spec["openapi"].as_str().expect("openapi version string");
    assert!(version.starts_with("3."), "not OpenAPI 3.x: {version}");
    assert!(spec["info"]["title"].is_string());
    assert!(spec["info"]["version"].is_string());

    // The version prefix rule is documented.
    let description = spec["info"]["description"]
        .as_str()
        .expect("info.description");
    for needle in [
        "1.24",
        "1.47",
        "too new",
        "too old",
        "malformed API version",
    ] {
        assert!(
            description.contains(needle),
            "info.description lacks {needle:?}"
        );
    }

    let ops = spec_operations(&spec);
    assert!(!ops.is_empty());
    let mut ids = BTreeSet::new();
    for (method, path) in &ops {
        let op = &spec["paths"][path][method.to_ascii_lowercase()];
        assert!(op["summary"].is_string(), "{method} {path}: no summary");
        if let Some(id) = op["operationId"].as_str() {
            assert!(ids.insert(id.to_string()), "duplicate operationId {id}");
        }
        let responses = op["responses"].as_object();
        assert!(
            responses.is_some_and(|r| !r.is_empty()),
            "{method} {path}: no responses"
        );
        for code in responses.unwrap().keys() {
            assert!(
                code == "default" || (code.len() == 3 && code.parse::<u16>().is_ok()),
                "{method} {path}: bad response code {code}"
            );
        }

        // Every `{param}` in the template is declared as a path parameter.
        let mut declared = BTreeSet::new();
        for params in [&spec["paths"][path]["parameters"], &op["parameters"]] {
            for p in params.as_array().into_iter().flatten() {
                let p = deref(&spec, p);
                if p["in"] == "path" {
                    assert_eq!(
                        p["required"], true,
                        "{method} {path}: path parameter not required"
                    );
                    declared.insert(p["name"].as_str().expect("parameter name").to_string());
                }
            }
        }
        let used: BTreeSet<String> = path
            .split('/')
            .filter_map(|s| s.strip_prefix('{')?.strip_suffix('}'))
            .map(String::from)
            .collect();
        assert_eq!(used, declared, "{method} {path}: path parameters");
    }

    let mut refs = vec![];
    collect_refs(&spec, "#", &mut refs);
    assert!(!refs.is_empty());
    for (at, r) in refs {
        assert!(r.starts_with("#/"), "{at}: non-local $ref {r}");
        assert!(
            resolve(&spec, &r).is_some(),
            "{at}: $ref {r} does not resolve"
        );
    }

    let routes = not_implemented_routes(&spec);
    assert!(!routes.is_empty(), "x-not-implemented is empty");
}

#[test]
fn spec_describes_only_docker_endpoints() {
    let spec = spec();
    let docker: BTreeSet<(String, String)> = DOCKER_ENDPOINTS
        .iter()
        .map(|(m, p)| (m.to_string(), p.to_string()))
        .collect();
    assert_eq!(
        docker.len(),
        DOCKER_ENDPOINTS.len(),
        "duplicate in DOCKER_ENDPOINTS"
    );
    for op in spec_operations(&spec) {
        assert!(
            docker.contains(&op),
            "spec describes {op:?}, which Docker does not have"
        );
    }
    // Every Docker endpoint is either described or listed as not implemented.
    let served: BTreeSet<(String, String)> = spec_operations(&spec).into_iter().collect();
    let routes = not_implemented_routes(&spec);
    for (method, template) in DOCKER_ENDPOINTS {
        let key = (method.to_string(), template.to_string());
        if served.contains(&key) {
            continue;
        }
        let path = concrete(template);
        let listed = routes.iter().any(|(pattern, methods)| {
            pattern_matches(pattern, &path) && methods.iter().any(|m| m == "ANY" || m == method)
        });
        assert!(
            listed,
            "{method} {template} is neither in the spec's paths nor in x-not-implemented"
        );
    }
}

#[tokio::test]
async fn every_spec_operation_reaches_a_handler() {
    let spec = spec();
    let h = harness();
    let mut failures = vec![];
    for (method, template) in spec_operations(&spec) {
        let path = concrete(&template);
        let op = &spec["paths"][&template][method.to_ascii_lowercase()];
        let declared: Vec<&String> = op["responses"]
            .as_object()
            .map(|r| r.keys().collect())
            .unwrap_or_default();
        for prefix in PREFIXES {
            let uri = format!("{prefix}{path}");
            match ask(&h.app, &method, &uri).await {
                Answer::Handled(status, message) => {
                    let code = status.as_u16().to_string();
                    if !declared.iter().any(|d| **d == code || *d == "default") {
                        failures.push(format!(
                            "{method} {uri}: answered {status} ({message:?}), not among the spec's responses {declared:?}"
                        ));
                    }
                }
                other => failures.push(format!("{method} {uri}: no handler: {other:?}")),
            }
        }
    }
    assert!(
        failures.is_empty(),
        "router and spec disagree:\n{}",
        failures.join("\n")
    );
}

#[tokio::test]
async fn docker_endpoints_outside_the_spec_answer_501() {
    let spec = spec();
    let served: BTreeSet<(String, String)> = spec_operations(&spec).into_iter().collect();
    let h = harness();
    let mut failures = vec![];
    for (method, template) in DOCKER_ENDPOINTS {
        let path = concrete(template);
        let in_spec = served.contains(&(method.to_string(), template.to_string()));
        for prefix in PREFIXES {
            let uri = format!("{prefix}{path}");
            let answer = ask(&h.app, method, &uri).await;
            let ok = match &answer {
                Answer::Handled(..) => in_spec,
                // HEAD answers carry no body, hence no message.
                Answer::NotImplemented(message) => {
                    !in_spec && (*method == "HEAD" || !message.is_empty())
                }
                Answer::NoRoute(_) => false,
            };
            if !ok {
                let expected = if in_spec {
                    "a handler (in the spec)"
                } else {
                    "501 (not in the spec)"
                };
                failures.push(format!(
                    "{method} {uri}: expected {expected}, got {answer:?}"
                ));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "router and spec disagree:\n{}",
        failures.join("\n")
    );
}

#[tokio::test]
async fn not_implemented_list_answers_501() {
    let spec = spec();
    let h = harness();
    let mut failures = vec![];
    for (pattern, methods) in not_implemented_routes(&spec) {
        let path = concrete(&pattern);
        let methods: Vec<String> = if methods.iter().any(|m| m == "ANY") {
            ["GET", "POST", "PUT", "DELETE", "HEAD"]
                .map(String::from)
                .to_vec()
        } else {
            methods
        };
        for method in methods {
            for prefix in PREFIXES {
                let uri = format!("{prefix}{path}");
                match ask(&h.app, &method, &uri).await {
                    Answer::NotImplemented(_) => {}
                    other => failures.push(format!("{method} {uri}: expected 501, got {other:?}")),
                }
            }
        }
    }
    assert!(
        failures.is_empty(),
        "x-not-implemented is wrong:\n{}",
        failures.join("\n")
    );
}

#[tokio::test]
async fn unknown_paths_are_page_not_found() {
    let h = harness();
    for (method, template) in NOT_DOCKER {
        for prefix in PREFIXES {
            let uri = format!("{prefix}{}", concrete(template));
            match ask(&h.app, method, &uri).await {
                Answer::NoRoute(StatusCode::NOT_FOUND) => {}
                other => panic!("{method} {uri}: expected 404 page not found, got {other:?}"),
            }
        }
    }
}

#[tokio::test]
async fn refused_version_prefixes_are_400() {
    let h = harness();
    for (uri, needle) in [
        ("/v1.48/_ping", "too new"),
        ("/v2.0/info", "too new"),
        ("/v1.23/_ping", "too old"),
        ("/v1.12/images/json", "too old"),
        ("/v1.x/_ping", "malformed API version"),
        ("/v1/version", "malformed API version"),
    ] {
        match ask(&h.app, "GET", uri).await {
            Answer::Handled(StatusCode::BAD_REQUEST, message) => {
                assert!(
                    message.contains(needle),
                    "{uri}: {message:?} lacks {needle:?}"
                )
            }
            other => panic!("{uri}: expected 400, got {other:?}"),
        }
    }
}

/// dockerd's mux sends a known path with the wrong method to its
/// `page not found` handler (`MethodNotAllowedHandler = notFoundHandler`);
/// axum answers 405 with an empty body.
#[tokio::test]
async fn wrong_method_on_a_served_path_is_page_not_found() {
    let h = harness();
    let mut failures = vec![];
    for (method, uri) in [
        ("POST", "/_ping"),
        ("POST", "/version"),
        ("DELETE", "/info"),
        ("POST", "/images/json"),
        ("GET", "/images/create"),
        ("GET", "/images/load"),
        ("POST", "/images/get"),
    ] {
        match ask(&h.app, method, uri).await {
            Answer::NoRoute(StatusCode::NOT_FOUND) => {}
            other => failures.push(format!("{method} {uri}: got {other:?}")),
        }
    }
    assert!(
        failures.is_empty(),
        "expected 404 page not found:\n{}",
        failures.join("\n")
    );
}

#[test]
fn pattern_matching_helper() {
    assert!(pattern_matches(
        "/containers/{*rest}",
        "/containers/abc/json"
    ));
    assert!(!pattern_matches("/containers/{*rest}", "/containers"));
    assert!(pattern_matches(
        "/images/{name}/push",
        &concrete("/images/{name}/push")
    ));
    assert!(!pattern_matches("/images/{name}/push", "/images/push"));
    assert!(pattern_matches("/networks", "/networks"));
    assert!(!pattern_matches("/networks", "/networks/x"));
    assert_eq!(
        concrete("/images/{name}/json"),
        "/images/127.0.0.1:5000/some/image:tag/json"
    );
}
