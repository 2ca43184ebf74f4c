//! The POST-form reader's oracle, shared by the fuzz target (`fuzz/fuzz_targets/form.rs`) and its
//! replay on stable (`integration-tests/fuzz_replay.rs`).
//!
//! vpcgate reads a browser POST form to find SigV2 fields before anything goes upstream
//! (`policy::request::{form_boundary, scan_form, FormTail}`). Its promise: when it lets a form
//! through, every reader of the form sees the fields vpcgate saw. This oracle checks that promise
//! against a second, independent reader, multer (the streaming multipart parser under axum), whose
//! reading is looser in places (it finds `name` by substring search, reads every part to the end).
//! For every form vpcgate lets through (not SigV2, nothing after the file part), multer must see
//! the same field names before the file part and no part after it; when vpcgate takes a boundary
//! from a Content-Type, multer must take the same one.

use arbitrary::Arbitrary;
use vpcgate::policy::request::{form_boundary, scan_form, FormScan, FormTail};

/// A form as a generator builds it: parts from a vocabulary that reaches the interesting names,
/// then raw edits anywhere, so that inputs get past the first check and then break it.
#[derive(Arbitrary, Debug)]
pub struct FormInput {
    boundary: Boundary,
    ct_params: Vec<CtParam>,
    parts: Vec<Part>,
    close: bool,
    edits: Vec<Edit>,
}

#[derive(Arbitrary, Debug)]
enum Boundary {
    Plain,
    Browser,
    Stars,
    Raw(String),
}

#[derive(Arbitrary, Debug)]
enum CtParam {
    Charset,
    BoundaryAgain(String),
    BoundaryStar(String),
    Bare(String),
    Other(String, String),
}

#[derive(Arbitrary, Debug)]
struct Part {
    name: Name,
    quoted: bool,
    filename: Option<String>,
    extra_header: Option<String>,
    disposition_tail: Option<String>,
    value: Vec<u8>,
}

#[derive(Arbitrary, Debug)]
enum Name {
    Key,
    Policy,
    Signature,
    AccessKey,
    AmzSignature,
    File,
    FileUpper,
    Raw(String),
}

#[derive(Arbitrary, Debug)]
enum Edit {
    Insert(u16, Vec<u8>),
    Replace(u16, u8),
    Remove(u16, u8),
}

impl FormInput {
    /// The request's Content-Type and body.
    pub fn render(&self) -> (String, Vec<u8>) {
        let b = match &self.boundary {
            Boundary::Plain => "XyZ".to_string(),
            Boundary::Browser => "----WebKitFormBoundary7MA4YWxkTrZu0gW".to_string(),
            Boundary::Stars => "*****".to_string(),
            Boundary::Raw(s) => s.clone(),
        };
        let mut ct = format!("multipart/form-data; boundary={b}");
        for p in &self.ct_params {
            match p {
                CtParam::Charset => ct.push_str("; charset=utf-8"),
                CtParam::BoundaryAgain(v) => ct.push_str(&format!("; boundary={v}")),
                CtParam::BoundaryStar(v) => ct.push_str(&format!("; boundary*=utf-8''{v}")),
                CtParam::Bare(v) => ct.push_str(&format!("; {v}")),
                CtParam::Other(k, v) => ct.push_str(&format!("; {k}={v}")),
            }
        }
        let mut body = Vec::new();
        for p in &self.parts {
            let name = match &p.name {
                Name::Key => "key",
                Name::Policy => "policy",
                Name::Signature => "signature",
                Name::AccessKey => "AWSAccessKeyId",
                Name::AmzSignature => "x-amz-signature",
                Name::File => "file",
                Name::FileUpper => "FILE",
                Name::Raw(s) => s.as_str(),
            };
            body.extend_from_slice(format!("--{b}\r\nContent-Disposition: form-data; ").as_bytes());
            body.extend_from_slice(if p.quoted { format!("name=\"{name}\"") } else { format!("name={name}") }.as_bytes());
            if let Some(f) = &p.filename {
                body.extend_from_slice(format!("; filename=\"{f}\"").as_bytes());
            }
            if let Some(t) = &p.disposition_tail {
                body.extend_from_slice(t.as_bytes());
            }
            body.extend_from_slice(b"\r\n");
            if let Some(h) = &p.extra_header {
                body.extend_from_slice(format!("{h}\r\n").as_bytes());
            }
            body.extend_from_slice(b"\r\n");
            body.extend_from_slice(&p.value);
            body.extend_from_slice(b"\r\n");
        }
        if self.close {
            body.extend_from_slice(format!("--{b}--\r\n").as_bytes());
        }
        for e in &self.edits {
            let at = |i: &u16| if body.is_empty() { 0 } else { *i as usize % (body.len() + 1) };
            match e {
                Edit::Insert(i, bytes) => {
                    let i = at(i);
                    body.splice(i..i, bytes.iter().copied());
                }
                Edit::Replace(i, v) if !body.is_empty() => {
                    let i = *i as usize % body.len();
                    body[i] = *v;
                }
                Edit::Remove(i, n) => {
                    let i = at(i);
                    let end = (i + *n as usize % 8).min(body.len());
                    body.drain(i..end);
                }
                Edit::Replace(..) => {}
            }
        }
        (ct, body)
    }
}

