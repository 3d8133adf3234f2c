//! The Argo CD health checks (argocd/health/routero.ai/<Kind>/health.lua), run with Debian's Lua 5.4 the way Argo
//! CD runs them: the object is the global `obj`, and the script returns `{status = ..., message = ...}`.
use std::path::PathBuf;

use serde_json::{Value, json};

use crate::support::testbed::repo_dir;
use crate::support::tools::{self, tool};

const KINDS: [&str; 3] = ["RouteroTeam", "RouteroKey", "RouteroMember"];

fn script(kind: &str) -> PathBuf {
    repo_dir().join(format!("argocd/health/routero.ai/{kind}/health.lua"))
}

/// A Lua expression for a JSON value, as Argo CD hands objects to health scripts (a JSON null is a missing key).
fn lua(v: &Value) -> String {
    match v {
        Value::Null => "nil".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => lua_string(s),
        Value::Array(items) => {
            let items: Vec<String> = items.iter().map(lua).collect();
            format!("{{{}}}", items.join(", "))
        }
        Value::Object(map) => {
            let fields: Vec<String> = map
                .iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| format!("[{}] = {}", lua_string(k), lua(v)))
                .collect();
            format!("{{{}}}", fields.join(", "))
        }
    }
}

fn lua_string(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                out.push_str(&format!("\\{:03}", c as u32))
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Runs the kind's script on `obj`; returns (status, message).
fn health(kind: &str, obj: &Value) -> (String, String) {
    let driver = format!(
        "obj = {}\nlocal hs = dofile({})\nio.write(tostring(hs.status), \"\\n\", tostring(hs.message))\n",
        lua(obj),
        lua_string(&script(kind).to_string_lossy())
    );
    let out = tools::run(&tool("lua5.4"), &["-"], &driver);
    assert!(out.ok, "lua failed on {kind}: {}\n{driver}", out.stderr);
    let (status, message) = out.stdout.split_once('\n').expect("two lines");
    (status.to_owned(), message.to_owned())
}

fn object(kind: &str, generation: i64, status: Value) -> Value {
    json!({
        "apiVersion": "routero.ai/v1alpha1",
        "kind": kind,
        "metadata": {"name": "finance", "namespace": "platform", "generation": generation, "uid": "6a3c1f0e"},
        "spec": {},
        "status": status,
    })
}

fn ready(status: &str, reason: &str, message: &str, observed: i64) -> Value {
    json!({
        "observedGeneration": observed,
        "conditions": [
            {"type": "Synced", "status": status, "reason": reason, "message": message,
             "lastTransitionTime": "2026-01-01T00:00:00Z", "observedGeneration": observed},
            {"type": "Ready", "status": status, "reason": reason, "message": message,
             "lastTransitionTime": "2026-01-01T00:00:00Z", "observedGeneration": observed},
        ],
    })
}

#[test]
fn lua_literal_round_trips_awkward_json() {
    let v = json!({"a\"b": ["x\\y\n", 1, 2.5, true, null, {"k": null}], "n": -3});
    let driver = format!(
        "local v = {}\nio.write(v['a\"b'][1], '|', v['a\"b'][2] + v['a\"b'][3], '|', tostring(v['a\"b'][4]), '|', v.n, '|', tostring(v['a\"b'][6].k))",
        lua(&v)
    );
    let out = tools::run(&tool("lua5.4"), &["-"], &driver);
    assert!(out.ok, "{}", out.stderr);
    assert_eq!(out.stdout, "x\\y\n|3.5|true|-3|nil");
}

#[test]
fn health_checks_classify_every_state() {
    let terminal = [
        "Conflict",
        "SecretConflict",
        "Invalid",
        "ModelNotAllowed",
        "RegenerateUnsupported",
        "Forbidden",
        "GatewayError",
    ];
    let transient = [
        "GatewayUnavailable",
        "TeamNotReady",
        "MemberNotReady",
        "AdminKeyUnavailable",
        "KubernetesError",
    ];
    for kind in KINDS {
        let check = |obj: Value, want: &str, message: &str, what: &str| {
            let (status, got) = health(kind, &obj);
            assert_eq!(status, want, "{kind} {what}: {got}");
            assert!(
                got.contains(message),
                "{kind} {what}: message {got:?} lacks {message:?}"
            );
        };

        check(
            object(
                kind,
                3,
                ready("True", "Available", "team finance is in sync", 3),
            ),
            "Healthy",
            "Available: team finance is in sync",
            "Ready=True, current generation",
        );
        check(
            object(kind, 3, ready("True", "Available", "", 3)),
            "Healthy",
            "Available",
            "Ready=True without a message",
        );
        check(
            object(kind, 4, ready("True", "Available", "in sync", 3)),
            "Progressing",
            "generation 4",
            "Ready=True for an older generation",
        );
        check(
            object(kind, 1, Value::Null),
            "Progressing",
            "Waiting",
            "no status yet",
        );
        check(
            object(kind, 1, json!({})),
            "Progressing",
            "Waiting",
            "an empty status",
        );
        check(
            object(kind, 1, json!({"observedGeneration": 1, "conditions": []})),
            "Progressing",
            "Waiting",
            "no conditions yet",
        );
        check(
            object(kind, 2, ready("Unknown", "Reconciling", "", 2)),
            "Progressing",
            "Reconciling",
            "Ready=Unknown",
        );
        for reason in transient {
            check(
                object(kind, 2, ready("False", reason, "retrying", 2)),
                "Progressing",
                reason,
                reason,
            );
        }
        for reason in terminal {
            check(
                object(kind, 2, ready("False", reason, "fix the spec", 2)),
                "Degraded",
                &format!("{reason}: fix the spec"),
                reason,
            );
            check(
                object(kind, 3, ready("False", reason, "fix the spec", 2)),
                "Progressing",
                "generation 3",
                &format!("{reason} for an older generation (the fix is on its way)"),
            );
        }
    }
}

/// The argocd-cm snippet embeds exactly the scripts, under Argo CD's `resource.customizations.health.<group>_<kind>`
/// keys, and is a valid ConfigMap.
#[test]
fn resource_customizations_embed_the_scripts() {
    let path = repo_dir().join("argocd/resource-customizations.yaml");
    let text = std::fs::read_to_string(&path).expect("argocd/resource-customizations.yaml");
    let cm: Value = serde_yaml::from_str(&text).expect("the snippet parses");
    assert_eq!(cm["kind"], "ConfigMap");
    assert_eq!(cm["metadata"]["name"], "argocd-cm");
    let data = cm["data"].as_object().expect("data");
    assert_eq!(
        data.len(),
        KINDS.len(),
        "one health check per kind: {:?}",
        data.keys()
    );
    for kind in KINDS {
        let key = format!("resource.customizations.health.routero.ai_{kind}");
        let embedded = data
            .get(&key)
            .and_then(Value::as_str)
            .unwrap_or_else(|| panic!("{key} in the snippet"));
        let file = std::fs::read_to_string(script(kind)).expect("health.lua");
        assert!(
            embedded == file,
            "{key} in argocd/resource-customizations.yaml differs from {}: copy the script into the snippet",
            script(kind).display()
        );
    }
    let out = tools::run(
        &tool("kubernetes-validate"),
        &["--strict", "--quiet", "-"],
        &text,
    );
    assert!(
        out.ok,
        "the snippet is not a valid ConfigMap: {}{}",
        out.stdout, out.stderr
    );
}
