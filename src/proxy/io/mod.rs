//! The I/O adapters of the data path, each named for what it does:
//!
//! - [`ClientStream`]: the client's socket after the CONNECT, with the bytes hyper read past the
//!   CONNECT head served first, and large reads only while an upload is running;
//! - [`AllAtHand`]: a TLS stream whose one read returns every record already at hand (both TLS legs
//!   of inspect mode), and [`HeadTap`], which pairs each request with its head as it arrived;
//! - [`ReadAhead`]: a request body part of which was read ahead to be judged, replayed first.

mod all_at_hand;
mod client;
mod read_ahead;

pub use all_at_hand::{AllAtHand, HeadTap};
pub use client::{ClientStream, CLIENT_READ_BUF};
pub use read_ahead::ReadAhead;
