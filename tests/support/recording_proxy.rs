//! A pass-through proxy in front of a real gateway that records each request's route (`POST /team/update`), so a
//! test can count what the operator sent to the real LiteLLM, as the fake gateway's counters do for the fake.
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

struct Shared {
    upstream: String,
    http: reqwest::Client,
    log: Mutex<Vec<(String, serde_json::Value)>>,
}

pub struct RecordingProxy {
    pub url: String,
    shared: Arc<Shared>,
    task: JoinHandle<()>,
}

impl RecordingProxy {
    pub async fn start(upstream: &str) -> Self {
        let tcp = TcpListener::bind("127.0.0.1:0").await.expect("proxy: bind");
        let addr = tcp.local_addr().expect("proxy: address");
        let shared = Arc::new(Shared {
            upstream: upstream.trim_end_matches('/').to_owned(),
            http: reqwest::Client::new(),
            log: Mutex::default(),
        });
        let app = Router::new().fallback(forward).with_state(shared.clone());
        let task = tokio::spawn(async move {
            let _ = axum::serve(tcp, app).await;
        });
        Self {
            url: format!("http://{addr}"),
            shared,
            task,
        }
    }

    /// The gateway as the operator under test reaches it: through this proxy, with the upstream's admin key.
    pub fn target(
        &self,
        upstream: &super::testbed::GatewayTarget,
    ) -> super::testbed::GatewayTarget {
        super::testbed::GatewayTarget {
            url: self.url.clone(),
            admin_key: upstream.admin_key.clone(),
        }
    }

    /// The routes requested so far, oldest first (`GET /key/info`).
    pub fn calls(&self) -> Vec<String> {
        self.requests()
            .into_iter()
            .map(|(route, _)| route)
            .collect()
    }

    /// The routes with their JSON bodies (null for none), oldest first.
    pub fn requests(&self) -> Vec<(String, serde_json::Value)> {
        self.shared.log.lock().expect("proxy log").clone()
    }

    /// The requests that are not reads: everything but GET.
    pub fn writes(&self) -> Vec<String> {
        self.calls()
            .into_iter()
            .filter(|c| !c.starts_with("GET "))
            .collect()
    }

    pub fn clear(&self) {
        self.shared.log.lock().expect("proxy log").clear();
    }
}

impl Drop for RecordingProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn forward(
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let json = serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null);
    shared
        .log
        .lock()
        .expect("proxy log")
        .push((format!("{method} {}", uri.path()), json));
    let target = format!(
        "{}{}",
        shared.upstream,
        uri.path_and_query().map_or("/", |p| p.as_str())
    );
    let method = reqwest::Method::from_bytes(method.as_str().as_bytes()).expect("method");
    let mut req = shared.http.request(method, target).body(body.to_vec());
    for name in ["authorization", "content-type", "litellm-changed-by"] {
        if let Some(v) = headers.get(name).and_then(|v| v.to_str().ok()) {
            req = req.header(name, v);
        }
    }
    match req.send().await {
        Ok(reply) => {
            let status =
                StatusCode::from_u16(reply.status().as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
            let bytes = reply.bytes().await.unwrap_or_default();
            (
                status,
                [("content-type", "application/json")],
                bytes.to_vec(),
            )
                .into_response()
        }
        Err(_) => StatusCode::BAD_GATEWAY.into_response(),
    }
}
