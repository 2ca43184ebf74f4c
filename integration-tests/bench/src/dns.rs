//! A minimal authoritative DNS responder (UDP and TCP on one address): `A` for the zone apex and
//! every name under it, pointing at the upstream; NODATA for other types of those names; NXDOMAIN
//! for everything else. Queries with compression pointers, several questions or another opcode
//! get FORMERR/NOTIMP. The answer TTL is long so vpcgate's resolver cache stays warm in a cell.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, UdpSocket};

const TTL: u32 = 300;
const TYPE_A: u16 = 1;
const CLASS_IN: u16 = 1;

pub struct Zone {
    pub suffix: String,
    pub answer: Ipv4Addr,
}

fn u16_at(b: &[u8], i: usize) -> u16 {
    u16::from_be_bytes([b[i], b[i + 1]])
}

/// The reply to one query message, or None when it is not a query worth answering.
pub fn respond(q: &[u8], zone: &Zone) -> Option<Vec<u8>> {
    if q.len() < 12 {
        return None;
    }
    let flags = u16_at(q, 2);
    if flags & 0x8000 != 0 {
        return None; // a response, not a query
    }
    let opcode = (flags >> 11) & 0xf;
    let header = |rcode: u16, qd: u16, an: u16| {
        let f = 0x8000 | (opcode << 11) | 0x0400 | (flags & 0x0100) | 0x0080 | rcode;
        let mut h = Vec::with_capacity(512);
        h.extend_from_slice(&q[0..2]);
        for v in [f, qd, an, 0, 0] {
            h.extend_from_slice(&v.to_be_bytes());
        }
        h
    };
    if opcode != 0 {
        return Some(header(4, 0, 0)); // NOTIMP
    }
    if u16_at(q, 4) != 1 {
        return Some(header(1, 0, 0)); // FORMERR
    }
    // QNAME: uncompressed labels.
    let mut i = 12;
    let mut name = String::new();
    loop {
        let len = *q.get(i)? as usize;
        if len == 0 {
            i += 1;
            break;
        }
        if len & 0xc0 != 0 || i + 1 + len > q.len() || name.len() > 255 {
            return Some(header(1, 0, 0));
        }
        if !name.is_empty() {
            name.push('.');
        }
        name.push_str(&String::from_utf8_lossy(&q[i + 1..i + 1 + len]).to_ascii_lowercase());
        i += 1 + len;
    }
    if i + 4 > q.len() {
        return Some(header(1, 0, 0));
    }
    let (qtype, qclass) = (u16_at(q, i), u16_at(q, i + 2));
    let question = &q[12..i + 4];
    let in_zone = name == zone.suffix || name.ends_with(&format!(".{}", zone.suffix));
    let answer = in_zone && qtype == TYPE_A && qclass == CLASS_IN;
    let mut out = header(if in_zone { 0 } else { 3 }, 1, answer as u16);
    out.extend_from_slice(question);
    if answer {
        out.extend_from_slice(&[0xc0, 0x0c]); // the question's name
        out.extend_from_slice(&TYPE_A.to_be_bytes());
        out.extend_from_slice(&CLASS_IN.to_be_bytes());
        out.extend_from_slice(&TTL.to_be_bytes());
        out.extend_from_slice(&4u16.to_be_bytes());
        out.extend_from_slice(&zone.answer.octets());
    }
    Some(out)
}

pub async fn serve(addr: SocketAddr, zone: Arc<Zone>) -> crate::R<()> {
    let udp = UdpSocket::bind(addr).await.map_err(|e| format!("DNS: cannot bind UDP {addr} ({e})"))?;
    let tcp = TcpListener::bind(addr).await.map_err(|e| format!("DNS: cannot bind TCP {addr} ({e})"))?;
    let tzone = zone.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = tcp.accept().await else { continue };
            let zone = tzone.clone();
            tokio::spawn(async move {
                loop {
                    let mut len = [0u8; 2];
                    if s.read_exact(&mut len).await.is_err() {
                        return;
                    }
                    let mut msg = vec![0u8; u16::from_be_bytes(len) as usize];
                    if s.read_exact(&mut msg).await.is_err() {
                        return;
                    }
                    let Some(r) = respond(&msg, &zone) else { return };
                    let mut framed = (r.len() as u16).to_be_bytes().to_vec();
                    framed.extend_from_slice(&r);
                    if s.write_all(&framed).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    tokio::spawn(async move {
        let mut buf = vec![0u8; 4096];
        loop {
            let Ok((n, peer)) = udp.recv_from(&mut buf).await else { continue };
            if let Some(r) = respond(&buf[..n], &zone) {
                let _ = udp.send_to(&r, peer).await;
            }
        }
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(name: &str, qtype: u16) -> Vec<u8> {
        let mut q = vec![0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
        for l in name.split('.') {
            q.push(l.len() as u8);
            q.extend_from_slice(l.as_bytes());
        }
        q.push(0);
        q.extend_from_slice(&qtype.to_be_bytes());
        q.extend_from_slice(&1u16.to_be_bytes());
        q
    }

    #[test]
    fn answers_a_in_zone_only() {
        let z = Zone { suffix: "s3.us-east-1.amazonaws.com".into(), answer: Ipv4Addr::new(127, 77, 0, 1) };
        let r = respond(&query("B0001.s3.us-east-1.amazonaws.com", 1), &z).unwrap();
        assert_eq!(&r[0..2], &[0x12, 0x34]);
        assert_eq!(r[3] & 0xf, 0);
        assert_eq!(u16_at(&r, 6), 1);
        assert_eq!(&r[r.len() - 4..], &[127, 77, 0, 1]);
        let r = respond(&query("b.s3.us-east-1.amazonaws.com", 28), &z).unwrap();
        assert_eq!((r[3] & 0xf, u16_at(&r, 6)), (0, 0));
        let r = respond(&query("example.com", 1), &z).unwrap();
        assert_eq!((r[3] & 0xf, u16_at(&r, 6)), (3, 0));
    }
}
