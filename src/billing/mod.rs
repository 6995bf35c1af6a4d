//! Payments: Stripe client, webhook verification, dev checkout, event handling.

pub mod checkout;
pub mod events;
pub mod signature;
pub mod stripe;
