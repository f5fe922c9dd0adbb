//! Timestamps: the tolerance's edges in both directions, and absurd, signed, padded and
//! overflowing values, each correctly signed over its exact text so that the timestamp is the
//! only thing wrong. `.ci/test` also runs this module in a release build.

use std::time::Duration;

use tower_webhook::clock::ManualClock;
use tower_webhook::Verifier;

use super::common::{raw_post, serve};
use super::{check, verified_app, verifier, Expect, Sender, KEY, NOW};

const TIMESTAMPED: [Sender; 4] = [
    Sender::Standard,
    Sender::Stripe,
    Sender::Slack,
    Sender::Acme,
];

/// Sends a delivery signed over the timestamp text `ts` and checks the answer.
async fn deliver(sender: Sender, verifier: Verifier, cases: &[(String, Expect)]) {
    let (router, calls) = verified_app(verifier);
    let addr = serve(router).await;
    let body = br#"{"id":"evt_ts"}"#;
    for (ts, expect) in cases {
        let lines = sender.sign(KEY, "msg_ts", ts, body);
        let what = format!("{sender:?} at {ts:?}");
        check(
            addr,
            &calls,
            &raw_post("/hook", &lines, body),
            body,
            *expect,
            &what,
        )
        .await;
    }
}

#[tokio::test]
async fn the_tolerance_is_inclusive_and_symmetric() {
    let out = Expect::Refused(401, "timestamp_out_of_tolerance");
    for sender in TIMESTAMPED {
        let at = |secs: u64, expect| (sender.timestamp(secs), expect);
        let mut cases = vec![
            at(NOW, Expect::Accepted),
            at(NOW - 300, Expect::Accepted),
            at(NOW + 300, Expect::Accepted),
            at(NOW - 301, out),
            at(NOW + 301, out),
            at(0, out),
            at(1, out),
        ];
        if sender == Sender::Acme {
            // Milliseconds count in whole seconds, rounded down.
            let ms = NOW * 1000;
            cases.extend([
                ((ms - 300_000).to_string(), Expect::Accepted),
                ((ms - 300_001).to_string(), out),
                ((ms + 300_999).to_string(), Expect::Accepted),
                ((ms + 301_000).to_string(), out),
            ]);
        }
        deliver(sender, verifier(sender), &cases).await;
    }
}

#[tokio::test]
async fn absurd_signed_padded_and_overflowing_values() {
    let out = Expect::Refused(401, "timestamp_out_of_tolerance");
    let malformed = Expect::Refused(400, "malformed_header");
    for sender in TIMESTAMPED {
        let now = sender.timestamp(NOW);
        let cases = [
            // The largest value the parser takes (19 digits) and the largest u64.
            ("9999999999999999999".to_owned(), out),
            (u64::MAX.to_string(), malformed),
            ("18446744073709551616".to_owned(), malformed),
            ("99999999999999999999999999999999".to_owned(), malformed),
            (format!("+{now}"), malformed),
            (format!("-{now}"), malformed),
            ("-1".to_owned(), malformed),
            (format!("0{now}"), malformed),
            (format!("00000000000{now}"), malformed),
            (format!("{now}.0"), malformed),
            (format!("{now}e0"), malformed),
            ("1.7e9".to_owned(), malformed),
            ("0x6553f100".to_owned(), malformed),
            ("".to_owned(), malformed),
            ("0".to_owned(), out),
            ("１７００００００００".to_owned(), malformed),
            (format!("{}_{}", &now[..4], &now[4..]), malformed),
        ];
        deliver(sender, verifier(sender), &cases).await;
    }
}

/// Clocks and tolerances at the ends of their ranges: the distance is computed without
/// overflow in either direction.
#[tokio::test]
async fn extreme_clocks_and_tolerances_do_not_overflow() {
    let out = Expect::Refused(401, "timestamp_out_of_tolerance");
    for sender in TIMESTAMPED {
        let build = |clock: u64, tolerance: Duration| {
            Verifier::builder(sender.scheme())
                .secret_bytes(KEY)
                .clock(ManualClock::new(clock))
                .tolerance(tolerance)
                .build()
                .unwrap()
        };
        let max = "9999999999999999999".to_owned();
        let five_minutes = Duration::from_secs(300);
        // The clock at zero, a timestamp as far ahead as can be written.
        deliver(sender, build(0, five_minutes), &[(max.clone(), out)]).await;
        // The clock at the end of time, a timestamp at zero.
        deliver(sender, build(u64::MAX, five_minutes), &[("0".into(), out)]).await;
        // No practical tolerance at all: both ends are accepted.
        deliver(
            sender,
            build(NOW, Duration::MAX),
            &[(max, Expect::Accepted), ("0".into(), Expect::Accepted)],
        )
        .await;
        // A zero tolerance accepts only the current second.
        deliver(
            sender,
            build(NOW, Duration::ZERO),
            &[
                (sender.timestamp(NOW), Expect::Accepted),
                (sender.timestamp(NOW + 1), out),
                (sender.timestamp(NOW - 1), out),
            ],
        )
        .await;
    }
}
