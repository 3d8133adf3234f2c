//! A periodic list of the operator's keys on the gateway, so that a RouteroKey's steady-state resync can skip its
//! own `/key/info` read: one `/key/list` page (100 keys) replaces 100 reads.
//!
//! The snapshot may only *spare* a read, never decide an action: a reconcile uses a row from it only when that row
//! says nothing needs doing (see `Keys::quiet`). Anything else (a key missing from the snapshot, blocked, drifted,
//! due for rotation) is read again live before the operator acts on it. A stale snapshot therefore costs a live
//! read, and a change made on the gateway after the snapshot was taken is seen by the first resync after the next
//! snapshot: within two resync intervals (a snapshot is trusted for three quarters of one).
use std::collections::HashMap;
use std::sync::RwLock;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::ownership::{OWNER_KEY, UID_KEY};
use crate::gateway::types::{KeyRow, Metadata};
use crate::gateway::{Gateway, GatewayError};

/// More pages than any gateway has: a walk that gets here is not converging (keys created faster than listed).
const MAX_PAGES: u32 = 10_000;

#[derive(Default)]
pub struct KeySnapshot {
    taken: RwLock<Option<Taken>>,
}

struct Taken {
    /// When the walk started: rows can be no older than this.
    at: Instant,
    /// Keys carrying an ownership marker, by hash.
    rows: HashMap<String, Listed>,
}

/// The fields of a listed key that a resync compares, without the rest of the row: a full row's metadata map alone
/// costs about a kilobyte, which at 10,000 keys doubled the snapshot's size. Of the metadata only our two markers
/// are kept, which is all a quiet resync compares.
struct Listed {
    key_alias: Option<String>,
    team_id: Option<String>,
    user_id: Option<String>,
    owner: Option<String>,
    uid: Option<String>,
    models: Vec<String>,
    spend: Option<f64>,
    max_budget: Option<f64>,
    budget_duration: Option<String>,
    expires: Option<String>,
    blocked: Option<bool>,
}

impl Listed {
    fn of(row: KeyRow) -> Self {
        let marker = |key: &str| {
            row.metadata
                .as_ref()
                .and_then(|m| m.get(key))
                .and_then(Value::as_str)
                .map(str::to_owned)
        };
        Self {
            owner: marker(OWNER_KEY),
            uid: marker(UID_KEY),
            key_alias: row.key_alias,
            team_id: row.team_id,
            user_id: row.user_id,
            models: row.models,
            spend: row.spend,
            max_budget: row.max_budget,
            budget_duration: row.budget_duration,
            expires: row.expires,
            blocked: row.blocked,
        }
    }

    fn row(&self, hash: &str) -> KeyRow {
        let mut metadata = Metadata::new();
        for (key, value) in [(OWNER_KEY, &self.owner), (UID_KEY, &self.uid)] {
            if let Some(v) = value {
                metadata.insert(key.into(), Value::String(v.clone()));
            }
        }
        KeyRow {
            token: Some(hash.to_owned()),
            key_alias: self.key_alias.clone(),
            team_id: self.team_id.clone(),
            user_id: self.user_id.clone(),
            metadata: Some(metadata),
            models: self.models.clone(),
            spend: self.spend,
            max_budget: self.max_budget,
            budget_duration: self.budget_duration.clone(),
            expires: self.expires.clone(),
            blocked: self.blocked,
            status: None,
        }
    }
}

impl KeySnapshot {
    /// The row of key `hash` from a snapshot started less than `max_age` ago.
    pub fn row(&self, hash: &str, max_age: Duration) -> Option<KeyRow> {
        let taken = self.taken.read().unwrap_or_else(|p| p.into_inner());
        let taken = taken.as_ref().filter(|t| t.at.elapsed() < max_age)?;
        taken.rows.get(hash).map(|l| l.row(hash))
    }

    /// How many keys the current snapshot holds (for logs and tests).
    fn len(&self) -> usize {
        let taken = self.taken.read().unwrap_or_else(|p| p.into_inner());
        taken.as_ref().map_or(0, |t| t.rows.len())
    }

    fn replace(&self, at: Instant, rows: HashMap<String, Listed>) {
        *self.taken.write().unwrap_or_else(|p| p.into_inner()) = Some(Taken { at, rows });
    }

    fn clear(&self) {
        *self.taken.write().unwrap_or_else(|p| p.into_inner()) = None;
    }

    /// Lists every live key on the gateway and keeps ours, when that is cheaper than reading each of the `ours`
    /// keys the operator manages (`Ok(false)` and no snapshot when it is not: a gateway shared with many keys made
    /// elsewhere). On failure the old snapshot is dropped, so resyncs fall back to live reads rather than trust rows
    /// that are getting older.
    pub async fn refresh(&self, gateway: &Gateway, ours: usize) -> Result<bool, GatewayError> {
        let at = Instant::now();
        match walk(gateway, ours).await {
            Ok(Some(rows)) => {
                self.replace(at, rows);
                Ok(true)
            }
            Ok(None) => {
                self.clear();
                Ok(false)
            }
            Err(e) => {
                self.clear();
                Err(e)
            }
        }
    }
}

