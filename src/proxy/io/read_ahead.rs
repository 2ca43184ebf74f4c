//! A request body some of which was read ahead (to judge it) and is replayed first.

use bytes::Bytes;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use std::collections::VecDeque;
use std::pin::Pin;
use std::task::{Context, Poll};

/// The frames read ahead (a POST form's prefix) followed by the rest of the body.
pub struct ReadAhead {
    pub prefix: VecDeque<Frame<Bytes>>,
    pub rest: Incoming,
}

impl Body for ReadAhead {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        if let Some(f) = self.prefix.pop_front() {
            return Poll::Ready(Some(Ok(f)));
        }
        Pin::new(&mut self.rest).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.prefix.is_empty() && self.rest.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        let ahead: u64 = self.prefix.iter().filter_map(|f| f.data_ref()).map(|d| d.len() as u64).sum();
        let rest = self.rest.size_hint();
        let mut h = SizeHint::new();
        h.set_lower(rest.lower() + ahead);
        if let Some(u) = rest.upper() {
            h.set_upper(u + ahead);
        }
        h
    }
}
