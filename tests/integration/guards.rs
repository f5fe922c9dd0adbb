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
