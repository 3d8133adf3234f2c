//! The Secrets the key controller writes: the workload's Secret, and a short-lived pending Secret that holds a new
//! key value between choosing it and confirming it on the gateway (so a crash never loses or leaks one).
use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::{Resource, ResourceExt};

use super::key_value::KeyValue;
use super::secret_view::SecretView;
use crate::crd::RouteroKey;

pub const MANAGED_BY_LABEL: &str = "app.kubernetes.io/managed-by";
pub const MANAGED_BY: &str = "routero-operator";
/// Selects every Secret the operator writes (the watch is label-selected, not a cache of every Secret).
pub const MANAGED_SELECTOR: &str = "app.kubernetes.io/managed-by=routero-operator";
/// The operator's own annotations (on Secrets and on its resources) start with this.
pub const OPERATOR_PREFIX: &str = "routero.ai/";
pub const KEY_LABEL: &str = "routero.ai/key";
/// On the pending Secret only.
pub const PENDING_LABEL: &str = "routero.ai/pending";

/// On the workload Secret: the short id of the key it holds (a rollout can be triggered on change).
pub const KEY_ID: &str = "routero.ai/key-id";
/// On the workload Secret: when the key in it was issued or rotated.
pub const ROTATED_AT: &str = "routero.ai/rotated-at";
/// On the RouteroKey: any new value rotates the key once.
pub const ROTATE: &str = "routero.ai/rotate";
/// On the workload Secret: the `routero.ai/rotate` value already acted on.
pub const ROTATE_HANDLED: &str = "routero.ai/rotate-handled";
/// On the workload Secret during a Recreate grace period: the old key's hash and when to delete it.
pub const RETIRING_KEY: &str = "routero.ai/retiring-key";
pub const RETIRE_AFTER: &str = "routero.ai/retire-after";
/// On the pending Secret: what the pending value is for, and the key it replaces.
pub const INTENT: &str = "routero.ai/intent";
pub const REPLACES: &str = "routero.ai/replaces";
const PENDING_FIELD: &str = "next";

/// What a pending key value is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IntentKind {
    /// A first key, or a replacement for one that is lost.
    Issue,
    /// In-place replacement of `replaces` through `/key/regenerate`.
    Regenerate,
    /// A second key under a temporary alias; `replaces` is retired after the grace period.
    Recreate,
}

impl IntentKind {
    fn as_str(self) -> &'static str {
        match self {
            Self::Issue => "issue",
            Self::Regenerate => "regenerate",
            Self::Recreate => "recreate",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        match s {
            "issue" => Some(Self::Issue),
            "regenerate" => Some(Self::Regenerate),
            "recreate" => Some(Self::Recreate),
            _ => None,
        }
    }
}

/// A key value chosen but not yet in the workload Secret.
#[derive(Debug)]
pub struct Intent {
    pub kind: IntentKind,
    pub next: KeyValue,
    /// Hash of the key being replaced.
    pub replaces: Option<String>,
    /// The `routero.ai/rotate` value this rotation answers.
    pub trigger: Option<String>,
    /// For a key taken over by Regenerate: the metadata it gets in that call (ours merged into what it held). Not
    /// persisted: a resumed takeover regenerates without it, and the drift step stamps the markers instead.
    pub markers: Option<crate::gateway::types::Metadata>,
}

pub fn pending_name(key: &RouteroKey) -> String {
    format!("routero-pending-{}", key.name_any())
}

/// Ours when it has an ownerReference to this RouteroKey: a Secret the operator did not create is never written.
pub fn is_ours(secret: &Secret, key: &RouteroKey) -> bool {
    let uid = key.uid();
    secret
        .owner_references()
        .iter()
        .any(|o| Some(&o.uid) == uid.as_ref())
}

pub fn owner_reference(key: &RouteroKey) -> Option<OwnerReference> {
    key.controller_owner_ref(&())
}

fn meta(
    key: &RouteroKey,
    name: String,
    mut labels: BTreeMap<String, String>,
    annotations: BTreeMap<String, String>,
) -> ObjectMeta {
    labels.insert(MANAGED_BY_LABEL.into(), MANAGED_BY.into());
    labels.insert(KEY_LABEL.into(), key.name_any());
    ObjectMeta {
        name: Some(name),
        namespace: key.namespace(),
        labels: Some(labels),
        annotations: Some(annotations),
        owner_references: owner_reference(key).map(|o| vec![o]),
        ..ObjectMeta::default()
    }
}

/// The workload Secret holding `value`: every field in one object, so a consumer never sees half of it.
/// `state` carries the operator's annotations (key id, rotation time, retiring key).
pub fn workload_secret(
    key: &RouteroKey,
    value: &KeyValue,
    gateway_url: &str,
    state: &BTreeMap<String, String>,
) -> Secret {
    let spec = &key.spec.secret;
    let mut annotations = spec.annotations.clone();
    annotations.extend(state.iter().map(|(k, v)| (k.clone(), v.clone())));
    annotations.insert(KEY_ID.into(), value.id());
    let mut data = BTreeMap::new();
    data.insert(
        spec.key_field.clone(),
        ByteString(value.expose().as_bytes().to_vec()),
    );
    if let Some(field) = &spec.base_url_field {
        data.insert(field.clone(), ByteString(gateway_url.as_bytes().to_vec()));
    }
    Secret {
        metadata: meta(key, key.secret_name(), spec.labels.clone(), annotations),
        data: Some(data),
        type_: Some("Opaque".into()),
        ..Secret::default()
    }
}

