//! `routero-operator spend`: the org-wide spend report, read from RouteroTeam and RouteroKey status only. It needs
//! no gateway key and no more than `list` on the two kinds (the `view` role), and it reads only what the caller's
//! identity may list: with `-n` only that namespace, with `-A` the cluster-wide list, which RBAC refuses to anyone
//! not allowed to see every namespace.
use kube::api::ListParams;
use kube::{Api, Client, ResourceExt};
use serde::Serialize;

use crate::crd::common::condition;
use crate::crd::team::budget_used_percent;
use crate::crd::{RouteroKey, RouteroTeam};

/// Which namespaces to report.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Scope {
    All,
    Namespace(String),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Table,
    Csv,
    Json,
}

/// One team's line.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TeamLine {
    pub namespace: String,
    pub name: String,
    pub team_id: String,
    pub spend: Option<f64>,
    pub budget: Option<f64>,
    pub percent_used: Option<f64>,
    pub budget_duration: Option<String>,
    pub resets_at: Option<String>,
    pub spend_today: Option<f64>,
    pub ready: bool,
}

/// One key's line.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct KeyLine {
    pub namespace: String,
    pub name: String,
    pub team: String,
    pub member: Option<String>,
    pub alias: Option<String>,
    pub spend: Option<f64>,
    pub budget: Option<f64>,
    pub expires_at: Option<String>,
    pub next_rotation: Option<String>,
    pub ready: bool,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Report {
    pub teams: Vec<TeamLine>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub keys: Option<Vec<KeyLine>>,
}

fn api<K>(client: &Client, scope: &Scope) -> Api<K>
where
    K: kube::Resource<DynamicType = (), Scope = kube::core::NamespaceResourceScope>,
{
    match scope {
        Scope::All => Api::all(client.clone()),
        Scope::Namespace(ns) => Api::namespaced(client.clone(), ns),
    }
}

/// Lists the teams (and with `keys`, the keys) the caller's identity may list in `scope`.
pub async fn collect(client: &Client, scope: &Scope, keys: bool) -> Result<Report, kube::Error> {
    let teams = api::<RouteroTeam>(client, scope)
        .list(&ListParams::default())
        .await?
        .items;
    let keys = if keys {
        Some(
            api::<RouteroKey>(client, scope)
                .list(&ListParams::default())
                .await?
                .items,
        )
    } else {
        None
    };
    Ok(report(&teams, keys.as_deref()))
}

/// The report from the resources' status, sorted by namespace and name.
pub fn report(teams: &[RouteroTeam], keys: Option<&[RouteroKey]>) -> Report {
    let mut team_lines: Vec<TeamLine> = teams
        .iter()
        .map(|t| {
            let status = t.status.clone().unwrap_or_default();
            TeamLine {
                namespace: t.namespace().unwrap_or_default(),
                name: t.name_any(),
                team_id: status.team_id.clone().unwrap_or_else(|| t.team_id()),
                spend: status.spend,
                budget: status.max_budget.or(t.spec.max_budget),
                percent_used: status
                    .budget_used_percent
                    .or_else(|| budget_used_percent(status.spend, status.max_budget)),
                budget_duration: t.spec.budget_duration.clone(),
                resets_at: status.budget_reset_at,
                spend_today: status.spend_today,
                ready: condition(&status.conditions, "Ready").is_some_and(|c| c.is_true()),
            }
        })
        .collect();
    team_lines.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
    let keys = keys.map(|keys| {
        let mut lines: Vec<KeyLine> = keys
            .iter()
            .map(|k| {
                let status = k.status.clone().unwrap_or_default();
                KeyLine {
                    namespace: k.namespace().unwrap_or_default(),
                    name: k.name_any(),
                    team: k.spec.team_ref.name.clone(),
                    member: k.spec.member_ref.as_ref().map(|m| m.name.clone()),
                    alias: status.alias,
                    spend: status.spend,
                    budget: k.spec.max_budget,
                    expires_at: status.expires_at,
                    next_rotation: status.next_rotation,
                    ready: condition(&status.conditions, "Ready").is_some_and(|c| c.is_true()),
                }
            })
            .collect();
        lines.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
        lines
    });
    Report {
        teams: team_lines,
        keys,
    }
}

fn usd(v: Option<f64>) -> String {
    v.map_or_else(|| "-".to_owned(), |v| format!("{v:.2}"))
}

fn percent(v: Option<f64>) -> String {
    v.map_or_else(|| "-".to_owned(), |v| format!("{v:.1}%"))
}

fn text(v: &Option<String>) -> String {
    v.clone().unwrap_or_else(|| "-".to_owned())
}

fn table(rows: &[Vec<String>]) -> String {
    let widths: Vec<usize> = (0..rows.first().map_or(0, Vec::len))
        .map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for row in rows {
        let cells: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(cell, w)| format!("{cell:<w$}"))
            .collect();
        out.push_str(cells.join("   ").trim_end());
        out.push('\n');
    }
    out
}

