//! Budget alerts: applies the gateway's proxy-wide alerting config (`general_settings.alerting`, `alert_types`,
//! `alert_to_webhook_url`) from a mounted webhook file at start-up and whenever the file changes.
//!
//! Failures are logged and counted (`routero_alerting_config_errors_total`, `routero_alerting_config_applied 0`)
//! and retried with backoff; they never stop the operator. The webhook URL is a secret: it is never logged, and
//! only its SHA-256 is kept to notice a change.
use std::path::PathBuf;
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};
use tokio::time::Instant;

use crate::gateway::{Gateway, GatewayError};
use crate::metrics::Metrics;

const ACTOR: &str = "routero-operator/alerting";
const MAX_BACKOFF: Duration = Duration::from_secs(300);

#[derive(Clone, Debug)]
pub struct AlertingConfig {
    /// A file holding the Slack webhook URL (a mounted Secret key).
    pub webhook_file: PathBuf,
    /// Gateway alert types sent to the webhook, such as `budget_alerts`.
    pub alert_types: Vec<String>,
    /// How often the file is read.
    pub poll_interval: Duration,
}

impl AlertingConfig {
    pub fn new(webhook_file: PathBuf, alert_types: Vec<String>) -> Self {
        Self {
            webhook_file,
            alert_types,
            poll_interval: Duration::from_secs(10),
        }
    }
}

/// The `/config/update` body: Slack alerting for `alert_types`, each routed to the webhook.
pub fn config_body(alert_types: &[String], webhook: &SecretString) -> Value {
    let routes: Map<String, Value> = alert_types
        .iter()
        .map(|t| (t.clone(), Value::String(webhook.expose_secret().to_owned())))
        .collect();
    json!({"general_settings": {
        "alerting": ["slack"],
        "alert_types": alert_types,
        "alert_to_webhook_url": routes,
    }})
}

/// Reads the webhook URL. Errors name the file, never its content.
async fn read_webhook(path: &PathBuf) -> Result<SecretString, String> {
    let text = tokio::fs::read_to_string(path)
        .await
        .map_err(|e| format!("{}: {e}", path.display()))?;
    let url = text.trim();
    if url.is_empty() {
        return Err(format!("{} is empty", path.display()));
    }
    match reqwest::Url::parse(url) {
        Ok(u) if matches!(u.scheme(), "https" | "http") => Ok(SecretString::from(url.to_owned())),
        _ => Err(format!("{} does not hold an http(s) URL", path.display())),
    }
}

fn fingerprint(webhook: &SecretString, alert_types: &[String]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(webhook.expose_secret().as_bytes());
    for t in alert_types {
        h.update([0]);
        h.update(t.as_bytes());
    }
    h.finalize().into()
}

/// Where the loop stands: what was applied, or what failed and when to try it again.
enum Applied {
    Nothing,
    /// The fingerprint of the config the gateway holds.
    Done([u8; 32]),
    /// The input that failed (`None`: the file could not be read), retried at `retry_at` or as soon as it changes.
    Failed {
        input: Option<[u8; 32]>,
        retry_at: Instant,
        backoff: Duration,
    },
}

impl Applied {
    fn due(&self, input: Option<[u8; 32]>, now: Instant) -> bool {
        match self {
            Self::Nothing => true,
            Self::Done(done) => input != Some(*done),
            Self::Failed {
                input: failed,
                retry_at,
                ..
            } => *failed != input || now >= *retry_at,
        }
    }

    fn failed(&self, input: Option<[u8; 32]>, poll: Duration, now: Instant) -> Self {
        let backoff = match self {
            Self::Failed {
                input: previous,
                backoff,
                ..
            } if *previous == input => backoff.saturating_mul(2).min(MAX_BACKOFF),
            _ => poll,
        };
        Self::Failed {
            input,
            retry_at: now + backoff,
            backoff,
        }
    }
}

