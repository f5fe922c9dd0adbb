//! The guards before the body, over raw TCP to a real axum server on 127.0.0.1: each answers
//! its status while the client has sent only the request's head, and a flood of slow bodies
//! stays within the memory budget.
#![cfg(feature = "axum")]

use crate::common;

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::routing::post;
use axum::Router;
use common::{now, parse_replies, post as post_to, serve_with_peer, RawReply};
use http::{HeaderMap, StatusCode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tower_webhook::body::BodyBudget;
use tower_webhook::content_type::MediaTypes;
use tower_webhook::penalty::PenaltyBox;
use tower_webhook::rate_limit::Quota;
use tower_webhook::scheme::Scheme;
use tower_webhook::{parse_cidrs, Verifier, WebhookLayer};

const SECRET: &str = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";

fn verifier() -> Verifier {
    Verifier::builder(Scheme::standard_webhooks())
        .secret(SECRET)
        .build()
        .unwrap()
}

fn signed(id: &str, body: &[u8]) -> HeaderMap {
    common::sign(&Scheme::standard_webhooks(), SECRET, id, now(), body)
}

/// A handler that counts its calls.
fn routes(calls: &Arc<AtomicUsize>) -> Router {
    let calls = calls.clone();
    Router::new().route(
        "/webhook",
        post(move || async move {
            calls.fetch_add(1, Ordering::SeqCst);
            "ok"
        }),
    )
}

/// Connects from `from` and writes the head of a POST announcing `length` body bytes, and
/// none of them.
async fn head_only(
    from: IpAddr,
    addr: SocketAddr,
    headers: &HeaderMap,
    length: usize,
) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::new(from, 0)).unwrap();
    let mut stream = socket.connect(addr).await.unwrap();
    let mut head =
        format!("POST /webhook HTTP/1.1\r\nhost: {addr}\r\ncontent-length: {length}\r\n");
    for (name, value) in headers {
        head.push_str(&format!("{name}: {}\r\n", value.to_str().unwrap()));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).await.unwrap();
    stream
}

/// The answer on `stream`, if a whole one comes within `limit`.
async fn answer(stream: &mut TcpStream, limit: Duration) -> Option<RawReply> {
    let mut got = Vec::new();
    let read = async {
        let mut buf = [0u8; 4096];
        loop {
            let n = stream.read(&mut buf).await.ok()?;
            if n == 0 {
                return None;
            }
            got.extend_from_slice(&buf[..n]);
            if let Some(reply) = parse_replies(&got).into_iter().next() {
                return Some(reply);
            }
        }
    };
    tokio::time::timeout(limit, read).await.ok().flatten()
}

/// The answer to a request whose body is never sent.
async fn before_the_body(
    from: &str,
    addr: SocketAddr,
    headers: &HeaderMap,
    length: usize,
) -> RawReply {
    let mut stream = head_only(from.parse().unwrap(), addr, headers, length).await;
    answer(&mut stream, Duration::from_secs(5))
        .await
        .expect("an answer before the body")
}

