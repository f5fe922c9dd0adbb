//! Standard Webhooks asymmetric signatures (`v1a`) against an independent Ed25519
//! implementation (`ed25519-compact`): what either signs, the other verifies; a flipped bit
//! fails; and the verifier mixes `whsec_` secrets with `whpk_` public keys.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use ed25519_compact::{KeyPair, Seed};
use http::{HeaderMap, HeaderValue};
use proptest::prelude::*;
use tower_webhook::clock::ManualClock;
use tower_webhook::scheme::{Scheme, Signer};
use tower_webhook::{ConfigError, Rejection, Verifier};

const WHSEC: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

fn keys(seed: [u8; 32]) -> (String, String, KeyPair) {
    let pair = KeyPair::from_seed(Seed::new(seed));
    let whsk = format!("whsk_{}", STANDARD.encode(seed));
    let whpk = format!("whpk_{}", STANDARD.encode(*pair.pk));
    (whsk, whpk, pair)
}

fn verifier(secrets: &[&str], now: u64) -> Verifier {
    Verifier::builder(Scheme::standard_webhooks())
        .secrets(secrets)
        .clock(ManualClock::new(now))
        .build()
        .unwrap()
}

/// The headers of a delivery whose signature header is `signature`.
fn delivery(id: &str, ts: u64, signature: &str) -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert("webhook-id", HeaderValue::from_str(id).unwrap());
    headers.insert("webhook-timestamp", HeaderValue::from(ts));
    headers.insert(
        "webhook-signature",
        HeaderValue::from_str(signature).unwrap(),
    );
    headers
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn either_implementation_verifies_what_the_other_signs(
        seed in any::<[u8; 32]>(),
        body in proptest::collection::vec(any::<u8>(), 0..600),
        id in "[a-zA-Z0-9_]{1,32}",
        ts in 1u64..4_000_000_000,
        bit in any::<usize>(),
    ) {
        let (whsk, whpk, pair) = keys(seed);
        let message = [format!("{id}.{ts}.").as_bytes(), &body].concat();

        // Ours signs; theirs verifies.
        let ours = Signer::new(&Scheme::standard_webhooks(), &whsk).unwrap().sign(&id, ts, &body).unwrap();
        let text = ours["webhook-signature"].to_str().unwrap().strip_prefix("v1a,").unwrap();
        let signature = ed25519_compact::Signature::from_slice(&STANDARD.decode(text).unwrap()).unwrap();
        prop_assert!(pair.pk.verify(&message, &signature).is_ok());

        // Theirs signs; ours verifies, beside an HMAC secret.
        let theirs = pair.sk.sign(&message, None);
        let headers = delivery(&id, ts, &format!("v1a,{}", STANDARD.encode(*theirs)));
        let verified = verifier(&[WHSEC, &whpk], ts).verify(&headers, &body);
        prop_assert_eq!(verified.map(|v| v.key_index()), Ok(1));

        // One flipped bit of the body, or of the signature, fails.
        if !body.is_empty() {
            let mut tampered = body.clone();
            tampered[bit % body.len()] ^= 1 << (bit % 8);
            prop_assert_eq!(
                verifier(&[&whpk], ts).verify(&headers, &tampered).unwrap_err(),
                Rejection::SignatureMismatch
            );
        }
        let mut flipped = *theirs;
        flipped[bit % 64] ^= 1 << (bit % 8);
        let headers = delivery(&id, ts, &format!("v1a,{}", STANDARD.encode(flipped)));
        prop_assert_eq!(
            verifier(&[&whpk], ts).verify(&headers, &body).unwrap_err(),
            Rejection::SignatureMismatch
        );
    }
}

#[test]
fn hmac_and_ed25519_entries_each_meet_their_keys() {
    let (whsk, whpk, _) = keys([9; 32]);
    let ts = 1_700_000_000;
    let body = b"{}";
    let hmac = Signer::new(&Scheme::standard_webhooks(), WHSEC)
        .unwrap()
        .sign("msg_1", ts, body)
        .unwrap();
    let ed = Signer::new(&Scheme::standard_webhooks(), &whsk)
        .unwrap()
        .sign("msg_1", ts, body)
        .unwrap();
    let both = format!(
        "{} {}",
        hmac["webhook-signature"].to_str().unwrap(),
        ed["webhook-signature"].to_str().unwrap()
    );
    let both = delivery("msg_1", ts, &both);
    // Any one valid entry of either kind passes; the key that matched is named.
    assert_eq!(
        verifier(&[WHSEC, &whpk], ts)
            .verify(&both, body)
            .unwrap()
            .key_index(),
        0
    );
    assert_eq!(
        verifier(&[&whpk, WHSEC], ts)
            .verify(&both, body)
            .unwrap()
            .key_index(),
        1
    );
    assert_eq!(
        verifier(&[&whpk], ts)
            .verify(&both, body)
            .unwrap()
            .key_index(),
        0
    );
    // An entry of a kind the verifier has no key for is skipped, even malformed.
    let short = delivery(
        "msg_1",
        ts,
        &format!("v1a,AAAA {}", hmac["webhook-signature"].to_str().unwrap()),
    );
    assert!(verifier(&[WHSEC], ts).verify(&short, body).is_ok());
    assert!(matches!(
        verifier(&[WHSEC, &whpk], ts).verify(&short, body),
        Err(Rejection::MalformedHeader { .. })
    ));
    let only_v1 = hmac;
    assert_eq!(
        verifier(&[&whpk], ts).verify(&only_v1, body).unwrap_err(),
        Rejection::NoSupportedSignature
    );
    // Stale is stale, whatever the kind.
    assert!(matches!(
        verifier(&[&whpk], ts + 3_600).verify(&ed, body),
        Err(Rejection::TimestampOutOfTolerance { .. })
    ));
}

#[test]
fn keys_go_where_they_belong() {
    let (whsk, whpk, _) = keys([3; 32]);
    // A seed is not a verifier's key, nor a public key a signer's.
    assert!(matches!(
        Verifier::builder(Scheme::standard_webhooks())
            .secret(&whsk)
            .build(),
        Err(ConfigError::InvalidSecret { index: 0, .. })
    ));
    assert!(Signer::new(&Scheme::standard_webhooks(), &whpk).is_err());
    // Other schemes take the text as an HMAC secret, as their senders do.
    assert!(Verifier::builder(Scheme::stripe())
        .secret(&whpk)
        .build()
        .is_ok());
}
