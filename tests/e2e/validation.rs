//! Bad manifests are rejected by the API server at `kubectl apply` time, with a message naming the field.
use crate::support::testbed::{self, kubectl};

fn team(spec: &str) -> String {
    format!(
        "apiVersion: routero.ai/v1alpha1\nkind: RouteroTeam\nmetadata: {{name: t}}\nspec: {spec}\n"
    )
}

fn key(spec: &str) -> String {
    format!(
        "apiVersion: routero.ai/v1alpha1\nkind: RouteroKey\nmetadata: {{name: k}}\nspec: {spec}\n"
    )
}

fn member(spec: &str) -> String {
    format!(
        "apiVersion: routero.ai/v1alpha1\nkind: RouteroMember\nmetadata: {{name: m}}\nspec: {spec}\n"
    )
}

/// Applies `manifest`; asserts it is refused and that the error names `needle`.
fn assert_rejected(ns: &str, case: &str, manifest: &str, needle: &str) {
    let (ok, _, stderr) = kubectl(&["apply", "-n", ns, "-f", "-"], Some(manifest));
    assert!(!ok, "{case}: accepted but should be rejected:\n{manifest}");
    assert!(
        stderr.contains(needle),
        "{case}: error does not name {needle:?}:\n{stderr}"
    );
}

fn assert_accepted(ns: &str, manifest: &str) {
    let (ok, _, stderr) = kubectl(&["apply", "-n", ns, "-f", "-"], Some(manifest));
    assert!(ok, "rejected:\n{manifest}\n{stderr}");
}

#[tokio::test]
async fn invalid_manifests_are_rejected_with_the_field_named() {
    let client = testbed::client().await;
    let ns = testbed::namespace(&client, "validation").await;
    let cases = [
        ("negative budget", team("{maxBudget: -5}"), "spec.maxBudget"),
        (
            "month spelled out",
            team("{budgetDuration: 1month}"),
            "spec.budgetDuration",
        ),
        (
            "minutes as a budget window",
            team("{budgetDuration: 1m}"),
            "spec.budgetDuration",
        ),
        (
            "empty model name",
            team("{models: [\"\"]}"),
            "spec.models[0]",
        ),
        (
            "bad deletionPolicy",
            team("{deletionPolicy: Keep}"),
            "spec.deletionPolicy",
        ),
        (
            "negative tpm limit",
            team("{tpmLimit: -1}"),
            "spec.tpmLimit",
        ),
        (
            "reserved metadata key",
            team("{metadata: {routero.ai/owner: me}}"),
            "reserved for the operator",
        ),
        (
            "bad teamId",
            team("{teamId: \"has spaces\"}"),
            "spec.teamId",
        ),
        ("missing teamRef", key("{alias: a}"), "spec.teamRef"),
        (
            "empty teamRef name",
            key("{teamRef: {name: \"\"}}"),
            "spec.teamRef.name",
        ),
        (
            "key duration spelled out",
            key("{teamRef: {name: t}, duration: 1month}"),
            "spec.duration",
        ),
        (
            "negative key budget",
            key("{teamRef: {name: t}, maxBudget: -1}"),
            "spec.maxBudget",
        ),
        (
            "bad alias",
            key("{teamRef: {name: t}, alias: \"my key\"}"),
            "spec.alias",
        ),
        (
            "bad secret field",
            key("{teamRef: {name: t}, secret: {keyField: \"api key!\"}}"),
            "spec.secret.keyField",
        ),
        (
            "base URL field = key field",
            key("{teamRef: {name: t}, secret: {keyField: K, baseUrlField: K}}"),
            "baseUrlField must differ from keyField",
        ),
        (
            "unknown rotation strategy",
            key("{teamRef: {name: t}, rotation: {strategy: Sometimes}}"),
            "spec.rotation.strategy",
        ),
        (
            "bad rotation interval",
            key("{teamRef: {name: t}, rotation: {every: 30days}}"),
            "spec.rotation.every",
        ),
        (
            "unknown role",
            member("{email: a@example.com, role: internal_viewer}"),
            "spec.role",
        ),
        ("bad email", member("{email: not-an-email}"), "spec.email"),
        (
            "unknown team role",
            member("{email: a@example.com, teams: [{name: t, role: owner}]}"),
            "spec.teams[0].role",
        ),
        (
            "duplicate team membership",
            member("{email: a@example.com, teams: [{name: t}, {name: t}]}"),
            "spec.teams[1]",
        ),
    ];
    assert!(cases.len() >= 12);
    for (case, manifest, needle) in &cases {
        assert_rejected(&ns, case, manifest, needle);
    }

    // Immutable identities: accepted once, then a change is refused.
    assert_accepted(&ns, &team("{teamId: finance-x}"));
    assert_rejected(
        &ns,
        "changing teamId",
        &team("{teamId: finance-y}"),
        "teamId is immutable",
    );
    assert_rejected(
        &ns,
        "removing teamId",
        &team("{maxBudget: 5}"),
        "teamId is immutable",
    );
    assert_accepted(&ns, &key("{teamRef: {name: t}}"));
    assert_rejected(
        &ns,
        "changing teamRef",
        &key("{teamRef: {name: other}}"),
        "teamRef is immutable",
    );
    assert_rejected(
        &ns,
        "adding memberRef",
        &key("{teamRef: {name: t}, memberRef: {name: m}}"),
        "memberRef is immutable",
    );
    assert_accepted(&ns, &member("{email: a@example.com, userId: alice}"));
    assert_rejected(
        &ns,
        "changing userId",
        &member("{email: a@example.com, userId: bob}"),
        "userId is immutable",
    );
}

