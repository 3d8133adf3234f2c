//! routero-operator: Kubernetes controllers that manage Routero (LiteLLM-compatible) gateway teams, keys and members.
pub mod alerting;
pub mod controller;
pub mod crd;
pub mod error;
pub mod fair;
pub mod gateway;
pub mod health;
pub mod leader;
pub mod metrics;
pub mod operator;

pub use error::{Error, Result};
