//! A kube `Client` for the test bed that records every request it sends (method, path, query): the test bed
//! authorizes everything, so the RBAC test derives the permissions the operator needs from this log instead.
use std::sync::{Arc, Mutex, PoisonError};

use axum::http::Request;
use kube::client::{Body, ClientBuilder};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};

use super::testbed::kubeconfig_path;

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Recorded {
    pub method: String,
    pub path: String,
    pub query: String,
}

/// The requests a recording client has sent, in order.
#[derive(Clone, Default)]
pub struct RequestLog(Arc<Mutex<Vec<Recorded>>>);

impl RequestLog {
    fn push(&self, r: Recorded) {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(r);
    }

    pub fn clear(&self) {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

/// A client with the test bed's credentials whose requests land in the returned log.
pub async fn recording_client() -> (Client, RequestLog) {
    let kubeconfig = Kubeconfig::read_from(kubeconfig_path()).expect("read kubeconfig");
    let config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .expect("kubeconfig");
    let log = RequestLog::default();
    let sink = log.clone();
    let layer = tower::util::MapRequestLayer::new(move |req: Request<Body>| {
        sink.push(Recorded {
            method: req.method().as_str().to_owned(),
            path: req.uri().path().to_owned(),
            query: req.uri().query().unwrap_or_default().to_owned(),
        });
        req
    });
    let client = ClientBuilder::try_from(config)
        .expect("client builder")
        .with_layer(&layer)
        .build();
    (client, log)
}
