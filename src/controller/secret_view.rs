//! What the key controller keeps of a Secret it wrote: a projection, not the `k8s-openapi` object. The watch cache
//! of the operator's Secrets holds these, so a quiet resync decides from them without an API-server GET; drift
//! checks on a live Secret go through the same projection, so the cached and the live decision cannot differ.
//!
//! A cached `Secret` cost about 2.8 KiB (three `BTreeMap` nodes for labels, annotations and data, whatever they
//! hold, and a full `ObjectMeta`); this keeps the operator's own annotations, the owners' uids, the key values, and
//! a digest of everything else that "looks as the operator writes it" compares.
use std::borrow::Cow;

use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::ResourceExt;
use kube::runtime::watcher;
use sha2::{Digest as _, Sha256};

use super::key_value::KeyValue;
use super::secret;
use crate::crd::RouteroKey;

/// The first 128 bits of a SHA-256: labels and annotations are only compared with what the operator would write,
/// and a tenant can only ever aim a collision at its own Secret (whose drift would then go uncorrected).
type Digest = [u8; 16];

#[derive(Clone, Debug)]
pub struct SecretView {
    /// Name and namespace only: the cache's index.
    metadata: ObjectMeta,
    /// The uids of the Secret's ownerReferences.
    owners: Box<[Box<str>]>,
    /// The operator's annotations (`routero.ai/…`), whose values the key controller reads.
    state: Box<[(Box<str>, Box<str>)]>,
    /// One digest per label and per annotation, sorted.
    pairs: Box<[Digest]>,
    /// One digest of every data field's name and bytes.
    data: Digest,
    /// The data fields that hold a key value.
    keys: Box<[(Box<str>, KeyValue)]>,
}

impl SecretView {
    pub fn of(s: &Secret) -> Self {
        let mut pairs: Vec<Digest> = s
            .labels()
            .iter()
            .map(|(k, v)| pair(b'l', k, v))
            .chain(s.annotations().iter().map(|(k, v)| pair(b'a', k, v)))
            .collect();
        pairs.sort_unstable();
        let fields = s.data.iter().flatten();
        let mut data = Sha256::new();
        for (k, v) in fields.clone() {
            data.update((k.len() as u64).to_le_bytes());
            data.update(k.as_bytes());
            data.update((v.0.len() as u64).to_le_bytes());
            data.update(&v.0);
        }
        Self {
            metadata: ObjectMeta {
                name: s.metadata.name.clone(),
                namespace: s.metadata.namespace.clone(),
                ..ObjectMeta::default()
            },
            owners: s
                .owner_references()
                .iter()
                .map(|o| o.uid.as_str().into())
                .collect(),
            state: s
                .annotations()
                .iter()
                .filter(|(k, _)| k.starts_with(secret::OPERATOR_PREFIX))
                .map(|(k, v)| (k.as_str().into(), v.as_str().into()))
                .collect(),
            pairs: pairs.into(),
            data: truncate(data.finalize().as_slice()),
            keys: fields
                .filter_map(|(k, v)| KeyValue::from_bytes(&v.0).map(|kv| (k.as_str().into(), kv)))
                .collect(),
        }
    }

    /// Ours when it has an ownerReference to this RouteroKey: a Secret the operator did not create is never written.
    pub fn is_owned_by(&self, key: &RouteroKey) -> bool {
        key.uid()
            .is_some_and(|uid| self.owners.iter().any(|o| **o == *uid))
    }

    /// One of the operator's (`routero.ai/…`) annotations.
    pub fn annotation(&self, name: &str) -> Option<&str> {
        self.state
            .iter()
            .find(|(k, _)| **k == *name)
            .map(|(_, v)| &**v)
    }

    /// The operator's annotations except the key id, which the next write carries on.
    pub fn operator_state(&self) -> std::collections::BTreeMap<String, String> {
        self.state
            .iter()
            .filter(|(k, _)| **k != *secret::KEY_ID)
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    /// The key in data field `field`, if it holds one.
    pub fn key_in(&self, field: &str) -> Option<&KeyValue> {
        self.keys
            .iter()
            .find(|(k, _)| **k == *field)
            .map(|(_, v)| v)
    }

    /// True when this Secret has every label and annotation of `want`, and exactly its data.
    pub fn covers(&self, want: &SecretView) -> bool {
        self.data == want.data
            && want
                .pairs
                .iter()
                .all(|p| self.pairs.binary_search(p).is_ok())
    }
}

fn pair(kind: u8, k: &str, v: &str) -> Digest {
    let mut h = Sha256::new();
    h.update([kind]);
    h.update((k.len() as u64).to_le_bytes());
    h.update(k.as_bytes());
    h.update(v.as_bytes());
    truncate(h.finalize().as_slice())
}

fn truncate(sha: &[u8]) -> Digest {
    let mut d = Digest::default();
    let n = d.len();
    d.copy_from_slice(&sha[..n]);
    d
}

/// A watch event on a Secret, as the cache of projections takes it.
pub fn project(event: &watcher::Event<Secret>) -> watcher::Event<SecretView> {
    use watcher::Event as E;
    match event {
        E::Apply(s) => E::Apply(SecretView::of(s)),
        E::Delete(s) => E::Delete(SecretView::of(s)),
        E::Init => E::Init,
        E::InitApply(s) => E::InitApply(SecretView::of(s)),
        E::InitDone => E::InitDone,
    }
}

/// Cached under a Secret's own kind and name, so a lookup by `ObjectRef` finds it.
impl kube::Resource for SecretView {
    type DynamicType = ();
    type Scope = kube::core::NamespaceResourceScope;