/// Every example in examples/ and every YAML block in README.md applies cleanly.
#[tokio::test]
async fn examples_apply_cleanly() {
    let client = testbed::client().await;
    let ns = testbed::namespace(&client, "examples").await;
    let dir = testbed::repo_dir().join("examples");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .expect("examples/")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    files.sort();
    assert!(!files.is_empty());
    for file in files
        .iter()
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
    {
        let path = file.to_string_lossy();
        let (ok, _, stderr) = kubectl(&["apply", "-n", &ns, "-f", &path], None);
        assert!(ok, "{path} does not apply: {stderr}");
    }
    let readme = std::fs::read_to_string(testbed::repo_dir().join("README.md")).expect("README.md");
    let blocks: Vec<&str> = readme
        .split("```yaml\n")
        .skip(1)
        .filter_map(|b| b.split("```").next())
        .collect();
    for block in &blocks {
        if !block.contains("apiVersion:") {
            ci_step_runs_real_flags(block);
            continue;
        }
        let (ok, _, stderr) = kubectl(&["apply", "-n", &ns, "-f", "-"], Some(block));
        assert!(ok, "README block does not apply:\n{block}\n{stderr}");
    }
}

/// A README YAML block that is no Kubernetes object is a CI step (the pull-request check): it must be valid YAML,
/// and every `routero-operator` command in it must use flags the command has.
fn ci_step_runs_real_flags(block: &str) {
    let steps: serde_json::Value = serde_yaml::from_str(block).expect("README CI step is YAML");
    let run = steps[0]["run"].as_str().expect("a step with run:");
    let commands: Vec<&str> = run
        .lines()
        .map(str::trim)
        .filter(|l| l.starts_with("routero-operator "))
        .collect();
    assert!(
        !commands.is_empty(),
        "the step runs routero-operator:\n{block}"
    );
    for line in commands {
        let words: Vec<&str> = line.split_whitespace().take_while(|w| *w != ">").collect();
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_routero-operator"))
            .args([words[1], "--help"])
            .output()
            .expect("routero-operator --help");
        let help = String::from_utf8_lossy(&out.stdout);
        for flag in words.iter().filter(|w| w.starts_with('-')) {
            assert!(
                help.contains(flag),
                "README's `{line}`: {flag} is not a flag of {}",
                words[1]
            );
        }
    }
}
