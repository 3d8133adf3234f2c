//! P2: N RouteroKeys in 50 teams, all created before the operator starts, to all Ready; next to the floor the
//! gateway rate limit sets. Also the setup of P3.
use std::time::{Duration, Instant};

use crate::harness::{
    Table, Tracker, create_fleet, env_or, gateway_writes, print_warnings, secs, target, total,
};
use crate::support::fake_gateway::FakeGateway;
use crate::support::kube_recorder::{RequestLog, recording_client};
use crate::support::testbed::{self, Operator, OperatorOptions};

/// Requests in flight while the bench creates objects.
pub const CREATE_CONCURRENCY: usize = 64;

/// A namespace of teams and keys, the fake gateway, the operator running over them, and a tracker.
pub struct Fleet {
    pub ns: String,
    pub fake: FakeGateway,
    pub tracker: Tracker,
    pub operator: Option<Operator>,
    /// Every API-server request the operator made.
    pub requests: RequestLog,
    pub teams: usize,
    pub keys: usize,
    /// When the operator was started.
    pub started: Instant,
    pub created_in: Duration,
}

impl Fleet {
    /// Creates `teams` teams and `keys` keys, then starts the operator (a cold start).
    pub async fn cold_start(
        prefix: &str,
        teams: usize,
        keys: usize,
        rate: u32,
        resync: Duration,
    ) -> Self {
        let client = testbed::client().await;
        let fake = FakeGateway::start().await;
        let ns = testbed::namespace(&client, prefix).await;
        let tracker = Tracker::start(&client, &ns).await;
        let created_in = create_fleet(&client, &ns, teams, keys, CREATE_CONCURRENCY).await;
        eprintln!(
            "created {teams} teams and {keys} keys in {}; starting the operator",
            secs(created_in)
        );
        // The creates are the bench's writes, not the operator's: wait until the watch has seen them all.
        let seen = tracker
            .wait(
                Duration::from_secs(120),
                Duration::from_secs(120),
                |t| t.keys_seen() == keys,
                |_| {},
            )
            .await;
        assert!(seen, "the watch sees every key");
        fake.reset_counts();
        tracker.take_writes();
        let opts = OperatorOptions {
            rate_limit: rate,
            resync,
            timeout: Duration::from_secs(10),
            ..Default::default()
        };
        let (recording, requests) = recording_client().await;
        let started = Instant::now();
        let operator = Some(Operator::start(&recording, &target(&fake), &ns, opts).await);
        Self {
            ns,
            fake,
            tracker,
            operator,
            requests,
            teams,
            keys,
            started,
            created_in,
        }
    }

    /// Waits until every team and key is Ready, printing progress every 10 s. False on timeout.
    pub async fn wait_all_ready(&self, timeout: Duration) -> bool {
        let (teams, keys) = (self.teams, self.keys);
        self.tracker
            .wait(
                timeout,
                Duration::from_secs(10),
                |t| t.teams_ready() == teams && t.keys_ready() == keys,
                |t| {
                    eprintln!(
                        "  {:>6.0} s: {} of {teams} teams and {} of {keys} keys Ready, {} gateway calls",
                        self.started.elapsed().as_secs_f64(),
                        t.teams_ready(),
                        t.keys_ready(),
                        total(&self.fake.counts()),
                    )
                },
            )
            .await
    }

    pub async fn stop(mut self) {
        if let Some(op) = self.operator.take() {
            op.stop().await;
        }
    }
}

pub async fn run() {
    let keys: usize = env_or("ROUTERO_BENCH_KEYS", 5000);
    let teams: usize = env_or("ROUTERO_BENCH_TEAMS", 50);
    let rate: u32 = env_or("ROUTERO_BENCH_RATE", 20);
    let timeout = Duration::from_secs(env_or("ROUTERO_BENCH_TIMEOUT_SECS", 1800));
    println!(
        "P2: cold start with {keys} RouteroKeys in {teams} teams, gateway rate limit {rate}/s, no added latency\n"
    );
    let fleet = Fleet::cold_start("bench-p2", teams, keys, rate, Duration::from_secs(300)).await;
    let all = fleet.wait_all_ready(timeout).await;
    let wall = fleet.started.elapsed();
    let calls = fleet.fake.counts();
    let writes = fleet.tracker.take_writes();
    let ready_times = fleet.tracker.key_ready_times();
    let ready = ready_times.len();
    let at = |q: f64| {
        ready_times
            .get(((q * keys as f64).ceil() as usize).saturating_sub(1))
            .map_or("-".to_owned(), |t| secs(*t - fleet.started))
    };
    let floor_min = (keys + 2 * teams) as f64 / f64::from(rate);
    let floor = total(&calls) as f64 / f64::from(rate);

    if !all {
        println!(
            "TIMED OUT after {}: figures are for the {ready} keys Ready by then\n",
            secs(timeout)
        );
    }
    let mut t = Table::new(&["P2", "value"]);
    t.row(vec!["keys / teams".into(), format!("{keys} / {teams}")]);
    t.row(vec![
        "gateway rate limit".into(),
        format!("{rate} requests/s"),
    ]);
    t.row(vec![
        "creating the resources (before start)".into(),
        secs(fleet.created_in),
    ]);
    t.row(vec![
        "operator start to first key Ready".into(),
        at(1.0 / keys as f64),
    ]);
    t.row(vec!["operator start to 50% of keys Ready".into(), at(0.5)]);
    t.row(vec!["operator start to 90% of keys Ready".into(), at(0.9)]);
    t.row(vec![
        "operator start to all Ready (wall)".into(),
        secs(wall),
    ]);
    t.row(vec![
        "throughput".into(),
        format!("{:.1} keys/s", ready as f64 / wall.as_secs_f64()),
    ]);
    t.row(vec![
        "gateway calls (writes)".into(),
        format!("{} ({})", total(&calls), gateway_writes(&calls)),
    ]);
    t.row(vec![
        "gateway calls per key".into(),
        format!("{:.2}", total(&calls) as f64 / keys as f64),
    ]);
    t.row(vec![
        "floor: gateway calls made / rate".into(),
        format!("{floor:.1} s"),
    ]);
    t.row(vec![
        "floor: unavoidable calls / rate".into(),
        format!("{floor_min:.1} s (1 per key: generate; 2 per team: info + new)"),
    ]);
    t.row(vec![
        "wall / floor (unavoidable calls)".into(),
        format!("{:.2}", wall.as_secs_f64() / floor_min),
    ]);
    t.row(vec![
        "wall / floor (calls made)".into(),
        format!("{:.2}", wall.as_secs_f64() / floor),
    ]);
    t.print();

    println!("Gateway calls by endpoint:");
    let mut t = Table::new(&["endpoint", "calls", "per key"]);
    for (k, v) in &calls {
        t.row(vec![
            k.clone(),
            v.to_string(),
            format!("{:.2}", *v as f64 / keys as f64),
        ]);
    }
    t.print();

    println!("Kubernetes writes seen through watches:");
    let mut t = Table::new(&["write", "count", "per key"]);
    for (k, v) in &writes {
        t.row(vec![
            k.clone(),
            v.to_string(),
            format!("{:.2}", *v as f64 / keys as f64),
        ]);
    }
    t.print();
    print_warnings("from operator start to all Ready");
    eprintln!("namespace {}", fleet.ns);
    fleet.stop().await;
}
