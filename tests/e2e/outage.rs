//! Outages: a gateway 5xx storm never empties or deletes a Secret holding a working key and recovers by itself; an
//! API server restart mid-run makes the operator re-list and carry on.
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use k8s_openapi::api::core::v1::Secret;
use kube::api::{Patch, PatchParams, PostParams};
use kube::{Api, ResourceExt};
use routero_operator::crd::{RouteroKey, RouteroTeam};
use serde_json::json;

use crate::key::Bed;
use crate::support::fake_gateway::{FakeGateway, Fault, FaultKind};
use crate::support::testbed::{self, GatewayTarget, Operator, OperatorOptions, wait_for};

const WAIT: Duration = Duration::from_secs(40);

#[tokio::test]
async fn gateway_5xx_storm_keeps_secrets_and_recovers() {
    let fake = FakeGateway::start().await;
    let bed = Bed::new(GatewayTarget::fake(&fake), "storm", json!({})).await;
    for name in ["a", "b", "c"] {
        bed.create_key(
            name,
            json!({"teamRef": {"name": "team"}, "rotation": {"strategy": "Recreate"}}),
        )
        .await;
    }
    let mut before = Vec::new();
    for name in ["a", "b", "c"] {
        bed.ready_key(name).await;
        before.push(bed.secrets.get(name).await.expect("secret"));
    }

    // The storm: every call fails; a rotation is requested and resyncs run throughout.
    fake.fail(Fault::everywhere(FaultKind::Status(503)));
    let patch = json!({"metadata": {"annotations": {"routero.ai/rotate": "during-storm"}}});
    bed.keys
        .patch("a", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .expect("annotate");
    for name in ["a", "b", "c"] {
        let k = bed.key_reason(name, "GatewayUnavailable").await;
        let message = &k.status.expect("status").conditions[0].message;
        assert!(
            message.contains("503"),
            "the gateway's answer is shown: {message}"
        );
    }
    tokio::time::sleep(Duration::from_secs(4)).await;
    for old in &before {
        let now = bed
            .secrets
            .get(&old.name_any())
            .await
            .expect("Secret still there");
        assert_eq!(
            now.data,
            old.data,
            "Secret {} unchanged during the storm",
            old.name_any()
        );
    }

    fake.clear_faults();
    for name in ["a", "b", "c"] {
        bed.ready_key(name).await;
    }
    let rotated = bed
        .wait_secret_change(
            "a",
            "apiKey",
            &String::from_utf8_lossy(&before[0].data.as_ref().expect("data")["apiKey"].0),
        )
        .await;
    assert_eq!(
        bed.gw.status_with_key(&rotated).await,
        200,
        "the rotation requested during the storm happened after it"
    );
    for old in &before[1..] {
        let v = bed
            .secret_value(&old.name_any(), "apiKey")
            .await
            .expect("key");
        assert_eq!(
            v.as_bytes(),
            old.data.as_ref().expect("data")["apiKey"].0.as_slice(),
            "untouched keys kept"
        );
        assert_eq!(bed.gw.status_with_key(&v).await, 200);
    }
    bed.stop().await;
}

/// A private test bed (its own etcd and API server), so restarting its API server does not disturb other tests.
struct PrivateBed {
    dir: PathBuf,
    kubeconfig: PathBuf,
    /// The restarted API server, which this test owns from then on.
    apiserver: Option<std::process::Child>,
}

impl PrivateBed {
    fn start() -> Self {
        let dir = PathBuf::from(format!(
            "/var/tmp/routero-testbed-restart-{}",
            testbed::suffix()
        ));
        let out = Command::new(testbed::shared_testbed().join("envtest.sh"))
            .arg("start")
            .env("TESTBED_DIR", &dir)
            .output()
            .expect("envtest.sh");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let line = String::from_utf8_lossy(&out.stdout)
            .trim()
            .trim_start_matches("export KUBECONFIG=")
            .to_owned();
        Self {
            dir,
            kubeconfig: PathBuf::from(line),
            apiserver: None,
        }
    }

    /// Kills the API server and starts it again with the same command line (same port, same etcd data).
    fn restart_apiserver(&mut self) {
        let pid_file = self.dir.join("apiserver.pid");
        let pid = std::fs::read_to_string(&pid_file)
            .expect("pid")
            .trim()
            .to_owned();
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).expect("cmdline");
        let args: Vec<String> = cmdline
            .split(|b| *b == 0)
            .filter(|a| !a.is_empty())
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        assert!(
            Command::new("kill")
                .arg(&pid)
                .status()
                .expect("kill")
                .success()
        );
        for _ in 0..100 {
            if !std::path::Path::new(&format!("/proc/{pid}")).exists() {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        std::thread::sleep(Duration::from_secs(1)); // the operator sees the API server gone
        let log = std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .open(self.dir.join("apiserver.log"))
            .expect("log");
        let child = Command::new(&args[0])
            .args(&args[1..])
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("restart apiserver");
        std::fs::write(&pid_file, child.id().to_string()).expect("pid file");
        self.apiserver = Some(child);
    }
}

impl Drop for PrivateBed {
    fn drop(&mut self) {
        let _ = Command::new(testbed::shared_testbed().join("envtest.sh"))
            .arg("stop")
            .env("TESTBED_DIR", &self.dir)
            .output();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[tokio::test]
async fn api_server_restart_mid_run() {
    let mut bed = PrivateBed::start();
    let client = testbed::client_for(&bed.kubeconfig).await;
    let fake = FakeGateway::start().await;
    let target = GatewayTarget::fake(&fake);
    let ns = testbed::namespace(&client, "restart").await;
    let operator = Operator::start(
        &client,
        &target,
        &ns,
        OperatorOptions {
            resync: Duration::from_secs(2),
            ..Default::default()
        },
    )
    .await;
    let teams: Api<RouteroTeam> = Api::namespaced(client.clone(), &ns);
    let keys: Api<RouteroKey> = Api::namespaced(client.clone(), &ns);
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns);
    let team: RouteroTeam = serde_json::from_value(json!({"apiVersion": "routero.ai/v1alpha1", "kind": "RouteroTeam", "metadata": {"name": "t"}, "spec": {"teamId": format!("restart-{}", testbed::suffix())}})).expect("team");
    teams
        .create(&PostParams::default(), &team)
        .await
        .expect("team");
    let key = |name: &str| -> RouteroKey {
        serde_json::from_value(json!({"apiVersion": "routero.ai/v1alpha1", "kind": "RouteroKey", "metadata": {"name": name}, "spec": {"teamRef": {"name": "t"}}})).expect("key")
    };
    keys.create(&PostParams::default(), &key("before"))
        .await
        .expect("key");
    let secret_value =
        |name: &'static str| {
            let secrets = secrets.clone();
            async move {
                secrets.get_opt(name).await.ok().flatten().and_then(|s| {
                    Some(String::from_utf8_lossy(&s.data?.get("apiKey")?.0).into_owned())
                })
            }
        };
    let first = wait_for("first key delivered", WAIT, || secret_value("before")).await;

    bed.restart_apiserver();
    wait_for("API server back, serving our CRDs", WAIT, || async {
        keys.list(&Default::default()).await.ok()
    })
    .await;

    // The operator re-lists and keeps working: a new key is issued, and the first one is rotated on request.
    keys.create(&PostParams::default(), &key("after"))
        .await
        .expect("key after restart");
    let second = wait_for("key issued after the restart", WAIT, || {
        secret_value("after")
    })
    .await;
    keys.patch(
        "before",
        &PatchParams::default(),
        &Patch::Merge(&json!({"metadata": {"annotations": {"routero.ai/rotate": "x"}}})),
    )
    .await
    .expect("annotate");
    let rotated = wait_for("rotated after the restart", WAIT, || async {
        secret_value("before").await.filter(|v| v != &first)
    })
    .await;
    for v in [&second, &rotated] {
        assert!(
            fake.key_by_hash(&crate::support::gateway_reader::sha256_hex(v))
                .is_some()
        );
    }
    operator.stop().await;
}
