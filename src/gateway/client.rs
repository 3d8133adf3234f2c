//! The gateway admin API client: rate-limited, time-bounded, retrying only calls that are safe to repeat.
use std::num::NonZeroU32;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use reqwest::{Method, StatusCode};
use secrecy::{ExposeSecret, SecretString};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::error::{self, GatewayError};
use super::types::*;

/// Where the admin key comes from. A file is re-read on every call, so a rotated Secret mount is picked up without
/// a restart.
#[derive(Clone, Debug)]
pub enum AdminKey {
    Static(SecretString),
    File(PathBuf),
}

impl AdminKey {
    async fn read(&self) -> Result<SecretString, GatewayError> {
        match self {
            Self::Static(k) => Ok(k.clone()),
            Self::File(path) => {
                let text = tokio::fs::read_to_string(path)
                    .await
                    .map_err(|e| GatewayError::AdminKey(format!("{}: {e}", path.display())))?;
                let key = text.trim();
                if key.is_empty() {
                    return Err(GatewayError::AdminKey(format!(
                        "{} is empty",
                        path.display()
                    )));
                }
                Ok(SecretString::from(key.to_owned()))
            }
        }
    }
}

/// Client settings.
#[derive(Clone, Debug)]
pub struct GatewayConfig {
    pub url: String,
    pub admin_key: AdminKey,
    /// Requests per second, shared by every controller.
    pub rate_limit: NonZeroU32,
    /// Bound on one HTTP exchange.
    pub timeout: Duration,
    /// Attempts for a call that may be repeated (1 = no retry).
    pub attempts: u32,
}

impl GatewayConfig {
    pub fn new(url: impl Into<String>, admin_key: AdminKey) -> Self {
        Self {
            url: url.into(),
            admin_key,
            rate_limit: NonZeroU32::new(20).unwrap_or(NonZeroU32::MIN),
            timeout: Duration::from_secs(10),
            attempts: 4,
        }
    }
}

/// Whether a call may be sent again after a failure whose outcome is unknown.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Repeat {
    /// Reads, updates, deletes: sending twice ends in the same state.
    Safe,
    /// Creates: a retry belongs to the reconcile loop, which reads first.
    Never,
}

/// A longer `Retry-After` is left to the controller's requeue rather than held inside one reconcile.
const MAX_INLINE_RETRY_AFTER: Duration = Duration::from_secs(10);
const BASE_BACKOFF: Duration = Duration::from_millis(200);

/// How long to wait before attempt `attempt + 1`, or `None` to give up now.
pub fn retry_delay(err: &GatewayError, repeat: Repeat, attempt: u32) -> Option<Duration> {
    let backoff = BASE_BACKOFF.saturating_mul(1 << attempt.min(6));
    match err {
        // 429 means the request was not processed, so even a create may be sent again.
        GatewayError::Api {
            status: 429,
            retry_after,
            ..
        } => {
            let wait = retry_after.unwrap_or(backoff);
            (wait <= MAX_INLINE_RETRY_AFTER).then_some(wait)
        }
        e if repeat == Repeat::Safe && e.is_unavailable() => Some(backoff),
        _ => None,
    }
}

/// Sees every HTTP exchange with the gateway (the metrics implement it).
pub trait GatewayObserver: Send + Sync {
    /// `endpoint` is the route (`/key/info`: the client puts ids in queries and bodies, never in paths), `status`
    /// is `None` when no answer came, `took` excludes the wait for the rate limiter.
    fn exchanged(&self, endpoint: &str, status: Option<u16>, took: Duration);
}

/// The admin API client. Cheap to share behind an `Arc`.
pub struct Gateway {
    http: reqwest::Client,
    base: String,
    admin_key: AdminKey,
    limiter: DefaultDirectRateLimiter,
    turns: crate::fair::FairGate,
    attempts: u32,
    observer: Option<Arc<dyn GatewayObserver>>,
    /// The user the admin key belongs to, by the key's hash (a rotated key is looked up again).
    admin_user: std::sync::Mutex<Option<(String, Option<String>)>>,
}

