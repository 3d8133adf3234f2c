//! Reading manifests for `plan`: files and directories of YAML streams, the Routero kinds picked out, and each one
//! checked against the CRD schema the API server enforces (types, patterns, bounds, enums, required fields and the
//! CEL rules that need no earlier version), with the API server's own wording, so a manifest `kubectl apply` would
//! refuse is refused here with the same message.
use std::path::{Path, PathBuf};

use kube::CustomResourceExt;
use serde_json::Value;

use crate::crd::{RouteroKey, RouteroMember, RouteroTeam};

/// The Routero objects found in the manifests, each with its namespace set.
#[derive(Clone, Debug, Default)]
pub struct Manifests {
    pub teams: Vec<RouteroTeam>,
    pub members: Vec<RouteroMember>,
    pub keys: Vec<RouteroKey>,
    /// Documents of other kinds, which `plan` does not look at.
    pub other: usize,
}

/// Reads every `.yaml`/`.yml`/`.json` file under `paths` (directories recursively, in name order). `namespace`
/// applies to objects that name none, as `kubectl apply -n` does. A refusal lists every invalid object.
pub fn load(paths: &[PathBuf], namespace: Option<&str>) -> Result<Manifests, String> {
    let mut files = Vec::new();
    for p in paths {
        collect(p, &mut files).map_err(|e| format!("{}: {e}", p.display()))?;
    }
    let mut out = Manifests::default();
    let mut refusals = Vec::new();
    for file in files {
        let text =
            std::fs::read_to_string(&file).map_err(|e| format!("{}: {e}", file.display()))?;
        parse(&text, namespace, &mut out, &mut refusals)
            .map_err(|e| format!("{}: {e}", file.display()))?;
    }
    if refusals.is_empty() {
        Ok(out)
    } else {
        Err(refusals.join("\n"))
    }
}

fn collect(path: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    if path.is_dir() {
        let mut entries: Vec<PathBuf> = std::fs::read_dir(path)?
            .map(|e| e.map(|e| e.path()))
            .collect::<Result<_, _>>()?;
        entries.sort();
        for e in entries {
            if e.is_dir()
                || e.extension()
                    .is_some_and(|x| x == "yaml" || x == "yml" || x == "json")
            {
                collect(&e, out)?;
            }
        }
    } else {
        out.push(path.to_owned());
    }
    Ok(())
}

