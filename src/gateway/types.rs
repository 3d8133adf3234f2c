//! Wire structs for the gateway's admin API (gateway-api.md). Replies ignore unknown fields: rows carry dozens and
//! they change between versions.
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize, Serializer};
use serde_json::{Map, Value};

pub type Metadata = Map<String, Value>;

fn expose<S: Serializer>(s: &SecretString, ser: S) -> Result<S::Ok, S::Error> {
    ser.serialize_str(s.expose_secret())
}

/// Body of `/team/new` and `/team/update`: only the fields that are set are sent, and so only they change.
#[derive(Clone, Debug, Default, Serialize, PartialEq)]
pub struct TeamWrite {
    pub team_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub team_alias: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub models: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_budget: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub budget_duration: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tpm_limit: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rpm_limit: Option<i64>,
    /// Replaces the stored map wholesale: always the merged map.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Metadata>,
}

#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
pub struct TeamRow {
    pub team_id: String,
    #[serde(default)]
    pub team_alias: Option<String>,
    #[serde(default)]
    pub models: Vec<String>,
    #[serde(default)]
    pub max_budget: Option<f64>,
    #[serde(default)]
    pub spend: Option<f64>,
    #[serde(default)]
    pub budget_duration: Option<String>,
    #[serde(default)]
    pub budget_reset_at: Option<String>,
    #[serde(default)]
    pub tpm_limit: Option<i64>,
    #[serde(default)]
    pub rpm_limit: Option<i64>,
    #[serde(default)]
    pub metadata: Option<Metadata>,
    #[serde(default)]
    pub blocked: Option<bool>,
    #[serde(default)]
    pub members_with_roles: Vec<TeamMemberRow>,
}

#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
pub struct TeamMemberRow {
    #[serde(default)]
    pub user_id: Option<String>,
    #[serde(default)]
    pub user_email: Option<String>,
    #[serde(default)]
    pub role: Option<String>,
}

/// The reply of `/team/daily/activity`: only the period's total is read (the rows and breakdowns are for UIs).
#[derive(Clone, Debug, Deserialize)]
pub struct DailyActivity {
    pub metadata: DailyActivityTotals,
}

#[derive(Clone, Debug, Deserialize)]
pub struct DailyActivityTotals {
    #[serde(default)]
    pub total_spend: f64,
}

#[derive(Clone, Debug, Deserialize)]
pub struct TeamInfo {
    pub team_info: TeamRow,
}

#[derive(Clone, Debug, Deserialize)]
pub struct TeamUpdateReply {
    pub data: TeamRow,
}

/// Body of `/key/generate`. The key value is chosen by the operator and persisted before this is sent.
#[derive(Debug, Serialize)]
pub struct KeyGenerate {
    #[serde(serialize_with = "expose")]
    pub key: SecretString,
    pub key_alias: String,
    pub team_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
    pub models: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_budget: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub budget_duration: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub duration: Option<String>,
    pub metadata: Metadata,
    pub key_type: &'static str,
}

/// Body of `/key/update`, addressed by the key's hash. Only set fields change.
#[derive(Clone, Debug, Default, Serialize, PartialEq)]
pub struct KeyUpdate {
    pub key: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key_alias: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub models: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_budget: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub budget_duration: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub blocked: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Metadata>,
}

/// Body of `/key/regenerate`: replaces the key in place with an operator-chosen value.
#[derive(Debug, Serialize)]
pub struct KeyRegenerate {
    pub key: String,
    #[serde(serialize_with = "expose")]
    pub new_key: SecretString,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub duration: Option<String>,
    /// Replaces the key's metadata (sent when an adopted key takes our ownership markers in the same call).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Metadata>,
}

/// A key as `/key/info` describes it (`info`), or a full row from `/key/list?return_full_object=true`.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
pub struct KeyRow {
    /// Only in list rows; `/key/info` has none (the caller knows the hash it asked for).
    #[serde(default)]
    pub token: Option<String>,
    #[serde(default)]
    pub key_alias: Option<String>,
    #[serde(default)]
    pub team_id: Option<String>,
    #[serde(default)]
    pub user_id: Option<String>,
    #[serde(default)]
    pub metadata: Option<Metadata>,
    #[serde(default)]
    pub models: Vec<String>,
    #[serde(default)]
    pub spend: Option<f64>,
    #[serde(default)]
    pub max_budget: Option<f64>,
    #[serde(default)]
    pub budget_duration: Option<String>,
    #[serde(default)]
    pub expires: Option<String>,
    /// When the row was made: with `expires`, the `duration` a hand-made key was generated with (`import`).
    #[serde(default)]
    pub created_at: Option<String>,
    #[serde(default)]
    pub blocked: Option<bool>,
    /// `active`, `expired`, `revoked` or `deleted` on 1.108.7, where `/key/info` also answers 200 for deleted keys,
    /// from the archive. Absent on 1.98.0, whose `/key/info` answers 404 for a deleted key. So nothing may depend on
    /// it alone: `blocked` and `expires` are read on both.
    #[serde(default)]
    pub status: Option<String>,
}

