//! Contract tests: the same checks of the gateway's admin API, run against the in-repo fake
//! (`tests/support/fake_gateway.rs`) and against the real LiteLLM releases of the test bed.
//!
//! The real gateways are `ROUTERO_TEST_LITELLM_URL` (default `http://127.0.0.1:4000`, LiteLLM 1.108.7, the newest
//! tested release) and `ROUTERO_TEST_LITELLM_OLD_URL` (default `http://127.0.0.1:4001`, 1.98.0, the oldest), with
//! admin key `ROUTERO_TEST_LITELLM_KEY` (default `sk-admin-test`), started by `scripts/testbed.sh`. Set either URL
//! to `skip` to skip that side. Their databases persist, so every name here is unique.
//!
//! Each check is one `async fn(&Gw)`; `contract!` turns each into four tests: `fake::` (the fake as 1.108.7),
//! `fake_1_98::` (the fake imitating 1.98.0), `real::` (1.108.7) and `real_1_98::` (1.98.0).
//!
//! Version-aware: a check asserts what the operator relies on (hard), and where releases differ it records what
//! this release does with `Gw::per_release`, naming the releases each behaviour was seen on. A release that differs
//! from what was seen on it is reported with every other difference of the check at its end (`Gw::finish`), not at
//! the first. The differences between 1.108.7 and 1.98.0, and how the operator handles each:
//!
//! | Behaviour | 1.108.7 | 1.98.0 | The operator |
//! |---|---|---|---|
//! | `/key/info` of a live key | `status: active` (or `revoked`, `expired`) | no `status` | reads `blocked` and `expires`, never needs `status` (`KeyRow::usable`) |
//! | `/key/info` of a deleted key | 200, `status: deleted` | 404 | both mean gone (`Gateway::key_info`) |
//! | A deleted user's key, in use | refused at once | works ~60 s (auth cache) | revokes each key with `/key/delete` first (`controller::revoke_keys`) |
//! | `/key/list?status=` | `active`, `expired`, `revoked`, `deleted` | only `deleted` (else 400) | never sends `status` |
//! | `/team/member_update` on a non-member | 404 | 200, no change | reads the team's members first; updates only a member |
//! | `/team/new` reply `updated_users` | empty | the users it created | never reads it |
//! | `/team/info` `team_memberships` | includes `default_user_id` | empty | reads `members_with_roles` |
//!
//! Everything else these checks assert was seen alike on both.

use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tokio::sync::OnceCell;

use crate::support::fake_gateway::{FakeGateway, Fault, FaultKind};

// ---------------------------------------------------------------------------------------------------------------
// Harness
// ---------------------------------------------------------------------------------------------------------------

struct Gw {
    base: String,
    admin: String,
    http: reqwest::Client,
    /// The release, from `/health/readiness/details`.
    release: Release,
    /// What this release was seen to do where releases differ, for the test's output.
    notes: std::sync::Mutex<Vec<String>>,
    /// Where this release did not do what it was seen to do before.
    differences: std::sync::Mutex<Vec<String>>,
}

/// The tested releases, as far as their admin APIs differ.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Release {
    /// 1.108.7, and releases from 1.108 on.
    V1_108,
    /// 1.98.0, and releases before 1.108.
    V1_98,
}

struct Resp {
    status: u16,
    body: Value,
    headers: reqwest::header::HeaderMap,
}

impl Gw {
    /// Connects and reads the release from `/health/readiness/details` (`litellm_version`, served by both).
    async fn connect(base: &str, admin: &str) -> Gw {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .expect("reqwest client");
        let mut gw = Gw {
            base: base.trim_end_matches('/').to_owned(),
            admin: admin.to_owned(),
            http,
            release: Release::V1_108,
            notes: Default::default(),
            differences: Default::default(),
        };
        let details = gw.get("/health/readiness/details").await;
        let version = details.body["litellm_version"].as_str().unwrap_or_default();
        let minor = version
            .split('.')
            .nth(1)
            .and_then(|m| m.parse::<u32>().ok());
        gw.release = match minor {
            Some(m) if m < 108 => Release::V1_98,
            Some(_) => Release::V1_108,
            None => panic!("no litellm_version in /health/readiness/details: {details}"),
        };
        gw.note(&format!("release {version} ({:?})", gw.release));
        gw
    }

    fn note(&self, what: &str) {
        eprintln!("[{}] {what}", self.base);
        self.notes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(what.to_owned());
    }

    /// Where releases differ: records what this one does, `seen`, against what 1.108.7 and 1.98.0 were seen to do.
    /// A difference is reported at the end of the check, with the others.
    #[track_caller]
    fn per_release(&self, what: &str, seen: Value, on_1_108: Value, on_1_98: Value) {
        let expected = match self.release {
            Release::V1_108 => on_1_108,
            Release::V1_98 => on_1_98,
        };
        self.note(&format!("{what}: {seen}"));
        if seen != expected {
            let at = std::panic::Location::caller();
            self.differences
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(format!(
                    "{what}: {seen}, where {:?} was seen to give {expected} ({at})",
                    self.release
                ));
        }
    }

    /// Fails the check with every difference it recorded.
    fn finish(&self) {
        let differences = self
            .differences
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        assert!(
            differences.is_empty(),
            "{} differs from what was seen on its release:\n{}",
            self.base,
            differences.join("\n")
        );
    }

    /// What the operator relies on (`Gateway::key_info`): a deleted key is gone, as 404 (1.98.0) or as 200 with
    /// `status: deleted` (1.108.7, from its archive).
    async fn assert_key_gone(&self, hash: &str) {
        let info = self.get(&format!("/key/info?key={hash}")).await;
        let shape = match (info.status, info.body["info"]["status"].as_str()) {
            (404, _) => "404",
            (200, Some("deleted")) => "200 status:deleted",
            _ => panic!("a deleted key must be gone, as 404 or 200 status:deleted: {info}"),
        };
        self.per_release(
            "/key/info of a deleted key",
            json!(shape),
            json!("200 status:deleted"),
            json!("404"),
        );
    }

    /// `/key/info`'s `status` of a live key: 1.108.7 has one, 1.98.0 none. The operator never needs it.
    #[track_caller]
    fn live_status(&self, info: &Resp, on_1_108: &str) {
        self.per_release(
            "/key/info status of a live key",
            info.body["info"]["status"].clone(),
            json!(on_1_108),
            Value::Null,
        );
    }

    async fn try_send(
        &self,
        bearer: Option<&str>,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Resp, reqwest::Error> {
        let mut req = self.http.request(method, format!("{}{}", self.base, path));
        if let Some(b) = bearer {
            req = req.bearer_auth(b);
        }
        if let Some(b) = body {
            req = req.json(b);
        }
        let resp = req.send().await?;
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let text = resp.text().await?;
        let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
        Ok(Resp {
            status,
            body,
            headers,
        })
    }

    async fn send(
        &self,
        bearer: Option<&str>,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Resp {
        let what = format!("{method} {path}");
        self.try_send(bearer, method, path, body)
            .await
            .unwrap_or_else(|e| panic!("{what} on {}: {e}", self.base))
    }

    async fn get(&self, path: &str) -> Resp {
        self.send(Some(&self.admin), Method::GET, path, None).await
    }

    async fn post(&self, path: &str, body: Value) -> Resp {
        self.send(Some(&self.admin), Method::POST, path, Some(&body))
            .await
    }

    /// `GET /v1/models` with a virtual key: the data-plane proof that a key works.
    async fn models_with(&self, key: &str) -> Resp {
        self.send(Some(key), Method::GET, "/v1/models", None).await
    }

    async fn new_team(&self, team_id: &str) -> Resp {
        let r = self
            .post(
                "/team/new",
                json!({"team_id": team_id, "team_alias": team_id}),
            )
            .await;
        assert_eq!(r.status, 200, "team/new {team_id}: {}", r.body);
        r
    }

    /// Generates a key with a caller-chosen secret; returns (secret, token).
    async fn new_key(&self, extra: Value) -> (String, String) {
        let secret = secret();
        let mut body = json!({"key": secret});
        merge(&mut body, extra);
        let r = self.post("/key/generate", body).await;
        assert_eq!(r.status, 200, "key/generate: {}", r.body);
        let token = sha(&secret);
        assert_eq!(r.body["token"], json!(token));
        (secret, token)
    }
}

impl std::fmt::Display for Resp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "HTTP {} {}", self.status, self.body)
    }
}

fn merge(into: &mut Value, extra: Value) {
    if let (Value::Object(a), Value::Object(b)) = (into, extra) {
        a.extend(b);
    }
}

fn sha(s: &str) -> String {
    hex::encode(Sha256::digest(s.as_bytes()))
}

fn uniq(prefix: &str) -> String {
    format!("ct-{prefix}-{:012x}", rand::random::<u64>() >> 16)
}

