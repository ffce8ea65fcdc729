//! Checking one JWT access token against a key set, with the time passed in: no I/O, so
//! every rejection is a plain unit test. Signatures and claim shapes are checked by the
//! `jsonwebtoken` crate; the rules around it (which algorithms, which key, which times,
//! which scopes) are here.

use std::fmt;
use std::sync::Arc;

use base64::Engine as _;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, JwkSet};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::Value;

/// Tokens longer than this are refused before anything is decoded.
pub(crate) const MAX_TOKEN: usize = 16 * 1024;

/// The algorithms a resource server accepts: asymmetric ones only. A JWKS holds public
/// keys, and `HS*` with a public key as the secret is the classic forgery; `none` is
/// never a signature.
const RSA: &[Algorithm] = &[
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
];
const EC_AND_ED: &[Algorithm] = &[Algorithm::ES256, Algorithm::ES384, Algorithm::EdDSA];

fn accepted(alg: &Algorithm) -> bool {
    RSA.contains(alg) || EC_AND_ED.contains(alg)
}

/// The usable keys of a JWKS.
pub(crate) struct KeySet {
    keys: Vec<Key>,
}

struct Key {
    kid: Option<String>,
    /// The algorithms this key may verify (its `alg`, or those of its type and curve).
    algorithms: Vec<Algorithm>,
    decoding: DecodingKey,
}

impl fmt::Debug for KeySet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kids: Vec<&str> = self
            .keys
            .iter()
            .map(|k| k.kid.as_deref().unwrap_or("(no kid)"))
            .collect();
        f.debug_struct("KeySet").field("kids", &kids).finish()
    }
}

impl KeySet {
    /// The keys of a JWKS document that hale can use for signatures: public RSA, EC
    /// (P-256, P-384) and Ed25519 keys not marked for encryption. Others are skipped;
    /// a document with none usable is an error.
    pub(crate) fn from_jwks(document: &Value) -> Result<Self, String> {
        let set: JwkSet = serde_json::from_value(document.clone())
            .map_err(|e| format!("not a JWKS document ({e})"))?;
        let mut keys = Vec::new();
        for jwk in &set.keys {
            if jwk
                .common
                .public_key_use
                .as_ref()
                .is_some_and(|u| *u != jsonwebtoken::jwk::PublicKeyUse::Signature)
            {
                continue;
            }
            let family: Vec<Algorithm> = match &jwk.algorithm {
                AlgorithmParameters::RSA(_) => RSA.to_vec(),
                AlgorithmParameters::EllipticCurve(ec) => match ec.curve {
                    EllipticCurve::P256 => vec![Algorithm::ES256],
                    EllipticCurve::P384 => vec![Algorithm::ES384],
                    _ => continue,
                },
                AlgorithmParameters::OctetKeyPair(_) => vec![Algorithm::EdDSA],
                // Symmetric keys have no place in a public key set; unknown types
                // are skipped.
                _ => continue,
            };
            let algorithms = match jwk
                .common
                .key_algorithm
                .and_then(|a| a.to_string().parse::<Algorithm>().ok())
            {
                Some(alg) if family.contains(&alg) => vec![alg],
                Some(_) => continue,
                None => family,
            };
            let Ok(decoding) = DecodingKey::from_jwk(jwk) else {
                continue;
            };
            keys.push(Key {
                kid: jwk.common.key_id.clone(),
                algorithms,
                decoding,
            });
        }
        if keys.is_empty() {
            return Err(format!(
                "the JWKS has no usable signing key ({} keys: RSA, EC P-256/P-384 or Ed25519 expected)",
                set.keys.len()
            ));
        }
        Ok(KeySet { keys })
    }

    /// How many keys.
    pub(crate) fn len(&self) -> usize {
        self.keys.len()
    }

    /// True if a key with this id is in the set.
    pub(crate) fn has_kid(&self, kid: &str) -> bool {
        self.keys.iter().any(|k| k.kid.as_deref() == Some(kid))
    }
}

/// What an issuer's tokens must say to be accepted.
#[derive(Clone, Debug)]
pub(crate) struct Rules {
    pub(crate) issuer: String,
    /// Accepted audiences: `aud` must name one.
    pub(crate) audience: Vec<String>,
    pub(crate) required_scopes: Vec<String>,
    /// Seconds of clock difference tolerated on `exp` and `nbf`.
    pub(crate) clock_skew: u64,
}

