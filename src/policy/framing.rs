//! The request heads of an inspected tunnel as they arrived, before hyper reads them.
//!
//! hyper parses each head into a header map and, doing so, changes it: with both
//! `Content-Length` and `Transfer-Encoding` it drops the length (RFC 9112 §6.3) before any check
//! can see it. vpcgate promises to refuse that pair, so it follows the plaintext stream itself:
//! it finds each head with the same parser hyper uses (httparse), judges its raw framing lines
//! there ([`check_framing`]), and skips the body by the framing hyper will use, to find the next
//! head. The proxy pairs each judged head with the request hyper hands it (same method and
//! target) and refuses a request whose head it could not pair: it never guesses which head a
//! request came from. Nothing is allocated per request: a head is kept as its verdict and a keyed
//! hash of its method and target.
//!
//! Pure: bytes in, heads out.

use crate::policy::request::{check_framing, RequestDeny};
use std::collections::VecDeque;
use std::hash::{BuildHasher, Hash, Hasher};

/// The most bytes a request head may take (S3 itself limits a request's headers to 8 KiB).
pub const MAX_HEAD: usize = 32 * 1024;
/// As many header lines as hyper reads by default.
const MAX_HEADERS: usize = 100;

/// One request head as it arrived, judged before hyper could change it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawHead {
    /// [`check_framing`] on the raw `Content-Length` and `Transfer-Encoding` lines.
    pub framing: Result<(), RequestDeny>,
    /// It had a `Transfer-Encoding` (so hyper reads a chunked body).
    pub chunked: bool,
    /// The keyed hash of its method and target, to pair it with hyper's request.
    fingerprint: u64,
}

/// What one [`HeadTracker::feed`] found in its bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Fed {
    /// A head hyper could not read either (not HTTP, over `MAX_HEAD`) begins here (0 when it
    /// began in an earlier feed): the bytes from here on are not for hyper, which would answer
    /// them with a bare 400 or 431; the proxy answers that head itself ([`HeadTracker::unreadable`]).
    pub cut_at: Option<usize>,
    /// A head that has not ended yet begins here (0 when it began in an earlier feed): held back
    /// from hyper until it ends, so that a head cut later was never partly read by hyper.
    pub incomplete_from: Option<usize>,
}

/// Where the stream is.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Phase {
    /// Between requests or inside a head (its bytes so far are in `pending`).
    Head,
    /// Inside a body of a known length: this many bytes to go.
    Fixed(u64),
    Chunked(Chunk),
    /// The stream can no longer be followed (a head or chunk hyper refuses too, a head over
    /// `MAX_HEAD`): no more heads are recorded, so any later request is unpaired and refused.
    Lost(&'static str),
}

/// The chunked-body states (RFC 9112 §7.1), byte for byte as hyper 1.12's decoder reads them
/// (`proto/h1/decode.rs`): where the two differed, hyper found a head where this saw a body or
/// the other way round, and a request was judged by another's head.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Chunk {
    /// Hex digits of a chunk size; `digits` read so far.
    Size {
        value: u64,
        digits: u8,
    },
    /// Spaces or tabs after the size, then `;` extensions or CR.
    SizeRest {
        value: u64,
        ext: bool,
    },
    SizeLf(u64),
    Data(u64),
    DataCr,
    DataLf,
    /// At the start of a trailer line (after the last chunk): CR ends the trailers, anything
    /// else (a bare LF too, as hyper reads it) begins a line.
    TrailerStart,
    /// Inside a trailer line: only CR (then LF) ends it; a bare LF is part of it.
    TrailerLine,
    TrailerLf,
    EndLf,
}

/// Follows one tunnel's plaintext from the client.
#[derive(Debug)]
pub struct HeadTracker {
    phase: Phase,
    /// A head that has not ended yet (empty between requests: an idle tunnel holds nothing).
    pending: Vec<u8>,
    heads: VecDeque<RawHead>,
    /// Set when the stream was cut at a head that is not HTTP or too large, or whose framing
    /// vpcgate refuses.
    unreadable: Option<&'static str>,
    /// The refusal of the head the stream was cut at, when it was its framing.
    refused: Option<RequestDeny>,
    /// Keys of this tunnel's fingerprints (random per tracker, so a client cannot aim for a
    /// collision between two of its own heads).
    keys: std::collections::hash_map::RandomState,
}

