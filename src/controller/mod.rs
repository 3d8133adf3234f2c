//! One controller per kind. Each reconcile observes the gateway, diffs, acts, then patches status.
pub mod context;
pub mod ownership;
pub mod status;
pub mod team;

use std::future::Future;
use std::sync::Arc;

use futures::StreamExt;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::watcher;
use kube::{Api, ResourceExt};

use crate::crd::RouteroTeam;
use crate::error::Error;
pub use context::{Context, Settings};

/// Backs off per object: 1 s doubling to 5 min.
fn error_policy<K: ResourceExt>(obj: Arc<K>, err: &Error, ctx: Arc<Context>) -> Action {
    let key = format!("{}/{}", obj.namespace().unwrap_or_default(), obj.name_any());
    let wait = ctx.backoff(&key);
    tracing::warn!(object = key, reason = err.reason(), error = %err, ?wait, "reconcile failed");
    Action::requeue(wait)
}

fn api<K>(ctx: &Context, namespace: Option<&str>) -> Api<K>
where
    K: kube::Resource<DynamicType = (), Scope = kube::core::NamespaceResourceScope>,
{
    match namespace {
        Some(ns) => Api::namespaced(ctx.client.clone(), ns),
        None => Api::all(ctx.client.clone()),
    }
}

/// Runs every controller until `shutdown` resolves.
pub async fn run(ctx: Arc<Context>, namespace: Option<String>, shutdown: impl Future<Output = ()> + Send + Sync + 'static) {
    let teams = Controller::new(api::<RouteroTeam>(&ctx, namespace.as_deref()), watcher::Config::default())
        .graceful_shutdown_on(shutdown)
        .run(team::reconcile, error_policy, ctx.clone())
        .for_each(|res| async move {
            if let Err(e) = res {
                tracing::debug!(error = %e, "team controller");
            }
        });
    teams.await;
}
