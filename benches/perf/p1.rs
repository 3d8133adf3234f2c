//! P1: latency of one key, from creating the RouteroKey (team already Ready) to a Secret holding a confirmed key and
//! to `Ready=True`, against the fake gateway with a fixed added latency, next to its lower bound.
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use kube::Api;
use kube::api::PostParams;
use routero_operator::crd::{RouteroKey, RouteroTeam};

use crate::harness::{
    Stats, Table, Tracker, env_or, gateway_rtt, k8s_write_latency, key, ms, print_warnings, target,
    team,
};
use crate::support::fake_gateway::FakeGateway;
use crate::support::testbed::{self, Operator, OperatorOptions};

/// Quiet time after a key turns Ready, so the passes that follow it are counted with it and the rate limiter's
/// bucket refills: each key is measured alone, not queued behind the previous one.
const SETTLE: Duration = Duration::from_millis(1000);
const WAIT: Duration = Duration::from_secs(60);

pub async fn run() {
    let n: usize = env_or("ROUTERO_BENCH_P1_KEYS", 30);
    let latency = Duration::from_millis(env_or("ROUTERO_BENCH_LATENCY_MS", 20));
    let rate: u32 = env_or("ROUTERO_BENCH_RATE", 20);
    println!(
        "P1: {n} sequential RouteroKeys, fake gateway with {} added per request, gateway rate limit {rate}/s\n",
        ms(latency)
    );

    let client = testbed::client().await;
    let fake = FakeGateway::start().await;
    let probe_ns = testbed::namespace(&client, "bench-probe").await;
    let k8s_write = k8s_write_latency(&client, &probe_ns, 30).await;
    let rtt_base = gateway_rtt(&fake, 30).await;
    fake.set_latency(latency);
    let rtt = gateway_rtt(&fake, 10).await;

    let ns = testbed::namespace(&client, "bench-p1").await;
    let tracker = Tracker::start(&client, &ns).await;
    let opts = OperatorOptions {
        rate_limit: rate,
        resync: Duration::from_secs(300),
        ..Default::default()
    };
    let operator = Operator::start(&client, &target(&fake), &ns, opts).await;
    let teams: Api<RouteroTeam> = Api::namespaced(client.clone(), &ns);
    teams
        .create(&PostParams::default(), &team("team"))
        .await
        .expect("create team");
    assert!(
        tracker
            .wait(WAIT, WAIT, |t| t.teams_ready() == 1, |_| {})
            .await,
        "team Ready"
    );
    tokio::time::sleep(Duration::from_secs(2)).await;

    let keys: Api<RouteroKey> = Api::namespaced(client.clone(), &ns);
    let mut to_secret = Vec::with_capacity(n);
    let mut to_ready = Vec::with_capacity(n);
    let mut calls: BTreeMap<String, u64> = BTreeMap::new();
    let mut writes: BTreeMap<String, u64> = BTreeMap::new();
    for i in 0..n {
        let name = format!("key-{i:03}");
        fake.reset_counts();
        tracker.take_writes();
        let start = Instant::now();
        keys.create(&PostParams::default(), &key(&name, "team"))
            .await
            .expect("create key");
        let done = tracker
            .wait(
                WAIT,
                WAIT,
                |t| t.key_ready_at(&name).is_some() && t.delivered_at(&name).is_some(),
                |_| {},
            )
            .await;
        assert!(done, "key {name} Ready with its Secret within {WAIT:?}");
        let delivered = tracker.delivered_at(&name).expect("delivered");
        let ready = tracker.key_ready_at(&name).expect("ready");
        to_secret.push(delivered - start);
        to_ready.push(ready - start);
        tokio::time::sleep(SETTLE).await;
        for (k, v) in fake.counts() {
            *calls.entry(k).or_insert(0) += v;
        }
        for (k, v) in tracker.take_writes() {
            *writes.entry(k).or_insert(0) += v;
        }
    }
    operator.stop().await;

    let to_secret = Stats::new(to_secret);
    let to_ready = Stats::new(to_ready);
    let per_key = |v: u64| format!("{:.2}", v as f64 / n as f64);

    println!("Measured round trips (sequential, from this process):");
    let mut t = Table::new(&["probe", "median"]);
    t.row(vec!["gateway GET, no added latency".into(), ms(rtt_base)]);
    t.row(vec![format!("gateway GET, {} added", ms(latency)), ms(rtt)]);
    t.row(vec![
        "Kubernetes write (Secret create)".into(),
        ms(k8s_write),
    ]);
    t.print();

    // Unavoidable, in sequence: the finalizer (before any gateway write, so a deletion can revoke), the pending
    // Secret (the value persisted before registering it), /key/generate (whose reply proves a freshly chosen value
    // registered), the workload Secret; then the Ready status.
    let secret_bound = rtt + k8s_write * 3;
    let ready_bound = secret_bound + k8s_write;
    println!("Latency per key ({n} keys):");
    let mut t = Table::new(&[
        "from RouteroKey create to",
        "median",
        "p90",
        "min",
        "max",
        "lower bound",
    ]);
    t.row(vec![
        "Secret holds the confirmed key".into(),
        ms(to_secret.median()),
        ms(to_secret.quantile(0.9)),
        ms(to_secret.min()),
        ms(to_secret.max()),
        format!(
            "{} (1 gateway round trip + 3 Kubernetes writes)",
            ms(secret_bound)
        ),
    ]);
    t.row(vec![
        "RouteroKey Ready=True".into(),
        ms(to_ready.median()),
        ms(to_ready.quantile(0.9)),
        ms(to_ready.min()),
        ms(to_ready.max()),
        format!("{} (+ 1 status write)", ms(ready_bound)),
    ]);
    t.print();
    println!(
        "Median ÷ bound: Secret {:.2}, Ready {:.2} (target ≤ 1.3)\n",
        to_secret.median().as_secs_f64() / secret_bound.as_secs_f64(),
        to_ready.median().as_secs_f64() / ready_bound.as_secs_f64()
    );

    println!("Gateway calls per key, by endpoint (unavoidable: POST /key/generate):");
    let mut t = Table::new(&["endpoint", "calls per key"]);
    for (k, v) in &calls {
        t.row(vec![k.clone(), per_key(*v)]);
    }
    t.row(vec!["total".into(), per_key(calls.values().sum())]);
    t.print();

    println!("Kubernetes writes per key seen through watches (a Secret create is one write):");
    let mut t = Table::new(&["write", "per key"]);
    for (k, v) in &writes {
        t.row(vec![k.clone(), per_key(*v)]);
    }
    t.row(vec!["total".into(), per_key(writes.values().sum())]);
    t.print();
    print_warnings("during the run");
}
