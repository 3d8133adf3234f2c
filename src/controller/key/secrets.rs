//! The Secrets a key lives in: the workload Secret its consumers read, and the pending Secret that records a value
//! before it reaches the gateway.
use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Secret;
use kube::ResourceExt;
use kube::api::{DeleteParams, PostParams};
use kube::runtime::controller::Action;

use super::{Keys, Step};
use crate::controller::key_value::KeyValue;
use crate::controller::secret;
use crate::controller::status::Outcome;
use crate::error::Result;

impl<'a> Keys<'a> {
    /// The workload and pending Secrets, read live. One that exists but was not created for this RouteroKey ends the
    /// pass: it is left untouched and reported as `SecretConflict`.
    pub(super) async fn read_secrets(&self) -> Result<Step<(Option<Secret>, Option<Secret>)>> {
        let (name, pending_name) = (self.key.secret_name(), secret::pending_name(self.key));
        let (workload, pending) = futures::try_join!(
            self.secrets.get_opt(&name),
            self.secrets.get_opt(&pending_name),
        )?;
        for s in workload.iter().chain(pending.iter()) {
            if !secret::is_ours(s, self.key) {
                let message = format!(
                    "Secret '{}' exists and was not created for this RouteroKey; it is left untouched",
                    s.name_any()
                );
                if !self.is_reported("SecretConflict") {
                    self.ctx
                        .event(self.key, true, "SecretConflict", message.clone())
                        .await;
                }
                self.report(Outcome::blocked("SecretConflict", message), None, None)
                    .await;
                return Ok(Step::Break(Action::requeue(self.ctx.resync_after())));
            }
        }
        Ok(Step::Continue((workload, pending)))
    }

    /// Creates or replaces (with optimistic concurrency) the workload Secret with `value` and `state`.
    pub(super) async fn write_workload(
        &self,
        existing: Option<&Secret>,
        value: &KeyValue,
        state: &BTreeMap<String, String>,
    ) -> Result<Secret> {
        let mut want = secret::workload_secret(self.key, value, self.ctx.gateway.base_url(), state);
        let pp = PostParams {
            field_manager: Some(crate::controller::status::MANAGER.into()),
            ..PostParams::default()
        };
        Ok(match existing.filter(|s| s.name_any() == want.name_any()) {
            None => self.secrets.create(&pp, &want).await?,
            Some(s) => {
                want.metadata.resource_version = s.resource_version();
                self.secrets.replace(&want.name_any(), &pp, &want).await?
            }
        })
    }

    pub(super) async fn delete_secret(&self, name: &str) -> Result<()> {
        match self.secrets.delete(name, &DeleteParams::default()).await {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
            Err(e) => Err(e.into()),
        }
    }
}
