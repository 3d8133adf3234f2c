//! Provenance: the record, in a resource's own status, of the gateway objects it manages, in a form a tenant
//! cannot forge.
//!
//! Status is writable by tenants where RBAC allows it (DESIGN §4), so a plain "I created team X" there would let a
//! tenant aim a deletion at anyone's team. Each record is instead a proof made with the operator's admin key over
//! the resource's uid, its owner id and the object's id. The owner marker on the gateway object stays the first
//! authority; a proof only stands in for a marker that was wiped out of band, and never beats another owner's.
use super::context::Context;
use super::ownership::Owner;
use crate::error::Result;

/// How many key proofs a RouteroKey keeps: its delivered key, a retiring one and a pending one, and a spare.
pub const KEY_PROOFS: usize = 4;

fn statement(owner: &Owner, what: &str, id: &str) -> String {
    format!("{}\n{}\n{what}\n{id}", owner.uid, owner.id)
}

/// The proof that `owner` manages the gateway object `what` (`team`, `user`, `key`) with id `id`.
pub async fn proof(ctx: &Context, owner: &Owner, what: &str, id: &str) -> Result<String> {
    Ok(ctx.gateway.proof(&statement(owner, what, id)).await?)
}

/// True when one of `proofs` is the proof for this object.
pub async fn proven(
    ctx: &Context,
    owner: &Owner,
    what: &str,
    id: &str,
    proofs: &[String],
) -> Result<bool> {
    if proofs.is_empty() {
        return Ok(false);
    }
    let want = proof(ctx, owner, what, id).await?;
    Ok(proofs.contains(&want))
}

/// `proofs` with `new` first, without duplicates, at most `KEY_PROOFS` long.
pub fn remember(proofs: &[String], new: String) -> Vec<String> {
    let mut out = vec![new];
    for p in proofs {
        if out.len() < KEY_PROOFS && !out.contains(p) {
            out.push(p.clone());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statements_bind_the_resource_instance_and_the_object() {
        let a = Owner {
            id: "RouteroTeam/ns-a/t".into(),
            uid: "u1".into(),
            namespace: "ns-a".into(),
        };
        let b = Owner {
            uid: "u2".into(),
            ..a.clone()
        };
        assert_ne!(statement(&a, "team", "t"), statement(&b, "team", "t"));
        assert_ne!(statement(&a, "team", "t"), statement(&a, "user", "t"));
        assert_ne!(statement(&a, "team", "t"), statement(&a, "team", "t2"));
    }

    #[test]
    fn remembered_proofs_are_bounded_and_newest_first() {
        let mut p = Vec::new();
        for i in 0..6 {
            p = remember(&p, format!("p{i}"));
        }
        assert_eq!(p, ["p5", "p4", "p3", "p2"]);
        assert_eq!(remember(&p, "p3".into()), ["p3", "p5", "p4", "p2"]);
    }
}
