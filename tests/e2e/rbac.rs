//! The chart's RBAC is exactly what the operator uses, and holds on the API server.
//! - The real operator (leader election on) runs a full scenario as the test bed's admin, through a client that
//!   records every request; each request becomes (apiGroup, resource[/subresource], verb), and that set is compared
//!   with the rules that `helm template` renders: everything used must be granted, and everything granted must be
//!   used or be on the allowlist below with its reason.
//! - The tenant personas, applied from `helm template`, give real 403s and allows to impersonated users bound to
//!   Kubernetes' `view`, `edit` and `admin` roles (stand-ins: the test bed has no built-in roles).
//! - With `watchNamespaces`, the real operator runs as the chart's ServiceAccount on the chart's Roles alone, and
//!   is refused everywhere else.
pub(crate) mod personas;
mod watch_namespaces;

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::time::Duration;

use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::{Api, Client, ResourceExt};
use routero_operator::crd::common::{Condition, is_ready};
use routero_operator::crd::{RouteroKey, RouteroMember, RouteroTeam};
use routero_operator::gateway::{AdminKey, GatewayConfig};
use routero_operator::leader::{self, LeaderElection};
use routero_operator::operator::{self, OperatorConfig};
use secrecy::SecretString;
use serde_json::{Value, json};
use tokio::sync::oneshot;

use crate::support::chart::{REQUIRED_VALUES, one, render};
use crate::support::fake_gateway::FakeGateway;
use crate::support::gateway_reader::GatewayReader;
use crate::support::kube_recorder::{Recorded, recording_client};
use crate::support::testbed::{self, GatewayTarget, kubectl, wait_for};

const WAIT: Duration = Duration::from_secs(40);

/// One RBAC permission: (apiGroup, resource or resource/subresource, verb).
type Access = (String, String, String);

fn access(group: &str, resource: &str, verb: &str) -> Access {
    (group.to_owned(), resource.to_owned(), verb.to_owned())
}

/// Granted though the scenario may not use it, and why that is still right.
const ALLOWED_UNUSED: &[(&str, &str, &str, &str)] = &[(
    "events.k8s.io",
    "events",
    "patch",
    "kube-runtime's event Recorder patches an Event (its series count) when the same event repeats within its \
     cache window; whether the scenario repeats one is down to timing",
)];

/// What one request needs: the permission, and the namespace and object name it is for.
#[derive(Debug, PartialEq)]
struct Need {
    access: Access,
    namespace: Option<String>,
    name: Option<String>,
}

/// Maps a request to what it needs; `None` for non-resource URLs (discovery, /version).
fn needed(r: &Recorded) -> Option<Need> {
    let segs: Vec<&str> = r.path.trim_matches('/').split('/').collect();
    let (group, rest) = match segs.as_slice() {
        ["api", _version, rest @ ..] => ("", rest),
        ["apis", group, _version, rest @ ..] => (*group, rest),
        _ => return None,
    };
    // namespaces/<ns>/<resource>[/<name>[/<sub>]], unless it is the Namespace object itself.
    let (namespace, rest) = match rest {
        ["namespaces", ns, tail @ ..] if !tail.is_empty() => (Some(*ns), tail),
        other => (None, other),
    };
    let (resource, name, sub) = match rest {
        [res] => (*res, None, None),
        [res, name] => (*res, Some(*name), None),
        [res, name, sub] => (*res, Some(*name), Some(*sub)),
        _ => return None,
    };
    let watch = r
        .query
        .split('&')
        .any(|kv| kv == "watch=true" || kv == "watch=1");
    let verb = match (r.method.as_str(), name) {
        ("GET", _) if watch => "watch",
        ("GET", None) => "list",
        ("GET", Some(_)) => "get",
        ("POST", _) => "create",
        ("PUT", _) => "update",
        ("PATCH", _) => "patch",
        ("DELETE", None) => "deletecollection",
        ("DELETE", Some(_)) => "delete",
        (m, _) => panic!("unexpected method {m} in {r:?}"),
    };
    let resource = match sub {
        Some(sub) => format!("{resource}/{sub}"),
        None => resource.to_owned(),
    };
    Some(Need {
        access: access(group, &resource, verb),
        namespace: namespace.map(str::to_owned),
        name: name.map(str::to_owned),
    })
}

