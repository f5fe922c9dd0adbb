//! Arbitrary signature, timestamp and id header values, for every scheme: verification must
//! answer (accept or a typed rejection) and never panic, and must never accept, since no input
//! here is signed with the secret.
#![no_main]

use http::{HeaderMap, HeaderName, HeaderValue};
use libfuzzer_sys::fuzz_target;
use tower_webhook::clock::ManualClock;
use tower_webhook::scheme::{Encoding, Scheme, SignedContent, TimestampUnit};
use tower_webhook::Verifier;

const NAMES: [&str; 13] = [
    "webhook-id",
    "webhook-timestamp",
    "webhook-signature",
    "svix-id",
    "svix-timestamp",
    "svix-signature",
    "stripe-signature",
    "x-hub-signature-256",
    "x-github-delivery",
    "x-slack-signature",
    "x-slack-request-timestamp",
    "x-shopify-hmac-sha256",
    "x-acme-signature",
];

fuzz_target!(|data: &[u8]| {
    // Input: a sequence of (name index, value) lines separated by 0x00, then the body after
    // 0x01 0x01.
    let (head, body) = match data.windows(2).position(|w| w == [1, 1]) {
        Some(i) => (&data[..i], &data[i + 2..]),
        None => (data, &b""[..]),
    };
    let mut headers = HeaderMap::new();
    for line in head.split(|&b| b == 0) {
        let Some((&index, value)) = line.split_first() else {
            continue;
        };
        let name = HeaderName::from_static(NAMES[usize::from(index) % NAMES.len()]);
        if let Ok(value) = HeaderValue::from_bytes(value) {
            headers.append(name, value);
        }
    }
    let custom = Scheme::custom("x-acme-signature")
        .prefix("sha256=")
        .encoding(Encoding::Base64)
        .signed_content(SignedContent::IdTimestampBody)
        .timestamp_header("webhook-timestamp", TimestampUnit::Milliseconds)
        .id_header("webhook-id")
        .build()
        .unwrap();
    for scheme in [
        Scheme::standard_webhooks(),
        Scheme::stripe(),
        Scheme::github(),
        Scheme::slack(),
        Scheme::shopify(),
        custom,
    ] {
        let verifier = Verifier::builder(scheme)
            .secret("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
            .clock(ManualClock::new(1_700_000_000))
            .build()
            .unwrap();
        if let Err(rejection) = verifier.verify(&headers, body) {
            let _ = (rejection.status(), rejection.code(), rejection.to_string());
        } else {
            panic!("accepted a request nobody signed");
        }
    }
});
