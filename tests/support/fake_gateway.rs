//! In-memory fake of the gateway's admin API, as LiteLLM 1.108.7 serves it, with fault injection.
//!
//! `FakeGateway::set_release(FakeRelease::V1_98)` makes it serve the differences of LiteLLM 1.98.0 that the operator
//! handles (each seen on the real 1.98.0 by tests/e2e/gateway_contract.rs), so fault and crash tests cover both:
//! - it reports `litellm_version` 1.98.0;
//! - `/key/info` has no `status`, and a deleted key answers 404 (not 200 `status: deleted`);
//! - the auth cache: a key that authenticated keeps authenticating for 60 s after its user is deleted
//!   (`/user/delete`); `/key/delete` and `/team/delete` end it at once;
//! - `/team/member_update` on a non-member answers 200 and changes nothing (1.108.7: 404);
//! - `/key/list` accepts only `status=deleted` (400 otherwise);
//! - `/team/info` lists no `team_memberships` row for `default_user_id`, and `/team/member_add` of a member by an
//!   e-mail in another case lists that user in `updated_users` (the operator reads neither).
//!
//! It follows `gateway-api.md` and, where the real gateway disagrees with that page, the real gateway: the contract
//! tests in `tests/e2e/gateway_contract.rs` run the same checks against both. Every request is handled under one
//! lock, so each call is atomic, like a single database transaction on the real gateway.
//!
//! Faults (`FakeGateway::fail`) are evaluated when a request arrives: `Latency` rules add up, and the first matching
//! `Status`, `TooManyRequests` or `LoseResponse` rule decides the outcome. `LoseResponse` applies the request and then
//! breaks the connection instead of answering.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::extract::connect_info::Connected;
use axum::extract::{ConnectInfo, Query, Request, State as AxState};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::serve::{IncomingStream, Listener};
use rand::Rng;
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

const ADMIN_KEY: &str = "sk-fake-admin";
const ADMIN_USER: &str = "default_user_id";
const VERSION: &str = "1.108.7";
const VERSION_1_98: &str = "1.98.0";
/// How long 1.98.0's auth cache kept a deleted user's key authenticating (observed: about 60 s).
const AUTH_CACHE_TTL_MS: i64 = 60_000;

/// Which LiteLLM release the fake imitates where releases differ.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum FakeRelease {
    /// 1.108.7, the newest tested release.
    #[default]
    Newest,
    /// 1.98.0's differences (see the module comment).
    V1_98,
}
const MIN_KEY_LEN: usize = 16;
const MAX_BODY: usize = 16 << 20;

type Row = Map<String, Value>;
/// An HTTP status and a JSON body.
type Out = (u16, Value);

// ---------------------------------------------------------------------------------------------------------------
// Public API
// ---------------------------------------------------------------------------------------------------------------

/// A running fake gateway on `127.0.0.1:<random port>`. Dropping it stops the server.
pub struct FakeGateway {
    pub url: String,
    pub admin_key: String,
    inner: Arc<Inner>,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

/// A fault rule. `route` is a route template such as `"POST /key/generate"` or `"POST /key/{key}/regenerate"`
/// (a concrete path such as `"POST /key/abc/regenerate"` or a path without method also match); `None` matches every
/// route except `/health/*`. `times: None` keeps the rule until `clear_faults`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fault {
    pub route: Option<String>,
    pub kind: FaultKind,
    pub times: Option<u32>,
    /// Matching requests to let through untouched before the fault starts.
    pub after: u32,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FaultKind {
    /// Answer with this status and an envelope error body, without applying the request.
    Status(u16),
    /// Answer 429 with a `Retry-After` header, without applying the request.
    TooManyRequests { retry_after_secs: u64 },
    /// Apply the request (commit its state change), then close the connection without a response.
    LoseResponse,
    /// Extra latency on matching requests; the request is then handled normally.
    Latency(Duration),
    /// `/key/generate` without the caller's `key`: the gateway makes a key of its own, as a gateway that ignored
    /// the chosen value would, and answers 200 with that key's token.
    IgnoreKeyValue,
}

impl Fault {
    pub fn new(route: Option<&str>, kind: FaultKind, times: Option<u32>) -> Fault {
        Fault {
            route: route.map(str::to_owned),
            kind,
            times,
            after: 0,
        }
    }

    /// Lets the next `n` matching requests through before the fault starts.
    pub fn after(mut self, n: u32) -> Fault {
        self.after = n;
        self
    }

    /// On every matching request until cleared.
    pub fn always(route: &str, kind: FaultKind) -> Fault {
        Fault::new(Some(route), kind, None)
    }

    /// On the next matching request only.
    pub fn once(route: &str, kind: FaultKind) -> Fault {
        Fault::new(Some(route), kind, Some(1))
    }

    /// On the next `n` matching requests.
    pub fn times(route: &str, kind: FaultKind, n: u32) -> Fault {
        Fault::new(Some(route), kind, Some(n))
    }

    /// On every route except `/health/*`, until cleared.
    pub fn everywhere(kind: FaultKind) -> Fault {
        Fault::new(None, kind, None)
    }
}

impl FakeGateway {
    /// Starts a fake with admin key `sk-fake-admin` on a random loopback port.
    pub async fn start() -> FakeGateway {
        let tcp = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("fake gateway: bind 127.0.0.1:0");
        let addr = tcp.local_addr().expect("fake gateway: local address");
        let dead = Arc::new(AtomicBool::new(false));
        let inner = Arc::new(Inner::new(ADMIN_KEY, dead.clone()));
        let app = Router::new().fallback(handle).with_state(inner.clone());
        let (tx, rx) = oneshot::channel::<()>();
        let listener = FakeListener { tcp, dead };
        let task = tokio::spawn(async move {
            let server = axum::serve(listener, app.into_make_service_with_connect_info::<Conn>())
                .with_graceful_shutdown(async move {
                    let _ = rx.await;
                });
            let _ = server.await;
        });
        FakeGateway {
            url: format!("http://{addr}"),
            admin_key: ADMIN_KEY.to_owned(),
            inner,
            shutdown: Some(tx),
            task: Some(task),
        }
    }

    /// Requests received on `route` (a template such as `"POST /key/generate"`), faulted ones included.
    pub fn count(&self, route: &str) -> u64 {
        self.inner.ctl().counts.get(route).copied().unwrap_or(0)
    }

    pub fn counts(&self) -> BTreeMap<String, u64> {
        self.inner.ctl().counts.clone()
    }

    /// All non-GET requests received.
    pub fn writes(&self) -> u64 {
        self.inner.ctl().writes
    }

    /// The bodies of the accepted `/config/update` calls, oldest first.
    pub fn config_updates(&self) -> Vec<Value> {
        self.inner.ctl().config_updates.clone()
    }

    pub fn reset_counts(&self) {
        let mut ctl = self.inner.ctl();
        ctl.counts.clear();
        ctl.writes = 0;
    }

    /// Latency added to every request (health checks included).
    pub fn set_latency(&self, d: Duration) {
        self.inner.ctl().latency = d;
    }

    pub fn fail(&self, f: Fault) {
        self.inner.ctl().faults.push(f);
    }

    pub fn clear_faults(&self) {
        self.inner.ctl().faults.clear();
    }

    /// Imitates `release` where LiteLLM releases differ (the newest tested one by default).
    pub fn set_release(&self, release: FakeRelease) {
        self.inner.state().release = release;
    }

    /// The `litellm_version` `/health/readiness/details` reports, whatever the release imitated; `None` leaves the
    /// field out, as a gateway that does not say.
    pub fn set_reported_version(&self, version: Option<&str>) {
        self.inner.state().reported_version = Some(version.map(str::to_owned));
    }

    /// On by default. Off, both regenerate routes answer 500 "Enterprise feature" like open-source LiteLLM.
    pub fn set_regenerate_enabled(&self, on: bool) {
        self.inner.ctl().regenerate_enabled = on;
    }

    /// Off by default, like an unlicensed LiteLLM: `/team/member_add` and `/team/member_update` refuse
    /// `role:"admin"` with 400. (`/team/new` accepts admin members either way, as the real gateway does.)
    pub fn set_team_admins_enabled(&self, on: bool) {
        self.inner.ctl().team_admins_enabled = on;
    }

    /// The team row (without `keys` and `team_memberships`).
    pub fn team(&self, team_id: &str) -> Option<Value> {
        let st = self.inner.state();
        st.teams.get(team_id).map(|t| Value::Object(t.row.clone()))
    }

    /// The team's membership rows (`user_id`, `team_id`, `budget_id`, `spend`, ...).
    pub fn team_memberships(&self, team_id: &str) -> Vec<Value> {
        let st = self.inner.state();
        st.teams
            .get(team_id)
            .map(|t| t.memberships.iter().cloned().map(Value::Object).collect())
            .unwrap_or_default()
    }

    /// The live key row, including `token`.
    pub fn key_by_hash(&self, hash: &str) -> Option<Value> {
        let st = self.inner.state();
        st.keys.get(hash).map(|k| Value::Object(k.row.clone()))
    }

    /// All live key rows, oldest first.
    pub fn keys(&self) -> Vec<Value> {
        let st = self.inner.state();
        let mut keys: Vec<&Key> = st.keys.values().collect();
        keys.sort_by_key(|k| k.seq);
        keys.into_iter()
            .map(|k| Value::Object(k.row.clone()))
            .collect()
    }

    /// Archived (deleted) key rows, oldest deletion first.
    pub fn deleted_keys(&self) -> Vec<Value> {
        let st = self.inner.state();
        st.archive.iter().cloned().map(Value::Object).collect()
    }

    pub fn user(&self, user_id: &str) -> Option<Value> {
        let st = self.inner.state();
        st.users.get(user_id).map(|u| Value::Object(u.row.clone()))
    }

    /// Edits a team row in place, as someone using the gateway's UI would. Returns false if the team is missing.
    pub fn edit_team(&self, team_id: &str, f: impl FnOnce(&mut Map<String, Value>)) -> bool {
        let mut st = self.inner.state();
        match st.teams.get_mut(team_id) {
            Some(t) => {
                f(&mut t.row);
                true
            }
            None => false,
        }
    }

    /// Edits a live key row in place (alias, team and user indexes follow). Returns false if the key is missing.
    pub fn edit_key(&self, hash: &str, f: impl FnOnce(&mut Map<String, Value>)) -> bool {
        let mut st = self.inner.state();
        match st.remove_key(hash) {
            Some(mut k) => {
                f(&mut k.row);
                k.row.insert("token".into(), json!(hash));
                st.insert_key(k);
                true
            }
            None => false,
        }
    }

    /// Edits a user row in place. Returns false if the user is missing.
    pub fn edit_user(&self, user_id: &str, f: impl FnOnce(&mut Map<String, Value>)) -> bool {
        let mut st = self.inner.state();
        match st.users.get_mut(user_id) {
            Some(u) => {
                f(&mut u.row);
                true
            }
            None => false,
        }
    }

    /// Deletes a key behind the operator's back, as `/key/delete` from elsewhere would (the row is archived).
    pub fn delete_key_out_of_band(&self, hash: &str) {
        let mut st = self.inner.state();
        if let Some(k) = st.remove_key(hash) {
            let now = now_ms();
            st.archive_key(k, now);
        }
    }

