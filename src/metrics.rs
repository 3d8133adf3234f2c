//! Prometheus metrics, served as OpenMetrics text on `/metrics`. One registry per operator instance, so two
//! operators in one process (the tests) never mix their series.
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use kube::ResourceExt;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use crate::crd::common::condition;
use crate::crd::{RouteroKey, RouteroKeyStatus, RouteroTeam, RouteroTeamStatus};
use crate::error::Error;
use crate::gateway::client::GatewayObserver;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabels {
    kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ErrorLabels {
    kind: String,
    /// The condition reason the failure is reported with (`GatewayUnavailable`, ...).
    reason: &'static str,
    /// The error's `metric_label()` (`gateway_http_503`, `kube`, ...).
    error: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct GatewayLabels {
    /// The route, such as `/key/info`: fixed paths only, never an id.
    endpoint: String,
    /// The HTTP status, or `transport` when no answer came.
    status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TeamLabels {
    namespace: String,
    team_id: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct GatewayInfoLabels {
    /// The LiteLLM release the gateway reports, or `unknown`.
    version: String,
    /// `true` within the range the operator was tested on.
    tested: String,
}

/// One RouteroKey: its namespace, resource name and gateway team. Bounded by the RouteroKeys the operator manages
/// (never a key value, hash or alias chosen on the gateway). The values are shared (`Arc<str>`): with 10,000 keys
/// each key's labels sit in five maps, and owned `String`s cost five copies of each (about 0.9 KiB per key in the
/// P4 heap profile); shared, a key's own name is its one allocation, and namespaces, teams and reasons are shared
/// by all keys that have them.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KeyLabels {
    namespace: Arc<str>,
    key: Arc<str>,
    team_id: Arc<str>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KeyStateLabels {
    namespace: Arc<str>,
    key: Arc<str>,
    team_id: Arc<str>,
    /// The `Ready` condition's reason (`Issued`, `Conflict`, `Forbidden`, ...): one series per key at a time.
    reason: Arc<str>,
}

impl KeyStateLabels {
    fn series(&self) -> KeyLabels {
        KeyLabels {
            namespace: self.namespace.clone(),
            key: self.key.clone(),
            team_id: self.team_id.clone(),
        }
    }
}

/// The labels each key's `key_ready` series carries now, by namespace and key name (so that a lookup borrows the
/// key's own strings and allocates nothing), and the shared label values.
#[derive(Default)]
struct KeyStates {
    by_namespace: HashMap<Arc<str>, HashMap<Arc<str>, KeyStateLabels>>,
    /// Team ids and reasons, one `Arc` per distinct value. Pruned of values no series holds any more whenever it
    /// has doubled since the last pruning, so deleted teams do not accumulate.
    values: HashSet<Arc<str>>,
    pruned_at: usize,
}

impl KeyStates {
    fn shared(&mut self, value: &str) -> Arc<str> {
        if let Some(v) = self.values.get(value) {
            return v.clone();
        }
        if self.values.len() >= 2 * self.pruned_at.max(64) {
            // Held only here: no series carries it any more.
            self.values.retain(|v| Arc::strong_count(v) > 1);
            self.pruned_at = self.values.len();
        }
        let v: Arc<str> = Arc::from(value);
        self.values.insert(v.clone());
        v
    }

    fn get(&self, namespace: &str, key: &str) -> Option<&KeyStateLabels> {
        self.by_namespace.get(namespace)?.get(key)
    }

    fn insert(&mut self, state: KeyStateLabels) {
        self.by_namespace
            .entry(state.namespace.clone())
            .or_default()
            .insert(state.key.clone(), state);
    }

    fn remove(&mut self, namespace: &str, key: &str) -> Option<KeyStateLabels> {
        let keys = self.by_namespace.get_mut(namespace)?;
        let old = keys.remove(key);
        if keys.is_empty() {
            self.by_namespace.remove(namespace);
        }
        old
    }
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;
type FloatGauge = Gauge<f64, AtomicU64>;

/// Reconciles take from milliseconds (a no-op diff) to many seconds (a gateway outage with retries).
fn reconcile_histogram() -> Histogram {
    Histogram::new([0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0])
}

fn gateway_histogram() -> Histogram {
    Histogram::new([
        0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
    ])
}

pub struct Metrics {
    registry: Registry,
    reconciliations: Family<KindLabels, Counter>,
    reconcile_duration: HistogramFamily<KindLabels>,
    reconcile_errors: Family<ErrorLabels, Counter>,
    gateway_duration: HistogramFamily<GatewayLabels>,
    team_spend: Family<TeamLabels, FloatGauge>,
    team_budget: Family<TeamLabels, FloatGauge>,
    team_reset: Family<TeamLabels, FloatGauge>,
    team_daily_spend: Family<TeamLabels, FloatGauge>,
    key_spend: Family<KeyLabels, FloatGauge>,
    key_expiry: Family<KeyLabels, FloatGauge>,
    key_rotation_due: Family<KeyLabels, FloatGauge>,
    key_ready: Family<KeyStateLabels, Gauge>,
    /// The labels each key's `key_ready` series carries now, so a changed reason replaces the old series.
    key_states: Mutex<KeyStates>,
    rotations: Counter,
    revocations: Counter,
    alerting_applied: Gauge,
    alerting_errors: Counter,
    leader: Gauge,
    gateway_info: Family<GatewayInfoLabels, Gauge>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("routero");
        let reconciliations = Family::<KindLabels, Counter>::default();
        registry.register(
            "reconciliations",
            "Reconciles run, per kind",
            reconciliations.clone(),
        );
        let reconcile_duration: HistogramFamily<KindLabels> =
            Family::new_with_constructor(reconcile_histogram);
        registry.register_with_unit(
            "reconcile_duration",
            "Time one reconcile took, per kind",
            Unit::Seconds,
            reconcile_duration.clone(),
        );
        let reconcile_errors = Family::<ErrorLabels, Counter>::default();
        registry.register(
            "reconcile_errors",
            "Failed reconciles, per kind, condition reason and error",
            reconcile_errors.clone(),
        );
        let gateway_duration: HistogramFamily<GatewayLabels> =
            Family::new_with_constructor(gateway_histogram);
        registry.register_with_unit(
            "gateway_request_duration",
            "Gateway admin API requests: latency per endpoint and HTTP status (or transport)",
            Unit::Seconds,
            gateway_duration.clone(),
        );
        let team_spend = Family::<TeamLabels, FloatGauge>::default();
        registry.register(
            "team_spend_usd",
            "Spend of each gateway team in its current budget window, as last read from the gateway",
            team_spend.clone(),
        );
        let team_budget = Family::<TeamLabels, FloatGauge>::default();
        registry.register(
            "team_max_budget_usd",
            "Budget of each gateway team per budget window (absent: no budget)",
            team_budget.clone(),
        );
        let team_reset = Family::<TeamLabels, FloatGauge>::default();
        registry.register(
            "team_budget_reset_timestamp_seconds",
            "When the gateway next resets the team's spend (Unix time; absent: no budget window)",
            team_reset.clone(),
        );
        let team_daily_spend = Family::<TeamLabels, FloatGauge>::default();
        registry.register(
            "team_daily_spend_usd",
            "Spend of each gateway team today (UTC), from the gateway's daily activity table where it serves one",
            team_daily_spend.clone(),
        );
        let key_spend = Family::<KeyLabels, FloatGauge>::default();
        registry.register(
            "key_spend_usd",
            "Spend of each key the operator manages (one series per RouteroKey), as last read from the gateway",
            key_spend.clone(),
        );
        let key_expiry = Family::<KeyLabels, FloatGauge>::default();
        registry.register(
            "key_expiry_timestamp_seconds",
            "When each managed key expires on the gateway (Unix time; absent: no expiry)",
            key_expiry.clone(),
        );
        let key_rotation_due = Family::<KeyLabels, FloatGauge>::default();
        registry.register(
            "key_rotation_due_timestamp_seconds",
            "When each managed key is next due for rotation or renewal (Unix time; absent: none scheduled)",
            key_rotation_due.clone(),
        );
        let key_ready = Family::<KeyStateLabels, Gauge>::default();
        registry.register(
            "key_ready",
            "1 when the managed key is Ready, else 0; the reason label is the Ready condition's reason",
            key_ready.clone(),
        );
        let rotations = Counter::default();
        registry.register(
            "key_rotations",
            "Key rotations completed (the new key delivered), all namespaces",
            rotations.clone(),
        );
        let revocations = Counter::default();
        registry.register(
            "key_revocations",
            "Keys the operator revoked on the gateway (a /key/delete it sent that succeeded), all namespaces",
            revocations.clone(),
        );
        let leader = Gauge::default();
        registry.register(
            "leader",
            "1 while this replica runs the controllers (holds the lease, or leader election is off)",
            leader.clone(),
        );
        let gateway_info = Family::<GatewayInfoLabels, Gauge>::default();
        registry.register(
            "gateway_info",
            "1 for the LiteLLM release the gateway reported at start-up, with whether it is in the tested range",
            gateway_info.clone(),
        );
        Self {
            registry,
            gateway_info,
            reconciliations,
            reconcile_duration,
            reconcile_errors,
            gateway_duration,
            team_spend,
            team_budget,
            team_reset,
            team_daily_spend,
            key_spend,
            key_expiry,
            key_rotation_due,
            key_ready,
            key_states: Mutex::default(),
            rotations,
            revocations,
            alerting_applied: Gauge::default(),
            alerting_errors: Counter::default(),
            leader,
        }
    }

    /// Exports the alerting series too: only an operator that manages the alerting config has them, so an alert on
    /// `routero_alerting_config_applied == 0` never fires where alerting is off.
    pub fn with_alerting(mut self) -> Self {
        self.registry.register(
            "alerting_config_applied",
            "1 when the gateway holds the alerting config of the current webhook file, else 0",
            self.alerting_applied.clone(),
        );
        self.registry.register(
            "alerting_config_errors",
            "Failed attempts to read the webhook file or apply the alerting config",
            self.alerting_errors.clone(),
        );
        self
    }

    /// The registry as OpenMetrics text.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }

    pub fn reconciled(&self, kind: &'static str, took: Duration) {
        let labels = KindLabels { kind };
        self.reconciliations.get_or_create(&labels).inc();
        self.reconcile_duration
            .get_or_create(&labels)
            .observe(took.as_secs_f64());
    }

    pub fn reconcile_failed(&self, kind: &str, err: &Error) {
        self.reconcile_errors
            .get_or_create(&ErrorLabels {
                kind: kind.to_owned(),
                reason: err.reason(),
                error: err.metric_label(),
            })
            .inc();
    }

    /// The central admin's spend view: the team's spend and budget as its status now shows them. Only a team this
    /// resource manages (`status.teamId` set) has series, so a conflicting claim never shadows the owner's.
    pub fn observe_team(&self, team: &RouteroTeam, status: &RouteroTeamStatus) {
        let Some(team_id) = status.team_id.clone() else {
            return;
        };
        let labels = TeamLabels {
            namespace: team.namespace().unwrap_or_default(),
            team_id,
        };
        match status.spend {
            Some(spend) => drop(self.team_spend.get_or_create(&labels).set(spend)),
            None => drop(self.team_spend.remove(&labels)),
        }
        match status.max_budget {
            Some(budget) => drop(self.team_budget.get_or_create(&labels).set(budget)),
            None => drop(self.team_budget.remove(&labels)),
        }
        set_or_remove(
            &self.team_reset,
            &labels,
            status.budget_reset_at.as_deref().and_then(unix_seconds),
        );
        set_or_remove(&self.team_daily_spend, &labels, status.spend_today);
    }

    /// The key's spend, expiry, rotation due time and readiness as its status now shows them. Only a key that was
    /// issued (`status.keyId` set) has spend and schedule series; every key has a `key_ready` series.
    pub fn observe_key(&self, key: &RouteroKey, status: &RouteroKeyStatus) {
        let ready = condition(&status.conditions, "Ready");
        let namespace = key.metadata.namespace.as_deref().unwrap_or_default();
        let name = key.metadata.name.as_deref().unwrap_or_default();
        let team_id = status.team_id.as_deref().unwrap_or(&key.spec.team_ref.name);
        let reason = ready.map_or("Unknown", |c| c.reason.as_str());
        let (state, previous) = {
            let mut states = self.key_states.lock().unwrap_or_else(|p| p.into_inner());
            let previous = states.get(namespace, name).cloned();
            let state = match &previous {
                // A quiet resync: the same labels, and no allocation.
                Some(old) if *old.team_id == *team_id && *old.reason == *reason => old.clone(),
                Some(old) => KeyStateLabels {
                    namespace: old.namespace.clone(),
                    key: old.key.clone(),
                    team_id: states.shared(team_id),
                    reason: states.shared(reason),
                },
                None => KeyStateLabels {
                    namespace: states
                        .by_namespace
                        .get_key_value(namespace)
                        .map_or_else(|| Arc::from(namespace), |(ns, _)| ns.clone()),
                    key: Arc::from(name),
                    team_id: states.shared(team_id),
                    reason: states.shared(reason),
                },
            };
            states.insert(state.clone());
            (state, previous)
        };
        if let Some(old) = previous.filter(|old| *old != state) {
            self.key_ready.remove(&old);
            if old.team_id != state.team_id {
                self.forget_key_series(&old.series());
            }
        }
        self.key_ready
            .get_or_create(&state)
            .set(i64::from(ready.is_some_and(|c| c.is_true())));
        let labels = state.series();
        let issued = status.key_id.is_some();
        let time = |t: &Option<String>| t.as_deref().and_then(unix_seconds).filter(|_| issued);
        set_or_remove(&self.key_spend, &labels, status.spend.filter(|_| issued));
        set_or_remove(&self.key_expiry, &labels, time(&status.expires_at));
        set_or_remove(&self.key_rotation_due, &labels, time(&status.next_rotation));
    }

    /// A deleted key's series go with it.
    pub fn forget_key(&self, key: &RouteroKey) {
        let old = self
            .key_states
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(
                key.metadata.namespace.as_deref().unwrap_or_default(),
                key.metadata.name.as_deref().unwrap_or_default(),
            );
        if let Some(old) = old {
            self.key_ready.remove(&old);
            self.forget_key_series(&old.series());
        }
    }

    fn forget_key_series(&self, labels: &KeyLabels) {
        self.key_spend.remove(labels);
        self.key_expiry.remove(labels);
        self.key_rotation_due.remove(labels);
    }

    /// A rotation delivered its new key.
    pub fn key_rotated(&self) {
        self.rotations.inc();
    }

    /// A deleted team's series go with it.
    pub fn forget_team(&self, team: &RouteroTeam) {
        let labels = TeamLabels {
            namespace: team.namespace().unwrap_or_default(),
            team_id: team.team_id(),
        };
        self.team_spend.remove(&labels);
        self.team_budget.remove(&labels);
        self.team_reset.remove(&labels);
        self.team_daily_spend.remove(&labels);
    }

    pub fn alerting_applied(&self) {
        self.alerting_applied.set(1);
    }

    pub fn alerting_failed(&self) {
        self.alerting_applied.set(0);
        self.alerting_errors.inc();
    }

    /// One series: a version read again replaces the last.
    pub fn set_gateway_version(&self, version: &crate::gateway::GatewayVersion) {
        self.gateway_info.clear();
        self.gateway_info
            .get_or_create(&GatewayInfoLabels {
                version: version.label().to_owned(),
                tested: version.is_tested().to_string(),
            })
            .set(1);
    }

    pub fn set_leader(&self, leading: bool) {
        self.leader.set(i64::from(leading));
    }
}

fn set_or_remove<L>(family: &Family<L, FloatGauge>, labels: &L, value: Option<f64>)
where
    L: Clone + std::hash::Hash + Eq + EncodeLabelSet + std::fmt::Debug,
{
    match value {
        Some(v) => drop(family.get_or_create(labels).set(v)),
        None => drop(family.remove(labels)),
    }
}

/// An RFC 3339 time as Unix seconds.
fn unix_seconds(t: &str) -> Option<f64> {
    t.parse::<jiff::Timestamp>()
        .ok()
        .map(|t| t.as_millisecond() as f64 / 1000.0)
}

impl GatewayObserver for Metrics {
    fn exchanged(&self, endpoint: &str, status: Option<u16>, took: Duration) {
        if endpoint == "/key/delete" && status == Some(200) {
            self.revocations.inc();
        }
        let status = status.map_or_else(|| "transport".to_owned(), |s| s.to_string());
        self.gateway_duration
            .get_or_create(&GatewayLabels {
                endpoint: endpoint.to_owned(),
                status,
            })
            .observe(took.as_secs_f64());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gateway::GatewayError;

    fn team(ns: &str, name: &str) -> RouteroTeam {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "routero.ai/v1alpha1", "kind": "RouteroTeam",
            "metadata": {"name": name, "namespace": ns}, "spec": {}
        }))
        .expect("team")
    }

    #[test]
    fn reconciles_and_errors_are_labelled_by_kind_and_reason() {
        let m = Metrics::new();
        m.reconciled("RouteroTeam", Duration::from_millis(30));
        m.reconcile_failed(
            "RouteroKey",
            &Error::Gateway(GatewayError::Transport("refused".into())),
        );
        let text = m.encode();
        assert!(text.contains(r#"routero_reconciliations_total{kind="RouteroTeam"} 1"#));
        assert!(text.contains(r#"routero_reconcile_duration_seconds_count{kind="RouteroTeam"} 1"#));
        assert!(text.contains(
            r#"routero_reconcile_errors_total{kind="RouteroKey",reason="GatewayUnavailable",error="gateway_transport"} 1"#
        ));
        assert!(text.ends_with("# EOF\n"), "OpenMetrics text");
    }

    #[test]
    fn gateway_latency_is_labelled_by_endpoint_and_status() {
        let m = Metrics::new();
        m.exchanged("/key/info", Some(404), Duration::from_millis(3));
        m.exchanged("/team/new", None, Duration::from_secs(1));
        let text = m.encode();
        assert!(text.contains(
            r#"routero_gateway_request_duration_seconds_count{endpoint="/key/info",status="404"} 1"#
        ));
        assert!(text.contains(
            r#"routero_gateway_request_duration_seconds_count{endpoint="/team/new",status="transport"} 1"#
        ));
    }

    #[test]
    fn team_series_follow_the_status_and_go_with_the_team() {
        let m = Metrics::new();
        let t = team("finance-ns", "finance");
        // Not ours (yet): no series.
        m.observe_team(&t, &RouteroTeamStatus::default());
        assert!(!m.encode().contains("routero_team_spend_usd{"));

        let status = RouteroTeamStatus {
            team_id: Some("finance".into()),
            spend: Some(12.5),
            max_budget: Some(800.0),
            ..RouteroTeamStatus::default()
        };
        m.observe_team(&t, &status);
        let text = m.encode();
        assert!(
            text.contains(
                r#"routero_team_spend_usd{namespace="finance-ns",team_id="finance"} 12.5"#
            )
        );
        assert!(text.contains(
            r#"routero_team_max_budget_usd{namespace="finance-ns",team_id="finance"} 800.0"#
        ));

        // The budget was removed on the gateway: no budget series.
        m.observe_team(
            &t,
            &RouteroTeamStatus {
                max_budget: None,
                ..status
            },
        );
        assert!(!m.encode().contains("routero_team_max_budget_usd{"));
        m.forget_team(&t);
        assert!(!m.encode().contains("routero_team_spend_usd{"));
    }

    fn key(ns: &str, name: &str) -> RouteroKey {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "routero.ai/v1alpha1", "kind": "RouteroKey",
            "metadata": {"name": name, "namespace": ns}, "spec": {"teamRef": {"name": "eng"}}
        }))
        .expect("key")
    }

    fn ready(reason: &str, ok: bool) -> crate::crd::Condition {
        crate::crd::Condition {
            type_: "Ready".into(),
            status: if ok { "True" } else { "False" }.into(),
            reason: reason.into(),
            ..Default::default()
        }
    }

    #[test]
    fn key_series_follow_the_status_one_state_series_per_key_and_go_with_the_key() {
        let m = Metrics::new();
        let k = key("eng-ns", "cursor-alice");
        // Not issued yet: a state series, no spend or schedule.
        m.observe_key(
            &k,
            &RouteroKeyStatus {
                conditions: vec![ready("TeamNotReady", false)],
                ..Default::default()
            },
        );
        let text = m.encode();
        assert!(text.contains(
            r#"routero_key_ready{namespace="eng-ns",key="cursor-alice",team_id="eng",reason="TeamNotReady"} 0"#
        ));
        assert!(!text.contains("routero_key_spend_usd{"));

        m.observe_key(
            &k,
            &RouteroKeyStatus {
                conditions: vec![ready("Available", true)],
                key_id: Some("0123456789ab".into()),
                team_id: Some("eng-1".into()),
                spend: Some(7.5),
                expires_at: Some("2027-01-01T00:00:00Z".into()),
                next_rotation: Some("2026-12-31T00:00:00Z".into()),
                ..Default::default()
            },
        );
        let text = m.encode();
        assert!(
            !text.contains("TeamNotReady"),
            "the old reason's series is gone:\n{text}"
        );
        assert!(text.contains(
            r#"routero_key_ready{namespace="eng-ns",key="cursor-alice",team_id="eng-1",reason="Available"} 1"#
        ));
        let labels = r#"{namespace="eng-ns",key="cursor-alice",team_id="eng-1"}"#;
        assert!(text.contains(&format!("routero_key_spend_usd{labels} 7.5")));
        assert!(text.contains(&format!(
            "routero_key_expiry_timestamp_seconds{labels} 1798761600.0"
        )));
        assert!(text.contains(&format!(
            "routero_key_rotation_due_timestamp_seconds{labels} 1798675200.0"
        )));
        assert!(!text.contains("0123456789ab"), "no key id in labels");

        m.forget_key(&k);
        let text = m.encode();
        assert!(!text.contains("cursor-alice"), "{text}");
    }

    /// Keys share their namespace, team and reason label values, a quiet resync allocates no new labels, and
    /// values no series holds any more are dropped.
    #[test]
    fn key_labels_are_shared_and_pruned() {
        let m = Metrics::new();
        let status = |team: &str| RouteroKeyStatus {
            conditions: vec![ready("Available", true)],
            key_id: Some("0123456789ab".into()),
            team_id: Some(team.into()),
            ..Default::default()
        };
        let (a, b) = (key("eng-ns", "a"), key("eng-ns", "b"));
        m.observe_key(&a, &status("eng-1"));
        m.observe_key(&b, &status("eng-1"));
        let state = |k: &str| {
            m.key_states
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .get("eng-ns", k)
                .cloned()
                .expect("state")
        };
        let (sa, sb) = (state("a"), state("b"));
        assert!(Arc::ptr_eq(&sa.namespace, &sb.namespace));
        assert!(Arc::ptr_eq(&sa.team_id, &sb.team_id));
        assert!(Arc::ptr_eq(&sa.reason, &sb.reason));
        m.observe_key(&a, &status("eng-1"));
        assert!(
            Arc::ptr_eq(&state("a").key, &sa.key),
            "a quiet resync reuses the labels"
        );

        // Many teams come and go: the shared values do not accumulate.
        for i in 0..1000 {
            let k = key("eng-ns", &format!("k{i}"));
            m.observe_key(&k, &status(&format!("team-{i}")));
            m.forget_key(&k);
        }
        let values = m
            .key_states
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values
            .len();
        assert!(values < 300, "{values} shared values kept");
        assert!(
            m.encode()
                .contains(r#"key="a",team_id="eng-1",reason="Available"} 1"#)
        );
    }

    #[test]
    fn revocations_count_successful_key_deletes_and_rotations_are_counted() {
        let m = Metrics::new();
        let text = m.encode();
        assert!(text.contains("routero_key_rotations_total 0"));
        assert!(text.contains("routero_key_revocations_total 0"));
        m.exchanged("/key/delete", Some(200), Duration::from_millis(1));
        m.exchanged("/key/delete", Some(404), Duration::from_millis(1));
        m.key_rotated();
        let text = m.encode();
        assert!(text.contains("routero_key_revocations_total 1"));
        assert!(text.contains("routero_key_rotations_total 1"));
    }

    #[test]
    fn alerting_and_leadership_gauges() {
        assert!(
            !Metrics::new().encode().contains("alerting"),
            "alerting off"
        );
        let m = Metrics::new().with_alerting();
        m.alerting_failed();
        m.set_leader(true);
        let text = m.encode();
        assert!(text.contains("routero_alerting_config_applied 0"));
        assert!(text.contains("routero_alerting_config_errors_total 1"));
        assert!(text.contains("routero_leader 1"));
        m.alerting_applied();
        assert!(m.encode().contains("routero_alerting_config_applied 1"));
    }
}
