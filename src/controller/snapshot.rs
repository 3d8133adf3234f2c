//! Periodic lists of the operator's keys and teams on the gateway, so that a steady-state resync can skip its own
//! read: one `/key/list` page (100 keys) replaces 100 `/key/info` reads, one `/v2/team/list` page 100
//! `/team/info` reads.
//!
//! A snapshot may only *spare* a read, never decide an action: a reconcile uses a row from it only when that row
//! says nothing needs doing (see `Keys::quiet` and the team controller's `quiet`). Anything else (an object missing
//! from the snapshot, blocked, drifted, due for rotation) is read again live before the operator acts on it. A stale
//! snapshot therefore costs a live read, and a change made on the gateway after the snapshot was taken is seen by
//! the first resync after the next snapshot: within two resync intervals (a snapshot is trusted for three quarters
//! of one).
use std::collections::HashMap;
use std::future::Future;
use std::sync::RwLock;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::context::Context;
use super::ownership::OWNER_KEY;
use crate::gateway::types::{KeyRow, Metadata, TeamRow};
use crate::gateway::{Gateway, GatewayError};

/// More pages than any gateway has: a walk that gets here is not converging (objects created faster than listed).
const MAX_PAGES: u32 = 10_000;
/// Rows per page of both listings (the gateway's maximum).
const PAGE_SIZE: usize = 100;

/// Rows by id, each with the time it was seen: a listing's start for listed rows, the confirming reply for an
/// object the operator just wrote. One map, updated in place page by page, so a new listing never holds a second
/// copy of the snapshot.
struct Rows<T> {
    rows: RwLock<HashMap<String, (T, Instant)>>,
}

impl<T> Default for Rows<T> {
    fn default() -> Self {
        Self {
            rows: RwLock::default(),
        }
    }
}

impl<T> Rows<T> {
    /// `f` of the row of `id`, if it was seen less than `max_age` ago.
    fn get<R>(&self, id: &str, max_age: Duration, f: impl FnOnce(&T) -> R) -> Option<R> {
        let rows = self.rows.read().unwrap_or_else(|p| p.into_inner());
        rows.get(id)
            .filter(|(_, at)| at.elapsed() < max_age)
            .map(|(row, _)| f(row))
    }

    fn insert(&self, id: &str, row: T) {
        self.rows
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id.to_owned(), (row, Instant::now()));
    }

    fn remove(&self, id: &str) {
        self.rows
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(id);
    }

    fn len(&self) -> usize {
        self.rows.read().unwrap_or_else(|p| p.into_inner()).len()
    }

    fn insert_page(&self, at: Instant, page: impl Iterator<Item = (String, T)>) {
        let mut rows = self.rows.write().unwrap_or_else(|p| p.into_inner());
        for (id, row) in page {
            // A row remembered after this walk started is newer than the listing's.
            if rows.get(&id).is_none_or(|(_, seen)| *seen <= at) {
                rows.insert(id, (row, at));
            }
        }
    }

    /// Drops the rows seen before `at`: after a complete walk that started at `at`, those objects are gone.
    fn drop_older(&self, at: Instant) {
        self.rows
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|_, (_, seen)| *seen >= at);
    }

    /// Lists every page, keeping the rows `page_of` returns, when that is cheaper than reading each of the `ours`
    /// objects the operator manages (`Ok(false)` when it is not: a gateway shared with many objects made
    /// elsewhere). `page_of` answers the kept rows, the page's length before filtering, and `total_pages`. Rows that
    /// a failed or skipped walk did not renew age out through `max_age`.
    async fn walk<F, Fut>(&self, ours: usize, mut page_of: F) -> Result<bool, GatewayError>
    where
        F: FnMut(u32) -> Fut,
        Fut: Future<Output = Result<(Vec<(String, T)>, usize, Option<u32>), GatewayError>>,
    {
        let at = Instant::now();
        for page in 1..=MAX_PAGES {
            let (rows, len, total_pages) = page_of(page).await?;
            if page == 1 && !worth_listing(total_pages.unwrap_or(1).max(1), ours) {
                return Ok(false);
            }
            let last = len < PAGE_SIZE || total_pages.is_some_and(|t| page >= t);
            self.insert_page(at, rows.into_iter());
            if last {
                self.drop_older(at);
                return Ok(true);
            }
        }
        Ok(true)
    }
}

/// Keys carrying an ownership marker, by hash, each with the time it was seen: a listing's start for listed rows,
/// the confirming reply for a key the operator just registered. One map, updated in place page by page, so a new
/// listing never holds a second copy of the snapshot.
///
/// Rows are boxed: the map keeps room for up to twice as many entries as it holds, and an inline row (about 240
/// bytes) made its empty slots cost as much as its rows (the table was the snapshot's largest allocation in the P4
/// heap profile); boxed, an empty slot costs a pointer.
#[derive(Default)]
pub struct KeySnapshot {
    rows: Rows<Box<Listed>>,
}

/// The fields of a listed key that a resync compares, without the rest of the row: a full row's metadata map alone
/// costs about a kilobyte, which at 10,000 keys doubled the snapshot's size. Of the metadata only the owner marker
/// is kept, which is all a quiet resync compares (the uid marker is not drift on its own: `metadata_update`).
struct Listed {
    key_alias: Option<String>,
    team_id: Option<String>,
    user_id: Option<String>,
    owner: Option<String>,
    models: Vec<String>,
    spend: Option<f64>,
    max_budget: Option<f64>,
    budget_duration: Option<String>,
    expires: Option<String>,
    blocked: Option<bool>,
}

