//! Interoperability with the `svix` crate, a real Standard Webhooks implementation: what it
//! signs verifies with this crate, and what this crate signs verifies with it, across random
//! secrets, ids, timestamps and bodies, including bodies that are not UTF-8.
//!
//! `svix` 2.x only handles UTF-8 payloads (its `sign` and `verify` return `InvalidPayload`
//! otherwise, see `Webhook::sign`). For other bodies this test checks both directions against
//! a reference HMAC computed here from the Standard Webhooks definition, and checks that
//! `svix` still refuses them, so a change on its side is noticed.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use http::{HeaderMap, HeaderValue};
use proptest::prelude::*;
use sha2::Sha256;
use svix::webhooks::{Webhook, WebhookError};
use tower_webhook::clock::ManualClock;
use tower_webhook::scheme::{Scheme, Signer};
use tower_webhook::Verifier;

/// `v1,<base64 HMAC-SHA256 of "{id}.{ts}.{body}">`, computed independently of both crates.
fn reference_signature(key: &[u8], id: &str, ts: u64, body: &[u8]) -> String {
    let mut message = format!("{id}.{ts}.").into_bytes();
    message.extend_from_slice(body);
    let mut mac = Hmac::<Sha256>::new_from_slice(key).unwrap();
    mac.update(&message);
    format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()))
}

fn verifier(secret: &str, now: u64) -> Verifier {
    Verifier::builder(Scheme::standard_webhooks())
        .secret(secret)
        .clock(ManualClock::new(now))
        .build()
        .unwrap()
}

fn svix_headers(id: &str, ts: u64, signature: &str) -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert("svix-id", HeaderValue::from_str(id).unwrap());
    headers.insert("svix-timestamp", HeaderValue::from(ts));
    headers.insert("svix-signature", HeaderValue::from_str(signature).unwrap());
    headers
}

fn body_strategy() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        // JSON-like UTF-8 text, including multi-byte characters.
        "\\PC{0,512}".prop_map(String::into_bytes),
        // Arbitrary bytes: mostly not UTF-8.
        proptest::collection::vec(any::<u8>(), 0..1024),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn svix_and_tower_webhook_agree(
        key in proptest::collection::vec(any::<u8>(), 1..64),
        id in "msg_[A-Za-z0-9]{1,40}",
        ts in 1_000_000_000u64..4_000_000_000,
        body in body_strategy(),
    ) {
        let secret = format!("whsec_{}", STANDARD.encode(&key));
        let reference = reference_signature(&key, &id, ts, &body);
        let svix = Webhook::new(&secret).unwrap();
        let ours = verifier(&secret, ts);
        let utf8 = std::str::from_utf8(&body).is_ok();

        // svix signs, we verify (under its svix-* header names).
        match svix.sign(&id, i64::try_from(ts).unwrap(), &body) {
            Ok(signature) => {
                prop_assert!(utf8);
                prop_assert_eq!(&signature, &reference);
                let verified = ours.verify(&svix_headers(&id, ts, &signature), &body).unwrap();
                prop_assert_eq!(verified.id(), Some(id.as_str()));
            }
            Err(WebhookError::InvalidPayload) => prop_assert!(!utf8),
            Err(other) => prop_assert!(false, "svix failed to sign: {other}"),
        }
        // Whatever svix can do, the reference signature verifies with us.
        prop_assert!(ours.verify(&svix_headers(&id, ts, &reference), &body).is_ok());

        // We sign, svix verifies (under the webhook-* names we send).
        let headers = Signer::new(&Scheme::standard_webhooks(), &secret)
            .unwrap()
            .sign(&id, ts, &body)
            .unwrap();
        prop_assert_eq!(headers["webhook-signature"].to_str().unwrap(), reference.as_str());
        match svix.verify_ignoring_timestamp(&body, &headers) {
            Ok(()) => prop_assert!(utf8),
            Err(WebhookError::InvalidPayload) => prop_assert!(!utf8),
            Err(other) => prop_assert!(false, "svix refused our signature: {other}"),
        }

        // And neither accepts the body with one bit flipped.
        if !body.is_empty() {
            let mut tampered = body.clone();
            let i = usize::try_from(ts).unwrap() % tampered.len();
            tampered[i] ^= 0x01;
            prop_assert!(ours.verify(&headers, &tampered).is_err());
            prop_assert!(svix.verify_ignoring_timestamp(&tampered, &headers).is_err());
        }
    }
}

/// The time check agrees too: svix's `verify` reads the system clock, so sign at "now".
#[test]
fn svix_accepts_our_fresh_signature_with_its_clock() {
    let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let headers = Signer::new(&Scheme::standard_webhooks(), secret)
        .unwrap()
        .sign("msg_now", now, br#"{"a":1}"#)
        .unwrap();
    Webhook::new(secret)
        .unwrap()
        .verify(br#"{"a":1}"#, &headers)
        .unwrap();
    let stale = Signer::new(&Scheme::standard_webhooks(), secret)
        .unwrap()
        .sign("msg_old", now - 3600, br#"{"a":1}"#)
        .unwrap();
    assert!(Webhook::new(secret)
        .unwrap()
        .verify(br#"{"a":1}"#, &stale)
        .is_err());
    assert!(verifier(secret, now).verify(&stale, br#"{"a":1}"#).is_err());
}
