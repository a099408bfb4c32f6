//! Developer tasks: the local control plane, the demo, the test suite, benchmarks and code generation.
//! A library as well as a binary, so that the integration tests start the same control plane.

pub mod bench;
pub mod cluster;
pub mod codegen;
pub mod demo;
pub mod faults;
pub mod images;
pub mod install;
pub mod krew;
pub mod node;
pub mod paths;
pub mod pki;
pub mod testrun;
pub mod tools;