    /// Stops the server: new connections are refused and open ones are closed.
    pub async fn stop(mut self) {
        self.inner.dead.store(true, Ordering::SeqCst);
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(mut task) = self.task.take()
            && tokio::time::timeout(Duration::from_secs(2), &mut task)
                .await
                .is_err()
        {
            task.abort();
        }
    }
}

impl Drop for FakeGateway {
    fn drop(&mut self) {
        self.inner.dead.store(true, Ordering::SeqCst);
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Transport: a listener whose connections can be broken on purpose (LoseResponse, stop)
// ---------------------------------------------------------------------------------------------------------------

struct FakeListener {
    tcp: TcpListener,
    dead: Arc<AtomicBool>,
}

/// Per-connection handle, given to the handler as connect info.
#[derive(Clone, Debug)]
struct Conn {
    kill: Arc<AtomicBool>,
}

impl Listener for FakeListener {
    type Io = BreakableStream;
    type Addr = Conn;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            match self.tcp.accept().await {
                Ok((stream, _)) => {
                    let _ = stream.set_nodelay(true);
                    let kill = Arc::new(AtomicBool::new(false));
                    let io = BreakableStream {
                        inner: stream,
                        kill: kill.clone(),
                        dead: self.dead.clone(),
                    };
                    return (io, Conn { kill });
                }
                // Out of file descriptors and the like: back off instead of spinning.
                Err(_) => tokio::time::sleep(Duration::from_millis(5)).await,
            }
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.tcp.local_addr().map(|_| Conn {
            kill: Arc::new(AtomicBool::new(false)),
        })
    }
}

impl Connected<IncomingStream<'_, FakeListener>> for Conn {
    fn connect_info(stream: IncomingStream<'_, FakeListener>) -> Self {
        stream.remote_addr().clone()
    }
}

/// A TCP stream that fails every read and write once its connection is killed or the server stopped, so hyper
/// drops the connection without writing a response.
struct BreakableStream {
    inner: TcpStream,
    kill: Arc<AtomicBool>,
    dead: Arc<AtomicBool>,
}

impl BreakableStream {
    fn broken(&self) -> bool {
        self.kill.load(Ordering::SeqCst) || self.dead.load(Ordering::SeqCst)
    }
}

fn broken_pipe() -> io::Error {
    io::Error::new(
        io::ErrorKind::BrokenPipe,
        "fake gateway: connection dropped",
    )
}

impl AsyncRead for BreakableStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.broken() {
            return Poll::Ready(Err(broken_pipe()));
        }
        Pin::new(&mut this.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for BreakableStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.broken() {
            return Poll::Ready(Err(broken_pipe()));
        }
        Pin::new(&mut this.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.broken() {
            return Poll::Ready(Err(broken_pipe()));
        }
        Pin::new(&mut this.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.broken() {
            return Poll::Ready(Err(broken_pipe()));
        }
        Pin::new(&mut this.inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Request pipeline: count, fault, delay, authenticate, dispatch
// ---------------------------------------------------------------------------------------------------------------

struct Control {
    counts: BTreeMap<String, u64>,
    writes: u64,
    latency: Duration,
    faults: Vec<Fault>,
    regenerate_enabled: bool,
    team_admins_enabled: bool,
    /// Accepted `/config/update` bodies, oldest first.
    config_updates: Vec<Value>,
}

struct Inner {
    admin_key: String,
    dead: Arc<AtomicBool>,
    ctl: Mutex<Control>,
    state: Mutex<State>,
}

impl Inner {
    fn new(admin_key: &str, dead: Arc<AtomicBool>) -> Inner {
        Inner {
            admin_key: admin_key.to_owned(),
            dead,
            ctl: Mutex::new(Control {
                counts: BTreeMap::new(),
                writes: 0,
                latency: Duration::ZERO,
                faults: Vec::new(),
                regenerate_enabled: true,
                team_admins_enabled: false,
                config_updates: Vec::new(),
            }),
            state: Mutex::new(State::new(now_ms())),
        }
    }

    fn ctl(&self) -> MutexGuard<'_, Control> {
        self.ctl.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Counts the request and picks the faults that apply to it. Alias look-ups are also counted on their own, as
    /// `GET /key/list?key_alias`, apart from the operator's unfiltered listings.
    fn admit(&self, route: &Route, query: Option<&str>) -> (Duration, Option<FaultKind>) {
        let mut ctl = self.ctl();
        *ctl.counts.entry(route.template.clone()).or_insert(0) += 1;
        if route.kind == Kind::KeyList
            && query.is_some_and(|q| q.split('&').any(|p| p.starts_with("key_alias=")))
        {
            *ctl.counts
                .entry("GET /key/list?key_alias".into())
                .or_insert(0) += 1;
        }
        if route.method != Method::GET {
            ctl.writes += 1;
        }
        let mut delay = ctl.latency;
        let mut terminal = None;
        for f in ctl.faults.iter_mut() {
            if !route.matches(f.route.as_deref()) {
                continue;
            }
            if f.after > 0 {
                f.after -= 1;
                continue;
            }
            match &f.kind {
                FaultKind::Latency(d) => delay += *d,
                kind if terminal.is_none() => terminal = Some(kind.clone()),
                _ => continue,
            }
            if let Some(n) = f.times.as_mut() {
                *n = n.saturating_sub(1);
            }
        }
        ctl.faults.retain(|f| f.times != Some(0));
        (delay, terminal)
    }

    fn serve(
        &self,
        route: &Route,
        headers: &HeaderMap,
        query: &HashMap<String, String>,
        body: &[u8],
    ) -> Out {
        let caller = Caller::from_headers(headers, &self.admin_key);
        match route.kind {
            Kind::Liveliness => return (200, json!("I'm alive!")),
            Kind::Readiness => return (200, json!({"status": "healthy", "db": "connected"})),
            Kind::NotFound => return (404, json!({"detail": "Not Found"})),
            Kind::MethodNotAllowed => return (405, json!({"detail": "Method Not Allowed"})),
            Kind::Models => return self.state().models(&caller, now_ms()),
            _ => {}
        }
        if let Some(denied) = self.state().authorize_admin(&caller, &route.path) {
            return denied;
        }
        let (regenerate_enabled, team_admins) = {
            let ctl = self.ctl();
            (ctl.regenerate_enabled, ctl.team_admins_enabled)
        };
        let now = now_ms();
        let mut st = self.state();
        let parsed = || parse_body(body);
        let version = match (&st.reported_version, st.release) {
            (Some(v), _) => v.clone(),
            (None, FakeRelease::Newest) => Some(VERSION.to_owned()),
            (None, FakeRelease::V1_98) => Some(VERSION_1_98.to_owned()),
        };
        let result = match route.kind {
            Kind::ReadinessDetails => {
                let mut details = json!({"status": "healthy", "db": "connected", "cache": null});
                if let Some(v) = version {
                    details["litellm_version"] = json!(v);
                }
                Ok((200, details))
            }
            Kind::TeamNew => parsed().and_then(|b| st.team_new(b, now)),
            Kind::TeamInfo => st.team_info(query),
            Kind::TeamUpdate => parsed().and_then(|b| st.team_update(b, now)),
            Kind::TeamDelete => parsed().and_then(|b| st.team_delete(b, now)),
            Kind::TeamList => Ok(st.team_list()),
            Kind::TeamListV2 => st.team_list_v2(query),
            Kind::TeamDailyActivity => st.team_daily_activity(query),
            Kind::MemberAdd => parsed().and_then(|b| st.member_add(b, team_admins, now)),
            Kind::MemberDelete => parsed().and_then(|b| st.member_delete(b, now)),
            Kind::MemberUpdate => parsed().and_then(|b| st.member_update(b, team_admins, now)),
            Kind::KeyGenerate => parsed().and_then(|b| st.key_generate(b, now)),
            Kind::KeyInfo => Ok(st.key_info(query, now)),
            Kind::KeyUpdate => parsed().and_then(|b| st.key_update(b, now)),
            Kind::KeyDelete => parsed().and_then(|b| st.key_delete(b, now)),
            Kind::KeyList => st.key_list(query, now),
            Kind::KeyRegenerate => parsed().and_then(|b| {
                st.key_regenerate(route.param.as_deref(), b, regenerate_enabled, now)
            }),
            Kind::UserNew => parsed().and_then(|b| st.user_new(b, now)),
            Kind::UserInfo => st.user_info(query),
            Kind::UserInfoV2 => st.user_info_v2(query),
            Kind::UserUpdate => parsed().and_then(|b| st.user_update(b, now)),
            Kind::UserDelete => parsed().and_then(|b| st.user_delete(b)),
            Kind::ConfigUpdate => parsed().and_then(|b| {
                let out = config_update(&b)?;
                self.ctl().config_updates.push(Value::Object(b));
                Ok(out)
            }),
            // Answered before authentication.
            Kind::Liveliness
            | Kind::Readiness
            | Kind::NotFound
            | Kind::MethodNotAllowed
            | Kind::Models => Err(envelope(
                500,
                "fake gateway: unrouted",
                "internal_server_error",
                Value::Null,
            )),
        };
        result.unwrap_or_else(|e| e)
    }
}

async fn handle(
    AxState(inner): AxState<Arc<Inner>>,
    ConnectInfo(conn): ConnectInfo<Conn>,
    req: Request,
) -> Response {
    let (parts, body) = req.into_parts();
    let route = Route::classify(&parts.method, parts.uri.path());
    let (delay, fault) = inner.admit(&route, parts.uri.query());
    let bytes = match axum::body::to_bytes(body, MAX_BODY).await {
        Ok(b) => b,
        Err(_) => return respond((400, json!({"detail": "could not read the request body"}))),
    };
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    match fault {
        Some(FaultKind::Status(code)) => {
            let msg = format!("fake gateway: injected fault (HTTP {code})");
            return respond(envelope(code, &msg, "internal_server_error", Value::Null));
        }
        Some(FaultKind::TooManyRequests { retry_after_secs }) => {
            let mut resp = respond(envelope(
                429,
                "fake gateway: injected rate limit",
                "throttling_error",
                Value::Null,
            ));
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(retry_after_secs));
            return resp;
        }
        _ => {}
    }
    let query: HashMap<String, String> = Query::<Vec<(String, String)>>::try_from_uri(&parts.uri)
        .map(|Query(pairs)| pairs.into_iter().collect())
        .unwrap_or_default();
    let bytes = match fault {
        Some(FaultKind::IgnoreKeyValue) => without_key(&bytes),
        _ => bytes,
    };
    let out = inner.serve(&route, &parts.headers, &query, &bytes);
    if fault == Some(FaultKind::LoseResponse) {
        // The state change is committed; now break the connection so the reply never arrives.
        conn.kill.store(true, Ordering::SeqCst);
    }
    respond(out)
}

/// The JSON body without its `key` field.
fn without_key(bytes: &axum::body::Bytes) -> axum::body::Bytes {
    match serde_json::from_slice::<Value>(bytes) {
        Ok(Value::Object(mut body)) => {
            body.remove("key");
            axum::body::Bytes::from(Value::Object(body).to_string())
        }
        _ => bytes.clone(),
    }
}

fn models_list(models: &[Value]) -> Out {
    let data: Vec<Value> = models
        .iter()
        .filter_map(Value::as_str)
        .map(
            |m| json!({"id": m, "object": "model", "created": 1_677_610_602, "owned_by": "openai"}),
        )
        .collect();
    (200, json!({"data": data, "object": "list"}))
}

fn respond((status, body): Out) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (status, axum::Json(body)).into_response()
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kind {
    Liveliness,
    Readiness,
    ReadinessDetails,
    TeamNew,
    TeamInfo,
    TeamUpdate,
    TeamDelete,
    TeamList,
    TeamListV2,
    TeamDailyActivity,
    MemberAdd,
    MemberDelete,
    MemberUpdate,
    KeyGenerate,
    KeyInfo,
    KeyUpdate,
    KeyDelete,
    KeyList,
    KeyRegenerate,
    UserNew,
    UserInfo,
    UserInfoV2,
    UserUpdate,
    UserDelete,
    ConfigUpdate,
    Models,
    NotFound,
    MethodNotAllowed,
}

const ROUTES: &[(&str, &str, Kind)] = &[
    ("GET", "/health/liveliness", Kind::Liveliness),
    ("GET", "/health/liveness", Kind::Liveliness),
    ("GET", "/health/readiness", Kind::Readiness),
    ("GET", "/health/readiness/details", Kind::ReadinessDetails),
    ("POST", "/team/new", Kind::TeamNew),
    ("GET", "/team/info", Kind::TeamInfo),
    ("POST", "/team/update", Kind::TeamUpdate),
    ("POST", "/team/delete", Kind::TeamDelete),
    ("GET", "/team/list", Kind::TeamList),
    ("GET", "/v2/team/list", Kind::TeamListV2),
    ("GET", "/team/daily/activity", Kind::TeamDailyActivity),
    ("POST", "/team/member_add", Kind::MemberAdd),
    ("POST", "/team/member_delete", Kind::MemberDelete),
    ("POST", "/team/member_update", Kind::MemberUpdate),
    ("POST", "/key/generate", Kind::KeyGenerate),
    ("GET", "/key/info", Kind::KeyInfo),
    ("POST", "/key/update", Kind::KeyUpdate),
    ("POST", "/key/delete", Kind::KeyDelete),
    ("GET", "/key/list", Kind::KeyList),
    ("POST", "/key/regenerate", Kind::KeyRegenerate),
    ("POST", "/user/new", Kind::UserNew),
    ("GET", "/user/info", Kind::UserInfo),
    ("GET", "/v2/user/info", Kind::UserInfoV2),
    ("POST", "/user/update", Kind::UserUpdate),
    ("POST", "/user/delete", Kind::UserDelete),
    ("POST", "/config/update", Kind::ConfigUpdate),
    ("GET", "/v1/models", Kind::Models),
    ("GET", "/models", Kind::Models),
];

struct Route {
    method: Method,
    path: String,
    template: String,
    kind: Kind,
    param: Option<String>,
}

impl Route {
    fn classify(method: &Method, path: &str) -> Route {
        let m = method.as_str();
        let mut route = Route {
            method: method.clone(),
            path: path.to_owned(),
            template: format!("{m} {path}"),
            kind: Kind::NotFound,
            param: None,
        };
        let known: Vec<&(&str, &str, Kind)> =
            ROUTES.iter().filter(|(_, p, _)| *p == path).collect();
        if let Some((rm, p, kind)) = known.iter().find(|(rm, _, _)| *rm == m) {
            route.template = format!("{rm} {p}");
            route.kind = *kind;
        } else if !known.is_empty() {
            route.kind = Kind::MethodNotAllowed;
        } else if let Some(key) = path
            .strip_prefix("/key/")
            .and_then(|rest| rest.strip_suffix("/regenerate"))
            .filter(|k| !k.is_empty() && !k.contains('/'))
        {
            if m == "POST" {
                route.template = "POST /key/{key}/regenerate".to_owned();
                route.kind = Kind::KeyRegenerate;
                route.param = Some(key.to_owned());
            } else {
                route.kind = Kind::MethodNotAllowed;
            }
        }
        route
    }

    fn is_health(&self) -> bool {
        self.path.starts_with("/health/") || self.path == "/health"
    }

    fn matches(&self, rule: Option<&str>) -> bool {
        let Some(rule) = rule else {
            return !self.is_health();
        };
        if rule == self.template || rule == format!("{} {}", self.method, self.path) {
            return true;
        }
        // A rule without a method matches the path template or the concrete path.
        !rule.contains(' ')
            && (self.template.split_once(' ').map(|(_, p)| p) == Some(rule) || rule == self.path)
    }
}

enum Caller {
    Admin,
    Virtual(String),
    Missing,
    Malformed,
}

impl Caller {
    fn from_headers(headers: &HeaderMap, admin_key: &str) -> Caller {
        let token = if let Some(v) = headers.get(header::AUTHORIZATION) {
            let Ok(v) = v.to_str() else {
                return Caller::Malformed;
            };
            match v.trim().strip_prefix("Bearer ") {
                Some(t) => t.trim().to_owned(),
                None => return Caller::Malformed,
            }
        } else if let Some(v) = headers.get("x-litellm-api-key") {
            let Ok(v) = v.to_str() else {
                return Caller::Malformed;
            };
            let v = v.trim();
            v.strip_prefix("Bearer ").unwrap_or(v).trim().to_owned()
        } else {
            return Caller::Missing;
        };
        if token.is_empty() {
            Caller::Missing
        } else if token == admin_key {
            Caller::Admin
        } else {
            Caller::Virtual(token)
        }
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Error bodies
// ---------------------------------------------------------------------------------------------------------------

/// The gateway's envelope: `{"error":{"message","type","param","code":"<status as string>"}}`.
fn envelope(status: u16, message: &str, kind: &str, param: Value) -> Out {
    (
        status,
        json!({"error": {"message": message, "type": kind, "param": param, "code": status.to_string()}}),
    )
}

/// `{"detail":{"error":"..."}}`.
fn bare(status: u16, message: &str) -> Out {
    (status, json!({"detail": {"error": message}}))
}

/// A Python `repr()` of a string, as the gateway prints dicts into `message`.
fn py_str(s: &str) -> String {
    let escaped = s.replace('\\', "\\\\").replace('\n', "\\n");
    if s.contains('\'') && !s.contains('"') {
        format!("\"{escaped}\"")
    } else {
        format!("'{}'", escaped.replace('\'', "\\'"))
    }
}

/// `{'error': '...'}`: a structured error as the gateway renders it into `message`.
fn py_err(message: &str) -> String {
    format!("{{'error': {}}}", py_str(message))
}

/// Python's `repr(float)` for the values a budget takes.
fn py_float(f: f64) -> String {
    if f.is_finite() && f.fract() == 0.0 && f.abs() < 1e16 {
        format!("{f:.1}")
    } else {
        format!("{f}")
    }
}

fn verr(kind: &str, loc: Vec<Value>, msg: &str) -> Value {
    json!({"type": kind, "loc": loc, "msg": msg})
}

fn unprocessable(errors: Vec<Value>) -> Out {
    (422, json!({"detail": errors}))
}

// ---------------------------------------------------------------------------------------------------------------
// Request validation, after FastAPI/pydantic (lax mode: numeric strings are numbers)
// ---------------------------------------------------------------------------------------------------------------

#[derive(Clone, Copy)]
enum Ty {
    Str,
    Float,
    Int,
    Bool,
    StrList,
    List,
    Dict,
    /// Allowed values, pydantic error type, message.
    Choice(&'static [&'static str], &'static str, &'static str),
}

const KEY_TYPE: Ty = Ty::Choice(
    &["llm_api", "management", "read_only", "default"],
    "enum",
    "Input should be 'llm_api', 'management', 'read_only' or 'default'",
);
const USER_ROLE: Ty = Ty::Choice(
    &[
        "proxy_admin",
        "proxy_admin_viewer",
        "internal_user",
        "internal_user_viewer",
    ],
    "literal_error",
    "Input should be <LitellmUserRoles.PROXY_ADMIN: 'proxy_admin'>, <LitellmUserRoles.PROXY_ADMIN_VIEW_ONLY: \
     'proxy_admin_viewer'>, <LitellmUserRoles.INTERNAL_USER: 'internal_user'> or \
     <LitellmUserRoles.INTERNAL_USER_VIEW_ONLY: 'internal_user_viewer'>",
);
const TEAM_ROLE: Ty = Ty::Choice(
    &["admin", "user"],
    "literal_error",
    "Input should be 'admin' or 'user'",
);

/// (field, type, required)
type Spec = [(&'static str, Ty, bool)];

const TEAM_FIELDS: &Spec = &[
    ("team_id", Ty::Str, false),
    ("team_alias", Ty::Str, false),
    ("organization_id", Ty::Str, false),
    ("models", Ty::StrList, false),
    ("max_budget", Ty::Float, false),
    ("soft_budget", Ty::Float, false),
    ("budget_duration", Ty::Str, false),
    ("tpm_limit", Ty::Int, false),
    ("rpm_limit", Ty::Int, false),
    ("max_parallel_requests", Ty::Int, false),
    ("metadata", Ty::Dict, false),
    ("blocked", Ty::Bool, false),
    ("members_with_roles", Ty::List, false),
];

const KEY_FIELDS: &Spec = &[
    ("key", Ty::Str, false),
    ("key_alias", Ty::Str, false),
    ("team_id", Ty::Str, false),
    ("user_id", Ty::Str, false),
    ("models", Ty::StrList, false),
    ("max_budget", Ty::Float, false),
    ("soft_budget", Ty::Float, false),
    ("duration", Ty::Str, false),
    ("budget_duration", Ty::Str, false),
    ("metadata", Ty::Dict, false),
    ("key_type", KEY_TYPE, false),
    ("tpm_limit", Ty::Int, false),
    ("rpm_limit", Ty::Int, false),
    ("max_parallel_requests", Ty::Int, false),
    ("blocked", Ty::Bool, false),
    ("allowed_routes", Ty::List, false),
    ("new_key", Ty::Str, false),
    ("grace_period", Ty::Str, false),
];

const USER_FIELDS: &Spec = &[
    ("user_id", Ty::Str, false),
    ("user_email", Ty::Str, false),
    ("user_alias", Ty::Str, false),
    ("user_role", USER_ROLE, false),
    ("max_budget", Ty::Float, false),
    ("budget_duration", Ty::Str, false),
    ("models", Ty::StrList, false),
    ("tpm_limit", Ty::Int, false),
    ("rpm_limit", Ty::Int, false),
    ("metadata", Ty::Dict, false),
    ("teams", Ty::List, false),
    ("auto_create_key", Ty::Bool, false),
    ("send_invite_email", Ty::Bool, false),
];

fn parse_body(bytes: &[u8]) -> Result<Row, Out> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(Map::new());
    }
    match serde_json::from_slice::<Value>(bytes) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(_) => Err(unprocessable(vec![verr(
            "model_attributes_type",
            vec![json!("body")],
            "Input should be a valid dictionary or object to extract fields from",
        )])),
        Err(_) => Err(unprocessable(vec![verr(
            "json_invalid",
            vec![json!("body"), json!(0)],
            "JSON decode error",
        )])),
    }
}

fn validate(body: &mut Row, spec: &Spec) -> Result<(), Out> {
    let mut errors = Vec::new();
    for (name, ty, required) in spec {
        let loc = vec![json!("body"), json!(name)];
        match body.get_mut(*name) {
            None => {
                if *required {
                    errors.push(verr("missing", loc, "Field required"));
                }
            }
            Some(Value::Null) if !*required => {}
            Some(v) => coerce(v, *ty, loc, &mut errors),
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(unprocessable(errors))
    }
}

fn coerce(v: &mut Value, ty: Ty, loc: Vec<Value>, errors: &mut Vec<Value>) {
    match ty {
        Ty::Str => {
            if !v.is_string() {
                errors.push(verr("string_type", loc, "Input should be a valid string"));
            }
        }
        Ty::Float => {
            let f = match v {
                Value::Number(n) => n.as_f64(),
                Value::Bool(b) => Some(if *b { 1.0 } else { 0.0 }),
                Value::String(s) => match s.trim().parse::<f64>() {
                    Ok(f) => Some(f),
                    Err(_) => {
                        errors.push(verr(
                            "float_parsing",
                            loc,
                            "Input should be a valid number, unable to parse string as a number",
                        ));
                        return;
                    }
                },
                _ => None,
            };
            match f {
                Some(f) => *v = json!(f),
                None => errors.push(verr("float_type", loc, "Input should be a valid number")),
            }
        }
        Ty::Int => {
            let i = match v {
                Value::Number(n) => n.as_i64().or_else(|| {
                    n.as_f64()
                        .filter(|f| f.fract() == 0.0 && f.abs() < 9e15)
                        .map(|f| f as i64)
                }),
                Value::String(s) => s.trim().parse::<i64>().ok(),
                Value::Bool(b) => Some(i64::from(*b)),
                _ => None,
            };
            match i {
                Some(i) => *v = json!(i),
                None => errors.push(verr("int_parsing", loc, "Input should be a valid integer")),
            }
        }
        Ty::Bool => {
            let b = match v {
                Value::Bool(b) => Some(*b),
                Value::Number(n) => match n.as_i64() {
                    Some(0) => Some(false),
                    Some(1) => Some(true),
                    _ => None,
                },
                Value::String(s) => match s.trim().to_ascii_lowercase().as_str() {
                    "true" | "1" | "yes" | "on" | "t" | "y" => Some(true),
                    "false" | "0" | "no" | "off" | "f" | "n" => Some(false),
                    _ => None,
                },
                _ => None,
            };
            match b {
                Some(b) => *v = json!(b),
                None => errors.push(verr(
                    "bool_parsing",
                    loc,
                    "Input should be a valid boolean, unable to interpret input",
                )),
            }
        }
        Ty::StrList => match v {
            Value::Array(items) => {
                for (i, item) in items.iter().enumerate() {
                    if !item.is_string() {
                        let mut loc = loc.clone();
                        loc.push(json!(i));
                        errors.push(verr("string_type", loc, "Input should be a valid string"));
                    }
                }
            }
            _ => errors.push(verr("list_type", loc, "Input should be a valid list")),
        },
        Ty::List => {
            if !v.is_array() {
                errors.push(verr("list_type", loc, "Input should be a valid list"));
            }
        }
        Ty::Dict => {
            if !v.is_object() {
                errors.push(verr("dict_type", loc, "Input should be a valid dictionary"));
            }
        }
        Ty::Choice(allowed, kind, msg) => {
            if !v.as_str().is_some_and(|s| allowed.contains(&s)) {
                errors.push(verr(kind, loc, msg));
            }
        }
    }
}

/// A team member as `/team/new` (`members_with_roles[i]`) and `/team/member_add` (`member`) take it.
struct Member {
    role: String,
    user_id: Option<String>,
    user_email: Option<String>,
}

fn parse_members(v: &Value, field: &str) -> Result<Vec<Member>, Out> {
    let items: Vec<&Value> = match v {
        Value::Array(items) => items.iter().collect(),
        other => vec![other],
    };
    let mut members = Vec::new();
    let mut errors = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let mut loc = vec![json!("body"), json!(field)];
        if v.is_array() {
            loc.push(json!(i));
        }
        let Some(m) = item.as_object() else {
            errors.push(verr(
                "model_type",
                loc,
                "Input should be a valid dictionary or instance of Member",
            ));
            continue;
        };
        let mut m = m.clone();
        let mut errs = Vec::new();
        for (name, ty, required) in [
            ("role", TEAM_ROLE, true),
            ("user_id", Ty::Str, false),
            ("user_email", Ty::Str, false),
        ] {
            let mut l = loc.clone();
            l.push(json!(name));
            match m.get_mut(name) {
                None if required => errs.push(verr("missing", l, "Field required")),
                None | Some(Value::Null) if !required => {}
                Some(v) => coerce(v, ty, l, &mut errs),
                None => {}
            }
        }
        if errs.is_empty() && str_of(&m, "user_id").is_none() && str_of(&m, "user_email").is_none()
        {
            errs.push(verr(
                "value_error",
                vec![json!("body")],
                "Value error, Either user id or user email must be provided",
            ));
        }
        if errs.is_empty() {
            members.push(Member {
                role: str_of(&m, "role").unwrap_or("user").to_owned(),
                user_id: str_of(&m, "user_id").map(str::to_owned),
                user_email: str_of(&m, "user_email").map(str::to_owned),
            });
        }
        errors.extend(errs);
    }
    if errors.is_empty() {
        Ok(members)
    } else {
        Err(unprocessable(errors))
    }
}

fn str_of<'a>(m: &'a Row, k: &str) -> Option<&'a str> {
    m.get(k).and_then(Value::as_str)
}

fn f64_of(m: &Row, k: &str) -> Option<f64> {
    m.get(k).and_then(Value::as_f64)
}

fn opt(v: Option<&str>) -> Value {
    v.map_or(Value::Null, |s| json!(s))
}

fn present(m: &Row, k: &str) -> bool {
    m.contains_key(k)
}

// ---------------------------------------------------------------------------------------------------------------
// State
// ---------------------------------------------------------------------------------------------------------------

struct Team {
    seq: u64,
    row: Row,
    memberships: Vec<Row>,
}

struct User {
    row: Row,
}

struct Key {
    seq: u64,
    row: Row,
}

struct State {
    seq: u64,
    teams: HashMap<String, Team>,
    users: HashMap<String, User>,
    /// Lower-cased email → user_id.
    emails: HashMap<String, String>,
    /// Live keys by token (sha256 of the secret).
    keys: HashMap<String, Key>,
    /// key_alias → token, live keys only.
    aliases: HashMap<String, String>,
    /// (created_at, token) of live keys: `/key/list`'s order (read backwards).
    order: BTreeSet<(String, String)>,
    team_keys: HashMap<String, BTreeSet<String>>,
    user_keys: HashMap<String, BTreeSet<String>>,
    /// Deleted keys (LiteLLM_DeletedVerificationToken), in deletion order.
    archive: Vec<Row>,
    /// token → indexes into `archive`.
    archived: HashMap<String, Vec<usize>>,
    release: FakeRelease,
    /// Set by `set_reported_version`: overrides the release's own version in `/health/readiness/details`.
    reported_version: Option<Option<String>>,
    /// 1.98.0 only: keys that authenticated, by token → (the key's row, when the cache entry expires).
    auth_cache: HashMap<String, (Row, i64)>,
}

/// An update's plain fields, as LiteLLM's team and key update handlers copy them: absent fields are kept, `null` is
/// ignored for the fields in `null_kept` and stored for the others; a `budget_duration` also restarts the window.
fn apply_update(
    row: &mut Row,
    body: &Row,
    fields: &[&str],
    null_kept: &[&str],
    reset: Option<i64>,
) {
    for &field in fields {
        match body.get(field) {
            None => {}
            Some(Value::Null) if null_kept.contains(&field) => {}
            Some(v) => {
                row.insert(field.into(), v.clone());
            }
        }
    }
    if let Some(d) = body.get("budget_duration") {
        row.insert("budget_duration".into(), d.clone());
        row.insert("budget_reset_at".into(), ts_or_null(reset));
    }
}

/// The team membership endpoints' answer for an unknown team.
fn no_team(team_id: &str) -> Out {
    bare(400, &format!("Team id={team_id} does not exist in db"))
}

fn check_budget(body: &Row, field: &str) -> Result<(), Out> {
    match f64_of(body, field) {
        Some(b) if !(b.is_finite() && b >= 0.0) => Err(envelope(
            400,
            &py_err(&format!(
                "{field} must be a non-negative finite number. Received: {}",
                py_float(b)
            )),
            "internal_server_error",
            Value::Null,
        )),
        _ => Ok(()),
    }
}

/// `budget_reset_at` for a `budget_duration`, or the gateway's 400 when the duration is unusable.
fn reset_for(body: &Row, now: i64) -> Result<Option<i64>, Out> {
    match str_of(body, "budget_duration") {
        None => Ok(None),
        Some(d) => match budget_reset_at(now, d) {
            Some(t) => Ok(Some(t)),
            None => Err(envelope(
                400,
                &py_err(&format!(
                    "Invalid budget_duration '{d}'. Use a format like '1h', '24h', '7d', or '30d'."
                )),
                "internal_server_error",
                Value::Null,
            )),
        },
    }
}

fn ts_or_null(ms: Option<i64>) -> Value {
    ms.map_or(Value::Null, |t| json!(fmt_ts(t)))
}

fn allowed_routes(key_type: &str) -> Value {
    match key_type {
        "llm_api" => json!(["llm_api_routes"]),
        "management" => json!(["management_routes"]),
        "read_only" => json!(["info_routes"]),
        _ => json!([]),
    }
}

fn key_name(secret: &str) -> String {
    let tail: String = secret
        .chars()
        .rev()
        .take(4)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    format!("sk-...{tail}")
}

/// Checks a caller-chosen secret the way `/key/generate` does.
fn check_secret(secret: &str) -> Result<(), Out> {
    if !secret.starts_with("sk-") {
        let masked = if secret.chars().count() > 8 {
            let head: String = secret.chars().take(4).collect();
            let tail: String = secret
                .chars()
                .rev()
                .take(4)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect();
            format!("{head}****{tail}")
        } else {
            "****".to_owned()
        };
        return Err(envelope(
            400,
            &py_err(&format!(
                "Invalid key format. LiteLLM Virtual Key must start with 'sk-'. Received: {masked}"
            )),
            "internal_server_error",
            Value::Null,
        ));
    }
    if secret.chars().count() < MIN_KEY_LEN {
        return Err(envelope(
            400,
            &py_err(&format!(
                "Invalid key format. LiteLLM Virtual Key must be at least {MIN_KEY_LEN} characters long."
            )),
            "internal_server_error",
            Value::Null,
        ));
    }
    Ok(())
}

fn alias_taken(alias: &str) -> Out {
    envelope(
        400,
        &format!(
            "Key with alias '{alias}' already exists. Unique key aliases across all keys are required."
        ),
        "bad_request_error",
        json!("key_alias"),
    )
}

fn expires_for(duration: &str, now: i64) -> Result<i64, Out> {
    duration_ms(now, duration)
        .map(|d| now + d)
        .map_err(|msg| envelope(500, &msg, "internal_server_error", Value::Null))
}

/// Timestamps as `/key/info` and `/key/update` print them: `+00:00` instead of `Z`.
fn plus00(mut row: Row) -> Row {
    for v in row.values_mut() {
        if let Value::String(s) = v
            && s.len() >= 20
            && s.ends_with('Z')
            && parse_ts(s).is_some()
        {
            s.truncate(s.len() - 1);
            s.push_str("+00:00");
        }
    }
    row
}

/// `/key/list` order: created_at, then token, both descending (this is the ascending key).
fn list_order(row: &Row) -> (String, String) {
    (
        str_of(row, "created_at").unwrap_or_default().to_owned(),
        str_of(row, "token").unwrap_or_default().to_owned(),
    )
}

/// An integer query parameter as FastAPI validates it (`ge=1`, optional `le`), with its 422 answers.
fn query_int(
    q: &HashMap<String, String>,
    name: &str,
    default: i64,
    max: Option<i64>,
) -> Result<i64, Out> {
    let Some(raw) = q.get(name) else {
        return Ok(default);
    };
    let loc = vec![json!("query"), json!(name)];
    let Ok(v) = raw.trim().parse::<i64>() else {
        return Err(unprocessable(vec![verr(
            "int_parsing",
            loc,
            "Input should be a valid integer, unable to parse string as an integer",
        )]));
    };
    if v < 1 {
        return Err(unprocessable(vec![verr(
            "greater_than_equal",
            loc,
            "Input should be greater than or equal to 1",
        )]));
    }
    if let Some(max) = max
        && v > max
    {
        return Err(unprocessable(vec![verr(
            "less_than_equal",
            loc,
            &format!("Input should be less than or equal to {max}"),
        )]));
    }
    Ok(v)
}

fn newest_first<'a>(rows: impl Iterator<Item = &'a Row>) -> Vec<&'a Row> {
    let mut keyed: Vec<(&str, &str, &Row)> = rows
        .map(|r| {
            (
                str_of(r, "created_at").unwrap_or_default(),
                str_of(r, "token").unwrap_or_default(),
                r,
            )
        })
        .collect();
    keyed.sort_unstable_by(|a, b| (b.0, b.1).cmp(&(a.0, a.1)));
    keyed.into_iter().map(|(_, _, r)| r).collect()
}

