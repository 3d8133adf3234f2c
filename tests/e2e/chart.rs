//! The Helm chart: it lints, renders manifests that pass strict Kubernetes schema validation, refuses bad values
//! with a message naming the field, and renders the security settings and least-privilege RBAC it promises.
use serde_json::Value;

use crate::support::chart::{
    self, ALL_FEATURES, CHART, RELEASE_NAMESPACE, REQUIRED_VALUES, documents, kinds, one, render,
};
use crate::support::testbed::repo_dir;
use crate::support::tools::{self, tool};

/// The Kubernetes version the manifests are validated against: the test bed's API server is 1.36.
const KUBERNETES_VERSION: &str = "1.36.0";

/// The operator's own ClusterRole/Role name with the default values.
const OPERATOR_ROLE: &str = "routero-routero-operator";

/// The tenant persona ClusterRoles with the default values.
const PERSONAS: [&str; 3] = [
    "routero-routero-operator-view",
    "routero-routero-operator-edit",
    "routero-routero-operator-admin",
];

fn namespaced_values() -> String {
    format!("{REQUIRED_VALUES}watchNamespaces: [teams, platform]\n")
}

/// The object of `kind` named `name`.
fn named<'a>(objects: &'a [Value], kind: &str, name: &str) -> &'a Value {
    objects
        .iter()
        .find(|o| o["kind"] == kind && o["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("{kind}/{name} among {:?}", kinds(objects)))
}

#[test]
fn chart_lints_with_defaults_and_every_feature() {
    for (what, values) in [
        ("default values", REQUIRED_VALUES.to_owned()),
        ("every feature", ALL_FEATURES.to_owned()),
        ("namespaced mode", namespaced_values()),
    ] {
        let out = chart::helm(&["lint", "--strict", CHART, "-f", "-"], &values);
        assert!(
            out.ok,
            "helm lint ({what}) failed:\n{}{}",
            out.stdout, out.stderr
        );
    }
}

/// `kubernetes-validate --strict` on the rendered stream (CRDs included). Objects whose schema it does not ship
/// (the Prometheus Operator's ServiceMonitor and PrometheusRule) come back as warnings; anything else must pass.
fn assert_strictly_valid(what: &str, values: &str) {
    let rendered = chart::template(values, true);
    assert!(
        rendered.ok,
        "helm template ({what}) failed:\n{}",
        rendered.stderr
    );
    let out = tools::run(
        &tool("kubernetes-validate"),
        &[
            "--strict",
            "--quiet",
            "--kubernetes-version",
            KUBERNETES_VERSION,
            "-",
        ],
        &rendered.stdout,
    );
    let report = format!("{}{}", out.stdout, out.stderr);
    assert!(
        out.ok,
        "rendered manifests ({what}) fail strict validation:\n{report}"
    );
    for line in report.lines().filter(|l| !l.trim().is_empty()) {
        assert!(
            line.contains("kind ServiceMonitor with api version monitoring.coreos.com/v1")
                || line.contains("kind PrometheusRule with api version monitoring.coreos.com/v1"),
            "unexpected validation output ({what}): {line}"
        );
    }
    let objects = documents(&rendered.stdout);
    let crds = objects
        .iter()
        .filter(|o| o["kind"] == "CustomResourceDefinition")
        .count();
    assert_eq!(crds, 3, "the three CRDs ship with the chart ({what})");
}

#[test]
fn rendered_manifests_pass_strict_schema_validation() {
    assert_strictly_valid("default values", REQUIRED_VALUES);
    assert_strictly_valid("every feature", ALL_FEATURES);
    assert_strictly_valid("namespaced mode", &namespaced_values());
}

#[test]
fn every_optional_feature_renders() {
    let objects = render(ALL_FEATURES);
    for kind in [
        "ServiceAccount",
        "ClusterRoleBinding",
        "Deployment",
        "Service",
        "ServiceMonitor",
        "PodDisruptionBudget",
        "NetworkPolicy",
        "ConfigMap",
        "PrometheusRule",
    ] {
        one(&objects, kind);
    }
    // The dashboard and the rules are the generated ones, as Grafana's sidecar and the Prometheus Operator load them.
    let dashboard = one(&objects, "ConfigMap");
    assert_eq!(dashboard["metadata"]["labels"]["grafana_dashboard"], "1");
    assert_eq!(dashboard["metadata"]["namespace"], "monitoring");
    assert_eq!(
        dashboard["metadata"]["annotations"]["grafana_folder"],
        "Routero"
    );
    let json: Value = serde_json::from_str(
        dashboard["data"]["routero-operator.json"]
            .as_str()
            .expect("dashboard JSON"),
    )
    .expect("the dashboard is JSON");
    assert_eq!(json, routero_operator::monitoring::dashboard());
    let rule = one(&objects, "PrometheusRule");
    assert_eq!(rule["spec"], routero_operator::monitoring::rules());
    assert_eq!(rule["metadata"]["labels"]["release"], "prometheus");
    named(&objects, "ClusterRole", OPERATOR_ROLE);
    let service = one(&objects, "Service");
    let monitor = one(&objects, "ServiceMonitor");
    assert_eq!(
        monitor["spec"]["selector"]["matchLabels"], service["spec"]["selector"],
        "the ServiceMonitor selects the metrics Service's pods' labels"
    );
    for (k, v) in service["spec"]["selector"].as_object().expect("selector") {
        assert_eq!(
            &service["metadata"]["labels"][k], v,
            "the Service carries the labels the ServiceMonitor selects"
        );
    }
    assert_eq!(monitor["spec"]["endpoints"][0]["port"], "metrics");
    assert_eq!(service["spec"]["ports"][0]["name"], "metrics");
    assert_eq!(monitor["metadata"]["labels"]["release"], "prometheus");

    let args = container_args(&objects);
    for want in [
        "--slack-webhook-file=/etc/routero/slack-webhook/webhook-url",
        "--alert-types=budget_alerts,spend_reports",
        "--leader-election",
        "--lease-name=routero-leader",
        "--lease-duration=20s",
        "--admin-namespaces=platform,routero-system",
        "--gateway-rate-limit=50",
        "--gateway-timeout=15s",
        "--resync-interval=10m",
        "--log-format=text",
    ] {
        assert!(args.iter().any(|a| a == want), "{want} in {args:?}");
    }
    let deployment = one(&objects, "Deployment");
    assert_eq!(deployment["spec"]["replicas"], 2);
    let volumes = &deployment["spec"]["template"]["spec"]["volumes"];
    assert!(
        volumes
            .as_array()
            .expect("volumes")
            .iter()
            .any(|v| v["secret"]["secretName"] == "routero-slack"
                && v["secret"]["items"][0]["key"] == "url"),
        "the Slack webhook Secret is mounted: {volumes}"
    );
    let policy = one(&objects, "NetworkPolicy");
    let types = &policy["spec"]["policyTypes"];
    assert!(
        types.as_array().expect("policyTypes").len() == 2,
        "egress rules restrict egress too: {types}"
    );
    assert_eq!(
        policy["spec"]["egress"].as_array().expect("egress").len(),
        2,
        "DNS plus the configured rule"
    );
}

#[test]
fn defaults_leave_optional_features_off() {
    let objects = render(REQUIRED_VALUES);
    let mut have = kinds(&objects);
    have.sort();
    assert_eq!(
        have,
        [
            "ClusterRole/routero-routero-operator",
            "ClusterRole/routero-routero-operator-admin",
            "ClusterRole/routero-routero-operator-edit",
            "ClusterRole/routero-routero-operator-view",
            "ClusterRoleBinding/routero-routero-operator",
            "Deployment/routero-routero-operator",
            "Role/routero-routero-operator-leader-election",
            "RoleBinding/routero-routero-operator-leader-election",
            "Service/routero-routero-operator-metrics",
            "ServiceAccount/routero-routero-operator",
        ]
    );
    let args = container_args(&objects);
    assert!(
        !args.iter().any(|a| a.starts_with("--slack-webhook-file")),
        "alerting is off by default: {args:?}"
    );
    assert!(
        !args.iter().any(|a| a.starts_with("--watch-namespace")),
        "all namespaces by default: {args:?}"
    );
    assert!(args.iter().any(|a| a == "--leader-election"));
    assert!(
        args.iter()
            .any(|a| a == &format!("--lease-namespace={RELEASE_NAMESPACE}"))
    );
}

fn container(objects: &[Value]) -> &Value {
    &one(objects, "Deployment")["spec"]["template"]["spec"]["containers"][0]
}

fn container_args(objects: &[Value]) -> Vec<String> {
    container(objects)["args"]
        .as_array()
        .expect("args")
        .iter()
        .map(|a| a.as_str().expect("string arg").to_owned())
        .collect()
}

#[test]
fn pod_runs_locked_down_with_probes_and_the_mounted_admin_key() {
    let objects = render(REQUIRED_VALUES);
    let pod = &one(&objects, "Deployment")["spec"]["template"]["spec"];
    let c = container(&objects);
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    assert_eq!(
        pod["securityContext"]["seccompProfile"]["type"],
        "RuntimeDefault"
    );
    assert!(
        pod["securityContext"]["runAsUser"]
            .as_u64()
            .expect("runAsUser")
            > 0
    );
    let sc = &c["securityContext"];
    assert_eq!(sc["readOnlyRootFilesystem"], true);
    assert_eq!(sc["allowPrivilegeEscalation"], false);
    assert_eq!(sc["runAsNonRoot"], true);
    assert_eq!(sc["capabilities"]["drop"], serde_json::json!(["ALL"]));
    assert!(sc["capabilities"]["add"].is_null());
    assert_eq!(sc["seccompProfile"]["type"], "RuntimeDefault");
    assert!(
        pod["terminationGracePeriodSeconds"]
            .as_u64()
            .expect("grace")
            >= 10
    );
    for side in ["requests", "limits"] {
        for res in ["cpu", "memory"] {
            assert!(
                c["resources"][side][res].is_string(),
                "resources.{side}.{res} is set"
            );
        }
    }

    // Probes on the metrics port, which serves /metrics, /healthz and /readyz.
    assert_eq!(c["ports"][0]["name"], "metrics");
    assert_eq!(c["ports"][0]["containerPort"], 8080);
    assert_eq!(c["livenessProbe"]["httpGet"]["path"], "/healthz");
    assert_eq!(c["livenessProbe"]["httpGet"]["port"], "metrics");
    assert_eq!(c["readinessProbe"]["httpGet"]["path"], "/readyz");
    assert_eq!(c["readinessProbe"]["httpGet"]["port"], "metrics");
    let args = container_args(&objects);
    assert_eq!(args[0], "run");
    assert!(args.iter().any(|a| a == "--metrics-addr=0.0.0.0:8080"));
    assert!(
        args.iter()
            .any(|a| a == "--gateway-url=http://routero-gateway.routero-system:4000")
    );

    // The downward API feeds the Event reporter and the leader identity.
    for (name, field) in [
        ("POD_NAME", "metadata.name"),
        ("POD_NAMESPACE", "metadata.namespace"),
    ] {
        let env = c["env"]
            .as_array()
            .expect("env")
            .iter()
            .find(|e| e["name"] == name)
            .unwrap_or_else(|| panic!("{name} in env"));
        assert_eq!(env["valueFrom"]["fieldRef"]["fieldPath"], field);
    }

    // The admin key: a whole-Secret volume (no subPath, so the kubelet refreshes it), mounted where the flag points.
    let file = args
        .iter()
        .find_map(|a| a.strip_prefix("--admin-key-file="))
        .expect("--admin-key-file");
    let volume = pod["volumes"]
        .as_array()
        .expect("volumes")
        .iter()
        .find(|v| v["secret"]["secretName"] == "routero-admin")
        .expect("the admin key Secret is a volume");
    assert_eq!(volume["secret"]["items"][0]["key"], "admin-key");
    let mount = c["volumeMounts"]
        .as_array()
        .expect("mounts")
        .iter()
        .find(|m| m["name"] == volume["name"])
        .expect("the admin key volume is mounted");
    assert!(
        mount["subPath"].is_null(),
        "no subPath: it would never refresh"
    );
    assert_eq!(mount["readOnly"], true);
    let path = format!(
        "{}/{}",
        mount["mountPath"].as_str().expect("mountPath"),
        volume["secret"]["items"][0]["path"]
            .as_str()
            .expect("item path")
    );
    assert_eq!(file, path, "--admin-key-file points at the mounted key");
}

/// Every rule of every Role and ClusterRole the chart renders, in each mode.
fn rules(objects: &[Value]) -> Vec<(String, Value)> {
    objects
        .iter()
        .filter(|o| o["kind"] == "Role" || o["kind"] == "ClusterRole")
        .flat_map(|o| {
            let name = format!(
                "{}/{}",
                o["kind"].as_str().unwrap_or("?"),
                o["metadata"]["name"].as_str().unwrap_or("?")
            );
            o["rules"]
                .as_array()
                .cloned()
                .unwrap_or_default()
                .into_iter()
                .map(move |r| (name.clone(), r))
        })
        .collect()
}

#[test]
fn rbac_has_no_wildcards_and_namespaced_mode_uses_roles_only() {
    for values in [
        REQUIRED_VALUES.to_owned(),
        ALL_FEATURES.to_owned(),
        namespaced_values(),
    ] {
        let objects = render(&values);
        let rules = rules(&objects);
        assert!(!rules.is_empty());
        for (role, rule) in rules {
            for field in ["apiGroups", "resources", "verbs", "resourceNames"] {
                for item in rule[field].as_array().cloned().unwrap_or_default() {
                    assert!(
                        !item.as_str().unwrap_or_default().contains('*'),
                        "{role} has a wildcard in {field}: {rule}"
                    );
                }
            }
            assert!(
                rule["nonResourceURLs"].is_null(),
                "{role} grants non-resource URLs: {rule}"
            );
        }
    }

    let cluster = render(REQUIRED_VALUES);
    let namespaced = render(&namespaced_values());
    assert!(
        !namespaced.iter().any(|o| o["kind"] == "ClusterRoleBinding"),
        "namespaced mode binds nothing cluster-wide: {:?}",
        kinds(&namespaced)
    );
    for role in namespaced.iter().filter(|o| o["kind"] == "ClusterRole") {
        let name = role["metadata"]["name"].as_str().unwrap_or_default();
        assert!(
            PERSONAS.contains(&name),
            "namespaced mode renders no ClusterRole for the operator, only the personas: {name}"
        );
    }
    for ns in ["teams", "platform"] {
        let role = namespaced
            .iter()
            .find(|o| o["kind"] == "Role" && o["metadata"]["namespace"] == ns)
            .unwrap_or_else(|| panic!("a Role in the watched namespace {ns}"));
        assert_eq!(
            role["rules"],
            named(&cluster, "ClusterRole", OPERATOR_ROLE)["rules"],
            "the Role grants in {ns} exactly what the ClusterRole grants everywhere"
        );
        let binding = namespaced
            .iter()
            .find(|o| o["kind"] == "RoleBinding" && o["metadata"]["namespace"] == ns)
            .unwrap_or_else(|| panic!("a RoleBinding in the watched namespace {ns}"));
        assert_eq!(binding["roleRef"]["name"], role["metadata"]["name"]);
        assert_eq!(binding["subjects"][0]["namespace"], RELEASE_NAMESPACE);
        assert_eq!(
            binding["subjects"][0]["name"],
            one(&namespaced, "ServiceAccount")["metadata"]["name"]
        );
    }
    assert!(
        container_args(&namespaced)
            .iter()
            .any(|a| a == "--watch-namespaces=teams,platform")
    );

    // The deprecated single namespace still narrows the watch, and joins the list.
    let legacy = render(&format!(
        "{REQUIRED_VALUES}watchNamespace: legacy\nwatchNamespaces: [teams, legacy]\n"
    ));
    assert!(
        container_args(&legacy)
            .iter()
            .any(|a| a == "--watch-namespaces=legacy,teams"),
        "{:?}",
        container_args(&legacy)
    );
    let role_namespaces: Vec<&str> = legacy
        .iter()
        .filter(|o| o["kind"] == "Role" && o["metadata"]["name"] == OPERATOR_ROLE)
        .filter_map(|o| o["metadata"]["namespace"].as_str())
        .collect();
    assert_eq!(role_namespaces, ["legacy", "teams"]);

    let no_leases = render(&format!(
        "{REQUIRED_VALUES}leaderElection: {{enabled: false}}\n"
    ));
    assert!(
        !container_args(&no_leases)
            .iter()
            .any(|a| a.starts_with("--lease") || a == "--leader-election")
    );
    assert!(
        !rules(&no_leases)
            .iter()
            .any(|(_, r)| r["apiGroups"][0] == "coordination.k8s.io"),
        "no Lease rights without leader election"
    );
}

/// (resource, verb) for every permission of the ClusterRole `name`, which must grant on routero.ai only.
fn routero_grants(objects: &[Value], name: &str) -> Vec<(String, String)> {
    let strings = |v: &Value| -> Vec<String> {
        v.as_array()
            .expect("a list")
            .iter()
            .map(|s| s.as_str().expect("a string").to_owned())
            .collect()
    };
    let mut out = Vec::new();
    for rule in named(objects, "ClusterRole", name)["rules"]
        .as_array()
        .expect("rules")
    {
        assert_eq!(
            strings(&rule["apiGroups"]),
            ["routero.ai"],
            "{name} grants on routero.ai only"
        );
        for r in strings(&rule["resources"]) {
            for v in strings(&rule["verbs"]) {
                out.push((r.clone(), v));
            }
        }
    }
    out
}

/// The tenant personas, as cert-manager ships them: view reads the three kinds and aggregates into view, edit and
/// admin; edit adds RouteroKey writes and aggregates into edit and admin; admin (every verb, status included) is
/// aggregated into nothing, because a namespace admin is a tenant. tests/e2e/rbac.rs checks them on the API server.
#[test]
fn persona_roles_aggregate_as_cert_manager_does() {
    let objects = render(REQUIRED_VALUES);
    let aggregated_into = |name: &str| -> Vec<String> {
        let labels = named(&objects, "ClusterRole", name)["metadata"]["labels"]
            .as_object()
            .expect("labels")
            .clone();
        let mut into: Vec<String> = labels
            .iter()
            .filter_map(|(k, v)| {
                let to = k.strip_prefix("rbac.authorization.k8s.io/aggregate-to-")?;
                assert_eq!(v, "true", "{name}: {k}");
                Some(to.to_owned())
            })
            .collect();
        into.sort();
        into
    };
    let [view, edit, admin] = PERSONAS;
    assert_eq!(aggregated_into(view), ["admin", "edit", "view"]);
    assert_eq!(aggregated_into(edit), ["admin", "edit"]);
    assert!(aggregated_into(admin).is_empty());

    let reads = ["get", "list", "watch"];
    let routero_kinds = ["routeroteams", "routerokeys", "routeromembers"];
    let view_grants = routero_grants(&objects, view);
    assert!(view_grants.iter().all(|(_, v)| reads.contains(&v.as_str())));
    let edit_grants = routero_grants(&objects, edit);
    for (r, v) in &edit_grants {
        assert!(
            reads.contains(&v.as_str()) || r == "routerokeys",
            "{edit} writes only RouteroKeys: {r} {v}"
        );
        assert!(
            routero_kinds.contains(&r.as_str()),
            "{edit} grants no subresource: {r}"
        );
    }
    let admin_grants = routero_grants(&objects, admin);
    for r in routero_kinds
        .iter()
        .flat_map(|k| [k.to_string(), format!("{k}/status")])
    {
        for v in ["get", "update", "patch"] {
            assert!(
                admin_grants.contains(&(r.clone(), v.to_owned())),
                "{admin} grants {v} on {r}"
            );
        }
    }
    for kind in routero_kinds {
        for verb in ["create", "delete", "list", "watch"] {
            assert!(admin_grants.contains(&(kind.to_owned(), verb.to_owned())));
            if verb == "create" || verb == "delete" {
                assert_eq!(
                    edit_grants.contains(&(kind.to_owned(), verb.to_owned())),
                    kind == "routerokeys",
                    "{edit}: {verb} {kind}"
                );
            }
        }
    }

    for off in ["rbac: {aggregatedRoles: false}", "rbac: {create: false}"] {
        let objects = render(&format!("{REQUIRED_VALUES}{off}\n"));
        assert!(
            !objects
                .iter()
                .any(|o| PERSONAS.contains(&o["metadata"]["name"].as_str().unwrap_or_default())),
            "{off} renders no persona: {:?}",
            kinds(&objects)
        );
    }
}

#[test]
fn schema_rejects_bad_values_naming_the_field() {
    let cases: [(&str, String, &[&str]); 10] = [
        (
            "a typo at the top",
            format!("{REQUIRED_VALUES}gatway:\n  url: http://x\n"),
            &["gatway"],
        ),
        (
            "a typo inside gateway",
            format!("{REQUIRED_VALUES}  adminKeySecert: {{name: x}}\n"),
            &["gateway", "adminKeySecert"],
        ),
        (
            "a wrong type",
            format!("{REQUIRED_VALUES}replicaCount: two\n"),
            &["replicaCount", "integer"],
        ),
        ("a missing gateway.url", String::new(), &["gateway.url"]),
        (
            "a gateway.url that is not a URL",
            REQUIRED_VALUES.replace("http://routero-gateway.routero-system:4000", "gateway:4000"),
            &["gateway.url"],
        ),
        (
            "an unknown log format",
            format!("{REQUIRED_VALUES}logFormat: yaml\n"),
            &["logFormat"],
        ),
        (
            "alerting without its Secret",
            format!("{REQUIRED_VALUES}alerting: {{enabled: true}}\n"),
            &["alerting", "slackWebhookSecret"],
        ),
        (
            "a watched namespace that is not a namespace name",
            format!("{REQUIRED_VALUES}watchNamespaces: [Team_A]\n"),
            &["watchNamespaces"],
        ),
        (
            "a typo inside rbac",
            format!("{REQUIRED_VALUES}rbac: {{aggregatedRole: true}}\n"),
            &["rbac", "aggregatedRole"],
        ),
        (
            "two replicas without leader election",
            format!("{REQUIRED_VALUES}replicaCount: 2\nleaderElection: {{enabled: false}}\n"),
            &["leaderElection.enabled"],
        ),
    ];
    for (what, values, names) in cases {
        for cmd in [
            &["template", "x", CHART, "-f", "-"][..],
            &["lint", CHART, "-f", "-"][..],
        ] {
            let out = chart::helm(cmd, &values);
            let text = format!("{}{}", out.stdout, out.stderr);
            assert!(!out.ok, "helm {} accepted {what}:\n{values}", cmd[0]);
            for name in names {
                assert!(
                    text.contains(name),
                    "helm {} refused {what} without naming {name}:\n{text}",
                    cmd[0]
                );
            }
        }
    }
}

#[test]
fn chart_ships_the_generated_crds() {
    let chart = std::fs::read_to_string(repo_dir().join(CHART).join("crds/routero.ai.yaml"))
        .expect("the chart has crds/routero.ai.yaml");
    let want = routero_operator::crd::crds_yaml().expect("render CRDs");
    assert!(
        chart == want,
        "{CHART}/crds/routero.ai.yaml is stale: run `cargo run -- crd > {CHART}/crds/routero.ai.yaml`"
    );
    let chart_yaml =
        std::fs::read_to_string(repo_dir().join(CHART).join("Chart.yaml")).expect("Chart.yaml");
    let meta: Value = serde_yaml::from_str(&chart_yaml).expect("Chart.yaml parses");
    assert_eq!(meta["apiVersion"], "v2");
    assert_eq!(
        meta["appVersion"],
        env!("CARGO_PKG_VERSION"),
        "appVersion follows the crate version"
    );
}

/// Every flag the chart passes is one `routero-operator run` accepts.
#[test]
fn chart_flags_are_flags_of_the_binary() {
    let help = std::process::Command::new(env!("CARGO_BIN_EXE_routero-operator"))
        .args(["run", "--help"])
        .output()
        .expect("run routero-operator run --help");
    let help = String::from_utf8_lossy(&help.stdout);
    for values in [ALL_FEATURES.to_owned(), namespaced_values()] {
        for arg in container_args(&render(&values)) {
            let Some(flag) = arg.strip_prefix("--") else {
                continue;
            };
            let flag = flag.split('=').next().unwrap_or_default();
            assert!(
                help.contains(&format!("--{flag} ")) || help.contains(&format!("--{flag}\n")),
                "the chart passes --{flag}, which `routero-operator run` does not know:\n{help}"
            );
        }
    }
}

/// The image the Dockerfile builds fits the pod the chart renders: the numeric user is the chart's `runAsUser` (so
/// `runAsNonRoot` can be checked by the kubelet), the exposed port is the metrics port, and the entrypoint is the
/// binary whose first argument the chart passes (`run`). No container engine runs here, so the build itself is not
/// exercised; this keeps the two files from drifting apart.
#[test]
fn dockerfile_matches_the_chart() {
    let dockerfile =
        std::fs::read_to_string(repo_dir().join("Dockerfile")).expect("read Dockerfile");
    let run_stage = dockerfile
        .rsplit_once("\nFROM ")
        .map(|(_, last)| last)
        .expect("a multi-stage Dockerfile");
    let instruction = |name: &str| -> String {
        run_stage
            .lines()
            .find_map(|l| l.strip_prefix(name).map(str::trim))
            .unwrap_or_else(|| panic!("the run stage has {name}"))
            .to_owned()
    };
    let objects = render(REQUIRED_VALUES);
    let pod = &one(&objects, "Deployment")["spec"]["template"]["spec"];
    let uid = pod["securityContext"]["runAsUser"].as_u64().expect("uid");
    let gid = pod["securityContext"]["runAsGroup"].as_u64().expect("gid");
    assert_eq!(instruction("USER "), format!("{uid}:{gid}"));
    let port = container(&objects)["ports"][0]["containerPort"]
        .as_u64()
        .expect("port");
    assert_eq!(instruction("EXPOSE "), port.to_string());
    assert_eq!(
        instruction("ENTRYPOINT "),
        r#"["/usr/local/bin/routero-operator"]"#
    );
    assert_eq!(container_args(&objects)[0], "run");
    assert!(
        container(&objects)["command"].is_null(),
        "the chart keeps the image's entrypoint"
    );
    assert!(
        dockerfile.contains("cargo build --release --locked --bin routero-operator"),
        "the image packages the locked release build"
    );
}
