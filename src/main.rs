//! `routero-operator`: `run` runs the controllers; `crd`, `dashboard` and `rules` print generated files; `spend`
//! reports spend from the cluster.
use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};
use routero_operator::alerting::AlertingConfig;
use routero_operator::gateway::{AdminKey, GatewayConfig};
use routero_operator::leader::{self, LeaderElection};
use routero_operator::operator::{self, OperatorConfig};
use secrecy::SecretString;

#[derive(Parser)]
#[command(
    name = "routero-operator",
    version,
    about = "Manages Routero gateway teams, keys and members from Kubernetes resources"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Print the CustomResourceDefinitions as one multi-document YAML stream.
    Crd,
    /// Run the controllers.
    Run(Box<RunArgs>),
    /// Print the Grafana dashboard (JSON) the chart ships.
    Dashboard,
    /// Print the Prometheus alerting rules (a rule file) the chart's PrometheusRule carries.
    Rules,
    /// Report spend and budgets per team (and per key) from RouteroTeam and RouteroKey status: needs only `view`
    /// RBAC on the namespaces reported, and no gateway key.
    Spend(SpendArgs),
    /// Write manifests for a workspace built by hand on the gateway, and mark its objects adoptable by the
    /// namespace (an admin action: it needs the gateway admin key).
    Import(ImportArgs),
    /// Show what applying manifests would change on the gateway (reads only; needs no cluster). Exit 0: nothing
    /// would change; 2: something would; 1: an error, or something the operator would refuse.
    Plan(PlanArgs),
}

#[derive(clap::Args)]
struct PlanArgs {
    #[command(flatten)]
    gateway: GatewayArgs,
    /// Manifest files or directories (repeatable).
    #[arg(short = 'f', long = "filename", required = true)]
    files: Vec<PathBuf>,
    /// Namespace of the objects that name none.
    #[arg(short = 'n', long)]
    namespace: Option<String>,
    /// Also plan deleting gateway objects owned by these namespaces that no manifest names any more.
    #[arg(long)]
    prune: bool,
    /// The operator's admin namespaces (where adoption and admin roles are honoured).
    #[arg(long, env = "ROUTERO_ADMIN_NAMESPACES", value_delimiter = ',')]
    admin_namespaces: Vec<String>,
    /// Output format.
    #[arg(short = 'o', long, value_enum, default_value = "text")]
    output: PlanFormat,
}

#[derive(Clone, Copy, ValueEnum)]
enum PlanFormat {
    Text,
    Json,
}

#[derive(clap::Args)]
struct GatewayArgs {
    /// Base URL of the gateway's admin API.
    #[arg(long, env = "ROUTERO_GATEWAY_URL", value_parser = parse_url)]
    gateway_url: String,
    /// File holding the gateway admin key (`run` re-reads it when it changes). Otherwise the ROUTERO_ADMIN_KEY
    /// variable.
    #[arg(long, env = "ROUTERO_ADMIN_KEY_FILE")]
    admin_key_file: Option<PathBuf>,
}

#[derive(clap::Args)]
struct ImportArgs {
    #[command(flatten)]
    gateway: GatewayArgs,
    /// The namespace the manifests are for; the gateway objects are marked adoptable by it.
    #[arg(short = 'n', long)]
    namespace: String,
    /// A gateway team id to import with its members and keys (repeatable).
    #[arg(long = "team", value_name = "ID", required_unless_present = "all")]
    teams: Vec<String>,
    /// A gateway user id to import besides the teams' members, e.g. an auditor in no team (repeatable).
    #[arg(long = "user", value_name = "ID")]
    users: Vec<String>,
    /// Every team, every user (also those in no team) and every key.
    #[arg(long, conflicts_with_all = ["teams", "users"])]
    all: bool,
    /// Write `<namespace>.yaml` into this directory instead of standard output.
    #[arg(short = 'o', long, value_name = "DIR")]
    output: Option<PathBuf>,
    /// `adopt`: a RouteroKey that takes each key over and delivers a new value; `skip`: leave keys alone.
    #[arg(long, value_enum, default_value = "adopt")]
    keys: routero_operator::import::KeyImport,
    /// How long an imported key's old value keeps working after its RouteroKey delivers a new one by Recreate.
    #[arg(long, default_value = "24h", value_parser = parse_grace)]
    grace_period: String,
    /// Import users with admin roles (for an admin namespace of the operator, the only place they are honoured).
    #[arg(long)]
    admin_roles: bool,
    /// Print the manifests without marking anything on the gateway.
    #[arg(long)]
    dry_run: bool,
}

