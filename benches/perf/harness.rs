//! What every scenario shares: settings from the environment, the machine, result tables, object builders, bulk
//! creation, the operator binary, and a watch-based tracker that timestamps readiness and counts Kubernetes writes.
use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt::Debug;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::api::events::v1::Event;
use kube::api::PostParams;
use kube::runtime::watcher;
use kube::{Api, Client, Resource, ResourceExt};
use routero_operator::crd::common::is_ready;
use routero_operator::crd::{RouteroKey, RouteroTeam};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::json;
use tokio::sync::Notify;
use tokio::task::JoinHandle;

use crate::support::fake_gateway::FakeGateway;
use crate::support::testbed::GatewayTarget;

/// A setting from the environment, or its default.
pub fn env_or<T: FromStr>(name: &str, default: T) -> T {
    match std::env::var(name) {
        Ok(v) => v
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("{name}={v:?} is not a valid value")),
        Err(_) => default,
    }
}

/// nproc, CPU model, memory and kernel, from /proc.
/// The operator source measured: the commit, and whether src/ differs from it.
pub fn source() -> String {
    let git = |args: &[&str]| {
        std::process::Command::new("git")
            .args(["--no-optional-locks", "-C", env!("CARGO_MANIFEST_DIR")])
            .args(args)
            .output()
            .ok()
    };
    let commit = git(&["rev-parse", "--short", "HEAD"])
        .filter(|o| o.status.success())
        .map_or("unknown".to_owned(), |o| {
            String::from_utf8_lossy(&o.stdout).trim().to_owned()
        });
    let dirty =
        git(&["diff", "--quiet", "HEAD", "--", "src"]).is_some_and(|o| o.status.code() == Some(1));
    if dirty {
        format!("{commit} with uncommitted changes in src/")
    } else {
        commit
    }
}

pub fn machine() -> String {
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split_once(':'))
        .map_or("unknown", |(_, m)| m.trim())
        .to_owned();
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let mem_kib: u64 = meminfo
        .lines()
        .find(|l| l.starts_with("MemTotal:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    format!(
        "{cpus} CPUs ({model}), {:.1} GiB RAM, Linux {}",
        mem_kib as f64 / 1024.0 / 1024.0,
        kernel.trim()
    )
}

