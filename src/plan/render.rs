//! `plan`'s two outputs: text for a pull-request comment, and JSON (the `Plan` type serialized: its shape is
//! documented in the README, "Review changes in a pull request").
use serde_json::Value;

use super::{Action, Change, Plan};

/// The plan as text: a summary line, then one block per object that changes (unchanged ones are only counted).
pub fn text(plan: &Plan) -> String {
    let mut out = format!(
        "Plan: {} to create, {} to update, {} to adopt, {} to delete, {} conflict(s), {} unchanged.\n",
        plan.count(Action::Create),
        plan.count(Action::Update),
        plan.count(Action::Adopt),
        plan.count(Action::Delete),
        plan.count(Action::Conflict),
        plan.count(Action::None),
    );
    for c in plan.changes.iter().filter(|c| c.action != Action::None) {
        out.push('\n');
        out.push_str(&block(c));
    }
    out
}

fn block(c: &Change) -> String {
    let (sign, verb) = match c.action {
        Action::Create => ("+", "create"),
        Action::Update => ("~", "update"),
        Action::Adopt => ("~", "adopt"),
        Action::Delete => ("-", "delete"),
        Action::Conflict => ("!", "conflict"),
        Action::None => (" ", "unchanged"),
    };
    let mut out = format!(
        "{sign} {} {}/{}: {verb} {}\n",
        c.kind, c.namespace, c.name, c.gateway
    );
    if let (Some(reason), Some(message)) = (&c.reason, &c.message) {
        out.push_str(&format!("    {reason}: {message}\n"));
    }
    for f in &c.fields {
        let line = match (&f.old, &f.new) {
            (Value::Null, new) => format!("    {}: {}\n", f.field, show(new)),
            (old, Value::Null) => format!("    {}: {} → (removed)\n", f.field, show(old)),
            (old, new) => format!("    {}: {} → {}\n", f.field, show(old), show(new)),
        };
        out.push_str(&line);
    }
    for e in &c.effects {
        out.push_str(&format!("    ⇒ {e}\n"));
    }
    out
}

fn show(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}
