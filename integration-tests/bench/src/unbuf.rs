//! The bulk client: rustls's unbuffered API, which decrypts records in place in our own large
//! read buffer. The buffered API (tokio-rustls) reads 4 KiB per syscall and copies every record
//! twice more; at 1 GiB that made the load generator, not the setup under test, the bottleneck.
//! Only what `bulk` and `upload` need: handshake, send a request (and stream its body), read a
//! Content-Length response.

use crate::http::{find, parse_head};
use crate::R;
use rustls::client::UnbufferedClientConnection;
use rustls::pki_types::ServerName;
use rustls::unbuffered::{ConnectionState, EncodeError, EncryptError, UnbufferedStatus};
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const READ_BUF: usize = 512 * 1024;
/// What an upload sends, over and over: encrypted in 256 KiB slices (16 records per write).
static UPLOAD_SRC: [u8; 256 * 1024] = [b'u'; 256 * 1024];

pub struct Unbuf {
    conn: UnbufferedClientConnection,
    tcp: TcpStream,
    inb: Vec<u8>,
    in_used: usize,
    outb: Vec<u8>,
}

/// Counts one HTTP/1.1 response with a Content-Length as it streams by.
struct Response {
    head: Vec<u8>,
    remaining: Option<u64>,
    body: u64,
}

impl Response {
    /// Feed plaintext; true once the whole response has been seen.
    fn feed(&mut self, mut data: &[u8]) -> R<bool> {
        if self.remaining.is_none() {
            let before = self.head.len();
            self.head.extend_from_slice(data);
            let Some(p) = find(&self.head, b"\r\n\r\n") else { return Ok(false) };
            let h = parse_head(&self.head[..p])?;
            if h.status != 200 {
                return Err(format!("HTTP {} {}", h.status, h.reason_header.unwrap_or_default()));
            }
            let len = h.content_length.ok_or("the bulk client needs a Content-Length response")?;
            self.remaining = Some(len);
            data = &data[(p + 4 - before).min(data.len())..];
        }
        let rem = self.remaining.as_mut().expect("set above");
        if data.len() as u64 > *rem {
            return Err("bytes after the response body".into());
        }
        *rem -= data.len() as u64;
        self.body += data.len() as u64;
        Ok(*rem == 0)
    }
}

enum Goal<'a> {
    Handshake,
    /// Send `request`, then `body` bytes (from a static buffer), then read one response.
    Exchange {
        request: Option<&'a [u8]>,
        body: u64,
        response: &'a mut Response,
    },
    Close,
}

impl Unbuf {
    pub async fn connect(tcp: TcpStream, cfg: Arc<rustls::ClientConfig>, host: &str) -> R<Unbuf> {
        let name = ServerName::try_from(host.to_string()).map_err(|e| format!("{host}: {e}"))?;
        let conn = UnbufferedClientConnection::new(cfg, name).map_err(|e| e.to_string())?;
        let mut u = Unbuf { conn, tcp, inb: vec![0; READ_BUF], in_used: 0, outb: vec![0; 16 * 1024] };
        u.drive(Goal::Handshake).await?;
        Ok(u)
    }

    /// Send `request`, read its response to the end; returns the body length.
    pub async fn exchange(&mut self, request: &[u8]) -> R<u64> {
        let mut response = Response { head: Vec::new(), remaining: None, body: 0 };
        self.drive(Goal::Exchange { request: Some(request), body: 0, response: &mut response }).await?;
        Ok(response.body)
    }

    /// Send a request head that announces `body` bytes, stream them, then read its response to the
    /// end; returns the response's body length.
    pub async fn upload(&mut self, head: &[u8], body: u64) -> R<u64> {
        let mut response = Response { head: Vec::new(), remaining: None, body: 0 };
        self.drive(Goal::Exchange { request: Some(head), body, response: &mut response }).await?;
        Ok(response.body)
    }

    /// close_notify, then FIN.
    pub async fn close(mut self) {
        let _ = self.drive(Goal::Close).await;
        let _ = self.tcp.shutdown().await;
    }

    async fn drive(&mut self, mut goal: Goal<'_>) -> R<()> {
        let Unbuf { conn, tcp, inb, in_used, outb } = self;
        // Handshake records are gathered here and sent at TransmitTlsData.
        let mut out_used = 0;
        loop {
            let UnbufferedStatus { mut discard, state } = conn.process_tls_records(&mut inb[..*in_used]);
            let mut read_more = false;
            let mut done = false;
            match state.map_err(|e| format!("TLS: {e}"))? {
                ConnectionState::EncodeTlsData(mut e) => loop {
                    match e.encode(&mut outb[out_used..]) {
                        Ok(n) => {
                            out_used += n;
                            break;
                        }
                        Err(EncodeError::InsufficientSize(s)) => outb.resize(out_used + s.required_size, 0),
                        Err(e) => return Err(format!("TLS encode: {e}")),
                    }
                },
                ConnectionState::TransmitTlsData(t) => {
                    tcp.write_all(&outb[..out_used]).await.map_err(|e| format!("write: {e}"))?;
                    out_used = 0;
                    t.done();
                }
                ConnectionState::BlockedHandshake => read_more = true,
                ConnectionState::WriteTraffic(mut w) => match &mut goal {
                    Goal::Handshake => done = true,
                    Goal::Exchange { request, body, .. } if request.is_some() || *body > 0 => {
                        let data = match request.take() {
                            Some(r) => r,
                            None => {
                                let k = (*body).min(UPLOAD_SRC.len() as u64);
                                *body -= k;
                                &UPLOAD_SRC[..k as usize]
                            }
                        };
                        let n = loop {
                            match w.encrypt(data, outb) {
                                Ok(n) => break n,
                                Err(EncryptError::InsufficientSize(s)) => outb.resize(s.required_size, 0),
                                Err(e) => return Err(format!("TLS encrypt: {e}")),
                            }
                        };
                        tcp.write_all(&outb[..n]).await.map_err(|e| format!("write: {e}"))?;
                    }
                    Goal::Exchange { .. } => read_more = true,
                    Goal::Close => {
                        let n = w.queue_close_notify(outb).map_err(|e| format!("TLS close: {e}"))?;
                        tcp.write_all(&outb[..n]).await.map_err(|e| format!("write: {e}"))?;
                        done = true;
                    }
                },
                ConnectionState::ReadTraffic(mut r) => {
                    while let Some(rec) = r.next_record() {
                        let rec = rec.map_err(|e| format!("TLS: {e}"))?;
                        discard += rec.discard;
                        match &mut goal {
                            Goal::Exchange { response, .. } => {
                                if response.feed(rec.payload)? {
                                    done = true;
                                    break;
                                }
                            }
                            _ => return Err("application data outside an exchange".into()),
                        }
                    }
                }
                ConnectionState::PeerClosed | ConnectionState::Closed => {
                    if matches!(goal, Goal::Close) {
                        done = true;
                    } else {
                        return Err("the peer closed the TLS connection".into());
                    }
                }
                other => return Err(format!("unexpected TLS state {other:?}")),
            }
            if discard > 0 {
                inb.copy_within(discard..*in_used, 0);
                *in_used -= discard;
            }
            if done {
                return Ok(());
            }
            if read_more {
                if *in_used == inb.len() {
                    inb.resize(inb.len() * 2, 0);
                }
                let n = tcp.read(&mut inb[*in_used..]).await.map_err(|e| format!("read: {e}"))?;
                if n == 0 {
                    return Err("EOF from the peer".into());
                }
                *in_used += n;
            }
        }
    }
}
