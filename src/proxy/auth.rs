//! `proxy.auth = "basic"`: who is asking. Each proxy request must carry
//! `Proxy-Authorization: Basic base64(NAME:PASSWORD)` of a `[[clients]]` entry, whose password is
//! stored as an Argon2id PHC string.
//!
//! Argon2 is slow on purpose, so it runs at most once per credential: a verified credential is
//! remembered by its SHA-256 (never the password itself), and so is a refused one. New guesses are
//! verified one at a time, on a blocking thread, so that a guesser spends at most one core's
//! share of Argon2 whatever the number of its connections. An unknown name is verified against
//! a fixed hash too, so that the answer takes as long as for a known one.

use crate::config::ClientSettings;
use crate::policy::bucket::BucketRules;
use argon2::password_hash::{PasswordHash, PasswordVerifier, SaltString};
use argon2::PasswordHasher;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// One configured client.
#[derive(Debug)]
pub struct Client {
    pub name: Arc<str>,
    password_hash: String,
    /// Its own bucket patterns, within `s3.buckets`; `None`: the global list only.
    pub buckets: Option<BucketRules>,
}

/// Why a proxy request was not authenticated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthFailure {
    /// No `Proxy-Authorization`, or not `Basic`.
    Missing,
    /// Credentials that match no client.
    Wrong,
}

/// Remembered verdicts, bounded: cleared when full (a reload or a flood costs a re-verify).
const CACHE_MAX: usize = 4096;

pub struct Clients {
    list: Vec<Client>,
    /// SHA-256 of a `Proxy-Authorization` value → the client it verified as, or `None` (refused).
    verdicts: Mutex<HashMap<[u8; 32], Option<usize>>>,
    /// One Argon2 verification at a time.
    gate: tokio::sync::Semaphore,
    /// Verified against for an unknown name.
    decoy: String,
}

impl std::fmt::Debug for Clients {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Clients").field("names", &self.list.iter().map(|c| c.name.clone()).collect::<Vec<_>>()).finish()
    }
}

/// `Basic base64(name:password)` → (name, password).
pub fn parse_basic(value: &[u8]) -> Option<(String, String)> {
    use base64::Engine;
    let text = std::str::from_utf8(value).ok()?.trim();
    let (scheme, creds) = text.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let raw = base64::engine::general_purpose::STANDARD.decode(creds.trim()).ok()?;
    let (name, password) = std::str::from_utf8(&raw).ok()?.split_once(':')?;
    Some((name.to_string(), password.to_string()))
}

/// A new Argon2id PHC string for `password` (what `vpcgate client add` prints).
pub fn hash_password(password: &str) -> Result<String, String> {
    let mut bytes = [0u8; 16];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut bytes).map_err(|_| "cannot read random bytes for a salt".to_string())?;
    let salt = SaltString::encode_b64(&bytes).map_err(|e| format!("cannot encode a salt ({e})"))?;
    argon2::Argon2::default().hash_password(password.as_bytes(), &salt).map(|h| h.to_string()).map_err(|e| format!("cannot hash the password ({e})"))
}

impl Clients {
    /// From validated settings (`config::validate_clients` checked names and hashes).
    pub fn new(settings: &[ClientSettings], allow_list_buckets: bool) -> Result<Clients, String> {
        let list = settings
            .iter()
            .map(|c| Client {
                name: Arc::from(c.name.as_str()),
                password_hash: c.password_hash.clone(),
                buckets: c.buckets.clone().map(|patterns| BucketRules { patterns, allow_list_buckets }),
            })
            .collect();
        let decoy = hash_password("vpcgate decoy for unknown names")?;
        Ok(Clients { list, verdicts: Mutex::new(HashMap::new()), gate: tokio::sync::Semaphore::new(1), decoy })
    }

    pub fn get(&self, i: usize) -> &Client {
        &self.list[i]
    }

    /// The client a `Proxy-Authorization` value names, or why not.
    pub async fn authenticate(self: &Arc<Self>, value: Option<&[u8]>) -> Result<usize, AuthFailure> {
        let value = value.ok_or(AuthFailure::Missing)?;
        let key: [u8; 32] = ring::digest::digest(&ring::digest::SHA256, value).as_ref().try_into().expect("SHA-256 is 32 bytes");
        if let Some(v) = self.verdicts.lock().expect("auth cache").get(&key) {
            return v.ok_or(AuthFailure::Wrong);
        }
        let (name, password) = parse_basic(value).ok_or(AuthFailure::Missing)?;
        let _turn = self.gate.acquire().await.expect("the gate is never closed");
        // Another request may have verified the same credential while this one waited.
        if let Some(v) = self.verdicts.lock().expect("auth cache").get(&key) {
            return v.ok_or(AuthFailure::Wrong);
        }
        let me = self.clone();
        let verdict = tokio::task::spawn_blocking(move || {
            let found = me.list.iter().position(|c| *c.name == *name);
            let phc = found.map(|i| me.list[i].password_hash.as_str()).unwrap_or(&me.decoy);
            let ok = PasswordHash::new(phc).is_ok_and(|h| argon2::Argon2::default().verify_password(password.as_bytes(), &h).is_ok());
            found.filter(|_| ok)
        })
        .await
        .unwrap_or(None);
        let mut cache = self.verdicts.lock().expect("auth cache");
        if cache.len() >= CACHE_MAX {
            cache.clear();
        }
        cache.insert(key, verdict);
        verdict.ok_or(AuthFailure::Wrong)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn basic(user: &str, pass: &str) -> Vec<u8> {
        use base64::Engine;
        format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"))).into_bytes()
    }

    #[tokio::test]
    async fn clients_are_who_their_password_says_and_each_credential_is_verified_once() {
        let settings =
            vec![ClientSettings { name: "etl".into(), password_hash: hash_password("s3cret:with:colons").unwrap(), buckets: Some(vec!["etl-*".into()]) }];
        let c = Arc::new(Clients::new(&settings, true).unwrap());
        assert_eq!(c.authenticate(Some(&basic("etl", "s3cret:with:colons"))).await, Ok(0));
        assert_eq!(&*c.get(0).name, "etl");
        assert_eq!(c.authenticate(Some(&basic("etl", "wrong"))).await, Err(AuthFailure::Wrong));
        assert_eq!(c.authenticate(Some(&basic("nobody", "s3cret:with:colons"))).await, Err(AuthFailure::Wrong));
        assert_eq!(c.authenticate(None).await, Err(AuthFailure::Missing));
        assert_eq!(c.authenticate(Some(b"Bearer x")).await, Err(AuthFailure::Missing));
        assert_eq!(c.authenticate(Some(b"Basic !!!")).await, Err(AuthFailure::Missing));
        // The second time, from the cache: far faster than Argon2.
        let t = std::time::Instant::now();
        for _ in 0..100 {
            assert_eq!(c.authenticate(Some(&basic("etl", "s3cret:with:colons"))).await, Ok(0));
            assert_eq!(c.authenticate(Some(&basic("etl", "wrong"))).await, Err(AuthFailure::Wrong));
        }
        assert!(t.elapsed() < std::time::Duration::from_millis(200), "{:?}", t.elapsed());
        assert_eq!(parse_basic(b"basic ZXRsOnA="), Some(("etl".into(), "p".into())));
    }
}
