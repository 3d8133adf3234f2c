//! Operations inside the binary: `/metrics`, `/healthz` and `/readyz`, leader election between replicas, and the
//! budget-alerting config applied to the gateway. Each replica is the real operator (`operator::bind`) run as a task
//! with its own Kubernetes client, against the test bed and the fake gateway.
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use k8s_openapi::api::coordination::v1::Lease;
use kube::api::{DeleteParams, PostParams};
use kube::{Api, Client};
use routero_operator::alerting::AlertingConfig;
use routero_operator::crd::common::is_ready;
use routero_operator::crd::{RouteroKey, RouteroTeam};
use routero_operator::gateway::{AdminKey, GatewayConfig};
use routero_operator::leader::LeaderElection;
use routero_operator::operator::{self, OperatorConfig};
use secrecy::SecretString;
use serde_json::{Value, json};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::support::fake_gateway::{FakeGateway, Fault, FaultKind};
use crate::support::gateway_reader::GatewayReader;
use crate::support::testbed::{self, GatewayTarget, wait_for};

const WAIT: Duration = Duration::from_secs(40);

/// One operator replica serving its endpoints on a free loopback port.
struct Replica {
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<routero_operator::Result<()>>>,
    http: reqwest::Client,
}

impl Replica {
    async fn start(fake: &FakeGateway, ns: &str, tweak: impl FnOnce(&mut OperatorConfig)) -> Self {
        let client = testbed::client().await;
        let mut gateway = GatewayConfig::new(
            fake.url.clone(),
            AdminKey::Static(SecretString::from(fake.admin_key.clone())),
        );
        gateway.rate_limit = std::num::NonZeroU32::new(200).expect("nonzero");
        gateway.timeout = Duration::from_secs(5);
        let mut config = OperatorConfig {
            gateway,
            watch_namespaces: vec![ns.to_owned()],
            admin_namespaces: vec!["routero-system".into()],
            resync: Duration::from_secs(300),
            metrics_addr: Some(SocketAddr::from(([127, 0, 0, 1], 0))),
            leader_election: None,
            alerting: None,
        };
        tweak(&mut config);
        let (tx, rx) = oneshot::channel::<()>();
        let bound = operator::bind(client, config, async move {
            let _ = rx.await;
        })
        .await
        .expect("operator starts");
        let addr = bound.metrics_addr().expect("metrics address");
        Self {
            addr,
            stop: Some(tx),
            task: Some(tokio::spawn(bound.run())),
            http: reqwest::Client::new(),
        }
    }

    async fn get(&self, path: &str) -> (u16, String) {
        let resp = self
            .http
            .get(format!("http://{}{path}", self.addr))
            .send()
            .await
            .expect("GET the operator's endpoint");
        let status = resp.status().as_u16();
        (status, resp.text().await.unwrap_or_default())
    }

    async fn metrics(&self) -> String {
        let (status, body) = self.get("/metrics").await;
        assert_eq!(status, 200, "{body}");
        body
    }

    async fn is_leader(&self) -> bool {
        sample(&self.metrics().await, "routero_leader") == Some(1.0)
    }

    /// Graceful stop; the operator must end without error.
    async fn stop(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        let task = self.task.take().expect("running");
        let result = tokio::time::timeout(Duration::from_secs(30), task)
            .await
            .expect("stops within 30 s")
            .expect("task not aborted");
        result.expect("operator ends without error");
    }

