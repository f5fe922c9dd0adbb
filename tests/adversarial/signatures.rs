//! Verification: every Wycheproof HMAC-SHA256 case through every sender's header encoding, and
//! hostile signature headers, over raw TCP.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use axum::Router;
use serde_json::Value;
use tower_webhook::clock::ManualClock;
use tower_webhook::Verifier;

use super::common::{exchange, raw_post, serve};
use super::{
    check, hmac, line, unhex, verified_app, verified_route, verifier, Expect, Line, Sender, KEY,
    NOW,
};

struct Vector {
    id: u64,
    key: Vec<u8>,
    msg: Vec<u8>,
    tag: Vec<u8>,
    full_length: bool,
    valid: bool,
}

fn wycheproof() -> Vec<Vector> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/wycheproof_hmac_sha256_test.json"
    );
    let data: Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    let mut out = Vec::new();
    for group in data["testGroups"].as_array().unwrap() {
        for case in group["tests"].as_array().unwrap() {
            out.push(Vector {
                id: case["tcId"].as_u64().unwrap(),
                key: unhex(case["key"].as_str().unwrap()),
                msg: unhex(case["msg"].as_str().unwrap()),
                tag: unhex(case["tag"].as_str().unwrap()),
                full_length: group["tagSize"].as_u64() == Some(256),
                valid: case["result"] == "valid",
            });
        }
    }
    out
}

/// Wycheproof's tags are over `msg` alone, while most senders sign a prefix too. Each case is
/// carried over as a *difference*: the case's tag XOR the reference HMAC of `msg` (zero for a
/// valid case, the modified bits for an invalid one, truncated for `tagSize` 128) is applied to
/// the reference HMAC of what the sender signs, with the case's key and `msg` as the body.
/// For the body-only senders (GitHub, Shopify) that is the Wycheproof tag itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wycheproof_through_every_senders_header_encoding() {
    let vectors = wycheproof();
    assert_eq!(vectors.len(), 174);
    let calls = Arc::new(AtomicUsize::new(0));
    let mut router = Router::new();
    for v in &vectors {
        for sender in Sender::ALL {
            let verifier = Verifier::builder(sender.scheme())
                .secret_bytes(&v.key)
                .clock(ManualClock::new(NOW))
                .build()
                .unwrap();
            let route = verified_route(verifier, &calls);
            router = router.route(&format!("/{}/{}", v.id, sender.name()), route);
        }
    }
    let addr = serve(router).await;

    let (mut accepted, mut sent) = (0, 0);
    for v in &vectors {
        let reference = hmac(&v.key, &v.msg);
        let delta: Vec<u8> = v.tag.iter().zip(reference).map(|(t, r)| t ^ r).collect();
        // The reference agrees with Wycheproof: valid cases differ in no bit.
        assert_eq!(delta.iter().all(|&d| d == 0), v.valid, "tc{}", v.id);
        for sender in Sender::ALL {
            let (id, ts) = (format!("msg_tc{}", v.id), sender.timestamp(NOW));
            let ours = hmac(&v.key, &sender.signed(&id, &ts, &v.msg));
            let tag: Vec<u8> = delta.iter().zip(ours).map(|(d, o)| d ^ o).collect();
            let request = raw_post(
                &format!("/{}/{}", v.id, sender.name()),
                &sender.lines(&id, &ts, &tag),
                &v.msg,
            );
            let expect = match (v.full_length, v.valid) {
                (false, _) => Expect::Refused(400, "malformed_header"),
                (true, true) => Expect::Accepted,
                (true, false) => Expect::Refused(401, "signature_mismatch"),
            };
            let what = format!("tc{} via {sender:?}", v.id);
            check(addr, &calls, &request, &v.msg, expect, &what).await;
            accepted += usize::from(expect == Expect::Accepted);
            sent += 1;
        }
    }
    assert_eq!(sent, 174 * Sender::ALL.len());
    // The file holds 33 valid full-length cases (27 + 3 + 3).
    assert_eq!(accepted, 33 * Sender::ALL.len());
    assert_eq!(calls.load(Ordering::SeqCst), accepted);
}