#[tokio::test]
async fn every_guard_answers_before_the_body_is_sent() {
    let calls = Arc::new(AtomicUsize::new(0));
    let penalty = PenaltyBox::new(2, Duration::from_secs(60)).unwrap();
    let budget = BodyBudget::new(4096);
    let layer = WebhookLayer::builder(verifier())
        .trusted_proxies(parse_cidrs("127.0.0.1/32").unwrap())
        .require_https(true)
        .penalty(penalty.clone())
        .allow(parse_cidrs("203.0.113.0/24, 198.51.100.0/24").unwrap())
        .rate_limit(
            Quota::new(1, Duration::from_secs(3600))
                .unwrap()
                .burst(12)
                .unwrap(),
        )
        .content_types(MediaTypes::new(["application/json"]).unwrap())
        .body_budget(budget.clone())
        .build()
        .unwrap();
    let addr = serve_with_peer("127.0.0.1", routes(&calls).layer(layer)).await;
    let headers = |client: &str, pairs: &[(&'static str, &str)]| {
        let mut headers = HeaderMap::new();
        headers.insert("x-forwarded-for", client.parse().unwrap());
        for (name, value) in pairs {
            headers.insert(*name, value.parse().unwrap());
        }
        headers
    };
    let https_json = [
        ("x-forwarded-proto", "https"),
        ("content-type", "application/json"),
    ];
    let expect = |reply: &RawReply, status: u16, body: &str| {
        assert_eq!((reply.status, reply.text().as_str()), (status, body));
    };

    // Not over TLS: the proxy said http, or said nothing.
    let plain = headers("203.0.113.1", &[("x-forwarded-proto", "http")]);
    let reply = before_the_body("127.0.0.1", addr, &plain, 100).await;
    expect(&reply, 403, r#"{"error":"https_required"}"#);
    let silent = headers("203.0.113.1", &[("content-type", "application/json")]);
    let reply = before_the_body("127.0.0.1", addr, &silent, 100).await;
    expect(&reply, 403, r#"{"error":"https_required"}"#);
    // A peer that is not a trusted proxy cannot say https.
    let direct = headers("203.0.113.1", &https_json);
    let reply = before_the_body("127.0.0.2", addr, &direct, 100).await;
    expect(&reply, 403, r#"{"error":"https_required"}"#);

    // Outside the allowlist.
    let outsider = headers("192.0.2.1", &https_json);
    let reply = before_the_body("127.0.0.1", addr, &outsider, 100).await;
    expect(&reply, 403, r#"{"error":"forbidden"}"#);
    // Over its rate: twelve requests at once, then 429 (the rate limit comes before the content
    // type, so untyped requests count).
    let eager = headers("203.0.113.50", &[("x-forwarded-proto", "https")]);
    for _ in 0..12 {
        let reply = before_the_body("127.0.0.1", addr, &eager, 100).await;
        expect(&reply, 415, r#"{"error":"unsupported_media_type"}"#);
    }
    let reply = before_the_body("127.0.0.1", addr, &eager, 100).await;
    expect(&reply, 429, r#"{"error":"rate_limited"}"#);

    // Another content type, or none.
    let text = headers(
        "203.0.113.1",
        &[
            ("x-forwarded-proto", "https"),
            ("content-type", "text/plain"),
        ],
    );
    let reply = before_the_body("127.0.0.1", addr, &text, 100).await;
    expect(&reply, 415, r#"{"error":"unsupported_media_type"}"#);
    let untyped = headers("203.0.113.1", &[("x-forwarded-proto", "https")]);
    let reply = before_the_body("127.0.0.1", addr, &untyped, 100).await;
    expect(&reply, 415, r#"{"error":"unsupported_media_type"}"#);

    // More than the memory budget can hold.
    let big = headers("203.0.113.1", &https_json);
    let reply = before_the_body("127.0.0.1", addr, &big, 5000).await;
    expect(&reply, 503, r#"{"error":"overloaded"}"#);
    assert_eq!(reply.header("retry-after"), Some("5"));

    // Two forgeries box their sender; then even its head alone gets 429.
    let body = br#"{"type":"ping"}"#;
    for id in ["evt_f1", "evt_f2"] {
        let mut forged = signed(id, b"{}");
        forged.extend(headers("198.51.100.7", &https_json));
        let reply = post_to(addr, "/webhook", &forged, &body[..]).await;
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    }
    let mut valid = signed("evt_ok", body);
    valid.extend(headers("198.51.100.7", &https_json));
    let reply = before_the_body("127.0.0.1", addr, &valid, body.len()).await;
    expect(&reply, 429, r#"{"error":"too_many_failures"}"#);
    let retry: u64 = reply.header("retry-after").unwrap().parse().unwrap();
    assert!((59..=60).contains(&retry), "{retry}");
    assert!(penalty.check("198.51.100.7".parse().unwrap()).is_err());

    // Nothing reached the handler, and no byte of budget is held. A good delivery passes.
    assert_eq!(calls.load(Ordering::SeqCst), 0);
    let mut good = signed("evt_good", body);
    good.extend(headers("203.0.113.1", &https_json));
    assert_eq!(
        post_to(addr, "/webhook", &good, &body[..]).await.status,
        StatusCode::OK
    );
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    assert_eq!(budget.in_use(), 0);
}

#[tokio::test]
async fn hundreds_of_slow_bodies_stay_within_the_budget() {
    const SENDERS: usize = 300;
    const BODY: usize = 64 * 1024;
    let calls = Arc::new(AtomicUsize::new(0));
    // Room for four bodies.
    let budget = BodyBudget::new(4 * BODY);
    let layer = WebhookLayer::builder(verifier())
        .body_budget(budget.clone())
        .body_timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    let addr = serve_with_peer("127.0.0.1", routes(&calls).layer(layer)).await;
    let body = vec![b'x'; BODY];

    // Every sender sends its head; those the budget takes send all but the last byte and hold.
    let senders = (0..SENDERS).map(|i| {
        let headers = signed(&format!("evt_{i}"), &body);
        let body = body.clone();
        tokio::spawn(async move {
            let mut stream = head_only("127.0.0.1".parse().unwrap(), addr, &headers, BODY).await;
            if let Some(reply) = answer(&mut stream, Duration::from_millis(500)).await {
                return Err(reply);
            }
            stream.write_all(&body[..BODY - 1]).await.unwrap();
            Ok((stream, body[BODY - 1]))
        })
    });
    let mut held = Vec::new();
    let mut refused = 0;
    for sender in senders.collect::<Vec<_>>() {
        match sender.await.unwrap() {
            Ok(stream) => held.push(stream),
            Err(reply) => {
                assert_eq!(
                    (reply.status, reply.text().as_str()),
                    (503, r#"{"error":"overloaded"}"#)
                );
                refused += 1;
            }
        }
    }
    assert_eq!((held.len(), refused), (4, SENDERS - 4));
    assert_eq!(budget.in_use(), 4 * BODY);

    // Two finish and are handled; two hang up. The budget comes back to zero.
    let hang_up = held.split_off(2);
    for (mut stream, last) in held {
        stream.write_all(&[last]).await.unwrap();
        let reply = answer(&mut stream, Duration::from_secs(5)).await.unwrap();
        assert_eq!(reply.status, 200);
    }
    drop(hang_up);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while budget.in_use() != 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{} bytes still held",
            budget.in_use()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}

/// The demo receiver's address.
fn receiver_addr(receiver: &common::Example) -> SocketAddr {
    receiver.addr.parse().unwrap()
}

#[tokio::test]
async fn the_demo_receiver_has_every_guard() {
    let receiver = common::Example::start(
        "receiver",
        &[
            ("WEBHOOK_SECRET", SECRET),
            ("TRUSTED_PROXIES", "127.0.0.1/32"),
            ("FORWARDED_HEADER", "forwarded"),
            ("REQUIRE_HTTPS", "1"),
            ("PENALTY_FAILURES", "2"),
            ("PENALTY_WINDOW_SECS", "30"),
            (
                "ALLOW_CONTENT_TYPES",
                "application/json, application/cloudevents+json",
            ),
            ("MAX_BUFFERED_BYTES", "4096"),
        ],
    );
    let addr = receiver_addr(&receiver);
    let from = |client: &str, proto: &str, content_type: Option<&str>| {
        let mut headers = HeaderMap::new();
        let forwarded = format!("for={client};proto={proto}");
        headers.insert("forwarded", forwarded.parse().unwrap());
        if let Some(t) = content_type {
            headers.insert("content-type", t.parse().unwrap());
        }
        headers
    };
    let json = Some("application/json; charset=utf-8");
    let cases = [
        (
            from("203.0.113.1", "http", json),
            100,
            403,
            "https_required",
        ),
        (
            from("203.0.113.1", "https", Some("text/plain")),
            100,
            415,
            "unsupported_media_type",
        ),
        (
            from("203.0.113.1", "https", None),
            100,
            415,
            "unsupported_media_type",
        ),
        (from("203.0.113.1", "https", json), 5000, 503, "overloaded"),
    ];
    for (headers, length, status, code) in cases {
        let reply = before_the_body("127.0.0.1", addr, &headers, length).await;
        assert_eq!(reply.status, status, "{code}");
        assert_eq!(reply.text(), format!("{{\"error\":\"{code}\"}}"));
    }
    let body = br#"{"type":"ping"}"#;
    for id in ["evt_f1", "evt_f2"] {
        let mut forged = signed(id, b"{}");
        forged.extend(from("198.51.100.7", "https", json));
        assert_eq!(
            post_to(addr, "/webhook", &forged, &body[..]).await.status,
            StatusCode::UNAUTHORIZED
        );
    }
    let mut valid = signed("evt_boxed", body);
    valid.extend(from("198.51.100.7", "https", json));
    let reply = before_the_body("127.0.0.1", addr, &valid, body.len()).await;
    assert_eq!(
        (reply.status, reply.header("retry-after")),
        (429, Some("30"))
    );
    // Another client's delivery is accepted and printed.
    let mut good = signed("evt_good", body);
    good.extend(from(
        "203.0.113.1",
        "https",
        Some("application/cloudevents+json"),
    ));
    assert_eq!(
        post_to(addr, "/webhook", &good, &body[..]).await.status,
        StatusCode::OK
    );
    let printed = receiver.printed();
    assert_eq!(printed.len(), 1, "{printed:?}");
    assert!(
        printed[0].starts_with("accepted id=evt_good "),
        "{printed:?}"
    );
}

#[tokio::test]
async fn the_demo_replay_ttl_follows_a_raised_tolerance() {
    let receiver = common::Example::start(
        "receiver",
        &[("WEBHOOK_SECRET", SECRET), ("TOLERANCE_SECS", "100000")],
    );
    let body = br#"{"type":"ping"}"#;
    let reply = post_to(
        receiver_addr(&receiver),
        "/webhook",
        &signed("evt_1", body),
        &body[..],
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK);
}

/// The resident memory of process `pid`, in bytes.
fn rss(pid: u32) -> usize {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kib: usize = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap();
    kib * 1024
}

#[tokio::test]
async fn the_demo_receiver_holds_slow_bodies_within_its_budget() {
    const SENDERS: usize = 400;
    const BODY: usize = 256 * 1024;
    const BUDGET: usize = 4 * 1024 * 1024;
    let receiver = common::Example::start(
        "receiver",
        &[
            ("WEBHOOK_SECRET", SECRET),
            ("MAX_BUFFERED_BYTES", &BUDGET.to_string()),
            ("REPLAY_STORE", "off"),
        ],
    );
    let addr = receiver_addr(&receiver);
    let body = vec![b'x'; BODY];
    // Warm up: a few deliveries, so the baseline holds the runtime's and allocator's pools.
    for i in 0..8 {
        let headers = signed(&format!("warm_{i}"), &body);
        assert_eq!(
            post_to(addr, "/webhook", &headers, body.clone())
                .await
                .status,
            StatusCode::OK
        );
    }
    let before = rss(receiver.pid());

    // Every sender sends its head; those the budget takes send all but the last byte and hold.
    let senders: Vec<_> = (0..SENDERS)
        .map(|i| {
            let headers = signed(&format!("evt_{i}"), &body);
            let body = body.clone();
            tokio::spawn(async move {
                let from = "127.0.0.1".parse().unwrap();
                let mut stream = head_only(from, addr, &headers, BODY).await;
                if let Some(reply) = answer(&mut stream, Duration::from_millis(500)).await {
                    return Err(reply.status);
                }
                stream.write_all(&body[..BODY - 1]).await.unwrap();
                Ok(stream)
            })
        })
        .collect();
    let mut held = Vec::new();
    for sender in senders {
        match sender.await.unwrap() {
            Ok(stream) => held.push(stream),
            Err(status) => assert_eq!(status, 503),
        }
    }
    assert_eq!(held.len(), BUDGET / BODY);
    // Let the receiver read what was sent.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let during = rss(receiver.pid());
    // Without the budget the bodies alone would take 100 MiB.
    let grown = during.saturating_sub(before);
    assert!(grown < BUDGET + 16 * 1024 * 1024, "grew {grown} bytes");

    // They hang up; the budget is whole again: as many new bodies fit as before.
    drop(held);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let again: Vec<_> = (0..BUDGET / BODY)
        .map(|i| {
            let headers = signed(&format!("again_{i}"), &body);
            let body = body.clone();
            tokio::spawn(async move { post_to(addr, "/webhook", &headers, body).await.status })
        })
        .collect();
    for sender in again {
        assert_eq!(sender.await.unwrap(), StatusCode::OK);
    }
}
