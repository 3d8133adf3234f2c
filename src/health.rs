//! The operations endpoints on `--metrics-addr`: `/metrics` (OpenMetrics text), `/healthz` (the process runs) and
//! `/readyz` (the controllers' caches are synced and the gateway has answered once).
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use tokio::net::TcpListener;

use crate::metrics::Metrics;

/// What `/readyz` reports. A standby replica (leader election on, lease held elsewhere) is ready: it is healthy and
/// has nothing to sync until it leads, and a rollout must not wait for it to win the lease.
#[derive(Debug, Default)]
pub struct Readiness {
    caches_synced: AtomicBool,
    gateway_answered: AtomicBool,
    standby: AtomicBool,
}

impl Readiness {
    /// Every controller's watch cache has its first full list.
    pub fn set_caches_synced(&self) {
        self.caches_synced.store(true, Ordering::Relaxed);
    }

    /// The gateway answered `/health/readiness`. Once is enough: a later outage shows on the resources' conditions
    /// and must not take the operator out of its Service.
    pub fn set_gateway_answered(&self) {
        self.gateway_answered.store(true, Ordering::Relaxed);
    }

    pub fn set_standby(&self, standby: bool) {
        self.standby.store(standby, Ordering::Relaxed);
    }

    /// `Ok` when ready, else what is missing.
    pub fn check(&self) -> Result<(), &'static str> {
        if self.standby.load(Ordering::Relaxed) {
            return Ok(());
        }
        if !self.caches_synced.load(Ordering::Relaxed) {
            return Err("watch caches not synced yet");
        }
        if !self.gateway_answered.load(Ordering::Relaxed) {
            return Err("the gateway has not answered /health/readiness yet");
        }
        Ok(())
    }
}

#[derive(Clone)]
struct Endpoints {
    metrics: Arc<Metrics>,
    readiness: Arc<Readiness>,
}

fn router(metrics: Arc<Metrics>, readiness: Arc<Readiness>) -> Router {
    Router::new()
        .route("/metrics", get(serve_metrics))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(serve_readiness))
        .with_state(Endpoints { metrics, readiness })
}

async fn serve_metrics(State(e): State<Endpoints>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        e.metrics.encode(),
    )
}

async fn serve_readiness(State(e): State<Endpoints>) -> (StatusCode, &'static str) {
    match e.readiness.check() {
        Ok(()) => (StatusCode::OK, "ok"),
        Err(reason) => (StatusCode::SERVICE_UNAVAILABLE, reason),
    }
}

/// Serves the endpoints on `listener` until `shutdown` resolves.
pub async fn serve(
    listener: TcpListener,
    metrics: Arc<Metrics>,
    readiness: Arc<Readiness>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    let app = router(metrics, readiness);
    if let Err(e) = axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
    {
        tracing::error!(error = %e, "metrics server failed");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_needs_synced_caches_and_a_gateway_answer() {
        let r = Readiness::default();
        assert_eq!(r.check(), Err("watch caches not synced yet"));
        r.set_caches_synced();
        assert_eq!(
            r.check(),
            Err("the gateway has not answered /health/readiness yet")
        );
        r.set_gateway_answered();
        assert_eq!(r.check(), Ok(()));
    }

    #[test]
    fn a_standby_replica_is_ready() {
        let r = Readiness::default();
        r.set_standby(true);
        assert_eq!(r.check(), Ok(()));
        r.set_standby(false);
        assert!(r.check().is_err(), "once it leads, it syncs first");
    }
}
