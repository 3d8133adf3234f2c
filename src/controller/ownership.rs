//! Ownership markers on gateway objects (DESIGN §3): what stops two resources, or two namespaces, from managing one
//! gateway object.
use kube::{Resource, ResourceExt};
use serde_json::Value;

use crate::error::{Error, Result};
use crate::gateway::types::Metadata;

pub const OWNER_KEY: &str = "routero.ai/owner";
pub const UID_KEY: &str = "routero.ai/uid";
/// Set by an admin (or `import`) on an unowned gateway object: resources in this namespace may adopt it.
pub const ADOPTABLE_BY_KEY: &str = "routero.ai/adoptable-by";

/// The resource that manages a gateway object: `<Kind>/<namespace>/<name>` plus its uid.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Owner {
    pub id: String,
    pub uid: String,
    pub namespace: String,
}

/// Whether this resource may manage an existing gateway object.
#[derive(Debug, PartialEq, Eq)]
pub enum Claim {
    /// It carries our owner marker, or its marker was wiped and our status proves we managed it.
    Ours,
    /// It has no owner, the resource asked to adopt it, and adoption is allowed here.
    Adopt,
    /// Someone else's, or unowned without `adopt`: the message says which.
    Conflict(String),
    /// Unowned, and the resource asked to adopt it where adoption is not allowed.
    Forbidden(String),
}

/// What speaks for a resource's claim on an existing gateway object besides its owner marker.
#[derive(Clone, Copy, Debug, Default)]
pub struct Standing {
    /// `spec.adopt`.
    pub adopt: bool,
    /// The resource lives in one of the operator's admin namespaces.
    pub admin: bool,
    /// The resource's status holds a valid provenance proof for this object (see `provenance`).
    pub proven: bool,
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
            id: owner_id(&K::kind(&()), &ns, &obj.name_any()),
            uid,
            namespace: ns,
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
    /// created again, which is how a user hands an object to a new resource. An unowned object is ours again only
    /// when our status proves we managed it (its markers were wiped out of band); it is adopted only where an admin
    /// allowed it: in the admin namespaces, or when the object is marked adoptable by this namespace.
    pub fn claim(&self, existing: Option<&Metadata>, standing: Standing, what: &str) -> Claim {
        match marker(existing, OWNER_KEY) {
            Some(owner) if owner == self.id => Claim::Ours,
            Some(owner) => Claim::Conflict(format!(
                "{what} is already managed by {}",
                self.describe(owner)
            )),
            None if standing.proven => Claim::Ours,
            None if standing.adopt
                && (standing.admin
                    || marker(existing, ADOPTABLE_BY_KEY) == Some(self.namespace.as_str())) =>
            {
                Claim::Adopt
            }
            None if standing.adopt => Claim::Forbidden(format!(
                "{what} was not created by this resource and is not marked adoptable by namespace '{}': outside \
                 the admin namespaces, adoption needs an admin to set metadata {ADOPTABLE_BY_KEY}: {} on it",
                self.namespace, self.namespace
            )),
            None => Claim::Conflict(format!(
                "{what} already exists and no resource manages it; set spec.adopt: true to take it over (allowed \
                 in the admin namespaces, or once an admin marks it {ADOPTABLE_BY_KEY}: {})",
                self.namespace
            )),
        }
    }

    /// True when the gateway object is ours to delete: our marker, or no marker and a provenance proof.
    pub fn owns(&self, existing: Option<&Metadata>, proven: bool) -> bool {
        let standing = Standing {
            proven,
            ..Standing::default()
        };
        self.claim(existing, standing, "") == Claim::Ours
    }

    /// True when the object's owner marker names the resource `kind`/`name` in this resource's namespace: what a
    /// key checks on its team and member before issuing into them.
    pub fn names(&self, existing: Option<&Metadata>, kind: &str, name: &str) -> bool {
        marker(existing, OWNER_KEY) == Some(owner_id(kind, &self.namespace, name).as_str())
    }

    /// Another owner as a message may name it: a resource in this namespace by kind and name, anything else
    /// only as "elsewhere" (messages never name another tenant's namespace or resource).
    fn describe(&self, owner: &str) -> String {
        match owner.split('/').collect::<Vec<_>>().as_slice() {
            [kind, ns, name] if *ns == self.namespace => {
                format!("{kind} '{name}' in this namespace")
            }
            _ => "a resource elsewhere".into(),
        }
    }
}

pub fn owner_id(kind: &str, namespace: &str, name: &str) -> String {
    format!("{kind}/{namespace}/{name}")
}

/// True when the object carries no owner marker: only then can a provenance proof matter (see `claim`), so only
/// then is one computed.
pub fn unmarked(existing: Option<&Metadata>) -> bool {
    marker(existing, OWNER_KEY).is_none()
}

