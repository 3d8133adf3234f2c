//! Wiring: builds the shared context from settings and runs the controllers. Used by `main` and by the tests, which
//! run the real operator as a task against the test bed.
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use kube::Client;

use crate::Result;
use crate::controller::{self, Context, Settings};
use crate::gateway::{Gateway, GatewayConfig};

#[derive(Clone, Debug)]
pub struct OperatorConfig {
    pub gateway: GatewayConfig,
    /// Watch only this namespace; `None` watches all.
    pub watch_namespace: Option<String>,
    /// Namespaces where admin roles are honoured.
    pub admin_namespaces: Vec<String>,
    pub resync: Duration,
}

/// Runs the controllers until `shutdown` resolves.
pub async fn run(
    client: Client,
    config: OperatorConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<()> {
    let gateway = Arc::new(Gateway::new(config.gateway)?);
    match gateway.readiness().await {
        Ok(_) => tracing::info!(gateway = gateway.base_url(), "gateway is ready"),
        Err(e) => {
            tracing::warn!(gateway = gateway.base_url(), error = %e, "gateway not ready yet; resources will show GatewayUnavailable until it is")
        }
    }
    let settings = Settings {
        admin_namespaces: config.admin_namespaces,
        resync: config.resync,
    };
    let ctx = Arc::new(Context::new(client, gateway, settings));
    // Every controller stops on the same signal.
    let shutdown = futures::FutureExt::shared(shutdown);
    controller::run(ctx, config.watch_namespace, shutdown).await;
    Ok(())
}
