//! Payments: the Stripe client, webhook verification, the dev checkout and the event handlers,
//! with the job that processes a stored event (`events::EventJob`).
//!
//! A feature module: may use `provisioning` (a paid checkout starts it), `jobs`, `store`,
//! `domain` and the `AppState` handle; must not import `http`, `cli` or `tasks`.

pub mod account;
pub mod checkout;
pub mod events;
pub mod lifecycle;
pub mod notify;
pub mod signature;
pub mod stripe;