fn key_status(row: &Row, now: i64) -> &'static str {
    if row.get("blocked") == Some(&Value::Bool(true)) {
        "revoked"
    } else if str_of(row, "expires")
        .and_then(parse_ts)
        .is_some_and(|e| e < now)
    {
        "expired"
    } else {
        "active"
    }
}

/// `key` as a route takes it: a raw secret (`sk-…`) is hashed, anything else is a hash.
fn token_of(key: &str) -> String {
    if key.starts_with("sk-") {
        sha256_hex(key)
    } else {
        key.to_owned()
    }
}

impl State {
    fn new(now: i64) -> State {
        let mut st = State {
            seq: 0,
            teams: HashMap::new(),
            users: HashMap::new(),
            emails: HashMap::new(),
            keys: HashMap::new(),
            aliases: HashMap::new(),
            order: BTreeSet::new(),
            team_keys: HashMap::new(),
            user_keys: HashMap::new(),
            archive: Vec::new(),
            archived: HashMap::new(),
            release: FakeRelease::Newest,
            reported_version: None,
            auth_cache: HashMap::new(),
        };
        // The admin key acts as this user; it joins every team it creates.
        st.create_user(ADMIN_USER, None, json!("proxy_admin"), now);
        st
    }

    fn next_seq(&mut self) -> u64 {
        self.seq += 1;
        self.seq
    }

