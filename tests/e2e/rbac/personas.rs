//! The tenant personas of the chart on a real API server: applied from `helm template`, aggregated into stand-ins
//! of Kubernetes' `view`, `edit` and `admin`, and exercised by impersonated users bound in one namespace. Every
//! refusal is a real 403 from the RBAC authorizer; every allow is a real write.
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Api, Client};
use routero_operator::crd::{RouteroKey, RouteroMember, RouteroTeam};
use serde_json::{Value, json};

use super::{apply, assert_forbidden, eventually_allowed};
use crate::support::chart::{REQUIRED_VALUES, render};
use crate::support::testbed::{self, kubectl};

/// Kubernetes' built-in user-facing roles as its bootstrap policy defines them: no rules of their own, filled by
/// aggregation from every ClusterRole labelled `aggregate-to-<name>`; `view` aggregates into `edit`, and `edit`
/// into `admin`. The test bed has none, and applies aggregation when it evaluates a request.
pub(crate) fn builtin_user_roles() -> Vec<Value> {
    let role = |name: &str, aggregates_into: Option<&str>| {
        let mut labels = json!({"kubernetes.io/bootstrapping": "rbac-defaults"});
        if let Some(into) = aggregates_into {
            labels[format!("rbac.authorization.k8s.io/aggregate-to-{into}")] = json!("true");
        }
        json!({
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRole",
            "metadata": {
                "name": name,
                "labels": labels,
                "annotations": {"rbac.authorization.kubernetes.io/autoupdate": "true"},
            },
            "aggregationRule": {"clusterRoleSelectors": [
                {"matchLabels": {format!("rbac.authorization.k8s.io/aggregate-to-{name}"): "true"}}
            ]},
        })
    };
    vec![
        role("admin", None),
        role("edit", Some("admin")),
        role("view", Some("edit")),
    ]
}

pub(crate) fn role_binding(ns: &str, cluster_role: &str, user: &str) -> Value {
    json!({
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": {"name": format!("{cluster_role}-users"), "namespace": ns},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": cluster_role},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": user}],
    })
}

fn object<K: serde::de::DeserializeOwned>(kind: &str, name: &str, spec: Value) -> K {
    serde_json::from_value(json!({
        "apiVersion": "routero.ai/v1alpha1", "kind": kind, "metadata": {"name": name}, "spec": spec
    }))
    .expect("object")
}

fn key(name: &str) -> RouteroKey {
    object("RouteroKey", name, json!({"teamRef": {"name": "team"}}))
}

fn team(name: &str) -> RouteroTeam {
    object("RouteroTeam", name, json!({"maxBudget": 10}))
}

fn member(name: &str) -> RouteroMember {
    object(
        "RouteroMember",
        name,
        json!({"email": format!("{name}@example.com"), "teams": [{"name": "team", "role": "user"}]}),
    )
}

/// What the status subresource write is: a harmless, schema-valid report.
fn status_patch() -> Patch<Value> {
    Patch::Merge(json!({"status": {"observedGeneration": 1}}))
}

/// One person: their client (impersonated) and the three kinds in the test's namespace.
struct Person {
    teams: Api<RouteroTeam>,
    keys: Api<RouteroKey>,
    members: Api<RouteroMember>,
    client: Client,
}

impl Person {
    async fn new(user: &str, ns: &str) -> Self {
        let client = testbed::impersonating(user, &["system:authenticated"]).await;
        Self {
            teams: Api::namespaced(client.clone(), ns),
            keys: Api::namespaced(client.clone(), ns),
            members: Api::namespaced(client.clone(), ns),
            client,
        }
    }
}

/// Deletes these ClusterRoles when dropped, after a failure too: a persona left behind would go on aggregating into
/// the shared `view`, `edit` and `admin` stand-ins, which stay for other tests.
pub(crate) struct DeleteOnDrop(pub(crate) Vec<String>);

impl Drop for DeleteOnDrop {
    fn drop(&mut self) {
        let mut args = vec!["delete", "clusterrole", "--ignore-not-found"];
        args.extend(self.0.iter().map(String::as_str));
        let (ok, _, err) = kubectl(&args, None);
        if !ok {
            eprintln!("could not delete the ClusterRoles {:?}: {err}", self.0);
        }
    }
}

/// The persona ClusterRoles (`<release>-view`, `-edit`, `-admin`) the chart renders for `release`, without the
/// operator's own.
pub(crate) fn persona_roles(release: &str) -> Vec<Value> {
    render(&format!("{REQUIRED_VALUES}fullnameOverride: {release}\n"))
        .into_iter()
        .filter(|o| o["kind"] == "ClusterRole" && o["metadata"]["name"] != release)
        .collect()
}