/// A fixed-width text table.
pub struct Table {
    header: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new(header: &[&str]) -> Self {
        Self {
            header: header.iter().map(|h| (*h).to_owned()).collect(),
            rows: Vec::new(),
        }
    }

    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    pub fn print(&self) {
        let widths: Vec<usize> = (0..self.header.len())
            .map(|i| {
                self.rows
                    .iter()
                    .filter_map(|r| r.get(i))
                    .chain([&self.header[i]])
                    .map(|c| c.chars().count())
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        let line = |cells: &[String]| {
            let padded: Vec<String> = cells
                .iter()
                .zip(&widths)
                .map(|(c, w)| format!("{c:<w$}"))
                .collect();
            println!("| {} |", padded.join(" | "));
        };
        line(&self.header);
        let rule: Vec<String> = widths.iter().map(|w| "-".repeat(*w)).collect();
        println!("|-{}-|", rule.join("-|-"));
        for r in &self.rows {
            line(r);
        }
        println!();
    }
}

/// Order statistics of a set of durations.
pub struct Stats(Vec<Duration>);

impl Stats {
    pub fn new(mut samples: Vec<Duration>) -> Self {
        samples.sort();
        Self(samples)
    }

    /// The sample at quantile `q` (nearest rank).
    pub fn quantile(&self, q: f64) -> Duration {
        if self.0.is_empty() {
            return Duration::ZERO;
        }
        let rank = (q * self.0.len() as f64).ceil() as usize;
        self.0[rank.clamp(1, self.0.len()) - 1]
    }

    pub fn median(&self) -> Duration {
        self.quantile(0.5)
    }

    pub fn min(&self) -> Duration {
        self.0.first().copied().unwrap_or_default()
    }

    pub fn max(&self) -> Duration {
        self.0.last().copied().unwrap_or_default()
    }
}

pub fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

pub fn secs(d: Duration) -> String {
    format!("{:.1} s", d.as_secs_f64())
}

pub fn target(fake: &FakeGateway) -> GatewayTarget {
    GatewayTarget::fake(fake)
}

pub fn total(counts: &BTreeMap<String, u64>) -> u64 {
    counts.values().sum()
}

/// Gateway calls that change state (everything but GET).
pub fn gateway_writes(counts: &BTreeMap<String, u64>) -> u64 {
    counts
        .iter()
        .filter(|(k, _)| !k.starts_with("GET "))
        .map(|(_, v)| v)
        .sum()
}

pub fn team(name: &str) -> RouteroTeam {
    serde_json::from_value(json!({
        "apiVersion": "routero.ai/v1alpha1", "kind": "RouteroTeam",
        "metadata": {"name": name},
        "spec": {"maxBudget": 100, "budgetDuration": "30d", "models": []},
    }))
    .expect("team")
}

pub fn key(name: &str, team: &str) -> RouteroKey {
    serde_json::from_value(json!({
        "apiVersion": "routero.ai/v1alpha1", "kind": "RouteroKey",
        "metadata": {"name": name},
        "spec": {"teamRef": {"name": team}, "maxBudget": 10},
    }))
    .expect("key")
}

/// Teams `team-00`..; key `key-<i>` belongs to team `i % teams`.
pub fn fleet(teams: usize, keys: usize) -> (Vec<RouteroTeam>, Vec<RouteroKey>) {
    let team_names: Vec<String> = (0..teams).map(|i| format!("team-{i:02}")).collect();
    let t = team_names.iter().map(|n| team(n)).collect();
    let k = (0..keys)
        .map(|i| key(&format!("key-{i:05}"), &team_names[i % teams]))
        .collect();
    (t, k)
}

/// Creates the [`fleet`] of `teams` and `keys` in `ns` (teams first), with `concurrency` requests in flight.
pub async fn create_fleet(
    client: &Client,
    ns: &str,
    teams: usize,
    keys: usize,
    concurrency: usize,
) -> Duration {
    let (team_objs, key_objs) = fleet(teams, keys);
    create_all(
        &Api::<RouteroTeam>::namespaced(client.clone(), ns),
        team_objs,
        concurrency,
    )
    .await
        + create_all(
            &Api::<RouteroKey>::namespaced(client.clone(), ns),
            key_objs,
            concurrency,
        )
        .await
}

/// Creates the objects with `concurrency` requests in flight.
pub async fn create_all<K>(api: &Api<K>, objects: Vec<K>, concurrency: usize) -> Duration
where
    K: Resource + Clone + DeserializeOwned + Serialize + Debug,
{
    let start = Instant::now();
    futures::stream::iter(objects)
        .map(|obj| create_one(api, obj))
        .buffer_unordered(concurrency)
        .collect::<()>()
        .await;
    start.elapsed()
}

/// Creates one object; one that already exists counts as created, a transient failure is retried.
pub async fn create_one<K>(api: &Api<K>, obj: K)
where
    K: Resource + Clone + DeserializeOwned + Serialize + Debug,
{
    let mut attempt = 0;
    loop {
        match api.create(&PostParams::default(), &obj).await {
            Ok(_) => return,
            Err(kube::Error::Api(e)) if e.code == 409 => return,
            Err(e) if attempt < 5 => {
                attempt += 1;
                eprintln!("create {}: {e}; retrying", obj.name_any());
                tokio::time::sleep(Duration::from_millis(200 * attempt)).await;
            }
            Err(e) => panic!("create {}: {e}", obj.name_any()),
        }
    }
}

/// The operator binary run as a process: `ROUTERO_BENCH_BIN` (scripts/bench.sh copies the `cargo build --release`
/// binary there), else the one Cargo built for this bench (same profile, but its features are unified with the
/// dev-dependencies', so it is not the shipped binary).
pub fn operator_binary() -> (PathBuf, &'static str) {
    match std::env::var_os("ROUTERO_BENCH_BIN") {
        Some(p) => (PathBuf::from(p), "cargo build --release"),
        None => (
            PathBuf::from(env!("CARGO_BIN_EXE_routero-operator")),
            "bench profile (dev-dependency features)",
        ),
    }
}

/// `VmRSS` and `VmHWM` of a process, in KiB.
pub fn rss_kib(pid: u32) -> Option<(u64, u64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<u64>().ok())
    };
    Some((field("VmRSS:")?, field("VmHWM:")?))
}