/// Parses one YAML stream into `out`; invalid Routero objects go to `refusals`.
pub fn parse(
    text: &str,
    namespace: Option<&str>,
    out: &mut Manifests,
    refusals: &mut Vec<String>,
) -> Result<(), serde_yaml::Error> {
    use serde::Deserialize;
    for doc in serde_yaml::Deserializer::from_str(text) {
        let value = Value::deserialize(doc)?;
        if value.is_null() {
            continue;
        }
        let kind = value["kind"].as_str().unwrap_or_default().to_owned();
        let routero = value["apiVersion"]
            .as_str()
            .is_some_and(|v| v.starts_with("routero.ai/"));
        if !routero {
            out.other += 1;
            continue;
        }
        let name = value["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let ns = value["metadata"]["namespace"]
            .as_str()
            .or(namespace)
            .map(str::to_owned);
        let Some(ns) = ns else {
            refusals.push(format!(
                "{kind} {name}: no namespace: set metadata.namespace or pass --namespace"
            ));
            continue;
        };
        let what = format!("{kind} {ns}/{name}");
        let mut value = value;
        value["metadata"]["namespace"] = Value::String(ns);
        let errors = match kind.as_str() {
            "RouteroTeam" => decode(&value, schema::<RouteroTeam>(), &mut out.teams),
            "RouteroKey" => decode(&value, schema::<RouteroKey>(), &mut out.keys),
            "RouteroMember" => decode(&value, schema::<RouteroMember>(), &mut out.members),
            _ => vec![format!("kind {kind} is not served by routero.ai")],
        };
        refusals.extend(errors.into_iter().map(|e| format!("{what}: {e}")));
    }
    Ok(())
}

fn schema<K: CustomResourceExt>() -> Value {
    let crd = serde_json::to_value(K::crd()).unwrap_or_default();
    crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"].clone()
}

/// Validates `value` against `schema`, then deserializes it into `into`; returns the refusals.
fn decode<K: serde::de::DeserializeOwned>(
    value: &Value,
    schema: Value,
    into: &mut Vec<K>,
) -> Vec<String> {
    let mut errors = Vec::new();
    if let Some(spec) = value.get("spec") {
        check(&schema["properties"]["spec"], spec, "spec", &mut errors);
    } else {
        errors.push("spec: Required value".into());
    }
    if errors.is_empty() {
        match serde_json::from_value::<K>(value.clone()) {
            Ok(obj) => into.push(obj),
            Err(e) => errors.push(e.to_string()),
        }
    }
    errors
}

/// The API server's structural checks of one value, in its words (k8s.io/apiextensions-apiserver validation).
pub fn check(schema: &Value, v: &Value, path: &str, errors: &mut Vec<String>) {
    if v.is_null() {
        return;
    }
    let ty = schema["type"].as_str().unwrap_or_default();
    let actual = json_type(v);
    let fits = match ty {
        "" => true,
        "number" => v.is_number(),
        "integer" => v.is_i64() || v.is_u64(),
        t => t == actual,
    };
    if !fits {
        errors.push(format!(
            "{path}: Invalid value: \"{actual}\": {path} in body must be of type {ty}: \"{actual}\""
        ));
        return;
    }
    match v {
        Value::Object(map) => {
            for r in schema["required"].as_array().into_iter().flatten() {
                if let Some(r) = r.as_str()
                    && !map.contains_key(r)
                {
                    errors.push(format!("{path}.{r}: Required value"));
                }
            }
            let props = schema["properties"].as_object();
            for (k, child) in map {
                match props.and_then(|p| p.get(k)) {
                    Some(s) => check(s, child, &format!("{path}.{k}"), errors),
                    None => {
                        if let Some(s) =
                            schema.get("additionalProperties").filter(|s| s.is_object())
                        {
                            check(s, child, &format!("{path}[{k}]"), errors);
                        }
                    }
                }
            }
        }
        Value::Array(items) => {
            if let Some(max) = schema["maxItems"].as_u64()
                && items.len() as u64 > max
            {
                errors.push(format!(
                    "{path}: Too many: {}: must have at most {max} items",
                    items.len()
                ));
            }
            for (i, item) in items.iter().enumerate() {
                check(&schema["items"], item, &format!("{path}[{i}]"), errors);
            }
        }
        Value::String(s) => {
            if let Some(values) = schema["enum"].as_array()
                && !values.iter().any(|e| e == v)
            {
                let supported: Vec<String> = values.iter().map(|e| e.to_string()).collect();
                errors.push(format!(
                    "{path}: Unsupported value: \"{s}\": supported values: {}",
                    supported.join(", ")
                ));
            }
            if let Some(p) = schema["pattern"].as_str()
                && !regex::Regex::new(p).is_ok_and(|re| re.is_match(s))
            {
                errors.push(format!(
                    "{path}: Invalid value: \"{s}\": {path} in body should match '{p}'"
                ));
            }
            if let Some(max) = schema["maxLength"].as_u64()
                && s.chars().count() as u64 > max
            {
                errors.push(format!(
                    "{path}: Too long: may not be more than {max} bytes"
                ));
            }
            if let Some(min) = schema["minLength"].as_u64()
                && (s.chars().count() as u64) < min
            {
                errors.push(format!(
                    "{path}: Invalid value: \"{s}\": {path} in body should be at least {min} chars long"
                ));
            }
        }
        Value::Number(n) => {
            if let (Some(min), Some(x)) = (schema["minimum"].as_f64(), n.as_f64())
                && x < min
            {
                errors.push(format!(
                    "{path}: Invalid value: {n}: {path} in body should be greater than or equal to {}",
                    number(min)
                ));
            }
        }
        _ => {}
    }
    for rule in schema["x-kubernetes-validations"]
        .as_array()
        .into_iter()
        .flatten()
    {
        let text = rule["rule"].as_str().unwrap_or_default();
        if text.contains("oldSelf") {
            // A transition rule: it compares with the stored object, which a first apply does not have.
            continue;
        }
        if let Some(false) = cel(text, v) {
            let message = rule["message"].as_str().unwrap_or(text);
            errors.push(format!("{path}: Invalid value: {message}"));
        }
    }
}

/// The CEL rules of these CRDs that need no earlier version, evaluated; `None` for a rule this does not know (a
/// unit test keeps that set complete).
pub fn cel(rule: &str, v: &Value) -> Option<bool> {
    match rule {
        "self.all(k, !k.startsWith('routero.ai/'))" => Some(
            v.as_object()
                .is_none_or(|m| m.keys().all(|k| !k.starts_with("routero.ai/"))),
        ),
        "!has(self.baseUrlField) || self.baseUrlField != self.keyField" => {
            // keyField's default is applied before the rule runs.
            let key = v["keyField"].as_str().unwrap_or("apiKey");
            Some(v["baseUrlField"].as_str().is_none_or(|b| b != key))
        }
        _ => None,
    }
}

fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_f64() => "number",
        Value::Number(_) => "integer",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn number(x: f64) -> String {
    if x.fract() == 0.0 {
        format!("{}", x as i64)
    } else {
        x.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refusals(yaml: &str) -> Vec<String> {
        let mut out = Manifests::default();
        let mut refusals = Vec::new();
        parse(yaml, Some("ns"), &mut out, &mut refusals).expect("yaml");
        refusals
    }

    #[test]
    fn every_rule_without_an_earlier_version_is_evaluated() {
        let mut evaluated = 0;
        for crd in [RouteroTeam::crd(), RouteroKey::crd(), RouteroMember::crd()] {
            let text = serde_json::to_string(&crd).expect("crd");
            let mut rest = text.as_str();
            while let Some(i) = rest.find("\"rule\":\"") {
                rest = &rest[i + 8..];
                let end = rest.find('"').unwrap_or(rest.len());
                let rule = rest[..end].replace("\\u0026", "&");
                if !rule.contains("oldSelf") {
                    assert!(
                        cel(&rule, &Value::Null).is_some(),
                        "plan does not evaluate {rule}"
                    );
                    evaluated += 1;
                }
            }
        }
        assert_eq!(
            evaluated, 4,
            "the reserved-key rules (3) and the Secret field rule"
        );
    }

    #[test]
    fn refusals_use_the_api_servers_words() {
        let r = refusals(
            "apiVersion: routero.ai/v1alpha1\nkind: RouteroTeam\nmetadata: {name: t}\nspec: {maxBudget: -1, budgetDuration: 1m}\n",
        );
        assert_eq!(
            r,
            [
                "RouteroTeam ns/t: spec.budgetDuration: Invalid value: \"1m\": spec.budgetDuration in body should match '^[1-9][0-9]{0,4}(h|d|w|mo)$'",
                "RouteroTeam ns/t: spec.maxBudget: Invalid value: -1: spec.maxBudget in body should be greater than or equal to 0",
            ]
        );
        let r = refusals(
            "apiVersion: routero.ai/v1alpha1\nkind: RouteroKey\nmetadata: {name: k}\nspec:\n  teamRef: {name: t}\n  secret: {baseUrlField: apiKey, labels: {routero.ai/x: y}}\n",
        );
        assert_eq!(r.len(), 2, "{r:?}");
        assert!(r[0].contains(
            "spec.secret.labels: Invalid value: spec.secret.labels: keys under routero.ai/"
        ));
        assert!(r[1].contains("baseUrlField must differ from keyField"));
        let r = refusals(
            "apiVersion: routero.ai/v1alpha1\nkind: RouteroMember\nmetadata: {name: m}\nspec: {role: root}\n",
        );
        assert!(
            r.iter().any(|e| e.ends_with("spec.email: Required value")),
            "{r:?}"
        );
        assert!(
            r.iter()
                .any(|e| e.contains("spec.role: Unsupported value: \"root\"")),
            "{r:?}"
        );
    }

    #[test]
    fn other_kinds_are_counted_and_the_namespace_defaults() {
        let mut out = Manifests::default();
        let mut refusals = Vec::new();
        parse(
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\n---\napiVersion: routero.ai/v1alpha1\nkind: RouteroTeam\nmetadata: {name: t}\nspec: {maxBudget: 5}\n",
            Some("dev"),
            &mut out,
            &mut refusals,
        )
        .expect("yaml");
        assert!(refusals.is_empty(), "{refusals:?}");
        assert_eq!(out.other, 1);
        assert_eq!(out.teams[0].metadata.namespace.as_deref(), Some("dev"));
    }
}