impl Listed {
    fn of(row: KeyRow) -> Self {
        Self {
            owner: row
                .metadata
                .as_ref()
                .and_then(|m| m.get(OWNER_KEY))
                .and_then(Value::as_str)
                .map(str::to_owned),
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
        if let Some(v) = &self.owner {
            metadata.insert(OWNER_KEY.into(), Value::String(v.clone()));
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
            created_at: None,
        }
    }
}

impl KeySnapshot {
    /// The row of key `hash`, if it was seen less than `max_age` ago.
    pub fn row(&self, hash: &str, max_age: Duration) -> Option<KeyRow> {
        self.rows.get(hash, max_age, |l| l.row(hash))
    }

    /// Records a key the operator has just confirmed on the gateway (from the registering reply or a live read), so
    /// the pass its own Secret write triggers finds it without reading it again.
    pub fn remember(&self, hash: &str, row: &KeyRow) {
        self.rows.insert(hash, Box::new(Listed::of(row.clone())));
    }

    /// Lists every live key on the gateway and keeps ours, when that is cheaper than reading each of the `ours`
    /// keys the operator manages.
    pub async fn refresh(&self, gateway: &Gateway, ours: usize) -> Result<bool, GatewayError> {
        self.rows
            .walk(ours, |page| async move {
                let list = gateway.keys_page(page).await?;
                let len = list.keys.len();
                Ok((keep(list.keys).collect(), len, list.total_pages))
            })
            .await
    }
}

/// The operator's teams as last listed (`/v2/team/list`), by team id: only teams carrying an owner marker. Teams
/// are few next to keys, so their rows are kept whole.
#[derive(Default)]
pub struct TeamSnapshot {
    rows: Rows<TeamRow>,
}

impl TeamSnapshot {
    /// The row of team `id`, if it was seen less than `max_age` ago.
    pub fn row(&self, id: &str, max_age: Duration) -> Option<TeamRow> {
        self.rows.get(id, max_age, TeamRow::clone)
    }

    /// Records what the gateway answered to the operator's own write (or a live read).
    pub fn remember(&self, row: &TeamRow) {
        self.rows.insert(&row.team_id, row.clone());
    }

    pub fn forget(&self, id: &str) {
        self.rows.remove(id);
    }

    /// Lists every team on the gateway and keeps ours, when that is cheaper than reading each of the `ours` teams.
    pub async fn refresh(&self, gateway: &Gateway, ours: usize) -> Result<bool, GatewayError> {
        self.rows
            .walk(ours, |page| async move {
                let list = gateway.teams_page(page).await?;
                let len = list.teams.len();
                let kept = list
                    .teams
                    .into_iter()
                    .filter(|t| {
                        t.metadata
                            .as_ref()
                            .is_some_and(|m| m.contains_key(OWNER_KEY))
                    })
                    .map(|t| (t.team_id.clone(), t))
                    .collect();
                Ok((kept, len, list.total_pages))
            })
            .await
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

fn keep(rows: Vec<KeyRow>) -> impl Iterator<Item = (String, Box<Listed>)> {
    rows.into_iter()
        .filter(|r| {
            r.metadata
                .as_ref()
                .is_some_and(|m| m.contains_key(OWNER_KEY))
        })
        .filter_map(|mut r| Some((r.token.take()?, Box::new(Listed::of(r)))))
}

/// Refreshes the key and team snapshots every half resync interval until the future is dropped. The first walk
/// waits a full interval: right after start every object is reconciled with live reads anyway.
pub async fn run(ctx: &Context) {
    let resync = ctx.settings.resync;
    let period = resync / 2;
    let mut wait = resync;
    loop {
        tokio::time::sleep(wait).await;
        wait = period;
        // Rows no walk renewed (objects gone, or listing skipped) are of no use once too old to be read.
        if let Some(stale) = Instant::now().checked_sub(resync.saturating_mul(2)) {
            ctx.keys.rows.drop_older(stale);
            ctx.teams.rows.drop_older(stale);
        }
        let keys = ctx.keys.refresh(&ctx.gateway, ctx.managed_keys()).await;
        report("key", keys, ctx.keys.rows.len());
        let teams = ctx.teams.refresh(&ctx.gateway, ctx.managed_teams()).await;
        report("team", teams, ctx.teams.rows.len());
    }
}

fn report(kind: &str, walk: Result<bool, GatewayError>, listed: usize) {
    match walk {
        Ok(true) => tracing::debug!(listed, "refreshed the {kind} snapshot"),
        Ok(false) => tracing::debug!(
            "the gateway holds too many other {kind}s to list; resyncs read each {kind}"
        ),
        Err(e) => {
            tracing::warn!(error = %e, "could not list the gateway's {kind}s; resyncs read each {kind} instead")
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
        snapshot
            .rows
            .insert_page(at, keep(vec![row("a", true), row("b", false)]));
        assert_eq!(snapshot.rows.len(), 1);
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
        snapshot.rows.drop_older(Instant::now());
        assert!(snapshot.row("a", Duration::from_secs(60)).is_none());
        assert_eq!(snapshot.rows.len(), 0);
    }
}