/// The operator's warnings since the last call (see `warnings`), as a table.
pub fn print_warnings(when: &str) {
    let w = crate::warnings::take();
    if w.is_empty() {
        println!("Operator warnings {when}: none\n");
        return;
    }
    println!("Operator warnings {when}:");
    let mut t = Table::new(&["warning", "count"]);
    for (k, v) in w {
        t.row(vec![k, v.to_string()]);
    }
    t.print();
}

pub fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

// ---------------------------------------------------------------------------------------------------------------
// Tracker: what a user watching the namespace sees, timestamped on arrival
// ---------------------------------------------------------------------------------------------------------------

#[derive(Default)]
struct Seen {
    /// When each RouteroKey / RouteroTeam was first seen Ready for its generation.
    keys_ready: HashMap<String, Instant>,
    teams_ready: HashMap<String, Instant>,
    /// When each workload Secret first held a key (the `routero.ai/key-id` annotation and data).
    delivered: HashMap<String, Instant>,
    /// Kubernetes writes seen through the watches since the last `take_writes`, by kind and what changed.
    writes: BTreeMap<String, u64>,
    /// The last seen finalizers and status of each RouteroKey, to tell a finalizer write from a status write.
    key_state: HashMap<String, (Vec<String>, serde_json::Value)>,
    secrets: HashSet<String>,
    events: HashSet<String>,
}

/// Watches RouteroKeys, RouteroTeams, Secrets and Events of one namespace.
pub struct Tracker {
    seen: Arc<Mutex<Seen>>,
    changed: Arc<Notify>,
    tasks: Vec<JoinHandle<()>>,
}

impl Tracker {
    /// Starts the watches and returns once each has listed what exists, so later events are writes.
    pub async fn start(client: &Client, ns: &str) -> Tracker {
        let seen = Arc::new(Mutex::new(Seen::default()));
        let changed = Arc::new(Notify::new());
        let (keys_done, keys) = watch(
            Api::<RouteroKey>::namespaced(client.clone(), ns),
            seen.clone(),
            changed.clone(),
            on_key,
        );
        let (teams_done, teams) = watch(
            Api::<RouteroTeam>::namespaced(client.clone(), ns),
            seen.clone(),
            changed.clone(),
            on_team,
        );
        let (secrets_done, secrets) = watch(
            Api::<Secret>::namespaced(client.clone(), ns),
            seen.clone(),
            changed.clone(),
            on_secret,
        );
        let (events_done, events) = watch(
            Api::<Event>::namespaced(client.clone(), ns),
            seen.clone(),
            changed.clone(),
            on_event,
        );
        for done in [keys_done, teams_done, secrets_done, events_done] {
            tokio::time::timeout(Duration::from_secs(120), done)
                .await
                .expect("tracker: initial list in time")
                .expect("tracker: watch started");
        }
        Tracker {
            seen,
            changed,
            tasks: vec![keys, teams, secrets, events],
        }
    }

    fn seen(&self) -> MutexGuard<'_, Seen> {
        self.seen.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub fn key_ready_at(&self, name: &str) -> Option<Instant> {
        self.seen().keys_ready.get(name).copied()
    }

    pub fn team_ready_at(&self, name: &str) -> Option<Instant> {
        self.seen().teams_ready.get(name).copied()
    }

    pub fn delivered_at(&self, name: &str) -> Option<Instant> {
        self.seen().delivered.get(name).copied()
    }