fn replace(lines: &[Line], name: &str, value: impl AsRef<[u8]>) -> Vec<Line> {
    lines
        .iter()
        .map(|(n, v)| {
            if n == name {
                line(n, value.as_ref())
            } else {
                (n.clone(), v.clone())
            }
        })
        .collect()
}

fn without(lines: &[Line], name: &str) -> Vec<Line> {
    lines.iter().filter(|(n, _)| n != name).cloned().collect()
}

fn with(lines: &[Line], name: &str, value: impl AsRef<[u8]>) -> Vec<Line> {
    let mut out = lines.to_vec();
    out.push(line(name, value));
    out
}

fn value_of<'a>(lines: &'a [Line], name: &str) -> &'a [u8] {
    &lines.iter().find(|(n, _)| n == name).unwrap().1
}

/// A hostile variation of a delivery: header lines, body, and the expected answer.
struct Case {
    what: String,
    lines: Vec<Line>,
    body: Vec<u8>,
    expect: Expect,
}

/// The variations every sender must survive.
fn common_cases(sender: Sender) -> Vec<Case> {
    let body = br#"{"id":"evt_1","amount":100}"#.to_vec();
    let ts = sender.timestamp(NOW);
    let good = sender.sign(KEY, "msg_1", &ts, &body);
    let sig = sender.signature_header();
    let sig_value = value_of(&good, sig).to_vec();
    let other_key = sender.sign(b"another key", "msg_1", &ts, &body);
    let malformed = Expect::Refused(400, "malformed_header");
    let mismatch = Expect::Refused(401, "signature_mismatch");
    let case = |what: &str, lines: Vec<Line>, body: &[u8], expect| Case {
        what: what.to_owned(),
        lines,
        body: body.to_vec(),
        expect,
    };
    let mut cut = sig_value.clone();
    cut.pop();
    let mut non_ascii = sig_value.clone();
    *non_ascii.last_mut().unwrap() = 0xe9;
    let mut control = sig_value.clone();
    control.insert(4, 0x7f);
    // Every sender writes its tag last; its second-to-last character (a digit in hex and in
    // base64, before base64's padding) becomes one that neither alphabet has: the length
    // stays right, so only decoding the tag finds it.
    let mut bad_digit = sig_value.clone();
    let at = bad_digit.len() - 2;
    bad_digit[at] = b'*';
    let upper: Vec<Line> = good
        .iter()
        .map(|(n, v)| (n.to_ascii_uppercase(), v.clone()))
        .collect();
    let binary: Vec<u8> = (0..=255u8).rev().collect();
    let mut cases = vec![
        case("valid", good.clone(), &body, Expect::Accepted),
        case("header names upper case", upper, &body, Expect::Accepted),
        case(
            "signature missing",
            without(&good, sig),
            &body,
            Expect::Refused(401, "missing_header"),
        ),
        case("empty signature", replace(&good, sig, ""), &body, malformed),
        case("tag cut short", replace(&good, sig, &cut), &body, malformed),
        case(
            "tag one digit long",
            replace(&good, sig, [&sig_value[..], b"0"].concat()),
            &body,
            malformed,
        ),
        case(
            "signature line twice, same value",
            with(&good, sig, &sig_value),
            &body,
            Expect::Accepted,
        ),
        case(
            "signature line twice, second under another key",
            with(&good, sig, value_of(&other_key, sig)),
            &body,
            malformed,
        ),
        case(
            "tag of full length with a character outside its alphabet",
            replace(&good, sig, &bad_digit),
            &body,
            malformed,
        ),
        case(
            "non-ASCII byte in the signature",
            replace(&good, sig, &non_ascii),
            &body,
            malformed,
        ),
        case(
            "DEL byte in the signature",
            replace(&good, sig, &control),
            &body,
            Expect::RefusedByServer(400),
        ),
        case(
            "body re-serialised with spaces",
            good.clone(),
            br#"{"id": "evt_1", "amount": 100}"#,
            mismatch,
        ),
        case(
            "body with a trailing newline",
            good.clone(),
            &[&body[..], b"\n"].concat(),
            mismatch,
        ),
        case("signed under another key", other_key, &body, mismatch),
        case(
            "empty body",
            sender.sign(KEY, "msg_1", &ts, b""),
            b"",
            Expect::Accepted,
        ),
        case(
            "binary body",
            sender.sign(KEY, "msg_1", &ts, &binary),
            &binary,
            Expect::Accepted,
        ),
    ];
    if let Some(id) = sender.id_header() {
        cases.push(case(
            "non-ASCII byte in the id",
            replace(&good, id, b"msg_caf\xc3\xa9"),
            &body,
            malformed,
        ));
        cases.push(case(
            "id line twice, different values",
            with(&good, id, "msg_2"),
            &body,
            malformed,
        ));
    }
    cases
}