impl Default for HeadTracker {
    fn default() -> Self {
        HeadTracker { phase: Phase::Head, pending: Vec::new(), heads: VecDeque::new(), unreadable: None, refused: None, keys: Default::default() }
    }
}

/// How many leading bytes of `data` are whole empty lines (`\r\n` or `\n`).
fn blank_lines(data: &[u8]) -> usize {
    let mut i = 0;
    loop {
        match data.get(i..) {
            Some([b'\n', ..]) => i += 1,
            Some([b'\r', b'\n', ..]) => i += 2,
            _ => return i,
        }
    }
}

impl HeadTracker {
    /// The next bytes from the client, in order.
    pub fn feed(&mut self, data: &[u8]) -> Fed {
        let mut at = 0;
        let mut began = 0;
        while at < data.len() {
            let rest = &data[at..];
            let used = match self.phase.clone() {
                Phase::Lost(_) => return Fed::default(),
                Phase::Head => {
                    began = if self.pending.is_empty() { at } else { 0 };
                    let used = self.head(rest);
                    if let Phase::Lost(why) = self.phase {
                        self.unreadable = Some(why);
                        return Fed { cut_at: Some(began), incomplete_from: None };
                    }
                    used
                }
                Phase::Fixed(left) => {
                    let n = left.min(rest.len() as u64);
                    self.phase = if n == left { Phase::Head } else { Phase::Fixed(left - n) };
                    n as usize
                }
                Phase::Chunked(c) => self.chunk(c, rest),
            };
            at += used;
        }
        let incomplete = self.phase == Phase::Head && !self.pending.is_empty();
        Fed { cut_at: None, incomplete_from: incomplete.then_some(began) }
    }