#[derive(clap::Args)]
struct SpendArgs {
    /// Every namespace the caller may list (the cluster-wide list needs cluster-wide view).
    #[arg(short = 'A', long, conflicts_with = "namespace")]
    all_namespaces: bool,
    /// Only this namespace (default: the kubeconfig context's namespace).
    #[arg(short = 'n', long)]
    namespace: Option<String>,
    /// Output format.
    #[arg(short = 'o', long, value_enum, default_value = "table")]
    output: routero_operator::spend::Format,
    /// Also report each key.
    #[arg(long)]
    keys: bool,
}

#[derive(clap::Args)]
struct RunArgs {
    #[command(flatten)]
    gateway: GatewayArgs,
    /// Comma-separated namespaces to watch, each through its own namespaced watches (default: all namespaces).
    /// `--watch-namespace` is the old single-namespace spelling.
    #[arg(
        long,
        alias = "watch-namespace",
        env = "ROUTERO_WATCH_NAMESPACES",
        value_delimiter = ','
    )]
    watch_namespaces: Vec<String>,
    /// Comma-separated namespaces whose RouteroMembers may hold admin roles (default: the operator's own).
    #[arg(long, env = "ROUTERO_ADMIN_NAMESPACES", value_delimiter = ',')]
    admin_namespaces: Vec<String>,
    /// How often every resource is compared with the gateway (e.g. 5m, 30s, 1h).
    #[arg(long, env = "ROUTERO_RESYNC_INTERVAL", default_value = "5m", value_parser = parse_duration)]
    resync_interval: Duration,
    /// Gateway requests per second, shared by all controllers.
    #[arg(long, env = "ROUTERO_GATEWAY_RATE_LIMIT", default_value = "20")]
    gateway_rate_limit: NonZeroU32,
    /// Timeout of one gateway request (e.g. 10s).
    #[arg(long, env = "ROUTERO_GATEWAY_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    gateway_timeout: Duration,
    /// Address of the metrics and health endpoints.
    #[arg(long, env = "ROUTERO_METRICS_ADDR", default_value = "0.0.0.0:8080")]
    metrics_addr: SocketAddr,
    /// Log format.
    #[arg(long, env = "ROUTERO_LOG_FORMAT", default_value = "text")]
    log_format: LogFormat,
    /// Run the controllers only while holding a Lease, so that of several replicas one acts at a time.
    #[arg(long, env = "ROUTERO_LEADER_ELECTION")]
    leader_election: bool,
    /// Name of the leader election Lease.
    #[arg(long, env = "ROUTERO_LEASE_NAME", default_value = "routero-operator")]
    lease_name: String,
    /// Namespace of the Lease (default: $POD_NAMESPACE, else the kubeconfig's namespace).
    #[arg(long, env = "ROUTERO_LEASE_NAMESPACE")]
    lease_namespace: Option<String>,
    /// How long the Lease stays valid without renewal: a standby takes over this long after a crash (whole seconds).
    #[arg(long, env = "ROUTERO_LEASE_DURATION", default_value = "15s", value_parser = parse_lease_duration)]
    lease_duration: Duration,
    /// File holding a Slack webhook URL: budget alerts are configured on the gateway from it (re-read every 10 s).
    #[arg(long, env = "ROUTERO_SLACK_WEBHOOK_FILE")]
    slack_webhook_file: Option<PathBuf>,
    /// Comma-separated gateway alert types sent to the webhook.
    #[arg(long, env = "ROUTERO_ALERT_TYPES", value_delimiter = ',', default_value = "budget_alerts", value_parser = parse_alert_type)]
    alert_types: Vec<String>,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