/// Every permission a role grants, with the resourceNames it is limited to (`None`: any name).
fn grants(role: &Value) -> BTreeMap<Access, Option<BTreeSet<String>>> {
    let strings = |v: &Value| -> Vec<String> {
        v.as_array()
            .cloned()
            .unwrap_or_default()
            .iter()
            .map(|s| s.as_str().expect("string").to_owned())
            .collect()
    };
    let mut out: BTreeMap<Access, Option<BTreeSet<String>>> = BTreeMap::new();
    for rule in role["rules"].as_array().expect("rules") {
        let names = strings(&rule["resourceNames"]);
        for g in strings(&rule["apiGroups"]) {
            for r in strings(&rule["resources"]) {
                for v in strings(&rule["verbs"]) {
                    let entry = out
                        .entry(access(&g, &r, &v))
                        .or_insert_with(|| Some(BTreeSet::new()));
                    // Of two rules for one permission, one without resourceNames wins.
                    match entry {
                        Some(_) if names.is_empty() => *entry = None,
                        Some(set) => set.extend(names.iter().cloned()),
                        None => {}
                    }
                }
            }
        }
    }
    out
}

/// The chart's grants: the ClusterRole's everywhere, the leader-election Role's in the release namespace, and the
/// Lease name the Deployment passes.
struct ChartRbac {
    cluster: BTreeMap<Access, Option<BTreeSet<String>>>,
    leases: BTreeMap<Access, Option<BTreeSet<String>>>,
    lease_name: String,
}

fn chart_rbac() -> ChartRbac {
    let objects = render(REQUIRED_VALUES);
    let operator_role = &one(&objects, "ClusterRoleBinding")["roleRef"]["name"];
    let lease_role = objects
        .iter()
        .find(|o| {
            o["kind"] == "Role"
                && o["metadata"]["name"]
                    .as_str()
                    .is_some_and(|n| n.ends_with("-leader-election"))
        })
        .expect("the leader-election Role");
    let lease_name = chart_arg(&objects, "--lease-name=").expect("--lease-name");
    let cluster_role = objects
        .iter()
        .find(|o| o["kind"] == "ClusterRole" && &o["metadata"]["name"] == operator_role)
        .expect("the operator's ClusterRole");
    ChartRbac {
        cluster: grants(cluster_role),
        leases: grants(lease_role),
        lease_name,
    }
}

/// The value of the Deployment's argument `prefix<value>`.
fn chart_arg(objects: &[Value], prefix: &str) -> Option<String> {
    one(objects, "Deployment")["spec"]["template"]["spec"]["containers"][0]["args"]
        .as_array()
        .expect("args")
        .iter()
        .find_map(|a| Some(a.as_str()?.strip_prefix(prefix)?.to_owned()))
}

/// Server-side applies `objects` as the test bed's admin (idempotent: parallel tests may apply the same object).
pub(crate) fn apply(objects: &[Value]) {
    let list = json!({"apiVersion": "v1", "kind": "List", "items": objects});
    let (ok, out, err) = kubectl(
        &[
            "apply",
            "--server-side",
            "--force-conflicts",
            "--field-manager=routero-tests",
            "-f",
            "-",
        ],
        Some(&list.to_string()),
    );
    assert!(ok, "kubectl apply failed: {err}{out}");
}

/// Asserts that the API server refused the request with 403 Forbidden (a result is never printed: it may hold a
/// Secret).
#[track_caller]
fn assert_forbidden<T>(what: &str, result: kube::Result<T>) {
    match result {
        Err(kube::Error::Api(status)) if status.is_forbidden() => {}
        Err(e) => panic!("{what}: expected 403 Forbidden, got {e}"),
        Ok(_) => panic!("{what}: allowed, expected 403 Forbidden"),
    }
}

