//! The Routero (LiteLLM-compatible) admin API client.
pub mod client;
pub mod error;
pub mod types;
pub mod version;

pub use client::{AdminKey, Gateway, GatewayConfig};
pub use error::GatewayError;
pub use version::GatewayVersion;