fn parse_url(s: &str) -> Result<String, String> {
    let url = reqwest::Url::parse(s).map_err(|e| format!("not a URL: {e}"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err("must be an http:// or https:// URL".into());
    }
    Ok(s.to_owned())
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    let d: jiff::SignedDuration = s
        .parse()
        .map_err(|e| format!("not a duration like 30s, 5m or 1h: {e}"))?;
    Duration::try_from(d)
        .ok()
        .filter(|d| !d.is_zero())
        .ok_or_else(|| "must be positive".to_owned())
}

fn parse_grace(s: &str) -> Result<String, String> {
    routero_operator::controller::duration::parse(s)
        .map(|_| s.to_owned())
        .ok_or_else(|| "a duration like 24h, 30m or 7d".to_owned())
}

fn parse_lease_duration(s: &str) -> Result<Duration, String> {
    let d = parse_duration(s)?;
    if d.as_secs() < 2 || d.subsec_nanos() != 0 {
        return Err("must be whole seconds, at least 2s".into());
    }
    Ok(d)
}

fn parse_alert_type(s: &str) -> Result<String, String> {
    let t = s.trim();
    if t.is_empty() || !t.chars().all(|c| c.is_ascii_lowercase() || c == '_') {
        return Err("an alert type is a lower-case name such as budget_alerts".into());
    }
    Ok(t.to_owned())
}

/// The namespaces to watch, trimmed and without blanks or repeats. With none given, the deprecated
/// `ROUTERO_WATCH_NAMESPACE` still applies: ignoring it would silently widen an upgraded operator to every namespace.
fn watch_namespaces(given: Vec<String>) -> Vec<String> {
    let given = if given.iter().all(|ns| ns.trim().is_empty()) {
        std::env::var("ROUTERO_WATCH_NAMESPACE")
            .map(|ns| vec![ns])
            .unwrap_or_default()
    } else {
        given
    };
    let mut out: Vec<String> = Vec::new();
    for ns in given.iter().map(|ns| ns.trim()).filter(|ns| !ns.is_empty()) {
        if !out.iter().any(|o| o == ns) {
            out.push(ns.to_owned());
        }
    }
    out
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| "info,kube=warn".into());
    // Colour only for a person at a terminal: `kubectl logs` and log collectors get plain text.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
}

/// Admin key from the file (checked now so a typo fails at start) or from ROUTERO_ADMIN_KEY.
fn admin_key(file: Option<PathBuf>) -> Result<AdminKey, String> {
    if let Some(path) = file {
        std::fs::metadata(&path)
            .map_err(|e| format!("--admin-key-file {}: {e}", path.display()))?;
        return Ok(AdminKey::File(path));
    }
    match std::env::var("ROUTERO_ADMIN_KEY") {
        Ok(k) if !k.trim().is_empty() => Ok(AdminKey::Static(SecretString::from(k.trim().to_owned()))),
        _ => Err("missing gateway admin key: set --admin-key-file / ROUTERO_ADMIN_KEY_FILE or ROUTERO_ADMIN_KEY".into()),
    }
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! { _ = ctrl_c => {}, _ = term.recv() => {} }
            }
            Err(_) => drop(ctrl_c.await),
        }
    }
    #[cfg(not(unix))]
    drop(ctrl_c.await);
    tracing::info!("shutting down");
}