    /// Why a head could not be read, once one could not (the stream is cut there).
    pub fn unreadable(&self) -> Option<&'static str> {
        self.unreadable
    }

    /// The answer the head the stream was cut at gets: its framing refusal, or that it could not
    /// be read.
    pub fn refusal(&self) -> Option<RequestDeny> {
        self.refused.clone().or_else(|| self.unreadable.map(|what| RequestDeny::HeadUnpaired { what }))
    }

    /// The oldest head not yet taken.
    pub fn take(&mut self) -> Option<RawHead> {
        self.heads.pop_front()
    }

    /// Whether `head` is the head of the request hyper read as `method` and `target`.
    pub fn pairs(&self, head: &RawHead, method: &str, target: &str) -> bool {
        head.fingerprint == self.fingerprint(method.as_bytes(), target.as_bytes())
    }

    fn fingerprint(&self, method: &[u8], target: &[u8]) -> u64 {
        let mut h = self.keys.build_hasher();
        method.hash(&mut h);
        target.hash(&mut h);
        h.finish()
    }

    /// Why the stream could not be followed, once it could not.
    pub fn lost(&self) -> Option<&'static str> {
        match self.phase {
            Phase::Lost(why) => Some(why),
            _ => None,
        }
    }

    /// Head bytes; returns how many of `data` were used.
    fn head(&mut self, data: &[u8]) -> usize {
        // Empty lines between requests (httparse and hyper skip them) begin no head: used up
        // here, never parsed or held, however many arrive. An empty line is `\r\n` or `\n`, as
        // httparse reads them: a `\r` not followed by `\n` is an error there, so a lone `\r` at
        // the end of these bytes is held like the start of a head, to be judged with what comes
        // next (fuzz/oracle/heads.rs found the follower skipping it when it arrived alone).
        // They are used up before a head is looked for, so that the blank line a head ends with
        // is never one of them (fuzz/oracle/heads.rs again: `\r\n\r\n1;x\r\n` looked like an
        // ended head when it arrived together, not when the empty lines came first).
        if self.pending.is_empty() {
            let blank = blank_lines(data);
            if blank > 0 {
                return blank;
            }
        }
        // The held lone `\r` and this `\n` are an empty line after all: used up like the others,
        // so held bytes never begin with an empty line. (Held, they looked like a head's end to
        // the scan below, and httparse then judged a half-sent bad head at once where the whole
        // stream held it: fuzz/corpus/heads/found-blank-lines-then-a-bad-token.)
        if self.pending == b"\r" && data.first() == Some(&b'\n') {
            self.pending.clear();
            return 1;
        }
        // Parse only once a blank line may have arrived, so a head sent a byte at a time costs
        // one parse per line end, not one per byte.
        let tail_start = self.pending.len().saturating_sub(2);
        let before = self.pending.len();
        let (buf, from_pending): (&[u8], bool) = if self.pending.is_empty() {
            (data, false)
        } else {
            self.pending.extend_from_slice(data);
            (&self.pending[..], true)
        };
        let scan = &buf[if from_pending { tail_start } else { 0 }..];
        let may_end = memchr::memmem::find(scan, b"\n\n").is_some() || memchr::memmem::find(scan, b"\n\r\n").is_some();
        // Uninitialised slots, as hyper parses: no 3 KiB to clear per request.
        let mut headers = [const { std::mem::MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
        let mut req = httparse::Request::new(&mut []);
        let parsed = if may_end { req.parse_with_uninit_headers(buf, &mut headers) } else { Ok(httparse::Status::Partial) };
        match parsed {
            Ok(httparse::Status::Complete(len)) if len > MAX_HEAD => {
                self.pending = Vec::new();
                self.phase = Phase::Lost("a request head over 32 KiB");
                data.len()
            }
            Ok(httparse::Status::Complete(len)) => {
                let headers: &[httparse::Header<'_>] = req.headers;
                let lines = |name: &'static str| headers.iter().filter(move |h| h.name.eq_ignore_ascii_case(name)).map(|h| h.value);
                // At most a few of each, on the stack: more is refused by the check anyway.
                let mut cl: [&[u8]; 4] = [&[]; 4];
                let mut te: [&[u8]; 4] = [&[]; 4];
                let (ncl, nte) = (fill(&mut cl, lines("content-length")), fill(&mut te, lines("transfer-encoding")));
                let framing = if ncl > cl.len() || nte > te.len() {
                    Err(RequestDeny::Smuggling { what: "more than four Content-Length or Transfer-Encoding lines" })
                } else {
                    check_framing(&cl[..ncl], &te[..nte])
                };
                // A head whose framing is refused never reaches hyper: hyper would refuse some of
                // these itself with a bare 400 (two lengths, `chunked, identity`) and read others
                // its own way (it drops the length beside a Transfer-Encoding). The stream is cut
                // here, and the proxy answers the head with its refusal.
                if let Err(deny) = framing {
                    self.refused = Some(deny);
                    self.pending = Vec::new();
                    self.phase = Phase::Lost("a request head whose framing vpcgate refuses");
                    return data.len();
                }
                let fingerprint = self.fingerprint(req.method.unwrap_or("").as_bytes(), req.path.unwrap_or("").as_bytes());
                self.phase = body_phase(&cl[..ncl.min(cl.len())], nte > 0);
                self.heads.push_back(RawHead { framing, chunked: nte > 0, fingerprint });
                self.pending = Vec::new();
                // Of `data`, the bytes up to the head's end were used.
                len - before
            }
            Ok(httparse::Status::Partial) => {
                if !from_pending {
                    self.pending.extend_from_slice(data);
                }
                if self.pending.len() > MAX_HEAD {
                    self.pending = Vec::new();
                    self.phase = Phase::Lost("a request head over 32 KiB");
                }
                data.len()
            }
            Err(_) => {
                self.pending = Vec::new();
                self.phase = Phase::Lost("a request head that is not HTTP/1.1");
                data.len()
            }
        }
    }

    /// Chunked-body bytes; returns how many of `data` were used.
    fn chunk(&mut self, c: Chunk, data: &[u8]) -> usize {
        if let Chunk::Data(left) = c {
            let n = left.min(data.len() as u64);
            self.phase = Phase::Chunked(if n == left { Chunk::DataCr } else { Chunk::Data(left - n) });
            return n as usize;
        }
        let b = data[0];
        let lost = |why| Phase::Lost(why);
        self.phase = match c {
            Chunk::Size { value, digits } => match (b as char).to_digit(16) {
                // Leading zeros count for nothing; only a value past 64 bits is refused, as hyper does.
                Some(d) => match value.checked_mul(16).and_then(|v| v.checked_add(u64::from(d))) {
                    Some(value) => Phase::Chunked(Chunk::Size { value, digits: digits.saturating_add(1) }),
                    None => lost("a chunk size over 64 bits"),
                },
                None if digits == 0 => lost("a chunk without a size"),
                None => return self.chunk(Chunk::SizeRest { value, ext: false }, data),
            },
            Chunk::SizeRest { value, ext } => match b {
                b'\r' => Phase::Chunked(Chunk::SizeLf(value)),
                b';' => Phase::Chunked(Chunk::SizeRest { value, ext: true }),
                b'\n' => lost("a chunk size line without CR"),
                b' ' | b'\t' => Phase::Chunked(Chunk::SizeRest { value, ext }),
                _ if ext => Phase::Chunked(Chunk::SizeRest { value, ext }),
                _ => lost("text after a chunk size"),
            },
            Chunk::SizeLf(0) if b == b'\n' => Phase::Chunked(Chunk::TrailerStart),
            Chunk::SizeLf(n) if b == b'\n' => Phase::Chunked(Chunk::Data(n)),
            Chunk::DataCr if b == b'\r' => Phase::Chunked(Chunk::DataLf),
            Chunk::DataLf if b == b'\n' => Phase::Chunked(Chunk::Size { value: 0, digits: 0 }),
            Chunk::TrailerStart if b == b'\r' => Phase::Chunked(Chunk::EndLf),
            Chunk::TrailerStart => Phase::Chunked(Chunk::TrailerLine),
            Chunk::TrailerLine if b == b'\r' => Phase::Chunked(Chunk::TrailerLf),
            Chunk::TrailerLine => Phase::Chunked(Chunk::TrailerLine),
            Chunk::TrailerLf if b == b'\n' => Phase::Chunked(Chunk::TrailerStart),
            Chunk::EndLf if b == b'\n' => Phase::Head,
            _ => lost("chunked framing that does not read as RFC 9112"),
        };
        1
    }
}

/// Puts the values into `slots` as far as they go; how many there were.
fn fill<'a>(slots: &mut [&'a [u8]], values: impl Iterator<Item = &'a [u8]>) -> usize {
    let mut n = 0;
    for v in values {
        if let Some(slot) = slots.get_mut(n) {
            *slot = v;
        }
        n += 1;
    }
    n
}