/// Variations of one sender's own format.
fn sender_cases(sender: Sender) -> Vec<Case> {
    let body = br#"{"id":"evt_1"}"#.to_vec();
    let ts = sender.timestamp(NOW);
    let good = sender.sign(KEY, "msg_1", &ts, &body);
    let tag = hmac(KEY, &sender.signed("msg_1", &ts, &body));
    let decoy = |i: u8| hmac(&[i], b"decoy");
    let sig = sender.signature_header();
    let case = |what: &str, value: String, expect| Case {
        what: what.to_owned(),
        lines: replace(&good, sig, value),
        body: body.clone(),
        expect,
    };
    let unsupported = Expect::Refused(401, "no_supported_signature");
    let malformed = Expect::Refused(400, "malformed_header");
    match sender {
        Sender::Standard => {
            let list = |tags: &[[u8; 32]]| {
                tags.iter()
                    .map(|t| format!("v1,{}", super::b64(t)))
                    .collect::<Vec<_>>()
                    .join(" ")
            };
            let mut cases = vec![
                case(
                    "valid first of three",
                    list(&[tag, decoy(1), decoy(2)]),
                    Expect::Accepted,
                ),
                case(
                    "valid in the middle",
                    list(&[decoy(1), tag, decoy(2)]),
                    Expect::Accepted,
                ),
                case(
                    "valid last",
                    list(&[decoy(1), decoy(2), tag]),
                    Expect::Accepted,
                ),
                case(
                    "only unknown versions",
                    format!("v1a,{} v2,{}", super::b64(&tag), super::b64(&tag)),
                    unsupported,
                ),
                case(
                    "nine signatures",
                    list(&[decoy(1); 8]) + " " + &list(&[tag]),
                    malformed,
                ),
                case("entry without a version", super::b64(&tag), malformed),
                case(
                    "two spaces between entries",
                    list(&[decoy(1)]) + "  " + &list(&[tag]),
                    malformed,
                ),
            ];
            // The legacy `svix-*` names alone, and disagreeing with `webhook-*`.
            let svix: Vec<Line> = good
                .iter()
                .map(|(n, v)| (n.replace("webhook-", "svix-"), v.clone()))
                .collect();
            cases.push(Case {
                what: "svix-* names only".into(),
                lines: svix.clone(),
                body: body.clone(),
                expect: Expect::Accepted,
            });
            for (name, other) in [
                ("svix-id", "msg_2".to_owned()),
                ("svix-timestamp", (NOW + 1).to_string()),
                ("svix-signature", list(&[decoy(1)])),
            ] {
                cases.push(Case {
                    what: format!("{name} disagrees with webhook-*"),
                    lines: with(&good, name, other),
                    body: body.clone(),
                    expect: malformed,
                });
            }
            cases.push(Case {
                what: "svix-* agrees with webhook-*".into(),
                lines: [good.clone(), svix].concat(),
                body: body.clone(),
                expect: Expect::Accepted,
            });
            cases
        }
        Sender::Stripe => {
            let hex = super::hex;
            vec![
                case(
                    "valid first of three",
                    format!(
                        "t={ts},v1={},v1={},v1={}",
                        hex(&tag),
                        hex(&decoy(1)),
                        hex(&decoy(2))
                    ),
                    Expect::Accepted,
                ),
                case(
                    "valid in the middle, t= last",
                    format!(
                        "v1={},v1={},v1={},t={ts}",
                        hex(&decoy(1)),
                        hex(&tag),
                        hex(&decoy(2))
                    ),
                    Expect::Accepted,
                ),
                case(
                    "valid last, test-mode v0 ignored",
                    format!("t={ts},v0={},v1={}", hex(&decoy(1)), hex(&tag)),
                    Expect::Accepted,
                ),
                case("only v0", format!("t={ts},v0={}", hex(&tag)), unsupported),
                case(
                    "repeated t=",
                    format!("t={ts},t={ts},v1={}", hex(&tag)),
                    malformed,
                ),
                case(
                    "repeated t= with another time",
                    format!("t={ts},v1={},t=1", hex(&tag)),
                    malformed,
                ),
                case("no t=", format!("v1={}", hex(&tag)), malformed),
                case("empty list", format!("t={ts},"), malformed),
                case(
                    "t= with a space",
                    format!("t= {ts},v1={}", hex(&tag)),
                    malformed,
                ),
            ]
        }
        Sender::GitHub => vec![
            case(
                "sha1 only",
                format!("sha1={}", super::hex(&tag)),
                unsupported,
            ),
            case("no version", super::hex(&tag), malformed),
            case(
                "two signatures",
                format!("sha256={0},sha256={0}", super::hex(&tag)),
                malformed,
            ),
        ],
        Sender::Slack => vec![
            case(
                "unknown version",
                format!("v1={}", super::hex(&tag)),
                unsupported,
            ),
            case(
                "upper-case hex",
                format!("v0={}", super::hex(&tag).to_uppercase()),
                Expect::Accepted,
            ),
        ],
        Sender::Shopify => vec![
            case("hex instead of base64", super::hex(&tag), malformed),
            case(
                "base64 without padding",
                super::b64(&tag).trim_end_matches('=').to_owned(),
                malformed,
            ),
        ],
        Sender::Acme => vec![
            case(
                "another prefix",
                format!("sha1={}", super::hex(&tag)),
                unsupported,
            ),
            case("prefix only", "sha256=".to_owned(), malformed),
        ],
    }
}