    /// A crash: the task is dropped wherever it is, nothing is released.
    async fn kill(mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
            let _ = task.await;
        }
    }

    fn is_running(&self) -> bool {
        self.task.as_ref().is_some_and(|t| !t.is_finished())
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// The value of the series `name{labels}` (labels exactly as encoded), if present.
fn sample(metrics: &str, series: &str) -> Option<f64> {
    metrics.lines().find_map(|l| {
        l.strip_prefix(series)
            .and_then(|rest| rest.strip_prefix(' '))
            .and_then(|v| v.split(' ').next())
            .and_then(|v| v.parse().ok())
    })
}

fn team(name: &str, spec: Value) -> RouteroTeam {
    serde_json::from_value(json!({
        "apiVersion": "routero.ai/v1alpha1", "kind": "RouteroTeam",
        "metadata": {"name": name}, "spec": spec
    }))
    .expect("team")
}

async fn wait_team_ready(api: &Api<RouteroTeam>, name: &str) {
    wait_for(&format!("team {name} Ready"), WAIT, || async {
        let t = api.get(name).await.ok()?;
        is_ready(&t.status?.conditions, t.metadata.generation).then_some(())
    })
    .await;
}

/// The gateway's release is read at start-up and exported; a release outside the tested range (or none reported)
/// shows a `GatewayVersion` condition on teams, which still become Ready; a tested release shows none.
#[tokio::test]
async fn operations_gateway_version_is_exported_and_flagged_outside_the_tested_range() {
    let client = testbed::client().await;
    let cases = [
        (Some("1.120.0"), "1.120.0", "false", Some("UntestedVersion")),
        (None, "unknown", "false", Some("UnknownVersion")),
        (Some("1.98.0"), "1.98.0", "true", None),
    ];
    for (reported, label, tested, reason) in cases {
        let fake = FakeGateway::start().await;
        fake.set_reported_version(reported);
        let ns = testbed::namespace(&client, "ops-version").await;
        let op = Replica::start(&fake, &ns, |_| {}).await;
        // Ready means the gateway answered, and its version was read before that.
        wait_for("/readyz 200", WAIT, || async {
            (op.get("/readyz").await.0 == 200).then_some(())
        })
        .await;
        let info = format!(r#"routero_gateway_info{{version="{label}",tested="{tested}"}}"#);
        assert_eq!(sample(&op.metrics().await, &info), Some(1.0), "{info}");
        let teams: Api<RouteroTeam> = Api::namespaced(client.clone(), &ns);
        let team_id = format!("ops-v-{}", testbed::suffix());
        teams
            .create(
                &PostParams::default(),
                &team("team", json!({"teamId": team_id})),
            )
            .await
            .expect("create team");
        wait_team_ready(&teams, "team").await;
        let t = teams.get("team").await.expect("team");
        let conditions = t.status.map(|s| s.conditions).unwrap_or_default();
        let shown = conditions.iter().find(|c| c.type_ == "GatewayVersion");
        match reason {
            Some(reason) => {
                let c =
                    shown.unwrap_or_else(|| panic!("a GatewayVersion condition: {conditions:?}"));
                assert_eq!((c.status.as_str(), c.reason.as_str()), ("True", reason));
                assert!(
                    c.message.contains(label) || label == "unknown",
                    "{}",
                    c.message
                );
                assert!(c.message.contains("1.98.0 to 1.108.7"), "{}", c.message);
            }
            None => assert!(
                shown.is_none(),
                "no condition for a tested release: {conditions:?}"
            ),
        }
        op.stop().await;
    }
}

#[tokio::test]
async fn operations_metrics_show_reconciles_errors_gateway_latency_and_team_spend() {
    let client = testbed::client().await;
    let fake = FakeGateway::start().await;
    let ns = testbed::namespace(&client, "ops-metrics").await;
    let op = Replica::start(&fake, &ns, |c| c.resync = Duration::from_secs(1)).await;
    let teams: Api<RouteroTeam> = Api::namespaced(client.clone(), &ns);
    let keys: Api<RouteroKey> = Api::namespaced(client.clone(), &ns);
    let team_id = format!("ops-{}", testbed::suffix());

    // The first create meets an outage: one failed reconcile, reported with its reason.
    fake.fail(Fault::once("POST /team/new", FaultKind::Status(503)));
    teams
        .create(
            &PostParams::default(),
            &team(
                "team",
                json!({"teamId": team_id, "maxBudget": 100, "budgetDuration": "1mo"}),
            ),
        )
        .await
        .expect("create team");
    wait_team_ready(&teams, "team").await;
    let key: RouteroKey = serde_json::from_value(json!({
        "apiVersion": "routero.ai/v1alpha1", "kind": "RouteroKey",
        "metadata": {"name": "api"}, "spec": {"teamRef": {"name": "team"}}
    }))
    .expect("key");
    keys.create(&PostParams::default(), &key)
        .await
        .expect("create key");
    wait_for("key Ready", WAIT, || async {
        let k = keys.get("api").await.ok()?;
        is_ready(&k.status?.conditions, k.metadata.generation).then_some(())
    })
    .await;

    // Spend on the gateway shows at the next resync.
    assert!(fake.edit_team(&team_id, |row| {
        row.insert("spend".into(), json!(12.5));
    }));
    let team_series = format!(r#"{{namespace="{ns}",team_id="{team_id}"}}"#);
    let metrics = wait_for("team spend in /metrics", WAIT, || async {
        let m = op.metrics().await;
        (sample(&m, &format!("routero_team_spend_usd{team_series}")) == Some(12.5)).then_some(m)
    })
    .await;
    assert_eq!(
        sample(
            &metrics,
            &format!("routero_team_max_budget_usd{team_series}")
        ),
        Some(100.0)
    );
    for kind in ["RouteroTeam", "RouteroKey"] {
        let n = sample(
            &metrics,
            &format!(r#"routero_reconciliations_total{{kind="{kind}"}}"#),
        )
        .unwrap_or(0.0);
        assert!(n >= 1.0, "{kind} reconciles counted:\n{metrics}");
        let d = sample(
            &metrics,
            &format!(r#"routero_reconcile_duration_seconds_count{{kind="{kind}"}}"#),
        )
        .unwrap_or(0.0);
        assert!(d >= 1.0, "{kind} durations observed:\n{metrics}");
    }
    assert_eq!(
        sample(
            &metrics,
            r#"routero_reconcile_errors_total{kind="RouteroTeam",reason="GatewayUnavailable",error="gateway_http_503"}"#
        ),
        Some(1.0),
        "{metrics}"
    );
    for (endpoint, status) in [
        ("/team/new", "503"),
        ("/team/new", "200"),
        ("/team/info", "200"),
        // Issuance needs no /key/info: the registering reply proves a freshly chosen key.
        ("/key/generate", "200"),
        ("/health/readiness", "200"),
    ] {
        let series = format!(
            r#"routero_gateway_request_duration_seconds_count{{endpoint="{endpoint}",status="{status}"}}"#
        );
        assert!(
            sample(&metrics, &series).is_some_and(|n| n >= 1.0),
            "{series} missing:\n{metrics}"
        );
    }
    // Endpoints are route templates: no ids, hashes or keys in labels.
    for line in metrics.lines().filter(|l| l.contains("endpoint=\"")) {
        let endpoint = line
            .split("endpoint=\"")
            .nth(1)
            .and_then(|r| r.split('"').next())
            .unwrap_or_default();
        assert!(
            endpoint.starts_with('/')
                && !endpoint.contains(&team_id)
                && endpoint
                    .strip_prefix("/v2")
                    .unwrap_or(endpoint)
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || "/_".contains(c)),
            "endpoint label {endpoint:?}"
        );
    }
    assert!(sample(&metrics, "routero_leader").is_some_and(|v| v == 1.0));
    assert_eq!(op.get("/healthz").await.0, 200);

    // A deleted team's series go with it.
    keys.delete("api", &DeleteParams::default())
        .await
        .expect("delete key");
    teams
        .delete("team", &DeleteParams::default())
        .await
        .expect("delete team");
    wait_for("team series removed", WAIT, || async {
        let m = op.metrics().await;
        (!m.contains(&format!("routero_team_spend_usd{team_series}"))
            && !m.contains(&format!("routero_team_max_budget_usd{team_series}")))
        .then_some(())
    })
    .await;
    op.stop().await;
}

#[tokio::test]
async fn operations_readyz_waits_for_synced_caches_and_the_gateway() {
    let client = testbed::client().await;
    let fake = FakeGateway::start().await;
    fake.fail(Fault::always(
        "GET /health/readiness",
        FaultKind::Status(503),
    ));
    let ns = testbed::namespace(&client, "ops-ready").await;
    let op = Replica::start(&fake, &ns, |_| {}).await;

    assert_eq!(op.get("/healthz").await, (200, "ok".to_owned()));
    // The caches sync, but the gateway has not answered: not ready, and the reason says why.
    let (status, body) = wait_for("readyz waiting on the gateway", WAIT, || async {
        let (status, body) = op.get("/readyz").await;
        body.contains("gateway").then_some((status, body))
    })
    .await;
    assert_eq!(status, 503, "{body}");
    assert!(fake.count("GET /health/readiness") >= 1);

    fake.clear_faults();
    wait_for("readyz 200 once the gateway answers", WAIT, || async {
        (op.get("/readyz").await.0 == 200).then_some(())
    })
    .await;
    assert_eq!(op.get("/healthz").await.0, 200);
    op.stop().await;
}

/// The Lease's holder and when it expires.
async fn lease_holder(
    client: &Client,
    ns: &str,
    name: &str,
) -> (Option<String>, Option<SystemTime>) {
    let lease = Api::<Lease>::namespaced(client.clone(), ns)
        .get(name)
        .await
        .expect("lease");
    let spec = lease.spec.unwrap_or_default();
    let expiry = match (spec.renew_time, spec.lease_duration_seconds) {
        (Some(renew), Some(secs)) => {
            let renew: SystemTime = renew.0.into();
            Some(renew + Duration::from_secs(u64::try_from(secs).unwrap_or(0)))
        }
        _ => None,
    };
    (spec.holder_identity, expiry)
}

#[tokio::test]
async fn operations_leader_election_one_replica_acts_and_a_standby_takes_over() {
    let client = testbed::client().await;
    let fake = FakeGateway::start().await;
    let ns = testbed::namespace(&client, "ops-leader").await;
    let lease_name = format!("routero-{}", testbed::suffix());
    const LEASE: Duration = Duration::from_secs(6);
    let election = |who: &str| LeaderElection {
        lease_name: lease_name.clone(),
        lease_namespace: ns.clone(),
        identity: format!("{who}-{}", testbed::suffix()),
        lease_duration: LEASE,
    };
    let (a_id, b_id, c_id) = (election("a"), election("b"), election("c"));
    let teams: Api<RouteroTeam> = Api::namespaced(client.clone(), &ns);
    let create = |name: &'static str| {
        let teams = teams.clone();
        async move {
            teams
                .create(
                    &PostParams::default(),
                    &team(
                        name,
                        json!({"teamId": format!("{name}-{}", testbed::suffix())}),
                    ),
                )
                .await
                .expect("create team");
            wait_team_ready(&teams, name).await;
        }
    };

    let a = Replica::start(&fake, &ns, |c| c.leader_election = Some(a_id.clone())).await;
    wait_for("a leads", WAIT, || async {
        a.is_leader().await.then_some(())
    })
    .await;
    let b = Replica::start(&fake, &ns, |c| c.leader_election = Some(b_id.clone())).await;
    wait_for("b standby ready", WAIT, || async {
        (b.get("/readyz").await.0 == 200).then_some(())
    })
    .await;

    // Only the leader reconciles: one gateway create per team, and only a's metrics count reconciles.
    for name in ["one", "two", "three"] {
        create(name).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(fake.count("POST /team/new"), 3, "{:?}", fake.counts());
    let (am, bm) = (a.metrics().await, b.metrics().await);
    assert!(
        sample(&am, r#"routero_reconciliations_total{kind="RouteroTeam"}"#)
            .is_some_and(|n| n >= 3.0),
        "{am}"
    );
    assert!(
        !bm.contains("routero_reconciliations_total{"),
        "the standby reconciled:\n{bm}"
    );
    assert_eq!(sample(&bm, "routero_leader"), Some(0.0));
    assert_eq!(
        lease_holder(&client, &ns, &lease_name).await.0.as_deref(),
        Some(a_id.identity.as_str())
    );

    // A graceful stop releases the lease: b takes over without waiting for it to expire.
    a.stop().await;
    let (holder, _) = lease_holder(&client, &ns, &lease_name).await;
    assert!(
        holder.is_none() || holder.as_deref() == Some(b_id.identity.as_str()),
        "released on shutdown, holder {holder:?}"
    );
    let stopped = Instant::now();
    wait_for("b leads", WAIT, || async {
        b.is_leader().await.then_some(())
    })
    .await;
    assert!(
        stopped.elapsed() < LEASE,
        "took over in {:?}, not after the lease expired",
        stopped.elapsed()
    );
    create("four").await;
    assert_eq!(fake.count("POST /team/new"), 4, "{:?}", fake.counts());

    // A killed leader releases nothing: c takes over only once the lease has expired.
    let c = Replica::start(&fake, &ns, |cfg| cfg.leader_election = Some(c_id.clone())).await;
    wait_for("c standby ready", WAIT, || async {
        (c.get("/readyz").await.0 == 200).then_some(())
    })
    .await;
    assert_eq!(sample(&c.metrics().await, "routero_leader"), Some(0.0));
    b.kill().await;
    let (holder, expiry) = lease_holder(&client, &ns, &lease_name).await;
    assert_eq!(
        holder.as_deref(),
        Some(b_id.identity.as_str()),
        "a crash releases nothing"
    );
    let expiry = expiry.expect("held lease has an expiry");
    wait_for("c leads", WAIT, || async {
        c.is_leader().await.then_some(())
    })
    .await;
    assert!(
        SystemTime::now() >= expiry,
        "c took over before b's lease expired"
    );
    create("five").await;
    assert_eq!(fake.count("POST /team/new"), 5, "{:?}", fake.counts());
    assert!(c.is_running());
    c.stop().await;
}

fn webhook_file(dir: &Path, url: &str) -> PathBuf {
    let path = dir.join("slack-webhook");
    std::fs::write(&path, format!("{url}\n")).expect("write webhook file");
    path
}

fn expected_body(url: &str) -> Value {
    json!({"general_settings": {
        "alerting": ["slack"],
        "alert_types": ["budget_alerts"],
        "alert_to_webhook_url": {"budget_alerts": url},
    }})
}

#[tokio::test]
async fn operations_budget_alerts_follow_the_webhook_file_and_survive_gateway_errors() {
    let client = testbed::client().await;
    let fake = FakeGateway::start().await;
    let ns = testbed::namespace(&client, "ops-alerts").await;
    let dir = std::env::temp_dir().join(format!("routero-alerts-{}", testbed::suffix()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let first = "https://hooks.slack.com/services/T0/B0/first";
    let path = webhook_file(&dir, first);
    let mut alerting = AlertingConfig::new(path.clone(), vec!["budget_alerts".into()]);
    alerting.poll_interval = Duration::from_millis(200);
    let op = Replica::start(&fake, &ns, |c| c.alerting = Some(alerting)).await;

    // Applied at start-up, once.
    wait_for("alerting applied", WAIT, || async {
        (fake.config_updates() == vec![expected_body(first)]).then_some(())
    })
    .await;
    wait_for("applied gauge", WAIT, || async {
        (sample(&op.metrics().await, "routero_alerting_config_applied") == Some(1.0)).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        fake.config_updates().len(),
        1,
        "an unchanged file is not re-applied"
    );

    // A changed file is re-applied.
    let second = "https://hooks.slack.com/services/T0/B0/second";
    webhook_file(&dir, second);
    wait_for("second URL applied", WAIT, || async {
        (fake.config_updates().last() == Some(&expected_body(second))).then_some(())
    })
    .await;

    // A gateway error shows in the metrics; the operator keeps running and applies the file once the gateway
    // accepts it again.
    fake.fail(Fault::always("POST /config/update", FaultKind::Status(500)));
    let third = "https://hooks.slack.com/services/T0/B0/third";
    webhook_file(&dir, third);
    let metrics = wait_for("alerting error counted", WAIT, || async {
        let m = op.metrics().await;
        sample(&m, "routero_alerting_config_errors_total")
            .is_some_and(|n| n >= 1.0)
            .then_some(m)
    })
    .await;
    assert_eq!(
        sample(&metrics, "routero_alerting_config_applied"),
        Some(0.0)
    );
    assert!(
        !metrics.contains("hooks.slack.com"),
        "the webhook never shows"
    );
    assert!(op.is_running());
    assert_eq!(op.get("/healthz").await.0, 200);
    fake.clear_faults();
    wait_for("third URL applied after the outage", WAIT, || async {
        (fake.config_updates().last() == Some(&expected_body(third))).then_some(())
    })
    .await;
    wait_for("applied gauge back to 1", WAIT, || async {
        (sample(&op.metrics().await, "routero_alerting_config_applied") == Some(1.0)).then_some(())
    })
    .await;
    op.stop().await;
    let _ = std::fs::remove_dir_all(&dir);
}

/// What both gateways answer to `/config/update` bodies that write nothing: a non-object section and an unknown
/// alert type are refused with FastAPI's 422 naming the field. (A valid body answers 200 `{"message":"Config updated
/// successfully"}` on LiteLLM 1.108.7 even with `STORE_MODEL_IN_DB=False`; it is not sent here because it would
/// change the shared gateway's alerting.)
async fn config_update_validation(target: GatewayTarget) {
    let gw = GatewayReader::new(&target);
    let (status, body) = gw
        .post("/config/update", json!({"general_settings": 5}))
        .await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(
        body["detail"][0]["loc"],
        json!(["body", "general_settings"])
    );
    let (status, body) = gw
        .post(
            "/config/update",
            json!({"general_settings": {"alert_types": ["budget_alerts", "nonsense"]}}),
        )
        .await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(
        body["detail"][0]["loc"],
        json!(["body", "general_settings", "alert_types", 1])
    );
    assert_eq!(body["detail"][0]["type"], "enum");
}

#[tokio::test]
async fn operations_config_update_validation_on_real_litellm() {
    config_update_validation(GatewayTarget::litellm()).await;
}

#[tokio::test]
async fn operations_config_update_validation_on_litellm_1_98() {
    config_update_validation(GatewayTarget::litellm_1_98()).await;
}

#[tokio::test]
async fn operations_config_update_validation_on_fake_gateway() {
    let fake = FakeGateway::start().await;
    config_update_validation(GatewayTarget::fake(&fake)).await;
    assert!(
        fake.config_updates().is_empty(),
        "refused bodies are not stored"
    );
}
