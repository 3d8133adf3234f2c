//! Wiring: builds the shared context from settings and runs the controllers, the metrics and health endpoints, the
//! leader election and the alerting config. Used by `main` and by the tests, which run the real operator as a task
//! against the test bed.
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt;
use futures::future::{BoxFuture, Shared};
use kube::Client;
use tokio::net::TcpListener;

use crate::alerting::{self, AlertingConfig};
use crate::controller::{self, Context, Settings, snapshot};
use crate::gateway::{Gateway, GatewayConfig, GatewayVersion};
use crate::health::{self, Readiness};
use crate::leader::{self, LeaderElection};
use crate::metrics::Metrics;
use crate::{Error, Result};

#[derive(Clone, Debug)]
pub struct OperatorConfig {
    pub gateway: GatewayConfig,
    /// Watch only these namespaces; empty watches all.
    pub watch_namespaces: Vec<String>,
    /// Namespaces where admin roles are honoured.
    pub admin_namespaces: Vec<String>,
    pub resync: Duration,
    /// Where `/metrics`, `/healthz` and `/readyz` listen (port 0 picks a free one); `None` serves nothing.
    pub metrics_addr: Option<SocketAddr>,
    /// Run the controllers only while holding this Lease; `None` runs them at once (a single replica).
    pub leader_election: Option<LeaderElection>,
    /// Apply budget alerting to the gateway; `None` leaves the gateway's alerting config alone.
    pub alerting: Option<AlertingConfig>,
}

type Shutdown = Shared<BoxFuture<'static, ()>>;

/// An operator whose endpoints are bound; [`Bound::run`] runs it.
pub struct Bound {
    metrics_addr: Option<SocketAddr>,
    run: BoxFuture<'static, Result<()>>,
}

impl Bound {
    /// The address `/metrics`, `/healthz` and `/readyz` are served on.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_addr
    }

    /// Runs until `shutdown` resolves (controllers finish their in-flight reconciles, the lease is released), or
    /// fails when this replica loses the leader lease.
    pub async fn run(self) -> Result<()> {
        self.run.await
    }
}

/// Runs the operator until `shutdown` resolves.
pub async fn run(
    client: Client,
    config: OperatorConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<()> {
    bind(client, config, shutdown).await?.run().await
}

/// Builds the operator and binds its endpoints, so that start-up errors (a taken port) surface before it runs.
pub async fn bind(
    client: Client,
    config: OperatorConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<Bound> {
    let metrics = match config.alerting {
        Some(_) => Metrics::new().with_alerting(),
        None => Metrics::new(),
    };
    let metrics = Arc::new(metrics);
    let readiness = Arc::new(Readiness::default());
    let gateway = Arc::new(Gateway::new(config.gateway)?.with_observer(metrics.clone()));
    let listener = match config.metrics_addr {
        Some(addr) => Some(
            TcpListener::bind(addr)
                .await
                .map_err(|e| Error::Fatal(format!("--metrics-addr {addr}: {e}")))?,
        ),
        None => None,
    };
    let metrics_addr = listener.as_ref().and_then(|l| l.local_addr().ok());
    let settings = Settings {
        admin_namespaces: config.admin_namespaces,
        resync: config.resync,
    };
    let ctx = Arc::new(
        Context::new(client.clone(), gateway, settings).with_operations(metrics, readiness),
    );
    // Everything stops on the same signal.
    let shutdown: Shutdown = shutdown.boxed().shared();

    let endpoints = {
        let (ctx, shutdown) = (ctx.clone(), shutdown.clone());
        async move {
            let serve = async {
                if let Some(listener) = listener {
                    let addr = metrics_addr.map_or_else(String::new, |a| a.to_string());
                    tracing::info!(addr, "serving /metrics, /healthz and /readyz");
                    health::serve(
                        listener,
                        ctx.metrics.clone(),
                        ctx.readiness.clone(),
                        shutdown.clone(),
                    )
                    .await;
                }
            };
            let probe = async {
                tokio::select! {
                    () = probe_gateway(&ctx) => {},
                    () = shutdown.clone() => {},
                }
            };
            futures::join!(serve, probe);
            // Serving ended after a shutdown; the work decides when the operator is done.
            std::future::pending::<()>().await;
        }
    };
    let work = async move {
        let act = act(
            ctx.clone(),
            config.watch_namespaces,
            config.alerting,
            shutdown.clone(),
        );
        match config.leader_election {
            None => {
                ctx.metrics.set_leader(true);
                act.await;
                Ok(())
            }
            Some(election) => {
                leader::lead(
                    client,
                    &election,
                    &ctx.metrics,
                    &ctx.readiness,
                    shutdown,
                    act,
                )
                .await
            }
        }
    };
    let run = async move {
        // The endpoints serve until the work ends: after a shutdown, or at once when the lease is lost.
        tokio::select! {
            result = work => result,
            () = endpoints => unreachable!("the endpoints future never resolves"),
        }
    };
    Ok(Bound {
        metrics_addr,
        run: run.boxed(),
    })
}

/// The controllers, the key and team snapshots and the alerting config, until `shutdown`.
async fn act(
    ctx: Arc<Context>,
    watch_namespaces: Vec<String>,
    alerting: Option<AlertingConfig>,
    shutdown: Shutdown,
) {
    let alerts = async {
        if let Some(config) = &alerting {
            tokio::select! {
                () = alerting::run(&ctx.gateway, &ctx.metrics, config) => {},
                () = shutdown.clone() => {},
            }
        }
    };
    let snapshot = async {
        tokio::select! {
            () = snapshot::run(&ctx) => {},
            () = shutdown.clone() => {},
        }
    };
    futures::join!(
        controller::run(ctx.clone(), watch_namespaces, shutdown.clone()),
        alerts,
        snapshot
    );
}

/// Asks `/health/readiness` until the gateway answers once (for `/readyz`), backing off to 5 s, and reads its
/// version before reporting it ready.
async fn probe_gateway(ctx: &Context) {
    let gateway = &ctx.gateway;
    let mut wait = Duration::from_millis(250);
    let mut warned = false;
    loop {
        let answered = match gateway.readiness().await {
            Ok(_) => gateway
                .version()
                .await
                .map(|v| GatewayVersion::classify(v.as_deref())),
            Err(e) => Err(e),
        };
        match answered {
            Ok(version) => {
                ctx.set_gateway_version(version);
                tracing::info!(gateway = gateway.base_url(), "gateway is ready");
                ctx.readiness.set_gateway_answered();
                return;
            }
            Err(e) if !warned => {
                tracing::warn!(gateway = gateway.base_url(), error = %e, "gateway not ready yet; resources will show GatewayUnavailable until it is");
                warned = true;
            }
            Err(_) => {}
        }
        tokio::time::sleep(wait).await;
        wait = (wait * 2).min(Duration::from_secs(5));
    }
}
