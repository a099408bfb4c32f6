//! Test support: one shared control plane per run, a namespace per test.
