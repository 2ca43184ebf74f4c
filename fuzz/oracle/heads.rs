//! The oracle of the inspected tunnel's request-head follower (`policy::framing::HeadTracker`):
//! request streams built from the shapes smuggling is made of (CL.TE, TE.CL, two lengths,
//! `chunked, identity`, obs-fold, `\x0b`, chunk sizes that overflow, names with spaces), then raw
//! edits, fed once whole and once cut into pieces at the fuzzer's choice.
//!
//! The follower must not depend on where TCP cut the stream: both feeds take the same heads
//! (same verdicts, same framing) and end in the same state (lost or not, unreadable
//! or not). A follower that reads a stream differently when it arrives in other pieces is one a
//! client can steer past hyper.
#![allow(dead_code)]

use arbitrary::Arbitrary;
use vpcgate::policy::framing::HeadTracker;

#[derive(Debug, Arbitrary)]
pub enum Header {
    ContentLength(u32),
    ContentLengthText(String),
    Chunked,
    TransferEncoding(u8),
    Host,
    ObsFold,
    VerticalTab,
    SpaceInName,
    Raw(String, String),
}

#[derive(Debug, Arbitrary)]
pub enum Body {
    None,
    Fixed(Vec<u8>),
    /// Chunks as (size written, bytes sent), then the last chunk unless `unterminated`.
    Chunks {
        chunks: Vec<(u8, Vec<u8>)>,
        odd_size: Option<u8>,
        unterminated: bool,
    },
    Raw(Vec<u8>),
}

#[derive(Debug, Arbitrary)]
pub struct Request {
    pub method: u8,
    pub target: u8,
    pub headers: Vec<Header>,
    pub body: Body,
}

#[derive(Debug, Arbitrary)]
pub struct Stream {
    pub requests: Vec<Request>,
    pub edits: Vec<(u16, u8)>,
    /// Piece sizes for the second feed (0 counts as 1); the last repeats.
    pub pieces: Vec<u16>,
}

const METHODS: [&str; 5] = ["GET", "PUT", "POST", "HEAD", "G\u{0}T"];
const TARGETS: [&str; 4] = ["/bucket/key", "/?uploads", "http://bucket.s3.amazonaws.com/k", "*"];
const TE: [&str; 6] = ["chunked, identity", "identity", "CHUNKED", " chunked", "chunked\x0b", "gzip, chunked"];
const ODD_SIZES: [&str; 6] = ["ffffffffffffffffff", "-1", "0x10", "1;ext=\"a\"", "1 ", ""];

impl Stream {
    pub fn render(&self) -> Vec<u8> {
        let mut out = Vec::new();
        for r in &self.requests {
            out.extend_from_slice(METHODS[r.method as usize % METHODS.len()].as_bytes());
            out.push(b' ');
            out.extend_from_slice(TARGETS[r.target as usize % TARGETS.len()].as_bytes());
            out.extend_from_slice(b" HTTP/1.1\r\n");
            for h in &r.headers {
                let line = match h {
                    Header::ContentLength(n) => format!("Content-Length: {}", n % 4096),
                    Header::ContentLengthText(t) => format!("Content-Length: {t}"),
                    Header::Chunked => "Transfer-Encoding: chunked".into(),
                    Header::TransferEncoding(i) => format!("Transfer-Encoding: {}", TE[*i as usize % TE.len()]),
                    Header::Host => "Host: bucket.s3.us-east-1.amazonaws.com".into(),
                    Header::ObsFold => "X-Folded: a\r\n b".into(),
                    Header::VerticalTab => "Content-Length:\x0b5".into(),
                    Header::SpaceInName => "Content-Length : 5".into(),
                    Header::Raw(n, v) => format!("{n}: {v}"),
                };
                out.extend_from_slice(line.as_bytes());
                out.extend_from_slice(b"\r\n");
            }
            out.extend_from_slice(b"\r\n");
            match &r.body {
                Body::None => {}
                Body::Fixed(b) | Body::Raw(b) => out.extend_from_slice(b),
                Body::Chunks { chunks, odd_size, unterminated } => {
                    for (size, bytes) in chunks {
                        out.extend_from_slice(format!("{size:x}\r\n").as_bytes());
                        out.extend_from_slice(bytes);
                        out.extend_from_slice(b"\r\n");
                    }
                    if let Some(k) = odd_size {
                        out.extend_from_slice(ODD_SIZES[*k as usize % ODD_SIZES.len()].as_bytes());
                        out.extend_from_slice(b"\r\n");
                    }
                    if !unterminated {
                        out.extend_from_slice(b"0\r\n\r\n");
                    }
                }
            }
        }
        for (at, b) in &self.edits {
            if !out.is_empty() {
                let i = usize::from(*at) % out.len();
                out[i] = *b;
            }
        }
        out
    }
}

/// What a follower made of a stream: every head taken, and its end state.
fn follow(stream: &[u8], pieces: &[u16]) -> String {
    let mut t = HeadTracker::default();
    let mut heads = Vec::new();
    let mut at = 0;
    let mut i = 0;
    while at < stream.len() {
        let size = pieces.get(i).or(pieces.last()).map(|s| usize::from(*s).max(1)).unwrap_or(stream.len());
        let end = (at + size).min(stream.len());
        let fed = t.feed(&stream[at..end]);
        for off in [fed.cut_at, fed.incomplete_from].into_iter().flatten() {
            assert!(off <= end - at, "an offset {off} past the {} bytes fed", end - at);
        }
        while let Some(h) = t.take() {
            heads.push(h);
        }
        // Once a head is unreadable the rest of the stream is not for hyper: stop as the proxy does.
        if t.unreadable().is_some() {
            break;
        }
        at = end;
        i += 1;
    }
    // The pairing fingerprint is keyed per tracker, so two trackers' differ: compare the rest.
    let heads: Vec<String> = heads.iter().map(|h| format!("{:?}/{}", h.framing, h.chunked)).collect();
    format!("{heads:?} lost={:?} unreadable={:?}", t.lost(), t.unreadable())
}

pub fn check_stream(input: &Stream) {
    let bytes = input.render();
    let whole = follow(&bytes, &[]);
    let cut = follow(&bytes, &input.pieces);
    assert_eq!(whole, cut, "the follower reads the stream differently when it arrives in pieces: {}", bytes.escape_ascii());
    let bytewise = follow(&bytes[..bytes.len().min(2048)], &[1]);
    let whole_prefix = follow(&bytes[..bytes.len().min(2048)], &[]);
    assert_eq!(whole_prefix, bytewise, "the follower reads the stream differently a byte at a time: {}", bytes[..bytes.len().min(2048)].escape_ascii());
}