    // --- indexes -----------------------------------------------------------------------------------------------

    fn insert_key(&mut self, key: Key) {
        let Some(token) = str_of(&key.row, "token").map(str::to_owned) else {
            return;
        };
        if let Some(alias) = str_of(&key.row, "key_alias") {
            self.aliases.insert(alias.to_owned(), token.clone());
        }
        self.order.insert(list_order(&key.row));
        if let Some(team) = str_of(&key.row, "team_id") {
            self.team_keys
                .entry(team.to_owned())
                .or_default()
                .insert(token.clone());
        }
        if let Some(user) = str_of(&key.row, "user_id") {
            self.user_keys
                .entry(user.to_owned())
                .or_default()
                .insert(token.clone());
        }
        self.keys.insert(token, key);
    }

    fn remove_key(&mut self, token: &str) -> Option<Key> {
        let key = self.keys.remove(token)?;
        self.order.remove(&list_order(&key.row));
        if let Some(alias) = str_of(&key.row, "key_alias")
            && self.aliases.get(alias).map(String::as_str) == Some(token)
        {
            self.aliases.remove(alias);
        }
        for (field, index) in [
            ("team_id", &mut self.team_keys),
            ("user_id", &mut self.user_keys),
        ] {
            if let Some(owner) = str_of(&key.row, field)
                && let Some(set) = index.get_mut(owner)
            {
                set.remove(token);
                if set.is_empty() {
                    index.remove(owner);
                }
            }
        }
        Some(key)
    }

    fn archive_key(&mut self, key: Key, now: i64) {
        let mut row = key.row;
        row.insert("id".into(), json!(uuid4()));
        row.insert("deleted_at".into(), json!(fmt_ts(now)));
        row.insert("deleted_by".into(), json!(ADMIN_USER));
        row.insert(
            "deleted_by_api_key".into(),
            json!("litellm_proxy_master_key"),
        );
        row.insert("litellm_changed_by".into(), Value::Null);
        let token = str_of(&row, "token").unwrap_or_default().to_owned();
        self.archive.push(row);
        self.archived
            .entry(token)
            .or_default()
            .push(self.archive.len() - 1);
    }

    fn tokens_of(&self, index: &HashMap<String, BTreeSet<String>>, owner: &str) -> Vec<String> {
        index
            .get(owner)
            .map(|s| s.iter().cloned().collect())
            .unwrap_or_default()
    }

    fn key_rows(&self, tokens: &[String]) -> Vec<Value> {
        let mut keys: Vec<&Key> = tokens.iter().filter_map(|t| self.keys.get(t)).collect();
        keys.sort_by_key(|k| k.seq);
        keys.into_iter()
            .map(|k| Value::Object(k.row.clone()))
            .collect()
    }

    // --- auth -------------------------------------------------------------------------------------------------

    fn authorize_admin(&self, caller: &Caller, path: &str) -> Option<Out> {
        match caller {
            Caller::Admin => None,
            Caller::Missing => Some(envelope(
                401,
                "Authentication Error, No api key passed in.",
                "auth_error",
                json!("None"),
            )),
            Caller::Malformed => Some(envelope(
                401,
                "Authentication Error, Malformed API Key passed in. Ensure Key has `Bearer ` prefix.",
                "auth_error",
                json!("None"),
            )),
            Caller::Virtual(k)
                if self.keys.get(&token_of(k)).is_some_and(|key| {
                    key.row
                        .get("allowed_routes")
                        .and_then(Value::as_array)
                        .is_some_and(|r| r.iter().any(|r| r == "llm_api_routes"))
                }) =>
            {
                Some((
                    403,
                    json!({"detail": format!(
                        "Virtual key is not allowed to call this route. Only allowed to call routes: \
                         ['llm_api_routes']. Tried to call route: {path}"
                    )}),
                ))
            }
            Caller::Virtual(k) if self.keys.contains_key(&token_of(k)) => Some(envelope(
                401,
                &format!(
                    "Authentication Error, Only proxy admin can be used to generate, delete, update info for new \
                     keys/users/teams. Route={path}. Your role=unknown. Your user_id=*******"
                ),
                "auth_error",
                json!("None"),
            )),
            Caller::Virtual(_) => Some(invalid_key()),
        }
    }

    /// `GET /v1/models`: the data-plane route a virtual key can call.
    fn models(&mut self, caller: &Caller, now: i64) -> Out {
        let models: Vec<Value> = match caller {
            Caller::Admin => Vec::new(),
            Caller::Missing | Caller::Malformed => {
                return envelope(
                    401,
                    "Authentication Error, No api key passed in.",
                    "auth_error",
                    json!("None"),
                );
            }
            Caller::Virtual(k) => {
                let token = token_of(k);
                if self.release == FakeRelease::V1_98 {
                    self.auth_cache.retain(|_, (_, until)| *until > now);
                    match (self.keys.get(&token), self.auth_cache.get(&token)) {
                        (Some(key), _) => {
                            let entry = (key.row.clone(), now + AUTH_CACHE_TTL_MS);
                            self.auth_cache.entry(token.clone()).or_insert(entry);
                        }
                        // 1.98.0: the key's row is gone with its user, but the cached copy still authenticates.
                        (None, Some((row, _))) => return self.models_of(row),
                        (None, None) => {}
                    }
                }
                let Some(key) = self.keys.get(&token) else {
                    return invalid_key();
                };
                match key_status(&key.row, now) {
                    "revoked" => {
                        return envelope(
                            401,
                            "Authentication Error, Key is blocked. Update via `/key/unblock` if you're an admin.",
                            "auth_error",
                            json!("None"),
                        );
                    }
                    "expired" => {
                        let msg = format!(
                            "Authentication Error - Expired Key. Key Expiry time {} and current time {}",
                            str_of(&key.row, "expires").unwrap_or_default(),
                            fmt_ts(now)
                        );
                        return envelope(
                            401,
                            &msg,
                            "expired_key",
                            key.row.get("key_name").cloned().unwrap_or_default(),
                        );
                    }
                    _ => {}
                }
                return self.models_of(&key.row);
            }
        };
        models_list(&models)
    }

    /// `/v1/models` for a key with this row: its own models, else its team's.
    fn models_of(&self, row: &Row) -> Out {
        let own = row
            .get("models")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let models = if own.is_empty() {
            str_of(row, "team_id")
                .and_then(|t| self.teams.get(t))
                .and_then(|t| t.row.get("models"))
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default()
        } else {
            own
        };
        models_list(&models)
    }

    // --- users ------------------------------------------------------------------------------------------------

    fn create_user(&mut self, user_id: &str, email: Option<&str>, role: Value, now: i64) {
        let ts = fmt_ts(now);
        let row = json!({
            "user_id": user_id, "user_alias": null, "team_id": null, "sso_user_id": null,
            "organization_id": null, "object_permission_id": null, "teams": [], "user_role": role,
            "max_budget": null, "spend": 0.0, "user_email": email, "models": [], "metadata": {},
            "max_parallel_requests": null, "tpm_limit": null, "rpm_limit": null, "budget_duration": null,
            "budget_reset_at": null, "allowed_cache_controls": [], "policies": [], "model_spend": {},
            "model_max_budget": {}, "created_at": ts, "updated_at": ts,
        });
        if let Some(e) = email {
            self.emails.insert(e.to_lowercase(), user_id.to_owned());
        }
        if let Value::Object(row) = row {
            self.users.insert(user_id.to_owned(), User { row });
        }
    }

    fn user_by_email(&self, email: &str) -> Option<String> {
        self.emails.get(&email.to_lowercase()).cloned()
    }

    /// The user a member entry names, created if unknown (as member adds do upstream).
    fn ensure_member_user(&mut self, m: &Member, now: i64) -> String {
        if let Some(id) = &m.user_id {
            if !self.users.contains_key(id) {
                let email = m
                    .user_email
                    .as_deref()
                    .filter(|e| self.user_by_email(e).is_none());
                self.create_user(id, email, json!("internal_user"), now);
            }
            return id.clone();
        }
        let email = m.user_email.as_deref().unwrap_or_default();
        if let Some(id) = self.user_by_email(email) {
            return id;
        }
        let id = uuid4();
        self.create_user(&id, Some(email), json!("internal_user"), now);
        id
    }

    /// Updates a user row from a `/user/new` or `/user/update` body.
    fn apply_user_fields(
        row: &mut Row,
        body: &Row,
        now: i64,
        reset: Option<i64>,
        skip_empty: bool,
    ) {
        for field in [
            "user_alias",
            "user_role",
            "max_budget",
            "tpm_limit",
            "rpm_limit",
            "models",
            "metadata",
        ] {
            let Some(v) = body.get(field) else { continue };
            let empty = match v {
                Value::Array(a) => a.is_empty(),
                Value::Object(o) => o.is_empty(),
                _ => false,
            };
            if skip_empty && empty {
                continue;
            }
            if v.is_null() && matches!(field, "models" | "metadata") {
                continue;
            }
            row.insert(field.into(), v.clone());
        }
        if let Some(d) = body.get("budget_duration") {
            row.insert("budget_duration".into(), d.clone());
            row.insert("budget_reset_at".into(), ts_or_null(reset));
        }
        row.insert("updated_at".into(), json!(fmt_ts(now)));
    }

    // --- membership -------------------------------------------------------------------------------------------

    fn is_member(team: &Team, user_id: &str, email: Option<&str>) -> bool {
        team.row
            .get("members_with_roles")
            .and_then(Value::as_array)
            .is_some_and(|ms| {
                ms.iter().any(|m| {
                    m.get("user_id").and_then(Value::as_str) == Some(user_id)
                        || email
                            .is_some_and(|e| m.get("user_email").and_then(Value::as_str) == Some(e))
                })
            })
    }

    fn add_member(
        &mut self,
        team_id: &str,
        user_id: &str,
        role: &str,
        budget: Option<f64>,
        now: i64,
    ) -> Row {
        let email = self
            .users
            .get(user_id)
            .map(|u| u.row.get("user_email").cloned().unwrap_or_default())
            .unwrap_or_default();
        let (budget_id, budget_table) = match budget {
            Some(b) => {
                let id = uuid4();
                (json!(id), json!({"budget_id": id, "max_budget": b}))
            }
            None => (Value::Null, Value::Null),
        };
        let membership = json!({
            "user_id": user_id, "team_id": team_id, "budget_id": budget_id, "spend": 0.0,
            "total_spend": 0.0, "litellm_budget_table": budget_table,
        });
        let membership = match membership {
            Value::Object(m) => m,
            _ => Map::new(),
        };
        if let Some(team) = self.teams.get_mut(team_id) {
            if let Some(Value::Array(ms)) = team.row.get_mut("members_with_roles") {
                ms.push(json!({"user_id": user_id, "user_email": email, "role": role}));
            }
            team.memberships.push(membership.clone());
            team.row.insert("updated_at".into(), json!(fmt_ts(now)));
        }
        if let Some(user) = self.users.get_mut(user_id)
            && let Some(Value::Array(teams)) = user.row.get_mut("teams")
            && !teams.iter().any(|t| t.as_str() == Some(team_id))
        {
            teams.push(json!(team_id));
        }
        membership
    }

    fn remove_member(&mut self, team_id: &str, user_id: &str, now: i64) {
        if let Some(team) = self.teams.get_mut(team_id) {
            if let Some(Value::Array(ms)) = team.row.get_mut("members_with_roles") {
                ms.retain(|m| m.get("user_id").and_then(Value::as_str) != Some(user_id));
            }
            team.memberships
                .retain(|m| str_of(m, "user_id") != Some(user_id));
            team.row.insert("updated_at".into(), json!(fmt_ts(now)));
        }
        if let Some(user) = self.users.get_mut(user_id)
            && let Some(Value::Array(teams)) = user.row.get_mut("teams")
        {
            teams.retain(|t| t.as_str() != Some(team_id));
        }
    }