/// Applies the config now and on every change of the file; runs until dropped.
pub async fn run(gateway: &Gateway, metrics: &Metrics, config: &AlertingConfig) {
    let mut state = Applied::Nothing;
    loop {
        let now = Instant::now();
        let read = read_webhook(&config.webhook_file).await;
        let input = read
            .as_ref()
            .ok()
            .map(|w| fingerprint(w, &config.alert_types));
        if state.due(input, now) {
            let outcome = match &read {
                Ok(webhook) => gateway
                    .config_update(&config_body(&config.alert_types, webhook), ACTOR)
                    .await
                    .map(|()| fingerprint(webhook, &config.alert_types))
                    .map_err(|e| redacted(&e, webhook)),
                Err(e) => Err(e.clone()),
            };
            state = match outcome {
                Ok(done) => {
                    metrics.alerting_applied();
                    tracing::info!(
                        alert_types = ?config.alert_types,
                        "applied the alerting config to the gateway"
                    );
                    Applied::Done(done)
                }
                Err(e) => {
                    metrics.alerting_failed();
                    tracing::warn!(error = %e, "could not apply the alerting config; retrying");
                    state.failed(input, config.poll_interval, now)
                }
            };
        }
        tokio::time::sleep(config.poll_interval).await;
    }
}

/// The gateway's message, with the webhook URL cut out should the gateway ever echo it.
fn redacted(e: &GatewayError, webhook: &SecretString) -> String {
    e.to_string().replace(webhook.expose_secret(), "<webhook>")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_routes_every_alert_type_to_the_webhook() {
        let url = SecretString::from("https://hooks.slack.com/services/T/B/x".to_owned());
        let body = config_body(&["budget_alerts".into(), "daily_reports".into()], &url);
        assert_eq!(
            body,
            json!({"general_settings": {
                "alerting": ["slack"],
                "alert_types": ["budget_alerts", "daily_reports"],
                "alert_to_webhook_url": {
                    "budget_alerts": "https://hooks.slack.com/services/T/B/x",
                    "daily_reports": "https://hooks.slack.com/services/T/B/x",
                },
            }})
        );
    }

    #[test]
    fn applied_once_then_only_on_change_and_failures_back_off() {
        let poll = Duration::from_secs(10);
        let t0 = Instant::now();
        let (a, b) = (Some([1; 32]), Some([2; 32]));
        assert!(Applied::Nothing.due(a, t0));
        let done = Applied::Done([1; 32]);
        assert!(!done.due(a, t0), "unchanged: nothing to do");
        assert!(done.due(b, t0), "a new URL is applied");
        assert!(done.due(None, t0), "an unreadable file is reported");

        let failed = done.failed(b, poll, t0);
        assert!(!failed.due(b, t0 + Duration::from_secs(5)));
        assert!(failed.due(b, t0 + poll), "retried after the backoff");
        assert!(failed.due(a, t0), "a changed file is tried at once");
        let again = failed.failed(b, poll, t0 + poll);
        assert!(
            !again.due(b, t0 + poll + poll),
            "the same failure backs off longer"
        );
        assert!(again.due(b, t0 + poll + poll * 2));
    }

    #[test]
    fn gateway_errors_never_show_the_webhook() {
        let url = SecretString::from("https://hooks.slack.com/services/T/B/secret".to_owned());
        let e = GatewayError::Api {
            status: 400,
            message: "bad url https://hooks.slack.com/services/T/B/secret".into(),
            retry_after: None,
        };
        assert_eq!(
            redacted(&e, &url),
            "gateway answered 400: bad url <webhook>"
        );
    }

    #[tokio::test]
    async fn unreadable_and_malformed_files_are_errors_that_do_not_echo_the_content() {
        let dir = std::env::temp_dir().join(format!("routero-webhook-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let path = dir.join("url");
        assert!(read_webhook(&path).await.is_err(), "missing file");
        std::fs::write(&path, "not-a-url-secret\n").expect("write");
        let e = read_webhook(&path).await.expect_err("malformed");
        assert!(!e.contains("not-a-url-secret"), "{e}");
        std::fs::write(&path, "https://hooks.example/x\n").expect("write");
        assert_eq!(
            read_webhook(&path).await.expect("url").expose_secret(),
            "https://hooks.example/x"
        );
    }
}
