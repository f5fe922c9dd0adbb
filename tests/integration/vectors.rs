//! Published vectors: real senders' signatures (`tests/data/senders.json`), the Standard
//! Webhooks reference library's Ed25519 cases (`tests/data/standard_webhooks_v1a.json`), and the copies of
//! the team's `shared/vectors/` checked to stay in sync with it. Project Wycheproof's
//! HMAC-SHA256 cases run through every sender's header encoding over TCP in
//! `tests/adversarial/signatures.rs`.

use std::path::Path;

use http::{HeaderMap, HeaderName, HeaderValue};
use serde_json::Value;
use tower_webhook::clock::ManualClock;
use tower_webhook::scheme::{Scheme, Signer};
use tower_webhook::{Rejection, Verifier};

fn data(name: &str) -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(name);
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

fn scheme(name: &str) -> Scheme {
    match name {
        "standard-webhooks" => Scheme::standard_webhooks(),
        "stripe" => Scheme::stripe(),
        "github" => Scheme::github(),
        "slack" => Scheme::slack(),
        "shopify" => Scheme::shopify(),
        other => panic!("vector for unknown scheme {other}"),
    }
}

#[test]
fn data_files_match_the_shared_vectors() {
    let shared = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/vectors");
    if !shared.is_dir() {
        eprintln!("no ../shared/vectors beside the checkout; sync not checked");
        return;
    }
    for name in [
        "senders.json",
        "wycheproof_hmac_sha256_test.json",
        "standard_webhooks_v1a.json",
    ] {
        let ours = std::fs::read(
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("tests/data")
                .join(name),
        );
        let theirs = std::fs::read(shared.join(name));
        assert_eq!(
            ours.unwrap(),
            theirs.unwrap(),
            "tests/data/{name} is out of sync"
        );
    }
}

#[test]
fn every_sender_vector() {
    let vectors = data("senders.json");
    let cases = vectors["cases"].as_array().unwrap();
    assert!(cases.len() >= 4);
    for case in cases {
        let name = case["scheme"].as_str().unwrap();
        let mut headers = HeaderMap::new();
        for (k, v) in case["headers"].as_object().unwrap() {
            headers.append(
                HeaderName::try_from(k.as_str()).unwrap(),
                HeaderValue::from_str(v.as_str().unwrap()).unwrap(),
            );
        }
        let body = case["body"].as_str().unwrap().as_bytes();
        // A scheme without a timestamp must verify whatever the clock says.
        let now = case["now"].as_u64().unwrap_or(4_000_000_000);
        let verifier = Verifier::builder(scheme(name))
            .secret(case["secret"].as_str().unwrap())
            .clock(ManualClock::new(now))
            .build()
            .unwrap();
        let result = verifier.verify(&headers, body);
        if case["valid"].as_bool().unwrap() {
            let verified = result.unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(verified.scheme().as_str(), name);
            if let Some(id) = case["headers"]
                .get("webhook-id")
                .or(case["headers"].get("x-github-delivery"))
            {
                assert_eq!(verified.id(), id.as_str());
            }
            // The same delivery with one body byte changed is refused.
            let mut tampered = body.to_vec();
            tampered[0] ^= 1;
            assert_eq!(
                verifier.verify(&headers, &tampered).unwrap_err(),
                Rejection::SignatureMismatch
            );
        } else {
            assert_eq!(result.unwrap_err(), Rejection::SignatureMismatch, "{name}");
        }
    }
}

/// The headers of a vector case.
fn headers_of(case: &Value) -> HeaderMap {
    let mut headers = HeaderMap::new();
    for (k, v) in case["headers"].as_object().unwrap() {
        headers.append(
            HeaderName::try_from(k.as_str()).unwrap(),
            HeaderValue::from_str(v.as_str().unwrap()).unwrap(),
        );
    }
    headers
}

#[test]
fn standard_webhooks_ed25519_vectors() {
    let vectors = data("standard_webhooks_v1a.json");
    let cases = vectors["cases"].as_array().unwrap();
    assert!(cases.len() >= 3);
    for case in cases {
        let headers = headers_of(case);
        let body = case["body"].as_str().unwrap().as_bytes();
        let public = case["public"].as_str().unwrap();
        let verifier = |secrets: &[&str]| {
            Verifier::builder(Scheme::standard_webhooks())
                .secrets(secrets)
                .clock(ManualClock::new(case["now"].as_u64().unwrap()))
                .build()
                .unwrap()
        };
        // Beside an HMAC secret that matches nothing: the public key is the second key.
        let verifier = verifier(&["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", public]);
        let result = verifier.verify(&headers, body);
        let signature = case["headers"]["webhook-signature"].as_str().unwrap();
        if case["valid"].as_bool().unwrap() {
            let verified = result.unwrap();
            assert_eq!(verified.key_index(), 1);
            assert_eq!(verified.id(), case["headers"]["webhook-id"].as_str());
            // The reference signer's seed signs the same bytes the same way (Ed25519 is
            // deterministic).
            let signer = Signer::new(
                &Scheme::standard_webhooks(),
                case["secret"].as_str().unwrap(),
            )
            .unwrap();
            let id = case["headers"]["webhook-id"].as_str().unwrap();
            let ours = signer
                .sign(id, case["now"].as_u64().unwrap(), body)
                .unwrap();
            assert_eq!(ours["webhook-signature"], signature);
        } else if signature.len() != "v1a,".len() + 88 {
            // Not 64 bytes: malformed, like a short v1 tag.
            assert!(
                matches!(result, Err(Rejection::MalformedHeader { .. })),
                "{result:?}"
            );
        } else {
            assert_eq!(result.unwrap_err(), Rejection::SignatureMismatch);
        }
        // A verifier without a public key skips the v1a entry like an unknown version.
        let hmac_only = Verifier::builder(Scheme::standard_webhooks())
            .secret("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
            .clock(ManualClock::new(case["now"].as_u64().unwrap()))
            .build()
            .unwrap();
        assert_eq!(
            hmac_only.verify(&headers, body).unwrap_err(),
            Rejection::NoSupportedSignature
        );
    }
}