    /// The member a `/team/member_delete` or `/team/member_update` body names.
    fn member_in(&self, team: &Team, body: &Row) -> Option<String> {
        let user_id = str_of(body, "user_id");
        let email = str_of(body, "user_email");
        let ms = team.row.get("members_with_roles")?.as_array()?;
        ms.iter()
            .find(|m| {
                let mid = m.get("user_id").and_then(Value::as_str);
                let memail = m.get("user_email").and_then(Value::as_str);
                (user_id.is_some() && mid == user_id)
                    || (user_id.is_none()
                        && email
                            .is_some_and(|e| memail.is_some_and(|me| me.eq_ignore_ascii_case(e))))
            })
            .and_then(|m| m.get("user_id").and_then(Value::as_str))
            .map(str::to_owned)
    }

    // --- teams ------------------------------------------------------------------------------------------------

    fn team_new(&mut self, mut body: Row, now: i64) -> Result<Out, Out> {
        validate(&mut body, TEAM_FIELDS)?;
        let members = match body.get("members_with_roles") {
            Some(v @ Value::Array(_)) => parse_members(v, "members_with_roles")?,
            _ => Vec::new(),
        };
        check_budget(&body, "max_budget")?;
        check_budget(&body, "soft_budget")?;
        let reset = reset_for(&body, now)?;
        let team_id = match str_of(&body, "team_id").filter(|t| !t.is_empty()) {
            Some(t) => t.to_owned(),
            None => uuid4(),
        };
        if self.teams.contains_key(&team_id) {
            return Err(envelope(
                400,
                &py_err(&format!(
                    "Team id = {team_id} already exists. Please use a different team id."
                )),
                "internal_server_error",
                Value::Null,
            ));
        }
        if let Some(org) = str_of(&body, "organization_id") {
            return Err(envelope(
                400,
                &py_err(&format!("Organization not found for organization_id={org}")),
                "internal_server_error",
                Value::Null,
            ));
        }
        let ts = fmt_ts(now);
        let row = json!({
            "team_alias": body.get("team_alias").cloned().unwrap_or_default(),
            "team_id": team_id,
            "organization_id": null, "admins": [], "members": [], "members_with_roles": [],
            "team_member_permissions": [],
            "metadata": body.get("metadata").filter(|m| m.is_object()).cloned().unwrap_or_else(|| json!({})),
            "tpm_limit": body.get("tpm_limit").cloned().unwrap_or_default(),
            "rpm_limit": body.get("rpm_limit").cloned().unwrap_or_default(),
            "tpd_limit": null,
            "max_budget": body.get("max_budget").cloned().unwrap_or_default(),
            "soft_budget": body.get("soft_budget").cloned().unwrap_or_default(),
            "budget_duration": body.get("budget_duration").cloned().unwrap_or_default(),
            "budget_limits": null,
            "models": body.get("models").filter(|m| m.is_array()).cloned().unwrap_or_else(|| json!([])),
            "blocked": body.get("blocked").and_then(Value::as_bool).unwrap_or(false),
            "router_settings": {}, "access_group_ids": [], "default_team_member_models": [], "spend": 0.0,
            "max_parallel_requests": body.get("max_parallel_requests").cloned().unwrap_or_default(),
            "budget_reset_at": ts_or_null(reset),
            "model_id": null, "model_spend": {}, "model_max_budget": {}, "policies": [],
            "allow_team_guardrail_config": false, "litellm_model_table": null, "object_permission": null,
            "object_permission_id": null, "updated_at": ts, "created_at": ts,
        });
        let Value::Object(row) = row else {
            return Err(envelope(
                500,
                "team row",
                "internal_server_error",
                Value::Null,
            ));
        };
        let seq = self.next_seq();
        self.teams.insert(
            team_id.clone(),
            Team {
                seq,
                row,
                memberships: Vec::new(),
            },
        );
        // Listed members first, then the admin key's user, as the real gateway orders them.
        for m in &members {
            let uid = self.ensure_member_user(m, now);
            let already = self
                .teams
                .get(&team_id)
                .is_some_and(|t| State::is_member(t, &uid, None));
            if !already {
                self.add_member(&team_id, &uid, &m.role, None, now);
            }
        }
        let admin_member = self
            .teams
            .get(&team_id)
            .is_some_and(|t| State::is_member(t, ADMIN_USER, None));
        if !admin_member {
            self.add_member(&team_id, ADMIN_USER, "admin", None, now);
        }
        let team = self.team_row(&team_id);
        Ok((200, team))
    }

    fn team_row(&self, team_id: &str) -> Value {
        self.teams
            .get(team_id)
            .map(|t| Value::Object(t.row.clone()))
            .unwrap_or_default()
    }

    /// `/team/daily/activity`: LiteLLM's shape, reduced to the period total. A team's day spend is the test-set
    /// `spend_today` field of its row (the fake keeps no per-request log); dates are required, as LiteLLM's are.
    fn team_daily_activity(&self, q: &HashMap<String, String>) -> Result<Out, Out> {
        if !q.contains_key("start_date") || !q.contains_key("end_date") {
            return Err(envelope(
                400,
                "Please provide start_date and end_date",
                "bad_request",
                json!("None"),
            ));
        }
        let ids: Vec<&str> = q
            .get("team_ids")
            .map(|t| t.split(',').filter(|t| !t.is_empty()).collect())
            .unwrap_or_default();
        let total: f64 = self
            .teams
            .iter()
            .filter(|(id, _)| ids.is_empty() || ids.contains(&id.as_str()))
            .filter_map(|(_, t)| t.row.get("spend_today").and_then(Value::as_f64))
            .sum();
        Ok((
            200,
            json!({"results": [], "metadata": {"total_spend": total, "page": 1, "total_pages": 0, "has_more": false}}),
        ))
    }

    fn team_info(&self, q: &HashMap<String, String>) -> Result<Out, Out> {
        let Some(team_id) = q.get("team_id").filter(|t| !t.is_empty()) else {
            return Err(envelope(
                422,
                "{'message': 'Malformed request. No team id passed in.'}",
                "auth_error",
                json!("None"),
            ));
        };
        let Some(team) = self.teams.get(team_id) else {
            return Err(envelope(
                404,
                &format!("{{'message': 'Team not found, passed team id: {team_id}.'}}"),
                "auth_error",
                json!("None"),
            ));
        };
        let mut info = team.row.clone();
        if let Some(Value::Array(ms)) = info.get_mut("members_with_roles") {
            for m in ms.iter_mut() {
                if let Value::Object(m) = m {
                    m.insert("user_alias".into(), Value::Null);
                }
            }
        }
        info.insert("team_member_budget_table".into(), Value::Null);
        info.insert("model_max_budget_usage".into(), json!({}));
        // 1.98.0 lists no membership row for the admin key's default_user_id (1.108.7 does).
        let legacy = self.release == FakeRelease::V1_98;
        let memberships: Vec<Value> = team
            .memberships
            .iter()
            .filter(|m| !(legacy && str_of(m, "user_id") == Some(ADMIN_USER)))
            .map(|m| {
                let mut m = m.clone();
                m.insert("budget_source".into(), json!("none"));
                Value::Object(m)
            })
            .collect();
        let keys = self.key_rows(&self.tokens_of(&self.team_keys, team_id));
        Ok((
            200,
            json!({"team_id": team_id, "team_info": info, "keys": keys, "team_memberships": memberships}),
        ))
    }

    fn team_update(&mut self, mut body: Row, now: i64) -> Result<Out, Out> {
        let mut spec = TEAM_FIELDS.to_vec();
        spec[0] = ("team_id", Ty::Str, true);
        validate(&mut body, &spec)?;
        let team_id = str_of(&body, "team_id").unwrap_or_default().to_owned();
        if !self.teams.contains_key(&team_id) {
            return Err(envelope(
                404,
                &py_err(&format!("Team not found, passed team_id={team_id}")),
                "internal_server_error",
                Value::Null,
            ));
        }
        check_budget(&body, "max_budget")?;
        check_budget(&body, "soft_budget")?;
        let reset = reset_for(&body, now)?;
        let Some(team) = self.teams.get_mut(&team_id) else {
            return Err(envelope(
                404,
                "team vanished",
                "internal_server_error",
                Value::Null,
            ));
        };
        apply_update(
            &mut team.row,
            &body,
            &[
                "team_alias",
                "models",
                "max_budget",
                "soft_budget",
                "tpm_limit",
                "rpm_limit",
                "max_parallel_requests",
                "metadata",
                "blocked",
            ],
            &["models", "metadata", "blocked"],
            reset,
        );
        team.row.insert("updated_at".into(), json!(fmt_ts(now)));
        let row = Value::Object(team.row.clone());
        Ok((200, json!({"team_id": team_id, "data": row})))
    }

    fn team_delete(&mut self, mut body: Row, now: i64) -> Result<Out, Out> {
        validate(&mut body, &[("team_ids", Ty::StrList, true)])?;
        let ids: Vec<String> = str_list(&body, "team_ids");
        if let Some(missing) = ids.iter().find(|id| !self.teams.contains_key(*id)) {
            return Err(bare(
                404,
                &format!("Team not found, passed team_id={missing}"),
            ));
        }
        for id in &ids {
            // Cascade: the team's keys are deleted (and archived, on 1.108.7), then its members leave. Seen on
            // 1.98.0 too: the team's keys were refused on the next request.
            for token in self.tokens_of(&self.team_keys, id) {
                self.auth_cache.remove(&token);
                if let Some(k) = self.remove_key(&token) {
                    self.archive_key(k, now);
                }
            }
            if let Some(team) = self.teams.remove(id) {
                for m in &team.memberships {
                    if let Some(uid) = str_of(m, "user_id")
                        && let Some(user) = self.users.get_mut(uid)
                        && let Some(Value::Array(teams)) = user.row.get_mut("teams")
                    {
                        teams.retain(|t| t.as_str() != Some(id.as_str()));
                    }
                }
            }
        }
        Ok((200, json!({"deleted_teams": ids})))
    }

    fn team_list(&self) -> Out {
        let mut teams: Vec<&Team> = self.teams.values().collect();
        teams.sort_by_key(|t| t.seq);
        let list: Vec<Value> = teams
            .into_iter()
            .map(|t| {
                let mut row = t.row.clone();
                let team_id = str_of(&row, "team_id").unwrap_or_default().to_owned();
                row.insert(
                    "keys".into(),
                    json!(self.key_rows(&self.tokens_of(&self.team_keys, &team_id))),
                );
                row.insert(
                    "team_memberships".into(),
                    json!(
                        t.memberships
                            .iter()
                            .cloned()
                            .map(Value::Object)
                            .collect::<Vec<_>>()
                    ),
                );
                Value::Object(row)
            })
            .collect();
        (200, Value::Array(list))
    }

    /// `/v2/team/list`: pages of team rows (without keys), newest first as LiteLLM's default `created_at desc`.
    fn team_list_v2(&self, q: &HashMap<String, String>) -> Result<Out, Out> {
        let page = query_int(q, "page", 1, None)?;
        let size = query_int(q, "page_size", 10, Some(100))?;
        let mut teams: Vec<&Team> = self.teams.values().collect();
        teams.sort_by_key(|t| std::cmp::Reverse(t.seq));
        let take = usize::try_from(size).unwrap_or(100);
        let skip = usize::try_from(page - 1).unwrap_or(0).saturating_mul(take);
        let total = teams.len();
        let rows: Vec<Value> = teams
            .into_iter()
            .skip(skip)
            .take(take)
            .map(|t| Value::Object(t.row.clone()))
            .collect();
        Ok((
            200,
            json!({"teams": rows, "total": total, "page": page, "page_size": size,
                   "total_pages": total.div_ceil(take)}),
        ))
    }

    fn member_add(&mut self, mut body: Row, team_admins: bool, now: i64) -> Result<Out, Out> {
        validate(
            &mut body,
            &[
                ("team_id", Ty::Str, true),
                ("max_budget_in_team", Ty::Float, false),
            ],
        )?;
        let Some(member_value) = body.get("member").cloned() else {
            return Err(unprocessable(vec![verr(
                "missing",
                vec![json!("body"), json!("member")],
                "Field required",
            )]));
        };
        let members = parse_members(&member_value, "member")?;
        let team_id = str_of(&body, "team_id").unwrap_or_default().to_owned();
        let Some(team) = self.teams.get(&team_id) else {
            return Err(bare(
                404,
                &format!(
                    "Team doesn't exist in db. Team={team_id}. Create team via `/team/new` call."
                ),
            ));
        };
        if !team_admins && members.iter().any(|m| m.role == "admin") {
            return Err(bare(400, PREMIUM_TEAM_ADMIN));
        }
        let budget = f64_of(&body, "max_budget_in_team");
        // The duplicate check compares user_id, or the email exactly as given.
        let fresh: Vec<&Member> = members
            .iter()
            .filter(|m| match &m.user_id {
                Some(id) => !State::is_member(team, id, None),
                None => !m
                    .user_email
                    .as_deref()
                    .is_some_and(|e| State::is_member(team, "\u{0}", Some(e))),
            })
            .collect();
        if fresh.is_empty() {
            let existing = existing_members(team);
            let msg = if member_value.is_array() {
                format!("All users are already in team. Existing members={existing}")
            } else {
                let m = &members[0];
                format!(
                    "User already in team. Member: user_id={}, user_email={}. Existing members={existing}",
                    m.user_id.as_deref().unwrap_or("None"),
                    m.user_email.as_deref().unwrap_or("None")
                )
            };
            return Err(envelope(
                400,
                &msg,
                "team_member_already_in_team",
                json!("member"),
            ));
        }
        let fresh: Vec<Member> = fresh
            .into_iter()
            .map(|m| Member {
                role: m.role.clone(),
                user_id: m.user_id.clone(),
                user_email: m.user_email.clone(),
            })
            .collect();
        let mut users = Vec::new();
        let mut memberships = Vec::new();
        for m in &fresh {
            let uid = self.ensure_member_user(m, now);
            // An email in another case resolves to a user already in the team: skipped, and still 200 (1.98.0
            // still lists the user in updated_users).
            if self
                .teams
                .get(&team_id)
                .is_some_and(|t| State::is_member(t, &uid, None))
            {
                if self.release == FakeRelease::V1_98
                    && let Some(u) = self.users.get(&uid)
                {
                    users.push(Value::Object(u.row.clone()));
                }
                continue;
            }
            memberships.push(Value::Object(
                self.add_member(&team_id, &uid, &m.role, budget, now),
            ));
            if let Some(u) = self.users.get(&uid) {
                users.push(Value::Object(u.row.clone()));
            }
        }
        let mut row = match self.team_row(&team_id) {
            Value::Object(r) => r,
            _ => Map::new(),
        };
        row.insert("updated_users".into(), Value::Array(users));
        row.insert("updated_team_memberships".into(), Value::Array(memberships));
        Ok((200, Value::Object(row)))
    }

