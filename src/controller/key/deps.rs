//! What a key depends on: its RouteroTeam and (for a per-person key) RouteroMember must exist, be Ready and allow its
//! models, and their gateway team and user must carry those very resources' owner markers before a key is issued.
use kube::{Api, Resource};

use super::{Dependencies, Keys, Scope};
use crate::controller::ownership::owner_id;
use crate::controller::snapshot;
use crate::controller::status::Outcome;
use crate::crd::common::{cross_namespace, is_ready};
use crate::error::Result;

impl<'a> Keys<'a> {
    /// Team and member must exist, be Ready, and allow the requested models.
    pub(super) async fn dependencies(&self) -> Result<Dependencies> {
        let spec = &self.key.spec;
        let refs = std::iter::once(("RouteroTeam", &spec.team_ref))
            .chain(spec.member_ref.iter().map(|m| ("RouteroMember", m)));
        let refusals = refs
            .filter_map(|(kind, r)| {
                cross_namespace(kind, &r.name, r.namespace.as_deref(), &self.ns)
            })
            .chain(alias_refusal(&self.alias, &self.ns));
        if let Some(message) = refusals.into_iter().next() {
            if !self.is_reported("Forbidden") {
                self.ctx
                    .event(self.key, true, "Forbidden", message.clone())
                    .await;
            }
            return Ok(Dependencies::Blocked(Outcome::blocked(
                "Forbidden",
                message,
            )));
        }
        let team_name = &self.key.spec.team_ref.name;
        let team = match self.read(|c| &c.teams, team_name).await? {
            None => {
                return Ok(Dependencies::Gone(
                    "TeamNotReady",
                    format!(
                        "RouteroTeam '{team_name}' does not exist in namespace '{}'",
                        self.ns
                    ),
                ));
            }
            Some(t) if t.meta().deletion_timestamp.is_some() => {
                return Ok(Dependencies::Gone(
                    "TeamNotReady",
                    format!("RouteroTeam '{team_name}' is being deleted"),
                ));
            }
            Some(t) => t,
        };
        // The team's readiness is a hint to wait; its id comes from its spec, and the gateway team's marker is checked
        // before anything is issued into it (`verify`).
        let status = team.status.clone().unwrap_or_default();
        if !is_ready(&status.conditions, team.metadata.generation) {
            let ready = status.conditions.iter().find(|c| c.type_ == "Ready");
            let why = ready
                .map(|c| format!(" ({}: {})", c.reason, c.message))
                .unwrap_or_default();
            let message = format!("RouteroTeam '{team_name}' is not Ready{why}");
            // The team is down only because the gateway is: report the root cause, as the team does.
            if ready.is_some_and(|c| c.reason == "GatewayUnavailable") {
                return Ok(Dependencies::Blocked(Outcome::failed(
                    "GatewayUnavailable",
                    message,
                )));
            }
            return Ok(Dependencies::Blocked(Outcome::blocked(
                "TeamNotReady",
                message,
            )));
        }
        let team_id = team.team_id();
        if let Some(message) = models_refusal(
            &self.key.spec.models,
            team.spec.models.as_deref(),
            team_name,
        ) {
            return Ok(Dependencies::Blocked(Outcome::blocked(
                "ModelNotAllowed",
                message,
            )));
        }
        let member = match &self.key.spec.member_ref {
            None => None,
            Some(m) => match self.read(|c| &c.members, &m.name).await? {
                None => {
                    return Ok(Dependencies::Gone(
                        "MemberNotReady",
                        format!(
                            "RouteroMember '{}' does not exist in namespace '{}'",
                            m.name, self.ns
                        ),
                    ));
                }
                Some(p) if p.meta().deletion_timestamp.is_some() => {
                    return Ok(Dependencies::Gone(
                        "MemberNotReady",
                        format!("RouteroMember '{}' is being deleted", m.name),
                    ));
                }
                Some(p)
                    if !p
                        .status
                        .as_ref()
                        .is_some_and(|s| is_ready(&s.conditions, p.metadata.generation)) =>
                {
                    return Ok(Dependencies::Blocked(Outcome::blocked(
                        "MemberNotReady",
                        format!("RouteroMember '{}' is not Ready", m.name),
                    )));
                }
                Some(p) => Some((m.name.clone(), p.user_id())),
            },
        };
        Ok(Dependencies::Ready(Scope {
            team: team_name.clone(),
            team_id,
            member,
        }))
    }

    /// A team or member from the key controller's cache (updated by the watch event that triggers this pass), or
    /// read live when the cache lacks it or shows it being deleted: absence and deletion lead to revocation, so
    /// they are confirmed by a live read.
    async fn read<K>(
        &self,
        pick: impl Fn(&crate::controller::context::Caches) -> &kube::runtime::reflector::Store<K>,
        name: &str,
    ) -> Result<Option<K>>
    where
        K: Resource<DynamicType = (), Scope = kube::core::NamespaceResourceScope>
            + Clone
            + std::fmt::Debug
            + serde::de::DeserializeOwned
            + 'static,
    {
        if let Some(cached) = self.ctx.cached(pick, &self.ns, name)
            && cached.meta().deletion_timestamp.is_none()
        {
            return Ok(Some(cached.as_ref().clone()));
        }
        let api: Api<K> = Api::namespaced(self.ctx.client.clone(), &self.ns);
        Ok(api.get_opt(name).await?)
    }

