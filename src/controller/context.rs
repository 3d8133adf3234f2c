//! What every reconcile shares: the Kubernetes client, the gateway client, the event recorder and the settings.
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::core::v1::ObjectReference;
use kube::api::PostParams;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::reflector::Store;
use kube::{Api, Client, Resource};
use rand::Rng;

use super::snapshot::{KeySnapshot, Markers, TeamSnapshot};
use crate::crd::{RouteroKey, RouteroMember, RouteroTeam};
use crate::gateway::{Gateway, GatewayVersion};
use crate::health::Readiness;
use crate::metrics::Metrics;
use kube::runtime::reflector::ObjectRef;

/// Operator settings that reconciles read.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Namespaces whose members may hold gateway admin roles.
    pub admin_namespaces: Vec<String>,
    /// How often every object is compared with the gateway.
    pub resync: Duration,
}

/// Watch caches of one namespace scope. They spare reads on a quiet resync; whatever leads to a write is read live.
pub struct Caches {
    pub teams: Store<RouteroTeam>,
    pub members: Store<RouteroMember>,
    pub secrets: Store<super::secret_view::SecretView>,
}

pub struct Context {
    pub client: Client,
    pub gateway: Arc<Gateway>,
    pub settings: Settings,
    pub metrics: Arc<Metrics>,
    /// Told when the controllers' caches have synced.
    pub readiness: Arc<Readiness>,
    /// The operator's keys as last listed on the gateway, sparing steady-state resyncs their reads.
    pub keys: KeySnapshot,
    /// The operator's teams as last listed on the gateway, sparing steady-state team resyncs their reads.
    pub teams: TeamSnapshot,
    /// Gateway teams' and users' owner markers as last read, sparing a key's ownership check its reads.
    pub markers: Markers,
    /// Reconcile slots, shared fairly between namespaces.
    pub gate: crate::fair::FairGate,
    /// The RouteroKey controllers' caches (one per watched namespace), once they run: how many keys the operator
    /// manages.
    pub key_cache: Mutex<Vec<Store<RouteroKey>>>,
    /// The RouteroTeam controllers' caches, likewise: how many teams the operator manages.
    pub team_cache: Mutex<Vec<Store<RouteroTeam>>>,
    /// The watch caches the key controller reads on a quiet resync (one set per watched namespace scope).
    pub caches: Mutex<Vec<Caches>>,
    recorder: Recorder,
    /// This replica's name in Events (`reportingInstance`).
    instance: String,
    /// Consecutive failures per object, for exponential backoff.
    failures: Mutex<HashMap<String, u32>>,
    /// The gateway answered that regenerate is licence-gated: `Auto` rotations go straight to Recreate.
    no_regenerate: AtomicBool,
    /// The gateway's release as read at start-up; `None` until it has answered.
    gateway_version: Mutex<Option<GatewayVersion>>,
    /// The gateway answered that it has no `/team/daily/activity`: daily spend is not asked for again.
    no_daily_activity: AtomicBool,
    /// When each team's daily spend was last read.
    daily_read: Mutex<HashMap<String, (std::time::Instant, DailyReading)>>,
}

/// The objects in a set of watch caches.
fn count<K: kube::Resource<DynamicType = ()> + Clone + 'static>(
    caches: &Mutex<Vec<Store<K>>>,
) -> usize {
    caches
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .iter()
        .map(|s| s.state().len())
        .sum()
}

/// Today's spend of a team and how the gateway answered.
pub type DailyReading = (Option<f64>, super::team::DailyNotice);

/// A team's daily spend is read at most once per this many resync intervals.
const DAILY_SPEND_RESYNCS: u32 = 4;
const MAX_BACKOFF: Duration = Duration::from_secs(300);
/// The `reportingController` of every Event.
const REPORTER: &str = "routero-operator";

impl Context {
    pub fn new(client: Client, gateway: Arc<Gateway>, settings: Settings) -> Self {
        let instance = std::env::var("POD_NAME").unwrap_or_else(|_| REPORTER.into());
        let reporter = Reporter {
            controller: REPORTER.into(),
            instance: Some(instance.clone()),
        };
        Self {
            recorder: Recorder::new(client.clone(), reporter),
            instance,
            client,
            gateway,
            settings,
            metrics: Arc::default(),
            readiness: Arc::default(),
            keys: KeySnapshot::default(),
            teams: TeamSnapshot::default(),
            markers: Markers::default(),
            gate: crate::fair::FairGate::new(super::SLOTS),
            key_cache: Mutex::default(),
            team_cache: Mutex::default(),
            caches: Mutex::default(),
            failures: Mutex::default(),
            no_regenerate: AtomicBool::new(false),
            gateway_version: Mutex::default(),
            no_daily_activity: AtomicBool::new(false),
            daily_read: Mutex::default(),
        }
    }

    /// Shares the operator's metrics and readiness (`new` gives private ones, enough for a lone controller).
    pub fn with_operations(mut self, metrics: Arc<Metrics>, readiness: Arc<Readiness>) -> Self {
        self.metrics = metrics;
        self.readiness = readiness;
        self
    }

    /// The next periodic resync, with ±10% jitter so objects don't all hit the gateway at once.
    pub fn resync_after(&self) -> Duration {
        self.settings
            .resync
            .mul_f64(rand::rng().random_range(0.9..1.1))
    }

    /// Records one more failure for `key` and returns how long to back off: 1 s doubling to 5 min, with jitter.
    pub fn backoff(&self, key: &str) -> Duration {
        let n = {
            let mut f = self.failures.lock().unwrap_or_else(|p| p.into_inner());
            let n = f.entry(key.to_owned()).or_insert(0);
            *n = n.saturating_add(1);
            *n
        };
        let base = Duration::from_secs(1)
            .saturating_mul(1 << (n - 1).min(9))
            .min(MAX_BACKOFF);
        base.mul_f64(rand::rng().random_range(0.8..1.2))
    }