    fn member_delete(&mut self, mut body: Row, now: i64) -> Result<Out, Out> {
        validate(
            &mut body,
            &[
                ("team_id", Ty::Str, true),
                ("user_id", Ty::Str, false),
                ("user_email", Ty::Str, false),
            ],
        )?;
        require_user_ref(&body)?;
        let team_id = str_of(&body, "team_id").unwrap_or_default().to_owned();
        let team = self.teams.get(&team_id).ok_or_else(|| no_team(&team_id))?;
        let Some(uid) = self.member_in(team, &body) else {
            return Err(bare(400, "User not found in team"));
        };
        // 1.108.7 deletes (and archives) the member's keys in this team; their other keys survive.
        for token in self.tokens_of(&self.user_keys, &uid) {
            let in_team = self
                .keys
                .get(&token)
                .is_some_and(|k| str_of(&k.row, "team_id") == Some(team_id.as_str()));
            if in_team && let Some(k) = self.remove_key(&token) {
                self.archive_key(k, now);
            }
        }
        self.remove_member(&team_id, &uid, now);
        Ok((200, self.team_row(&team_id)))
    }

    fn member_update(&mut self, mut body: Row, team_admins: bool, now: i64) -> Result<Out, Out> {
        validate(
            &mut body,
            &[
                ("team_id", Ty::Str, true),
                ("user_id", Ty::Str, false),
                ("user_email", Ty::Str, false),
                ("role", TEAM_ROLE, false),
                ("max_budget_in_team", Ty::Float, false),
                ("tpm_limit", Ty::Int, false),
                ("rpm_limit", Ty::Int, false),
            ],
        )?;
        require_user_ref(&body)?;
        let team_id = str_of(&body, "team_id").unwrap_or_default().to_owned();
        let team = self.teams.get(&team_id).ok_or_else(|| no_team(&team_id))?;
        let Some(uid) = self.member_in(team, &body) else {
            let who = str_of(&body, "user_id")
                .or_else(|| str_of(&body, "user_email"))
                .unwrap_or_default();
            if self.release == FakeRelease::V1_98 {
                // 1.98.0 answers 200 for a non-member and changes nothing.
                return Ok((
                    200,
                    json!({"team_id": team_id, "user_id": str_of(&body, "user_id"),
                           "user_email": str_of(&body, "user_email"), "max_budget_in_team": null,
                           "tpm_limit": null, "rpm_limit": null, "budget_duration": null, "allowed_models": null}),
                ));
            }
            return Err(bare(
                404,
                &format!("User {who} is not a member of team {team_id}"),
            ));
        };
        let role = str_of(&body, "role").map(str::to_owned);
        if role.as_deref() == Some("admin") && !team_admins {
            return Err((400, json!({"detail": PREMIUM_TEAM_ADMIN})));
        }
        let budget = f64_of(&body, "max_budget_in_team");
        let team = self
            .teams
            .get_mut(&team_id)
            .ok_or_else(|| no_team(&team_id))?;
        if let Some(role) = &role
            && let Some(Value::Array(ms)) = team.row.get_mut("members_with_roles")
        {
            for m in ms.iter_mut() {
                if m.get("user_id").and_then(Value::as_str) == Some(uid.as_str())
                    && let Value::Object(m) = m
                {
                    m.insert("role".into(), json!(role));
                }
            }
        }
        let mut email = Value::Null;
        if let Some(m) = team
            .memberships
            .iter_mut()
            .find(|m| str_of(m, "user_id") == Some(uid.as_str()))
            && let Some(b) = budget
        {
            let id = str_of(m, "budget_id").map_or_else(uuid4, str::to_owned);
            m.insert("budget_id".into(), json!(id));
            m.insert(
                "litellm_budget_table".into(),
                json!({"budget_id": id, "max_budget": b}),
            );
        }
        team.row.insert("updated_at".into(), json!(fmt_ts(now)));
        if let Some(u) = self.users.get(&uid) {
            email = u.row.get("user_email").cloned().unwrap_or_default();
        }
        Ok((
            200,
            json!({
                "user_id": uid, "user_email": email, "team_id": team_id,
                "max_budget_in_team": budget, "tpm_limit": body.get("tpm_limit").cloned().unwrap_or_default(),
                "rpm_limit": body.get("rpm_limit").cloned().unwrap_or_default(), "budget_duration": null,
                "allowed_models": null, "temp_budget_increase": null, "temp_budget_expiry": null,
                "model_max_budget": null,
            }),
        ))
    }

    // --- keys -------------------------------------------------------------------------------------------------

    /// A key row built from a `/key/generate` body.
    fn key_row(
        body: &Row,
        secret: &str,
        now: i64,
        expires: Option<i64>,
        reset: Option<i64>,
    ) -> Row {
        let ts = fmt_ts(now);
        let key_type = str_of(body, "key_type").unwrap_or("default");
        let row = json!({
            "token": sha256_hex(secret),
            "key_name": key_name(secret),
            "key_alias": body.get("key_alias").cloned().unwrap_or_default(),
            "spend": 0.0, "total_spend": 0.0,
            "expires": ts_or_null(expires),
            "models": body.get("models").filter(|m| m.is_array()).cloned().unwrap_or_else(|| json!([])),
            "aliases": {}, "config": {},
            "user_id": body.get("user_id").cloned().unwrap_or_default(),
            "team_id": body.get("team_id").cloned().unwrap_or_default(),
            "permissions": {},
            "max_parallel_requests": body.get("max_parallel_requests").cloned().unwrap_or_default(),
            "metadata": body.get("metadata").filter(|m| m.is_object()).cloned().unwrap_or_else(|| json!({})),
            "blocked": body.get("blocked").cloned().unwrap_or_default(),
            "tpm_limit": body.get("tpm_limit").cloned().unwrap_or_default(),
            "rpm_limit": body.get("rpm_limit").cloned().unwrap_or_default(),
            "max_budget": body.get("max_budget").cloned().unwrap_or_default(),
            "soft_budget": body.get("soft_budget").cloned().unwrap_or_default(),
            "budget_duration": body.get("budget_duration").cloned().unwrap_or_default(),
            "budget_reset_at": ts_or_null(reset),
            "allowed_cache_controls": [],
            "allowed_routes": allowed_routes(key_type),
            "key_type": key_type,
            "model_spend": {}, "model_max_budget": {}, "budget_id": null, "organization_id": null,
            "created_at": ts, "created_by": ADMIN_USER, "updated_at": ts, "updated_by": ADMIN_USER,
            "last_active": null, "rotation_count": 0, "auto_rotate": false, "rotation_interval": null,
            "last_rotation_at": null, "key_rotation_at": null,
        });
        match row {
            Value::Object(m) => m,
            _ => Map::new(),
        }
    }

    /// The `/key/generate` reply for a key row and its secret.
    fn generate_reply(row: &Row, secret: &str) -> Row {
        let mut out = Map::new();
        for field in [
            "key_alias",
            "models",
            "spend",
            "max_budget",
            "user_id",
            "team_id",
            "max_parallel_requests",
            "metadata",
            "tpm_limit",
            "rpm_limit",
            "budget_duration",
            "allowed_cache_controls",
            "config",
            "permissions",
            "model_max_budget",
            "blocked",
            "aliases",
            "allowed_routes",
            "key_name",
            "key_type",
            "expires",
            "organization_id",
            "budget_id",
            "created_by",
            "updated_by",
            "created_at",
            "updated_at",
            "rotation_count",
            "last_rotation_at",
        ] {
            out.insert(field.into(), row.get(field).cloned().unwrap_or_default());
        }
        let token = row.get("token").cloned().unwrap_or_default();
        out.insert("duration".into(), Value::Null);
        out.insert("tags".into(), Value::Null);
        out.insert("key".into(), json!(secret));
        out.insert("token_id".into(), token.clone());
        out.insert("token".into(), token);
        out
    }

    fn key_generate(&mut self, mut body: Row, now: i64) -> Result<Out, Out> {
        validate(&mut body, KEY_FIELDS)?;
        check_budget(&body, "max_budget")?;
        check_budget(&body, "soft_budget")?;
        let reset = reset_for(&body, now)?;
        if let Some(alias) = str_of(&body, "key_alias")
            && self.aliases.contains_key(alias)
        {
            return Err(alias_taken(alias));
        }
        if let Some(secret) = str_of(&body, "key") {
            check_secret(secret)?;
        }
        let expires = match str_of(&body, "duration") {
            Some(d) => Some(expires_for(d, now)?),
            None => None,
        };
        let secret = str_of(&body, "key")
            .map(str::to_owned)
            .unwrap_or_else(new_secret);
        let mut row = State::key_row(&body, &secret, now, expires, reset);
        let token = sha256_hex(&secret);
        if let Some(existing) = self.keys.get(&token) {
            // Observed on 1.108.7 (#20494): a re-sent secret answers 200, echoing this request with the existing
            // token and timestamps; nothing is created or changed.
            for field in ["created_at", "updated_at"] {
                row.insert(
                    field.into(),
                    existing.row.get(field).cloned().unwrap_or_default(),
                );
            }
            return Ok((200, Value::Object(State::generate_reply(&row, &secret))));
        }
        let reply = State::generate_reply(&row, &secret);
        let seq = self.next_seq();
        self.insert_key(Key { seq, row });
        Ok((200, Value::Object(reply)))
    }

    fn key_info(&self, q: &HashMap<String, String>, now: i64) -> Out {
        let not_found = envelope(
            404,
            "Key not found in database",
            "not_found_error",
            json!("key"),
        );
        let Some(key) = q.get("key").filter(|k| !k.is_empty()) else {
            // Without `key` it reads the caller's own key; the admin key has no row.
            return not_found;
        };
        let token = token_of(key);
        let (mut info, status) = if let Some(k) = self.keys.get(&token) {
            (k.row.clone(), key_status(&k.row, now))
        } else if let Some(row) = self
            .archived
            .get(&token)
            .and_then(|ix| ix.last())
            .and_then(|i| self.archive.get(*i))
            && self.release == FakeRelease::Newest
        {
            // 1.108.7 serves deleted keys from the archive, with status "deleted"; 1.98.0 answers 404.
            (row.clone(), "deleted")
        } else {
            return not_found;
        };
        info.remove("token");
        if self.release == FakeRelease::Newest {
            // 1.98.0's /key/info has no status.
            info.insert("status".into(), json!(status));
        }
        (200, json!({"key": key, "info": plus00(info)}))
    }

    /// Validates and applies `/key/update` fields to a live key, all or nothing.
    fn apply_key_update(&mut self, token: &str, body: &Row, now: i64) -> Result<(), Out> {
        let Some(current) = self.keys.get(token) else {
            return Err(envelope(
                404,
                "Key not found.",
                "not_found_error",
                json!("key"),
            ));
        };
        if let Some(alias) = str_of(body, "key_alias")
            && self.aliases.get(alias).is_some_and(|owner| owner != token)
        {
            return Err(alias_taken(alias));
        }
        if let Some(team) = str_of(body, "team_id")
            && str_of(&current.row, "team_id") != Some(team)
            && !self.teams.contains_key(team)
        {
            return Err(envelope(
                404,
                &py_err(&format!(
                    "Team doesn't exist in db. Team={team}. Create team via `/team/new` call."
                )),
                "auth_error",
                json!("None"),
            ));
        }
        check_budget(body, "max_budget")?;
        check_budget(body, "soft_budget")?;
        let reset = reset_for(body, now)?;
        let expires = match body.get("duration") {
            None => None,
            Some(Value::Null) => Some(None),
            Some(Value::String(d)) if d == "-1" => Some(None),
            Some(Value::String(d)) => Some(Some(expires_for(d, now)?)),
            Some(_) => None,
        };
        let Some(mut key) = self.remove_key(token) else {
            return Err(envelope(
                404,
                "Key not found.",
                "not_found_error",
                json!("key"),
            ));
        };
        apply_update(
            &mut key.row,
            body,
            &[
                "key_alias",
                "team_id",
                "user_id",
                "models",
                "max_budget",
                "soft_budget",
                "tpm_limit",
                "rpm_limit",
                "max_parallel_requests",
                "metadata",
                "blocked",
                "allowed_routes",
            ],
            &["models", "metadata", "allowed_routes"],
            reset,
        );
        if let Some(kt) = str_of(body, "key_type") {
            key.row.insert("key_type".into(), json!(kt));
            if !present(body, "allowed_routes") {
                key.row.insert("allowed_routes".into(), allowed_routes(kt));
            }
        }
        if let Some(e) = expires {
            key.row.insert("expires".into(), ts_or_null(e));
        }
        let ts = json!(fmt_ts(now));
        key.row.insert("updated_at".into(), ts.clone());
        key.row.insert("settings_updated_at".into(), ts);
        key.row.insert("updated_by".into(), json!(ADMIN_USER));
        self.insert_key(key);
        Ok(())
    }

    fn key_update(&mut self, mut body: Row, now: i64) -> Result<Out, Out> {
        validate(&mut body, KEY_FIELDS)?;
        let (token, as_sent) = match (str_of(&body, "key"), str_of(&body, "key_alias")) {
            (Some(k), _) => (token_of(k), k.to_owned()),
            (None, Some(alias)) => match self.aliases.get(alias) {
                // Addressed by alias (newer upstream, present on 1.108.7): the alias is the lookup, not a change.
                Some(t) => {
                    let t = t.clone();
                    body.remove("key_alias");
                    (t.clone(), t)
                }
                None => {
                    return Err(envelope(
                        404,
                        &format!("Key not found. No key with key_alias='{alias}'."),
                        "not_found_error",
                        json!("key_alias"),
                    ));
                }
            },
            (None, None) => {
                return Err(unprocessable(vec![verr(
                    "value_error",
                    vec![json!("body")],
                    "Value error, either key or key_alias must be provided",
                )]));
            }
        };
        self.apply_key_update(&token, &body, now)?;
        let mut row = self
            .keys
            .get(&token)
            .map(|k| k.row.clone())
            .unwrap_or_default();
        let mut out = Map::new();
        out.insert("key".into(), json!(as_sent));
        out.append(&mut row);
        Ok((200, Value::Object(plus00(out))))
    }

    fn key_delete(&mut self, mut body: Row, now: i64) -> Result<Out, Out> {
        validate(
            &mut body,
            &[
                ("keys", Ty::StrList, false),
                ("key_aliases", Ty::StrList, false),
            ],
        )?;
        let list = |f: &str| -> Vec<String> { str_list(&body, f) };
        let keys = list("keys");
        let aliases = list("key_aliases");
        if keys.is_empty() && aliases.is_empty() {
            return Err(unprocessable(vec![verr(
                "value_error",
                vec![json!("body")],
                "Value error, At least one of 'keys' or 'key_aliases' must be provided.",
            )]));
        }
        let mut tokens: BTreeSet<String> = keys
            .iter()
            .map(|k| token_of(k))
            .filter(|t| self.keys.contains_key(t))
            .collect();
        tokens.extend(aliases.iter().filter_map(|a| self.aliases.get(a).cloned()));
        if tokens.is_empty() {
            return Err(envelope(
                404,
                &py_err("No keys found"),
                "internal_server_error",
                Value::Null,
            ));
        }
        for t in tokens {
            // `/key/delete` takes effect on the next request on every release.
            self.auth_cache.remove(&t);
            if let Some(k) = self.remove_key(&t) {
                self.archive_key(k, now);
            }
        }
        let echoed = if keys.is_empty() { aliases } else { keys };
        Ok((200, json!({"deleted_keys": echoed})))
    }

