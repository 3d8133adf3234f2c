//! The single integration-test binary (DESIGN §8): every module here runs the real controllers against the real
//! test-bed API server and a gateway (the real LiteLLM or the in-repo fake).
#[path = "../support/mod.rs"]
mod support;

mod argocd;
mod chaos;
mod chart;
mod crash;
mod crds;
mod deprovision;
mod gateway_contract;
mod import;
mod key;
mod leak;
mod member;
mod monitoring;
mod operations;
mod outage;
mod plan;
pub(crate) mod rbac;
mod spend;
mod steady;
mod team;
mod tenancy;
mod validation;
