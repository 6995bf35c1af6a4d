//! Stripe-Signature verification and signing, exactly as Stripe's official SDKs do it.
//!
//! Vectors: `tests/fixtures/contracts/stripe_webhook_signatures.json`. The key is the whole `whsec_…`
//! string (UTF-8 bytes, not base64-decoded), the signed message is `t + "." + raw body`, any `v1`
//! may match (one per active secret during a roll), `v0` and unknown schemes are ignored.

use hmac::{Hmac, Mac};
use rand::Rng;
use sha2::Sha256;
use subtle::ConstantTimeEq;

/// Maximum age of a webhook delivery, in seconds (Stripe's SDK default).
pub const DEFAULT_TOLERANCE_SECS: i64 = 300;

/// Why a `Stripe-Signature` header was refused; messages are stripe-python's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    /// The header has no usable `t=` element.
    #[error("Unable to extract timestamp and signatures from header")]
    Malformed,
    /// The header carries no `v1` signature (a `v0` alone is never enough).
    #[error("No signatures found with expected scheme v1")]
    NoV1Signature,
    /// No `v1` signature matches the payload under our secret.
    #[error("No signatures found matching the expected signature for payload")]
    Mismatch,
    /// The signature is correct but older than the tolerance (possible replay).
    #[error("Timestamp outside the tolerance zone")]
    OutsideTolerance,
    /// The secret is empty: fail closed rather than accept anything.
    #[error("no webhook secret is configured")]
    NoSecret,
}

type HmacSha256 = Hmac<Sha256>;

/// The scheme Stripe signs live and test deliveries with; `v0` is a fake test-mode signature.
const EXPECTED_SCHEME: &str = "v1";

/// Verifies; returns the header's timestamp on success.
///
/// `payload` must be the raw request body: a re-serialised JSON value has different bytes.
/// `now` is the verifier's clock in unix seconds. Checks run in stripe-python's order: header
/// shape, presence of `v1`, signature, then age.
///
/// Policy: only *old* timestamps are refused (`now - t > tolerance_secs`); a timestamp in the
/// future is accepted, as stripe-python and stripe-node do (async-stripe refuses `|now - t|`
/// beyond the tolerance instead). A future `t` cannot be forged without the secret, and refusing
/// it would only turn a sender/receiver clock skew into lost deliveries. Unlike the SDKs, a
/// tolerance of 0 does not switch the age check off: it means "no older than now".
pub fn verify(
    payload: &[u8],
    header: &str,
    secret: &str,
    now: i64,
    tolerance_secs: i64,
) -> Result<i64, SignatureError> {
    if secret.is_empty() {
        return Err(SignatureError::NoSecret);
    }
    let (timestamp, signatures) = parse_header(header)?;
    if signatures.is_empty() {
        return Err(SignatureError::NoV1Signature);
    }
    let expected = expected_signature(payload, secret, timestamp);
    // Check every candidate without stopping early, so timing does not reveal which one matched.
    let matched = signatures
        .iter()
        .fold(subtle::Choice::from(0), |acc, candidate| {
            acc | expected.as_bytes().ct_eq(candidate.as_bytes())
        });
    if !bool::from(matched) {
        return Err(SignatureError::Mismatch);
    }
    // Saturating: an absurd `t` (i64::MIN) must be refused, not overflow.
    if now.saturating_sub(timestamp) > tolerance_secs {
        return Err(SignatureError::OutsideTolerance);
    }
    Ok(timestamp)
}

/// Builds a header `t=<timestamp>,v1=<hex>` the way Stripe does (used by our dev checkout and tests).
pub fn sign(payload: &[u8], secret: &str, timestamp: i64) -> String {
    format!(
        "t={timestamp},{EXPECTED_SCHEME}={}",
        expected_signature(payload, secret, timestamp)
    )
}

/// A fresh random webhook secret `whsec_` + 32 random alphanumerics (dev mode when none configured).
pub fn generate_secret() -> String {
    let random: String = rand::rng()
        .sample_iter(rand::distr::Alphanumeric)
        .take(32)
        .map(char::from)
        .collect();
    format!("whsec_{random}")
}

/// Splits the header like the SDKs: on ',' then on the first '=', without trimming, so
/// `" v1"` is not `"v1"`. The first `t` wins (stripe-python); Stripe never sends two.
fn parse_header(header: &str) -> Result<(i64, Vec<&str>), SignatureError> {
    let mut timestamp = None;
    let mut signatures = Vec::new();
    for item in header.split(',') {
        let Some((key, value)) = item.split_once('=') else {
            continue;
        };
        if key == "t" && timestamp.is_none() {
            timestamp = Some(
                value
                    .parse::<i64>()
                    .map_err(|_| SignatureError::Malformed)?,
            );
        } else if key == EXPECTED_SCHEME {
            signatures.push(value);
        }
    }
    let timestamp = timestamp.ok_or(SignatureError::Malformed)?;
    Ok((timestamp, signatures))
}

