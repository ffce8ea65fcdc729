//! Tokens already verified, so that a client sending the same token with every request
//! pays for one signature check, not one per request (an ES256 check costs more than the
//! rest of a call through the vMCP). Entries are found by the token's SHA-256, hold until
//! the token expires, and only for the key set that verified them: new keys from the
//! issuer mean every token is checked again.

use std::collections::HashMap;
use std::sync::{Arc, PoisonError, RwLock};

use sha2::{Digest, Sha256};

use super::jwt::KeySet;

/// At most this many tokens are remembered (a few hundred bytes each).
const MAX_ENTRIES: usize = 10_000;

/// Verified tokens by digest.
#[derive(Debug, Default)]
pub(crate) struct VerifiedTokens {
    entries: RwLock<HashMap<[u8; 32], Entry>>,
}

#[derive(Debug)]
struct Entry {
    sub: Option<Arc<str>>,
    /// Valid while `now` is before this (the token's `exp` plus the clock skew).
    until: u64,
    /// The key set that verified it.
    keys: Arc<KeySet>,
}

/// A token's digest, with the extra audience it was checked with: what the cache knows
/// it by (a token accepted as one resource's is not thereby another's).
pub(crate) fn digest(token: &str, also: Option<&str>) -> [u8; 32] {
    let mut hash = Sha256::new();
    hash.update(token.as_bytes());
    if let Some(also) = also {
        hash.update([0]);
        hash.update(also.as_bytes());
    }
    hash.finalize().into()
}

impl VerifiedTokens {
    /// The subject of a token verified before with `keys` (`None`: without a `sub`) and
    /// until when it holds, if it has not expired.
    pub(crate) fn get(
        &self,
        digest: &[u8; 32],
        keys: &Arc<KeySet>,
        now: u64,
    ) -> Option<(Option<Arc<str>>, u64)> {
        let entries = self.entries.read().unwrap_or_else(PoisonError::into_inner);
        let e = entries.get(digest)?;
        (now < e.until && Arc::ptr_eq(&e.keys, keys)).then(|| (e.sub.clone(), e.until))
    }

    /// Remembers a token `keys` verified, valid until `until`.
    pub(crate) fn put(
        &self,
        digest: [u8; 32],
        sub: Option<Arc<str>>,
        until: u64,
        keys: Arc<KeySet>,
        now: u64,
    ) {
        let mut entries = self.entries.write().unwrap_or_else(PoisonError::into_inner);
        if entries.len() >= MAX_ENTRIES {
            entries.retain(|_, e| now < e.until && Arc::ptr_eq(&e.keys, &keys));
            if entries.len() >= MAX_ENTRIES {
                entries.clear();
            }
        }
        entries.insert(digest, Entry { sub, until, keys });
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.entries
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys() -> Arc<KeySet> {
        Arc::new(
            KeySet::from_jwks(&hale_testkit::TestIssuer::jwks(&["a"]))
                .unwrap_or_else(|e| panic!("{e}")),
        )
    }

    #[test]
    fn a_token_is_remembered_until_it_expires_and_only_for_its_keys() {
        let cache = VerifiedTokens::default();
        let (k1, k2) = (keys(), keys());
        let d = digest("token", None);
        assert_eq!(cache.get(&d, &k1, 100), None);
        cache.put(d, Some(Arc::from("alice")), 200, k1.clone(), 100);
        assert_eq!(
            cache.get(&d, &k1, 199),
            Some((Some(Arc::from("alice")), 200))
        );
        assert_eq!(cache.get(&d, &k1, 200), None, "expired at exp");
        assert_eq!(cache.get(&d, &k2, 150), None, "new keys: check again");
        assert_eq!(cache.get(&digest("other", None), &k1, 150), None);
    }

    #[test]
    fn the_cache_stays_bounded() {
        let cache = VerifiedTokens::default();
        let k = keys();
        for i in 0..(MAX_ENTRIES + 5) {
            cache.put(digest(&i.to_string(), None), None, 10, k.clone(), 0);
        }
        assert!(cache.len() <= MAX_ENTRIES);
    }
}
