//! Arbitrary timestamp values, correctly signed: the verifier must accept exactly the plain
//! decimal timestamps within the tolerance and refuse everything else, without panicking.
#![no_main]

use http::HeaderValue;
use libfuzzer_sys::fuzz_target;
use tower_webhook::clock::ManualClock;
use tower_webhook::scheme::{Scheme, Signer};
use tower_webhook::{Rejection, Verifier};

const NOW: u64 = 1_700_000_000;
const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(value) = HeaderValue::from_str(text) else {
        return;
    };
    let scheme = Scheme::standard_webhooks();
    let verifier = Verifier::builder(scheme.clone())
        .secret(SECRET)
        .clock(ManualClock::new(NOW))
        .build()
        .unwrap();
    // A plain timestamp: 1 to 19 ASCII digits, no leading zero (the documented rule; 20
    // digits are refused even when they would fit in a u64).
    let plain = text.parse::<u64>().ok().filter(|_| {
        text.len() <= 19
            && text.bytes().all(|b| b.is_ascii_digit())
            && !(text.len() > 1 && text.starts_with('0'))
    });
    // Sign with that timestamp, then put the fuzzed text in the header.
    let signed_ts = plain.unwrap_or(NOW);
    let mut headers = Signer::new(&scheme, SECRET)
        .unwrap()
        .sign("msg_1", signed_ts, b"{}")
        .unwrap();
    headers.insert("webhook-timestamp", value);
    let result = verifier.verify(&headers, b"{}");
    match plain {
        Some(ts) if ts.abs_diff(NOW) <= 300 => assert!(result.is_ok(), "{text:?}: {result:?}"),
        Some(_) => assert!(
            matches!(result, Err(Rejection::TimestampOutOfTolerance { .. })),
            "{text:?}"
        ),
        None => assert!(result.is_err(), "{text:?} accepted"),
    }
});
