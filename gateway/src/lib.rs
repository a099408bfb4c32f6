//! The LGSP gateway: the province's front door for data sharing between agencies.
//!
//! It terminates mutual TLS, identifies the calling system from its verified client certificate
//! ([`layers::identity`]), routes `/<provider agency code>/<api>/<path>` ([`layers::routing`]),
//! checks the provider's grant ([`layers::grant`]), applies the provider's rate limit per
//! consumer ([`layers::rate_limit`]), forwards to the provider ([`layers::forward`]) and writes a
//! hash-chained, signed audit of every exchange ([`audit`], [`layers::audit`]). Configuration
//! comes from files and is swapped atomically when they change ([`config`]). `docs/lgsp.md`
//! explains it to operators.

pub mod audit;
pub mod config;
pub mod context;
pub mod gateway;
pub mod layers;
pub mod problem;
pub mod routes;

pub use gateway::{RunningGateway, Settings, start};
