//! Published vectors: real senders' signatures (`tests/data/senders.json`) and Project
//! Wycheproof's HMAC-SHA256 cases (`tests/data/wycheproof_hmac_sha256_test.json`), both copied
//! from the team's `shared/vectors/` and checked to stay in sync with it.

use std::path::Path;

use http::{HeaderMap, HeaderName, HeaderValue};
use serde_json::Value;
use tower_webhook::clock::ManualClock;
use tower_webhook::scheme::Scheme;
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
    for name in ["senders.json", "wycheproof_hmac_sha256_test.json"] {
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

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

/// Wycheproof cases through the two header encodings of body-only schemes: GitHub (hex) and
/// Shopify (base64). Truncated tags (`tagSize` 128) must all be refused.
#[test]
fn wycheproof_through_hex_and_base64_headers() {
    use base64::Engine as _;
    let wycheproof = data("wycheproof_hmac_sha256_test.json");
    let mut checked = 0;
    for group in wycheproof["testGroups"].as_array().unwrap() {
        let full_length = group["tagSize"].as_u64() == Some(256);
        for case in group["tests"].as_array().unwrap() {
            let key = unhex(case["key"].as_str().unwrap());
            let msg = unhex(case["msg"].as_str().unwrap());
            let tag = unhex(case["tag"].as_str().unwrap());
            let expect_valid = full_length && case["result"] == "valid";
            let id = format!("tc{}", case["tcId"]);
            let encodings: [(Scheme, &str, String); 2] = [
                (
                    Scheme::github(),
                    "x-hub-signature-256",
                    format!("sha256={}", case["tag"].as_str().unwrap()),
                ),
                (
                    Scheme::shopify(),
                    "x-shopify-hmac-sha256",
                    base64::engine::general_purpose::STANDARD.encode(&tag),
                ),
            ];
            for (scheme, header, value) in encodings {
                let verifier = Verifier::builder(scheme)
                    .secret_bytes(&key)
                    .build()
                    .unwrap();
                let mut headers = HeaderMap::new();
                headers.insert(header, HeaderValue::from_str(&value).unwrap());
                let result = verifier.verify(&headers, &msg);
                assert_eq!(
                    result.is_ok(),
                    expect_valid,
                    "{id} via {header}: {result:?}"
                );
                if !full_length {
                    assert!(
                        matches!(result, Err(Rejection::MalformedHeader { .. })),
                        "{id}"
                    );
                }
                checked += 1;
            }
        }
    }
    assert_eq!(checked, 2 * 174);
}