#[tokio::test]
async fn hostile_signature_headers_for_every_sender() {
    for sender in Sender::ALL {
        let (router, calls) = verified_app(verifier(sender));
        let addr = serve(router).await;
        for case in common_cases(sender).into_iter().chain(sender_cases(sender)) {
            let request = raw_post("/hook", &case.lines, &case.body);
            let what = format!("{sender:?}: {}", case.what);
            check(addr, &calls, &request, &case.body, case.expect, &what).await;
        }
    }
}

/// The same signature header sent as two lines that together hold one valid list is not read
/// as that list: a repeated header with different values is refused, never merged.
#[tokio::test]
async fn a_signature_list_split_over_two_lines_is_refused() {
    let sender = Sender::Standard;
    let (router, calls) = verified_app(verifier(sender));
    let addr = serve(router).await;
    let body = b"{}";
    let ts = sender.timestamp(NOW);
    let good = sender.sign(KEY, "msg_1", &ts, body);
    let sig = value_of(&good, "webhook-signature").to_vec();
    let lines = with(
        &replace(&good, "webhook-signature", "v1a,Zm9v"),
        "webhook-signature",
        &sig,
    );
    let replies = exchange(addr, &raw_post("/hook", &lines, body)).await;
    assert_eq!(replies[0].status, 400, "{}", replies[0].text());
    assert_eq!(calls.load(Ordering::SeqCst), 0);
}
