//! Arbitrary secret text for every scheme: building a verifier and a signer answers (or a
//! configuration error) and never panics, and whatever signer builds, its verifier accepts.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tower_webhook::clock::ManualClock;
use tower_webhook::scheme::{Scheme, SecretEncoding, Signer};
use tower_webhook::Verifier;

fuzz_target!(|data: &[u8]| {
    let Ok(secret) = std::str::from_utf8(data) else {
        return;
    };
    let custom = |encoding| {
        Scheme::custom("x-sig")
            .secret_encoding(encoding)
            .build()
            .unwrap()
    };
    for scheme in [
        Scheme::standard_webhooks(),
        Scheme::stripe(),
        Scheme::github(),
        Scheme::slack(),
        Scheme::shopify(),
        custom(SecretEncoding::Hex),
        custom(SecretEncoding::Base64),
    ] {
        let verifier = Verifier::builder(scheme.clone())
            .secret(secret)
            .clock(ManualClock::new(1_700_000_000))
            .build();
        let signer = Signer::new(&scheme, secret);
        assert_eq!(
            verifier.is_ok(),
            signer.is_ok(),
            "verifier and signer disagree on {secret:?}"
        );
        if let (Ok(verifier), Ok(signer)) = (verifier, signer) {
            let headers = signer.sign("evt_1", 1_700_000_000, data).unwrap();
            assert!(verifier.verify(&headers, data).is_ok());
            // The secret must not show in Debug output, beyond what a verifier with another
            // secret prints anyway (a secret like `_sec` is part of a field name).
            let debug = format!("{verifier:?} {signer:?}");
            let other = Verifier::builder(scheme.clone())
                .secret_bytes(b"\x01")
                .clock(ManualClock::new(1_700_000_000))
                .build()
                .unwrap();
            let baseline = format!(
                "{other:?} {:?}",
                Signer::from_bytes(&scheme, b"\x01").unwrap()
            );
            assert!(
                !debug.contains(secret) || baseline.contains(secret),
                "secret in Debug"
            );
        }
    }
});
