//! The client's socket after the CONNECT, as inspect mode reads it.

use bytes::Bytes;
use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;
use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

/// Most bytes taken from the client's socket in one receive (inspect mode).
pub const CLIENT_READ_BUF: usize = 64 * 1024;

/// The client's socket after the CONNECT: the TCP stream itself (with any bytes hyper read past the
/// CONNECT head served first), or hyper's upgraded IO when it is something else.
pub enum ClientStream {
    /// `bulk`: the last read filled the caller's buffer, so reads go through a larger buffer.
    Tcp {
        pre: Bytes,
        tcp: TcpStream,
        bulk: bool,
    },
    Other(TokioIo<Upgraded>),
}

impl ClientStream {
    /// The socket to wait on for the next bytes, when none are buffered here.
    pub fn wait_on(&self) -> Option<&TcpStream> {
        match self {
            ClientStream::Tcp { pre, tcp, .. } if pre.is_empty() => Some(tcp),
            _ => None,
        }
    }
}

impl AsyncRead for ClientStream {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut tokio::io::ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        match &mut *self {
            ClientStream::Tcp { pre, tcp, bulk } => {
                if pre.is_empty() {
                    // Small reads go straight into the caller's buffer. rustls asks for 4-16 KiB
                    // at a time, so once a read fills it (an upload), receive up to
                    // CLIENT_READ_BUF per syscall into a buffer of our own until reads are small again.
                    if !*bulk || buf.remaining() >= CLIENT_READ_BUF {
                        let before = buf.remaining();
                        std::task::ready!(Pin::new(tcp).poll_read(cx, buf))?;
                        *bulk = before > 0 && buf.remaining() == 0;
                        return Poll::Ready(Ok(()));
                    }
                    // Readiness first, so that a waiting tunnel holds no buffer.
                    std::task::ready!(tcp.poll_read_ready(cx))?;
                    let mut chunk = bytes::BytesMut::with_capacity(CLIENT_READ_BUF);
                    let n = std::task::ready!(tokio_util::io::poll_read_buf(Pin::new(tcp), cx, &mut chunk))?;
                    *bulk = n >= CLIENT_READ_BUF / 4;
                    if n == 0 {
                        return Poll::Ready(Ok(()));
                    }
                    *pre = chunk.freeze();
                }
                let n = pre.len().min(buf.remaining());
                buf.put_slice(&pre[..n]);
                bytes::Buf::advance(pre, n);
                if pre.is_empty() {
                    // Drop the emptied buffer now rather than with the next one.
                    *pre = Bytes::new();
                }
                Poll::Ready(Ok(()))
            }
            ClientStream::Other(io) => Pin::new(io).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for ClientStream {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<std::io::Result<usize>> {
        match &mut *self {
            ClientStream::Tcp { tcp, .. } => Pin::new(tcp).poll_write(cx, data),
            ClientStream::Other(io) => Pin::new(io).poll_write(cx, data),
        }
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match &mut *self {
            ClientStream::Tcp { tcp, .. } => Pin::new(tcp).poll_flush(cx),
            ClientStream::Other(io) => Pin::new(io).poll_flush(cx),
        }
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match &mut *self {
            ClientStream::Tcp { tcp, .. } => Pin::new(tcp).poll_shutdown(cx),
            ClientStream::Other(io) => Pin::new(io).poll_shutdown(cx),
        }
    }
    fn poll_write_vectored(mut self: Pin<&mut Self>, cx: &mut Context<'_>, bufs: &[std::io::IoSlice<'_>]) -> Poll<std::io::Result<usize>> {
        match &mut *self {
            ClientStream::Tcp { tcp, .. } => Pin::new(tcp).poll_write_vectored(cx, bufs),
            ClientStream::Other(io) => Pin::new(io).poll_write_vectored(cx, bufs),
        }
    }
    fn is_write_vectored(&self) -> bool {
        match self {
            ClientStream::Tcp { tcp, .. } => tcp.is_write_vectored(),
            ClientStream::Other(io) => io.is_write_vectored(),
        }
    }
}