/// The owner marker's namespace, if the object has one.
pub fn owner_namespace(existing: Option<&Metadata>) -> Option<&str> {
    marker(existing, OWNER_KEY).and_then(|o| o.split('/').nth(1))
}

fn marker<'m>(existing: Option<&'m Metadata>, key: &str) -> Option<&'m str> {
    existing.and_then(|m| m.get(key)).and_then(Value::as_str)
}

/// The metadata to send when `existing` lacks or differs in any of `wanted`'s entries; `None` when nothing is
/// missing. The gateway replaces metadata wholesale, so it is what is there plus what we manage.
///
/// The uid marker is written with any other change but is not drift on its own: no decision reads it (the owner
/// marker names the resource, see `Owner::claim`), and an object `import` marked for a resource that did not exist
/// yet carries the owner marker without a uid, which must adopt with zero writes.
pub fn metadata_update(existing: Option<&Metadata>, wanted: Metadata) -> Option<Metadata> {
    let existing = existing.cloned().unwrap_or_default();
    wanted
        .iter()
        .any(|(k, v)| k != UID_KEY && existing.get(k) != Some(v))
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
            namespace: "ns-a".into(),
        }
    }

    fn adopting(admin: bool) -> Standing {
        Standing {
            adopt: true,
            admin,
            proven: false,
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
        assert_eq!(
            metadata_update(Some(&wiped), wanted.clone()),
            Some(held.clone())
        );
        assert_eq!(metadata_update(None, wanted.clone()), Some(wanted.clone()));
        // Marked by `import` before the resource existed: the owner marker without a uid is not drift.
        let mut imported = held.clone();
        imported.remove(UID_KEY);
        assert_eq!(metadata_update(Some(&imported), wanted.clone()), None);

        assert_eq!(budget_update(Some(500.0), Some(500.0 + 1e-12)), None);
        assert_eq!(budget_update(Some(500.0), Some(600.0)), Some(500.0));
        assert_eq!(budget_update(Some(500.0), None), Some(500.0));
        assert_eq!(budget_update(None, Some(600.0)), None);
    }

    #[test]
    fn claims() {
        let o = owner();
        let ours = o.stamp(Metadata::new());
        assert_eq!(
            o.claim(Some(&ours), Standing::default(), "team"),
            Claim::Ours
        );
        let mut other = Metadata::new();
        other.insert(OWNER_KEY.into(), "RouteroTeam/ns-b/finance".into());
        match o.claim(Some(&other), adopting(true), "team 'finance'") {
            Claim::Conflict(m) => assert!(!m.contains("ns-b") && m.contains("elsewhere"), "{m}"),
            c => panic!("{c:?}"),
        }
        let mut sibling = Metadata::new();
        sibling.insert(OWNER_KEY.into(), "RouteroTeam/ns-a/other".into());
        assert!(
            matches!(o.claim(Some(&sibling), Standing::default(), "team"), Claim::Conflict(m) if m.contains("'other' in this namespace"))
        );
        assert!(
            !o.owns(Some(&other), true),
            "a proof never beats another owner's marker"
        );
        assert!(o.names(Some(&ours), "RouteroTeam", "finance"));
        assert!(!o.names(Some(&other), "RouteroTeam", "finance"));
    }

    #[test]
    fn adoption_is_an_admin_decision() {
        let o = owner();
        // In an admin namespace, adopt: true is enough.
        assert_eq!(o.claim(None, adopting(true), "team"), Claim::Adopt);
        // Elsewhere, only with a marker naming this very namespace.
        assert!(
            matches!(o.claim(None, adopting(false), "team"), Claim::Forbidden(m) if m.contains("adoptable-by"))
        );
        let mut marked = Metadata::new();
        marked.insert(ADOPTABLE_BY_KEY.into(), "ns-b".into());
        assert!(matches!(
            o.claim(Some(&marked), adopting(false), "team"),
            Claim::Forbidden(_)
        ));
        marked.insert(ADOPTABLE_BY_KEY.into(), "ns-a".into());
        assert_eq!(
            o.claim(Some(&marked), adopting(false), "team"),
            Claim::Adopt
        );
        // Without adopt, an unowned object is a conflict; with a proof of our own, it is ours again.
        assert!(matches!(
            o.claim(Some(&marked), Standing::default(), "team"),
            Claim::Conflict(_)
        ));
        let proven = Standing {
            proven: true,
            ..Standing::default()
        };
        assert_eq!(o.claim(None, proven, "team"), Claim::Ours);
        assert!(o.owns(None, true));
        assert!(!o.owns(None, false));
    }
}
