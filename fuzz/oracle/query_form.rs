//! The oracle of the Query-API form check (`policy::request::query_form_signature`): whenever a
//! standard `application/x-www-form-urlencoded` reader (the `form_urlencoded` crate, as servers
//! decode such bodies) finds a SigV2 key in a body, in any case, vpcgate must have said SigV2.
//! vpcgate may refuse more (it also splits at `;` and trims), never less.
#![allow(dead_code)]

use arbitrary::Arbitrary;
use vpcgate::policy::request::{query_form_signature, Signature, QUERY_V2_KEYS};

/// A body built from parts a real Query request has, spelled in the ways a reader decodes.
#[derive(Debug, Arbitrary)]
pub struct QueryForm {
    pub pairs: Vec<(KeyPart, Vec<u8>)>,
    /// Bytes appended as they are (garbage, separators, a truncated escape).
    pub tail: Vec<u8>,
}

#[derive(Debug, Arbitrary)]
pub enum KeyPart {
    /// One of the SigV2 keys or another Query key, with a spelling applied.
    Known {
        which: u8,
        spelling: Spelling,
    },
    Raw(Vec<u8>),
}

#[derive(Debug, Arbitrary)]
pub enum Spelling {
    AsIs,
    Upper,
    /// Percent-encode the byte at this index (any case of hex digits).
    Escape {
        at: u8,
        lower_hex: bool,
    },
    /// `+` (a space) before it.
    LeadingPlus,
}

const OTHER_KEYS: [&str; 4] = ["Action", "Version", "Timestamp", "X-Amz-Signature"];

fn spell(key: &str, s: &Spelling) -> Vec<u8> {
    match s {
        Spelling::AsIs => key.as_bytes().to_vec(),
        Spelling::Upper => key.to_ascii_uppercase().into_bytes(),
        Spelling::Escape { at, lower_hex } => {
            let i = *at as usize % key.len();
            let mut out = key.as_bytes()[..i].to_vec();
            let hex = if *lower_hex { format!("%{:02x}", key.as_bytes()[i]) } else { format!("%{:02X}", key.as_bytes()[i]) };
            out.extend_from_slice(hex.as_bytes());
            out.extend_from_slice(&key.as_bytes()[i + 1..]);
            out
        }
        Spelling::LeadingPlus => {
            let mut out = b"+".to_vec();
            out.extend_from_slice(key.as_bytes());
            out
        }
    }
}

impl QueryForm {
    pub fn render(&self) -> Vec<u8> {
        let mut body = Vec::new();
        for (i, (k, v)) in self.pairs.iter().enumerate() {
            if i > 0 {
                body.push(b'&');
            }
            match k {
                KeyPart::Known { which, spelling } => {
                    let all: Vec<&str> = QUERY_V2_KEYS.iter().copied().chain(OTHER_KEYS).collect();
                    // The lists hold lower-case keys; the Query API writes them capitalised.
                    let key = all[*which as usize % all.len()];
                    let capitalised = capitalise(key);
                    body.extend(spell(&capitalised, spelling));
                }
                KeyPart::Raw(raw) => body.extend(raw.iter().filter(|b| **b != b'&')),
            }
            body.push(b'=');
            body.extend(v.iter().filter(|b| **b != b'&'));
        }
        body.extend_from_slice(&self.tail);
        body
    }
}

fn capitalise(key: &str) -> String {
    match key {
        "awsaccesskeyid" => "AWSAccessKeyId".into(),
        "signatureversion" => "SignatureVersion".into(),
        "signaturemethod" => "SignatureMethod".into(),
        "signature" => "Signature".into(),
        other => other.into(),
    }
}

/// The property, for any body.
pub fn check_query_form(body: &[u8]) {
    let standard_sees_v2 = form_urlencoded::parse(body).any(|(k, _)| QUERY_V2_KEYS.contains(&k.to_ascii_lowercase().as_str()));
    if standard_sees_v2 {
        assert_eq!(query_form_signature(body), Signature::V2QueryForm, "a form reader finds a SigV2 key in {:?}", String::from_utf8_lossy(body));
    }
}
