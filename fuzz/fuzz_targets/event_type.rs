//! Arbitrary signed bodies (and type headers) for every sender: reading the event type never
//! panics, and a type it gives is 1 to 256 visible ASCII characters.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use tower_webhook::clock::ManualClock;
use tower_webhook::scheme::{Scheme, Signer};
use tower_webhook::Verifier;

const NOW: u64 = 1_700_000_000;

fuzz_target!(|data: &[u8]| {
    // The first byte picks a header value's length; the rest is the body.
    let (header, body) = match data.split_first() {
        Some((&n, rest)) => rest.split_at(usize::from(n).min(rest.len()) / 8),
        None => return,
    };
    let custom = Scheme::custom("x-sig").type_field("event").build().unwrap();
    for scheme in [
        Scheme::stripe(),
        Scheme::slack(),
        Scheme::github(),
        Scheme::shopify(),
        custom,
    ] {
        let verifier = Verifier::builder(scheme.clone())
            .secret("fuzz")
            .clock(ManualClock::new(NOW))
            .build()
            .unwrap();
        let mut headers = Signer::new(&scheme, "fuzz")
            .unwrap()
            .sign("evt", NOW, body)
            .unwrap();
        if let Ok(value) = http::HeaderValue::from_bytes(header) {
            headers.insert("x-github-event", value.clone());
            headers.insert("x-shopify-topic", value);
        }
        let verified = verifier
            .verify(&headers, body)
            .unwrap()
            .with_body(Bytes::copy_from_slice(body));
        if let Some(ty) = verified.event_type() {
            assert!(!ty.is_empty() && ty.len() <= 256 * 2 + 1, "{ty:?}");
            assert!(ty.bytes().all(|b| (0x21..0x7f).contains(&b)), "{ty:?}");
        }
    }
});
