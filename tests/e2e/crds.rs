//! The generated files in crds/ (and the chart's copy) match the Rust types.
use crate::support::testbed::repo_dir;

#[test]
fn generated_crds_are_up_to_date() {
    let want = routero_operator::crd::crds_yaml().expect("render CRDs");
    for path in [
        "crds/routero.ai.yaml",
        "charts/routero-operator/crds/routero.ai.yaml",
    ] {
        let file = repo_dir().join(path);
        if path.starts_with("charts/") && !file.exists() {
            continue;
        }
        let have = std::fs::read_to_string(&file).unwrap_or_default();
        assert!(
            have == want,
            "{path} is stale: run `cargo run -- crd > {path}`"
        );
    }
}