/// Lowercase hex of HMAC-SHA256(key = secret bytes, message = "<t>.<payload>").
fn expected_signature(payload: &[u8], secret: &str, timestamp: i64) -> String {
    let Ok(mut mac) = HmacSha256::new_from_slice(secret.as_bytes()) else {
        unreachable!("HMAC accepts keys of any length");
    };
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(payload);
    hex::encode(mac.finalize().into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    const CONTRACT: &str = include_str!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/contracts/stripe_webhook_signatures.json"
    ));

    fn field<'a>(case: &'a Value, name: &str, key: &str) -> &'a Value {
        case.get(key)
            .unwrap_or_else(|| panic!("case {name}: field `{key}` missing from the contract"))
    }

    #[test]
    fn every_contract_vector_gives_the_expected_outcome() {
        let contract: Value = serde_json::from_str(CONTRACT).expect("contract is valid JSON");
        let cases = contract["cases"]
            .as_array()
            .expect("contract has a cases array");
        assert!(!cases.is_empty(), "contract has no cases");

        let mut failures = Vec::new();
        for case in cases {
            let name = field(case, "<unnamed>", "name")
                .as_str()
                .expect("name is a string");
            let secret = field(case, name, "secret")
                .as_str()
                .expect("secret is a string");
            let payload = field(case, name, "payload")
                .as_str()
                .expect("payload is a string");
            let header = field(case, name, "header")
                .as_str()
                .expect("header is a string");
            let now = field(case, name, "now")
                .as_i64()
                .expect("now is an integer");
            let tolerance = field(case, name, "tolerance")
                .as_i64()
                .expect("tolerance is an integer");
            let expected = field(case, name, "expected");
            let valid = field(expected, name, "valid")
                .as_bool()
                .expect("valid is a bool");

            let got = verify(payload.as_bytes(), header, secret, now, tolerance);
            match (valid, &got) {
                (true, Ok(_)) => {}
                (false, Err(err)) => {
                    let want = field(expected, name, "error")
                        .as_str()
                        .expect("error is a string");
                    if err.to_string() != want {
                        failures.push(format!(
                            "{name}: expected error {want:?}, got {err:?} ({err})"
                        ));
                    }
                }
                (true, Err(err)) => {
                    failures.push(format!("{name}: expected valid, got {err:?} ({err})"));
                }
                (false, Ok(t)) => {
                    let want = expected.get("error").and_then(Value::as_str).unwrap_or("?");
                    failures.push(format!("{name}: expected error {want:?}, got Ok({t})"));
                }
            }
        }
        assert!(
            failures.is_empty(),
            "{} of {} contract cases failed:\n{}",
            failures.len(),
            cases.len(),
            failures.join("\n")
        );
    }

    #[test]
    fn signed_header_verifies_and_returns_its_timestamp() {
        let secret = generate_secret();
        let payload = br#"{"id":"evt_1","type":"checkout.session.completed"}"#;
        let header = sign(payload, &secret, 1_700_000_000);

        assert!(
            header.starts_with("t=1700000000,v1="),
            "header was {header}"
        );
        assert_eq!(
            verify(
                payload,
                &header,
                &secret,
                1_700_000_010,
                DEFAULT_TOLERANCE_SECS
            ),
            Ok(1_700_000_000)
        );
        assert_eq!(
            verify(
                b"{}",
                &header,
                &secret,
                1_700_000_010,
                DEFAULT_TOLERANCE_SECS
            ),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn sign_matches_the_contract_header() {
        let payload = "{\n  \"id\": \"evt_test_webhook\",\n  \"object\": \"event\"\n}";
        assert_eq!(
            sign(payload.as_bytes(), "whsec_test_secret", 1_700_000_000),
            "t=1700000000,v1=4f1cd7feda9826e746b7d482c4badebb657398df1099e1046364f6196a230150"
        );
    }

    #[test]
    fn empty_secret_fails_closed() {
        // Even a header signed with the empty key must not pass.
        let header = sign(b"{}", "", 1_700_000_000);
        assert_eq!(
            verify(b"{}", &header, "", 1_700_000_000, DEFAULT_TOLERANCE_SECS),
            Err(SignatureError::NoSecret)
        );
    }

    #[test]
    fn extreme_timestamp_is_refused_without_overflow() {
        let secret = "whsec_test_secret";
        let header = sign(b"{}", secret, i64::MIN);
        assert_eq!(
            verify(
                b"{}",
                &header,
                secret,
                1_700_000_000,
                DEFAULT_TOLERANCE_SECS
            ),
            Err(SignatureError::OutsideTolerance)
        );
    }

    #[test]
    fn generated_secrets_have_the_stripe_shape_and_differ() {
        let a = generate_secret();
        let b = generate_secret();
        let random = a.strip_prefix("whsec_").expect("whsec_ prefix");
        assert_eq!(random.len(), 32);
        assert!(random.chars().all(|c| c.is_ascii_alphanumeric()), "{a}");
        assert_ne!(a, b);
    }
}
