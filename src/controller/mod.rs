//! One controller per kind. Each reconcile observes the gateway, diffs, acts, then patches status.
pub mod context;
pub mod duration;
pub mod key;
pub mod key_value;
pub mod member;
pub mod ownership;
pub mod rotation;
pub mod secret;
pub mod status;
pub mod team;

use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use futures::StreamExt;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::watcher;
use kube::{Api, ResourceExt};

use k8s_openapi::api::core::v1::Secret;
use kube::runtime::reflector::ObjectRef;

use crate::crd::{RouteroKey, RouteroMember, RouteroTeam};
use crate::error::{Error, Result};
pub use context::{Context, Settings};

/// Counts the failure and backs off per object: 1 s doubling to 5 min.
fn error_policy<K>(obj: Arc<K>, err: &Error, ctx: Arc<Context>) -> Action
where
    K: kube::Resource<DynamicType = ()>,
{
    ctx.metrics.reconcile_failed(&K::kind(&()), err);
    let key = format!("{}/{}", obj.namespace().unwrap_or_default(), obj.name_any());
    let wait = ctx.backoff(&key);
    tracing::warn!(object = key, reason = err.reason(), error = %err, ?wait, "reconcile failed");
    Action::requeue(wait)
}

/// Runs one reconcile and records its count and duration.
async fn measured(
    kind: &'static str,
    ctx: Arc<Context>,
    reconcile: impl Future<Output = Result<Action>>,
) -> Result<Action> {
    let started = Instant::now();
    let result = reconcile.await;
    ctx.metrics.reconciled(kind, started.elapsed());
    result
}

/// The team reconcile, measured; once a team's deletion completes, its spend and budget series go too.
async fn reconcile_team(team: Arc<RouteroTeam>, ctx: Arc<Context>) -> Result<Action> {
    let deleting = team.metadata.deletion_timestamp.is_some();
    let result = measured(
        "RouteroTeam",
        ctx.clone(),
        team::reconcile(team.clone(), ctx.clone()),
    )
    .await;
    if deleting && result.is_ok() {
        ctx.metrics.forget_team(&team);
    }
    result
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

/// Consumes a controller's result stream; failures were already reported by the reconcile and error policy.
async fn log_result<K: kube::Resource>(
    kind: &'static str,
    res: Result<(ObjectRef<K>, Action), kube::runtime::controller::Error<Error, watcher::Error>>,
) {
    if let Err(e) = res {
        tracing::debug!(error = %e, kind, "controller");
    }
}

/// Keys in the same namespace whose `teamRef` or `memberRef` names `name`.
fn dependents(
    store: &kube::runtime::reflector::Store<RouteroKey>,
    ns: Option<String>,
    name: String,
    by_member: bool,
) -> Vec<ObjectRef<RouteroKey>> {
    store
        .state()
        .into_iter()
        .filter(|k| k.namespace() == ns)
        .filter(|k| {
            if by_member {
                k.spec.member_ref.as_ref().is_some_and(|m| m.name == name)
            } else {
                k.spec.team_ref.name == name
            }
        })
        .map(|k| ObjectRef::from_obj(k.as_ref()))
        .collect()
}

/// Runs every controller until `shutdown` resolves.
pub async fn run(
    ctx: Arc<Context>,
    namespace: Option<String>,
    shutdown: impl Future<Output = ()> + Send + Sync + Clone + 'static,
) {
    let ns = namespace.as_deref();
    let teams = Controller::new(api::<RouteroTeam>(&ctx, ns), watcher::Config::default());
    let team_cache = teams.store();
    let teams = teams
        .graceful_shutdown_on(shutdown.clone())
        .run(reconcile_team, error_policy, ctx.clone())
        .for_each(|r| log_result("RouteroTeam", r));

    let keys = Controller::new(api::<RouteroKey>(&ctx, ns), watcher::Config::default());
    let store = keys.store();
    let member_store = store.clone();
    let key_cache = store.clone();
    let keys = keys
        // Only the Secrets the operator wrote are watched: never a cluster-wide cache of every Secret.
        .owns(
            api::<Secret>(&ctx, ns),
            watcher::Config::default().labels(secret::MANAGED_SELECTOR),
        )
        .watches(
            api::<RouteroTeam>(&ctx, ns),
            watcher::Config::default(),
            move |t| dependents(&store, t.namespace(), t.name_any(), false),
        )
        .watches(
            api::<RouteroMember>(&ctx, ns),
            watcher::Config::default(),
            move |m| dependents(&member_store, m.namespace(), m.name_any(), true),
        )
        .graceful_shutdown_on(shutdown.clone())
        .run(
            |k, c| measured("RouteroKey", c.clone(), key::reconcile(k, c)),
            error_policy,
            ctx.clone(),
        )
        .for_each(|r| log_result("RouteroKey", r));
    let members = Controller::new(api::<RouteroMember>(&ctx, ns), watcher::Config::default());
    let member_refs = members.store();
    let member_cache = member_refs.clone();
    let members = members
        .watches(
            api::<RouteroTeam>(&ctx, ns),
            watcher::Config::default(),
            move |t| {
                let (ns, name) = (t.namespace(), t.name_any());
                member_refs
                    .state()
                    .into_iter()
                    .filter(|m| {
                        m.namespace() == ns && m.spec.teams.iter().any(|mt| mt.name == name)
                    })
                    .map(|m| ObjectRef::from_obj(m.as_ref()))
                    .collect::<Vec<_>>()
            },
        )
        .graceful_shutdown_on(shutdown.clone())
        .run(
            |m, c| measured("RouteroMember", c.clone(), member::reconcile(m, c)),
            error_policy,
            ctx.clone(),
        )
        .for_each(|r| log_result("RouteroMember", r));
    // Ready once every controller's cache holds its first full list (an error means the controller stopped first).
    let synced = async {
        let all = futures::future::try_join3(
            team_cache.wait_until_ready(),
            key_cache.wait_until_ready(),
            member_cache.wait_until_ready(),
        );
        if all.await.is_ok() {
            tracing::info!("watch caches synced");
            ctx.readiness.set_caches_synced();
        }
    };
    futures::join!(teams, keys, members, synced);
}
