//! Counts the operator's warnings (failed reconciles and the like) while a scenario runs, so a figure is never
//! reported without the errors behind it. `RUST_LOG` set also prints the log.
use std::collections::BTreeMap;
use std::fmt::Debug;
use std::sync::{Mutex, PoisonError};

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

static COUNTS: Mutex<BTreeMap<String, u64>> = Mutex::new(BTreeMap::new());

pub fn init() {
    let print = std::env::var_os("RUST_LOG").is_some().then(|| {
        tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            .with_filter(EnvFilter::from_default_env())
    });
    tracing_subscriber::registry()
        .with(Counter)
        .with(print)
        .init();
}

/// Warnings since the last call, by message, reason and the start of the error; resets the count.
pub fn take() -> BTreeMap<String, u64> {
    std::mem::take(&mut COUNTS.lock().unwrap_or_else(PoisonError::into_inner))
}

struct Counter;

impl<S: Subscriber> Layer<S> for Counter {
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        if *event.metadata().level() > Level::WARN {
            return;
        }
        let mut fields = Fields::default();
        event.record(&mut fields);
        let mut what = fields.message;
        if let Some(reason) = fields.reason {
            what.push_str(&format!(" [{reason}]"));
        }
        if let Some(error) = fields.error {
            // The start of the error names its kind; the rest carries object names and numbers.
            let head: String = error.chars().take(70).collect();
            what.push_str(&format!(": {head}"));
        }
        *COUNTS
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(what)
            .or_insert(0) += 1;
    }
}

#[derive(Default)]
struct Fields {
    message: String,
    reason: Option<String>,
    error: Option<String>,
}

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.record(field.name(), value.to_owned());
    }

    fn record_debug(&mut self, field: &Field, value: &dyn Debug) {
        self.record(field.name(), format!("{value:?}"));
    }
}

impl Fields {
    fn record(&mut self, name: &str, value: String) {
        match name {
            "message" => self.message = value,
            "reason" => self.reason = Some(value.trim_matches('"').to_owned()),
            "error" => self.error = Some(value),
            _ => {}
        }
    }
}