impl KeyRow {
    /// The key still exists on the gateway (it may be blocked or expired): not archived (1.108.7's
    /// `status: deleted`; 1.98.0 answers 404 instead, which the client reads as no key).
    pub fn exists(&self) -> bool {
        self.status.as_deref() != Some("deleted")
    }

    /// The key would authenticate a request now. Blocked and expired are read from `blocked` and `expires`, which
    /// 1.98.0 and 1.108.7 both serve; 1.108.7's `status` (`revoked`, `expired`) is honoured too.
    pub fn usable(&self) -> bool {
        let expired = self
            .expires
            .as_deref()
            .and_then(|e| e.parse::<jiff::Timestamp>().ok())
            .is_some_and(|t| t <= jiff::Timestamp::now());
        self.exists()
            && self.blocked != Some(true)
            && !expired
            && !matches!(self.status.as_deref(), Some("expired" | "revoked"))
    }
}

#[cfg(test)]
mod tests {
    use super::KeyRow;

    #[test]
    fn a_key_is_usable_by_its_fields_on_a_gateway_without_status() {
        // 1.98.0: no `status` on /key/info.
        let live = KeyRow {
            expires: Some("2999-01-01T00:00:00+00:00".into()),
            ..KeyRow::default()
        };
        assert!(live.usable());
        let blocked = KeyRow {
            blocked: Some(true),
            ..live.clone()
        };
        assert!(!blocked.usable());
        let expired = KeyRow {
            expires: Some("2020-01-01T00:00:00Z".into()),
            ..live.clone()
        };
        assert!(!expired.usable() && expired.exists());
        // 1.108.7: the archive's `status: deleted`.
        let archived = KeyRow {
            status: Some("deleted".into()),
            ..live
        };
        assert!(!archived.exists() && !archived.usable());
    }
}

#[derive(Clone, Debug, Deserialize)]
pub struct KeyInfo {
    pub info: KeyRow,
}

#[derive(Clone, Debug, Deserialize)]
pub struct KeyList {
    #[serde(default)]
    pub keys: Vec<KeyRow>,
    #[serde(default)]
    pub total_pages: Option<u32>,
}

/// A page of `/user/list` (`{users, total, page, page_size, total_pages}` on 1.98.0 and 1.108.7).
#[derive(Clone, Debug, Deserialize)]
pub struct UserList {
    #[serde(default)]
    pub users: Vec<UserRow>,
    #[serde(default)]
    pub total_pages: Option<u32>,
}

/// A page of `/v2/team/list`.
#[derive(Clone, Debug, Deserialize)]
pub struct TeamList {
    #[serde(default)]
    pub teams: Vec<TeamRow>,
    #[serde(default)]
    pub total_pages: Option<u32>,
}

/// Body of `/user/new`. `auto_create_key` is always false: otherwise the gateway mints a key nobody holds.
#[derive(Clone, Debug, Serialize)]
pub struct UserNew {
    pub user_id: String,
    pub user_email: String,
    pub user_role: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_budget: Option<f64>,
    pub metadata: Metadata,
    pub auto_create_key: bool,
}

/// Body of `/user/update`, addressed by `user_id` (never by e-mail alone, which creates a user).
#[derive(Clone, Debug, Default, Serialize)]
pub struct UserUpdate {
    pub user_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_email: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_role: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_budget: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Metadata>,
}

#[derive(Debug, Deserialize)]
pub struct UserNewReply {
    /// A key the gateway made despite `auto_create_key: false`; the caller deletes it.
    #[serde(default)]
    pub key: Option<SecretString>,
}

#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
pub struct UserRow {
    pub user_id: String,
    #[serde(default)]
    pub user_email: Option<String>,
    #[serde(default)]
    pub user_role: Option<String>,
    #[serde(default)]
    pub max_budget: Option<f64>,
    #[serde(default)]
    pub spend: Option<f64>,
    #[serde(default)]
    pub teams: Vec<String>,
    #[serde(default)]
    pub metadata: Option<Metadata>,
}

#[derive(Clone, Debug, Deserialize)]
pub struct UserInfo {
    pub user_info: UserRow,
}

/// One team membership change.
#[derive(Clone, Debug, Serialize)]
pub struct TeamMember {
    pub team_id: String,
    pub user_id: String,
    pub role: String,
}

impl TeamMember {
    /// The `/team/member_add` body, which nests the member (`/team/member_update` takes the flat form).
    pub fn add_body(&self) -> Value {
        serde_json::json!({ "team_id": self.team_id, "member": { "role": self.role, "user_id": self.user_id } })
    }
}
