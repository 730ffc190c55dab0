//! The generic webhook's signature: `X-Reflexion-Signature: sha256=HEX`, the HMAC-SHA256 under the shared secret of
//! `TIMESTAMP.BODY`, with `TIMESTAMP` (Unix seconds) sent as `X-Reflexion-Timestamp`. Signing the timestamp lets a
//! receiver refuse a replayed request (older than a few minutes) as well as a forged one, as Slack's and Stripe's
//! schemes do.

use hmac::{Hmac, Mac};
use sha2::Sha256;

pub const SIGNATURE_HEADER: &str = "x-reflexion-signature";
pub const TIMESTAMP_HEADER: &str = "x-reflexion-timestamp";
/// The notice's id: the same on every retry, so a receiver can drop a second delivery.
pub const DELIVERY_HEADER: &str = "x-reflexion-delivery";
pub const EVENT_HEADER: &str = "x-reflexion-event";

/// Shortest shared secret accepted: 128 bits.
pub const MIN_SECRET_BYTES: usize = 16;

/// `sha256=HEX` for `body` sent at `timestamp`.
pub fn signature(secret: &[u8], timestamp: i64, body: &[u8]) -> String {
    // HMAC takes a key of any length; this cannot fail.
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret) else {
        unreachable!("HMAC accepts every key length")
    };
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    let hex: String = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("sha256={hex}")
}

/// What a receiver does: true when `header` is the signature of `body` at `timestamp`, compared in constant time.
pub fn verify(secret: &[u8], timestamp: i64, body: &[u8], header: &str) -> bool {
    let want = signature(secret, timestamp, body);
    let (a, b) = (want.as_bytes(), header.as_bytes());
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |d, (x, y)| d | (x ^ y)) == 0
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn matches_a_known_vector_and_refuses_changes() {
        // echo -n '1700000000.{"a":1}' | openssl dgst -sha256 -hmac 'a-shared-secret-of-32-bytes-----'
        let secret = b"a-shared-secret-of-32-bytes-----";
        let sig = signature(secret, 1_700_000_000, br#"{"a":1}"#);
        assert_eq!(
            sig,
            "sha256=b7f4c8ec534d5553226c57285cc5b2afb6e464664f1cded01fc8160dbe0ce736"
        );
        assert!(verify(secret, 1_700_000_000, br#"{"a":1}"#, &sig));
        assert!(!verify(secret, 1_700_000_001, br#"{"a":1}"#, &sig));
        assert!(!verify(secret, 1_700_000_000, br#"{"a":2}"#, &sig));
        assert!(!verify(
            b"another-secret-of-32-bytes------",
            1_700_000_000,
            br#"{"a":1}"#,
            &sig
        ));
        assert!(!verify(secret, 1_700_000_000, br#"{"a":1}"#, "sha256=00"));
    }
}