/// What multer reads: each part's name (None for a part it finds no name in), as far as it gets,
/// and whether it reached the end without an error.
pub fn multer_reading(body: &[u8], boundary: &str) -> (Vec<Option<String>>, bool) {
    let chunk = bytes::Bytes::copy_from_slice(body);
    let stream = futures::stream::once(async move { Ok::<_, std::convert::Infallible>(chunk) });
    let mut m = multer::Multipart::new(stream, boundary);
    futures::executor::block_on(async {
        let mut names = Vec::new();
        loop {
            match m.next_field().await {
                Ok(Some(field)) => {
                    names.push(field.name().map(str::to_string));
                    if field.bytes().await.is_err() {
                        return (names, false);
                    }
                }
                Ok(None) => return (names, true),
                Err(_) => return (names, false),
            }
        }
    })
}

/// Panics, saying how, when vpcgate and multer read a form vpcgate lets through differently.
pub fn check_form(content_type: &str, body: &[u8]) {
    let Ok(boundary) = form_boundary(content_type) else { return };
    if let Ok(theirs) = multer::parse_boundary(content_type) {
        assert_eq!(theirs, boundary, "the two readers split {content_type:?} at different boundaries");
    }
    let scan = scan_form(body, &boundary, true);
    let Some(sig) = scan.signature() else { return };
    if sig.is_v2() {
        return;
    }
    let (fields, rest) = match scan {
        FormScan::Closed { fields } => (fields, None),
        FormScan::File { fields, content_at } => (fields, Some(&body[content_at..])),
        FormScan::NeedMore | FormScan::Malformed(_) => unreachable!("a scan with a signature read the form"),
    };
    if let Some(rest) = rest {
        // vpcgate streams the rest through its tail watch; a form cut there never reaches anyone.
        if FormTail::new(&boundary).feed(rest).is_err() {
            return;
        }
    }
    let (theirs, _complete) = multer_reading(body, &boundary);
    // vpcgate's reading, the file part included: every part multer read must be one of these, in
    // order, with the same name, and multer must read no part beyond them (after the file, or
    // after the close). multer may find no name where vpcgate found one (it matches `name` with
    // case): it then sees less, not more. It may also stop early on an error: a reader that
    // stops stores nothing, so only what it read is compared.
    let mut ours: Vec<&str> = fields.iter().map(String::as_str).collect();
    if rest.is_some() {
        ours.push("file");
    }
    let agree = theirs.len() <= ours.len() && theirs.iter().zip(&ours).all(|(t, o)| t.as_deref().is_none_or(|t| t == *o));
    assert!(agree, "vpcgate let through parts {ours:?}, multer read {theirs:?} in {:?}", String::from_utf8_lossy(body));
}
