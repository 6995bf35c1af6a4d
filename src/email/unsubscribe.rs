//! Unsubscribe tokens: who asked to stop receiving Lifecycle and Marketing emails, signed so a
//! link cannot be edited into someone else's.
//!
//! A token is URL-safe base64 (no padding) of `HMAC-SHA256(key, payload) ‖ payload`, where the
//! payload is `{tenant_id}\n{email}`. Any altered byte changes either the payload or the tag and
//! is refused; the tag is compared in constant time. The key is derived from `JWT_SECRET`
//! ([`derive_key`]), so no new secret is needed and rotating `JWT_SECRET` ends old links.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// Length of the HMAC-SHA256 tag at the start of a decoded token.
const TAG_LEN: usize = 32;

/// The label that makes the unsubscribe key differ from every other use of `JWT_SECRET`.
const KEY_LABEL: &[u8] = b"onboard unsubscribe v1";

/// What a valid token says: this address of this tenant asked to unsubscribe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unsubscribe {
    pub tenant_id: String,
    pub email: String,
}

/// A token that was not made by us with this key (altered, truncated or garbage).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("not a valid unsubscribe link")]
pub struct BadToken;

/// The unsubscribe signing key: `HMAC-SHA256(secret, "onboard unsubscribe v1")`.
pub fn derive_key(secret: &[u8]) -> [u8; 32] {
    let mut mac = HmacSha256::new_from_slice(secret).expect("any key length");
    mac.update(KEY_LABEL);
    mac.finalize().into_bytes().into()
}

fn mac(key: &[u8], payload: &[u8]) -> HmacSha256 {
    let mut mac = HmacSha256::new_from_slice(key).expect("any key length");
    mac.update(payload);
    mac
}

/// The token of `email` at `tenant_id` (deterministic: the same inputs give the same token).
pub fn token(key: &[u8], tenant_id: &str, email: &str) -> String {
    let payload = format!("{tenant_id}\n{email}");
    let mut bytes = mac(key, payload.as_bytes())
        .finalize()
        .into_bytes()
        .to_vec();
    bytes.extend_from_slice(payload.as_bytes());
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Checks a token made by [`token`] with `key` and says whom it unsubscribes.
pub fn verify(key: &[u8], token: &str) -> Result<Unsubscribe, BadToken> {
    // The engine refuses padding and non-zero trailing bits, so every character counts.
    let bytes = URL_SAFE_NO_PAD.decode(token).map_err(|_| BadToken)?;
    if bytes.len() <= TAG_LEN {
        return Err(BadToken);
    }
    let (tag, payload) = bytes.split_at(TAG_LEN);
    mac(key, payload).verify_slice(tag).map_err(|_| BadToken)?;
    let payload = std::str::from_utf8(payload).map_err(|_| BadToken)?;
    match payload.split_once('\n') {
        Some((tenant_id, email))
            if !tenant_id.is_empty() && !email.is_empty() && !email.contains('\n') =>
        {
            Ok(Unsubscribe {
                tenant_id: tenant_id.to_string(),
                email: email.to_string(),
            })
        }
        _ => Err(BadToken),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &[u8] = b"0123456789abcdef0123456789abcdef";
    const ALPHABET: &str = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

    #[test]
    fn a_token_round_trips() {
        let t = token(KEY, "tenant_01ABC", "alice@example.com");
        assert!(
            t.chars().all(|c| ALPHABET.contains(c)),
            "URL-safe, unpadded: {t}"
        );
        assert_eq!(
            verify(KEY, &t),
            Ok(Unsubscribe {
                tenant_id: "tenant_01ABC".into(),
                email: "alice@example.com".into(),
            })
        );
        assert_eq!(t, token(KEY, "tenant_01ABC", "alice@example.com"));
    }

    #[test]
    fn every_single_character_alteration_is_refused() {
        let t = token(KEY, "tenant_01ABC", "alice@example.com");
        for (i, original) in t.char_indices() {
            for replacement in ALPHABET.chars().chain(['=', '+', '/', '.', ' ']) {
                if replacement == original {
                    continue;
                }
                let mut altered = t.clone();
                altered.replace_range(i..i + 1, &replacement.to_string());
                assert_eq!(
                    verify(KEY, &altered),
                    Err(BadToken),
                    "position {i}: {original} -> {replacement}"
                );
            }
        }
        // Removing or adding a character is refused too.
        assert_eq!(verify(KEY, &t[..t.len() - 1]), Err(BadToken));
        assert_eq!(verify(KEY, &format!("{t}A")), Err(BadToken));
        assert_eq!(verify(KEY, &t[1..]), Err(BadToken));
    }

    #[test]
    fn every_single_byte_alteration_of_the_decoded_token_is_refused() {
        let bytes = URL_SAFE_NO_PAD
            .decode(token(KEY, "tenant_01ABC", "alice@example.com"))
            .unwrap();
        for i in 0..bytes.len() {
            for flip in [0x01u8, 0x80, 0xff] {
                let mut altered = bytes.clone();
                altered[i] ^= flip;
                assert_eq!(
                    verify(KEY, &URL_SAFE_NO_PAD.encode(&altered)),
                    Err(BadToken),
                    "byte {i} ^ {flip:#x}"
                );
            }
        }
    }

    #[test]
    fn a_payload_with_another_signature_is_refused() {
        let a = URL_SAFE_NO_PAD
            .decode(token(KEY, "tenant_A", "a@example.com"))
            .unwrap();
        let b = URL_SAFE_NO_PAD
            .decode(token(KEY, "tenant_B", "a@example.com"))
            .unwrap();
        // Tenant A's payload under tenant B's tag.
        let mut swapped = b[..TAG_LEN].to_vec();
        swapped.extend_from_slice(&a[TAG_LEN..]);
        assert_eq!(
            verify(KEY, &URL_SAFE_NO_PAD.encode(&swapped)),
            Err(BadToken)
        );
        // Tenant A's token signed with another key.
        let other = token(
            b"another key, not ours at all....",
            "tenant_A",
            "a@example.com",
        );
        assert_eq!(verify(KEY, &other), Err(BadToken));
        assert!(verify(b"another key, not ours at all....", &other).is_ok());
    }

    #[test]
    fn garbage_is_refused() {
        for t in [
            "",
            "x",
            "not a token",
            "AAAA",
            &"A".repeat(43),
            &"A".repeat(200),
            "%%%%",
            &URL_SAFE_NO_PAD.encode([0u8; 32]),
        ] {
            assert_eq!(verify(KEY, t), Err(BadToken), "{t:?}");
        }
        // A correctly signed payload that is not `tenant\nemail` is refused as well.
        for payload in ["no-newline", "\nb@example.com", "tenant_A\n", "a\nb\nc"] {
            let mut bytes = mac(KEY, payload.as_bytes())
                .finalize()
                .into_bytes()
                .to_vec();
            bytes.extend_from_slice(payload.as_bytes());
            assert_eq!(
                verify(KEY, &URL_SAFE_NO_PAD.encode(bytes)),
                Err(BadToken),
                "{payload:?}"
            );
        }
    }

    #[test]
    fn the_key_is_derived_from_the_secret_with_a_label() {
        let k = derive_key(b"a-long-random-production-secret");
        assert_eq!(k, derive_key(b"a-long-random-production-secret"));
        assert_ne!(k, derive_key(b"another-long-random-secret"));
        assert_ne!(&k[..], b"a-long-random-production-secret");
    }
}
