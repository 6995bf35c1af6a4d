//! Black-box tests: the real server on 127.0.0.1:0, every store test on SQLite and PostgreSQL.

mod fakes;
mod helpers;

mod account;
mod activation;
mod alerts;
mod at_risk;
mod audit;
mod backends;
mod browser;
mod cli;
mod console;
mod docs;
mod email;
mod engine;
mod escaping;
mod health;
mod lifecycle;
mod login;
mod metrics;
mod outage;
mod pages;
mod pipeline;
mod security;
mod signup;
mod store;
mod stripe_account;
mod teams;
mod tenant;
mod workers;
mod workspace;
