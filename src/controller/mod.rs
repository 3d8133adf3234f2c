//! One controller per kind. Each reconcile observes the gateway, diffs, acts, then patches status.
pub mod context;
pub mod duration;
pub mod key;
pub mod key_value;
pub mod member;
pub mod ownership;
pub mod provenance;
pub mod rotation;
pub mod secret;
pub mod secret_view;
pub mod snapshot;
pub mod status;
pub mod team;

use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};

use futures::{StreamExt, TryStreamExt};
use kube::runtime::controller::{self, Action, Controller};
use kube::runtime::finalizer::{Event as Finalizer, finalizer};
use kube::runtime::{WatchStreamExt, reflector, watcher};
use kube::{Api, Resource, ResourceExt};

use k8s_openapi::api::core::v1::Secret;
use kube::runtime::reflector::ObjectRef;

use crate::crd::{RouteroKey, RouteroMember, RouteroTeam};
use crate::error::{Error, Result};
use crate::gateway::GatewayError;
use crate::gateway::types::Metadata;
pub use context::{Context, Settings};

/// The finalizer every kind carries while its gateway object may exist.
pub const FINALIZER: &str = "routero.ai/finalizer";

/// One reconcile under the finalizer (the single top-level action, DESIGN §3): `apply` while the object lives,
/// `cleanup` once it is being deleted. A lost race on the finalizer patch requeues quietly; any other failure is
/// written to status by `failed` and published as a warning Event, then returned for the error policy's backoff.
async fn finalized<K, A, C, F>(
    obj: Arc<K>,
    ctx: &Context,
    apply: impl FnOnce(Arc<K>) -> A,
    cleanup: impl FnOnce(Arc<K>) -> C,
    failed: impl FnOnce(status::Outcome) -> F,
) -> Result<Action>
where
    K: Resource<DynamicType = (), Scope = kube::core::NamespaceResourceScope>
        + Clone
        + std::fmt::Debug
        + serde::Serialize
        + serde::de::DeserializeOwned
        + Send
        + Sync
        + 'static,
    A: Future<Output = Result<Action>>,
    C: Future<Output = Result<Action>>,
    F: Future<Output = ()>,
{
    let ns = obj
        .namespace()
        .ok_or_else(|| Error::Invalid(format!("{} has no namespace", K::kind(&()))))?;
    let api: Api<K> = Api::namespaced(ctx.client.clone(), &ns);
    // A new object: add the finalizer and go on in the same pass. (`finalizer` alone ends the pass there, and the
    // object's work waits for the pass the patch triggers: a watch round trip, and behind a backlog a whole queue.)
    let obj = if obj.meta().deletion_timestamp.is_none()
        && !obj.finalizers().iter().any(|f| f == FINALIZER)
    {
        match add_finalizer(&api, &obj).await {
            Ok(patched) => Arc::new(patched),
            // Changed since it was read: the pass that change triggers starts again.
            Err(kube::Error::Api(e)) if e.code == 409 || e.code == 422 => {
                return Ok(Action::requeue(std::time::Duration::from_millis(500)));
            }
            Err(e) => {
                let e = Error::from(e);
                failed(status::Outcome::failed(e.reason(), e.to_string())).await;
                ctx.event(obj.as_ref(), true, e.reason(), e.to_string())
                    .await;
                return Err(e);
            }
        }
    } else {
        obj
    };
    let result = finalizer(&api, FINALIZER, obj.clone(), |event| async {
        match event {
            Finalizer::Apply(o) => apply(o).await,
            Finalizer::Cleanup(o) => cleanup(o).await,
        }
    })
    .await
    .map_err(|e| Error::Finalizer(Box::new(e)));
    if let Err(e) = &result {
        if e.is_finalizer_race() {
            return Ok(Action::requeue(std::time::Duration::from_millis(500)));
        }
        failed(status::Outcome::failed(e.reason(), e.to_string())).await;
        ctx.event(obj.as_ref(), true, e.reason(), e.to_string())
            .await;
    }
    result
}

/// Adds the operator's finalizer, on the condition that the object is still the version read (a merge patch with
/// its `resourceVersion`: a concurrent change answers 409, and nobody's finalizer is lost or doubled).
async fn add_finalizer<K>(api: &Api<K>, obj: &K) -> std::result::Result<K, kube::Error>
where
    K: Resource<DynamicType = ()> + Clone + std::fmt::Debug + serde::de::DeserializeOwned,
{
    let mut finalizers = obj.finalizers().to_vec();
    finalizers.push(FINALIZER.to_owned());
    let patch = serde_json::json!({
        "metadata": {"resourceVersion": obj.resource_version(), "finalizers": finalizers}
    });
    api.patch(
        &obj.name_any(),
        &kube::api::PatchParams::default(),
        &kube::api::Patch::Merge(&patch),
    )
    .await
}