    /// `ns`/`name` from the watch cache `pick` selects, if a synced cache holds it.
    pub fn cached<K>(
        &self,
        pick: impl Fn(&Caches) -> &Store<K>,
        ns: &str,
        name: &str,
    ) -> Option<Arc<K>>
    where
        K: kube::Resource<DynamicType = ()> + Clone + 'static,
    {
        let at = ObjectRef::<K>::new(name).within(ns);
        self.caches
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .find_map(|c| pick(c).get(&at))
    }

    /// The admin namespaces are trusted (DESIGN §4): adoption and admin roles are honoured there.
    pub fn is_admin_namespace(&self, ns: &str) -> bool {
        self.settings.admin_namespaces.iter().any(|a| a == ns)
    }

    /// How many RouteroKeys the operator manages (0 until the key controllers run).
    pub fn managed_keys(&self) -> usize {
        count(&self.key_cache)
    }

    /// How many RouteroTeams the operator manages (0 until the team controllers run).
    pub fn managed_teams(&self) -> usize {
        count(&self.team_cache)
    }

    /// Records the gateway's release: logged, exported as `routero_gateway_info`, and, outside the tested range,
    /// a Warning log and the `GatewayVersion` condition on every RouteroTeam (see `team::report`).
    pub fn set_gateway_version(&self, version: GatewayVersion) {
        match version.warning() {
            None => tracing::info!(version = version.label(), "gateway LiteLLM version"),
            Some((reason, message)) => {
                tracing::warn!(version = version.label(), reason, "{message}")
            }
        }
        self.metrics.set_gateway_version(&version);
        *self
            .gateway_version
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(version);
    }

    /// The gateway's release, once read.
    pub fn gateway_version(&self) -> Option<GatewayVersion> {
        self.gateway_version
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    pub fn regenerate_unsupported(&self) -> bool {
        self.no_regenerate.load(Ordering::Relaxed)
    }

    pub fn set_regenerate_unsupported(&self) {
        self.no_regenerate.store(true, Ordering::Relaxed);
    }

    pub fn daily_activity_unsupported(&self) -> bool {
        self.no_daily_activity.load(Ordering::Relaxed)
    }

    /// Team `team_id`'s last daily-spend reading, if made within `DAILY_SPEND_RESYNCS` resync intervals: the day's
    /// figure moves slowly, and a read per team per resync would undo what the team listing saves.
    pub fn daily_spend(&self, team_id: &str) -> Option<DailyReading> {
        self.daily_read
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(team_id)
            .filter(|(at, _)| at.elapsed() < self.settings.resync * DAILY_SPEND_RESYNCS)
            .map(|(_, reading)| reading.clone())
    }

    pub fn record_daily_spend(&self, team_id: &str, reading: DailyReading) {
        self.daily_read
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(team_id.to_owned(), (std::time::Instant::now(), reading));
    }

    pub fn set_daily_activity_unsupported(&self) {
        self.no_daily_activity.store(true, Ordering::Relaxed);
    }

    pub fn succeeded(&self, key: &str) {
        self.failures
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(key);
    }

    /// Publishes a Kubernetes Event; a failure to record one is logged, never fatal.
    pub async fn event<K: Resource<DynamicType = ()>>(
        &self,
        obj: &K,
        warning: bool,
        reason: &str,
        note: String,
    ) {
        let ev = Event {
            type_: if warning {
                EventType::Warning
            } else {
                EventType::Normal
            },
            reason: reason.into(),
            note: Some(note),
            action: reason.into(),
            secondary: None,
        };
        let reference = obj.object_ref(&());
        // kube's Recorder keeps every Event it publishes for minutes, to count repeats as a series, and scans that
        // cache on each publish. Warnings repeat (a conflict, an outage), so they go through it; the Normal Events
        // (Issued, Rotated, Updated, ...) are one-offs, and 10,000 keys' worth of them would only fill the cache.
        let published = if warning {
            self.recorder.publish(&ev, &reference).await
        } else {
            self.create_event(&ev, reference).await
        };
        if let Err(e) = published {
            tracing::warn!(error = %e, reason, "could not record event");
        }
    }

    /// Creates a one-off events.k8s.io Event, shaped as kube's Recorder shapes them, without caching it.
    async fn create_event(
        &self,
        ev: &Event,
        reference: ObjectReference,
    ) -> Result<(), kube::Error> {
        use k8s_openapi::api::events::v1::Event as K8sEvent;
        use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
        let now = jiff::Timestamp::now();
        let ns = reference
            .namespace
            .clone()
            .unwrap_or_else(|| "default".into());
        let event = K8sEvent {
            action: Some(ev.action.clone()),
            reason: Some(ev.reason.clone()),
            note: ev.note.clone(),
            event_time: Some(MicroTime(now)),
            metadata: ObjectMeta {
                namespace: Some(ns.clone()),
                name: Some(format!(
                    "{}.{:x}",
                    reference.name.as_deref().unwrap_or(REPORTER),
                    now.as_nanosecond()
                )),
                ..ObjectMeta::default()
            },
            regarding: Some(reference),
            reporting_controller: Some(REPORTER.into()),
            reporting_instance: Some(self.instance.clone()),
            type_: Some("Normal".into()),
            ..K8sEvent::default()
        };
        Api::<K8sEvent>::namespaced(self.client.clone(), &ns)
            .create(&PostParams::default(), &event)
            .await
            .map(drop)
    }
}
