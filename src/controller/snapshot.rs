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

/// Keys carrying an ownership marker, by hash, each with the time it was seen: a listing's start for listed rows,
/// the confirming reply for a key the operator just registered. One map, updated in place page by page, so a new
/// listing never holds a second copy of the snapshot.
#[derive(Default)]
pub struct KeySnapshot {
    rows: RwLock<HashMap<String, (Listed, Instant)>>,
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
    /// The row of key `hash`, if it was seen less than `max_age` ago.
    pub fn row(&self, hash: &str, max_age: Duration) -> Option<KeyRow> {
        let rows = self.rows.read().unwrap_or_else(|p| p.into_inner());
        rows.get(hash)
            .filter(|(_, at)| at.elapsed() < max_age)
            .map(|(l, _)| l.row(hash))
    }

    /// Records a key the operator has just confirmed on the gateway (from the registering reply or a live read), so
    /// the pass its own Secret write triggers finds it without reading it again.
    pub fn remember(&self, hash: &str, row: &KeyRow) {
        let listed = Listed::of(row.clone());
        self.rows
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(hash.to_owned(), (listed, Instant::now()));
    }

    /// How many keys the snapshot holds (for logs and tests).
    fn len(&self) -> usize {
        self.rows.read().unwrap_or_else(|p| p.into_inner()).len()
    }

    fn insert_page(&self, at: Instant, page: impl Iterator<Item = (String, Listed)>) {
        let mut rows = self.rows.write().unwrap_or_else(|p| p.into_inner());
        for (hash, listed) in page {
            // A row remembered after this walk started is newer than the listing's.
            if rows.get(&hash).is_none_or(|(_, seen)| *seen <= at) {
                rows.insert(hash, (listed, at));
            }
        }
    }

    /// Drops the rows seen before `at`: after a complete walk that started at `at`, those keys are gone.
    fn drop_older(&self, at: Instant) {
        self.rows
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|_, (_, seen)| *seen >= at);
    }

    /// Lists every live key on the gateway and keeps ours, when that is cheaper than reading each of the `ours`
    /// keys the operator manages (`Ok(false)` when it is not: a gateway shared with many keys made elsewhere). Rows
    /// that a failed or skipped walk did not renew age out through `max_age`.
    pub async fn refresh(&self, gateway: &Gateway, ours: usize) -> Result<bool, GatewayError> {
        let at = Instant::now();
        for page in 1..=MAX_PAGES {
            let list = gateway.keys_page(page).await?;
            if page == 1 && !worth_listing(list.total_pages.unwrap_or(1).max(1), ours) {
                return Ok(false);
            }
            let last = list.keys.len() < 100 || list.total_pages.is_some_and(|t| page >= t);
            self.insert_page(at, keep(list.keys));
            if last {
                self.drop_older(at);
                return Ok(true);
            }
        }
        Ok(true)
    }
}

/// Gateway teams' and users' owner markers as the operator last read them, so that issuing a key into a team (or
/// for a person) need not read the team again each time: the team and member controllers record what they read,
/// and a key's ownership check uses an entry younger than the snapshot's `max_age`, else reads live and records it.
/// Only the gateway admin changes a marker the operator set, so an entry can be wrong for at most that long.
#[derive(Default)]
pub struct Markers {
    seen: RwLock<HashMap<(&'static str, String), Seen>>,
}

/// An owner marker (`None`: the object had none) and when it was read.
type Seen = (Option<String>, Instant);

impl Markers {
    pub fn record(&self, kind: &'static str, id: &str, metadata: Option<&Metadata>) {
        let owner = metadata
            .and_then(|m| m.get(OWNER_KEY))
            .and_then(Value::as_str)
            .map(str::to_owned);
        self.record_owner(kind, id, owner);
    }

    /// Records the owner marker the object carries now (after the operator wrote it).
    pub fn record_owner(&self, kind: &'static str, id: &str, owner: Option<String>) {
        self.seen
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert((kind, id.to_owned()), (owner, Instant::now()));
    }

    /// The owner marker of `kind` `id` (`Some(None)`: it had none), if read less than `max_age` ago.
    pub fn owner(&self, kind: &'static str, id: &str, max_age: Duration) -> Option<Option<String>> {
        self.seen
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&(kind, id.to_owned()))
            .filter(|(_, at)| at.elapsed() < max_age)
            .map(|(o, _)| o.clone())
    }

    pub fn forget(&self, kind: &'static str, id: &str) {
        self.seen
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&(kind, id.to_owned()));
    }
}

/// Listing every half interval costs two walks of `pages` per resync; reading each key costs `ours` reads.
fn worth_listing(pages: u32, ours: usize) -> bool {
    usize::try_from(pages)
        .ok()
        .and_then(|p| p.checked_mul(2))
        .is_some_and(|calls| calls <= ours)
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
        // Rows no walk renewed (keys gone, or listing skipped) are of no use once too old to be read.
        if let Some(stale) = Instant::now().checked_sub(resync.saturating_mul(2)) {
            snapshot.drop_older(stale);
        }
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
        let at = Instant::now();
        snapshot.insert_page(at, keep(vec![row("a", true), row("b", false)]));
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
        // A key the operator just confirmed is found at once, and a later walk that no longer lists "a" drops it.
        snapshot.remember("c", &row("c", true));
        assert!(snapshot.row("c", Duration::from_secs(60)).is_some());
        snapshot.drop_older(Instant::now());
        assert!(snapshot.row("a", Duration::from_secs(60)).is_none());
        assert_eq!(snapshot.len(), 0);
    }
}
