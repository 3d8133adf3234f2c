//! Reads (and edits out of band) gateway state through its HTTP API with plain reqwest, independent of the
//! operator's own client, so tests check what the gateway really holds.
use serde_json::Value;

use super::testbed::GatewayTarget;

#[derive(Clone)]
pub struct GatewayReader {
    http: reqwest::Client,
    target: GatewayTarget,
}

impl GatewayReader {
    pub fn new(target: &GatewayTarget) -> Self {
        Self {
            http: reqwest::Client::new(),
            target: target.clone(),
        }
    }

    pub async fn get(&self, path: &str, query: &[(&str, &str)]) -> (u16, Value) {
        let resp = self
            .http
            .get(format!("{}{path}", self.target.url))
            .bearer_auth(&self.target.admin_key)
            .query(query)
            .send()
            .await
            .expect("gateway GET");
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    pub async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        let resp = self
            .http
            .post(format!("{}{path}", self.target.url))
            .bearer_auth(&self.target.admin_key)
            .json(&body)
            .send()
            .await
            .expect("gateway POST");
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    /// The team row (`team_info`), or `None` when the gateway has no such team.
    pub async fn team(&self, team_id: &str) -> Option<Value> {
        let (status, body) = self.get("/team/info", &[("team_id", team_id)]).await;
        match status {
            200 => Some(body["team_info"].clone()),
            404 => None,
            s => panic!("team/info {team_id}: {s} {body}"),
        }
    }

    pub async fn key(&self, hash: &str) -> Option<Value> {
        let (status, body) = self.get("/key/info", &[("key", hash)]).await;
        match status {
            200 => Some(body["info"].clone()),
            404 => None,
            s => panic!("key/info: {s} {body}"),
        }
    }

    /// Live keys with this alias, as full rows.
    pub async fn keys_with_alias(&self, alias: &str) -> Vec<Value> {
        let (status, body) = self
            .get(
                "/key/list",
                &[("key_alias", alias), ("return_full_object", "true")],
            )
            .await;
        assert_eq!(status, 200, "key/list: {body}");
        body["keys"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .filter(|k| k["key_alias"] == alias)
            .collect()
    }

    pub async fn user(&self, user_id: &str) -> Option<Value> {
        let (status, body) = self.get("/user/info", &[("user_id", user_id)]).await;
        match status {
            200 => Some(body),
            404 => None,
            s => panic!("user/info: {s} {body}"),
        }
    }

    /// What a workload sees when it calls the gateway with `key`: the HTTP status of `GET /v1/models`.
    pub async fn status_with_key(&self, key: &str) -> u16 {
        self.http
            .get(format!("{}/v1/models", self.target.url))
            .bearer_auth(key)
            .send()
            .await
            .expect("gateway GET with key")
            .status()
            .as_u16()
    }
}

/// Lowercase hex SHA-256, the gateway's key id.
pub fn sha256_hex(s: &str) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(s.as_bytes()))
}
