//! The LGSP gateway: the province's front door for data sharing between agencies.
//!
//! It terminates mutual TLS, identifies the calling system from its verified client certificate
//! ([`layers::identity`]; identity-bearing headers from clients are dropped, [`headers`]), routes
//! the canonical form ([`path`]) of `/<provider agency code>/<api>/<path>` ([`layers::routing`]),
//! checks the provider's grant ([`layers::grant`]), applies the provider's rate limit per
//! consumer ([`layers::rate_limit`]), only then reads the body within a budget
//! ([`layers::read_body`], [`body`]), forwards to the provider ([`layers::forward`]) and writes a
//! hash-chained, signed, synced audit of every exchange ([`audit`], [`layers::audit`]). Connections
//! are capped and timed ([`connections`]); refusals are [`problem::Problem`]s. Routes come from the
//! operator's route tables in the cluster ([`cluster`]) or from files, TLS from files
//! ([`config`]); both are swapped atomically when they change ([`routes`]). The kubelet probes
//! [`health`]. National routes (`/ndxp/<api>/…`) go to the national platform over mutual TLS with
//! the province's identity ([`national`]). `docs/lgsp.md` explains it to operators.

pub mod audit;
pub mod body;
pub mod cluster;
pub mod config;
pub mod connections;
pub mod context;
pub mod gateway;
pub mod headers;
pub mod health;
pub mod layers;
pub mod metrics;
pub mod national;
pub mod path;
pub mod problem;
pub mod routes;

pub use gateway::{RunningGateway, Settings, start};
