//! Test harness shared by the integration tests.
#![allow(dead_code)]
pub mod chart;
pub mod fake_gateway;
pub mod gateway_reader;
pub mod invariants;
pub mod kube_recorder;
pub mod prometheus;
pub mod recording_proxy;
pub mod testbed;
pub mod tools;