/// The body framing hyper reads for this head (RFC 9112 §6.3): any `Transfer-Encoding` means
/// chunked (hyper refuses one that does not end in chunked, and the check refuses the rest),
/// else the `Content-Length`, else none.
fn body_phase(content_lengths: &[&[u8]], chunked: bool) -> Phase {
    if chunked {
        return Phase::Chunked(Chunk::Size { value: 0, digits: 0 });
    }
    let Some(first) = content_lengths.first() else { return Phase::Head };
    match std::str::from_utf8(first).ok().map(str::trim).and_then(|v| v.parse::<u64>().ok()) {
        Some(0) => Phase::Head,
        Some(n) => Phase::Fixed(n),
        None => Phase::Lost("a Content-Length that is not a number"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(t: &mut HeadTracker) -> Vec<RawHead> {
        std::iter::from_fn(|| t.take()).collect()
    }

    const STREAM: &[u8] = b"PUT /a HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nhello\
POST /b?x HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n3;ext=1\r\nabc\r\n0\r\nx-amz-checksum-crc32: AAAA\r\n\r\n\
\r\nGET /c HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: \x80x\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n\
GET /d HTTP/1.1\r\nHost: h\r\n\r\n";

    #[test]
    fn heads_are_found_through_bodies_whole_and_byte_by_byte() {
        for step in [STREAM.len(), 1, 2, 3, 7, 64] {
            let mut t = HeadTracker::default();
            for chunk in STREAM.chunks(step) {
                t.feed(chunk);
            }
            let heads = all(&mut t);
            let paired: Vec<bool> = heads.iter().zip([("PUT", "/a")]).map(|(h, (m, p))| t.pairs(h, m, p)).collect();
            assert_eq!(paired, [true], "step {step}");
            assert!(!t.pairs(&heads[0], "PUT", "/b?x") && !t.pairs(&heads[0], "GET", "/a"));
            // The pair hyper would drop the length of: the stream is cut at it, and it is
            // answered with its refusal; nothing after it reaches hyper.
            assert_eq!(t.refusal().map(|d| d.code()), Some("request_smuggling"), "step {step}");
            assert!(t.lost().is_some() && t.unreadable().is_some());
            assert!(t.pending.is_empty(), "a cut tunnel holds no head bytes");
        }
        // Heads are found through fixed and chunked bodies (with extensions and trailers) and
        // empty lines, whole and byte by byte.
        let clean = b"PUT /a HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nhello\
POST /b?x HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n3;ext=1\r\nabc\r\n0\r\nx-amz-checksum-crc32: AAAA\r\n\r\n\
\r\nGET /d HTTP/1.1\r\nHost: h\r\n\r\n";
        for step in [clean.len(), 1, 2, 3, 7, 64] {
            let mut t = HeadTracker::default();
            for chunk in clean.chunks(step) {
                t.feed(chunk);
            }
            let heads = all(&mut t);
            let paired: Vec<bool> = heads.iter().zip([("PUT", "/a"), ("POST", "/b?x"), ("GET", "/d")]).map(|(h, (m, p))| t.pairs(h, m, p)).collect();
            assert_eq!(paired, [true; 3], "step {step}");
            assert_eq!(heads.iter().map(|h| h.chunked).collect::<Vec<_>>(), [false, true, false]);
            assert_eq!((t.lost(), t.refusal()), (None, None));
            assert!(t.pending.is_empty(), "an idle tunnel holds no head bytes");
        }
    }

    #[test]
    fn a_lone_cr_between_requests_is_judged_with_what_follows_however_it_arrives() {
        // Found by fuzz/oracle/heads.rs: a `\r` that arrived alone was skipped as an empty line,
        // so the next request's head was recorded; httparse (and hyper) read `\rHEAD` as an
        // error, as the follower did when the bytes arrived together.
        let stream = b"GET /a HTTP/1.1\r\n\r\n\rHEAD /b HTTP/1.1\r\nContent-Length: 0\r\n\r\n";
        for step in [stream.len(), 1, 2, 28, 29] {
            let mut t = HeadTracker::default();
            for chunk in stream.chunks(step) {
                t.feed(chunk);
            }
            assert_eq!(all(&mut t).len(), 1, "step {step}");
            assert_eq!(t.unreadable(), Some("a request head that is not HTTP/1.1"), "step {step}");
        }
        // Empty lines before a head that has not ended do not end it.
        let stream = b"GET /a HTTP/1.1\r\nContent-Length: 2\r\n\r\n71\r\n\r\n1;ext=\"a\"\r\n";
        for step in [stream.len(), 1, 2, 44, 47] {
            let mut t = HeadTracker::default();
            for chunk in stream.chunks(step) {
                t.feed(chunk);
            }
            assert_eq!((all(&mut t).len(), t.lost()), (1, None), "step {step}");
        }
        // An empty line cut between its `\r` and `\n`, then a head that starts with no method
        // token and has not ended: held however it arrives (fuzz/corpus/heads/found-blank-lines-
        // then-a-bad-token; fed a byte at a time the follower judged it at once).
        let stream = b"PUT * HTTP/1.1\r\nContent-Length: 1\r\n\nx\r\n\n}}=}\r\nHost: a\r\n";
        for step in [stream.len(), 1, 2, 3, 38] {
            let mut t = HeadTracker::default();
            for chunk in stream.chunks(step) {
                t.feed(chunk);
            }
            assert_eq!((all(&mut t).len(), t.lost()), (1, None), "step {step}");
            assert!(!t.pending.is_empty(), "step {step}: the unended head is held");
            t.feed(b"\r\n");
            assert_eq!(t.unreadable(), Some("a request head that is not HTTP/1.1"), "step {step}: judged once it ends");
        }
        // Whole empty lines, however cut, are still skipped.
        let stream = b"GET /a HTTP/1.1\r\n\r\n\r\n\n\r\nGET /b HTTP/1.1\r\n\r\n";
        for step in [stream.len(), 1, 2, 3] {
            let mut t = HeadTracker::default();
            for chunk in stream.chunks(step) {
                t.feed(chunk);
            }
            assert_eq!((all(&mut t).len(), t.lost()), (2, None), "step {step}");
        }
    }

    #[test]
    fn chunked_bodies_are_read_as_hyper_reads_them() {
        // Found by a hostile review: a bare LF inside a trailer line is part of it for hyper
        // (only CRLF ends it); read as a line end, the next bytes became a head hyper never saw,
        // and a later request was judged by the wrong head.
        let stream = b"POST /a HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nX: a\n\r\n\
POST /b HTTP/1.1\r\nHost: h\r\n\r\n\
POST /b HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n";
        let mut t = HeadTracker::default();
        t.feed(stream);
        let heads = all(&mut t);
        // hyper reads `X: a\n` and the clean `POST /b` head as trailers, up to the empty line:
        // two requests, the second the one with both lengths, which is refused: the stream is
        // cut there and the proxy answers it.
        assert_eq!(heads.len(), 1, "{heads:?}");
        assert!(heads[0].framing.is_ok(), "{heads:?}");
        assert_eq!(t.refusal().map(|d| d.code()), Some("request_smuggling"));
        let mut t = HeadTracker::default();
        t.feed(b"POST /a HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nX: a\rb\r\n\r\n");
        assert!(t.lost().is_some(), "a CR not followed by LF inside the trailers is lost, as hyper errs");
        // Leading zeros in a chunk size are no overflow; 17 significant digits are.
        let mut t = HeadTracker::default();
        t.feed(b"PUT /a HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n00000000000000003\r\nabc\r\n0\r\n\r\nGET /b HTTP/1.1\r\n\r\n");
        assert_eq!((all(&mut t).len(), t.lost()), (2, None));
        let mut t = HeadTracker::default();
        t.feed(b"PUT /a HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n10000000000000000\r\n");
        assert_eq!(t.lost(), Some("a chunk size over 64 bits"));
        // Empty lines between requests are never held or parsed, however many.
        let mut t = HeadTracker::default();
        for _ in 0..100_000 {
            assert_eq!(t.feed(b"\r\n"), Fed::default());
        }
        assert!(t.pending.is_empty() && t.lost().is_none());
        t.feed(b"GET /c HTTP/1.1\r\n\r\n");
        assert_eq!(all(&mut t).len(), 1);
    }

    #[test]
    fn what_cannot_be_followed_stops_the_record() {
        let mut t = HeadTracker::default();
        t.feed(b"GET / HTTP/1.1\r\nHost: h\r\nContent-Length: x\r\n\r\nGET /2 HTTP/1.1\r\n\r\n");
        assert_eq!(all(&mut t).len(), 1);
        assert!(t.lost().is_some());
        let mut t = HeadTracker::default();
        t.feed(b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n");
        assert!(t.lost().is_some());
        let mut t = HeadTracker::default();
        assert_eq!(t.feed(b"GET /ok HTTP/1.1\r\n\r\nGET / HTTP/1.1\r\nX: "), Fed { cut_at: None, incomplete_from: Some(20) });
        assert_eq!(t.feed(b"aaa"), Fed { cut_at: None, incomplete_from: Some(0) });
        assert_eq!(t.feed(&vec![b'a'; MAX_HEAD]).cut_at, Some(0), "cut where this read's part of the head begins");
        assert_eq!(t.lost(), Some("a request head over 32 KiB"));
        assert_eq!(t.unreadable(), Some("a request head over 32 KiB"));
        // Also when the whole head comes in one read.
        let mut t = HeadTracker::default();
        let big = format!("GET / HTTP/1.1\r\nX: {}\r\n\r\n", "a".repeat(MAX_HEAD));
        assert_eq!(t.feed(big.as_bytes()).cut_at, Some(0));
        assert!(t.pending.is_empty());
        let mut t = HeadTracker::default();
        assert_eq!(
            t.feed(b"GET /a HTTP/1.1\r\nContent-Length: 2\r\n\r\nhi\x16\x03\x01 not http\r\n\r\n").cut_at,
            Some(40),
            "cut after the first request's body"
        );
        assert!(t.lost().is_some() && t.unreadable().is_some());
        // A body that cannot be followed is hyper's to refuse (the request's body fails): no cut.
        let mut t = HeadTracker::default();
        assert_eq!(t.feed(b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n"), Fed::default());
        assert!(t.lost().is_some() && t.unreadable().is_none());
    }
}