async fn spend(args: SpendArgs) -> Result<(), String> {
    use routero_operator::spend::{self, Scope};
    let client = kube::Client::try_default()
        .await
        .map_err(|e| format!("kubernetes connection: {e}"))?;
    let scope = match (args.all_namespaces, args.namespace) {
        (true, _) => Scope::All,
        (false, Some(ns)) => Scope::Namespace(ns),
        (false, None) => Scope::Namespace(client.default_namespace().to_owned()),
    };
    let report = spend::collect(&client, &scope, args.keys)
        .await
        .map_err(|e| match (&e, &scope) {
            (kube::Error::Api(s), Scope::All) if s.code == 403 => format!(
                "{}; -A needs list on routeroteams{} in every namespace: use -n NAMESPACE",
                s.message,
                if args.keys { " and routerokeys" } else { "" }
            ),
            (kube::Error::Api(s), _) => s.message.clone(),
            _ => e.to_string(),
        })?;
    print!("{}", spend::render(&report, args.output));
    Ok(())
}

fn gateway(args: GatewayArgs) -> Result<routero_operator::gateway::Gateway, String> {
    let key = admin_key(args.admin_key_file)?;
    routero_operator::gateway::Gateway::new(GatewayConfig::new(args.gateway_url, key))
        .map_err(|e| e.to_string())
}

async fn import(args: ImportArgs) -> Result<(), String> {
    use routero_operator::import::{self, Options};
    let gw = gateway(args.gateway)?;
    let opts = Options {
        namespace: args.namespace,
        teams: args.teams,
        users: args.users,
        all: args.all,
        keys: args.keys,
        grace_period: args.grace_period,
        admin_roles: args.admin_roles,
    };
    let observed = import::observe(&gw, &opts)
        .await
        .map_err(|e| format!("reading the gateway: {e}"))?;
    let imported = import::convert(&observed, &opts);
    let yaml = imported.yaml().map_err(|e| e.to_string())?;
    for s in &imported.skipped {
        eprintln!("not imported: {}: {}", s.what, s.why);
    }
    for n in &imported.notes {
        eprintln!("note: {n}");
    }
    match &args.output {
        Some(dir) => {
            let path = dir.join(format!("{}.yaml", opts.namespace));
            std::fs::create_dir_all(dir)
                .and_then(|()| std::fs::write(&path, &yaml))
                .map_err(|e| format!("{}: {e}", path.display()))?;
            eprintln!("wrote {}", path.display());
        }
        None => print!("{yaml}"),
    }
    eprintln!(
        "{} team(s), {} member(s), {} key(s) for namespace '{}'",
        imported.teams.len(),
        imported.members.len(),
        imported.keys.len(),
        opts.namespace
    );
    if args.dry_run {
        eprintln!("--dry-run: nothing was marked on the gateway");
        return Ok(());
    }
    let actor = format!("routero-operator/import/{}", opts.namespace);
    let written = import::mark(&gw, &imported, &actor)
        .await
        .map_err(|e| format!("marking the gateway objects: {e}"))?;
    eprintln!(
        "marked {written} gateway object(s) adoptable by namespace '{}' ({} already were)",
        opts.namespace,
        (imported.teams.len() + imported.members.len() + imported.keys.len())
            .saturating_sub(written)
    );
    Ok(())
}

async fn plan(args: PlanArgs) -> Result<ExitCode, String> {
    use routero_operator::plan::{self, Settings, manifests};
    let found = manifests::load(&args.files, args.namespace.as_deref())
        .map_err(|e| format!("refused:\n{e}"))?;
    let gw = gateway(args.gateway)?;
    let settings = Settings {
        admin_namespaces: args.admin_namespaces,
        prune: args.prune,
    };
    let observed = plan::observe(&gw, &found, &settings)
        .await
        .map_err(|e| format!("reading the gateway: {e}"))?;
    let planned = plan::compute(&found, &observed, &settings);
    match args.output {
        PlanFormat::Text => print!("{}", plan::render::text(&planned)),
        PlanFormat::Json => println!(
            "{}",
            serde_json::to_string_pretty(&planned).map_err(|e| e.to_string())?
        ),
    }
    Ok(ExitCode::from(planned.exit_code()))
}

