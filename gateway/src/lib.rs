//! The LGSP gateway: the province's front door for data sharing between agencies.
//!
//! It terminates mutual TLS, identifies the calling system from its verified client certificate
//! ([`layers::identity`]), routes `/<provider agency code>/<api>/<path>` ([`layers::routing`]),
//! checks the provider's grant ([`layers::grant`]), applies the provider's rate limit per
//! consumer ([`layers::rate_limit`]), forwards to the provider ([`layers::forward`]) and writes a
//! hash-chained, signed audit of every exchange ([`audit`], [`layers::audit`]). Routes come
//! from the operator's route tables in the cluster ([`cluster`]) or from files, TLS from files
//! ([`config`]); both are swapped atomically when they change ([`routes`]). `docs/lgsp.md`
//! explains it to operators.

pub mod audit;
pub mod cluster;
pub mod config;
pub mod context;
pub mod gateway;
pub mod layers;
pub mod problem;
pub mod routes;

pub use gateway::{RunningGateway, Settings, start};