    fn kind(dt: &()) -> Cow<'_, str> {
        Secret::kind(dt)
    }
    fn group(dt: &()) -> Cow<'_, str> {
        Secret::group(dt)
    }
    fn version(dt: &()) -> Cow<'_, str> {
        Secret::version(dt)
    }
    fn plural(dt: &()) -> Cow<'_, str> {
        Secret::plural(dt)
    }
    fn meta(&self) -> &ObjectMeta {
        &self.metadata
    }
    fn meta_mut(&mut self) -> &mut ObjectMeta {
        &mut self.metadata
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::ByteString;
    use std::collections::BTreeMap;

    fn key() -> RouteroKey {
        let mut k = RouteroKey::new(
            "ci",
            serde_json::from_value(serde_json::json!({"teamRef": {"name": "t"}})).expect("spec"),
        );
        k.metadata.namespace = Some("ns".into());
        k.metadata.uid = Some("uid-1".into());
        k
    }

    fn written(value: &KeyValue) -> Secret {
        let state = BTreeMap::from([(
            secret::ROTATED_AT.to_owned(),
            "2026-12-03T00:00:00Z".to_owned(),
        )]);
        secret::workload_secret(&key(), value, "http://gw", &state)
    }

    #[test]
    fn a_secret_as_written_is_covered_and_its_state_read_back() {
        let value = KeyValue::generate();
        let s = written(&value);
        let view = SecretView::of(&s);
        assert!(view.covers(&SecretView::of(&s)));
        assert!(view.is_owned_by(&key()));
        assert_eq!(
            view.key_in(&key().spec.secret.key_field)
                .map(KeyValue::hash),
            Some(value.hash())
        );
        assert_eq!(view.annotation(secret::KEY_ID), Some(value.id().as_str()));
        assert_eq!(
            view.operator_state().keys().collect::<Vec<_>>(),
            [secret::ROTATED_AT]
        );
        assert_eq!(view.name_any(), "ci");
    }

    #[test]
    fn extra_labels_and_annotations_are_tolerated_but_missing_or_changed_ones_are_not() {
        let value = KeyValue::generate();
        let want = SecretView::of(&written(&value));
        let mut extra = written(&value);
        extra.labels_mut().insert("team".into(), "x".into());
        extra
            .annotations_mut()
            .insert("reloader/last".into(), "1".into());
        assert!(SecretView::of(&extra).covers(&want));

        let mut edited = written(&value);
        edited
            .labels_mut()
            .insert(secret::MANAGED_BY_LABEL.into(), "someone".into());
        assert!(!SecretView::of(&edited).covers(&want));
        let mut removed = written(&value);
        removed.annotations_mut().remove(secret::KEY_ID);
        assert!(!SecretView::of(&removed).covers(&want));
        // A label is not an annotation of the same name and value.
        let mut moved = written(&value);
        let v = moved
            .annotations_mut()
            .remove(secret::KEY_ID)
            .unwrap_or_default();
        moved.labels_mut().insert(secret::KEY_ID.into(), v);
        assert!(!SecretView::of(&moved).covers(&want));
    }

    #[test]
    fn data_must_match_exactly() {
        let value = KeyValue::generate();
        let want = SecretView::of(&written(&value));
        let mut added = written(&value);
        added
            .data
            .get_or_insert_default()
            .insert("extra".into(), ByteString(b"1".to_vec()));
        assert!(!SecretView::of(&added).covers(&want));
        let mut other = written(&value);
        other.data.get_or_insert_default().insert(
            key().spec.secret.key_field,
            ByteString(format!("{}\n", value.expose()).into_bytes()),
        );
        let view = SecretView::of(&other);
        assert!(!view.covers(&want));
        // The trimmed value is still read as the same key, so a rewrite keeps it.
        assert_eq!(
            view.key_in(&key().spec.secret.key_field)
                .map(KeyValue::hash),
            Some(value.hash())
        );
    }

    #[test]
    fn another_resources_secret_is_not_owned() {
        let s = written(&KeyValue::generate());
        let mut other = key();
        other.metadata.uid = Some("uid-2".into());
        assert!(!SecretView::of(&s).is_owned_by(&other));
    }
}
