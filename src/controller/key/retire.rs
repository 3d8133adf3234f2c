//! Retirement: after a Recreate rotation (or takeover) the old key keeps working for `rotation.gracePeriod` while its
//! consumers move to the new value, then it is deleted. The workload Secret's annotations say which key and when.
use k8s_openapi::api::core::v1::Secret;
use kube::ResourceExt;

use super::{Holder, Keys};
use crate::controller::key_value::{KeyValue, short_id};
use crate::controller::secret;
use crate::error::Result;

impl<'a> Keys<'a> {
    /// A Recreate rotation in its grace period: retire the old key when the time comes. Returns the workload Secret
    /// as it is afterwards (without the retirement annotations once the old key is gone).
    pub(super) async fn retire(
        &self,
        secret: &Secret,
        value: &KeyValue,
        now: jiff::Timestamp,
    ) -> Result<Secret> {
        let mut secret = secret.clone();
        if let Some(old) = secret.annotations().get(secret::RETIRING_KEY).cloned() {
            let due = secret
                .annotations()
                .get(secret::RETIRE_AFTER)
                .and_then(|t| t.parse::<jiff::Timestamp>().ok())
                .is_none_or(|t| t <= now);
            if due {
                match self.holder(&old).await? {
                    Holder::Ours => {
                        self.ctx.gateway.key_delete(&old, &self.actor).await?;
                        self.ctx
                            .event(
                                self.key,
                                false,
                                "Retired",
                                format!(
                                    "deleted the previous key {} after the grace period",
                                    short_id(&old)
                                ),
                            )
                            .await;
                    }
                    Holder::Gone => {}
                    Holder::Foreign => {
                        self.untrusted(&format!(
                            "annotation {} on Secret '{}'",
                            secret::RETIRING_KEY,
                            secret.name_any()
                        ))
                        .await
                    }
                }
                let mut state = secret::operator_state(&secret);
                state.remove(secret::RETIRING_KEY);
                state.remove(secret::RETIRE_AFTER);
                secret = self.write_workload(Some(&secret), value, &state).await?;
            }
        }
        Ok(secret)
    }

    /// The alias the delivered key in `secret` carries: the Recreate alias while the old key still holds the plain one.
    pub(super) fn current_alias(&self, secret: &Secret) -> String {
        if secret.annotations().contains_key(secret::RETIRING_KEY) {
            self.next_alias()
        } else {
            self.alias.clone()
        }
    }
}
