//! routero-operator: Kubernetes controllers that manage Routero (LiteLLM-compatible) gateway teams, keys and members.
pub mod crd;
pub mod gateway;