/// Retries `call` while the API server answers 403: RBAC objects just applied reach its authorizer within moments.
/// Once one allow is seen for an identity, its later 403s are the rules', not a stale cache's.
async fn eventually_allowed<T, F, Fut>(what: &str, mut call: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = kube::Result<T>>,
{
    wait_for(what, Duration::from_secs(10), || {
        let attempt = call();
        async move {
            match attempt.await {
                Ok(v) => Some(v),
                Err(kube::Error::Api(status)) if status.is_forbidden() => None,
                Err(e) => panic!("{what}: {e}"),
            }
        }
    })
    .await
}

async fn create<K>(api: &Api<K>, kind: &str, name: &str, spec: Value)
where
    K: kube::Resource + Clone + std::fmt::Debug + serde::Serialize + serde::de::DeserializeOwned,
{
    let obj: K = serde_json::from_value(json!({"apiVersion": "routero.ai/v1alpha1", "kind": kind, "metadata": {"name": name}, "spec": spec}))
        .expect("object");
    api.create(&PostParams::default(), &obj)
        .await
        .unwrap_or_else(|e| panic!("create {kind} {name}: {e}"));
}

async fn wait_ready<K>(api: &Api<K>, name: &str, conditions: fn(&K) -> Option<Vec<Condition>>)
where
    K: kube::Resource + Clone + std::fmt::Debug + serde::de::DeserializeOwned,
{
    wait_for(&format!("{name} Ready"), WAIT, || async {
        let o = api.get(name).await.ok()?;
        is_ready(&conditions(&o)?, o.meta().generation).then_some(())
    })
    .await;
}

async fn delete_and_wait<K>(api: &Api<K>, name: &str)
where
    K: kube::Resource + Clone + std::fmt::Debug + serde::de::DeserializeOwned,
{
    api.delete(name, &DeleteParams::default())
        .await
        .unwrap_or_else(|e| panic!("delete {name}: {e}"));
    wait_for(&format!("{name} deleted"), WAIT, || async {
        api.get_opt(name).await.ok()?.is_none().then_some(())
    })
    .await;
}

async fn secret_value(secrets: &Api<Secret>, name: &str) -> Option<String> {
    let s = secrets.get_opt(name).await.ok()??;
    String::from_utf8(s.data?.get("apiKey")?.0.clone()).ok()
}

/// Rotates the key by annotation; returns the old value once the Secret holds a new one.
async fn rotate(keys: &Api<RouteroKey>, secrets: &Api<Secret>, name: &str) -> String {
    let old = secret_value(secrets, name)
        .await
        .expect("key in the Secret");
    let patch = json!({"metadata": {"annotations": {"routero.ai/rotate": "2026-11-28T10:00:00Z"}}});
    keys.patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .expect("annotate");
    wait_for(&format!("{name} rotated"), WAIT, || async {
        secret_value(secrets, name).await.filter(|v| v != &old)
    })
    .await;
    old
}

/// The real operator on `client`, watching `watch`, leading through the Lease `lease_name` in `lease_ns` (the
/// release namespace). Send on the returned channel to stop it gracefully.
fn start_operator(
    client: &Client,
    target: &GatewayTarget,
    watch: &[String],
    lease_ns: &str,
    lease_name: &str,
) -> (oneshot::Sender<()>, tokio::task::JoinHandle<()>) {
    let config = OperatorConfig {
        gateway: GatewayConfig::new(
            target.url.clone(),
            AdminKey::Static(SecretString::from(target.admin_key.clone())),
        ),
        watch_namespaces: watch.to_vec(),
        admin_namespaces: vec!["routero-system".into()],
        resync: Duration::from_secs(2),
        metrics_addr: None,
        leader_election: Some(LeaderElection {
            lease_name: lease_name.to_owned(),
            lease_namespace: lease_ns.to_owned(),
            identity: leader::default_identity(),
            lease_duration: Duration::from_secs(15),
        }),
        alerting: None,
    };
    let (tx, rx) = oneshot::channel::<()>();
    let client = client.clone();
    let task = tokio::spawn(async move {
        let shutdown = async move {
            let _ = rx.await;
        };
        if let Err(e) = operator::run(client, config, shutdown).await {
            panic!("operator failed: {e}");
        }
    });
    (tx, task)
}

/// Team, member, two keys (both rotated by annotation, one with Recreate and a grace period), a key deleted with
/// Orphan and one with Delete, then the member and the team: the operator's whole life cycle. Returns the
/// ownerReferences the operator put on the key Secrets.
async fn scenario(
    client: &Client,
    op_client: &Client,
    target: &GatewayTarget,
    ns: &str,
    lease_name: &str,
) -> Vec<OwnerReference> {
    let (stop, task) = start_operator(op_client, target, &[ns.to_owned()], ns, lease_name);
    let teams: Api<RouteroTeam> = Api::namespaced(client.clone(), ns);
    let members: Api<RouteroMember> = Api::namespaced(client.clone(), ns);
    let keys: Api<RouteroKey> = Api::namespaced(client.clone(), ns);
    let secrets: Api<Secret> = Api::namespaced(client.clone(), ns);
    let suffix = testbed::suffix();

    create(
        &teams,
        "RouteroTeam",
        "team",
        json!({"teamId": format!("rbac-{suffix}"), "maxBudget": 10, "models": []}),
    )
    .await;
    wait_ready(&teams, "team", |t: &RouteroTeam| {
        Some(t.status.clone()?.conditions)
    })
    .await;
    create(
        &members,
        "RouteroMember",
        "alice",
        json!({"email": format!("alice-{suffix}@example.com"), "teams": [{"name": "team", "role": "user"}]}),
    )
    .await;
    wait_ready(&members, "alice", |m: &RouteroMember| {
        Some(m.status.clone()?.conditions)
    })
    .await;
    create(
        &keys,
        "RouteroKey",
        "shared",
        json!({"teamRef": {"name": "team"}, "deletionPolicy": "Orphan"}),
    )
    .await;
    create(
        &keys,
        "RouteroKey",
        "personal",
        json!({"teamRef": {"name": "team"}, "memberRef": {"name": "alice"},
               "rotation": {"strategy": "Recreate", "gracePeriod": "2s"}}),
    )
    .await;
    for name in ["shared", "personal"] {
        wait_ready(&keys, name, |k: &RouteroKey| {
            Some(k.status.clone()?.conditions)
        })
        .await;
    }
    let owners: Vec<OwnerReference> = secrets
        .list(&Default::default())
        .await
        .expect("list Secrets")
        .iter()
        .flat_map(|s| s.owner_references().to_vec())
        .collect();

    rotate(&keys, &secrets, "shared").await;
    let old = rotate(&keys, &secrets, "personal").await;
    // The Recreate grace period runs out and the old key is retired.
    let gw = GatewayReader::new(target);
    wait_for("the old personal key retired", WAIT, || async {
        (gw.status_with_key(&old).await == 401).then_some(())
    })
    .await;

    delete_and_wait(&keys, "shared").await;
    let kept = secrets
        .get("shared")
        .await
        .expect("Orphan keeps the Secret");
    assert!(kept.owner_references().is_empty());
    delete_and_wait(&keys, "personal").await;
    assert!(secrets.get_opt("personal").await.expect("get").is_none());
    delete_and_wait(&members, "alice").await;
    delete_and_wait(&teams, "team").await;

    // Graceful stop: in-flight reconciles finish and the Lease is released.
    let _ = stop.send(());
    tokio::time::timeout(Duration::from_secs(30), task)
        .await
        .expect("the operator stops within 30 s")
        .expect("the operator task ends cleanly");
    owners
}

#[tokio::test]
async fn chart_rbac_is_exactly_what_the_operator_uses() {
    let rbac = chart_rbac();
    let client = testbed::client().await;
    let (op_client, log) = recording_client().await;
    let fake = FakeGateway::start().await;
    let target = GatewayTarget::fake(&fake);
    let ns = testbed::namespace(&client, "rbac").await;
    let owner_refs = scenario(&client, &op_client, &target, &ns, &rbac.lease_name).await;

    let mut used: BTreeMap<Access, Vec<String>> = BTreeMap::new();
    for r in log.requests() {
        let Some(need) = needed(&r) else {
            assert!(
                ["/api", "/apis", "/version"].contains(&r.path.trim_end_matches('/')),
                "a non-resource request the chart does not grant: {r:?}"
            );
            continue;
        };
        assert!(
            need.namespace.as_deref() == Some(ns.as_str()),
            "watching one namespace, every request stays in it: {r:?}"
        );
        if need.access.1 == "leases" {
            // The leader-election Role: the release namespace only, and only the chart's Lease where it names one.
            let names = rbac.leases.get(&need.access).unwrap_or_else(|| {
                panic!(
                    "the leader-election Role does not grant {:?} ({r:?})",
                    need.access
                )
            });
            if let (Some(names), Some(name)) = (names, &need.name) {
                assert!(
                    names.contains(name),
                    "{:?} on Lease {name}, but the Role allows only {names:?}",
                    need.access
                );
            }
            assert!(
                need.name.is_none() || need.name.as_deref() == Some(rbac.lease_name.as_str()),
                "the operator uses the Lease the chart passes: {r:?}"
            );
        }
        used.entry(need.access).or_default().push(r.path.clone());
    }
    for ((g, r, v), paths) in &used {
        eprintln!("used: {g}/{r} {v} ({} requests)", paths.len());
    }

    assert!(
        rbac.leases
            .keys()
            .all(|(g, r, _)| g == "coordination.k8s.io" && r == "leases"),
        "the namespaced Role grants Leases only: {:?}",
        rbac.leases
    );
    assert!(
        !rbac
            .cluster
            .keys()
            .any(|(g, _, _)| g == "coordination.k8s.io"),
        "Leases are granted in the release namespace, not cluster-wide"
    );
    assert!(
        rbac.cluster.values().all(Option::is_none),
        "the ClusterRole is not limited by name"
    );

    let mut granted: BTreeSet<Access> = rbac.cluster.keys().cloned().collect();
    granted.extend(rbac.leases.keys().cloned());
    let missing: Vec<String> = used
        .iter()
        .filter(|(a, _)| !granted.contains(*a))
        .map(|(a, paths)| format!("{a:?} (e.g. {})", paths[0]))
        .collect();
    assert!(
        missing.is_empty(),
        "the operator needs permissions the chart does not grant:\n{}",
        missing.join("\n")
    );

    // The OwnerReferencesPermissionEnforcement admission plugin lets only holders of update on the owner's
    // finalizers subresource set blockOwnerDeletion: exactly those owners need it.
    assert!(
        !owner_refs.is_empty(),
        "the key Secrets carry an ownerReference"
    );
    let finalizers_needed: BTreeSet<Access> = owner_refs
        .iter()
        .filter(|o| o.block_owner_deletion == Some(true))
        .map(|o| {
            let group = o.api_version.rsplit_once('/').map_or("", |(g, _)| g);
            access(
                group,
                &format!("{}s/finalizers", o.kind.to_lowercase()),
                "update",
            )
        })
        .collect();
    for f in &finalizers_needed {
        assert!(
            granted.contains(f),
            "the operator sets blockOwnerDeletion on Secrets, so the chart must grant {f:?}"
        );
    }

    let unused: Vec<&Access> = granted
        .iter()
        .filter(|a| !used.contains_key(*a) && !finalizers_needed.contains(*a))
        .filter(|(g, r, v)| {
            // get is implied by list: a list returns the same objects, so granting it adds no access.
            let implied = v == "get" && granted.contains(&access(g, r, "list"));
            let allowed = ALLOWED_UNUSED
                .iter()
                .any(|(ag, ar, av, _)| ag == g && ar == r && av == v);
            !(implied || allowed)
        })
        .collect();
    assert!(
        unused.is_empty(),
        "the chart grants permissions the operator never used (remove them, or allowlist them with a reason): \
         {unused:?}"
    );
}

#[test]
fn requests_map_to_rbac_verbs() {
    let r = |method: &str, path: &str, query: &str| {
        needed(&Recorded {
            method: method.into(),
            path: path.into(),
            query: query.into(),
        })
        .map(|n| n.access)
    };
    assert_eq!(
        r(
            "GET",
            "/apis/routero.ai/v1alpha1/namespaces/a/routerokeys",
            "watch=true&resourceVersion=1"
        ),
        Some(access("routero.ai", "routerokeys", "watch"))
    );
    assert_eq!(
        r("GET", "/apis/routero.ai/v1alpha1/routerokeys", ""),
        Some(access("routero.ai", "routerokeys", "list"))
    );
    assert_eq!(
        r(
            "PATCH",
            "/apis/routero.ai/v1alpha1/namespaces/a/routeroteams/t/status",
            "fieldManager=x"
        ),
        Some(access("routero.ai", "routeroteams/status", "patch"))
    );
    assert_eq!(
        r("GET", "/api/v1/namespaces/a/secrets/s", ""),
        Some(access("", "secrets", "get"))
    );
    assert_eq!(
        r("PUT", "/api/v1/namespaces/a/secrets/s", ""),
        Some(access("", "secrets", "update"))
    );
    assert_eq!(
        r("DELETE", "/api/v1/namespaces/a/secrets/s", ""),
        Some(access("", "secrets", "delete"))
    );
    assert_eq!(
        r("DELETE", "/api/v1/namespaces/a/secrets", "labelSelector=x"),
        Some(access("", "secrets", "deletecollection"))
    );
    assert_eq!(
        r("POST", "/apis/events.k8s.io/v1/namespaces/a/events", ""),
        Some(access("events.k8s.io", "events", "create"))
    );
    assert_eq!(
        r("GET", "/api/v1/namespaces/a", ""),
        Some(access("", "namespaces", "get"))
    );
    let lease = needed(&Recorded {
        method: "PATCH".into(),
        path: "/apis/coordination.k8s.io/v1/namespaces/sys/leases/op".into(),
        query: "fieldManager=x".into(),
    })
    .expect("a resource request");
    assert_eq!(lease.namespace.as_deref(), Some("sys"));
    assert_eq!(lease.name.as_deref(), Some("op"));
    assert_eq!(r("GET", "/version", ""), None);
}
