//! A minimal HTTP/1.1 reader/writer over any byte stream, for the load generator (responses) and
//! the upstream (requests). Only what the benchmark needs: Content-Length and chunked bodies,
//! bodies counted and discarded.

use crate::R;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

pub fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// `GET /bytes/N` for `host`, keep-alive.
pub fn get_request(host: &str, size: u64) -> Vec<u8> {
    format!("GET /bytes/{size} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: vpcgate-bench\r\nAccept: */*\r\n\r\n").into_bytes()
}

pub fn put_request(host: &str, size: u64) -> Vec<u8> {
    format!("PUT /sink HTTP/1.1\r\nHost: {host}\r\nUser-Agent: vpcgate-bench\r\nContent-Length: {size}\r\n\r\n").into_bytes()
}

/// A parsed message head.
pub struct Head {
    /// Request: method and target; response: status code in `status`.
    pub first: Vec<String>,
    pub status: u16,
    pub content_length: Option<u64>,
    pub chunked: bool,
    pub close: bool,
    pub reason_header: Option<String>,
}

pub fn parse_head(raw: &[u8]) -> R<Head> {
    let text = std::str::from_utf8(raw).map_err(|_| "message head is not UTF-8".to_string())?;
    let mut lines = text.split("\r\n");
    let first: Vec<String> = lines.next().unwrap_or("").split(' ').map(|s| s.to_string()).collect();
    let status = first.get(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    let mut h = Head { first, status, content_length: None, chunked: false, close: false, reason_header: None };
    for l in lines {
        let Some((k, v)) = l.split_once(':') else { continue };
        let v = v.trim();
        if k.eq_ignore_ascii_case("content-length") {
            h.content_length = Some(v.parse().map_err(|_| format!("bad Content-Length {v:?}"))?);
        } else if k.eq_ignore_ascii_case("transfer-encoding") {
            h.chunked = v.to_ascii_lowercase().ends_with("chunked");
        } else if k.eq_ignore_ascii_case("connection") {
            h.close = v.eq_ignore_ascii_case("close");
        } else if k.eq_ignore_ascii_case("x-vpcgate-reason") {
            h.reason_header = Some(v.to_string());
        }
    }
    Ok(h)
}

/// A stream with a read buffer.
pub struct Conn<S> {
    pub io: S,
    buf: Vec<u8>,
    start: usize,
    end: usize,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Conn<S> {
    pub fn new(io: S, cap: usize) -> Conn<S> {
        Conn { io, buf: vec![0u8; cap], start: 0, end: 0 }
    }

    /// Read more bytes after the buffered ones; 0 at EOF.
    async fn fill(&mut self) -> R<usize> {
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        } else if self.end == self.buf.len() {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
            if self.end == self.buf.len() {
                return Err("message head larger than the read buffer".into());
            }
        }
        let n = self.io.read(&mut self.buf[self.end..]).await.map_err(|e| format!("read: {e}"))?;
        self.end += n;
        Ok(n)
    }

    /// The next message head, or None at a clean EOF before any byte of it.
    pub async fn read_head(&mut self) -> R<Option<Head>> {
        loop {
            if let Some(p) = find(&self.buf[self.start..self.end], b"\r\n\r\n") {
                let head = parse_head(&self.buf[self.start..self.start + p])?;
                self.start += p + 4;
                return Ok(Some(head));
            }
            if self.fill().await? == 0 {
                return if self.start == self.end { Ok(None) } else { Err("EOF inside a message head".into()) };
            }
        }
    }

    /// Consume and discard `n` body bytes.
    async fn skip(&mut self, mut n: u64) -> R<()> {
        loop {
            let have = ((self.end - self.start) as u64).min(n);
            self.start += have as usize;
            n -= have;
            if n == 0 {
                return Ok(());
            }
            if self.fill().await? == 0 {
                return Err(format!("EOF with {n} body bytes missing"));
            }
        }
    }

    async fn line(&mut self) -> R<String> {
        loop {
            if let Some(p) = find(&self.buf[self.start..self.end], b"\r\n") {
                let l = String::from_utf8_lossy(&self.buf[self.start..self.start + p]).to_string();
                self.start += p + 2;
                return Ok(l);
            }
            if self.fill().await? == 0 {
                return Err("EOF inside a chunk header".into());
            }
        }
    }

    /// Discard the body described by `head`; returns its length.
    pub async fn skip_body(&mut self, head: &Head) -> R<u64> {
        if head.chunked {
            let mut total = 0;
            loop {
                let l = self.line().await?;
                let size = u64::from_str_radix(l.split(';').next().unwrap_or("").trim(), 16).map_err(|_| format!("bad chunk size {l:?}"))?;
                if size == 0 {
                    while !self.line().await?.is_empty() {}
                    return Ok(total);
                }
                self.skip(size).await?;
                self.line().await?;
                total += size;
            }
        }
        let n = head.content_length.unwrap_or(0);
        self.skip(n).await?;
        Ok(n)
    }

    /// Send a request (already serialised) and read its response to the end; returns the body
    /// length. A status other than 200 is an error naming vpcgate's reason when it gave one.
    pub async fn exchange(&mut self, request: &[u8]) -> R<u64> {
        self.io.write_all(request).await.map_err(|e| format!("write: {e}"))?;
        self.io.flush().await.map_err(|e| format!("flush: {e}"))?;
        let head = self.read_head().await?.ok_or("connection closed before a response")?;
        if head.status != 200 {
            return Err(format!("HTTP {} {}", head.status, head.reason_header.unwrap_or_default()));
        }
        self.skip_body(&head).await
    }
}