/// The operator's own annotations on a workload Secret (everything under routero.ai/ except the key id).
pub fn operator_state(secret: &Secret) -> BTreeMap<String, String> {
    secret
        .annotations()
        .iter()
        .filter(|(k, _)| k.starts_with(OPERATOR_PREFIX) && k.as_str() != KEY_ID)
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// The key in a workload Secret, if it holds one.
pub fn key_in(secret: &Secret, field: &str) -> Option<KeyValue> {
    secret
        .data
        .as_ref()?
        .get(field)
        .and_then(|b| KeyValue::from_bytes(&b.0))
}

/// True when the Secret still looks exactly as the operator would write it for `value` (labels, annotations, fields).
pub fn matches(secret: &Secret, want: &Secret) -> bool {
    SecretView::of(secret).covers(&SecretView::of(want))
}

pub fn pending_secret(key: &RouteroKey, intent: &Intent) -> Secret {
    let mut annotations = BTreeMap::new();
    annotations.insert(INTENT.into(), intent.kind.as_str().into());
    if let Some(h) = &intent.replaces {
        annotations.insert(REPLACES.into(), h.clone());
    }
    if let Some(t) = &intent.trigger {
        annotations.insert(ROTATE_HANDLED.into(), t.clone());
    }
    let mut data = BTreeMap::new();
    data.insert(
        PENDING_FIELD.into(),
        ByteString(intent.next.expose().as_bytes().to_vec()),
    );
    Secret {
        metadata: meta(
            key,
            pending_name(key),
            BTreeMap::from([(PENDING_LABEL.into(), "true".into())]),
            annotations,
        ),
        data: Some(data),
        type_: Some("Opaque".into()),
        ..Secret::default()
    }
}

pub fn read_pending(secret: &Secret) -> Option<Intent> {
    let a = secret.annotations();
    Some(Intent {
        kind: IntentKind::parse(a.get(INTENT)?)?,
        next: key_in(secret, PENDING_FIELD)?,
        replaces: a.get(REPLACES).cloned(),
        trigger: a.get(ROTATE_HANDLED).cloned(),
        markers: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::RouteroKeySpec;

    fn key() -> RouteroKey {
        let mut k = RouteroKey::new("api", serde_json::from_value::<RouteroKeySpec>(serde_json::json!({"teamRef": {"name": "t"}, "secret": {"name": "llm", "keyField": "OPENAI_API_KEY", "baseUrlField": "OPENAI_BASE_URL", "labels": {"app": "x"}}})).expect("spec"));
        k.metadata.namespace = Some("ns".into());
        k.metadata.uid = Some("uid-1".into());
        k
    }

    #[test]
    fn workload_secret_has_every_field_and_an_owner() {
        let k = key();
        let v = KeyValue::generate();
        let s = workload_secret(
            &k,
            &v,
            "https://gw",
            &BTreeMap::from([(ROTATED_AT.to_string(), "t0".to_string())]),
        );
        let data = s.data.as_ref().expect("data");
        assert_eq!(data["OPENAI_API_KEY"].0, v.expose().as_bytes());
        assert_eq!(data["OPENAI_BASE_URL"].0, b"https://gw");
        assert_eq!(s.labels()[MANAGED_BY_LABEL], MANAGED_BY);
        assert_eq!(s.labels()["app"], "x");
        assert_eq!(s.annotations()[KEY_ID], v.id());
        assert_eq!(s.name_any(), "llm");
        assert!(is_ours(&s, &k));
        assert_eq!(
            key_in(&s, "OPENAI_API_KEY").map(|x| x.hash()),
            Some(v.hash())
        );
        assert!(matches(&s, &s.clone()));
        let mut edited = s.clone();
        edited.data.get_or_insert_default().insert(
            "OPENAI_API_KEY".into(),
            ByteString(b"sk-edited-by-hand-000".to_vec()),
        );
        assert!(!matches(&edited, &s));
    }

    #[test]
    fn a_secret_without_our_owner_reference_is_not_ours() {
        let mut s = workload_secret(&key(), &KeyValue::generate(), "u", &BTreeMap::new());
        s.metadata.owner_references = None;
        assert!(!is_ours(&s, &key()));
    }

    #[test]
    fn pending_intent_round_trips() {
        let k = key();
        let intent = Intent {
            kind: IntentKind::Recreate,
            next: KeyValue::generate(),
            replaces: Some("abc".into()),
            trigger: Some("now".into()),
            markers: None,
        };
        let back = read_pending(&pending_secret(&k, &intent)).expect("intent");
        assert_eq!(back.kind, IntentKind::Recreate);
        assert_eq!(back.next.hash(), intent.next.hash());
        assert_eq!(back.replaces.as_deref(), Some("abc"));
        assert_eq!(back.trigger.as_deref(), Some("now"));
    }
}
