//! The API: group `routero.ai`, version `v1alpha1`, three namespaced kinds.
// kube-derive takes one printcolumn(...) per column, which clippy reads as duplicated attributes.
#![allow(clippy::duplicated_attributes)]
pub mod common;
pub mod key;
pub mod member;
pub mod team;

pub use common::{Condition, DeletionPolicy, LocalRef};
pub use key::{RouteroKey, RouteroKeySpec, RouteroKeyStatus};
pub use member::{RouteroMember, RouteroMemberSpec, RouteroMemberStatus};
pub use team::{RouteroTeam, RouteroTeamSpec, RouteroTeamStatus};

use kube::CustomResourceExt;

/// The three CRDs as one multi-document YAML stream, as `routero-operator crd` prints and `crds/` stores it.
pub fn crds_yaml() -> Result<String, serde_yaml::Error> {
    let mut out = String::new();
    for crd in [RouteroTeam::crd(), RouteroKey::crd(), RouteroMember::crd()] {
        out.push_str("---\n");
        out.push_str(&serde_yaml::to_string(&crd)?);
    }
    Ok(out)
}