/// Who a verified token speaks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Verified {
    pub(crate) sub: Option<Arc<str>>,
    pub(crate) scopes: Vec<String>,
    /// Seconds since the epoch.
    pub(crate) exp: u64,
}

/// Why a token was not accepted. Shown in hale's log and in the 401's description;
/// never contains the token.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Rejection {
    /// Longer than [`MAX_TOKEN`].
    Oversized(usize),
    /// Not three base64url parts with a JSON header and claims.
    Malformed(String),
    /// `none`, an `HS*` algorithm, or one the key does not allow.
    Algorithm(String),
    /// No key in the set has this id (or, without an id, no key fits).
    UnknownKey(Option<String>),
    /// The signature does not verify.
    Signature,
    /// `exp` is past (beyond the clock skew).
    Expired,
    /// `nbf` is in the future (beyond the clock skew).
    NotYetValid,
    /// `iss` is not the configured issuer (what it was, for the log: a signed claim).
    Issuer(String),
    /// `aud` does not include the configured audience (what it was).
    Audience(String),
    /// A claim that must be present is not.
    MissingClaim(String),
    /// Valid, but without these required scopes (403, not 401).
    InsufficientScope(Vec<String>),
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Rejection::Oversized(n) => write!(f, "the token is {n} bytes, more than 16 KiB"),
            Rejection::Malformed(why) => write!(f, "the token is malformed: {why}"),
            Rejection::Algorithm(alg) => write!(
                f,
                "the token's algorithm {alg} is not accepted (RS*, PS*, ES256, ES384 or EdDSA with a key from the JWKS)"
            ),
            Rejection::UnknownKey(Some(kid)) => {
                write!(
                    f,
                    "the token was signed with key {kid:?}, which is not in the JWKS"
                )
            }
            Rejection::UnknownKey(None) => {
                f.write_str("the token names no key (kid) and no key of the JWKS verifies it")
            }
            Rejection::Signature => f.write_str("the token's signature does not verify"),
            Rejection::Expired => f.write_str("the token has expired"),
            Rejection::NotYetValid => f.write_str("the token is not valid yet (nbf)"),
            Rejection::Issuer(found) => {
                write!(
                    f,
                    "the token's issuer (iss) {found} is not the one configured"
                )
            }
            Rejection::Audience(found) => write!(
                f,
                "the token's audience (aud) {found} does not include this server's"
            ),
            Rejection::MissingClaim(c) => write!(f, "the token has no {c} claim"),
            Rejection::InsufficientScope(s) => {
                write!(f, "the token lacks the scope(s) {}", s.join(" "))
            }
        }
    }
}

impl Rejection {
    /// The kind of reason, as a short name (the refusal log is rate-limited per kind).
    pub(crate) fn kind(&self) -> &'static str {
        match self {
            Rejection::Oversized(_) => "oversized",
            Rejection::Malformed(_) => "malformed",
            Rejection::Algorithm(_) => "algorithm",
            Rejection::UnknownKey(_) => "unknown_key",
            Rejection::Signature => "signature",
            Rejection::Expired => "expired",
            Rejection::NotYetValid => "not_yet_valid",
            Rejection::Issuer(_) => "issuer",
            Rejection::Audience(_) => "audience",
            Rejection::MissingClaim(_) => "missing_claim",
            Rejection::InsufficientScope(_) => "insufficient_scope",
        }
    }
}

impl Rules {
    /// Checks `token` against `keys` at `now` (seconds since the epoch); `also` is one
    /// more accepted audience (the resource the request was told of).
    pub(crate) fn verify(
        &self,
        token: &str,
        keys: &KeySet,
        now: u64,
        also: Option<&str>,
    ) -> Result<Verified, Rejection> {
        if token.len() > MAX_TOKEN {
            return Err(Rejection::Oversized(token.len()));
        }
        let header = header(token)?;
        let alg_name = header
            .get("alg")
            .and_then(Value::as_str)
            .ok_or_else(|| Rejection::Malformed("the header has no alg".into()))?;
        let alg = alg_name
            .parse::<Algorithm>()
            .ok()
            .filter(accepted)
            .ok_or_else(|| Rejection::Algorithm(alg_name.into()))?;
        let kid = header.get("kid").and_then(Value::as_str);
        let candidates: Vec<&Key> = match kid {
            Some(kid) => keys
                .keys
                .iter()
                .filter(|k| k.kid.as_deref() == Some(kid))
                .collect(),
            None => keys
                .keys
                .iter()
                .filter(|k| k.algorithms.contains(&alg))
                .collect(),
        };
        if candidates.is_empty() {
            return Err(Rejection::UnknownKey(kid.map(str::to_string)));
        }
        let mut validation = Validation::new(alg);
        validation.set_issuer(&[&self.issuer]);
        match also {
            Some(also) if !self.audience.iter().any(|a| a == also) => {
                let mut audience: Vec<&str> = self.audience.iter().map(String::as_str).collect();
                audience.push(also);
                validation.set_audience(&audience);
            }
            _ => validation.set_audience(&self.audience),
        }
        validation.set_required_spec_claims(&["exp", "iss", "aud"]);
        // Times are checked below, against the clock we are given.
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.leeway = 0;
        let mut last = Rejection::UnknownKey(kid.map(str::to_string));
        for key in candidates {
            if !key.algorithms.contains(&alg) {
                last = Rejection::Algorithm(alg_name.into());
                continue;
            }
            match jsonwebtoken::decode::<Value>(token, &key.decoding, &validation) {
                Ok(data) => return self.claims(&data.claims, now),
                Err(e) => last = rejection(e.kind(), token),
            }
        }
        Err(last)
    }

