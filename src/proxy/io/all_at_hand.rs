//! A reader for TLS streams under hyper (both legs of inspect mode): one read returns every record
//! already at hand, not one record per call.

use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Fills the caller's buffer with every record already at hand instead of one record per call: a
/// TLS stream yields at most one 16 KiB record per read, so hyper would pass a bulk body on in
/// 16 KiB chunks, each its own encryption call and `writev` on the other leg.
/// Reading on while the inner reader is ready costs no syscall when the ciphertext is buffered,
/// and stops at the first `Pending` (the bytes read so far are returned; the waker it registered
/// only causes one spare poll).
pub struct AllAtHand<T> {
    inner: T,
    /// An error met after some bytes were already returned, given on the next read.
    deferred: Option<std::io::Error>,
}

impl<T> AllAtHand<T> {
    pub fn into_inner(self) -> T {
        self.inner
    }

    pub fn new(inner: T) -> AllAtHand<T> {
        AllAtHand { inner, deferred: None }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for AllAtHand<T> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        let me = self.get_mut();
        if let Some(e) = me.deferred.take() {
            return Poll::Ready(Err(e));
        }
        let start = buf.filled().len();
        loop {
            let before = buf.filled().len();
            match Pin::new(&mut me.inner).poll_read(cx, buf) {
                Poll::Ready(Ok(())) if buf.filled().len() == before || buf.remaining() == 0 => return Poll::Ready(Ok(())),
                Poll::Ready(Ok(())) => continue,
                Poll::Ready(Err(e)) if buf.filled().len() > start => {
                    me.deferred = Some(e);
                    return Poll::Ready(Ok(()));
                }
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending if buf.filled().len() > start => return Poll::Ready(Ok(())),
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for AllAtHand<T> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, data)
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
    fn poll_write_vectored(self: Pin<&mut Self>, cx: &mut Context<'_>, bufs: &[std::io::IoSlice<'_>]) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// Shows every plaintext byte the client sends, in order, to the tunnel's
/// [`HeadTracker`](crate::policy::framing::HeadTracker) before hyper parses it, so that each
/// request can be checked against its head as it arrived.
pub struct HeadTap<T> {
    inner: T,
    heads: std::sync::Arc<std::sync::Mutex<crate::policy::framing::HeadTracker>>,
    /// The start of a head that has not ended yet, held back from hyper.
    held: Vec<u8>,
    /// Bytes released to hyper that did not fit its last read.
    out: bytes::Bytes,
    /// A head hyper cannot read arrived: from there on hyper reads the end of the stream (it
    /// finishes the responses it owes and stops), and the proxy answers that head itself.
    cut: bool,
}

impl<T> HeadTap<T> {
    pub fn new(inner: T, heads: std::sync::Arc<std::sync::Mutex<crate::policy::framing::HeadTracker>>) -> HeadTap<T> {
        HeadTap { inner, heads, held: Vec::new(), out: bytes::Bytes::new(), cut: false }
    }

    pub fn into_inner(self) -> T {
        self.inner
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for HeadTap<T> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        let me = self.get_mut();
        let start = buf.filled().len();
        loop {
            if !me.out.is_empty() {
                let n = me.out.len().min(buf.remaining());
                buf.put_slice(&me.out[..n]);
                bytes::Buf::advance(&mut me.out, n);
                return Poll::Ready(Ok(()));
            }
            if me.cut {
                return Poll::Ready(Ok(()));
            }
            std::task::ready!(Pin::new(&mut me.inner).poll_read(cx, buf))?;
            if buf.filled().len() == start {
                // The end of the stream: a head still held goes to hyper as it is (it then
                // sees an incomplete head and closes).
                if me.held.is_empty() {
                    return Poll::Ready(Ok(()));
                }
                me.out = std::mem::take(&mut me.held).into();
                continue;
            }
            let fed = me.heads.lock().expect("head tracker").feed(&buf.filled()[start..]);
            if let Some(at) = fed.cut_at {
                // The unreadable head's start, if held, is dropped with it: hyper never sees it.
                me.held = Vec::new();
                buf.set_filled(start + at);
                me.cut = true;
            } else if !me.held.is_empty() {
                // A head held back from earlier reads continues here; released once it ends.
                let end = fed.incomplete_from.map_or(buf.filled().len(), |k| if k == 0 { buf.filled().len() } else { start + k });
                me.held.extend_from_slice(&buf.filled()[start..end]);
                let rest = buf.filled()[end..].to_vec();
                buf.set_filled(start);
                if fed.incomplete_from != Some(0) {
                    me.out = std::mem::replace(&mut me.held, rest).into();
                }
            } else if let Some(k) = fed.incomplete_from {
                me.held = buf.filled()[start + k..].to_vec();
                buf.set_filled(start + k);
            }
            if buf.filled().len() > start {
                return Poll::Ready(Ok(()));
            }
        }
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for HeadTap<T> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, data)
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
    fn poll_write_vectored(self: Pin<&mut Self>, cx: &mut Context<'_>, bufs: &[std::io::IoSlice<'_>]) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::VecDeque;
    use tokio::io::AsyncReadExt;

    /// What a scripted reader does on each poll.
    enum Step {
        Data(&'static [u8]),
        Pending,
        Fail,
    }

    struct Script(VecDeque<Step>);

    impl AsyncRead for Script {
        fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
            match self.0.pop_front() {
                Some(Step::Data(d)) => {
                    buf.put_slice(d);
                    Poll::Ready(Ok(()))
                }
                Some(Step::Pending) => {
                    cx.waker().wake_by_ref();
                    Poll::Pending
                }
                Some(Step::Fail) => Poll::Ready(Err(std::io::Error::from(std::io::ErrorKind::ConnectionReset))),
                None => Poll::Ready(Ok(())),
            }
        }
    }

    #[tokio::test]
    async fn greedy_reads_on_until_pending_or_full_and_defers_errors() {
        use Step::*;
        let mut g = AllAtHand::new(Script(VecDeque::from([Data(b"ab"), Data(b"cd"), Pending, Data(b"ef"), Data(b"gh"), Fail])));
        let mut buf = [0u8; 64];
        // Two records at hand come back as one read; the Pending ends it without losing them.
        assert_eq!(g.read(&mut buf).await.unwrap(), 4);
        assert_eq!(&buf[..4], b"abcd");
        // A reset after data: the data first, the error on the next read.
        assert_eq!(g.read(&mut buf).await.unwrap(), 4);
        assert_eq!(&buf[..4], b"efgh");
        assert_eq!(g.read(&mut buf).await.unwrap_err().kind(), std::io::ErrorKind::ConnectionReset);
        // End of stream reads as 0.
        assert_eq!(g.read(&mut buf).await.unwrap(), 0);
        // A full buffer stops the loop: the rest stays in the inner reader.
        let mut g = AllAtHand::new(Script(VecDeque::from([Data(b"ab"), Data(b"cd")])));
        let mut small = [0u8; 2];
        assert_eq!(g.read(&mut small).await.unwrap(), 2);
        assert_eq!(g.read(&mut small).await.unwrap(), 2);
        assert_eq!(&small, b"cd");
    }

    /// Everything a HeadTap lets through, read to the end in 64-byte reads.
    async fn through_tap(steps: Vec<Step>) -> (Vec<u8>, Option<&'static str>) {
        let heads = std::sync::Arc::new(std::sync::Mutex::new(crate::policy::framing::HeadTracker::default()));
        let mut tap = HeadTap::new(Script(VecDeque::from(steps)), heads.clone());
        let mut all = Vec::new();
        let mut buf = [0u8; 64];
        loop {
            let n = tap.read(&mut buf).await.unwrap();
            if n == 0 {
                break;
            }
            // hyper never sees part of a head: each read ends at a head's end or in a body.
            all.extend_from_slice(&buf[..n]);
        }
        let unreadable = heads.lock().unwrap().unreadable();
        (all, unreadable)
    }

    #[tokio::test]
    async fn the_head_tap_holds_heads_back_until_they_end_and_cuts_unreadable_ones() {
        use Step::*;
        let (got, bad) = through_tap(vec![Data(b"GET / HT"), Pending, Data(b"TP/1.1\r\n\r\nGET /2 HTTP/1.1\r\n"), Data(b"\r\n")]).await;
        assert_eq!(got, b"GET / HTTP/1.1\r\n\r\nGET /2 HTTP/1.1\r\n\r\n");
        assert_eq!(bad, None);
        // A good request, then the start of a head that turns out not to be HTTP: hyper gets the
        // first and then the end of the stream, never the bad bytes.
        let (got, bad) = through_tap(vec![Data(b"PUT /a HTTP/1.1\r\nContent-Length: 2\r\n\r\nhiGET /b"), Data(b" \x01\x02\r\n\r\n"), Data(b"more")]).await;
        assert_eq!(got, b"PUT /a HTTP/1.1\r\nContent-Length: 2\r\n\r\nhi");
        assert!(bad.is_some());
        // A head cut short by the end of the stream is passed on as it is.
        let (got, _) = through_tap(vec![Data(b"GET /x HTTP/1.1\r\nHost: h")]).await;
        assert_eq!(got, b"GET /x HTTP/1.1\r\nHost: h");
    }
}
