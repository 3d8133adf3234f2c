//! The real test bed: the envtest API server (started through ../shared/testbed/envtest.sh when KUBECONFIG is not
//! set), our CRDs installed from the Rust types, a namespace per test, and the real operator run as a task.
use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Api, Client, Config, CustomResourceExt};
use routero_operator::crd::common::{Condition, condition, is_ready};
use routero_operator::crd::{RouteroKey, RouteroMember, RouteroTeam};
use routero_operator::gateway::{AdminKey, GatewayConfig};
use routero_operator::operator::{self, OperatorConfig};
use secrecy::SecretString;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub fn repo_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn shared_testbed() -> PathBuf {
    repo_dir().join("../shared/testbed")
}

/// The kubeconfig path: `$KUBECONFIG`, else the one `envtest.sh start` prints (starting the API server once).
pub fn kubeconfig_path() -> PathBuf {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| {
        if let Ok(p) = std::env::var("KUBECONFIG") {
            return PathBuf::from(p);
        }
        let out = Command::new(shared_testbed().join("envtest.sh"))
            .arg("start")
            .output()
            .expect("run envtest.sh start");
        assert!(
            out.status.success(),
            "envtest.sh start failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let line = String::from_utf8_lossy(&out.stdout).to_string();
        let path = line
            .trim()
            .trim_start_matches("export KUBECONFIG=")
            .to_owned();
        // SAFETY: set once, before any thread reads it (kubectl subprocesses inherit it).
        unsafe { std::env::set_var("KUBECONFIG", &path) };
        PathBuf::from(path)
    })
    .clone()
}

pub async fn client() -> Client {
    client_for(&kubeconfig_path()).await
}

/// A client for the test bed whose kubeconfig is at `path`, with our CRDs installed.
pub async fn client_for(path: &std::path::Path) -> Client {
    let kubeconfig = Kubeconfig::read_from(path).expect("read kubeconfig");
    let config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .expect("kubeconfig");
    let client = Client::try_from(config).expect("client");
    install_crds(&client).await;
    client
}

/// A client for the test bed acting as `user` in `groups`, by impersonation: the API server authorizes its requests
/// by the RBAC bound to that identity, as it would a real user or ServiceAccount (the CRDs are not installed by it).
pub async fn impersonating(user: &str, groups: &[&str]) -> Client {
    let kubeconfig = Kubeconfig::read_from(kubeconfig_path()).expect("read kubeconfig");
    let mut config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .expect("kubeconfig");
    config.auth_info.impersonate = Some(user.to_owned());
    config.auth_info.impersonate_groups = Some(groups.iter().map(|g| (*g).to_owned()).collect());
    Client::try_from(config).expect("client")
}

/// Server-side applies the CRDs generated from the Rust types and waits until they serve.
async fn install_crds(client: &Client) {
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    for crd in [RouteroTeam::crd(), RouteroKey::crd(), RouteroMember::crd()] {
        let name = crd.metadata.name.clone().expect("crd name");
        api.patch(
            &name,
            &PatchParams::apply("routero-tests").force(),
            &Patch::Apply(&crd),
        )
        .await
        .expect("apply crd");
        wait_for(
            &format!("CRD {name} established"),
            Duration::from_secs(30),
            || {
                let api = api.clone();
                let name = name.clone();
                async move {
                    let crd = api.get(&name).await.ok()?;
                    crd.status?
                        .conditions?
                        .iter()
                        .any(|c| c.type_ == "Established" && c.status == "True")
                        .then_some(())
                }
            },
        )
        .await;
    }
}

/// A fresh namespace with a random suffix, so tests sharing the test bed never collide.
pub async fn namespace(client: &Client, prefix: &str) -> String {
    let name = format!("{prefix}-{}", suffix());
    let ns: Namespace =
        serde_json::from_value(serde_json::json!({"metadata": {"name": name}})).expect("ns");
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &ns)
        .await
        .expect("create namespace");
    name
}

pub fn suffix() -> String {
    use rand::Rng;
    let n: u32 = rand::rng().random();
    format!("{n:08x}")
}

/// The three kinds, as far as waiting on their `Ready` condition goes.
pub trait Conditioned:
    kube::Resource<DynamicType = ()> + Clone + std::fmt::Debug + serde::de::DeserializeOwned
{
    fn conditions(&self) -> &[Condition];
}

impl Conditioned for RouteroTeam {
    fn conditions(&self) -> &[Condition] {
        self.status.as_ref().map_or(&[], |s| &s.conditions)
    }
}

impl Conditioned for RouteroKey {
    fn conditions(&self) -> &[Condition] {
        self.status.as_ref().map_or(&[], |s| &s.conditions)
    }
}

impl Conditioned for RouteroMember {
    fn conditions(&self) -> &[Condition] {
        self.status.as_ref().map_or(&[], |s| &s.conditions)
    }
}

/// Waits until `name` is `Ready=True` for its current generation, and returns it.
pub async fn wait_ready_of<K: Conditioned>(api: &Api<K>, name: &str) -> K {
    wait_for(
        &format!("{} {name} Ready", K::kind(&())),
        READY_WAIT,
        || async {
            let obj = api.get(name).await.ok()?;
            is_ready(obj.conditions(), obj.meta().generation).then_some(obj)
        },
    )
    .await
}

/// Waits until `name` is `Ready=False` with `reason`, and returns it.
pub async fn wait_reason_of<K: Conditioned>(api: &Api<K>, name: &str, reason: &str) -> K {
    wait_for(
        &format!("{} {name} Ready=False {reason}", K::kind(&())),
        READY_WAIT,
        || async {
            let obj = api.get(name).await.ok()?;
            condition(obj.conditions(), "Ready")
                .is_some_and(|c| c.status == "False" && c.reason == reason)
                .then_some(obj)
        },
    )
    .await
}