    fn key_list(&self, q: &HashMap<String, String>, now: i64) -> Result<Out, Out> {
        let page = query_int(q, "page", 1, None)?;
        let size = query_int(q, "size", 10, Some(100))?;
        let full = match q
            .get("return_full_object")
            .map(|s| s.trim().to_ascii_lowercase())
        {
            None => false,
            Some(s) if matches!(s.as_str(), "true" | "1" | "yes" | "on") => true,
            Some(s) if matches!(s.as_str(), "false" | "0" | "no" | "off") => false,
            Some(_) => {
                return Err(unprocessable(vec![verr(
                    "bool_parsing",
                    vec![json!("query"), json!("return_full_object")],
                    "Input should be a valid boolean, unable to interpret input",
                )]));
            }
        };
        let status = q.get("status").map(String::as_str);
        if let Some(s) = status
            && self.release == FakeRelease::V1_98
            && s != "deleted"
        {
            return Err(envelope(
                400,
                &py_err("Invalid status value. Currently only 'deleted' is supported."),
                "internal_server_error",
                json!("None"),
            ));
        }
        if let Some(s) = status
            && !matches!(s, "active" | "expired" | "revoked" | "deleted")
        {
            return Err(envelope(
                400,
                &py_err(
                    "Invalid status value. Supported: 'active', 'expired', 'revoked', 'deleted'.",
                ),
                "internal_server_error",
                json!("None"),
            ));
        }
        let filter = |field: &str| q.get(field).filter(|v| !v.is_empty()).map(String::as_str);
        let (team, user, alias, hash) = (
            filter("team_id"),
            filter("user_id"),
            filter("key_alias"),
            filter("key_hash"),
        );
        let wanted = |row: &Row| {
            team.is_none_or(|t| str_of(row, "team_id") == Some(t))
                && user.is_none_or(|u| str_of(row, "user_id") == Some(u))
                && alias.is_none_or(|a| str_of(row, "key_alias") == Some(a))
                && hash.is_none_or(|h| str_of(row, "token") == Some(h))
        };
        let status_ok = |r: &Row| status.is_none_or(|s| key_status(r, now) == s);
        let take = usize::try_from(size).unwrap_or(100);
        let skip = usize::try_from(page - 1).unwrap_or(0).saturating_mul(take);
        let (total, rows): (usize, Vec<&Row>) = if status == Some("deleted") {
            let rows = newest_first(self.archive.iter().filter(|r| wanted(r)));
            (rows.len(), rows.into_iter().skip(skip).take(take).collect())
        } else if team.is_none() && user.is_none() && alias.is_none() && hash.is_none() {
            // Unfiltered: walk the ordered index, so a page costs its size, not a sort of every key.
            let ordered = self
                .order
                .iter()
                .rev()
                .filter_map(|(_, t)| self.keys.get(t))
                .map(|k| &k.row);
            if status.is_none() {
                (self.keys.len(), ordered.skip(skip).take(take).collect())
            } else {
                let rows: Vec<&Row> = ordered.filter(|r| status_ok(r)).collect();
                (rows.len(), rows.into_iter().skip(skip).take(take).collect())
            }
        } else {
            // Narrow with an index; the filters then run on the few candidates.
            let candidates: Box<dyn Iterator<Item = &Key>> = if let Some(h) = hash {
                Box::new(self.keys.get(h).into_iter())
            } else if let Some(a) = alias {
                Box::new(
                    self.aliases
                        .get(a)
                        .and_then(|t| self.keys.get(t))
                        .into_iter(),
                )
            } else {
                let index = if team.is_some() {
                    &self.team_keys
                } else {
                    &self.user_keys
                };
                let owner = team.or(user).unwrap_or_default();
                Box::new(
                    index
                        .get(owner)
                        .into_iter()
                        .flatten()
                        .filter_map(|tok| self.keys.get(tok)),
                )
            };
            let rows = newest_first(
                candidates
                    .map(|k| &k.row)
                    .filter(|r| wanted(r) && status_ok(r)),
            );
            (rows.len(), rows.into_iter().skip(skip).take(take).collect())
        };
        let keys: Vec<Value> = rows
            .into_iter()
            .map(|r| {
                if full {
                    Value::Object(r.clone())
                } else {
                    r.get("token").cloned().unwrap_or_default()
                }
            })
            .collect();
        Ok((
            200,
            json!({"keys": keys, "total_count": total, "current_page": page, "total_pages": total.div_ceil(take)}),
        ))
    }

    fn key_regenerate(
        &mut self,
        path_key: Option<&str>,
        mut body: Row,
        enabled: bool,
        now: i64,
    ) -> Result<Out, Out> {
        validate(&mut body, KEY_FIELDS)?;
        if !enabled {
            return Err(envelope(
                500,
                ENTERPRISE_REGENERATE,
                "internal_server_error",
                Value::Null,
            ));
        }
        let Some(key) = str_of(&body, "key")
            .filter(|k| !k.is_empty())
            .or(path_key)
            .map(str::to_owned)
        else {
            return Err(envelope(
                400,
                &py_err("No key passed in."),
                "internal_server_error",
                Value::Null,
            ));
        };
        // The regenerate routes hash anything containing "sk", not only values starting with "sk-".
        let token = if key.contains("sk") {
            sha256_hex(&key)
        } else {
            key.clone()
        };
        if !self.keys.contains_key(&token) {
            return Err(envelope(
                404,
                &py_err(&format!("Key {key} not found.")),
                "internal_server_error",
                Value::Null,
            ));
        }
        let secret = match str_of(&body, "new_key") {
            Some(s) => {
                check_secret(s)?;
                s.to_owned()
            }
            None => new_secret(),
        };
        let new_token = sha256_hex(&secret);
        if new_token != token && self.keys.contains_key(&new_token) {
            return Err(envelope(
                400,
                &py_err("A key with this new_key already exists."),
                "internal_server_error",
                Value::Null,
            ));
        }
        let mut update = body.clone();
        for field in ["key", "new_key", "grace_period"] {
            update.remove(field);
        }
        self.apply_key_update(&token, &update, now)?;
        let Some(mut k) = self.remove_key(&token) else {
            return Err(envelope(
                404,
                "Key not found.",
                "not_found_error",
                json!("key"),
            ));
        };
        let rotations = k
            .row
            .get("rotation_count")
            .and_then(Value::as_i64)
            .unwrap_or(0)
            + 1;
        let ts = json!(fmt_ts(now));
        k.row.insert("token".into(), json!(new_token));
        k.row.insert("key_name".into(), json!(key_name(&secret)));
        k.row.insert("rotation_count".into(), json!(rotations));
        k.row.insert("last_rotation_at".into(), ts.clone());
        k.row.insert("updated_at".into(), ts);
        let reply = State::generate_reply(&k.row, &secret);
        self.insert_key(k);
        Ok((200, Value::Object(reply)))
    }

    // --- users ------------------------------------------------------------------------------------------------

    fn user_new(&mut self, mut body: Row, now: i64) -> Result<Out, Out> {
        validate(&mut body, USER_FIELDS)?;
        check_budget(&body, "max_budget")?;
        let reset = reset_for(&body, now)?;
        let user_id = str_of(&body, "user_id")
            .filter(|u| !u.is_empty())
            .map_or_else(uuid4, str::to_owned);
        if self.users.contains_key(&user_id) {
            return Err(envelope(
                409,
                &py_err(&format!("User with id {user_id} already exists")),
                "internal_server_error",
                Value::Null,
            ));
        }
        let email = str_of(&body, "user_email").map(str::to_owned);
        if let Some(e) = &email
            && let Some(other) = self.user_by_email(e)
        {
            let stored = self
                .users
                .get(&other)
                .and_then(|u| str_of(&u.row, "user_email"))
                .unwrap_or(e.as_str())
                .to_owned();
            return Err(envelope(
                409,
                &py_err(&format!("User with email {stored} already exists")),
                "internal_server_error",
                Value::Null,
            ));
        }
        let role = body.get("user_role").cloned().unwrap_or_default();
        self.create_user(&user_id, email.as_deref(), role, now);
        if let Some(u) = self.users.get_mut(&user_id) {
            State::apply_user_fields(&mut u.row, &body, now, reset, false);
        }
        // Joins happen after the create, errors swallowed (unknown teams are skipped).
        let teams: Vec<String> = body
            .get("teams")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|t| {
                        t.as_str()
                            .or_else(|| t.get("team_id").and_then(Value::as_str))
                    })
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default();
        for t in &teams {
            let joinable = self
                .teams
                .get(t)
                .is_some_and(|team| !State::is_member(team, &user_id, None));
            if joinable {
                self.add_member(t, &user_id, "user", None, now);
            }
        }
        let auto_key = body
            .get("auto_create_key")
            .and_then(Value::as_bool)
            .unwrap_or(true);
        let mut out = if auto_key {
            // The user's key: no team, the request's metadata, key_type and created_by null.
            let secret = new_secret();
            let key_body: Row = [
                ("user_id", json!(user_id)),
                (
                    "metadata",
                    body.get("metadata").cloned().unwrap_or_else(|| json!({})),
                ),
                (
                    "models",
                    body.get("models").cloned().unwrap_or_else(|| json!([])),
                ),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v))
            .collect();
            let mut row = State::key_row(&key_body, &secret, now, None, None);
            for field in ["key_type", "created_by", "updated_by"] {
                row.insert(field.into(), Value::Null);
            }
            let mut reply = State::generate_reply(&row, &secret);
            for field in ["token", "token_id"] {
                reply.insert(field.into(), Value::Null);
            }
            let seq = self.next_seq();
            self.insert_key(Key { seq, row });
            reply
        } else {
            let mut reply = Map::new();
            for field in [
                "key_name",
                "token",
                "token_id",
                "expires",
                "created_at",
                "updated_at",
                "key_type",
            ] {
                reply.insert(field.into(), Value::Null);
            }
            reply.insert("key".into(), json!(""));
            reply
        };
        out.insert("user_id".into(), json!(user_id));
        out.insert("user_email".into(), opt(email.as_deref()));
        out.insert(
            "user_role".into(),
            body.get("user_role").cloned().unwrap_or_default(),
        );
        out.insert(
            "user_alias".into(),
            body.get("user_alias").cloned().unwrap_or_default(),
        );
        out.insert(
            "max_budget".into(),
            body.get("max_budget").cloned().unwrap_or_default(),
        );
        out.insert(
            "metadata".into(),
            body.get("metadata").cloned().unwrap_or_else(|| json!({})),
        );
        out.insert(
            "teams".into(),
            if teams.is_empty() {
                Value::Null
            } else {
                json!(teams)
            },
        );
        out.insert("team_id".into(), Value::Null);
        Ok((200, Value::Object(out)))
    }

    fn user_info(&self, q: &HashMap<String, String>) -> Result<Out, Out> {
        // Without user_id it answers for the caller: the admin key's user.
        let user_id = q
            .get("user_id")
            .filter(|u| !u.is_empty())
            .map_or(ADMIN_USER, String::as_str);
        let Some(user) = self.users.get(user_id) else {
            return Err(envelope(
                404,
                &format!("User {user_id} not found"),
                "internal_server_error",
                Value::Null,
            ));
        };
        let mut info = user.row.clone();
        info.insert("organization_memberships".into(), json!([]));
        info.insert("model_max_budget_usage".into(), json!({}));
        let keys: Vec<Value> = self
            .key_rows(&self.tokens_of(&self.user_keys, user_id))
            .into_iter()
            .map(|mut k| {
                let alias = k
                    .get("team_id")
                    .and_then(Value::as_str)
                    .and_then(|t| self.teams.get(t))
                    .and_then(|t| t.row.get("team_alias").cloned())
                    .filter(|a| !a.is_null())
                    .unwrap_or_else(|| json!("None"));
                if let Value::Object(m) = &mut k {
                    m.insert("team_alias".into(), alias);
                }
                k
            })
            .collect();
        let teams: Vec<Value> = user
            .row
            .get("teams")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .filter_map(|t| self.teams.get(t))
            .map(|t| {
                let mut row = t.row.clone();
                let mine: Vec<Value> = t
                    .memberships
                    .iter()
                    .filter(|m| str_of(m, "user_id") == Some(user_id))
                    .cloned()
                    .map(Value::Object)
                    .collect();
                row.insert("team_memberships".into(), json!(mine));
                row.insert("keys".into(), json!([]));
                Value::Object(row)
            })
            .collect();
        Ok((
            200,
            json!({"user_id": user_id, "user_info": info, "keys": keys, "teams": teams}),
        ))
    }

    fn user_info_v2(&self, q: &HashMap<String, String>) -> Result<Out, Out> {
        let user_id = q.get("user_id").map_or("", String::as_str);
        let Some(user) = self.users.get(user_id) else {
            return Err(envelope(
                404,
                &format!("User not found: {user_id}"),
                "internal_server_error",
                Value::Null,
            ));
        };
        let mut out = Map::new();
        for field in [
            "user_id",
            "user_email",
            "user_alias",
            "user_role",
            "spend",
            "max_budget",
            "tpm_limit",
            "rpm_limit",
            "models",
            "budget_duration",
            "budget_reset_at",
            "metadata",
            "created_at",
            "updated_at",
            "sso_user_id",
            "teams",
            "model_max_budget",
        ] {
            out.insert(
                field.into(),
                user.row.get(field).cloned().unwrap_or_default(),
            );
        }
        Ok((200, Value::Object(out)))
    }

    fn user_update(&mut self, mut body: Row, now: i64) -> Result<Out, Out> {
        validate(&mut body, USER_FIELDS)?;
        check_budget(&body, "max_budget")?;
        let reset = reset_for(&body, now)?;
        let by_id = str_of(&body, "user_id")
            .filter(|u| !u.is_empty())
            .map(str::to_owned);
        let email = str_of(&body, "user_email").map(str::to_owned);
        let (user_id, bug_reply) = match (by_id, &email) {
            (Some(id), _) => (id, false),
            (None, Some(e)) => match self.user_by_email(e) {
                Some(id) => (id, false),
                // Observed: an unknown email creates the user, then the handler fails with this 400.
                None => (uuid4(), true),
            },
            (None, None) => {
                return Err(envelope(
                    400,
                    &py_err("Either user_id or user_email must be provided"),
                    "internal_server_error",
                    Value::Null,
                ));
            }
        };
        if !self.users.contains_key(&user_id) {
            // Observed: /user/update upserts, an unknown user_id creates the user.
            let email = email.as_deref().filter(|e| self.user_by_email(e).is_none());
            self.create_user(&user_id, email, Value::Null, now);
        } else if let Some(e) = &email
            && self.user_by_email(e).is_none()
        {
            let old = self
                .users
                .get(&user_id)
                .and_then(|u| str_of(&u.row, "user_email"))
                .map(str::to_lowercase);
            if let Some(old) = old {
                self.emails.remove(&old);
            }
            self.emails.insert(e.to_lowercase(), user_id.clone());
            if let Some(u) = self.users.get_mut(&user_id) {
                u.row.insert("user_email".into(), json!(e));
            }
        }
        let Some(user) = self.users.get_mut(&user_id) else {
            return Err(envelope(
                500,
                "user vanished",
                "internal_server_error",
                Value::Null,
            ));
        };
        State::apply_user_fields(&mut user.row, &body, now, reset, true);
        if bug_reply {
            return Err(envelope(
                400,
                "Authentication Error, 'LiteLLM_UserTable' object has no attribute 'get'",
                "auth_error",
                json!("None"),
            ));
        }
        let row = Value::Object(user.row.clone());
        Ok((200, json!({"user_id": user_id, "data": row})))
    }

    fn user_delete(&mut self, mut body: Row) -> Result<Out, Out> {
        validate(&mut body, &[("user_ids", Ty::StrList, true)])?;
        let ids: Vec<String> = str_list(&body, "user_ids");
        if let Some(missing) = ids.iter().find(|id| !self.users.contains_key(*id)) {
            return Err(bare(
                404,
                &format!("User not found, passed user_id={missing}"),
            ));
        }
        let now = now_ms();
        let mut deleted = 0;
        for id in &ids {
            // Cascade: the user's keys are hard-deleted (not archived) and the user leaves every team.
            for token in self.tokens_of(&self.user_keys, id) {
                self.remove_key(&token);
            }
            let teams: Vec<String> = self
                .teams
                .iter()
                .filter(|(_, t)| {
                    State::is_member(t, id, None)
                        || t.memberships
                            .iter()
                            .any(|m| str_of(m, "user_id") == Some(id))
                })
                .map(|(tid, _)| tid.clone())
                .collect();
            for t in teams {
                self.remove_member(&t, id, now);
            }
            if let Some(u) = self.users.remove(id) {
                deleted += 1;
                if let Some(e) = str_of(&u.row, "user_email") {
                    self.emails.remove(&e.to_lowercase());
                }
            }
        }
        Ok((200, json!(deleted)))
    }
}