    /// Times, subject and scopes of claims whose signature, issuer and audience passed.
    fn claims(&self, claims: &Value, now: u64) -> Result<Verified, Rejection> {
        let exp = number(claims, "exp")?.ok_or(Rejection::MissingClaim("exp".into()))?;
        // RFC 7519 §4.1.4: not accepted on or after `exp`, give or take the clock skew
        // the operator allows ("some small leeway"): until `exp + clockSkew`.
        if now >= exp.saturating_add(self.clock_skew) {
            return Err(Rejection::Expired);
        }
        if let Some(nbf) = number(claims, "nbf")?
            && now.saturating_add(self.clock_skew) < nbf
        {
            return Err(Rejection::NotYetValid);
        }
        let scopes = scopes(claims);
        let missing: Vec<String> = self
            .required_scopes
            .iter()
            .filter(|s| !scopes.contains(s))
            .cloned()
            .collect();
        if !missing.is_empty() {
            return Err(Rejection::InsufficientScope(missing));
        }
        Ok(Verified {
            sub: claims.get("sub").and_then(Value::as_str).map(Arc::from),
            scopes,
            exp,
        })
    }
}

/// The token's header, decoded without trusting anything in it yet.
fn header(token: &str) -> Result<Value, Rejection> {
    let mut parts = token.split('.');
    let (Some(head), Some(_), Some(_), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(Rejection::Malformed(
            "expected three dot-separated parts".into(),
        ));
    };
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(head.trim_end_matches('='))
        .map_err(|_| Rejection::Malformed("the header is not base64url".into()))?;
    let header: Value = serde_json::from_slice(&bytes)
        .map_err(|_| Rejection::Malformed("the header is not JSON".into()))?;
    if !header.is_object() {
        return Err(Rejection::Malformed(
            "the header is not a JSON object".into(),
        ));
    }
    Ok(header)
}

/// A numeric date claim; a non-number is malformed.
fn number(claims: &Value, name: &str) -> Result<Option<u64>, Rejection> {
    match claims.get(name) {
        None => Ok(None),
        Some(v) => v
            .as_u64()
            .or_else(|| v.as_f64().filter(|f| *f >= 0.0).map(|f| f as u64))
            .map(Some)
            .ok_or_else(|| Rejection::Malformed(format!("{name} is not a number"))),
    }
}

/// Scopes from `scope` (space-separated, RFC 8693/9068) or `scp` (a list or a string).
fn scopes(claims: &Value) -> Vec<String> {
    let mut out = Vec::new();
    for name in ["scope", "scp"] {
        match claims.get(name) {
            Some(Value::String(s)) => out.extend(s.split_whitespace().map(str::to_string)),
            Some(Value::Array(items)) => {
                out.extend(items.iter().filter_map(Value::as_str).map(str::to_string));
            }
            _ => {}
        }
    }
    out
}

