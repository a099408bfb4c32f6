//! Tests across the certificate modules, with rustls-webpki and rustls as the real verifiers.

mod authority;
mod handshake;
mod inspection;
mod rotation;
mod verification;