/// A gateway team or user as deletion sees it: its metadata, and why this resource must not delete it even if the
/// object is its own (an admin user seen from a tenant namespace).
pub struct Held {
    pub metadata: Option<Metadata>,
    pub refusal: Option<String>,
}

impl Held {
    pub fn deletable(metadata: Option<Metadata>) -> Self {
        Self {
            metadata,
            refusal: None,
        }
    }
}

/// A deleted team or member under its `deletionPolicy`: `Orphan` leaves the gateway object `what` in place; `Delete`
/// reads it and deletes it (as the resource's actor) only when it carries the resource's ownership markers, or
/// carries none and `proven` (the resource's status proves it managed it). Gone already: done; someone else's, or
/// refused: left alone, and the finalizer still completes. `consequence` completes the Event (" after revoking each of its keys").
#[allow(clippy::too_many_arguments)]
async fn release<K, D>(
    obj: &K,
    ctx: &Context,
    policy: crate::crd::DeletionPolicy,
    what: &str,
    consequence: &str,
    proven: bool,
    read: impl Future<Output = std::result::Result<Option<Held>, GatewayError>>,
    delete: impl FnOnce(String) -> D,
) -> Result<Action>
where
    K: Resource<DynamicType = ()>,
    D: Future<Output = std::result::Result<bool, GatewayError>>,
{
    if policy == crate::crd::DeletionPolicy::Orphan {
        let note = format!("left {what} in place (deletionPolicy: Orphan)");
        ctx.event(obj, false, "Orphaned", note).await;
        return Ok(Action::await_change());
    }
    let owner = ownership::Owner::of(obj)?;
    match read.await? {
        Some(held) if owner.owns(held.metadata.as_ref(), proven) => match held.refusal {
            Some(why) => {
                let note = format!("left {what} in place: {why}");
                ctx.event(obj, true, "Forbidden", note).await;
            }
            None => {
                delete(owner.actor()).await?;
                let note = format!("deleted {what}{consequence}");
                ctx.event(obj, false, "Deleted", note).await;
            }
        },
        Some(_) => {
            let note = format!("left {what} in place: it is not managed by this resource");
            ctx.event(obj, false, "Orphaned", note).await;
        }
        None => {}
    }
    Ok(Action::await_change())
}

/// Revokes, one `/key/delete` each, every live key bound to the gateway user or team `id`, including keys made
/// outside the operator: deprovisioning never relies on the gateway's cascade (DESIGN §4). On LiteLLM 1.98.0 a
/// deleted user's keys kept authenticating (`/v1/models` 200) for about 60 s, until the gateway's auth cache
/// expired, although `/user/delete` had removed their rows; `/key/delete` takes effect on the next request on
/// 1.98.0 and 1.108.7 alike (tests/e2e/gateway_contract.rs `user_delete_cascades_keys`, `key_works_until_deleted`).
/// Call it only from `release`'s delete step, that is once the user or team has proved by its owner marker (or
/// this resource's provenance) that it is this resource's own: the id comes from spec and the ownership check,
/// never from anything a tenant can write, so a tenant cannot aim it at someone else's keys.
async fn revoke_keys(
    ctx: &Context,
    holder: crate::gateway::client::KeyHolder,
    id: &str,
    actor: &str,
) -> std::result::Result<usize, GatewayError> {
    let hashes = ctx.gateway.key_hashes_of(holder, id).await?;
    let mut revoked = 0;
    for hash in &hashes {
        // A key already gone (a concurrent delete, the RouteroKey's own finalizer) counts as revoked.
        ctx.gateway.key_delete(hash, actor).await?;
        revoked += 1;
    }
    if revoked > 0 {
        tracing::info!(
            ?holder,
            id,
            revoked,
            "revoked keys before deleting their holder"
        );
    }
    Ok(revoked)
}

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

/// Runs one reconcile of an object in `namespace` once the fair gate admits it (see `fair`), and records its count
/// and duration (the wait for the gate excluded).
async fn measured<Fut>(
    kind: &'static str,
    namespace: Option<String>,
    ctx: Arc<Context>,
    reconcile: impl FnOnce() -> Fut,
) -> Result<Action>
where
    Fut: Future<Output = Result<Action>>,
{
    let gate = ctx.gate.clone();
    gate.run(namespace.as_deref().unwrap_or_default(), || async {
        let started = Instant::now();
        let result = reconcile().await;
        ctx.metrics.reconciled(kind, started.elapsed());
        result
    })
    .await
}