fn rejection(kind: &jsonwebtoken::errors::ErrorKind, token: &str) -> Rejection {
    use jsonwebtoken::errors::ErrorKind as K;
    // Claims are checked after the signature: an issuer or audience error comes from a
    // token the issuer's key signed, so its claim is worth naming (it tells an operator
    // what to configure). Shortened, in case it is long.
    let claim = |name: &str| {
        let claims = jsonwebtoken::dangerous::insecure_decode_claims::<Value>(token).ok();
        let text = claims
            .and_then(|c| c.get(name).cloned())
            .map_or_else(|| "(none)".to_string(), |v| v.to_string());
        text.chars().take(120).collect::<String>()
    };
    match kind {
        K::InvalidSignature => Rejection::Signature,
        K::InvalidIssuer => Rejection::Issuer(claim("iss")),
        K::InvalidAudience => Rejection::Audience(claim("aud")),
        K::ExpiredSignature => Rejection::Expired,
        K::ImmatureSignature => Rejection::NotYetValid,
        K::MissingRequiredClaim(c) => Rejection::MissingClaim(c.clone()),
        K::InvalidAlgorithm | K::InvalidAlgorithmName | K::UnsupportedAlgorithm => {
            Rejection::Algorithm("(mismatched with its key)".into())
        }
        K::InvalidClaimFormat(c) => Rejection::Malformed(format!("{c} has the wrong type")),
        K::Base64(_) => Rejection::Malformed("a part is not base64url".into()),
        K::Json(_) | K::Utf8(_) => Rejection::Malformed("the claims are not JSON".into()),
        other => Rejection::Malformed(format!("{other:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hale_testkit::TestIssuer;
    use serde_json::json;

    const NOW: u64 = 1_800_000_000;
    const ISS: &str = "http://127.0.0.1:9/issuer";

    fn rules(scopes: &[&str]) -> Rules {
        Rules {
            issuer: ISS.into(),
            audience: vec!["hale".into()],
            required_scopes: scopes.iter().map(|s| s.to_string()).collect(),
            clock_skew: 60,
        }
    }

    fn keys(kids: &[&str]) -> KeySet {
        match KeySet::from_jwks(&TestIssuer::jwks(kids)) {
            Ok(k) => k,
            Err(e) => panic!("test JWKS refused: {e}"),
        }
    }

    fn claims() -> Value {
        json!({"iss": ISS, "aud": "hale", "sub": "alice", "exp": NOW + 300, "scope": "mcp:read mcp:call"})
    }

    fn with(change: impl FnOnce(&mut Value)) -> Value {
        let mut c = claims();
        change(&mut c);
        c
    }

    /// A token with a hand-made header and claims, signed (or not) as given.
    fn forged(header: &Value, claims: &Value, signature: &str) -> String {
        let b64 =
            |v: &Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string());
        format!("{}.{}.{signature}", b64(header), b64(claims))
    }

    #[test]
    fn a_valid_token_speaks_for_its_subject_with_its_scopes() {
        for kid in ["a", "r"] {
            let token = TestIssuer::sign(kid, &claims());
            let v = rules(&["mcp:call"]).verify(&token, &keys(&["a", "r"]), NOW, None);
            assert_eq!(
                v.map(|v| (v.sub, v.scopes)),
                Ok((
                    Some(Arc::from("alice")),
                    vec!["mcp:read".to_string(), "mcp:call".into()]
                )),
                "key {kid}"
            );
        }
        // `scp` as a list (Azure AD, Okta) counts as well.
        let token = TestIssuer::sign(
            "a",
            &with(|c| {
                c.as_object_mut().map(|m| m.remove("scope"));
                c["scp"] = json!(["mcp:call"]);
            }),
        );
        assert!(
            rules(&["mcp:call"])
                .verify(&token, &keys(&["a"]), NOW, None)
                .is_ok()
        );
    }

    #[test]
    fn every_bad_token_is_rejected_with_its_reason() {
        let k = keys(&["a"]);
        let r = rules(&[]);
        let sign = |c: Value| TestIssuer::sign("a", &c);
        let cases: Vec<(&str, String, Rejection)> = vec![
            (
                "expired",
                sign(with(|c| c["exp"] = json!(NOW - 61))),
                Rejection::Expired,
            ),
            (
                "not yet valid",
                sign(with(|c| c["nbf"] = json!(NOW + 61))),
                Rejection::NotYetValid,
            ),
            (
                "wrong issuer",
                sign(with(|c| c["iss"] = json!("http://evil.example"))),
                Rejection::Issuer("\"http://evil.example\"".into()),
            ),
            (
                "wrong audience",
                sign(with(|c| c["aud"] = json!(["other"]))),
                Rejection::Audience("[\"other\"]".into()),
            ),
            (
                "no exp",
                sign(with(|c| {
                    c.as_object_mut().map(|m| m.remove("exp"));
                })),
                Rejection::MissingClaim("exp".into()),
            ),
            (
                "no aud",
                sign(with(|c| {
                    c.as_object_mut().map(|m| m.remove("aud"));
                })),
                Rejection::MissingClaim("aud".into()),
            ),
            (
                "unknown kid",
                TestIssuer::sign("b", &claims()),
                Rejection::UnknownKey(Some("b".into())),
            ),
            (
                "alg none",
                forged(&json!({"alg": "none", "kid": "a"}), &claims(), ""),
                Rejection::Algorithm("none".into()),
            ),
            (
                "HS256 with the public key as secret",
                forged(&json!({"alg": "HS256", "kid": "a"}), &claims(), "c2ln"),
                Rejection::Algorithm("HS256".into()),
            ),
            (
                "garbage",
                "not a token".into(),
                Rejection::Malformed("expected three dot-separated parts".into()),
            ),
            (
                "bad header",
                "!!.e30.sig".into(),
                Rejection::Malformed("the header is not base64url".into()),
            ),
            (
                "oversized",
                "a".repeat(MAX_TOKEN + 1),
                Rejection::Oversized(MAX_TOKEN + 1),
            ),
        ];
        for (what, token, expected) in cases {
            assert_eq!(
                r.verify(&token, &k, NOW, None).err(),
                Some(expected),
                "{what}"
            );
        }
        // A valid token from key a, its claims swapped for others: the signature fails.
        let good = sign(claims());
        let other = sign(with(|c| c["sub"] = json!("mallory")));
        let parts: Vec<&str> = good.split('.').collect();
        let other_claims = other.split('.').nth(1).unwrap_or_default();
        let tampered = format!("{}.{other_claims}.{}", parts[0], parts[2]);
        assert_eq!(
            r.verify(&tampered, &k, NOW, None).err(),
            Some(Rejection::Signature)
        );
        // Clock skew: 59 s past exp still passes.
        assert!(
            r.verify(&sign(with(|c| c["exp"] = json!(NOW - 59))), &k, NOW, None)
                .is_ok()
        );
    }

    #[test]
    fn any_of_several_configured_audiences_is_accepted() {
        let mut r = rules(&[]);
        r.audience = vec!["api://hale".into(), "hale".into()];
        let k = keys(&["a"]);
        for aud in [
            json!("hale"),
            json!("api://hale"),
            json!(["other", "api://hale"]),
        ] {
            let token = TestIssuer::sign("a", &with(|c| c["aud"] = aud.clone()));
            assert!(r.verify(&token, &k, NOW, None).is_ok(), "{aud}");
        }
        let token = TestIssuer::sign("a", &with(|c| c["aud"] = json!("other")));
        assert!(matches!(
            r.verify(&token, &k, NOW, None),
            Err(Rejection::Audience(_))
        ));
        // The resource the request was told of, when it is this server's, passes too;
        // only for that request.
        let token = TestIssuer::sign(
            "a",
            &with(|c| c["aud"] = json!("http://localhost:4490/mcp")),
        );
        assert!(
            r.verify(&token, &k, NOW, Some("http://localhost:4490/mcp"))
                .is_ok()
        );
        assert!(matches!(
            r.verify(&token, &k, NOW, Some("http://127.0.0.1:4490/mcp")),
            Err(Rejection::Audience(_))
        ));
        assert!(r.verify(&token, &k, NOW, None).is_err());
    }

    #[test]
    fn a_missing_scope_is_named_and_is_not_an_authentication_failure() {
        let token = TestIssuer::sign("a", &claims());
        assert_eq!(
            rules(&["mcp:call", "mcp:admin"])
                .verify(&token, &keys(&["a"]), NOW, None)
                .err(),
            Some(Rejection::InsufficientScope(vec!["mcp:admin".into()]))
        );
    }

    #[test]
    fn a_key_set_keeps_only_public_signing_keys() {
        let mut doc = TestIssuer::jwks(&["a", "r"]);
        if let Some(keys) = doc["keys"].as_array_mut() {
            keys.push(json!({"kty": "oct", "k": "c2VjcmV0", "kid": "sym"}));
            keys.push(json!({"kty": "EC", "crv": "P-256", "kid": "enc", "use": "enc", "x": keys[0]["x"], "y": keys[0]["y"]}));
        }
        let set = KeySet::from_jwks(&doc).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(set.len(), 2);
        assert!(set.has_kid("a") && set.has_kid("r") && !set.has_kid("sym") && !set.has_kid("enc"));
        assert!(KeySet::from_jwks(&json!({"keys": []})).is_err());
        assert!(KeySet::from_jwks(&json!({"nope": 1})).is_err());
    }
}