impl Gateway {
    pub fn new(config: GatewayConfig) -> Result<Self, GatewayError> {
        let http = reqwest::Client::builder()
            .timeout(config.timeout)
            .connect_timeout(config.timeout.min(Duration::from_secs(5)))
            .user_agent(concat!("routero-operator/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| GatewayError::Transport(e.to_string()))?;
        Ok(Self {
            http,
            base: config.url.trim_end_matches('/').to_owned(),
            admin_key: config.admin_key,
            limiter: RateLimiter::direct(Quota::per_second(config.rate_limit)),
            turns: crate::fair::FairGate::new(1),
            attempts: config.attempts.max(1),
            observer: None,
            admin_user: std::sync::Mutex::default(),
        })
    }

    /// Reports every exchange to `observer`.
    pub fn with_observer(mut self, observer: Arc<dyn GatewayObserver>) -> Self {
        self.observer = Some(observer);
        self
    }

    pub fn base_url(&self) -> &str {
        &self.base
    }

    /// The admin key's id on the gateway (its lowercase hex SHA-256), to find the user the key acts as.
    pub async fn admin_key_hash(&self) -> Result<String, GatewayError> {
        use sha2::{Digest, Sha256};
        let key = self.admin_key.read().await?;
        Ok(hex::encode(Sha256::digest(key.expose_secret().as_bytes())))
    }

    /// The gateway user the admin key belongs to: `None` for the master key (it has no key row and acts as
    /// `default_user_id`), else the virtual key's `user_id`. Looked up once per admin key.
    pub async fn admin_user(&self) -> Result<Option<String>, GatewayError> {
        let hash = self.admin_key_hash().await?;
        let cached = self
            .admin_user
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        if let Some((h, user)) = cached
            && h == hash
        {
            return Ok(user);
        }
        let user = self.key_info(&hash).await?.and_then(|k| k.user_id);
        *self.admin_user.lock().unwrap_or_else(|p| p.into_inner()) = Some((hash, user.clone()));
        Ok(user)
    }

    /// A proof that the holder of the admin key vouched for `statement`: HMAC-SHA256 keyed by the admin key, 128
    /// bits in hex. Only the operator can make one, so a proof kept in status (which tenants may write) can be
    /// checked rather than trusted; the key never leaves this client. A rotated admin key invalidates old proofs,
    /// which then fail safe (they stop vouching) until the next reconcile writes new ones.
    pub async fn proof(&self, statement: &str) -> Result<String, GatewayError> {
        use hmac::{Hmac, Mac};
        let key = self.admin_key.read().await?;
        let mut mac = Hmac::<sha2::Sha256>::new_from_slice(key.expose_secret().as_bytes())
            .map_err(|e| GatewayError::AdminKey(e.to_string()))?;
        mac.update(b"routero.ai/provenance\n");
        mac.update(statement.as_bytes());
        let digest = mac.finalize().into_bytes();
        Ok(hex::encode(&digest[..16]))
    }

    async fn call<B: Serialize + ?Sized, T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, &str)],
        body: Option<&B>,
        repeat: Repeat,
        actor: Option<&str>,
    ) -> Result<T, GatewayError> {
        let mut attempt = 0;
        loop {
            let result = self
                .exchange(method.clone(), path, query, body, actor)
                .await;
            match result {
                Ok(v) => return Ok(v),
                Err(e) => {
                    attempt += 1;
                    match retry_delay(&e, repeat, attempt - 1) {
                        Some(wait) if attempt < self.attempts => {
                            tracing::debug!(path, status = ?e.status(), attempt, ?wait, "gateway call failed, retrying");
                            tokio::time::sleep(wait).await;
                        }
                        _ => return Err(e),
                    }
                }
            }
        }
    }

    async fn exchange<B: Serialize + ?Sized, T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, &str)],
        body: Option<&B>,
        actor: Option<&str>,
    ) -> Result<T, GatewayError> {
        let key = self.admin_key.read().await?;
        // One caller at a time waits on the limiter, taken in turn by namespace (see `fair`).
        self.turns.run_in_turn(|| self.limiter.until_ready()).await;
        let mut req = self
            .http
            .request(method, format!("{}{}", self.base, path))
            .bearer_auth(key.expose_secret());
        if !query.is_empty() {
            req = req.query(query);
        }
        if let Some(actor) = actor {
            req = req.header("litellm-changed-by", actor);
        }
        if let Some(body) = body {
            req = req.json(body);
        }
        let started = Instant::now();
        let reply = async {
            let resp = req.send().await?;
            let status = resp.status();
            let retry_after = resp
                .headers()
                .get(reqwest::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok())
                .map(Duration::from_secs);
            Ok::<_, reqwest::Error>((status, retry_after, resp.text().await?))
        }
        .await;
        if let Some(observer) = &self.observer {
            let status = reply.as_ref().ok().map(|(s, _, _)| s.as_u16());
            observer.exchanged(path, status, started.elapsed());
        }
        // reqwest's error text names the URL, which holds only ids and hashes, never a key.
        let (status, retry_after, text) =
            reply.map_err(|e| GatewayError::Transport(e.without_url().to_string()))?;
        if status != StatusCode::OK {
            return Err(error::from_reply(status.as_u16(), &text, retry_after));
        }
        serde_json::from_str(&text).map_err(|e| GatewayError::Decode(format!("{path}: {e}")))
    }

    async fn get<T: DeserializeOwned>(
        &self,
        path: &str,
        query: &[(&str, &str)],
    ) -> Result<T, GatewayError> {
        self.call::<(), T>(Method::GET, path, query, None, Repeat::Safe, None)
            .await
    }

    async fn post<B: Serialize + ?Sized, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
        repeat: Repeat,
        actor: &str,
    ) -> Result<T, GatewayError> {
        self.call(Method::POST, path, &[], Some(body), repeat, Some(actor))
            .await
    }

    // ---- health ----

    /// `GET /health/readiness`: the gateway and its database answer.
    pub async fn readiness(&self) -> Result<Value, GatewayError> {
        self.get("/health/readiness", &[]).await
    }

    /// The LiteLLM release the gateway reports: `litellm_version` of `/health/readiness/details` (admin key), else
    /// `info.version` of `/openapi.json`; `None` when neither says. Both are served by 1.98.0 and 1.108.7; plain
    /// `/health/readiness` carries no version on either (see `version`).
    pub async fn version(&self) -> Result<Option<String>, GatewayError> {
        let details = not_found_as_none(self.get::<Value>("/health/readiness/details", &[]).await);
        match details {
            Ok(Some(d)) if d["litellm_version"].is_string() => {
                return Ok(d["litellm_version"].as_str().map(str::to_owned));
            }
            // A 401/403 (a hosted gateway may guard the route) or a reply without the field: try the other.
            Ok(_) | Err(GatewayError::Api { .. }) | Err(GatewayError::Decode(_)) => {}
            Err(e) => return Err(e),
        }
        match not_found_as_none(self.get::<Value>("/openapi.json", &[]).await) {
            Ok(doc) => Ok(doc.and_then(|d| d["info"]["version"].as_str().map(str::to_owned))),
            Err(GatewayError::Api { .. }) | Err(GatewayError::Decode(_)) => Ok(None),
            Err(e) => Err(e),
        }
    }

    // ---- proxy config ----

    /// `POST /config/update`: merges each given `general_settings` key into the gateway's stored config (proxy
    /// admin only). Sending the same body twice ends in the same state.
    pub async fn config_update(&self, body: &Value, actor: &str) -> Result<(), GatewayError> {
        self.post::<_, Value>("/config/update", body, Repeat::Safe, actor)
            .await
            .map(drop)
    }

    // ---- teams ----

    /// The team, or `None` when the gateway has no team with this id.
    pub async fn team_info(&self, team_id: &str) -> Result<Option<TeamRow>, GatewayError> {
        not_found_as_none(
            self.get::<TeamInfo>("/team/info", &[("team_id", team_id)])
                .await
                .map(|i| i.team_info),
        )
    }

    /// One page of 100 teams, newest first (`/v2/team/list`; `/team/list` is one unpaginated answer with every
    /// team's keys). Served by 1.98.0 and 1.108.7 alike.
    pub async fn teams_page(&self, page: u32) -> Result<TeamList, GatewayError> {
        let page = page.to_string();
        self.get::<TeamList>("/v2/team/list", &[("page_size", "100"), ("page", &page)])
            .await
    }

    /// `GET /team/daily/activity` for one team and one day (`YYYY-MM-DD`): the day's spend in USD. `Ok(None)` when
    /// the gateway does not serve the endpoint (404, 405 or 501): older or other gateways lack it.
    pub async fn team_daily_spend(
        &self,
        team_id: &str,
        day: &str,
    ) -> Result<Option<f64>, GatewayError> {
        let reply = self
            .get::<DailyActivity>(
                "/team/daily/activity",
                &[
                    ("team_ids", team_id),
                    ("start_date", day),
                    ("end_date", day),
                ],
            )
            .await;
        match reply {
            Ok(a) => Ok(Some(a.metadata.total_spend)),
            Err(GatewayError::Api {
                status: 404 | 405 | 501,
                ..
            }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    pub async fn team_new(&self, team: &TeamWrite, actor: &str) -> Result<TeamRow, GatewayError> {
        self.post("/team/new", team, Repeat::Never, actor).await
    }

    pub async fn team_update(
        &self,
        team: &TeamWrite,
        actor: &str,
    ) -> Result<TeamRow, GatewayError> {
        self.post::<_, TeamUpdateReply>("/team/update", team, Repeat::Safe, actor)
            .await
            .map(|r| r.data)
    }

    /// Deletes one team (and, on the gateway, its keys). `false` when it was already gone.
    pub async fn team_delete(&self, team_id: &str, actor: &str) -> Result<bool, GatewayError> {
        let body = serde_json::json!({ "team_ids": [team_id] });
        not_found_as_none(
            self.post::<_, Value>("/team/delete", &body, Repeat::Safe, actor)
                .await,
        )
        .map(|v| v.is_some())
    }

    /// Adds a member; "already in team" (400, seen on 1.98.0 and 1.108.7) counts as done.
    pub async fn team_member_add(&self, m: &TeamMember, actor: &str) -> Result<(), GatewayError> {
        let body = m.add_body();
        match self
            .post::<_, Value>("/team/member_add", &body, Repeat::Safe, actor)
            .await
        {
            Err(GatewayError::Api {
                status: 400,
                message,
                ..
            }) if message.contains("already in team") || message.contains("already_in_team") => {
                Ok(())
            }
            other => other.map(drop),
        }
    }

    pub async fn team_member_update(
        &self,
        m: &TeamMember,
        actor: &str,
    ) -> Result<(), GatewayError> {
        self.post::<_, Value>("/team/member_update", m, Repeat::Safe, actor)
            .await
            .map(drop)
    }

    /// Removes a member; "not in team" (400, seen on 1.98.0 and 1.108.7) counts as done.
    pub async fn team_member_delete(
        &self,
        team_id: &str,
        user_id: &str,
        actor: &str,
    ) -> Result<(), GatewayError> {
        let body = serde_json::json!({ "team_id": team_id, "user_id": user_id });
        match self
            .post::<_, Value>("/team/member_delete", &body, Repeat::Safe, actor)
            .await
        {
            Err(GatewayError::Api {
                status: 400,
                message,
                ..
            }) if message.contains("not found in team") || message.contains("not in team") => {
                Ok(())
            }
            other => other.map(drop),
        }
    }

    // ---- keys ----

    /// Registers an operator-chosen key and returns the reply's row (its `token` is the registered key's hash). A
    /// 200 alone proves nothing (a repeated secret is accepted without a row): the caller decides when the reply is
    /// proof enough, and otherwise confirms with [`Gateway::key_info`]. The reply's raw `key` is not kept.
    pub async fn key_generate(
        &self,
        req: &KeyGenerate,
        actor: &str,
    ) -> Result<KeyRow, GatewayError> {
        self.post::<_, KeyRow>("/key/generate", req, Repeat::Never, actor)
            .await
    }

    /// The live key with this SHA-256 hash, or `None`: 404 on 1.98.0 and 1.108.7 for a key that never was or was
    /// hard-deleted with its user; for a deleted key 1.98.0 answers 404 and 1.108.7 200 (from its
    /// archive, with `status: deleted`): that counts as `None`.
    pub async fn key_info(&self, hash: &str) -> Result<Option<KeyRow>, GatewayError> {
        not_found_as_none(
            self.get::<KeyInfo>("/key/info", &[("key", hash)])
                .await
                .map(|i| i.info),
        )
        .map(|k| k.filter(KeyRow::exists))
    }

    /// Live keys with exactly this alias (0 or 1 on a healthy gateway), as full rows.
    pub async fn keys_by_alias(&self, alias: &str) -> Result<Vec<KeyRow>, GatewayError> {
        self.get::<KeyList>(
            "/key/list",
            &[
                ("key_alias", alias),
                ("return_full_object", "true"),
                ("size", "100"),
            ],
        )
        .await
        .map(|l| {
            l.keys
                .into_iter()
                .filter(|k| k.key_alias.as_deref() == Some(alias))
                .collect()
        })
    }

    /// One page (from 1) of every live key on the gateway, newest first, as full rows of up to 100.
    pub async fn keys_page(&self, page: u32) -> Result<KeyList, GatewayError> {
        let page = page.to_string();
        self.get::<KeyList>(
            "/key/list",
            &[
                ("return_full_object", "true"),
                ("size", "100"),
                ("page", &page),
            ],
        )
        .await
    }

    /// The hashes of every live key bound to this user or team, whoever made them (the operator or anyone with an
    /// admin key), over all pages of `/key/list?user_id=` (`team_id=`). Rows are matched again here on the exact id,
    /// so a gateway that ignored the filter could never widen what is revoked. `user_id` and `team_id` filter
    /// exactly on 1.98.0 and 1.108.7 (tests/e2e/gateway_contract.rs `key_list_filters`).
    pub async fn key_hashes_of(
        &self,
        holder: KeyHolder,
        id: &str,
    ) -> Result<Vec<String>, GatewayError> {
        let field = holder.field();
        let mut hashes = Vec::new();
        let mut page = 1u32;
        loop {
            let number = page.to_string();
            let list = self
                .get::<KeyList>(
                    "/key/list",
                    &[
                        (field, id),
                        ("return_full_object", "true"),
                        ("size", "100"),
                        ("page", &number),
                    ],
                )
                .await?;
            let rows = list.keys.len();
            hashes.extend(
                list.keys
                    .into_iter()
                    .filter(|k| holder.holds(k, id))
                    .filter_map(|k| k.token),
            );
            // Bounded: a gateway reporting ever more pages cannot hold a deletion for ever.
            if rows == 0 || page >= list.total_pages.unwrap_or(1).min(MAX_KEY_PAGES) {
                return Ok(hashes);
            }
            page += 1;
        }
    }

    /// Updates a key. `false` when the key is gone (404, seen on 1.98.0 and 1.108.7).
    pub async fn key_update(&self, req: &KeyUpdate, actor: &str) -> Result<bool, GatewayError> {
        not_found_as_none(
            self.post::<_, Value>("/key/update", req, Repeat::Safe, actor)
                .await,
        )
        .map(|v| v.is_some())
    }

    /// Deletes one key by hash. `false` when it was already gone (404, seen on 1.98.0 and 1.108.7). Takes effect on
    /// the next request on both, auth cache included.
    pub async fn key_delete(&self, hash: &str, actor: &str) -> Result<bool, GatewayError> {
        let body = serde_json::json!({ "keys": [hash] });
        not_found_as_none(
            self.post::<_, Value>("/key/delete", &body, Repeat::Safe, actor)
                .await,
        )
        .map(|v| v.is_some())
    }

    /// Replaces the key in place with `new_key`. Not repeated on failure: the caller checks `sha256(new_key)`.
    pub async fn key_regenerate(
        &self,
        req: &KeyRegenerate,
        actor: &str,
    ) -> Result<(), GatewayError> {
        self.post::<_, Value>("/key/regenerate", req, Repeat::Never, actor)
            .await
            .map(drop)
    }

    // ---- users ----

    pub async fn user_info(&self, user_id: &str) -> Result<Option<UserRow>, GatewayError> {
        not_found_as_none(
            self.get::<UserInfo>("/user/info", &[("user_id", user_id)])
                .await
                .map(|u| u.user_info),
        )
    }

    /// Every team, over all pages of `/v2/team/list`.
    pub async fn every_team(&self) -> Result<Vec<TeamRow>, GatewayError> {
        every(|p| self.teams_page(p), |l| (l.teams, l.total_pages)).await
    }

    /// Every user, over all pages of `/user/list`.
    pub async fn every_user(&self) -> Result<Vec<UserRow>, GatewayError> {
        every(|p| self.users_page(p), |l| (l.users, l.total_pages)).await
    }

    /// Every live key, over all pages of `/key/list`.
    pub async fn every_key(&self) -> Result<Vec<KeyRow>, GatewayError> {
        every(|p| self.keys_page(p), |l| (l.keys, l.total_pages)).await
    }

    /// One page (from 1) of every gateway user, 100 to a page.
    pub async fn users_page(&self, page: u32) -> Result<UserList, GatewayError> {
        let page = page.to_string();
        self.get::<UserList>("/user/list", &[("page", &page), ("page_size", "100")])
            .await
    }

    /// Creates a user; a key the gateway made anyway is returned so the caller can delete it.
    pub async fn user_new(
        &self,
        req: &UserNew,
        actor: &str,
    ) -> Result<Option<SecretString>, GatewayError> {
        self.post::<_, UserNewReply>("/user/new", req, Repeat::Never, actor)
            .await
            .map(|r| r.key)
    }

    pub async fn user_update(&self, req: &UserUpdate, actor: &str) -> Result<(), GatewayError> {
        self.post::<_, Value>("/user/update", req, Repeat::Safe, actor)
            .await
            .map(drop)
    }

    /// Deletes a user. The gateway also deletes their key rows, but on 1.98.0 a key in use keeps authenticating
    /// until its auth cache expires (about 60 s; 1.108.7 refuses it at once), so deprovisioning revokes each key
    /// first (`controller::revoke_keys`). `false` when already gone (404, seen on both).
    pub async fn user_delete(&self, user_id: &str, actor: &str) -> Result<bool, GatewayError> {
        let body = serde_json::json!({ "user_ids": [user_id] });
        not_found_as_none(
            self.post::<_, Value>("/user/delete", &body, Repeat::Safe, actor)
                .await,
        )
        .map(|v| v.is_some())
    }
}

/// Whose keys [`Gateway::key_hashes_of`] lists.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyHolder {
    User,
    Team,
}

impl KeyHolder {
    fn field(self) -> &'static str {
        match self {
            Self::User => "user_id",
            Self::Team => "team_id",
        }
    }

    fn holds(self, key: &KeyRow, id: &str) -> bool {
        let held = match self {
            Self::User => key.user_id.as_deref(),
            Self::Team => key.team_id.as_deref(),
        };
        held == Some(id)
    }
}

