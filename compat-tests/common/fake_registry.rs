//! An in-process fake v2 registry (axum on 127.0.0.1:0) serving exactly the
//! bytes a test gives it, so tests can hand the daemon corrupt blobs that a
//! real registry would refuse to store.

use std::collections::HashMap;
use std::io::Write;
use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::extract::State;
use axum::http::{Method, StatusCode, Uri};
use axum::response::Response;
use sha2::Digest;

pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
pub const DOCKER_LAYER: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";

/// What one path answers.
#[derive(Clone)]
pub struct Served {
    pub content_type: String,
    pub data: Vec<u8>,
    /// `Docker-Content-Digest` header, when the registry would send one.
    pub digest: Option<String>,
}

#[derive(Clone)]
struct Shared {
    routes: Arc<HashMap<String, Served>>,
    log: Arc<Mutex<Vec<String>>>,
}

pub struct FakeRegistry {
    addr: String,
    log: Arc<Mutex<Vec<String>>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl FakeRegistry {
    /// Serves `routes` (path → response) plus `/v2/`; anything else is 404.
    pub fn start(routes: HashMap<String, Served>) -> FakeRegistry {
        let log = Arc::new(Mutex::new(vec![]));
        let shared = Shared {
            routes: Arc::new(routes),
            log: log.clone(),
        };
        let (addr_tx, addr_rx) = std::sync::mpsc::channel();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                addr_tx.send(listener.local_addr().unwrap()).unwrap();
                let app = axum::Router::new().fallback(handle).with_state(shared);
                axum::serve(listener, app)
                    .with_graceful_shutdown(async {
                        let _ = stop_rx.await;
                    })
                    .await
                    .unwrap();
            });
        });
        let addr = addr_rx.recv().expect("fake registry address");
        FakeRegistry {
            addr: addr.to_string(),
            log,
            stop: Some(stop_tx),
            thread: Some(thread),
        }
    }

    /// `127.0.0.1:PORT`.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// `METHOD path` of every request so far.
    pub fn requests(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }
}

impl Drop for FakeRegistry {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

async fn handle(State(s): State<Shared>, method: Method, uri: Uri) -> Response {
    let path = uri.path().to_string();
    s.log.lock().unwrap().push(format!("{method} {path}"));
    let head = method == Method::HEAD;
    let builder = Response::builder().header("Docker-Distribution-API-Version", "registry/2.0");
    if path == "/v2/" || path == "/v2" {
        return builder
            .header("Content-Type", "application/json")
            .body(Body::from(if head { "" } else { "{}" }))
            .unwrap();
    }
    match s.routes.get(&path) {
        Some(r) if method == Method::GET || head => {
            let mut b = builder
                .header("Content-Type", r.content_type.as_str())
                .header("Content-Length", r.data.len());
            if let Some(d) = &r.digest {
                b = b.header("Docker-Content-Digest", d.as_str());
            }
            b.body(if head {
                Body::empty()
            } else {
                Body::from(r.data.clone())
            })
            .unwrap()
        }
        _ => builder
            .status(StatusCode::NOT_FOUND)
            .header("Content-Type", "application/json")
            .body(Body::from(
                r#"{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown"}]}"#,
            ))
            .unwrap(),
    }
}

// ------------------------------------------------------------- image parts

/// `sha256:<hex>` of `data`.
pub fn digest(data: &[u8]) -> String {
    format!("sha256:{}", hex::encode(sha2::Sha256::digest(data)))
}

/// A gzip-compressed layer with the given files: (blob, diff ID).
pub fn gzip_layer(files: &[(&str, &[u8])]) -> (Vec<u8>, String) {
    let tar = super::tar_of(files);
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(&tar).unwrap();
    (gz.finish().unwrap(), digest(&tar))
}

/// A one-layer image whose parts can be made to lie, served under `repo:latest`.
pub struct ImageParts {
    /// The layer bytes the registry serves.
    pub layer: Vec<u8>,
    /// The layer digest the manifest declares (and the URL it is served at).
    pub layer_digest: String,
    /// The diff ID the config declares.
    pub diff_id: String,
    /// Declare a config digest that does not match the config's bytes.
    pub lie_about_config: bool,
}

impl ImageParts {
    /// An honest image: every digest matches.
    pub fn honest(files: &[(&str, &[u8])]) -> ImageParts {
        let (layer, diff_id) = gzip_layer(files);
        ImageParts {
            layer_digest: digest(&layer),
            layer,
            diff_id,
            lie_about_config: false,
        }
    }

    /// Routes for `/v2/<repo>/...`: manifest by tag and digest, config, layer.
    pub fn routes(&self, repo: &str) -> HashMap<String, Served> {
        let config = serde_json::to_vec(&serde_json::json!({
            "architecture": super::host_arch(),
            "os": "linux",
            "created": "2026-01-01T00:00:00Z",
            "config": {"Cmd": ["sh"]},
            "rootfs": {"type": "layers", "diff_ids": [self.diff_id]},
            "history": [{"created": "2026-01-01T00:00:00Z", "created_by": "fake"}],
        }))
        .unwrap();
        let config_digest = if self.lie_about_config {
            digest(b"not the config")
        } else {
            digest(&config)
        };
        let manifest = serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2,
            "mediaType": DOCKER_MANIFEST,
            "config": {"mediaType": DOCKER_CONFIG, "digest": config_digest, "size": config.len()},
            "layers": [{"mediaType": DOCKER_LAYER, "digest": self.layer_digest, "size": self.layer.len()}],
        }))
        .unwrap();
        let manifest_digest = digest(&manifest);
        let m = Served {
            content_type: DOCKER_MANIFEST.into(),
            data: manifest,
            digest: Some(manifest_digest.clone()),
        };
        let mut r = HashMap::new();
        r.insert(format!("/v2/{repo}/manifests/latest"), m.clone());
        r.insert(format!("/v2/{repo}/manifests/{manifest_digest}"), m);
        r.insert(
            format!("/v2/{repo}/blobs/{config_digest}"),
            Served {
                content_type: "application/octet-stream".into(),
                data: config,
                digest: Some(config_digest.clone()),
            },
        );
        r.insert(
            format!("/v2/{repo}/blobs/{}", self.layer_digest),
            Served {
                content_type: "application/octet-stream".into(),
                data: self.layer.clone(),
                digest: None,
            },
        );
        r
    }
}