/// Listing every half interval costs two walks of `pages` per resync; reading each key costs `ours` reads.
fn worth_listing(pages: u32, ours: usize) -> bool {
    usize::try_from(pages)
        .ok()
        .and_then(|p| p.checked_mul(2))
        .is_some_and(|calls| calls <= ours)
}

/// Every live key of ours (carrying an ownership marker), by hash, kept page by page in compact form; `None` when
/// the first page shows the walk would cost more than reading the operator's `ours` keys one by one.
async fn walk(
    gateway: &Gateway,
    ours: usize,
) -> Result<Option<HashMap<String, Listed>>, GatewayError> {
    let mut rows = HashMap::new();
    for page in 1..=MAX_PAGES {
        let list = gateway.keys_page(page).await?;
        if page == 1 && !worth_listing(list.total_pages.unwrap_or(1).max(1), ours) {
            return Ok(None);
        }
        let last = list.keys.len() < 100 || list.total_pages.is_some_and(|t| page >= t);
        rows.extend(keep(list.keys));
        if last {
            break;
        }
    }
    Ok(Some(rows))
}

fn keep(rows: Vec<KeyRow>) -> impl Iterator<Item = (String, Listed)> {
    rows.into_iter()
        .filter(|r| {
            r.metadata
                .as_ref()
                .is_some_and(|m| m.contains_key(OWNER_KEY))
        })
        .filter_map(|mut r| Some((r.token.take()?, Listed::of(r))))
}

/// Refreshes the snapshot every half resync interval until the future is dropped; `ours` counts the RouteroKeys
/// the operator manages. The first one waits a full interval: right after start every object is reconciled with
/// live reads anyway.
pub async fn run(
    snapshot: &KeySnapshot,
    gateway: &Gateway,
    resync: Duration,
    ours: impl Fn() -> usize,
) {
    let period = resync / 2;
    let mut wait = resync;
    loop {
        tokio::time::sleep(wait).await;
        wait = period;
        match snapshot.refresh(gateway, ours()).await {
            Ok(true) => {
                tracing::debug!(listed = snapshot.len(), "refreshed the key snapshot")
            }
            Ok(false) => {
                tracing::debug!(
                    "the gateway holds too many other keys to list; resyncs read each key"
                )
            }
            Err(e) => {
                tracing::warn!(error = %e, "could not list the gateway's keys; resyncs read each key instead")
            }
        }
    }
}

/// How old a snapshot may be for a resync to use it: a refresh period, plus slack for a slow walk.
pub fn max_age(resync: Duration) -> Duration {
    resync.mul_f64(0.75)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn row(token: &str, owned: bool) -> KeyRow {
        let metadata = if owned {
            json!({OWNER_KEY: "RouteroKey/ns/name"})
        } else {
            json!({})
        };
        serde_json::from_value(json!({
            "token": token, "metadata": metadata, "key_alias": "ns.name",
            "models": ["smart/balanced"], "max_budget": 5.0,
        }))
        .expect("row")
    }

    #[test]
    fn lists_only_when_cheaper_than_reading_each_key() {
        // 1,000 keys of ours on a gateway of 1,000 keys: 10 pages, 20 calls per resync instead of 1,000.
        assert!(worth_listing(10, 1000));
        // 100 keys of ours among 100,000: 2,000 calls per resync instead of 100 reads.
        assert!(!worth_listing(1000, 100));
        assert!(worth_listing(1, 2));
        assert!(!worth_listing(1, 1));
        assert!(!worth_listing(1, 0));
        assert!(!worth_listing(u32::MAX, 1000));
    }

    #[test]
    fn keeps_only_our_keys_and_only_while_fresh() {
        let snapshot = KeySnapshot::default();
        assert!(snapshot.row("a", Duration::from_secs(60)).is_none());
        snapshot.replace(
            Instant::now(),
            keep(vec![row("a", true), row("b", false)]).collect(),
        );
        assert_eq!(snapshot.len(), 1);
        let a = snapshot.row("a", Duration::from_secs(60)).expect("a");
        // What a resync compares survives the compact form.
        assert_eq!(a.token.as_deref(), Some("a"));
        assert_eq!(a.key_alias.as_deref(), Some("ns.name"));
        assert_eq!(a.models, vec!["smart/balanced".to_owned()]);
        assert_eq!(a.max_budget, Some(5.0));
        assert_eq!(
            a.metadata.as_ref().and_then(|m| m.get(OWNER_KEY)),
            Some(&json!("RouteroKey/ns/name"))
        );
        assert!(snapshot.row("b", Duration::from_secs(60)).is_none());
        // Too old: not used at all.
        assert!(snapshot.row("a", Duration::ZERO).is_none());
        snapshot.clear();
        assert!(snapshot.row("a", Duration::from_secs(60)).is_none());
    }
}
