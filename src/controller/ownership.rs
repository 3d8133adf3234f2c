//! Ownership markers on gateway objects (DESIGN §3): what stops two resources, or two namespaces, from managing one
//! gateway object.
use kube::{Resource, ResourceExt};
use serde_json::Value;

use crate::error::{Error, Result};
use crate::gateway::types::Metadata;

pub const OWNER_KEY: &str = "routero.ai/owner";
pub const UID_KEY: &str = "routero.ai/uid";

/// The resource that manages a gateway object: `<Kind>/<namespace>/<name>` plus its uid.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Owner {
    pub id: String,
    pub uid: String,
}

/// Whether this resource may manage an existing gateway object.
#[derive(Debug, PartialEq, Eq)]
pub enum Claim {
    /// It carries our owner marker.
    Ours,
    /// It has no owner and the resource asked to adopt it.
    Adopt,
    /// Someone else's, or unowned without `adopt`: the message says which.
    Conflict(String),
}

impl Owner {
    pub fn of<K: Resource<DynamicType = ()>>(obj: &K) -> Result<Self> {
        let ns = obj
            .namespace()
            .ok_or_else(|| Error::Invalid("resource has no namespace".into()))?;
        let uid = obj
            .uid()
            .ok_or_else(|| Error::Invalid("resource has no uid".into()))?;
        Ok(Self {
            id: format!("{}/{}/{}", K::kind(&()), ns, obj.name_any()),
            uid,
        })
    }

    /// The `litellm-changed-by` audit value.
    pub fn actor(&self) -> String {
        format!("routero-operator/{}", self.id)
    }

    /// `base` with our markers set.
    pub fn stamp(&self, mut base: Metadata) -> Metadata {
        base.insert(OWNER_KEY.into(), Value::String(self.id.clone()));
        base.insert(UID_KEY.into(), Value::String(self.uid.clone()));
        base
    }

    /// Same namespace and name counts as ours even with another uid: the resource was deleted with `Orphan` and
    /// created again, which is how a user hands an object to a new resource.
    pub fn claim(&self, existing: Option<&Metadata>, adopt: bool, what: &str) -> Claim {
        match existing
            .and_then(|m| m.get(OWNER_KEY))
            .and_then(Value::as_str)
        {
            Some(owner) if owner == self.id => Claim::Ours,
            Some(owner) => Claim::Conflict(format!("{what} is already managed by {owner}")),
            None if adopt => Claim::Adopt,
            None => Claim::Conflict(format!(
                "{what} already exists and no resource manages it; set spec.adopt: true to take it over"
            )),
        }
    }

    /// True when the gateway object carries our marker (used before deleting anything).
    pub fn owns(&self, existing: Option<&Metadata>) -> bool {
        self.claim(existing, false, "") == Claim::Ours
    }
}

/// The metadata to send when `existing` lacks or differs in any of `wanted`'s entries; `None` when nothing is
/// missing. The gateway replaces metadata wholesale, so it is what is there plus what we manage.
pub fn metadata_update(existing: Option<&Metadata>, wanted: Metadata) -> Option<Metadata> {
    let existing = existing.cloned().unwrap_or_default();
    wanted
        .iter()
        .any(|(k, v)| existing.get(k) != Some(v))
        .then(|| {
            let mut merged = existing;
            merged.extend(wanted);
            merged
        })
}

/// The budget to send when the spec sets one the gateway does not hold (compared as money, not bit patterns).
pub fn budget_update(wanted: Option<f64>, held: Option<f64>) -> Option<f64> {
    wanted.filter(|w| !held.is_some_and(|h| (h - w).abs() < 1e-9))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn owner() -> Owner {
        Owner {
            id: "RouteroTeam/ns-a/finance".into(),
            uid: "u1".into(),
        }
    }

    #[test]
    fn metadata_and_budget_updates_only_when_something_differs() {
        let wanted = owner().stamp(Metadata::new());
        let mut held = wanted.clone();
        held.insert("cost-center".into(), Value::String("42".into()));
        assert_eq!(metadata_update(Some(&held), wanted.clone()), None);
        // A wiped marker is put back, and what others added is kept (the gateway replaces metadata wholesale).
        let mut wiped = held.clone();
        wiped.remove(OWNER_KEY);
        assert_eq!(metadata_update(Some(&wiped), wanted.clone()), Some(held));
        assert_eq!(metadata_update(None, wanted.clone()), Some(wanted));

        assert_eq!(budget_update(Some(500.0), Some(500.0 + 1e-12)), None);
        assert_eq!(budget_update(Some(500.0), Some(600.0)), Some(500.0));
        assert_eq!(budget_update(Some(500.0), None), Some(500.0));
        assert_eq!(budget_update(None, Some(600.0)), None);
    }

    #[test]
    fn claims() {
        let o = owner();
        let ours = o.stamp(Metadata::new());
        assert_eq!(o.claim(Some(&ours), false, "team"), Claim::Ours);
        let mut other = Metadata::new();
        other.insert(OWNER_KEY.into(), "RouteroTeam/ns-b/finance".into());
        assert!(
            matches!(o.claim(Some(&other), true, "team 'finance'"), Claim::Conflict(m) if m.contains("ns-b"))
        );
        assert_eq!(o.claim(None, true, "team"), Claim::Adopt);
        assert!(
            matches!(o.claim(Some(&Metadata::new()), false, "team"), Claim::Conflict(m) if m.contains("adopt"))
        );
        assert!(!o.owns(Some(&other)));
    }
}