/// How long the helpers above wait for the operator.
const READY_WAIT: Duration = Duration::from_secs(40);

/// Polls `check` every 100 ms until it returns `Some`, or panics with `what` after `timeout`.
pub async fn wait_for<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let start = Instant::now();
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            start.elapsed() < timeout,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A gateway the operator under test talks to.
#[derive(Clone, Debug)]
pub struct GatewayTarget {
    pub url: String,
    pub admin_key: String,
}

impl GatewayTarget {
    /// The in-repo fake gateway.
    pub fn fake(fake: &super::fake_gateway::FakeGateway) -> Self {
        Self {
            url: fake.url.clone(),
            admin_key: fake.admin_key.clone(),
        }
    }

    /// The real LiteLLM of ../shared/testbed/litellm/start.sh: the newest tested release (1.108.7).
    pub fn litellm() -> Self {
        Self::real("ROUTERO_TEST_LITELLM_URL", "http://127.0.0.1:4000")
    }

    /// The oldest tested release (1.98.0), which scripts/test.sh starts beside the newest on its own port and data
    /// directory. The real-gateway scenarios run against both: each has a `_on_real_litellm` and an
    /// `_on_litellm_1_98` test, run in parallel, so the second release adds little to the suite's time.
    pub fn litellm_1_98() -> Self {
        Self::real("ROUTERO_TEST_LITELLM_OLD_URL", "http://127.0.0.1:4001")
    }

    /// Both real gateways, newest first: for a check that is cheap enough to run on each in turn.
    pub fn real_gateways() -> [Self; 2] {
        [Self::litellm(), Self::litellm_1_98()]
    }

    fn real(url_var: &str, default: &str) -> Self {
        Self {
            url: std::env::var(url_var).unwrap_or_else(|_| default.into()),
            admin_key: std::env::var("ROUTERO_TEST_LITELLM_KEY")
                .unwrap_or_else(|_| "sk-admin-test".into()),
        }
    }
}

/// The real operator, running as a task in this test's runtime and watching only the test's namespace.
pub struct Operator {
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

pub struct OperatorOptions {
    pub resync: Duration,
    pub admin_namespaces: Vec<String>,
    pub rate_limit: u32,
    pub timeout: Duration,
}

impl Default for OperatorOptions {
    fn default() -> Self {
        Self {
            resync: Duration::from_secs(300),
            admin_namespaces: vec!["routero-system".into()],
            rate_limit: 200,
            timeout: Duration::from_secs(5),
        }
    }
}

impl Operator {
    pub async fn start(
        client: &Client,
        gateway: &GatewayTarget,
        namespace: &str,
        opts: OperatorOptions,
    ) -> Self {
        Self::start_in(client, gateway, vec![namespace.to_owned()], opts).await
    }

    /// The operator over `namespaces` (none: every namespace, as the chart's default).
    pub async fn start_in(
        client: &Client,
        gateway: &GatewayTarget,
        namespaces: Vec<String>,
        opts: OperatorOptions,
    ) -> Self {
        let mut gw = GatewayConfig::new(
            gateway.url.clone(),
            AdminKey::Static(SecretString::from(gateway.admin_key.clone())),
        );
        gw.rate_limit = std::num::NonZeroU32::new(opts.rate_limit).expect("rate limit > 0");
        gw.timeout = opts.timeout;
        let config = OperatorConfig {
            gateway: gw,
            watch_namespaces: namespaces,
            admin_namespaces: opts.admin_namespaces,
            resync: opts.resync,
            metrics_addr: None,
            leader_election: None,
            alerting: None,
        };
        let (tx, rx) = oneshot::channel::<()>();
        let client = client.clone();
        let task = tokio::spawn(async move {
            let shutdown = async move {
                let _ = rx.await;
            };
            if let Err(e) = operator::run(client, config, shutdown).await {
                panic!("operator failed: {e}");
            }
        });
        Self {
            stop: Some(tx),
            task: Some(task),
        }
    }

    /// Graceful stop: in-flight reconciles finish.
    pub async fn stop(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = tokio::time::timeout(Duration::from_secs(30), task).await;
        }
    }

    /// A crash: the task is dropped wherever it is.
    pub async fn kill(mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
            let _ = task.await;
        }
    }
}

impl Drop for Operator {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// Runs kubectl against the test bed; returns (success, stdout, stderr).
pub fn kubectl(args: &[&str], stdin: Option<&str>) -> (bool, String, String) {
    use std::io::Write;
    let mut cmd = Command::new("kubectl");
    cmd.env("KUBECONFIG", kubeconfig_path()).args(args);
    cmd.stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = cmd.spawn().expect("spawn kubectl");
    if let Some(input) = stdin {
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(input.as_bytes())
            .expect("write stdin");
    } else {
        drop(child.stdin.take());
    }
    let out = child.wait_with_output().expect("kubectl output");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The reasons of the Events (events.k8s.io, as the operator writes them) in `ns`.
pub async fn event_reasons(client: &Client, ns: &str) -> Vec<String> {
    let events: Api<k8s_openapi::api::events::v1::Event> = Api::namespaced(client.clone(), ns);
    events
        .list(&Default::default())
        .await
        .expect("list events")
        .items
        .into_iter()
        .filter_map(|e| e.reason)
        .collect()
}

/// Asserts that the operator recorded an Event with each of `reasons` in `ns`.
pub async fn assert_events(client: &Client, ns: &str, reasons: &[&str]) {
    let seen = event_reasons(client, ns).await;
    for r in reasons {
        assert!(seen.iter().any(|x| x == r), "an Event says {r}: {seen:?}");
    }
}
