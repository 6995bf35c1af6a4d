//! onboard: self-service SaaS tenant onboarding.

pub mod alerts;
pub mod analytics;
pub mod app;
pub mod audit;
pub mod billing;
pub mod cli;
pub mod config;
pub mod demo;
pub mod domain;
pub mod email;
pub mod http;
pub mod jobs;
pub mod metrics;
pub mod outbound;
pub mod provisioning;
pub mod search;
pub mod store;
pub mod tasks;
pub mod workspace;
