//! Pure decisions: no I/O, no tokio. Each function takes parsed inputs and returns a decision, so
//! that every rule is unit-tested without sockets.

pub mod authority;
pub mod bucket;
pub mod connect;
pub mod deny;
pub mod framing;
pub mod handshake;
pub mod host;
pub mod request;
pub mod tls;
