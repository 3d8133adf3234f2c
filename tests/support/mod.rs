//! Test harness shared by the integration tests.
#![allow(dead_code)]
pub mod fake_gateway;
pub mod gateway_reader;
pub mod testbed;