/// 100 keys a page: 100,000 keys for one user or team.
const MAX_KEY_PAGES: u32 = 1000;

/// Every row of a paged listing, from page 1 until an empty page or the last one it reports. Bounded: a gateway
/// reporting ever more pages cannot keep a walk going for ever.
async fn every<L, T, F>(
    page: impl Fn(u32) -> F,
    split: impl Fn(L) -> (Vec<T>, Option<u32>),
) -> Result<Vec<T>, GatewayError>
where
    F: Future<Output = Result<L, GatewayError>>,
{
    let mut out = Vec::new();
    let mut n = 1;
    loop {
        let (rows, pages) = split(page(n).await?);
        let empty = rows.is_empty();
        out.extend(rows);
        if empty || n >= pages.unwrap_or(1).min(10 * MAX_KEY_PAGES) {
            return Ok(out);
        }
        n += 1;
    }
}

fn not_found_as_none<T>(r: Result<T, GatewayError>) -> Result<Option<T>, GatewayError> {
    match r {
        Ok(v) => Ok(Some(v)),
        Err(e) if e.is_not_found() => Ok(None),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn api(status: u16, message: &str, retry_after: Option<u64>) -> GatewayError {
        GatewayError::Api {
            status,
            message: message.into(),
            retry_after: retry_after.map(Duration::from_secs),
        }
    }

    #[test]
    fn safe_calls_retry_on_outages_with_growing_backoff() {
        let e = api(503, "down", None);
        let d0 = retry_delay(&e, Repeat::Safe, 0).expect("retry");
        let d1 = retry_delay(&e, Repeat::Safe, 1).expect("retry");
        assert!(d1 > d0);
        assert!(retry_delay(&GatewayError::Transport("refused".into()), Repeat::Safe, 0).is_some());
    }

    #[test]
    fn creates_are_not_retried_after_an_unknown_outcome() {
        assert_eq!(retry_delay(&api(503, "down", None), Repeat::Never, 0), None);
        assert_eq!(
            retry_delay(&GatewayError::Transport("timeout".into()), Repeat::Never, 0),
            None
        );
    }

    #[test]
    fn client_errors_are_never_retried() {
        for s in [400, 401, 403, 404, 409, 422] {
            assert_eq!(
                retry_delay(&api(s, "no", None), Repeat::Safe, 0),
                None,
                "status {s}"
            );
        }
        assert_eq!(
            retry_delay(
                &api(
                    500,
                    "Regenerating Virtual Keys is an Enterprise feature",
                    None
                ),
                Repeat::Safe,
                0
            ),
            None
        );
    }

    #[test]
    fn too_many_requests_honours_retry_after_for_any_call() {
        assert_eq!(
            retry_delay(&api(429, "slow", Some(3)), Repeat::Never, 0),
            Some(Duration::from_secs(3))
        );
        assert_eq!(
            retry_delay(&api(429, "slow", Some(600)), Repeat::Safe, 0),
            None,
            "long waits go back to the controller"
        );
        assert!(retry_delay(&api(429, "slow", None), Repeat::Safe, 0).is_some());
    }

    #[tokio::test]
    async fn rate_limit_spaces_requests() {
        let gw = Gateway::new(GatewayConfig {
            rate_limit: NonZeroU32::new(10).expect("nonzero"),
            ..GatewayConfig::new(
                "http://127.0.0.1:9",
                AdminKey::Static("k".to_string().into()),
            )
        })
        .expect("client");
        let start = std::time::Instant::now();
        for _ in 0..15 {
            gw.limiter.until_ready().await;
        }
        // 10/s with a burst of 10: the 5 requests past the burst need about half a second.
        assert!(
            start.elapsed() >= Duration::from_millis(400),
            "elapsed {:?}",
            start.elapsed()
        );
    }

    #[tokio::test]
    async fn admin_key_file_is_reread_and_empty_file_is_an_error() {
        let dir = std::env::temp_dir().join(format!("routero-adminkey-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let path = dir.join("key");
        std::fs::write(&path, "sk-one\n").expect("write");
        let src = AdminKey::File(path.clone());
        assert_eq!(src.read().await.expect("read").expose_secret(), "sk-one");
        std::fs::write(&path, "sk-two").expect("write");
        assert_eq!(src.read().await.expect("read").expose_secret(), "sk-two");
        std::fs::write(&path, "  \n").expect("write");
        assert!(matches!(src.read().await, Err(GatewayError::AdminKey(_))));
    }
}