fn secret() -> String {
    format!("sk-ct-{:032x}", rand::random::<u128>())
}

/// `{"error":{"message","type","param","code"}}` with `code` the status as a string.
#[track_caller]
fn assert_envelope(r: &Resp, status: u16, kind: &str) {
    assert_eq!(r.status, status, "{r}");
    let e = &r.body["error"];
    assert!(e.is_object(), "expected the envelope shape: {r}");
    assert_eq!(
        e["code"],
        json!(status.to_string()),
        "code must be a string: {r}"
    );
    assert_eq!(e["type"], json!(kind), "{r}");
    assert!(e["message"].is_string(), "{r}");
    assert!(
        e.as_object().is_some_and(|o| o.contains_key("param")),
        "{r}"
    );
}

/// `{"detail":{"error":"..."}}`.
#[track_caller]
fn assert_bare(r: &Resp, status: u16) {
    assert_eq!(r.status, status, "{r}");
    assert!(
        r.body["detail"]["error"].is_string(),
        "expected the bare detail shape: {r}"
    );
}

/// FastAPI's `{"detail":[{"type","loc","msg"}]}`, with an entry at `loc`.
#[track_caller]
fn assert_422(r: &Resp, loc: Value) {
    assert_eq!(r.status, 422, "{r}");
    let errors = r.body["detail"]
        .as_array()
        .unwrap_or_else(|| panic!("expected a FastAPI 422: {r}"));
    assert!(
        errors
            .iter()
            .any(|e| e["loc"] == loc && e["type"].is_string() && e["msg"].is_string()),
        "no 422 entry at {loc}: {r}"
    );
}

