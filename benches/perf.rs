//! The performance figures of docs/performance.md, measured against the test bed's API server and the in-repo fake
//! gateway (never asserted in tests):
//!
//! ```text
//! cargo bench --bench perf -- <p1|p2|p3|p4|p5|p6|all>...
//! ```
//!
//! - `p1`: latency of one key (create to Secret and to Ready) with 20 ms added per gateway request, and its bound.
//! - `p2`: N keys in 50 teams from a cold start to all Ready, next to the gateway rate limit's floor.
//! - `p3`: gateway calls and Kubernetes writes per resync in steady state.
//! - `p4`: RSS of the operator process with N keys while many unrelated Secrets exist.
//! - `p5`: release binary size and time from process start to the first reconcile.
//! - `p6`: fairness: one key at a time in namespace B, create → `Ready`, while namespace A issues N keys.
//!
//! Settings come from `ROUTERO_BENCH_*` variables (see scripts/bench.sh). Without `KUBECONFIG`, the bench starts a
//! test-bed API server of its own in `TESTBED_DIR` (default /var/tmp/routero-bench-testbed), apart from the one the
//! tests share, and restarts it empty before `p4`.
#[path = "../tests/support/mod.rs"]
mod support;

#[path = "perf/harness.rs"]
mod harness;
#[path = "perf/p1.rs"]
mod p1;
#[path = "perf/p2.rs"]
mod p2;
#[path = "perf/p3.rs"]
mod p3;
#[path = "perf/p4.rs"]
mod p4;
#[path = "perf/p5.rs"]
mod p5;
#[path = "perf/p6.rs"]
mod p6;
#[path = "perf/process.rs"]
mod process;
#[path = "perf/warnings.rs"]
mod warnings;

use std::process::{Command, ExitCode};

const SCENARIOS: [&str; 6] = ["p1", "p2", "p3", "p4", "p5", "p6"];
const BENCH_TESTBED_DIR: &str = "/var/tmp/routero-bench-testbed";

fn main() -> ExitCode {
    // Cargo passes `--bench`; everything else names a scenario.
    let mut chosen: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    if chosen.iter().any(|a| a == "all") {
        chosen = SCENARIOS.iter().map(|s| (*s).to_owned()).collect();
    }
    if chosen.is_empty() {
        eprintln!(
            "usage: cargo bench --bench perf -- <{}|all>...",
            SCENARIOS.join("|")
        );
        return ExitCode::SUCCESS;
    }
    if let Some(bad) = chosen.iter().find(|c| !SCENARIOS.contains(&c.as_str())) {
        eprintln!("unknown scenario {bad:?}; expected one of {SCENARIOS:?} or all");
        return ExitCode::from(2);
    }
    let owns_testbed = std::env::var_os("KUBECONFIG").is_none();
    if owns_testbed && std::env::var_os("TESTBED_DIR").is_none() {
        // SAFETY: no other thread exists yet.
        unsafe { std::env::set_var("TESTBED_DIR", BENCH_TESTBED_DIR) };
    }
    warnings::init();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    println!("machine: {}", harness::machine());
    println!("operator source: {}\n", harness::source());
    for scenario in &chosen {
        if scenario == "p4" && owns_testbed {
            // P4 counts every Secret in the cluster: start from an empty one.
            restart_testbed();
        }
        warnings::take();
        runtime.block_on(async {
            match scenario.as_str() {
                "p1" => p1::run().await,
                "p2" => p2::run().await,
                "p3" => p3::run().await,
                "p4" => p4::run().await,
                "p5" => p5::run().await,
                _ => p6::run().await,
            }
        });
    }
    ExitCode::SUCCESS
}

/// Restarts the bench's own test bed: `envtest.sh start` after `stop` begins with an empty etcd (and rewrites the
/// same kubeconfig file).
fn restart_testbed() {
    let script = support::testbed::shared_testbed().join("envtest.sh");
    for arg in ["stop", "start"] {
        let out = Command::new(&script)
            .arg(arg)
            .output()
            .expect("run envtest.sh");
        assert!(
            out.status.success(),
            "envtest.sh {arg} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
