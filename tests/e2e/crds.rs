//! The generated files in crds/ and the chart's copy match the Rust types.
use crate::support::testbed::repo_dir;

const REGENERATE: &str =
    "cargo run -- crd | tee crds/routero.ai.yaml > charts/routero-operator/crds/routero.ai.yaml";

#[test]
fn generated_crds_are_up_to_date() {
    let want = routero_operator::crd::crds_yaml().expect("render CRDs");
    for path in [
        "crds/routero.ai.yaml",
        "charts/routero-operator/crds/routero.ai.yaml",
    ] {
        let have = std::fs::read_to_string(repo_dir().join(path)).unwrap_or_default();
        assert!(have == want, "{path} is stale: run `{REGENERATE}`");
    }
}