    /// RouteroKeys the watch has seen (created and not deleted).
    pub fn keys_seen(&self) -> usize {
        self.seen().key_state.len()
    }

    pub fn keys_ready(&self) -> usize {
        self.seen().keys_ready.len()
    }

    pub fn teams_ready(&self) -> usize {
        self.seen().teams_ready.len()
    }

    /// The times keys turned Ready, sorted.
    pub fn key_ready_times(&self) -> Vec<Instant> {
        let mut t: Vec<Instant> = self.seen().keys_ready.values().copied().collect();
        t.sort();
        t
    }

    /// Kubernetes writes seen since the last call, by kind; resets the count.
    pub fn take_writes(&self) -> BTreeMap<String, u64> {
        std::mem::take(&mut self.seen().writes)
    }

    /// Waits until `done` holds (true) or `timeout` passes (false), re-checking on every watch event and at least
    /// every `tick`, which also runs `progress`.
    pub async fn wait(
        &self,
        timeout: Duration,
        tick: Duration,
        mut done: impl FnMut(&Tracker) -> bool,
        mut progress: impl FnMut(&Tracker),
    ) -> bool {
        let deadline = Instant::now() + timeout;
        let mut next_tick = Instant::now() + tick;
        loop {
            let notified = self.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if done(self) {
                return true;
            }
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            if now >= next_tick {
                progress(self);
                next_tick = now + tick;
            }
            let wake = deadline.min(next_tick);
            let _ = tokio::time::timeout(wake - now, notified).await;
        }
    }
}

