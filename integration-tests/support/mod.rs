//! Shared integration-test support: a fake DNS server and TLS upstreams, all on 127.0.0.0/8.
//! Include from an integration test with `#[path = "support/mod.rs"] mod support;`.
#![allow(dead_code, unused_imports)]

pub mod dns;
pub mod harness;
pub mod moto;
pub mod s3;
pub mod upstream;

pub use dns::{unreachable_dns_addr, FakeDns};
pub use upstream::{free_port, NonFsUpstream, TestCa, TlsUpstream};
