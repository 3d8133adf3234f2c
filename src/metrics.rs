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

use crate::crd::{RouteroTeam, RouteroTeamStatus};
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
    }

    /// A deleted team's series go with it.
    pub fn forget_team(&self, team: &RouteroTeam) {
        let labels = TeamLabels {
            namespace: team.namespace().unwrap_or_default(),
            team_id: team.team_id(),
        };
        self.team_spend.remove(&labels);
        self.team_budget.remove(&labels);
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

impl GatewayObserver for Metrics {
    fn exchanged(&self, endpoint: &str, status: Option<u16>, took: Duration) {
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
