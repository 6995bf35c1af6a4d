//! onboard: self-service SaaS tenant onboarding.

pub mod cli;
pub mod config;
pub mod domain;
pub mod http;
pub mod store;
