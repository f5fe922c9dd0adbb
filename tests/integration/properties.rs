//! Properties of every scheme, over random bodies (not only UTF-8), secrets, ids and
//! timestamps: what a scheme's signer signs, its verifier accepts; flipping any single bit of
//! the body, the signed timestamp, the signed id or the tag makes verification fail.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use http::{HeaderMap, HeaderValue};
use proptest::prelude::*;
use tower_webhook::clock::ManualClock;
use tower_webhook::scheme::{Encoding, Scheme, SignedContent, Signer, TimestampUnit};
use tower_webhook::Verifier;

/// A scheme, the header holding its tag, how to cut that header into (before, tag, after),
/// how the tag is encoded, and which headers carry signed data.
struct Case {
    scheme: Scheme,
    tag_header: &'static str,
    split: fn(&str) -> (String, String, String),
    encoding: Encoding,
    timestamp_header: Option<&'static str>,
    signed_id_header: Option<&'static str>,
}

fn after(marker: &'static str) -> impl Fn(&str) -> (String, String, String) {
    move |v: &str| {
        let i = v.find(marker).unwrap() + marker.len();
        let end = v[i..].find(',').map_or(v.len(), |j| i + j);
        (v[..i].to_owned(), v[i..end].to_owned(), v[end..].to_owned())
    }
}

fn cases() -> Vec<Case> {
    let custom = Scheme::custom("x-acme-signature")
        .prefix("sha256=")
        .encoding(Encoding::Base64)
        .signed_content(SignedContent::IdTimestampBody)
        .timestamp_header("x-acme-timestamp", TimestampUnit::Milliseconds)
        .id_header("x-acme-id")
        .build()
        .unwrap();
    vec![
        Case {
            scheme: Scheme::standard_webhooks(),
            tag_header: "webhook-signature",
            split: |v| after("v1,")(v),
            encoding: Encoding::Base64,
            timestamp_header: Some("webhook-timestamp"),
            signed_id_header: Some("webhook-id"),
        },
        Case {
            scheme: Scheme::stripe(),
            tag_header: "stripe-signature",
            split: |v| after("v1=")(v),
            encoding: Encoding::Hex,
            timestamp_header: Some("stripe-signature"),
            signed_id_header: None,
        },
        Case {
            scheme: Scheme::github(),
            tag_header: "x-hub-signature-256",
            split: |v| after("sha256=")(v),
            encoding: Encoding::Hex,
            timestamp_header: None,
            signed_id_header: None,
        },
        Case {
            scheme: Scheme::slack(),
            tag_header: "x-slack-signature",
            split: |v| after("v0=")(v),
            encoding: Encoding::Hex,
            timestamp_header: Some("x-slack-request-timestamp"),
            signed_id_header: None,
        },
        Case {
            scheme: Scheme::shopify(),
            tag_header: "x-shopify-hmac-sha256",
            split: |v| (String::new(), v.to_owned(), String::new()),
            encoding: Encoding::Base64,
            timestamp_header: None,
            signed_id_header: None,
        },
        Case {
            scheme: custom,
            tag_header: "x-acme-signature",
            split: |v| after("sha256=")(v),
            encoding: Encoding::Base64,
            timestamp_header: Some("x-acme-timestamp"),
            signed_id_header: Some("x-acme-id"),
        },
    ]
}

fn decode(encoding: Encoding, text: &str) -> Vec<u8> {
    match encoding {
        Encoding::Hex => (0..text.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap())
            .collect(),
        _ => STANDARD.decode(text).unwrap(),
    }
}

fn encode(encoding: Encoding, bytes: &[u8]) -> String {
    match encoding {
        Encoding::Hex => bytes.iter().map(|b| format!("{b:02x}")).collect(),
        _ => STANDARD.encode(bytes),
    }
}

/// The header value with bit `bit` of one byte flipped, if it is still a header value. Only
/// the bytes of the `t=` value are flipped in Stripe's header (the tag there is tested on its
/// decoded bytes: `a` and `A` are the same hex digit).
fn flip_text(headers: &HeaderMap, name: &str, index: usize, bit: u8) -> Option<HeaderMap> {
    let mut bytes = headers[name].as_bytes().to_vec();
    let (start, len) = match name {
        "stripe-signature" => {
            let end = bytes.iter().position(|&b| b == b',').unwrap();
            (2, end - 2)
        }
        _ => (0, bytes.len()),
    };
    let i = start + index % len;
    bytes[i] ^= 1 << (bit % 8);
    let mut out = headers.clone();
    out.insert(
        http::HeaderName::try_from(name).unwrap(),
        HeaderValue::from_bytes(&bytes).ok()?,
    );
    Some(out)
}

const NOW: u64 = 1_700_000_000;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn sign_then_verify_and_every_bit_flip_fails(
        key in proptest::collection::vec(any::<u8>(), 1..80),
        id in "[A-Za-z0-9_.-]{1,48}",
        skew in -300i64..=300,
        body in proptest::collection::vec(any::<u8>(), 0..600),
        index in any::<usize>(),
        bit in any::<u8>(),
    ) {
        let ts = NOW.checked_add_signed(skew).unwrap();
        for case in cases() {
            let name = case.scheme.kind().as_str();
            let verifier = Verifier::builder(case.scheme.clone())
                .secret_bytes(&key)
                .clock(ManualClock::new(NOW))
                .build()
                .unwrap();
            let headers = Signer::from_bytes(&case.scheme, &key).unwrap().sign(&id, ts, &body).unwrap();
            prop_assert!(verifier.verify(&headers, &body).is_ok(), "{} refused its own signature", name);

            if !body.is_empty() {
                let mut flipped = body.clone();
                let i = index % flipped.len();
                flipped[i] ^= 1 << (bit % 8);
                prop_assert!(verifier.verify(&headers, &flipped).is_err(), "{}: body bit flip accepted", name);
            }

            let (before, tag, rest) = (case.split)(headers[case.tag_header].to_str().unwrap());
            let mut raw = decode(case.encoding, &tag);
            let at = index % raw.len();
            raw[at] ^= 1 << (bit % 8);
            let mut forged = headers.clone();
            forged.insert(case.tag_header, HeaderValue::from_str(&format!("{before}{}{rest}", encode(case.encoding, &raw))).unwrap());
            prop_assert!(verifier.verify(&forged, &body).is_err(), "{}: tag bit flip accepted", name);

            for signed in [case.timestamp_header, case.signed_id_header].into_iter().flatten() {
                if let Some(forged) = flip_text(&headers, signed, index, bit) {
                    prop_assert!(verifier.verify(&forged, &body).is_err(), "{}: bit flip in {} accepted", name, signed);
                }
            }
        }
    }
}
