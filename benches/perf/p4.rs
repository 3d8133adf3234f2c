//! P4: the operator process's memory with N keys and their Secrets while many unrelated Secrets exist in the
//! cluster. The operator watches all namespaces, as deployed by default; its Secret watch must be label-selected.
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Namespace, Secret};
use kube::Api;
use kube::api::PostParams;
use serde_json::json;

use futures::StreamExt;

use crate::harness::{
    Table, Tracker, create_fleet, create_one, env_or, mib, operator_binary, secs, total,
};
use crate::p2::CREATE_CONCURRENCY;
use crate::process::OperatorProcess;
use crate::support::fake_gateway::FakeGateway;
use crate::support::testbed;

const NOISE_NAMESPACES: usize = 20;

pub async fn run() {
    let noise: usize = env_or("ROUTERO_BENCH_SECRETS", 50_000);
    let noise_bytes: usize = env_or("ROUTERO_BENCH_SECRET_BYTES", 1024);
    let keys: usize = env_or("ROUTERO_BENCH_KEYS", 10_000);
    let teams: usize = env_or("ROUTERO_BENCH_TEAMS", 50);
    let rate: u32 = env_or("ROUTERO_BENCH_RATE", 1000);
    let timeout = Duration::from_secs(env_or("ROUTERO_BENCH_TIMEOUT_SECS", 1800));
    let (bin, built_by) = operator_binary();
    println!(
        "P4: operator process RSS, {keys} RouteroKeys in {teams} teams and {noise} unrelated Secrets of {noise_bytes} B \
         in {NOISE_NAMESPACES} other namespaces; the operator watches all namespaces; gateway rate limit {rate}/s; \
         resync every {} s\n",
        env_or::<u64>("ROUTERO_BENCH_RESYNC_SECS", 30)
    );

    let client = testbed::client().await;
    let fake = FakeGateway::start().await;

    let namespaces: Api<Namespace> = Api::all(client.clone());
    let sfx = testbed::suffix();
    let mut noise_ns = Vec::new();
    for i in 0..NOISE_NAMESPACES {
        let name = format!("noise-{sfx}-{i:02}");
        let ns: Namespace =
            serde_json::from_value(json!({"metadata": {"name": name}})).expect("namespace");
        namespaces
            .create(&PostParams::default(), &ns)
            .await
            .expect("create namespace");
        noise_ns.push(name);
    }
    let payload = "x".repeat(noise_bytes);
    let started = Instant::now();
    let jobs = (0..noise).map(|i| {
        let api: Api<Secret> = Api::namespaced(client.clone(), &noise_ns[i % NOISE_NAMESPACES]);
        let secret: Secret = serde_json::from_value(json!({
            "metadata": {"name": format!("unrelated-{i:06}"), "labels": {"app": "unrelated"}},
            "stringData": {"payload": payload},
        }))
        .expect("secret");
        (api, secret)
    });
    futures::stream::iter(jobs)
        .map(|(api, s)| async move { create_one(&api, s).await })
        .buffer_unordered(CREATE_CONCURRENCY)
        .collect::<()>()
        .await;
    let noise_in = started.elapsed();
    eprintln!("created {noise} unrelated Secrets in {}", secs(noise_in));

    let ns = testbed::namespace(&client, "bench-p4").await;
    let tracker = Tracker::start(&client, &ns).await;
    let log = std::env::temp_dir().join("routero-bench-p4-operator.log");
    let rate_arg = rate.to_string();
    // A short resync, so the measured RSS includes the steady state's periodic key listing (every half interval).
    let resync_arg = format!("{}s", env_or::<u64>("ROUTERO_BENCH_RESYNC_SECS", 30));
    let mut op = OperatorProcess::spawn(
        &bin,
        &fake,
        &[
            "--gateway-rate-limit",
            &rate_arg,
            "--resync-interval",
            &resync_arg,
            "--admin-namespaces",
            "routero-system",
        ],
        &log,
    )
    .await;
    tokio::time::sleep(Duration::from_secs(10)).await;
    let (idle_rss, _) = op.rss();
    eprintln!("operator idle (no keys yet): RSS {}", mib(idle_rss));

    let started = Instant::now();
    let created_in = create_fleet(&client, &ns, teams, keys, CREATE_CONCURRENCY).await;
    eprintln!(
        "created {teams} teams and {keys} keys in {}",
        secs(created_in)
    );
    let (mut peak_rss, mut peak_sockets) = (0, 0);
    let all = tracker
        .wait(
            timeout,
            Duration::from_secs(2),
            |t| t.teams_ready() == teams && t.keys_ready() == keys,
            |t| {
                let (rss, _) = op.rss();
                let sockets = op.sockets();
                peak_rss = peak_rss.max(rss);
                peak_sockets = peak_sockets.max(sockets);
                eprintln!(
                    "  {:>6.0} s: {} of {keys} keys Ready, operator RSS {}, {sockets} open sockets",
                    started.elapsed().as_secs_f64(),
                    t.keys_ready(),
                    mib(rss)
                );
            },
        )
        .await;
    let to_ready = started.elapsed();
    let (ready_rss, _) = op.rss();
    tokio::time::sleep(Duration::from_secs(15)).await;
    let (settled_rss, hwm) = op.rss();
    let settled_sockets = op.sockets();
    let calls: BTreeMap<String, u64> = fake.counts();
    let problems = op.problems();
    op.kill().await;

    if !all {
        println!(
            "TIMED OUT after {}: {} of {keys} keys Ready\n",
            secs(timeout),
            tracker.keys_ready()
        );
    }
    let mut t = Table::new(&["P4", "value"]);
    t.row(vec![
        "operator binary".into(),
        format!("{} ({built_by})", bin.display()),
    ]);
    t.row(vec![
        "unrelated Secrets (created in)".into(),
        format!("{noise} × {noise_bytes} B ({})", secs(noise_in)),
    ]);
    t.row(vec![
        "RouteroKeys / teams (created in)".into(),
        format!("{keys} / {teams} ({})", secs(created_in)),
    ]);
    t.row(vec!["keys Ready".into(), tracker.keys_ready().to_string()]);
    t.row(vec!["create to all Ready".into(), secs(to_ready)]);
    t.row(vec!["gateway calls".into(), total(&calls).to_string()]);
    t.row(vec![
        "RSS idle, no keys (unrelated Secrets only)".into(),
        mib(idle_rss),
    ]);
    t.row(vec!["RSS when all Ready".into(), mib(ready_rss)]);
    t.row(vec!["RSS 15 s later (VmRSS)".into(), mib(settled_rss)]);
    t.row(vec!["peak RSS (VmHWM)".into(), mib(hwm.max(peak_rss))]);
    t.row(vec![
        "RSS per key above idle".into(),
        format!(
            "{:.1} KiB",
            settled_rss.saturating_sub(idle_rss) as f64 / keys as f64
        ),
    ]);
    t.row(vec![
        "open sockets: peak sampled every 2 s / 15 s after all Ready".into(),
        format!("{peak_sockets} / {settled_sockets}"),
    ]);
    t.row(vec!["WARN/ERROR log lines".into(), problems.to_string()]);
    t.print();
    println!("operator log: {}\n", log.display());
}
