//! Leader election on a `coordination.k8s.io/v1` Lease (kube-lease-manager): of several replicas only the lease
//! holder runs the controllers, so two replicas never write to the gateway at once.
//!
//! - Standby: every retry period it looks at the Lease afresh, and takes it once it is free or expired.
//! - Leading: the lease is renewed in the background while the controllers run.
//! - Shutdown: the controllers finish their in-flight reconciles, then the lease is released, so a standby takes
//!   over within one retry period instead of waiting for the lease to expire.
//! - Lost lease (another replica took it, or it could not be renewed): the controllers are dropped at once and
//!   [`lead`] returns an error, so the process exits non-zero and Kubernetes restarts it as a fresh standby. An
//!   in-process return to standby would have to rebuild every watch; a restart is simpler and just as safe (every
//!   reconcile is crash-safe).
use std::future::Future;
use std::time::Duration;

use kube::Client;
use kube_lease_manager::{LeaseCreateMode, LeaseManager, LeaseParams};

use crate::error::{Error, Result};
use crate::health::Readiness;
use crate::metrics::Metrics;

#[derive(Clone, Debug)]
pub struct LeaderElection {
    pub lease_name: String,
    pub lease_namespace: String,
    /// Unique per replica: the Lease's `holderIdentity`.
    pub identity: String,
    /// How long the lease stays valid after a renewal (whole seconds, at least 2). The holder renews a third of it
    /// before the end.
    pub lease_duration: Duration,
}

impl LeaderElection {
    /// Seconds the holder renews before expiry: also the tolerated clock skew between nodes.
    fn grace_secs(&self) -> u64 {
        (self.lease_duration.as_secs() / 3).max(1)
    }

    fn params(&self) -> LeaseParams {
        let duration = self.lease_duration.as_secs().max(2);
        LeaseParams::new(self.identity.clone(), duration, self.grace_secs())
    }

    /// How often a standby looks at the Lease.
    fn retry_period(&self) -> Duration {
        Duration::from_secs(self.grace_secs().min(2))
    }
}

/// `$POD_NAME` (else `$HOSTNAME`) plus a random suffix: unique even for two processes on one host, and a restarted
/// container never mistakes its predecessor's lease for its own.
pub fn default_identity() -> String {
    use rand::Rng;
    let host = std::env::var("POD_NAME")
        .or_else(|_| std::env::var("HOSTNAME"))
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "routero-operator".into());
    let n: u32 = rand::rng().random();
    format!("{host}-{n:08x}")
}

/// Runs `act` while this replica holds the lease; until then it waits as a standby. `act` must end after
/// `shutdown` (the controllers stop gracefully on it); the lease is released afterwards. Returns `Ok` after a
/// shutdown, `Err` when the lease was lost while acting.
pub async fn lead(
    client: Client,
    election: &LeaderElection,
    metrics: &Metrics,
    readiness: &Readiness,
    shutdown: impl Future<Output = ()>,
    act: impl Future<Output = ()>,
) -> Result<()> {
    readiness.set_standby(true);
    metrics.set_leader(false);
    tracing::info!(
        lease = election.lease_name,
        namespace = election.lease_namespace,
        identity = election.identity,
        "waiting for the leader lease"
    );
    let manager = tokio::select! {
        m = acquire(&client, election) => m,
        () = shutdown => return Ok(()),
    };
    tracing::info!(
        identity = election.identity,
        "acquired the leader lease; starting the controllers"
    );
    readiness.set_standby(false);
    metrics.set_leader(true);

    // `changed()` renews the lease and returns only when this replica no longer holds it.
    let lost = tokio::select! {
        () = act => None,
        r = manager.changed() => Some(r),
    };
    metrics.set_leader(false);
    match lost {
        None => {
            if let Err(e) = manager.release().await {
                tracing::warn!(error = %e, "could not release the leader lease; a standby takes over when it expires");
            } else {
                tracing::info!("released the leader lease");
            }
            Ok(())
        }
        Some(r) => {
            let why = match r {
                Ok(_) => "another replica holds it".to_owned(),
                Err(e) => format!("it could not be renewed: {e}"),
            };
            Err(Error::Fatal(format!(
                "lost the leader lease {}/{}: {why}",
                election.lease_namespace, election.lease_name
            )))
        }
    }
}

/// Waits until this replica holds the lease. A fresh manager each round: kube-lease-manager's own standby sleeps
/// until the holder's lease would expire, so it would miss a lease released on shutdown.
async fn acquire(client: &Client, election: &LeaderElection) -> LeaseManager {
    let retry = election.retry_period();
    let mut warned = false;
    loop {
        let attempt = async {
            let manager = LeaseManager::new(
                client.clone(),
                &election.lease_name,
                &election.lease_namespace,
                election.params(),
                LeaseCreateMode::AutoCreate,
            )
            .await?;
            // A fresh manager starts as "not leader", so `changed()` returns only once it holds the lease.
            match tokio::time::timeout(retry, manager.changed()).await {
                Ok(Ok(true)) => Ok(Some(manager)),
                Ok(Ok(false)) | Err(_) => Ok(None),
                Ok(Err(e)) => Err(e),
            }
        };
        match attempt.await {
            Ok(Some(manager)) => return manager,
            Ok(None) => {}
            Err(e) => {
                if !warned {
                    tracing::warn!(error = %e, "leader election: cannot read or take the lease; retrying");
                    warned = true;
                }
                tokio::time::sleep(retry).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn election(secs: u64) -> LeaderElection {
        LeaderElection {
            lease_name: "l".into(),
            lease_namespace: "ns".into(),
            identity: "me".into(),
            lease_duration: Duration::from_secs(secs),
        }
    }

    #[test]
    fn timings_follow_the_lease_duration() {
        let e = election(15);
        assert_eq!(e.grace_secs(), 5, "renewed 5 s before expiry");
        assert_eq!(e.retry_period(), Duration::from_secs(2));
        let short = election(2);
        assert_eq!(short.grace_secs(), 1);
        assert_eq!(short.retry_period(), Duration::from_secs(1));
        // LeaseParams::new panics on grace >= duration: the shortest lease must still be valid.
        let _ = short.params();
    }

    #[test]
    fn identities_are_unique() {
        assert_ne!(default_identity(), default_identity());
    }
}
