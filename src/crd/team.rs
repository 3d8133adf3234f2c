//! `RouteroTeam`: a gateway team with its budget, budget window and model allowlist.
use std::collections::BTreeMap;

use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

use super::common::{BUDGET_DURATION_PATTERN, Condition, DeletionPolicy, ID_PATTERN};

/// A team on the gateway. Fields left unset are not managed: their gateway values are left alone.
#[derive(CustomResource, KubeSchema, Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[kube(
    group = "routero.ai",
    version = "v1alpha1",
    kind = "RouteroTeam",
    namespaced,
    status = "RouteroTeamStatus",
    shortname = "rteam",
    category = "routero",
    printcolumn(name = "Team ID", type_ = "string", json_path = ".status.teamId"),
    printcolumn(name = "Budget", type_ = "number", json_path = ".spec.maxBudget"),
    printcolumn(name = "Period", type_ = "string", json_path = ".spec.budgetDuration"),
    printcolumn(name = "Spend", type_ = "number", json_path = ".status.spend"),
    printcolumn(
        name = "Used %",
        type_ = "number",
        json_path = ".status.budgetUsedPercent"
    ),
    printcolumn(
        name = "Resets",
        type_ = "string",
        json_path = ".status.budgetResetAt",
        priority = 1
    ),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    ),
    printcolumn(
        name = "Reason",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].reason"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[x_kube(validation = Rule::new(
    "has(self.teamId) == has(oldSelf.teamId) && (!has(self.teamId) || self.teamId == oldSelf.teamId)"
).message("teamId is immutable: it is the team's identity on the gateway").field_path(".teamId"))]
#[serde(rename_all = "camelCase")]
pub struct RouteroTeamSpec {
    /// The gateway team_id. Defaults to `metadata.name`. Immutable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = ID_PATTERN))]
    pub team_id: Option<String>,
    /// Display name on the gateway (not unique there). Defaults to the team id when the team is created.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 255))]
    pub alias: Option<String>,
    /// Hard budget in USD for each budget window.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0.0))]
    pub max_budget: Option<f64>,
    /// Budget window: `30d`, `1mo`, `7d`, `2w`, `24h`. Use `mo` for months.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = BUDGET_DURATION_PATTERN))]
    pub budget_duration: Option<String>,
    /// Model allowlist. `[]` means any model; leaving the field out leaves the gateway's list alone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(inner(length(min = 1, max = 255)))]
    pub models: Option<Vec<String>>,
    /// Tokens per minute for the whole team.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub tpm_limit: Option<i64>,
    /// Requests per minute for the whole team.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub rpm_limit: Option<i64>,
    /// Extra metadata on the gateway team. Keys under `routero.ai/` are reserved.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[x_kube(validation = Rule::new("self.all(k, !k.startsWith('routero.ai/'))").message("metadata keys under routero.ai/ are reserved for the operator"))]
    pub metadata: BTreeMap<String, String>,
    /// `Delete` removes the team (and so its keys) from the gateway when this resource is deleted; `Orphan` keeps it.
    #[serde(default)]
    pub deletion_policy: DeletionPolicy,
    /// Take over an existing gateway team with this id that no resource owns. Never takes one owned by another resource.
    #[serde(default)]
    pub adopt: bool,
}

/// What the operator last saw of the team.
#[derive(Clone, Debug, Default, Deserialize, Serialize, schemars::JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RouteroTeamStatus {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// The gateway team_id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub team_id: Option<String>,
    /// Spend in USD in the current budget window, as the gateway reports it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spend: Option<f64>,
    /// The budget in force on the gateway.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_budget: Option<f64>,
    /// When the gateway next resets the spend (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget_reset_at: Option<String>,
    /// `spend` as a percentage of `maxBudget`, to one decimal (absent without a budget). Computed by the operator.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget_used_percent: Option<f64>,
    /// Spend in USD today (UTC), from the gateway's daily activity table where it serves one (see the `DailySpend`
    /// condition).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spend_today: Option<f64>,
    /// The operator's proof that this resource manages the gateway team (made with its admin key, so it cannot be
    /// forged): it lets the team be deprovisioned even when its owner marker was wiped on the gateway.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provenance: Option<String>,
}

/// `spend` as a percentage of `budget`, to one decimal: what `kubectl get rteam` shows. A zero budget is 100 % used
/// as soon as anything is spent.
pub fn budget_used_percent(spend: Option<f64>, budget: Option<f64>) -> Option<f64> {
    let (spend, budget) = (spend.unwrap_or(0.0), budget?);
    if budget <= 0.0 {
        return Some(if spend > 0.0 { 100.0 } else { 0.0 });
    }
    Some((spend / budget * 1000.0).round() / 10.0)
}

impl RouteroTeam {
    /// The gateway identity: `spec.teamId`, else the resource name.
    pub fn team_id(&self) -> String {
        self.spec
            .team_id
            .clone()
            .unwrap_or_else(|| self.metadata.name.clone().unwrap_or_default())
    }
}

#[cfg(test)]
mod tests {
    use super::budget_used_percent;

    #[test]
    fn percent_used_is_rounded_and_absent_without_a_budget() {
        assert_eq!(budget_used_percent(Some(412.5), Some(500.0)), Some(82.5));
        assert_eq!(budget_used_percent(Some(1.0), Some(3.0)), Some(33.3));
        assert_eq!(budget_used_percent(None, Some(100.0)), Some(0.0));
        assert_eq!(budget_used_percent(Some(5.0), None), None);
        assert_eq!(budget_used_percent(Some(5.0), Some(0.0)), Some(100.0));
    }
}
