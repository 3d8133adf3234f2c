//! routero-operator: Kubernetes controllers that manage Routero (LiteLLM-compatible) gateway teams, keys and members.
pub mod alerting;
pub mod controller;
pub mod crd;
pub mod error;
pub mod fair;
pub mod gateway;
pub mod health;
pub mod import;
pub mod leader;
pub mod metrics;
pub mod monitoring;
pub mod operator;
pub mod plan;
pub mod spend;

pub use error::{Error, Result};
