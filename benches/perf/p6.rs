//! P6: fairness between tenants. Namespace A creates a burst of N keys (5,000 by default, a large import) at the
//! default 20 requests/s; meanwhile namespace B creates one key at a time, and each of B's keys is timed from its
//! creation to `Ready`. The operator watches every namespace, as the chart installs it by default.
use std::time::{Duration, Instant};

use kube::Api;
use kube::api::PostParams;
use routero_operator::crd::common::is_ready;
use routero_operator::crd::{RouteroKey, RouteroTeam};

use crate::harness::{Table, create_all, env_or, fleet, key, print_warnings, secs, target, team};
use crate::p2::CREATE_CONCURRENCY;
use crate::support::fake_gateway::FakeGateway;
use crate::support::testbed::{self, Operator, OperatorOptions};

pub async fn run() {
    let keys: usize = env_or("ROUTERO_BENCH_KEYS", 5000);
    let teams: usize = env_or("ROUTERO_BENCH_TEAMS", 50);
    let rate: u32 = env_or("ROUTERO_BENCH_RATE", 20);
    let probes: usize = env_or("ROUTERO_BENCH_P6_PROBES", 10);
    println!(
        "P6: one key at a time in namespace B while namespace A issues {keys} keys in {teams} teams, gateway rate limit {rate}/s\n"
    );
    let client = testbed::client().await;
    let fake = FakeGateway::start().await;
    let a = testbed::namespace(&client, "bench-p6-a").await;
    let b = testbed::namespace(&client, "bench-p6-b").await;
    let opts = OperatorOptions {
        rate_limit: rate,
        timeout: Duration::from_secs(10),
        ..Default::default()
    };
    // Every namespace, as the chart's default.
    let operator = Operator::start_in(&client, &target(&fake), Vec::new(), opts).await;

    let (a_teams, a_keys) = fleet(teams, keys);
    create_all(
        &Api::<RouteroTeam>::namespaced(client.clone(), &a),
        a_teams,
        CREATE_CONCURRENCY,
    )
    .await;
    let b_teams: Api<RouteroTeam> = Api::namespaced(client.clone(), &b);
    let b_team = team(&format!("{b}-team"));
    b_teams
        .create(&PostParams::default(), &b_team)
        .await
        .expect("B's team");
    let b_team_name = b_team.metadata.name.clone().unwrap_or_default();
    let a_key_api: Api<RouteroKey> = Api::namespaced(client.clone(), &a);
    let b_keys: Api<RouteroKey> = Api::namespaced(client.clone(), &b);
    wait_ready(&b_teams, &b_team_name, Duration::from_secs(120)).await;

    // A's burst, created in the background while B's probes run.
    let burst_started = Instant::now();
    let burst =
        tokio::spawn(async move { create_all(&a_key_api, a_keys, CREATE_CONCURRENCY).await });
    let a_keys_api: Api<RouteroKey> = Api::namespaced(client.clone(), &a);
    // Let A's backlog build before the first probe.
    tokio::time::sleep(Duration::from_secs(10)).await;
    let mut waits = Vec::new();
    let mut backlog = Vec::new();
    for i in 0..probes {
        let name = format!("probe-{i}");
        b_keys
            .create(&PostParams::default(), &key(&name, &b_team_name))
            .await
            .expect("B's key");
        let took = wait_ready(&b_keys, &name, Duration::from_secs(600)).await;
        let (listed, ready) = ready_count(&a_keys_api).await;
        eprintln!(
            "  probe {i}: Ready after {}; A: {ready} of {listed} keys Ready, {:.0} s into its burst",
            secs(took),
            burst_started.elapsed().as_secs_f64()
        );
        waits.push(took);
        backlog.push(listed.saturating_sub(ready));
        tokio::time::sleep(Duration::from_secs(5)).await;
    }
    let _ = burst.await;
    let mut sorted = waits.clone();
    sorted.sort();
    let median = sorted[sorted.len() / 2];
    let max = sorted[sorted.len() - 1];
    let mut t = Table::new(&["P6", "value"]);
    t.row(vec![
        "A's burst".into(),
        format!("{keys} keys in {teams} teams"),
    ]);
    t.row(vec![
        "gateway rate limit".into(),
        format!("{rate} requests/s"),
    ]);
    t.row(vec!["B's probes".into(), probes.to_string()]);
    t.row(vec![
        "A's keys not yet Ready at each probe (min .. max)".into(),
        format!(
            "{} .. {}",
            backlog.iter().min().copied().unwrap_or(0),
            backlog.iter().max().copied().unwrap_or(0)
        ),
    ]);
    t.row(vec!["B's key create → Ready, median".into(), secs(median)]);
    t.row(vec!["B's key create → Ready, max".into(), secs(max)]);
    t.row(vec![
        "max ÷ target (2 s)".into(),
        format!("{:.2}", max.as_secs_f64() / 2.0),
    ]);
    t.row(vec![
        "without fairness, B would wait for A's backlog (calls ÷ rate)".into(),
        format!(
            "≈ {:.0} s",
            backlog.iter().max().copied().unwrap_or(0) as f64 / f64::from(rate)
        ),
    ]);
    t.print();
    print_warnings("during P6");
    operator.stop().await;
}

/// Polls `name` every 20 ms until it is `Ready`; the time it took.
async fn wait_ready<K>(api: &Api<K>, name: &str, timeout: Duration) -> Duration
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug + Conditioned,
{
    let started = Instant::now();
    while started.elapsed() < timeout {
        if let Ok(obj) = api.get(name).await
            && obj.ready()
        {
            return started.elapsed();
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("{name} not Ready within {timeout:?}");
}

/// A's keys listed, and how many are Ready.
async fn ready_count(api: &Api<RouteroKey>) -> (usize, usize) {
    let list = api.list(&Default::default()).await.expect("list A's keys");
    let ready = list.items.iter().filter(|k| k.ready()).count();
    (list.items.len(), ready)
}

trait Conditioned {
    fn ready(&self) -> bool;
}

impl Conditioned for RouteroKey {
    fn ready(&self) -> bool {
        self.status
            .as_ref()
            .is_some_and(|s| is_ready(&s.conditions, self.metadata.generation))
    }
}

impl Conditioned for RouteroTeam {
    fn ready(&self) -> bool {
        self.status
            .as_ref()
            .is_some_and(|s| is_ready(&s.conditions, self.metadata.generation))
    }
}
