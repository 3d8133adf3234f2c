//! P5: the stripped release binary's size, and the time from process start to the first reconcile: the binary is
//! started with one RouteroTeam already in its namespace, and the clock stops when the team turns Ready.
use std::time::Duration;

use kube::Api;
use kube::api::PostParams;
use routero_operator::crd::RouteroTeam;

use crate::harness::{Stats, Table, Tracker, env_or, mib, ms, operator_binary, team};
use crate::process::OperatorProcess;
use crate::support::fake_gateway::FakeGateway;
use crate::support::testbed;

const WAIT: Duration = Duration::from_secs(60);
/// Start-up log lines worth timing, in the order they appear (those the binary does not print are left out).
const LOG_LINES: [&str; 3] = [
    "starting routero-operator",
    "gateway is ready",
    "watch caches synced",
];

pub async fn run() {
    let runs: usize = env_or("ROUTERO_BENCH_P5_RUNS", 5);
    let (bin, built_by) = operator_binary();
    let size = std::fs::metadata(&bin).expect("operator binary").len();
    println!("P5: binary size, and start to first reconcile over {runs} runs\n");

    let client = testbed::client().await;
    let fake = FakeGateway::start().await;
    let log = std::env::temp_dir().join("routero-bench-p5-operator.log");
    let mut lines: Vec<Vec<Duration>> = vec![Vec::new(); LOG_LINES.len()];
    let (mut first_line, mut reconciled, mut rss) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..runs {
        let ns = testbed::namespace(&client, "bench-p5").await;
        let tracker = Tracker::start(&client, &ns).await;
        let teams: Api<RouteroTeam> = Api::namespaced(client.clone(), &ns);
        let mut t = team("team");
        t.spec.team_id = Some(format!("p5-{}", testbed::suffix()));
        teams
            .create(&PostParams::default(), &t)
            .await
            .expect("create team");
        let mut op = OperatorProcess::spawn(&bin, &fake, &["--watch-namespaces", &ns], &log).await;
        let ready = tracker
            .wait(WAIT, WAIT, |t| t.teams_ready() == 1, |_| {})
            .await;
        assert!(ready, "team Ready within {WAIT:?}; see {}", log.display());
        let team_ready = tracker.team_ready_at("team").expect("team Ready");
        reconciled.push(team_ready - op.spawned);
        if let Some(t) = op.first_line_at() {
            first_line.push(t - op.spawned);
        }
        for (needle, samples) in LOG_LINES.iter().zip(lines.iter_mut()) {
            if let Some(t) = op.line_at(needle) {
                samples.push(t - op.spawned);
            }
        }
        rss.push(op.rss().0);
        op.kill().await;
    }

    let mut t = Table::new(&["P5", "value"]);
    t.row(vec![
        "binary".into(),
        format!("{} ({built_by})", bin.display()),
    ]);
    t.row(vec![
        "size".into(),
        format!("{size} bytes ({})", mib(size / 1024)),
    ]);
    t.print();
    let mut t = Table::new(&["from process start to", "median", "min", "max"]);
    let logged = LOG_LINES
        .iter()
        .zip(lines)
        .filter(|(_, s)| !s.is_empty())
        .map(|(needle, s)| (format!("log line \"{needle}\""), s));
    let rows = [("first log line".to_owned(), first_line)]
        .into_iter()
        .chain(logged)
        .chain([("first reconcile done (team Ready)".to_owned(), reconciled)]);
    for (what, samples) in rows {
        let s = Stats::new(samples);
        t.row(vec![what, ms(s.median()), ms(s.min()), ms(s.max())]);
    }
    t.print();
    let rss = rss.iter().sum::<u64>() / runs.max(1) as u64;
    println!("RSS after the first reconcile: {} (mean)\n", mib(rss));
}
