//! The no-leak, no-loss invariant (DESIGN §3), checked against the fake gateway's real state after a test settles:
//! every RouteroKey has exactly one live gateway key, equal to its Secret's value; every gateway key carrying our
//! ownership marker belongs to an existing RouteroKey; no pending value and no unfinished finalizer is left.
use std::collections::BTreeSet;

use k8s_openapi::api::core::v1::Secret;
use kube::api::ListParams;
use kube::{Api, Client, ResourceExt};
use routero_operator::crd::RouteroKey;
use routero_operator::crd::common::is_ready;

use super::fake_gateway::FakeGateway;
use super::gateway_reader::sha256_hex;

/// Every violation found, in words; empty when the invariant holds.
pub async fn violations(client: &Client, ns: &str, fake: &FakeGateway) -> Vec<String> {
    let mut problems = Vec::new();
    let keys: Api<RouteroKey> = Api::namespaced(client.clone(), ns);
    let secrets: Api<Secret> = Api::namespaced(client.clone(), ns);
    let lp = ListParams::default();
    let keys = match keys.list(&lp).await {
        Ok(l) => l.items,
        Err(e) => return vec![format!("cannot list keys: {e}")],
    };
    let secret_list = match secrets
        .list(&ListParams::default().labels("app.kubernetes.io/managed-by=routero-operator"))
        .await
    {
        Ok(l) => l.items,
        Err(e) => return vec![format!("cannot list secrets: {e}")],
    };
    let live = fake.keys();
    let owner_prefix = format!("RouteroKey/{ns}/");
    let mut owners = BTreeSet::new();

    for k in &keys {
        let name = k.name_any();
        let owner = format!("{owner_prefix}{name}");
        owners.insert(owner.clone());
        if k.metadata.deletion_timestamp.is_some() {
            problems.push(format!("{name}: deletion never completed (finalizer left)"));
            continue;
        }
        if !k
            .status
            .as_ref()
            .is_some_and(|s| is_ready(&s.conditions, k.metadata.generation))
        {
            problems.push(format!(
                "{name}: not Ready: {:?}",
                k.status.as_ref().map(|s| &s.conditions)
            ));
        }
        let value = secret_list
            .iter()
            .find(|s| s.name_any() == k.secret_name())
            .and_then(|s| {
                s.data
                    .as_ref()?
                    .get(&k.spec.secret.key_field)
                    .map(|b| String::from_utf8_lossy(&b.0).into_owned())
            });
        let Some(value) = value else {
            problems.push(format!("{name}: its Secret holds no key (loss)"));
            continue;
        };
        let mine: Vec<_> = live
            .iter()
            .filter(|row| row["metadata"]["routero.ai/owner"] == owner.as_str())
            .collect();
        if mine.len() != 1 {
            problems.push(format!(
                "{name}: {} live gateway keys instead of exactly one",
                mine.len()
            ));
        }
        if !mine.iter().any(|row| row["token"] == sha256_hex(&value)) {
            problems.push(format!(
                "{name}: the Secret's key is not live on the gateway (loss)"
            ));
        }
        let alias = k.alias();
        let with_alias = live
            .iter()
            .filter(|row| row["key_alias"] == alias.as_str())
            .count();
        if with_alias != 1 {
            problems.push(format!(
                "{name}: {with_alias} live keys carry alias {alias}"
            ));
        }
    }
    for row in &live {
        if let Some(owner) = row["metadata"]["routero.ai/owner"]
            .as_str()
            .filter(|o| o.starts_with(&owner_prefix))
            && !owners.contains(owner)
        {
            problems.push(format!(
                "leak: live gateway key of {owner}, which no longer exists"
            ));
        }
    }
    for s in &secret_list {
        if s.name_any().starts_with("routero-pending-") {
            problems.push(format!("pending Secret {} left behind", s.name_any()));
        }
    }
    problems
}