#[tokio::test]
async fn tenant_personas_give_real_403s_and_allows() {
    let admin = testbed::client().await;
    let suffix = testbed::suffix();
    // A release of its own: its persona ClusterRoles are cluster-wide, and are removed at the end.
    let release = format!("personas-{suffix}");
    let personas = persona_roles(&release);
    let names: Vec<&str> = personas
        .iter()
        .filter_map(|o| o["metadata"]["name"].as_str())
        .collect();
    let (view_role, admin_role) = (format!("{release}-view"), format!("{release}-admin"));
    for want in [&view_role, &format!("{release}-edit"), &admin_role] {
        assert!(names.contains(&want.as_str()), "{want} among {names:?}");
    }
    assert_eq!(names.len(), 3, "three personas: {names:?}");

    let cleanup = DeleteOnDrop(names.iter().map(|n| (*n).to_owned()).collect());
    let mut cluster_roles = builtin_user_roles();
    cluster_roles.extend(personas.iter().cloned());
    apply(&cluster_roles);

    let ns = testbed::namespace(&admin, "personas").await;
    let elsewhere = testbed::namespace(&admin, "personas-other").await;
    let user = |who: &str| format!("{who}-{suffix}@example.com");
    apply(&[
        role_binding(&ns, "view", &user("viewer")),
        role_binding(&ns, "edit", &user("editor")),
        role_binding(&ns, "admin", &user("ns-admin")),
        role_binding(&ns, &admin_role, &user("platform")),
    ]);
    // A team, a key and a member made by the cluster admin: the 403s below refuse access to existing objects.
    let teams: Api<RouteroTeam> = Api::namespaced(admin.clone(), &ns);
    let keys: Api<RouteroKey> = Api::namespaced(admin.clone(), &ns);
    let members: Api<RouteroMember> = Api::namespaced(admin.clone(), &ns);
    let pp = PostParams::default();
    teams.create(&pp, &team("team")).await.expect("team");
    keys.create(&pp, &key("existing")).await.expect("key");
    members.create(&pp, &member("alice")).await.expect("member");

    // view: reads the three kinds, writes nothing.
    let viewer = Person::new(&user("viewer"), &ns).await;
    let all = ListParams::default();
    eventually_allowed("view lists routerokeys", || viewer.keys.list(&all)).await;
    viewer.teams.get("team").await.expect("view reads a team");
    viewer
        .members
        .get("alice")
        .await
        .expect("view reads a member");
    assert_forbidden(
        "view creates a RouteroKey",
        viewer.keys.create(&pp, &key("v")).await,
    );
    assert_forbidden(
        "view deletes a RouteroKey",
        viewer
            .keys
            .delete("existing", &DeleteParams::default())
            .await,
    );

    // edit: manages RouteroKeys, reads teams and members, writes no status.
    let editor = Person::new(&user("editor"), &ns).await;
    let mine = key("mine");
    eventually_allowed("edit creates a RouteroKey", || {
        editor.keys.create(&pp, &mine)
    })
    .await;
    let label = json!({"metadata": {"labels": {"owner": "editor"}}});
    editor
        .keys
        .patch("mine", &PatchParams::default(), &Patch::Merge(&label))
        .await
        .expect("edit patches its RouteroKey");
    editor.teams.list(&all).await.expect("edit lists teams");
    editor
        .members
        .get("alice")
        .await
        .expect("edit reads a member");
    assert_forbidden(
        "edit creates a RouteroTeam",
        editor.teams.create(&pp, &team("t")).await,
    );
    assert_forbidden(
        "edit creates a RouteroMember",
        editor.members.create(&pp, &member("bob")).await,
    );
    assert_forbidden(
        "edit patches a RouteroTeam",
        editor
            .teams
            .patch("team", &PatchParams::default(), &Patch::Merge(&label))
            .await,
    );
    assert_forbidden(
        "edit deletes a RouteroMember",
        editor
            .members
            .delete("alice", &DeleteParams::default())
            .await,
    );
    assert_forbidden(
        "edit patches routerokeys/status",
        editor
            .keys
            .patch_status("existing", &PatchParams::default(), &status_patch())
            .await,
    );
    assert_forbidden(
        "edit patches routeroteams/status",
        editor
            .teams
            .patch_status("team", &PatchParams::default(), &status_patch())
            .await,
    );
    assert_forbidden(
        "edit patches routeromembers/status",
        editor
            .members
            .patch_status("alice", &PatchParams::default(), &status_patch())
            .await,
    );
    assert_forbidden(
        "edit, bound in one namespace, lists routerokeys in another",
        Api::<RouteroKey>::namespaced(editor.client.clone(), &elsewhere)
            .list(&all)
            .await,
    );
    editor
        .keys
        .delete("mine", &DeleteParams::default())
        .await
        .expect("edit deletes its RouteroKey");

    // A namespace admin is a tenant: edit's rights on the Routero kinds, not the admin persona's.
    let ns_admin = Person::new(&user("ns-admin"), &ns).await;
    let admins = key("admins");
    eventually_allowed("admin creates a RouteroKey", || {
        ns_admin.keys.create(&pp, &admins)
    })
    .await;
    assert_forbidden(
        "a namespace admin creates a RouteroTeam",
        ns_admin.teams.create(&pp, &team("t")).await,
    );
    assert_forbidden(
        "a namespace admin patches routeroteams/status",
        ns_admin
            .teams
            .patch_status("team", &PatchParams::default(), &status_patch())
            .await,
    );

    // The platform team, bound to the admin persona: teams, members and status too.
    let platform = Person::new(&user("platform"), &ns).await;
    let platform_team = team("platform-team");
    eventually_allowed("the admin persona creates a RouteroTeam", || {
        platform.teams.create(&pp, &platform_team)
    })
    .await;
    platform
        .members
        .create(&pp, &member("carol"))
        .await
        .expect("the admin persona creates a RouteroMember");
    for name in ["team", "platform-team"] {
        platform
            .teams
            .patch_status(name, &PatchParams::default(), &status_patch())
            .await
            .expect("the admin persona patches routeroteams/status");
    }
    platform
        .keys
        .patch_status("existing", &PatchParams::default(), &status_patch())
        .await
        .expect("the admin persona patches routerokeys/status");
    platform
        .members
        .patch_status("carol", &PatchParams::default(), &status_patch())
        .await
        .expect("the admin persona patches routeromembers/status");
    platform
        .teams
        .delete("platform-team", &DeleteParams::default())
        .await
        .expect("the admin persona deletes a RouteroTeam");
    assert_forbidden(
        "the admin persona, bound in one namespace, lists routeroteams in another",
        Api::<RouteroTeam>::namespaced(platform.client.clone(), &elsewhere)
            .list(&all)
            .await,
    );

    drop(cleanup);
}