impl Drop for Tracker {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

type Handler<K> = fn(&mut Seen, &K, Change);

#[derive(Clone, Copy, PartialEq, Eq)]
enum Change {
    /// Listed when the watch (re)started: state, not a write.
    Listed,
    Applied,
    Deleted,
}

/// A watch task feeding `handler`; the receiver resolves once the first list is complete.
fn watch<K>(
    api: Api<K>,
    seen: Arc<Mutex<Seen>>,
    changed: Arc<Notify>,
    handler: Handler<K>,
) -> (tokio::sync::oneshot::Receiver<()>, JoinHandle<()>)
where
    K: Resource + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
{
    let (tx, rx) = tokio::sync::oneshot::channel();
    let task = tokio::spawn(async move {
        let mut tx = Some(tx);
        let mut events = std::pin::pin!(resilient_watch(api, watcher::Config::default()));
        while let Some(next) = events.next().await {
            // Errors are retried with backoff inside the stream.
            let Ok(event) = next else { continue };
            {
                let mut s = seen.lock().unwrap_or_else(PoisonError::into_inner);
                match &event {
                    watcher::Event::InitApply(o) => handler(&mut s, o, Change::Listed),
                    watcher::Event::Apply(o) => handler(&mut s, o, Change::Applied),
                    watcher::Event::Delete(o) => handler(&mut s, o, Change::Deleted),
                    watcher::Event::Init | watcher::Event::InitDone => {}
                }
            }
            if matches!(event, watcher::Event::InitDone)
                && let Some(tx) = tx.take()
            {
                let _ = tx.send(());
            }
            changed.notify_waiters();
        }
    });
    (rx, task)
}

/// A watcher that rides out API-server hiccups (the big scenarios load it hard) instead of ending.
fn resilient_watch<K>(
    api: Api<K>,
    config: watcher::Config,
) -> impl futures::Stream<Item = Result<watcher::Event<K>, watcher::Error>> + Send
where
    K: Resource + Clone + DeserializeOwned + Debug + Send + 'static,
{
    use kube::runtime::WatchStreamExt;
    watcher::watcher(api, config).default_backoff()
}

fn count(s: &mut Seen, what: String) {
    *s.writes.entry(what).or_insert(0) += 1;
}

fn on_key(s: &mut Seen, k: &RouteroKey, change: Change) {
    let name = k.name_any();
    let status = serde_json::to_value(&k.status).unwrap_or_default();
    let state = (k.finalizers().to_vec(), status);
    if change == Change::Deleted {
        count(s, "RouteroKey deleted".into());
        s.key_state.remove(&name);
        return;
    }
    if change == Change::Applied {
        let what = match s.key_state.get(&name) {
            None => "created (by the bench)",
            Some((f, _)) if *f != state.0 => "finalizers",
            Some((_, st)) if *st != state.1 => "status",
            Some(_) => "other",
        };
        count(s, format!("RouteroKey {what}"));
    }
    s.key_state.insert(name.clone(), state);
    let ready = k
        .status
        .as_ref()
        .is_some_and(|st| is_ready(&st.conditions, k.metadata.generation));
    if ready {
        s.keys_ready.entry(name).or_insert_with(Instant::now);
    }
}

fn on_team(s: &mut Seen, t: &RouteroTeam, change: Change) {
    match change {
        Change::Listed => {}
        Change::Applied => count(s, "RouteroTeam applied".into()),
        Change::Deleted => {
            count(s, "RouteroTeam deleted".into());
            return;
        }
    }
    let ready = t
        .status
        .as_ref()
        .is_some_and(|st| is_ready(&st.conditions, t.metadata.generation));
    if ready {
        s.teams_ready
            .entry(t.name_any())
            .or_insert_with(Instant::now);
    }
}

fn on_secret(s: &mut Seen, secret: &Secret, change: Change) {
    let name = secret.name_any();
    let kind = if name.starts_with("routero-pending-") {
        "pending Secret"
    } else {
        "Secret"
    };
    match change {
        Change::Listed => {
            s.secrets.insert(name.clone());
        }
        Change::Applied => {
            let what = if s.secrets.insert(name.clone()) {
                "created"
            } else {
                "updated"
            };
            count(s, format!("{kind} {what}"));
        }
        Change::Deleted => {
            s.secrets.remove(&name);
            count(s, format!("{kind} deleted"));
            return;
        }
    }
    let holds_key = kind == "Secret"
        && secret.annotations().contains_key("routero.ai/key-id")
        && secret.data.as_ref().is_some_and(|d| !d.is_empty());
    if holds_key {
        s.delivered.entry(name).or_insert_with(Instant::now);
    }
}

fn on_event(s: &mut Seen, e: &Event, change: Change) {
    let name = e.name_any();
    match change {
        Change::Listed => {
            s.events.insert(name);
        }
        Change::Applied => {
            let what = if s.events.insert(name) {
                "Event created"
            } else {
                "Event updated"
            };
            count(s, what.into());
        }
        Change::Deleted => {
            s.events.remove(&name);
        }
    }
}

/// Median latency of `n` sequential Secret creates (each one Kubernetes write), in a namespace of its own.
pub async fn k8s_write_latency(client: &Client, ns: &str, n: usize) -> Duration {
    let api: Api<Secret> = Api::namespaced(client.clone(), ns);
    let mut samples = Vec::with_capacity(n);
    for i in 0..n {
        let s: Secret = serde_json::from_value(json!({
            "metadata": {"name": format!("probe-{i}")},
            "stringData": {"apiKey": "sk-probe-0123456789abcdef0123456789abcdef"},
        }))
        .expect("probe secret");
        let start = Instant::now();
        api.create(&PostParams::default(), &s)
            .await
            .expect("create probe Secret");
        samples.push(start.elapsed());
    }
    Stats::new(samples).median()
}

/// Median round trip of `n` sequential gateway requests (a cheap GET) from a plain HTTP client.
pub async fn gateway_rtt(fake: &FakeGateway, n: usize) -> Duration {
    let http = reqwest::Client::new();
    let url = format!("{}/health/liveliness", fake.url);
    let mut samples = Vec::with_capacity(n);
    for _ in 0..n {
        let start = Instant::now();
        http.get(&url)
            .send()
            .await
            .expect("gateway probe")
            .bytes()
            .await
            .expect("gateway probe body");
        samples.push(start.elapsed());
    }
    Stats::new(samples).median()
}
