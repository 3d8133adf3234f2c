//! P3: steady state. After a P2-like cold start with a short resync interval and one resync to settle, the gateway
//! calls and Kubernetes writes of two full resync intervals, per resync and per object.
use std::time::Duration;

use crate::harness::{Table, env_or, gateway_writes, print_warnings, secs, total};
use crate::p2::Fleet;
use crate::support::kube_recorder::RequestLog;

/// The operator's GETs of single objects (`…/<plural>/<name>`, no watch), by resource.
fn object_gets(log: &RequestLog) -> std::collections::BTreeMap<String, u64> {
    let mut by = std::collections::BTreeMap::new();
    for r in log.requests() {
        if r.method != "GET" || r.query.contains("watch") {
            continue;
        }
        let mut parts = r.path.rsplit('/');
        let (_name, plural) = (parts.next(), parts.next());
        if let Some(p) = plural
            .filter(|p| ["secrets", "routeroteams", "routerokeys", "routeromembers"].contains(p))
        {
            *by.entry(p.to_owned()).or_insert(0) += 1;
        }
    }
    by
}

pub async fn run() {
    let keys: usize = env_or("ROUTERO_BENCH_KEYS", 1000);
    let teams: usize = env_or("ROUTERO_BENCH_TEAMS", 50);
    let rate: u32 = env_or("ROUTERO_BENCH_RATE", 200);
    let resync = Duration::from_secs(env_or("ROUTERO_BENCH_RESYNC_SECS", 30));
    let timeout = Duration::from_secs(env_or("ROUTERO_BENCH_TIMEOUT_SECS", 1800));
    println!(
        "P3: steady state of {keys} RouteroKeys in {teams} teams, resync interval {} (±10% jitter), gateway rate limit {rate}/s\n",
        secs(resync)
    );
    let fleet = Fleet::cold_start("bench-p3", teams, keys, rate, resync).await;
    assert!(fleet.wait_all_ready(timeout).await, "all Ready in time");
    eprintln!(
        "all Ready after {}; settling for one resync",
        secs(fleet.started.elapsed())
    );
    tokio::time::sleep(resync.mul_f64(1.2)).await;

    let intervals = 2;
    print_warnings("during set-up and the settling resync");
    fleet.fake.reset_counts();
    fleet.tracker.take_writes();
    fleet.requests.clear();
    eprintln!("measuring {intervals} resync intervals");
    tokio::time::sleep(resync * intervals).await;
    let calls = fleet.fake.counts();
    let writes = fleet.tracker.take_writes();
    let gets = object_gets(&fleet.requests);
    let objects = (keys + teams) as f64;
    let per_resync = |v: u64| v as f64 / f64::from(intervals);

    let mut t = Table::new(&["gateway endpoint", "calls per resync", "per object"]);
    for (k, v) in &calls {
        t.row(vec![
            k.clone(),
            format!("{:.1}", per_resync(*v)),
            format!("{:.3}", per_resync(*v) / objects),
        ]);
    }
    t.row(vec![
        "total".into(),
        format!("{:.1}", per_resync(total(&calls))),
        format!("{:.3}", per_resync(total(&calls)) / objects),
    ]);
    t.row(vec![
        "of which writes".into(),
        format!("{:.1}", per_resync(gateway_writes(&calls))),
        format!("{:.3}", per_resync(gateway_writes(&calls)) / objects),
    ]);
    t.print();

    let mut t = Table::new(&[
        "API-server GETs of one object",
        "per resync",
        "per key resync",
    ]);
    for (k, v) in &gets {
        t.row(vec![
            k.clone(),
            format!("{:.1}", per_resync(*v)),
            format!("{:.3}", per_resync(*v) / keys as f64),
        ]);
    }
    if gets.is_empty() {
        t.row(vec!["none".into(), "0".into(), "0".into()]);
    }
    t.print();

    let mut t = Table::new(&["Kubernetes writes (watched)", "per resync"]);
    for (k, v) in &writes {
        t.row(vec![k.clone(), format!("{:.1}", per_resync(*v))]);
    }
    if writes.is_empty() {
        t.row(vec!["none".into(), "0".into()]);
    }
    t.print();
    println!(
        "Objects: {keys} keys + {teams} teams = {objects}; measured over {} after one settling resync.\n",
        secs(resync * intervals)
    );
    print_warnings("during the measured resyncs");
    fleet.stop().await;
}