const PREMIUM_TEAM_ADMIN: &str = "Assigning team admins is a premium feature. You must be a LiteLLM Enterprise user to \
     use this feature. If you have a license please set `LITELLM_LICENSE` in your env. Get a 7 day trial key here: \
     https://www.litellm.ai/enterprise#trial. \nPricing: https://www.litellm.ai/#pricing";

const ENTERPRISE_REGENERATE: &str = "Regenerating Virtual Keys is an Enterprise feature, You must be a LiteLLM \
     Enterprise user to use this feature. If you have a license please set `LITELLM_LICENSE` in your env. Get a 7 \
     day trial key here: https://www.litellm.ai/enterprise#trial. \nPricing: https://www.litellm.ai/#pricing";

fn invalid_key() -> Out {
    envelope(
        401,
        "Authentication Error, Invalid API key provided.",
        "token_not_found_in_db",
        json!("key"),
    )
}

fn require_user_ref(body: &Row) -> Result<(), Out> {
    if str_of(body, "user_id").is_none() && str_of(body, "user_email").is_none() {
        return Err(unprocessable(vec![verr(
            "value_error",
            vec![json!("body")],
            "Value error, Either user id or user email must be provided",
        )]));
    }
    Ok(())
}

/// The member list as Python prints it in "already in team" messages.
fn existing_members(team: &Team) -> String {
    let py = |v: Option<&Value>| match v.and_then(Value::as_str) {
        Some(s) => py_str(s),
        None => "None".to_owned(),
    };
    let items: Vec<String> = team
        .row
        .get("members_with_roles")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|m| {
            format!(
                "Member(user_id={}, user_email={}, role={})",
                py(m.get("user_id")),
                py(m.get("user_email")),
                py(m.get("role"))
            )
        })
        .collect();
    format!("[{}]", items.join(", "))
}

// ---------------------------------------------------------------------------------------------------------------
// Identifiers and secrets
// ---------------------------------------------------------------------------------------------------------------

/// The strings of the list field `field` of a request body (absent or not a list: none).
fn str_list(body: &Row, field: &str) -> Vec<String> {
    body.get(field)
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}

pub fn sha256_hex(s: &str) -> String {
    hex::encode(Sha256::digest(s.as_bytes()))
}

/// A server-made secret: `sk-` plus 22 URL-safe characters.
fn new_secret() -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut rng = rand::rng();
    let tail: String = (0..22)
        .map(|_| char::from(ALPHABET[rng.random_range(0..ALPHABET.len())]))
        .collect();
    format!("sk-{tail}")
}

fn uuid4() -> String {
    let mut b: [u8; 16] = rand::random();
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h = hex::encode(b);
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

// ---------------------------------------------------------------------------------------------------------------
// Time: UTC timestamps in milliseconds, durations and budget windows as LiteLLM computes them
// ---------------------------------------------------------------------------------------------------------------

const SECOND: i64 = 1_000;
const MINUTE: i64 = 60 * SECOND;
const HOUR: i64 = 60 * MINUTE;
const DAY: i64 = 24 * HOUR;

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = (if y >= 0 { y } else { y - 399 }) / 400;
    let yoe = y - era * 400;
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = (if z >= 0 { z } else { z - 146_096 }) / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = u32::try_from(doy - (153 * mp + 2) / 5 + 1).unwrap_or(1);
    let m = u32::try_from(if mp < 10 { mp + 3 } else { mp - 9 }).unwrap_or(1);
    (if m <= 2 { y + 1 } else { y }, m, d)
}

fn days_in_month(y: i64, m: u32) -> u32 {
    let (ny, nm) = if m == 12 { (y + 1, 1) } else { (y, m + 1) };
    u32::try_from(days_from_civil(ny, nm, 1) - days_from_civil(y, m, 1)).unwrap_or(28)
}

/// `2026-11-28T01:40:12.679000Z`: millisecond precision, as the gateway stores timestamps; like Python's
/// `isoformat()`, a whole second has no fraction (`2026-12-01T00:00:00Z`).
fn fmt_ts(ms: i64) -> String {
    let (y, mo, d) = civil_from_days(ms.div_euclid(DAY));
    let r = ms.rem_euclid(DAY);
    let (h, mi, s, milli) = (r / HOUR, r % HOUR / MINUTE, r % MINUTE / SECOND, r % SECOND);
    if milli == 0 {
        format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}Z")
    } else {
        format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}.{milli:03}000Z")
    }
}

/// Parses RFC 3339 (`…Z` or `…±hh:mm`, any fraction) into milliseconds.
fn parse_ts(s: &str) -> Option<i64> {
    let (date, time) = s.split_once(['T', ' '])?;
    let mut dp = date.splitn(3, '-');
    let y: i64 = dp.next()?.parse().ok()?;
    let mo: u32 = dp.next()?.parse().ok()?;
    let d: u32 = dp.next()?.parse().ok()?;
    let (clock, offset_ms) = if let Some(c) = time.strip_suffix('Z') {
        (c, 0)
    } else {
        let idx = time.rfind(['+', '-'])?;
        let (c, off) = time.split_at(idx);
        let sign = if off.starts_with('-') { -1 } else { 1 };
        let (oh, om) = off[1..].split_once(':')?;
        (
            c,
            sign * (oh.parse::<i64>().ok()? * HOUR + om.parse::<i64>().ok()? * MINUTE),
        )
    };
    let (hms, frac) = clock.split_once('.').unwrap_or((clock, ""));
    let mut tp = hms.splitn(3, ':');
    let h: i64 = tp.next()?.parse().ok()?;
    let mi: i64 = tp.next()?.parse().ok()?;
    let sec: i64 = tp.next()?.parse().ok()?;
    let millis: i64 = format!("{frac:0<3}").get(..3)?.parse().ok()?;
    if !(1..=12).contains(&mo) || d == 0 || d > 31 {
        return None;
    }
    Some(
        days_from_civil(y, mo, d) * DAY + h * HOUR + mi * MINUTE + sec * SECOND + millis
            - offset_ms,
    )
}

fn add_months(ms: i64, months: i64) -> i64 {
    let (y, m, d) = civil_from_days(ms.div_euclid(DAY));
    let total = y * 12 + i64::from(m) - 1 + months;
    let ny = total.div_euclid(12);
    let nm = u32::try_from(total.rem_euclid(12) + 1).unwrap_or(1);
    days_from_civil(ny, nm, d.min(days_in_month(ny, nm))) * DAY + ms.rem_euclid(DAY)
}

fn normalize_duration(d: &str) -> String {
    match d.trim().to_lowercase().as_str() {
        "hourly" => "1h".to_owned(),
        "daily" => "24h".to_owned(),
        "weekly" => "7d".to_owned(),
        "monthly" => "30d".to_owned(),
        _ => d.to_owned(),
    }
}

/// LiteLLM's `duration_in_seconds`, in milliseconds: `s`, `m` = minutes, `h`, `d`, `w`, `mo` = calendar months.
fn duration_ms(now: i64, duration: &str) -> Result<i64, String> {
    let norm = normalize_duration(duration);
    let digits: String = norm.chars().take_while(char::is_ascii_digit).collect();
    let value: i64 = digits
        .parse()
        .map_err(|_| "Invalid duration format".to_owned())?;
    let rest = &norm[digits.len()..];
    let unit = if rest.starts_with("mo") {
        "mo"
    } else {
        rest.get(..1).filter(|u| "smhdw".contains(*u)).unwrap_or("")
    };
    let per = match unit {
        "s" => SECOND,
        "m" => MINUTE,
        "h" => HOUR,
        "d" => DAY,
        "w" => 7 * DAY,
        "mo" => return Ok(add_months(now, value) - now),
        _ => {
            return Err(format!(
                "Unsupported duration unit, passed duration: {duration}"
            ));
        }
    };
    value
        .checked_mul(per)
        .ok_or_else(|| "Invalid duration format".to_owned())
}

/// LiteLLM's standardised `budget_reset_at` (UTC, midnight resets), or None for a duration it refuses.
fn budget_reset_at(now: i64, duration: &str) -> Option<i64> {
    if duration_ms(now, duration).ok()? <= 0 {
        return None;
    }
    let norm = normalize_duration(duration);
    let digits: String = norm.chars().take_while(char::is_ascii_digit).collect();
    let value: i64 = digits.parse().ok()?;
    let unit: String = norm[digits.len()..]
        .chars()
        .take_while(char::is_ascii_lowercase)
        .collect();
    let day = now.div_euclid(DAY);
    let midnight = day * DAY;
    let in_day = now - midnight;
    let next_month = || {
        let (y, m, _) = civil_from_days(day);
        let first = days_from_civil(y, m, 1) * DAY;
        if first > now {
            first
        } else {
            add_months(first, 1)
        }
    };
    let days = |v: i64| match v {
        1 => midnight + DAY,
        7 => {
            let weekday = (day + 3).rem_euclid(7); // Monday = 0
            let monday = midnight + (7 - weekday) % 7 * DAY;
            if monday > now {
                monday
            } else {
                monday + 7 * DAY
            }
        }
        30 => next_month(),
        v => midnight + v * DAY,
    };
    // Next multiple of `v` units within the enclosing hour (minutes), minute (seconds) or day (hours), carried
    // upward; past midnight it wraps to the next day, as LiteLLM's _handle_*_reset do.
    let (h, mi, s) = (
        in_day / HOUR,
        in_day % HOUR / MINUTE,
        in_day % MINUTE / SECOND,
    );
    let at = |nh: i64, nm: i64, ns: i64| {
        let within = nm * MINUTE + ns * SECOND;
        if nh >= 24 {
            midnight + DAY + nh % 24 * HOUR + within
        } else {
            midnight + nh * HOUR + within
        }
    };
    let next = |cur: i64, v: i64| cur + v - cur % v;
    Some(match unit.as_str() {
        "d" => days(value),
        "w" => days(value * 7),
        "h" => at(next(h, value), 0, 0),
        "m" => {
            let nm = next(mi, value);
            at(h + nm / 60, nm % 60, 0)
        }
        "s" => {
            let ns = next(s, value);
            let nm = mi + ns / 60;
            at(h + nm / 60, nm % 60, ns % 60)
        }
        "mo" if value == 1 => next_month(),
        "mo" => return None,
        _ => midnight + DAY,
    })
}

// ---------------------------------------------------------------------------------------------------------------
// Proxy config
// ---------------------------------------------------------------------------------------------------------------

/// LiteLLM 1.108.7's `AlertType` values.
const ALERT_TYPES: &[&str] = &[
    "llm_exceptions",
    "llm_too_slow",
    "llm_requests_hanging",
    "budget_alerts",
    "spend_reports",
    "failed_tracking_spend",
    "user_spend_thresholds",
    "user_spend_anomalies",
    "db_exceptions",
    "daily_reports",
    "cooldown_deployment",
    "new_model_added",
    "model_deprecation_warnings",
    "outage_alerts",
    "region_outage_alerts",
    "fallback_reports",
    "new_virtual_key_created",
    "virtual_key_updated",
    "virtual_key_deleted",
    "new_team_created",
    "team_updated",
    "team_deleted",
    "new_internal_user_created",
    "internal_user_updated",
    "internal_user_deleted",
    "mcp_tool_description_blocked",
    "mcp_pinned_tools_changed",
];

/// `POST /config/update`. Observed on 1.108.7 (with `STORE_MODEL_IN_DB=False`): 200 `{"message":"Config updated
/// successfully"}`, the sections merged per key into the `LiteLLM_Config` table; 422 for a non-object section or an
/// unknown alert type. Only `general_settings` is checked here.
fn config_update(body: &Row) -> Result<Out, Out> {
    let settings = match body.get("general_settings") {
        None | Some(Value::Null) => None,
        Some(Value::Object(m)) => Some(m),
        Some(_) => {
            return Err(unprocessable(vec![verr(
                "model_attributes_type",
                vec![json!("body"), json!("general_settings")],
                "Input should be a valid dictionary or object to extract fields from",
            )]));
        }
    };
    let alert_types = settings
        .and_then(|m| m.get("alert_types"))
        .and_then(Value::as_array);
    let mut errors = Vec::new();
    for (i, t) in alert_types.into_iter().flatten().enumerate() {
        if !t.as_str().is_some_and(|t| ALERT_TYPES.contains(&t)) {
            let allowed: Vec<String> = ALERT_TYPES.iter().map(|t| format!("'{t}'")).collect();
            errors.push(verr(
                "enum",
                vec![
                    json!("body"),
                    json!("general_settings"),
                    json!("alert_types"),
                    json!(i),
                ],
                &format!("Input should be {}", allowed.join(", ")),
            ));
        }
    }
    if !errors.is_empty() {
        return Err(unprocessable(errors));
    }
    Ok((200, json!({"message": "Config updated successfully"})))
}