/// The team reconcile, measured; once a team's deletion completes, its spend and budget series go too.
async fn reconcile_team(team: Arc<RouteroTeam>, ctx: Arc<Context>) -> Result<Action> {
    let deleting = team.metadata.deletion_timestamp.is_some();
    let result = measured("RouteroTeam", team.namespace(), ctx.clone(), || {
        team::reconcile(team.clone(), ctx.clone())
    })
    .await;
    if deleting && result.is_ok() {
        ctx.metrics.forget_team(&team);
    }
    result
}

/// The key reconcile, measured; once a key's deletion completes, its series go too.
async fn reconcile_key(key: Arc<RouteroKey>, ctx: Arc<Context>) -> Result<Action> {
    let deleting = key.metadata.deletion_timestamp.is_some();
    let result = measured("RouteroKey", key.namespace(), ctx.clone(), || {
        key::reconcile(key.clone(), ctx.clone())
    })
    .await;
    if deleting && result.is_ok() {
        ctx.metrics.forget_key(&key);
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

/// At most this many reconciles (of every kind and namespace together) run at once; the others wait at the fair
/// gate, in turn by namespace. Reconciles mostly wait on the rate-limited gateway, so more would only hold more
/// API-server connections (one each) and lengthen the line a newcomer's first call waits in.
pub const SLOTS: usize = 16;

/// What the reconciles act on: spec (generation), deletion, other parties' finalizers and the rotate annotation.
/// Status-only updates, which the controllers write themselves, trigger nothing; periodic resyncs still run. Nor
/// does the operator's own finalizer: the pass that adds it goes on with the object's work, and a second pass woken by
/// that patch would only repeat it (and overwrite, with the same verdict, whatever status was written since). One
/// removed by someone else is put back by the next pass.
fn acted_on<K: Resource>(obj: &K) -> Option<u64> {
    let meta = obj.meta();
    let mut h = DefaultHasher::new();
    meta.generation.hash(&mut h);
    meta.deletion_timestamp.is_some().hash(&mut h);
    meta.finalizers
        .iter()
        .flatten()
        .filter(|f| *f != FINALIZER)
        .for_each(|f| f.hash(&mut h));
    meta.annotations
        .as_ref()
        .and_then(|a| a.get(secret::ROTATE))
        .hash(&mut h);
    Some(h.finish())
}

/// What dependents (keys, members) act on in a team or member: readiness, identity, allowlist, deletion.
fn readiness_of<K: Resource, S: std::hash::Hash>(obj: &K, facts: S) -> Option<u64> {
    let mut h = DefaultHasher::new();
    obj.meta().generation.hash(&mut h);
    obj.meta().deletion_timestamp.is_some().hash(&mut h);
    facts.hash(&mut h);
    Some(h.finish())
}

fn team_facts(t: &RouteroTeam) -> Option<u64> {
    let status = t.status.as_ref();
    let ready = status.map(|s| {
        s.conditions
            .iter()
            .map(|c| (c.type_.clone(), c.status.clone(), c.reason.clone()))
            .collect::<Vec<_>>()
    });
    readiness_of(
        t,
        (
            ready,
            status.and_then(|s| s.team_id.clone()),
            t.spec.models.clone(),
        ),
    )
}

fn member_facts(m: &RouteroMember) -> Option<u64> {
    let status = m.status.as_ref();
    let ready = status.map(|s| {
        s.conditions
            .iter()
            .map(|c| (c.type_.clone(), c.status.clone(), c.reason.clone()))
            .collect::<Vec<_>>()
    });
    readiness_of(m, (ready, status.and_then(|s| s.user_id.clone())))
}

/// A watch on `K` that feeds a cache and passes on only the changes `predicate` cares about.
fn changes<K, P>(
    ctx: &Context,
    ns: Option<&str>,
    predicate: P,
    writer: Option<reflector::store::Writer<K>>,
) -> impl futures::Stream<Item = Result<K, watcher::Error>> + Send + 'static
where
    K: Resource<DynamicType = (), Scope = kube::core::NamespaceResourceScope>
        + Clone
        + std::fmt::Debug
        + serde::de::DeserializeOwned
        + Send
        + Sync
        + 'static,
    P: kube::runtime::utils::Predicate<K> + Send + 'static,
{
    let events = watcher(api::<K>(ctx, ns), watcher::Config::default())
        .default_backoff()
        .modify(strip);
    let events = match writer {
        Some(w) => events.reflect(w).boxed(),
        None => events.boxed(),
    };
    events
        .applied_objects()
        .predicate_filter(predicate, Default::default())
}

/// Drops what no reconcile reads before an object enters a cache: managedFields (about 6 KiB per object as
/// `serde_json` values), labels, and every annotation but the operator's own (`routero.ai/…`, such as the rotate
/// request): `kubectl apply`'s copy of the last applied manifest, Argo CD's and Helm's. A map left empty is dropped
/// too (an empty `BTreeMap` that once held an entry keeps its node). Status patches use server-side apply and the
/// finalizer helper patches by JSON pointer, so no write sends the cached metadata back.
fn strip<K: Resource>(obj: &mut K) {
    let meta = obj.meta_mut();
    meta.managed_fields = None;
    meta.labels = None;
    if let Some(a) = meta.annotations.as_mut() {
        a.retain(|k, _| k.starts_with(secret::OPERATOR_PREFIX));
    }
    if meta.annotations.as_ref().is_some_and(|a| a.is_empty()) {
        meta.annotations = None;
    }
}

/// Runs every controller until `shutdown` resolves: one set for all namespaces, or, given `namespaces`, one set
/// per namespace, each with namespaced watches and caches, so the operator needs no cluster-wide access.
pub async fn run(
    ctx: Arc<Context>,
    namespaces: Vec<String>,
    shutdown: impl Future<Output = ()> + Send + Sync + Clone + 'static,
) {
    let scopes: Vec<Option<String>> = if namespaces.is_empty() {
        vec![None]
    } else {
        namespaces.into_iter().map(Some).collect()
    };
    let (synced, pending): (Vec<_>, Vec<_>) = scopes
        .iter()
        .map(|_| tokio::sync::oneshot::channel())
        .unzip();
    let controllers = scopes
        .into_iter()
        .zip(synced)
        .map(|(ns, tx)| run_in(ctx.clone(), ns, shutdown.clone(), tx));
    // Ready once every namespace's caches hold their first full list (a dropped sender: its controllers stopped).
    let all_synced = async {
        let results = futures::future::join_all(pending).await;
        if results.iter().all(Result::is_ok) {
            tracing::info!("watch caches synced");
            ctx.readiness.set_caches_synced();
        }
    };
    futures::join!(futures::future::join_all(controllers), all_synced);
}

/// The three controllers over `namespace` (`None`: all); `synced_tx` is told once their caches are filled.
async fn run_in(
    ctx: Arc<Context>,
    namespace: Option<String>,
    shutdown: impl Future<Output = ()> + Send + Sync + Clone + 'static,
    synced_tx: tokio::sync::oneshot::Sender<()>,
) {
    let ns = namespace.as_deref();
    // Unbounded: every due reconcile is admitted, and waits its turn at the fair gate (`measured`), not in the
    // controller's first-come queue.
    let config = || controller::Config::default().concurrency(0);

    let (team_cache, writer) = reflector::store::<RouteroTeam>();
    // Read by the team snapshot (how many teams the operator manages).
    ctx.team_cache
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .push(team_cache.clone());
    let teams = Controller::for_stream(
        changes(&ctx, ns, acted_on, Some(writer)),
        team_cache.clone(),
    )
    .with_config(config())
    .graceful_shutdown_on(shutdown.clone())
    .run(reconcile_team, error_policy, ctx.clone())
    .for_each(|r| log_result("RouteroTeam", r));

    let (key_cache, writer) = reflector::store::<RouteroKey>();
    // Read by the key snapshot (how many keys the operator manages, summed over the namespaces).
    ctx.key_cache
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .push(key_cache.clone());
    let (member_cache, member_writer) = reflector::store::<RouteroMember>();
    // The key controller's own caches of the teams and members that trigger it: each is updated by the very watch
    // event that triggers the key, so a pass never reads a cache older than its trigger (a team's deletion is seen
    // by the pass it causes). Teams and members are few next to keys.
    let (key_teams, key_teams_writer) = reflector::store::<RouteroTeam>();
    let (key_members, key_members_writer) = reflector::store::<RouteroMember>();
    // The Secrets the operator writes (label-selected: never a cache of every Secret), pending ones included, so a
    // quiet resync reads its Secrets from here; only the delivered ones trigger reconciles.
    // The cache keeps a projection of each (`SecretView`), not the Secret: a fraction of its memory.
    let (secret_cache, mut secret_writer) = reflector::store::<secret_view::SecretView>();
    let secrets = watcher(
        api::<Secret>(&ctx, ns),
        watcher::Config::default().labels(secret::MANAGED_SELECTOR),
    )
    .default_backoff()
    .inspect_ok(move |event| secret_writer.apply_watcher_event(&secret_view::project(event)))
    .applied_objects()
    .try_filter(|s| futures::future::ready(!s.labels().contains_key(secret::PENDING_LABEL)));
    ctx.caches
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .push(context::Caches {
            teams: key_teams.clone(),
            members: key_members.clone(),
            secrets: secret_cache.clone(),
        });
    let (store, member_store) = (key_cache.clone(), key_cache.clone());
    let keys = Controller::for_stream(changes(&ctx, ns, acted_on, Some(writer)), key_cache.clone())
        .with_config(config())
        .owns_stream(secrets)
        .watches_stream(
            changes(&ctx, ns, team_facts, Some(key_teams_writer)),
            move |t| dependents(&store, t.namespace(), t.name_any(), false),
        )
        .watches_stream(
            changes(&ctx, ns, member_facts, Some(key_members_writer)),
            move |m| dependents(&member_store, m.namespace(), m.name_any(), true),
        )
        .graceful_shutdown_on(shutdown.clone())
        .run(reconcile_key, error_policy, ctx.clone())
        .for_each(|r| log_result("RouteroKey", r));

    let member_refs = member_cache.clone();
    let members = Controller::for_stream(
        changes(&ctx, ns, acted_on, Some(member_writer)),
        member_cache.clone(),
    )
    .with_config(config())
    .watches_stream(changes(&ctx, ns, team_facts, None), move |t| {
        let (ns, name) = (t.namespace(), t.name_any());
        member_refs
            .state()
            .into_iter()
            .filter(|m| m.namespace() == ns && m.spec.teams.iter().any(|mt| mt.name == name))
            .map(|m| ObjectRef::from_obj(m.as_ref()))
            .collect::<Vec<_>>()
    })
    .graceful_shutdown_on(shutdown.clone())
    .run(
        |m, c| {
            measured("RouteroMember", m.namespace(), c.clone(), || {
                member::reconcile(m, c)
            })
        },
        error_policy,
        ctx.clone(),
    )
    .for_each(|r| log_result("RouteroMember", r));
    // Synced once every controller's cache holds its first full list (an error means the controller stopped first).
    let synced = async {
        let all = futures::future::try_join3(
            team_cache.wait_until_ready(),
            key_cache.wait_until_ready(),
            member_cache.wait_until_ready(),
        );
        let key_caches = futures::future::try_join3(
            secret_cache.wait_until_ready(),
            key_teams.wait_until_ready(),
            key_members.wait_until_ready(),
        );
        let all = futures::future::try_join(all, key_caches);
        if all.await.is_ok() {
            let _ = synced_tx.send(());
        }
    };
    futures::join!(teams, keys, members, synced);
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::ConfigMap;

    fn with_finalizers(finalizers: &[&str]) -> ConfigMap {
        let mut obj = ConfigMap::default();
        obj.metadata.generation = Some(1);
        obj.metadata.finalizers = Some(finalizers.iter().map(|f| (*f).to_owned()).collect());
        obj
    }

    #[test]
    fn caches_keep_only_the_operators_own_annotations() {
        let mut obj = ConfigMap::default();
        obj.metadata.labels = Some([("app".to_owned(), "x".to_owned())].into());
        obj.metadata.annotations = Some(
            [
                ("kubectl.kubernetes.io/last-applied-configuration", "{}"),
                ("argocd.argoproj.io/tracking-id", "a:b"),
                (secret::ROTATE, "1"),
            ]
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .into(),
        );
        strip(&mut obj);
        assert_eq!(obj.metadata.labels, None);
        assert_eq!(
            obj.metadata.annotations,
            Some([(secret::ROTATE.to_owned(), "1".to_owned())].into())
        );
        obj.metadata.annotations = Some(
            [(
                "kubectl.kubernetes.io/last-applied-configuration".to_owned(),
                "{}".to_owned(),
            )]
            .into(),
        );
        strip(&mut obj);
        assert_eq!(obj.metadata.annotations, None);
    }

    #[test]
    fn the_operators_own_finalizer_wakes_no_second_pass_but_others_do() {
        let bare = acted_on(&with_finalizers(&[]));
        assert_eq!(acted_on(&with_finalizers(&[FINALIZER])), bare);
        assert_ne!(acted_on(&with_finalizers(&["example.com/hold"])), bare);
        let mut deleted = with_finalizers(&[FINALIZER]);
        deleted.metadata.deletion_timestamp = Some(
            k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(jiff::Timestamp::UNIX_EPOCH),
        );
        assert_ne!(acted_on(&deleted), bare);
        let mut edited = with_finalizers(&[FINALIZER]);
        edited.metadata.generation = Some(2);
        assert_ne!(acted_on(&edited), bare);
    }
}