fn message(r: &Resp) -> String {
    r.body["error"]["message"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

/// The real gateway of `url_var`, once it answers; None when that variable is `skip`.
async fn real_gateway(url_var: &str, default: &str) -> Option<(String, String)> {
    static READY: OnceCell<
        std::sync::Mutex<std::collections::HashMap<String, Result<(), String>>>,
    > = OnceCell::const_new();
    let url = std::env::var(url_var).unwrap_or_else(|_| default.to_owned());
    if url == "skip" {
        eprintln!("{url_var}=skip: real-gateway contract test skipped");
        return None;
    }
    let key =
        std::env::var("ROUTERO_TEST_LITELLM_KEY").unwrap_or_else(|_| "sk-admin-test".to_owned());
    let known = READY.get_or_init(|| async { Default::default() }).await;
    let cached = known
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .get(&url)
        .cloned();
    let ready = match cached {
        Some(r) => r,
        None => {
            let r = wait_ready(&url, url_var).await;
            known
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(url.clone(), r.clone());
            r
        }
    };
    if let Err(e) = ready {
        panic!("{e}");
    }
    Some((url, key))
}

async fn wait_ready(url: &str, url_var: &str) -> Result<(), String> {
    let http = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let live = http
            .get(format!("{url}/health/readiness"))
            .timeout(Duration::from_secs(5))
            .send()
            .await;
        if live.is_ok_and(|r| r.status().is_success()) {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(format!(
                "the real gateway at {url} is not ready; start it with scripts/testbed.sh's litellm_start_bg \
                 or set {url_var}=skip"
            ));
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// `check` or `check => setup`: `setup(&FakeGateway)` puts the fake in the real gateway's configuration first.
macro_rules! contract {
    ($($check:ident $(=> $setup:expr)?),* $(,)?) => {
        /// The checks against the in-repo fake gateway, as 1.108.7.
        mod fake {
            use super::FakeGateway;
            $(
                #[tokio::test]
                async fn $check() {
                    let fake = FakeGateway::start().await;
                    $( ($setup)(&fake); )?
                    let gw = super::Gw::connect(&fake.url, &fake.admin_key).await;
                    super::$check(&gw).await;
                    gw.finish();
                }
            )*
        }

        /// The same checks against the fake imitating 1.98.0's differences.
        mod fake_1_98 {
            use super::FakeGateway;
            use crate::support::fake_gateway::FakeRelease;
            $(
                #[tokio::test]
                async fn $check() {
                    let fake = FakeGateway::start().await;
                    fake.set_release(FakeRelease::V1_98);
                    $( ($setup)(&fake); )?
                    let gw = super::Gw::connect(&fake.url, &fake.admin_key).await;
                    super::$check(&gw).await;
                    gw.finish();
                }
            )*
        }

        /// The same checks against the real LiteLLM 1.108.7 of the test bed.
        mod real {
            $(
                #[tokio::test]
                async fn $check() {
                    let Some((url, key)) =
                        super::real_gateway("ROUTERO_TEST_LITELLM_URL", "http://127.0.0.1:4000").await
                    else {
                        return;
                    };
                    let gw = super::Gw::connect(&url, &key).await;
                    super::$check(&gw).await;
                    gw.finish();
                }
            )*
        }

        /// The same checks against the real LiteLLM 1.98.0 of the test bed.
        mod real_1_98 {
            $(
                #[tokio::test]
                async fn $check() {
                    let Some((url, key)) =
                        super::real_gateway("ROUTERO_TEST_LITELLM_OLD_URL", "http://127.0.0.1:4001").await
                    else {
                        return;
                    };
                    let gw = super::Gw::connect(&url, &key).await;
                    super::$check(&gw).await;
                    gw.finish();
                }
            )*
        }
    };
}

contract!(
    health_endpoints,
    auth_required,
    error_shapes,
    team_new_idempotency,
    team_update_semantics,
    team_delete_semantics,
    team_delete_cascades_keys,
    team_members,
    team_new_members,
    key_generate_caller_secret,
    key_same_secret_twice,
    key_alias_unique,
    key_update_semantics,
    key_works_until_deleted,
    key_list_filters,
    virtual_key_routes,
    user_new_auto_create_key,
    user_update_semantics,
    user_delete_cascades_keys,
    // The test bed's LiteLLM has no licence; the fake has regenerate on by default.
    regenerate_unlicensed => |gw: &FakeGateway| gw.set_regenerate_enabled(false),
);

// ---------------------------------------------------------------------------------------------------------------
// Checks shared by both gateways
// ---------------------------------------------------------------------------------------------------------------

async fn health_endpoints(gw: &Gw) {
    let live = gw.send(None, Method::GET, "/health/liveliness", None).await;
    assert_eq!(live.status, 200, "{live}");
    // Public readiness carries only status and db: litellm_version is on the authenticated details route.
    let ready = gw.send(None, Method::GET, "/health/readiness", None).await;
    assert_eq!(ready.status, 200, "{ready}");
    assert_eq!(ready.body["status"], json!("healthy"), "{ready}");
    assert_eq!(ready.body["db"], json!("connected"), "{ready}");
    assert!(ready.body.get("litellm_version").is_none(), "{ready}");
    let details = gw.get("/health/readiness/details").await;
    assert_eq!(details.status, 200, "{details}");
    assert!(details.body["litellm_version"].is_string(), "{details}");
    let anonymous = gw
        .send(None, Method::GET, "/health/readiness/details", None)
        .await;
    assert_envelope(&anonymous, 401, "auth_error");
}

async fn auth_required(gw: &Gw) {
    let none = gw
        .send(None, Method::GET, "/key/list?page=1&size=1", None)
        .await;
    assert_envelope(&none, 401, "auth_error");
    let wrong = gw
        .send(
            Some(&secret()),
            Method::GET,
            "/key/list?page=1&size=1",
            None,
        )
        .await;
    assert_envelope(&wrong, 401, "token_not_found_in_db");
    let ok = gw.get("/key/list?page=1&size=1").await;
    assert_eq!(ok.status, 200, "{ok}");
    // A virtual key is no admin credential.
    let (key, _) = gw.new_key(json!({})).await;
    let virtual_key = gw
        .send(Some(&key), Method::POST, "/team/new", Some(&json!({})))
        .await;
    assert_envelope(&virtual_key, 401, "auth_error");
}

async fn error_shapes(gw: &Gw) {
    let missing = uniq("missing");

    // 404 envelope, type auth_error.
    let r = gw.get(&format!("/team/info?team_id={missing}")).await;
    assert_envelope(&r, 404, "auth_error");

    // Without team_id: a 422 in the envelope shape (not FastAPI's).
    let r = gw.get("/team/info").await;
    assert_envelope(&r, 422, "auth_error");
    // Without key, /key/info reads the caller's own key: the admin key has no row.
    let r = gw.get("/key/info").await;
    assert_envelope(&r, 404, "not_found_error");

    // 404 envelope, exact message, type not_found_error, param "key".
    let r = gw.get(&format!("/key/info?key={}", sha(&missing))).await;
    assert_envelope(&r, 404, "not_found_error");
    assert_eq!(message(&r), "Key not found in database");
    assert_eq!(r.body["error"]["param"], json!("key"));

    // 404 envelope with a Python-literal message.
    let r = gw
        .post("/key/delete", json!({"keys": [sha(&missing)]}))
        .await;
    assert_envelope(&r, 404, "internal_server_error");
    assert_eq!(message(&r), "{'error': 'No keys found'}");

    // 404 bare detail.
    let r = gw
        .post("/team/delete", json!({"team_ids": [missing]}))
        .await;
    assert_bare(&r, 404);

    // 404 envelope, type internal_server_error.
    let r = gw
        .post("/team/update", json!({"team_id": missing, "metadata": {}}))
        .await;
    assert_envelope(&r, 404, "internal_server_error");

    // FastAPI 422 on wrong JSON types and missing fields.
    let r = gw
        .post(
            "/team/new",
            json!({"team_id": uniq("t"), "max_budget": "lots"}),
        )
        .await;
    assert_422(&r, json!(["body", "max_budget"]));
    assert_eq!(r.body["detail"][0]["type"], json!("float_parsing"));
    let r = gw
        .post("/key/generate", json!({"max_budget": "lots"}))
        .await;
    assert_422(&r, json!(["body", "max_budget"]));
    let r = gw.post("/team/update", json!({"max_budget": 1})).await;
    assert_422(&r, json!(["body", "team_id"]));
    let r = gw.post("/key/delete", json!({})).await;
    assert_422(&r, json!(["body"]));
    let r = gw.post("/team/new", json!({"metadata": "not a map"})).await;
    assert_422(&r, json!(["body", "metadata"]));
    let r = gw.get("/key/list?size=101").await;
    assert_422(&r, json!(["query", "size"]));

    // 400 envelope, type internal_server_error; the message is a Python literal.
    let r = gw
        .post("/team/new", json!({"team_id": uniq("t"), "max_budget": -1}))
        .await;
    assert_envelope(&r, 400, "internal_server_error");
    assert!(
        message(&r).starts_with("{'error': 'max_budget must be a non-negative"),
        "{r}"
    );
}

async fn team_new_idempotency(gw: &Gw) {
    let team_id = uniq("team");
    let alias = uniq("alias");
    let created = gw
        .post(
            "/team/new",
            json!({"team_id": team_id, "team_alias": alias, "max_budget": 10, "metadata": {"owner": "ct"}}),
        )
        .await;
    assert_eq!(created.status, 200, "{created}");
    assert_eq!(created.body["team_id"], json!(team_id));
    assert_eq!(created.body["max_budget"], json!(10.0));
    assert_eq!(created.body["metadata"], json!({"owner": "ct"}));
    assert!(
        created.body["created_at"]
            .as_str()
            .is_some_and(|t| t.ends_with('Z')),
        "{created}"
    );
    let members = created.body["members_with_roles"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert!(
        members
            .iter()
            .any(|m| m["user_id"] == json!("default_user_id") && m["role"] == json!("admin")),
        "the admin key joins as default_user_id: {created}"
    );

    // The same team_id again: 400 "already exists", and nothing changes.
    let again = gw
        .post("/team/new", json!({"team_id": team_id, "max_budget": 99}))
        .await;
    assert_envelope(&again, 400, "internal_server_error");
    assert!(message(&again).contains("already exists"), "{again}");
    let info = gw.get(&format!("/team/info?team_id={team_id}")).await;
    assert_eq!(info.status, 200, "{info}");
    assert_eq!(info.body["team_info"]["max_budget"], json!(10.0));
    // Differs; the operator reads members from `team_info.members_with_roles` and excludes default_user_id there.
    gw.per_release(
        "/team/info team_memberships of a new team include default_user_id",
        json!(
            info.body["team_memberships"]
                .as_array()
                .is_some_and(|ms| ms.iter().any(|m| m["user_id"] == json!("default_user_id")))
        ),
        json!(true),
        json!(false),
    );

    // team_alias is not unique: a second team with it is created.
    let twin = gw.post("/team/new", json!({"team_alias": alias})).await;
    assert_eq!(twin.status, 200, "{twin}");
    let twin_id = twin.body["team_id"].as_str().unwrap_or_default().to_owned();
    assert_ne!(twin_id, team_id);
    assert_eq!(twin_id.len(), 36, "a server-made team_id is a UUID: {twin}");

    gw.post("/team/delete", json!({"team_ids": [team_id]}))
        .await;
    gw.post("/team/delete", json!({"team_ids": [twin_id]}))
        .await;
}

async fn team_update_semantics(gw: &Gw) {
    let team_id = uniq("team");
    let r = gw
        .post(
            "/team/new",
            json!({"team_id": team_id, "models": ["m1"], "max_budget": 5,
                   "metadata": {"owner": "operator", "k8s": {"ns": "a"}}, "budget_duration": "30d"}),
        )
        .await;
    assert_eq!(r.status, 200, "{r}");
    // 30d snaps to the first of the next month, midnight UTC.
    let created = r.body["created_at"].as_str().unwrap_or_default().to_owned();
    let (y, m): (i32, u32) = (
        created[0..4].parse().unwrap_or_default(),
        created[5..7].parse().unwrap_or_default(),
    );
    let (ny, nm) = if m == 12 { (y + 1, 1) } else { (y, m + 1) };
    assert_eq!(
        r.body["budget_reset_at"],
        json!(format!("{ny:04}-{nm:02}-01T00:00:00Z")),
        "{r}"
    );

    // metadata is replaced, not merged; fields not sent keep their values.
    let u = gw
        .post(
            "/team/update",
            json!({"team_id": team_id, "metadata": {"owner": "operator2"}}),
        )
        .await;
    assert_eq!(u.status, 200, "{u}");
    assert_eq!(u.body["team_id"], json!(team_id));
    assert_eq!(u.body["data"]["metadata"], json!({"owner": "operator2"}));
    assert_eq!(u.body["data"]["models"], json!(["m1"]));
    assert_eq!(u.body["data"]["max_budget"], json!(5.0));
    let info = gw.get(&format!("/team/info?team_id={team_id}")).await;
    assert_eq!(
        info.body["team_info"]["metadata"],
        json!({"owner": "operator2"})
    );

    // Negative budget and an unusable budget_duration are refused with 400.
    let r = gw
        .post(
            "/team/update",
            json!({"team_id": team_id, "max_budget": -2}),
        )
        .await;
    assert_envelope(&r, 400, "internal_server_error");
    let r = gw
        .post(
            "/team/update",
            json!({"team_id": team_id, "budget_duration": "2mo"}),
        )
        .await;
    assert_envelope(&r, 400, "internal_server_error");
    assert!(message(&r).contains("Invalid budget_duration"), "{r}");

    gw.post("/team/delete", json!({"team_ids": [team_id]}))
        .await;
}

async fn team_delete_semantics(gw: &Gw) {
    let team_id = uniq("team");
    gw.new_team(&team_id).await;
    // One missing id fails the whole batch: nothing is deleted.
    let r = gw
        .post(
            "/team/delete",
            json!({"team_ids": [team_id, uniq("missing")]}),
        )
        .await;
    assert_bare(&r, 404);
    let still = gw.get(&format!("/team/info?team_id={team_id}")).await;
    assert_eq!(still.status, 200, "{still}");
    let r = gw
        .post("/team/delete", json!({"team_ids": [team_id]}))
        .await;
    assert_eq!(r.status, 200, "{r}");
    assert_eq!(r.body, json!({"deleted_teams": [team_id]}));
    let r = gw
        .post("/team/delete", json!({"team_ids": [team_id]}))
        .await;
    assert_bare(&r, 404);
    let list = gw.get("/team/list").await;
    assert_eq!(list.status, 200, "{list}");
    assert!(list.body.is_array(), "team/list is a bare array: {list}");
}

async fn team_delete_cascades_keys(gw: &Gw) {
    let team_id = uniq("team");
    gw.new_team(&team_id).await;
    let (k1, h1) = gw.new_key(json!({"team_id": team_id})).await;
    let (k2, h2) = gw
        .new_key(json!({"team_id": team_id, "key_alias": uniq("alias")}))
        .await;
    assert_eq!(gw.models_with(&k1).await.status, 200);
    let info = gw.get(&format!("/team/info?team_id={team_id}")).await;
    assert_eq!(
        info.body["keys"].as_array().map(Vec::len),
        Some(2),
        "{info}"
    );

    let r = gw
        .post("/team/delete", json!({"team_ids": [team_id]}))
        .await;
    assert_eq!(r.status, 200, "{r}");
    for (key, hash) in [(&k1, &h1), (&k2, &h2)] {
        // Relied on, seen on 1.108.7 and 1.98.0: the team's keys are refused on the next request.
        assert_envelope(&gw.models_with(key).await, 401, "token_not_found_in_db");
        gw.assert_key_gone(hash).await;
        let upd = gw
            .post("/key/update", json!({"key": hash, "max_budget": 1}))
            .await;
        assert_envelope(&upd, 404, "not_found_error");
    }
    let live = gw.get(&format!("/key/list?team_id={team_id}")).await;
    assert_eq!(live.body["total_count"], json!(0), "{live}");
    let archived = gw
        .get(&format!("/key/list?status=deleted&team_id={team_id}"))
        .await;
    gw.per_release(
        "/key/list?status=deleted of a deleted team's keys: total_count",
        archived.body["total_count"].clone(),
        json!(2),
        json!(2),
    );
}

async fn team_members(gw: &Gw) {
    let team_id = uniq("team");
    let user = uniq("user");
    gw.new_team(&team_id).await;

    let add = json!({"team_id": team_id, "member": {"role": "user", "user_id": user}});
    let r = gw.post("/team/member_add", add.clone()).await;
    assert_eq!(r.status, 200, "{r}");
    assert!(r.body["updated_users"].is_array(), "{r}");
    assert!(r.body["updated_team_memberships"].is_array(), "{r}");
    // The unknown user was created.
    let u = gw.get(&format!("/v2/user/info?user_id={user}")).await;
    assert_eq!(u.status, 200, "{u}");

    // Already a member: 400 with the one type worth reading.
    let r = gw.post("/team/member_add", add).await;
    assert_envelope(&r, 400, "team_member_already_in_team");
    // Team admins need a licence (member_add), 400 bare detail.
    let r = gw
        .post(
            "/team/member_add",
            json!({"team_id": team_id, "member": {"role": "admin", "user_id": uniq("admin")}}),
        )
        .await;
    assert_bare(&r, 400);
    // Unknown team: 404 bare detail.
    let r = gw
        .post(
            "/team/member_add",
            json!({"team_id": uniq("missing"), "member": {"role": "user", "user_id": user}}),
        )
        .await;
    assert_bare(&r, 404);

    // member_update: a member → 200; a non-member → 404 bare; a missing team → 400 bare.
    let r = gw
        .post(
            "/team/member_update",
            json!({"team_id": team_id, "user_id": user, "role": "user", "max_budget_in_team": 5}),
        )
        .await;
    assert_eq!(r.status, 200, "{r}");
    assert_eq!(r.body["max_budget_in_team"], json!(5.0));
    // Differs; the operator calls member_update only for a user the team's members_with_roles lists.
    let r = gw
        .post(
            "/team/member_update",
            json!({"team_id": team_id, "user_id": uniq("nobody"), "role": "user"}),
        )
        .await;
    gw.per_release(
        "/team/member_update of a non-member: status",
        json!(r.status),
        json!(404),
        json!(200),
    );
    if r.status == 404 {
        assert_bare(&r, 404);
    }
    let r = gw
        .post(
            "/team/member_update",
            json!({"team_id": uniq("missing"), "user_id": user, "role": "user"}),
        )
        .await;
    assert_bare(&r, 400);

    // member_delete deletes (archives) the member's keys in that team; the member's other keys and the team's
    // other keys survive.
    let (key, hash) = gw
        .new_key(json!({"team_id": team_id, "user_id": user}))
        .await;
    let (own_key, own_hash) = gw.new_key(json!({"user_id": user})).await;
    let (team_key, team_hash) = gw.new_key(json!({"team_id": team_id})).await;
    let del = json!({"team_id": team_id, "user_id": user});
    let r = gw.post("/team/member_delete", del.clone()).await;
    assert_eq!(r.status, 200, "{r}");
    assert!(
        r.body["members_with_roles"]
            .as_array()
            .is_some_and(|ms| ms.iter().all(|m| m["user_id"] != json!(user))),
        "{r}"
    );
    gw.assert_key_gone(&hash).await;
    assert_envelope(&gw.models_with(&key).await, 401, "token_not_found_in_db");
    assert_eq!(gw.models_with(&own_key).await.status, 200);
    assert_eq!(gw.models_with(&team_key).await.status, 200);
    gw.post("/key/delete", json!({"keys": [own_hash, team_hash]}))
        .await;
    // Not a member any more: 400 bare; a missing team: 400 bare (not 404).
    let r = gw.post("/team/member_delete", del).await;
    assert_bare(&r, 400);
    let r = gw
        .post(
            "/team/member_delete",
            json!({"team_id": uniq("missing"), "user_id": user}),
        )
        .await;
    assert_bare(&r, 400);

    gw.post("/team/delete", json!({"team_ids": [team_id]}))
        .await;
    gw.post("/user/delete", json!({"user_ids": [user]})).await;
}

async fn team_new_members(gw: &Gw) {
    let team_id = uniq("team");
    let by_id = uniq("user");
    let email = format!("{}@Example.com", uniq("mail"));
    let r = gw
        .post(
            "/team/new",
            json!({"team_id": team_id, "members_with_roles": [
                {"role": "admin", "user_id": by_id}, {"role": "user", "user_email": email}]}),
        )
        .await;
    assert_eq!(r.status, 200, "{r}");
    let members = r.body["members_with_roles"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    // Listed members first (unknown users are created), the admin key's user last.
    assert_eq!(members.len(), 3, "{r}");
    assert_eq!(members[0]["user_id"], json!(by_id));
    assert_eq!(members[0]["role"], json!("admin"));
    assert_eq!(members[1]["user_email"], json!(email));
    assert_eq!(members[2]["user_id"], json!("default_user_id"));
    let by_email = members[1]["user_id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert_eq!(
        by_email.len(),
        36,
        "a user made from an email gets a UUID: {r}"
    );
    let u = gw.get(&format!("/v2/user/info?user_id={by_id}")).await;
    assert_eq!(u.status, 200, "{u}");
    assert_eq!(u.body["teams"], json!([team_id]), "{u}");

    // The duplicate check compares the email exactly: the same email → 400; another case → 200, nothing added.
    let add = |e: &str| json!({"team_id": team_id, "member": {"role": "user", "user_email": e}});
    let r = gw.post("/team/member_add", add(&email)).await;
    assert_envelope(&r, 400, "team_member_already_in_team");
    let r = gw
        .post("/team/member_add", add(&email.to_lowercase()))
        .await;
    assert_eq!(r.status, 200, "{r}");
    // Differs; the operator never reads updated_users (membership is read from the team side).
    gw.per_release(
        "/team/member_add of a member by another-cased email: updated_users",
        json!(r.body["updated_users"].as_array().map(Vec::len)),
        json!(0),
        json!(1),
    );
    assert_eq!(
        r.body["members_with_roles"].as_array().map(Vec::len),
        Some(3),
        "{r}"
    );
    let list = gw.get("/team/list").await;
    let row = list
        .body
        .as_array()
        .and_then(|ts| ts.iter().find(|t| t["team_id"] == json!(team_id)).cloned())
        .unwrap_or_default();
    assert!(
        row["keys"].is_array() && row["team_memberships"].is_array(),
        "{row}"
    );

    // Deleting the team takes it out of its members' `teams`.
    let r = gw
        .post("/team/delete", json!({"team_ids": [team_id]}))
        .await;
    assert_eq!(r.status, 200, "{r}");
    let u = gw.get(&format!("/v2/user/info?user_id={by_id}")).await;
    assert_eq!(u.body["teams"], json!([]), "{u}");
    let r = gw
        .post("/user/delete", json!({"user_ids": [by_id, by_email]}))
        .await;
    assert_eq!(r.status, 200, "{r}");
    assert_eq!(r.body, json!(2), "{r}");
}

async fn virtual_key_routes(gw: &Gw) {
    // key_type llm_api: data plane only; an admin route answers 403 with a string `detail` (a fourth shape).
    let (llm, llm_hash) = gw.new_key(json!({"key_type": "llm_api"})).await;
    let r = gw.send(Some(&llm), Method::GET, "/team/list", None).await;
    assert_eq!(r.status, 403, "{r}");
    assert!(r.body["detail"].is_string(), "{r}");
    assert_eq!(
        gw.send(Some(&llm), Method::GET, "/models", None)
            .await
            .status,
        200
    );
    // Blocked: 401 on the data plane, listed as revoked.
    let r = gw
        .post("/key/update", json!({"key": llm_hash, "blocked": true}))
        .await;
    assert_eq!(r.status, 200, "{r}");
    // Differs; the operator never sends `status` to /key/list (it reads `blocked` from the rows).
    let revoked = gw
        .get(&format!("/key/list?status=revoked&key_hash={llm_hash}"))
        .await;
    let active = gw
        .get(&format!("/key/list?status=active&key_hash={llm_hash}"))
        .await;
    gw.per_release(
        "/key/list?status=revoked and status=active of a blocked key",
        json!([
            revoked.status,
            revoked.body["total_count"],
            active.status,
            active.body["total_count"]
        ]),
        json!([200, 1, 200, 0]),
        json!([400, null, 400, null]),
    );
    assert_envelope(&gw.models_with(&llm).await, 401, "auth_error");
    gw.post("/key/delete", json!({"keys": [llm_hash]})).await;
}

async fn key_generate_caller_secret(gw: &Gw) {
    let secret = secret();
    let alias = uniq("alias");
    let team = uniq("ghost-team");
    // An unknown team_id is accepted.
    let r = gw
        .post(
            "/key/generate",
            json!({"key": secret, "key_alias": alias, "team_id": team, "metadata": {"owner": "ct"},
                   "max_budget": 3, "key_type": "llm_api"}),
        )
        .await;
    assert_eq!(r.status, 200, "{r}");
    let token = sha(&secret);
    assert_eq!(r.body["key"], json!(secret));
    assert_eq!(r.body["token"], json!(token));
    assert_eq!(r.body["token_id"], json!(token));
    assert_eq!(
        r.body["key_name"],
        json!(format!("sk-...{}", &secret[secret.len() - 4..]))
    );
    assert_eq!(r.body["key_alias"], json!(alias));
    assert_eq!(r.body["team_id"], json!(team));
    assert_eq!(r.body["metadata"], json!({"owner": "ct"}));
    assert_eq!(r.body["max_budget"], json!(3.0));
    assert_eq!(r.body["expires"], Value::Null);
    assert_eq!(r.body["key_type"], json!("llm_api"));

    // /key/info by hash and by raw key; no token inside info; `key` echoed as sent.
    for key in [&token, &secret] {
        let info = gw.get(&format!("/key/info?key={key}")).await;
        assert_eq!(info.status, 200, "{info}");
        assert_eq!(info.body["key"], json!(key));
        let i = &info.body["info"];
        assert!(i.get("token").is_none(), "{info}");
        assert_eq!(i["key_alias"], json!(alias));
        assert_eq!(i["team_id"], json!(team));
        assert_eq!(i["metadata"], json!({"owner": "ct"}));
        gw.live_status(&info, "active");
        assert_eq!(i["rotation_count"], json!(0));
        assert!(
            i["created_at"]
                .as_str()
                .is_some_and(|t| t.ends_with("+00:00")),
            "{info}"
        );
    }

    // A server-made secret: sk- plus 22 URL-safe characters.
    let r = gw.post("/key/generate", json!({})).await;
    assert_eq!(r.status, 200, "{r}");
    let made = r.body["key"].as_str().unwrap_or_default().to_owned();
    assert!(made.starts_with("sk-") && made.len() == 25, "{r}");
    assert_eq!(r.body["token"], json!(sha(&made)));

    // Caller secrets must start with sk- and be at least 16 characters.
    let r = gw
        .post("/key/generate", json!({"key": "nosk-0123456789abcdef"}))
        .await;
    assert_envelope(&r, 400, "internal_server_error");
    let r = gw.post("/key/generate", json!({"key": "sk-short"})).await;
    assert_envelope(&r, 400, "internal_server_error");
    // A duration sets expires; an unknown unit is a 500.
    let r = gw.post("/key/generate", json!({"duration": "1h"})).await;
    assert!(r.body["expires"].is_string(), "{r}");
    let r = gw.post("/key/generate", json!({"duration": "10x"})).await;
    assert_envelope(&r, 500, "internal_server_error");

    gw.post("/key/delete", json!({"keys": [token, sha(&made)]}))
        .await;
}

async fn key_same_secret_twice(gw: &Gw) {
    let team = uniq("team");
    let alias = uniq("alias");
    let (secret, token) = gw
        .new_key(json!({"key_alias": alias, "team_id": team, "metadata": {"v": 1}}))
        .await;

    // The same secret again, other fields: 200 with the existing token, echoing the request; nothing changes.
    let r = gw
        .post(
            "/key/generate",
            json!({"key": secret, "metadata": {"v": 2}}),
        )
        .await;
    assert_eq!(r.status, 200, "{r}");
    assert_eq!(r.body["token"], json!(token));
    assert_eq!(
        r.body["key_alias"],
        Value::Null,
        "the reply echoes the request: {r}"
    );
    let list = gw.get(&format!("/key/list?team_id={team}")).await;
    assert_eq!(list.body["total_count"], json!(1), "no second row: {list}");
    let info = gw.get(&format!("/key/info?key={token}")).await;
    assert_eq!(info.body["info"]["key_alias"], json!(alias));
    assert_eq!(info.body["info"]["metadata"], json!({"v": 1}));

    // The same secret with the same alias: the alias check comes first, so 400.
    let r = gw
        .post("/key/generate", json!({"key": secret, "key_alias": alias}))
        .await;
    assert_envelope(&r, 400, "bad_request_error");

    gw.post("/key/delete", json!({"keys": [token]})).await;
}

async fn key_alias_unique(gw: &Gw) {
    let alias = uniq("alias");
    let (_, first) = gw.new_key(json!({"key_alias": alias})).await;
    let r = gw
        .post(
            "/key/generate",
            json!({"key": secret(), "key_alias": alias}),
        )
        .await;
    assert_envelope(&r, 400, "bad_request_error");
    assert_eq!(r.body["error"]["param"], json!("key_alias"));
    assert!(
        message(&r).starts_with(&format!("Key with alias '{alias}' already exists")),
        "{r}"
    );
    // Renaming another key onto it is refused too.
    let (_, second) = gw.new_key(json!({})).await;
    let r = gw
        .post("/key/update", json!({"key": second, "key_alias": alias}))
        .await;
    assert_envelope(&r, 400, "bad_request_error");
    // Deleting the key frees the alias.
    let r = gw
        .post("/key/delete", json!({"key_aliases": [alias]}))
        .await;
    assert_eq!(r.status, 200, "{r}");
    assert_eq!(r.body, json!({"deleted_keys": [alias]}));
    gw.assert_key_gone(&first).await;
    let (_, third) = gw.new_key(json!({"key_alias": alias})).await;
    gw.post("/key/delete", json!({"keys": [second, third]}))
        .await;
}

async fn key_update_semantics(gw: &Gw) {
    let alias = uniq("alias");
    let (secret, token) = gw
        .new_key(json!({"key_alias": alias, "max_budget": 4, "metadata": {"owner": "operator", "k8s": {"ns": "a"}}}))
        .await;
    // metadata is replaced; max_budget, not sent, is kept.
    let r = gw
        .post(
            "/key/update",
            json!({"key": token, "metadata": {"owner": "operator2"}}),
        )
        .await;
    assert_eq!(r.status, 200, "{r}");
    assert_eq!(r.body["key"], json!(token));
    assert_eq!(r.body["token"], json!(token));
    assert_eq!(r.body["metadata"], json!({"owner": "operator2"}));
    assert_eq!(r.body["max_budget"], json!(4.0));
    assert_eq!(r.body["key_alias"], json!(alias));
    // By raw key, re-sending its own alias is fine.
    let r = gw
        .post(
            "/key/update",
            json!({"key": secret, "key_alias": alias, "blocked": true}),
        )
        .await;
    assert_eq!(r.status, 200, "{r}");
    let info = gw.get(&format!("/key/info?key={token}")).await;
    // Relied on (KeyRow::usable), seen on 1.108.7 and 1.98.0: `blocked` reads back.
    assert_eq!(info.body["info"]["blocked"], json!(true));
    gw.live_status(&info, "revoked");
    assert_envelope(&gw.models_with(&secret).await, 401, "auth_error");
    // 1.108.7 can address the key by alias.
    let r = gw
        .post("/key/update", json!({"key_alias": alias, "blocked": false}))
        .await;
    assert_eq!(r.status, 200, "{r}");
    assert_eq!(r.body["token"], json!(token));
    assert_eq!(gw.models_with(&secret).await.status, 200);

    // A missing key: 404 "Key not found."; an unknown team_id: 404 too.
    let r = gw
        .post(
            "/key/update",
            json!({"key": sha(&uniq("missing")), "max_budget": 1}),
        )
        .await;
    assert_envelope(&r, 404, "not_found_error");
    assert_eq!(message(&r), "Key not found.");
    let r = gw
        .post(
            "/key/update",
            json!({"key": token, "team_id": uniq("missing-team")}),
        )
        .await;
    assert_envelope(&r, 404, "auth_error");
    let r = gw
        .post(
            "/key/update",
            json!({"key_alias": uniq("missing"), "max_budget": 1}),
        )
        .await;
    assert_envelope(&r, 404, "not_found_error");
    let r = gw.post("/key/update", json!({"max_budget": 1})).await;
    assert_422(&r, json!(["body"]));

    gw.post("/key/delete", json!({"keys": [token]})).await;
}

async fn key_works_until_deleted(gw: &Gw) {
    let (secret, token) = gw.new_key(json!({})).await;
    let r = gw.models_with(&secret).await;
    assert_eq!(r.status, 200, "{r}");
    assert!(r.body["data"].is_array(), "{r}");
    let r = gw.models_with(&gw.admin).await;
    assert_eq!(r.status, 200, "{r}");

    let r = gw.post("/key/delete", json!({"keys": [token]})).await;
    assert_eq!(r.status, 200, "{r}");
    assert_eq!(r.body, json!({"deleted_keys": [token]}));
    assert_envelope(&gw.models_with(&secret).await, 401, "token_not_found_in_db");
    // Deleted keys are gone (1.108.7 answers /key/info from its archive); /key/delete says 404 on both.
    gw.assert_key_gone(&token).await;
    let r = gw.post("/key/delete", json!({"keys": [token]})).await;
    assert_envelope(&r, 404, "internal_server_error");
    let archived = gw
        .get(&format!(
            "/key/list?status=deleted&key_hash={token}&return_full_object=true"
        ))
        .await;
    gw.per_release(
        "/key/list?status=deleted of a deleted key: its token",
        archived.body["keys"][0]["token"].clone(),
        json!(token),
        json!(token),
    );

    // The same secret can be generated again once deleted: a new live row.
    let r = gw.post("/key/generate", json!({"key": secret})).await;
    assert_eq!(r.status, 200, "{r}");
    assert_eq!(gw.models_with(&secret).await.status, 200);
    let info = gw.get(&format!("/key/info?key={token}")).await;
    assert_eq!(info.status, 200, "{info}");
    gw.live_status(&info, "active");
    gw.post("/key/delete", json!({"keys": [token]})).await;

    // An expired key no longer works.
    let (expiring, expiring_hash) = gw.new_key(json!({"duration": "1s"})).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_envelope(&gw.models_with(&expiring).await, 401, "expired_key");
    let info = gw.get(&format!("/key/info?key={expiring_hash}")).await;
    // Relied on (KeyRow::usable), seen on 1.108.7 and 1.98.0: `expires` reads back, so expiry needs no `status`.
    assert!(info.body["info"]["expires"].is_string(), "{info}");
    gw.live_status(&info, "expired");
    gw.post("/key/delete", json!({"keys": [expiring_hash]}))
        .await;
}

async fn key_list_filters(gw: &Gw) {
    let team = uniq("team");
    let alias = uniq("alias");
    let (_, h1) = gw
        .new_key(json!({"team_id": team, "key_alias": alias}))
        .await;
    let (_, h2) = gw.new_key(json!({"team_id": team})).await;
    let (_, h3) = gw.new_key(json!({"team_id": team})).await;

    let r = gw.get(&format!("/key/list?team_id={team}")).await;
    assert_eq!(r.status, 200, "{r}");
    assert_eq!(r.body["total_count"], json!(3));
    assert_eq!(r.body["current_page"], json!(1));
    assert_eq!(r.body["total_pages"], json!(1));
    let mut hashes: Vec<String> = r.body["keys"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|k| k.as_str().map(str::to_owned))
        .collect();
    hashes.sort();
    let mut expected = vec![h1.clone(), h2.clone(), h3.clone()];
    expected.sort();
    assert_eq!(hashes, expected);

    let r = gw
        .get(&format!("/key/list?team_id={team}&page=2&size=2"))
        .await;
    assert_eq!(r.body["total_pages"], json!(2), "{r}");
    assert_eq!(r.body["current_page"], json!(2), "{r}");
    assert_eq!(r.body["keys"].as_array().map(Vec::len), Some(1), "{r}");

    // By exact alias, full rows (with token).
    let r = gw
        .get(&format!(
            "/key/list?key_alias={alias}&return_full_object=true"
        ))
        .await;
    assert_eq!(r.body["total_count"], json!(1), "{r}");
    assert_eq!(r.body["keys"][0]["token"], json!(h1));
    assert_eq!(r.body["keys"][0]["key_alias"], json!(alias));
    let r = gw
        .get(&format!(
            "/key/list?key_alias={}",
            &alias[..alias.len() - 1]
        ))
        .await;
    assert_eq!(r.body["total_count"], json!(0), "alias match is exact: {r}");

    let r = gw.get("/key/list?status=bogus").await;
    assert_envelope(&r, 400, "internal_server_error");
    gw.post("/key/delete", json!({"keys": [h1, h2, h3]})).await;
}

async fn user_new_auto_create_key(gw: &Gw) {
    // Default: a key is created for the user, with no team.
    let user = uniq("user");
    let email = format!("{user}@Example.com");
    let r = gw
        .post(
            "/user/new",
            json!({"user_id": user, "user_email": email, "user_role": "internal_user"}),
        )
        .await;
    assert_eq!(r.status, 200, "{r}");
    assert_eq!(r.body["user_id"], json!(user));
    assert_eq!(r.body["token"], Value::Null);
    let key = r.body["key"].as_str().unwrap_or_default().to_owned();
    assert!(key.starts_with("sk-"), "{r}");
    let info = gw.get(&format!("/key/info?key={}", sha(&key))).await;
    assert_eq!(info.status, 200, "{info}");
    assert_eq!(info.body["info"]["user_id"], json!(user));
    assert_eq!(info.body["info"]["team_id"], Value::Null);
    let u = gw.get(&format!("/user/info?user_id={user}")).await;
    assert_eq!(u.status, 200, "{u}");
    assert_eq!(u.body["keys"].as_array().map(Vec::len), Some(1), "{u}");
    assert_eq!(u.body["keys"][0]["team_alias"], json!("None"), "{u}");

    // auto_create_key:false: no key ("key" is an empty string).
    let quiet = uniq("user");
    let r = gw
        .post("/user/new", json!({"user_id": quiet, "auto_create_key": false, "user_role": "internal_user_viewer"}))
        .await;
    assert_eq!(r.status, 200, "{r}");
    assert_eq!(r.body["key"], json!(""));
    let u = gw.get(&format!("/user/info?user_id={quiet}")).await;
    assert_eq!(u.body["keys"], json!([]), "{u}");
    assert_eq!(
        u.body["user_info"]["user_role"],
        json!("internal_user_viewer")
    );
    let v2 = gw.get(&format!("/v2/user/info?user_id={quiet}")).await;
    assert_eq!(v2.status, 200, "{v2}");
    assert_eq!(v2.body["user_id"], json!(quiet));

    // Duplicates: 409, by id and by email in any case.
    let r = gw
        .post(
            "/user/new",
            json!({"user_id": user, "auto_create_key": false}),
        )
        .await;
    assert_envelope(&r, 409, "internal_server_error");
    let r = gw
        .post(
            "/user/new",
            json!({"user_id": uniq("user"), "user_email": email.to_uppercase(), "auto_create_key": false}),
        )
        .await;
    assert_envelope(&r, 409, "internal_server_error");
    // Only the four roles exist.
    let r = gw
        .post(
            "/user/new",
            json!({"user_id": uniq("user"), "user_role": "internal_viewer"}),
        )
        .await;
    assert_422(&r, json!(["body", "user_role"]));
    // Missing users: 404 on both info routes.
    let missing = uniq("missing");
    assert_envelope(
        &gw.get(&format!("/user/info?user_id={missing}")).await,
        404,
        "internal_server_error",
    );
    assert_envelope(
        &gw.get(&format!("/v2/user/info?user_id={missing}")).await,
        404,
        "internal_server_error",
    );

    gw.post("/user/delete", json!({"user_ids": [user, quiet]}))
        .await;
}

async fn user_update_semantics(gw: &Gw) {
    let user = uniq("user");
    let r = gw
        .post(
            "/user/new",
            json!({"user_id": user, "auto_create_key": false, "metadata": {"a": 1}}),
        )
        .await;
    assert_eq!(r.status, 200, "{r}");
    // Empty maps and lists are ignored.
    let r = gw
        .post(
            "/user/update",
            json!({"user_id": user, "metadata": {}, "models": [], "max_budget": 7}),
        )
        .await;
    assert_eq!(r.status, 200, "{r}");
    assert_eq!(r.body["user_id"], json!(user));
    assert_eq!(r.body["data"]["metadata"], json!({"a": 1}));
    assert_eq!(r.body["data"]["max_budget"], json!(7.0));
    // An unknown user_id is created (upsert).
    let ghost = uniq("ghost");
    let r = gw
        .post("/user/update", json!({"user_id": ghost, "max_budget": 1}))
        .await;
    assert_eq!(r.status, 200, "{r}");
    let v2 = gw.get(&format!("/v2/user/info?user_id={ghost}")).await;
    assert_eq!(v2.status, 200, "{v2}");
    let r = gw
        .post(
            "/user/update",
            json!({"user_id": user, "user_role": "bogus"}),
        )
        .await;
    assert_422(&r, json!(["body", "user_role"]));
    gw.post("/user/delete", json!({"user_ids": [user, ghost]}))
        .await;
}

async fn user_delete_cascades_keys(gw: &Gw) {
    let team_id = uniq("team");
    gw.new_team(&team_id).await;
    let user = uniq("user");
    let r = gw
        .post(
            "/user/new",
            json!({"user_id": user, "auto_create_key": false, "teams": [team_id]}),
        )
        .await;
    assert_eq!(r.status, 200, "{r}");
    let info = gw.get(&format!("/team/info?team_id={team_id}")).await;
    assert!(
        info.body["team_info"]["members_with_roles"]
            .as_array()
            .is_some_and(|ms| ms.iter().any(|m| m["user_id"] == json!(user))),
        "the user joined the team: {info}"
    );
    let (key, hash) = gw
        .new_key(json!({"user_id": user, "team_id": team_id}))
        .await;
    let (team_key, team_hash) = gw.new_key(json!({"team_id": team_id})).await;

    // Any missing id: 404 bare, nothing deleted.
    let r = gw
        .post("/user/delete", json!({"user_ids": [user, uniq("missing")]}))
        .await;
    assert_bare(&r, 404);
    assert_eq!(gw.models_with(&key).await.status, 200);

    let r = gw.post("/user/delete", json!({"user_ids": [user]})).await;
    assert_eq!(r.status, 200, "{r}");
    assert_eq!(r.body, json!(1), "the reply is the number of users deleted");
    // The user's keys are hard-deleted, not archived: /key/info says 404. But the key, used just before, keeps
    // authenticating on 1.98.0 until the auth cache expires (about 60 s): the difference deprovisioning must not
    // depend on. The operator revokes each key with /key/delete before deleting the user (controller::revoke_keys).
    let next = gw.models_with(&key).await;
    gw.per_release(
        "a deleted user's key, in use: the next /v1/models",
        json!(next.status),
        json!(401),
        json!(200),
    );
    let r = gw.get(&format!("/key/info?key={hash}")).await;
    assert_envelope(&r, 404, "not_found_error");
    // Other keys of the team survive; the user left the team.
    assert_eq!(gw.models_with(&team_key).await.status, 200);
    let info = gw.get(&format!("/team/info?team_id={team_id}")).await;
    let mine = |field: &str| {
        info.body[field]
            .as_array()
            .is_some_and(|ms| ms.iter().any(|m| m["user_id"] == json!(user)))
    };
    assert!(!mine("team_memberships"), "{info}");
    assert!(
        !info.body["team_info"]["members_with_roles"]
            .as_array()
            .is_some_and(|ms| ms.iter().any(|m| m["user_id"] == json!(user))),
        "{info}"
    );
    assert_envelope(
        &gw.get(&format!("/user/info?user_id={user}")).await,
        404,
        "internal_server_error",
    );
    let r = gw.post("/user/delete", json!({"user_ids": [user]})).await;
    assert_bare(&r, 404);

    // What the operator relies on, seen on 1.108.7 and 1.98.0: `/key/list?user_id=` finds exactly the user's keys
    // (made by anyone), and a key revoked with /key/delete before its user is deleted is refused on the very next
    // request, though it was in use.
    let leaver = uniq("user");
    let r = gw
        .post(
            "/user/new",
            json!({"user_id": leaver, "auto_create_key": false}),
        )
        .await;
    assert_eq!(r.status, 200, "{r}");
    let (in_use, in_use_hash) = gw.new_key(json!({"user_id": leaver})).await;
    let (_, other_hash) = gw.new_key(json!({"user_id": format!("{leaver}x")})).await;
    for _ in 0..2 {
        assert_eq!(gw.models_with(&in_use).await.status, 200);
    }
    let listed = gw
        .get(&format!(
            "/key/list?user_id={leaver}&return_full_object=true"
        ))
        .await;
    assert_eq!(listed.status, 200, "{listed}");
    let tokens: Vec<&Value> = listed.body["keys"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|k| &k["token"])
        .collect();
    assert_eq!(
        tokens,
        vec![&json!(in_use_hash)],
        "exactly the user's keys: {listed}"
    );
    let r = gw.post("/key/delete", json!({"keys": [in_use_hash]})).await;
    assert_eq!(r.status, 200, "{r}");
    assert_envelope(&gw.models_with(&in_use).await, 401, "token_not_found_in_db");
    let r = gw.post("/user/delete", json!({"user_ids": [leaver]})).await;
    assert_eq!(r.status, 200, "{r}");
    assert_eq!(gw.models_with(&in_use).await.status, 401);

    gw.post("/key/delete", json!({"keys": [team_hash, other_hash]}))
        .await;
    gw.post("/team/delete", json!({"team_ids": [team_id]}))
        .await;
}

/// Open-source LiteLLM: both regenerate forms answer 500 "Enterprise feature", and nothing changes.
async fn regenerate_unlicensed(gw: &Gw) {
    let (old, token) = gw.new_key(json!({"key_alias": uniq("alias")})).await;
    let new = secret();
    let by_body = gw
        .post("/key/regenerate", json!({"key": token, "new_key": new}))
        .await;
    let by_path = gw
        .post(&format!("/key/{token}/regenerate"), json!({"new_key": new}))
        .await;
    for r in [&by_body, &by_path] {
        assert_envelope(r, 500, "internal_server_error");
        assert!(message(r).contains("Enterprise feature"), "{r}");
    }
    assert_eq!(gw.models_with(&old).await.status, 200);
    let info = gw.get(&format!("/key/info?key={token}")).await;
    assert_eq!(info.status, 200, "{info}");
    gw.live_status(&info, "active");
    let r = gw.get(&format!("/key/info?key={}", sha(&new))).await;
    assert_envelope(&r, 404, "not_found_error");
    gw.post("/key/delete", json!({"keys": [token]})).await;
}

// ---------------------------------------------------------------------------------------------------------------
// Fake only: behaviour the real gateway can't show (licensed regenerate, faults, counters, drift helpers)
// ---------------------------------------------------------------------------------------------------------------

#[tokio::test]
async fn fake_regenerate_licensed_rotates_in_place() {
    let fake = FakeGateway::start().await;
    let gw = Gw::connect(&fake.url, &fake.admin_key).await;
    let team = uniq("team");
    gw.new_team(&team).await;
    let alias = uniq("alias");
    let (old, old_hash) = gw
        .new_key(
            json!({"key_alias": alias, "team_id": team, "metadata": {"m": 1}, "max_budget": 2}),
        )
        .await;

    // Path form with a caller-chosen new secret.
    let new = secret();
    let r = gw
        .post(
            &format!("/key/{old_hash}/regenerate"),
            json!({"new_key": new}),
        )
        .await;
    assert_eq!(r.status, 200, "{r}");
    assert_eq!(r.body["key"], json!(new));
    assert_eq!(r.body["token"], json!(sha(&new)));
    assert_eq!(r.body["key_alias"], json!(alias));
    assert_eq!(r.body["team_id"], json!(team));
    assert_eq!(gw.models_with(&new).await.status, 200);
    assert_envelope(&gw.models_with(&old).await, 401, "token_not_found_in_db");
    assert_envelope(
        &gw.get(&format!("/key/info?key={old_hash}")).await,
        404,
        "not_found_error",
    );
    let info = gw.get(&format!("/key/info?key={}", sha(&new))).await;
    let i = &info.body["info"];
    assert_eq!(i["rotation_count"], json!(1));
    assert!(i["last_rotation_at"].is_string(), "{info}");
    assert_eq!(i["metadata"], json!({"m": 1}));
    assert_eq!(i["max_budget"], json!(2.0));

    // Body form wins over the path; without new_key the server makes one.
    let r = gw
        .post("/key/bogus/regenerate", json!({"key": sha(&new)}))
        .await;
    assert_eq!(r.status, 200, "{r}");
    let third = r.body["key"].as_str().unwrap_or_default().to_owned();
    assert!(third.starts_with("sk-") && third != new, "{r}");
    assert_eq!(
        fake.key_by_hash(&sha(&third))
            .map(|k| k["rotation_count"].clone()),
        Some(json!(2))
    );
    // Bad new_key: 400; unknown key: 404.
    let r = gw
        .post(
            "/key/regenerate",
            json!({"key": sha(&third), "new_key": "bad-0123456789abcdef"}),
        )
        .await;
    assert_envelope(&r, 400, "internal_server_error");
    let r = gw
        .post("/key/regenerate", json!({"key": sha(&uniq("missing"))}))
        .await;
    assert_envelope(&r, 404, "internal_server_error");
    assert_eq!(fake.count("POST /key/{key}/regenerate"), 2);
    assert_eq!(fake.count("POST /key/regenerate"), 2);
}

#[tokio::test]
async fn fake_status_fault_is_not_applied() {
    let fake = FakeGateway::start().await;
    let gw = Gw::connect(&fake.url, &fake.admin_key).await;
    fake.fail(Fault::once("POST /team/new", FaultKind::Status(503)));
    let team = uniq("team");
    let r = gw.post("/team/new", json!({"team_id": team})).await;
    assert_envelope(&r, 503, "internal_server_error");
    assert!(
        fake.team(&team).is_none(),
        "a faulted request changes nothing"
    );
    // The rule was used up.
    gw.new_team(&team).await;
    assert!(fake.team(&team).is_some());

    fake.fail(Fault::everywhere(FaultKind::Status(500)));
    assert_eq!(gw.get("/team/list").await.status, 500);
    let health = gw.send(None, Method::GET, "/health/readiness", None).await;
    assert_eq!(health.status, 200, "route None spares /health/*");
    fake.clear_faults();
    assert_eq!(gw.get("/team/list").await.status, 200);

    fake.fail(Fault::times("/key/info", FaultKind::Status(502), 2));
    let path = format!("/key/info?key={}", sha("x"));
    assert_eq!(gw.get(&path).await.status, 502);
    assert_eq!(gw.get(&path).await.status, 502);
    assert_eq!(gw.get(&path).await.status, 404);
}

#[tokio::test]
async fn fake_rate_limit_has_retry_after() {
    let fake = FakeGateway::start().await;
    let gw = Gw::connect(&fake.url, &fake.admin_key).await;
    fake.fail(Fault::once(
        "POST /key/generate",
        FaultKind::TooManyRequests {
            retry_after_secs: 7,
        },
    ));
    let s = secret();
    let r = gw.post("/key/generate", json!({"key": s})).await;
    assert_envelope(&r, 429, "throttling_error");
    assert_eq!(
        r.headers.get("retry-after").and_then(|v| v.to_str().ok()),
        Some("7")
    );
    assert!(
        fake.key_by_hash(&sha(&s)).is_none(),
        "a 429 changes nothing"
    );
    assert_eq!(
        gw.post("/key/generate", json!({"key": s})).await.status,
        200
    );
    assert!(fake.key_by_hash(&sha(&s)).is_some());
}

#[tokio::test]
async fn fake_lose_response_commits_the_write() {
    let fake = FakeGateway::start().await;
    let gw = Gw::connect(&fake.url, &fake.admin_key).await;
    // Warm a pooled connection first: the lost reply must not depend on a fresh connection.
    assert_eq!(gw.get("/team/list").await.status, 200);
    fake.fail(Fault::once("POST /key/generate", FaultKind::LoseResponse));
    let s = secret();
    let lost = gw
        .try_send(
            Some(&fake.admin_key),
            Method::POST,
            "/key/generate",
            Some(&json!({"key": s, "key_alias": uniq("alias")})),
        )
        .await;
    assert!(lost.is_err(), "the reply must be lost");
    // The write was committed: the key exists and works.
    assert!(fake.key_by_hash(&sha(&s)).is_some());
    let info = gw.get(&format!("/key/info?key={}", sha(&s))).await;
    assert_eq!(info.status, 200, "{info}");
    assert_eq!(gw.models_with(&s).await.status, 200);
    assert_eq!(fake.count("POST /key/generate"), 1);
}

#[tokio::test]
async fn fake_latency_and_counters() {
    let fake = FakeGateway::start().await;
    let gw = Gw::connect(&fake.url, &fake.admin_key).await;
    fake.set_latency(Duration::from_millis(100));
    let started = Instant::now();
    assert_eq!(gw.get("/team/list").await.status, 200);
    assert!(started.elapsed() >= Duration::from_millis(100));
    fake.set_latency(Duration::ZERO);
    fake.fail(Fault::once(
        "GET /team/list",
        FaultKind::Latency(Duration::from_millis(150)),
    ));
    let started = Instant::now();
    assert_eq!(gw.get("/team/list").await.status, 200);
    assert!(started.elapsed() >= Duration::from_millis(150));

    fake.reset_counts();
    fake.fail(Fault::once("POST /key/generate", FaultKind::Status(500)));
    gw.post("/key/generate", json!({})).await;
    gw.post("/key/generate", json!({})).await;
    gw.get("/key/list").await;
    gw.send(None, Method::GET, "/health/liveliness", None).await;
    assert_eq!(
        fake.count("POST /key/generate"),
        2,
        "faulted requests are counted"
    );
    assert_eq!(fake.count("GET /key/list"), 1);
    assert_eq!(fake.count("GET /health/liveliness"), 1);
    assert_eq!(fake.writes(), 2);
    assert_eq!(fake.counts().values().sum::<u64>(), 4);
    fake.reset_counts();
    assert_eq!(fake.writes(), 0);
    assert!(fake.counts().is_empty());
}

#[tokio::test]
async fn fake_drift_helpers() {
    let fake = FakeGateway::start().await;
    let gw = Gw::connect(&fake.url, &fake.admin_key).await;
    let team = uniq("team");
    gw.new_team(&team).await;
    assert!(fake.edit_team(&team, |row| {
        row.insert("max_budget".into(), json!(42.0));
    }));
    let info = gw.get(&format!("/team/info?team_id={team}")).await;
    assert_eq!(info.body["team_info"]["max_budget"], json!(42.0));

    let alias = uniq("alias");
    let (s, h) = gw
        .new_key(json!({"team_id": team, "key_alias": alias}))
        .await;
    assert_eq!(fake.keys().len(), 1);
    assert_eq!(
        fake.key_by_hash(&h).map(|k| k["key_alias"].clone()),
        Some(json!(alias))
    );
    fake.delete_key_out_of_band(&h);
    assert!(fake.key_by_hash(&h).is_none());
    assert_envelope(&gw.models_with(&s).await, 401, "token_not_found_in_db");
    let info = gw.get(&format!("/key/info?key={h}")).await;
    assert_eq!(info.body["info"]["status"], json!("deleted"));
    // The alias is free again.
    gw.new_key(json!({"key_alias": alias})).await;
    assert!(fake.user("default_user_id").is_some());
}

#[tokio::test]
async fn fake_stop_refuses_requests() {
    let fake = FakeGateway::start().await;
    let gw = Gw::connect(&fake.url, &fake.admin_key).await;
    assert_eq!(gw.get("/team/list").await.status, 200);
    fake.stop().await;
    let r = gw
        .try_send(Some(&gw.admin), Method::GET, "/team/list", None)
        .await;
    assert!(r.is_err(), "a stopped gateway answers nothing");
}

#[tokio::test]
async fn fake_budget_durations() {
    let fake = FakeGateway::start().await;
    let gw = Gw::connect(&fake.url, &fake.admin_key).await;
    for (duration, ok) in [
        ("1h", true),
        ("24h", true),
        ("7d", true),
        ("1mo", true),
        ("2mo", false),
        ("10x", false),
    ] {
        let r = gw
            .post(
                "/team/new",
                json!({"team_id": uniq("team"), "budget_duration": duration}),
            )
            .await;
        if ok {
            assert_eq!(r.status, 200, "{duration}: {r}");
            assert!(r.body["budget_reset_at"].is_string(), "{duration}: {r}");
        } else {
            assert_envelope(&r, 400, "internal_server_error");
        }
    }
    // "1m" is one minute: a key expires a minute later, "1mo" a month later.
    let r = gw.post("/key/generate", json!({"duration": "1m"})).await;
    let seconds = |field: &str| {
        let t = r.body[field].as_str().unwrap_or_default();
        let part = |range: std::ops::Range<usize>| {
            t.get(range)
                .and_then(|p| p.parse::<i64>().ok())
                .unwrap_or(0)
        };
        part(11..13) * 3600 + part(14..16) * 60 + part(17..19)
    };
    let gap = (seconds("expires") - seconds("created_at")).rem_euclid(86_400);
    assert!((59..=61).contains(&gap), "1m must mean one minute: {r}");
}

#[tokio::test]
async fn fake_scale_lookups_stay_fast() {
    let fake = FakeGateway::start().await;
    let gw = Gw::connect(&fake.url, &fake.admin_key).await;
    let team = uniq("team");
    gw.new_team(&team).await;
    let started = Instant::now();
    let mut hashes = Vec::new();
    for i in 0..300 {
        let (_, h) = gw
            .new_key(json!({"team_id": team, "key_alias": format!("{team}-{i}")}))
            .await;
        hashes.push(h);
    }
    let r = gw
        .get(&format!("/key/list?team_id={team}&size=100&page=3"))
        .await;
    assert_eq!(r.body["total_count"], json!(300));
    assert_eq!(r.body["total_pages"], json!(3));
    assert_eq!(r.body["keys"].as_array().map(Vec::len), Some(100));
    let r = gw.get(&format!("/key/list?key_alias={team}-299")).await;
    assert_eq!(r.body["keys"], json!([hashes[299]]));
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "{:?}",
        started.elapsed()
    );
}