async fn run(args: RunArgs) -> Result<(), String> {
    let key = admin_key(args.gateway.admin_key_file)?;
    init_logging(args.log_format);
    let client = kube::Client::try_default()
        .await
        .map_err(|e| format!("kubernetes connection: {e}"))?;
    let admin_namespaces = if args.admin_namespaces.is_empty() {
        vec![client.default_namespace().to_owned()]
    } else {
        args.admin_namespaces
    };
    let gateway = GatewayConfig {
        rate_limit: args.gateway_rate_limit,
        timeout: args.gateway_timeout,
        ..GatewayConfig::new(args.gateway.gateway_url, key)
    };
    let leader_election = args.leader_election.then(|| LeaderElection {
        lease_name: args.lease_name,
        lease_namespace: args
            .lease_namespace
            .or_else(|| std::env::var("POD_NAMESPACE").ok())
            .filter(|ns| !ns.is_empty())
            .unwrap_or_else(|| client.default_namespace().to_owned()),
        identity: leader::default_identity(),
        lease_duration: args.lease_duration,
    });
    let config = OperatorConfig {
        gateway,
        watch_namespaces: watch_namespaces(args.watch_namespaces),
        admin_namespaces,
        resync: args.resync_interval,
        metrics_addr: Some(args.metrics_addr),
        leader_election,
        alerting: args
            .slack_webhook_file
            .map(|file| AlertingConfig::new(file, args.alert_types)),
    };
    tracing::info!(metrics_addr = %args.metrics_addr, "starting routero-operator {}", env!("CARGO_PKG_VERSION"));
    operator::run(client, config, shutdown_signal())
        .await
        .map_err(|e| e.to_string())
}

fn main() -> ExitCode {
    // tokio sizes its pool by the host's CPUs; std's count honours the pod's CPU limit (cgroup quota), and each
    // idle worker still costs a stack and an allocator arena.
    let workers = std::thread::available_parallelism().map_or(2, |n| n.get().clamp(1, 4));
    match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime.block_on(cli_main()),
        Err(e) => {
            eprintln!("error: could not start the runtime: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn cli_main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) if !e.use_stderr() => e.exit(),
        Err(e) => {
            // One line that names the setting, not clap's usage block.
            let text = e.to_string();
            let line: Vec<&str> = text
                .lines()
                .map(str::trim)
                .take_while(|l| !l.starts_with("Usage:"))
                .filter(|l| !l.is_empty())
                .collect();
            eprintln!("{}", line.join(" "));
            return ExitCode::from(2);
        }
    };
    let result = match cli.command {
        Command::Crd => routero_operator::crd::crds_yaml()
            .map(|y| print!("{y}"))
            .map_err(|e| e.to_string()),
        Command::Run(args) => run(*args).await,
        Command::Dashboard => {
            print!("{}", routero_operator::monitoring::dashboard_json());
            Ok(())
        }
        Command::Rules => routero_operator::monitoring::rules_yaml()
            .map(|y| print!("{y}"))
            .map_err(|e| e.to_string()),
        Command::Spend(args) => spend(args).await,
        Command::Import(args) => import(args).await,
        Command::Plan(args) => match plan(args).await {
            Ok(code) => return code,
            Err(e) => Err(e),
        },
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn watch_namespaces_take_a_list_and_the_old_single_flag() {
        let cli = Cli::try_parse_from([
            "routero-operator",
            "run",
            "--gateway-url=http://gateway:4000",
            "--watch-namespace=team-a",
            "--watch-namespaces",
            "team-b, team-a,,team-c",
        ])
        .expect("the flags parse");
        let Command::Run(args) = cli.command else {
            panic!("the run command");
        };
        assert_eq!(
            watch_namespaces(args.watch_namespaces),
            ["team-a", "team-b", "team-c"]
        );
    }
}
