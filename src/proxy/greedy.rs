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
pub struct Greedy<T> {
    inner: T,
    /// An error met after some bytes were already returned, given on the next read.
    deferred: Option<std::io::Error>,
}

impl<T> Greedy<T> {
    pub fn new(inner: T) -> Greedy<T> {
        Greedy {
            inner,
            deferred: None,
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Greedy<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let me = self.get_mut();
        if let Some(e) = me.deferred.take() {
            return Poll::Ready(Err(e));
        }
        let start = buf.filled().len();
        loop {
            let before = buf.filled().len();
            match Pin::new(&mut me.inner).poll_read(cx, buf) {
                Poll::Ready(Ok(())) if buf.filled().len() == before || buf.remaining() == 0 => {
                    return Poll::Ready(Ok(()))
                }
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

impl<T: AsyncWrite + Unpin> AsyncWrite for Greedy<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, data)
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
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
}

impl<T> HeadTap<T> {
    pub fn new(inner: T, heads: std::sync::Arc<std::sync::Mutex<crate::policy::framing::HeadTracker>>) -> HeadTap<T> {
        HeadTap { inner, heads }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for HeadTap<T> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        let me = self.get_mut();
        let start = buf.filled().len();
        let polled = Pin::new(&mut me.inner).poll_read(cx, buf);
        if buf.filled().len() > start {
            me.heads.lock().expect("head tracker").feed(&buf.filled()[start..]);
        }
        polled
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
        let mut g = Greedy::new(Script(VecDeque::from([Data(b"ab"), Data(b"cd"), Pending, Data(b"ef"), Data(b"gh"), Fail])));
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
        let mut g = Greedy::new(Script(VecDeque::from([Data(b"ab"), Data(b"cd")])));
        let mut small = [0u8; 2];
        assert_eq!(g.read(&mut small).await.unwrap(), 2);
        assert_eq!(g.read(&mut small).await.unwrap(), 2);
        assert_eq!(&small, b"cd");
    }
}