fn csv_cell(s: &str) -> String {
    if s.contains([',', '"', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_owned()
    }
}

fn csv(rows: &[Vec<String>]) -> String {
    rows.iter()
        .map(|r| r.iter().map(|c| csv_cell(c)).collect::<Vec<_>>().join(",") + "\n")
        .collect()
}

fn team_rows(report: &Report, for_csv: bool) -> Vec<Vec<String>> {
    let num = |v: Option<f64>, f: fn(Option<f64>) -> String| {
        if for_csv {
            v.map(|v| v.to_string()).unwrap_or_default()
        } else {
            f(v)
        }
    };
    let opt = |v: &Option<String>| {
        if for_csv {
            v.clone().unwrap_or_default()
        } else {
            text(v)
        }
    };
    let mut rows = vec![
        [
            "NAMESPACE",
            "TEAM",
            "TEAM ID",
            "SPEND USD",
            "BUDGET USD",
            "USED",
            "PERIOD",
            "RESETS AT",
            "TODAY USD",
            "READY",
        ]
        .map(|h| {
            if for_csv {
                h.to_lowercase().replace(' ', "_")
            } else {
                h.to_owned()
            }
        })
        .to_vec(),
    ];
    for t in &report.teams {
        rows.push(vec![
            t.namespace.clone(),
            t.name.clone(),
            t.team_id.clone(),
            num(t.spend, usd),
            num(t.budget, usd),
            num(t.percent_used, percent),
            opt(&t.budget_duration),
            opt(&t.resets_at),
            num(t.spend_today, usd),
            t.ready.to_string(),
        ]);
    }
    rows
}

fn key_rows(keys: &[KeyLine], for_csv: bool) -> Vec<Vec<String>> {
    let opt = |v: &Option<String>| {
        if for_csv {
            v.clone().unwrap_or_default()
        } else {
            text(v)
        }
    };
    let num = |v: Option<f64>| {
        if for_csv {
            v.map(|v| v.to_string()).unwrap_or_default()
        } else {
            usd(v)
        }
    };
    let header = [
        "NAMESPACE",
        "KEY",
        "TEAM",
        "MEMBER",
        "ALIAS",
        "SPEND USD",
        "BUDGET USD",
        "EXPIRES AT",
        "NEXT ROTATION",
        "READY",
    ];
    let mut rows = vec![
        header
            .map(|h| {
                if for_csv {
                    h.to_lowercase().replace(' ', "_")
                } else {
                    h.to_owned()
                }
            })
            .to_vec(),
    ];
    for k in keys {
        rows.push(vec![
            k.namespace.clone(),
            k.name.clone(),
            k.team.clone(),
            opt(&k.member),
            opt(&k.alias),
            num(k.spend),
            num(k.budget),
            opt(&k.expires_at),
            opt(&k.next_rotation),
            k.ready.to_string(),
        ]);
    }
    rows
}

/// The report as a person reads it (`table`), a spreadsheet imports it (`csv`; with keys, the key rows follow the
/// team rows after a blank line) or a program parses it (`json`).
pub fn render(report: &Report, format: Format) -> String {
    match format {
        Format::Json => {
            // Plain data always serialises.
            let mut out = serde_json::to_string_pretty(report).unwrap_or_default();
            out.push('\n');
            out
        }
        Format::Csv => {
            let mut out = csv(&team_rows(report, true));
            if let Some(keys) = &report.keys {
                out.push('\n');
                out.push_str(&csv(&key_rows(keys, true)));
            }
            out
        }
        Format::Table => {
            let mut out = table(&team_rows(report, false));
            let spend: f64 = report.teams.iter().filter_map(|t| t.spend).sum();
            let budget: f64 = report.teams.iter().filter_map(|t| t.budget).sum();
            out.push_str(&format!(
                "\n{} team(s): {} USD spent of {} USD budgeted\n",
                report.teams.len(),
                usd(Some(spend)),
                usd(Some(budget))
            ));
            if let Some(keys) = &report.keys {
                out.push('\n');
                out.push_str(&table(&key_rows(keys, false)));
            }
            out
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn team(ns: &str, name: &str, status: serde_json::Value) -> RouteroTeam {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "routero.ai/v1alpha1", "kind": "RouteroTeam",
            "metadata": {"name": name, "namespace": ns},
            "spec": {"maxBudget": 500, "budgetDuration": "1mo"}, "status": status
        }))
        .expect("team")
    }

    #[test]
    fn teams_are_sorted_and_percent_is_computed_when_status_lacks_it() {
        let r = report(
            &[
                team(
                    "b",
                    "eng",
                    serde_json::json!({"spend": 250.0, "maxBudget": 500.0}),
                ),
                team(
                    "a",
                    "ds",
                    serde_json::json!({"spend": 1.0, "maxBudget": 500.0, "budgetUsedPercent": 0.2}),
                ),
            ],
            None,
        );
        assert_eq!(r.teams[0].name, "ds");
        assert_eq!(r.teams[1].percent_used, Some(50.0));
        let csv = render(&r, Format::Csv);
        assert_eq!(
            csv.lines().nth(2),
            Some("b,eng,eng,250,500,50,1mo,,,false"),
            "{csv}"
        );
    }

    #[test]
    fn csv_quotes_what_needs_it() {
        assert_eq!(csv_cell("a,b"), "\"a,b\"");
        assert_eq!(csv_cell("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(csv_cell("plain"), "plain");
    }
}