    /// Before a key is issued into the scope: the gateway team, and the user of a per-person key, must carry the owner
    /// markers of exactly this key's RouteroTeam and RouteroMember. `None` when they do; else why not.
    pub(super) async fn verify(&self, scope: &Scope) -> Result<Option<Outcome>> {
        let want = owner_id("RouteroTeam", &self.ns, &scope.team);
        match self.marker("team", &scope.team_id).await? {
            None => {
                return Ok(Some(Outcome::blocked(
                    "TeamNotReady",
                    format!("RouteroTeam '{}' has no gateway team yet", scope.team),
                )));
            }
            Some(owner) if owner.as_deref() != Some(want.as_str()) => {
                let message = team_not_ours(&scope.team_id, &scope.team);
                return Ok(Some(Outcome::blocked("Forbidden", message)));
            }
            Some(_) => {}
        }
        if let Some((member, user_id)) = &scope.member {
            let want = owner_id("RouteroMember", &self.ns, member);
            match self.marker("user", user_id).await? {
                None => {
                    return Ok(Some(Outcome::blocked(
                        "MemberNotReady",
                        format!("RouteroMember '{member}' has no gateway user yet"),
                    )));
                }
                Some(owner) if owner.as_deref() != Some(want.as_str()) => {
                    return Ok(Some(Outcome::blocked(
                        "Forbidden",
                        format!(
                            "gateway user '{user_id}' is not managed by RouteroMember '{member}'; no key is issued for it"
                        ),
                    )));
                }
                Some(_) => {}
            }
        }
        Ok(None)
    }

    /// The owner marker of gateway `team` or `user` `id` (`None`: there is no such object), from the markers the
    /// operator read recently, else read live and recorded.
    async fn marker(&self, kind: &'static str, id: &str) -> Result<Option<Option<String>>> {
        let max_age = snapshot::max_age(self.ctx.settings.resync);
        if let Some(owner) = self.ctx.markers.owner(kind, id, max_age) {
            return Ok(Some(owner));
        }
        let gw = &self.ctx.gateway;
        let metadata = match kind {
            "team" => gw.team_info(id).await?.map(|t| t.metadata),
            _ => gw.user_info(id).await?.map(|u| u.metadata),
        };
        let Some(metadata) = metadata else {
            return Ok(None);
        };
        self.ctx.markers.record(kind, id, metadata.as_ref());
        let owner = metadata
            .as_ref()
            .and_then(|m| m.get(crate::controller::ownership::OWNER_KEY))
            .and_then(serde_json::Value::as_str)
            .map(str::to_owned);
        Ok(Some(owner))
    }
}

/// Why a key may not ask for `wanted` models in a team whose allowlist is `allowed` (empty or none: any model).
pub fn models_refusal(wanted: &[String], allowed: Option<&[String]>, team: &str) -> Option<String> {
    let allowed = allowed.filter(|a| !a.is_empty())?;
    let refused: Vec<&String> = wanted.iter().filter(|m| !allowed.contains(m)).collect();
    (!refused.is_empty()).then(|| {
        format!("models {refused:?} are not in RouteroTeam '{team}' allowlist {allowed:?}")
    })
}

/// A key refused because the gateway team is not RouteroTeam `team`'s own.
pub fn team_not_ours(team_id: &str, team: &str) -> String {
    format!(
        "gateway team '{team_id}' is not managed by RouteroTeam '{team}'; no key is issued into it"
    )
}

/// The alias-squatting rule: a dotted alias must begin with this namespace and a dot, because `<namespace>.<name>`
/// is every namespace's default and no tenant may take another's. Plain aliases (`ds-prod`) stay open to all.
pub fn alias_refusal(alias: &str, ns: &str) -> Option<String> {
    let prefix = format!("{ns}.");
    (alias.contains('.') && !alias.starts_with(&prefix)).then(|| {
        format!(
            "key alias '{alias}' is refused: an alias with a dot must begin with this namespace ('{prefix}'), so \
             that no namespace can take another's aliases"
        )
    })
}

#[cfg(test)]
mod tests {
    use super::alias_refusal;

    #[test]
    fn dotted_aliases_belong_to_their_namespace() {
        assert_eq!(alias_refusal("ds-prod", "finance"), None);
        assert_eq!(alias_refusal("finance.api", "finance"), None);
        assert_eq!(alias_refusal("finance.api.next", "finance"), None);
        let refused = alias_refusal("data-science.ds-prod", "finance").expect("refused");
        assert!(refused.contains("'finance.'"), "{refused}");
        // A namespace whose name prefixes another's gets no foothold in it.
        assert!(alias_refusal("fin.api", "finance").is_some());
        assert!(alias_refusal("finance-eu.api", "finance").is_some());
    }
}
