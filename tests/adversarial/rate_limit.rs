//! Rate limit: spoofed headers rotated by one untrusted client, addresses rotated within one
//! IPv6 /64 behind a trusted proxy, and `Retry-After` always a whole number of seconds >= 1.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use axum::routing::post;
use axum::Router;
use tower::ServiceBuilder;
use tower_webhook::client_ip::ResolveClientIpLayer;
use tower_webhook::parse_cidrs;
use tower_webhook::rate_limit::{Quota, RateLimitLayer};

use super::common::{exchange_from, serve_with_peer, RawReply};

async fn app(quota: Quota) -> SocketAddr {
    let router = Router::new().route("/hook", post(|| async { "ok" })).layer(
        ServiceBuilder::new()
            .layer(
                ResolveClientIpLayer::new().trusted_proxies(parse_cidrs("127.0.0.1/32").unwrap()),
            )
            .layer(RateLimitLayer::new(quota)),
    );
    serve_with_peer("127.0.0.1", router).await
}

async fn send(addr: SocketAddr, from: &str, xff: &str) -> RawReply {
    let request = format!(
        "POST /hook HTTP/1.1\r\nhost: 127.0.0.1\r\nconnection: close\r\n\
         content-length: 0\r\nx-forwarded-for: {xff}\r\n\r\n"
    );
    let from: IpAddr = from.parse().unwrap();
    exchange_from(Some(from), addr, request.as_bytes())
        .await
        .remove(0)
}

/// A 429 as the design promises it: the body, and `Retry-After` a whole number of seconds
/// from 1 to `max`, with the `RateLimit-*` headers beside it.
fn assert_limited(reply: &RawReply, max: u64, what: &str) {
    assert_eq!(
        (reply.status, reply.text()),
        (429, r#"{"error":"rate_limited"}"#.to_owned()),
        "{what}"
    );
    let retry = reply.header("retry-after").expect("retry-after");
    let secs: u64 = retry
        .parse()
        .unwrap_or_else(|_| panic!("{what}: Retry-After {retry:?} is not an integer"));
    assert!((1..=max).contains(&secs), "{what}: Retry-After {secs}");
    for name in ["ratelimit-limit", "ratelimit-remaining", "ratelimit-reset"] {
        let value = reply
            .header(name)
            .unwrap_or_else(|| panic!("{what}: no {name}"));
        assert!(value.parse::<u64>().is_ok(), "{what}: {name}: {value:?}");
    }
}

#[tokio::test]
async fn rotating_spoofed_headers_from_one_client_shares_one_bucket() {
    let addr = app(Quota::new(3, Duration::from_secs(60)).unwrap()).await;
    let mut statuses = Vec::new();
    for i in 0..10 {
        let reply = send(addr, "127.0.0.2", &format!("198.51.100.{i}")).await;
        if reply.status == 429 {
            assert_limited(&reply, 20, "spoofed rotation");
        }
        statuses.push(reply.status);
    }
    assert_eq!(statuses, [200, 200, 200, 429, 429, 429, 429, 429, 429, 429]);
    // Another peer is not affected.
    assert_eq!(send(addr, "127.0.0.3", "198.51.100.1").await.status, 200);
}

#[tokio::test]
async fn rotating_addresses_within_one_ipv6_64_shares_one_bucket() {
    let addr = app(Quota::new(3, Duration::from_secs(60)).unwrap()).await;
    let mut statuses = Vec::new();
    for i in 1..=10u32 {
        // Through the trusted proxy: the client really is in 2001:db8:1:2::/64.
        let client = format!("2001:db8:1:2:{i:x}:{:x}::{i:x}", (i * 7919) & 0xffff);
        statuses.push(send(addr, "127.0.0.1", &client).await.status);
    }
    assert_eq!(statuses, [200, 200, 200, 429, 429, 429, 429, 429, 429, 429]);
    // The next /64 and distinct IPv4 clients each have their own bucket.
    assert_eq!(send(addr, "127.0.0.1", "2001:db8:1:3::1").await.status, 200);
    for i in 0..5 {
        let reply = send(addr, "127.0.0.1", &format!("203.0.113.{i}")).await;
        assert_eq!(reply.status, 200);
    }
}

#[tokio::test]
async fn retry_after_is_a_whole_second_at_least() {
    // Ten per second: a refused request may go again within 100 ms, which still reads 1 s.
    let fast = app(Quota::new(10, Duration::from_secs(1))
        .unwrap()
        .burst(1)
        .unwrap())
    .await;
    let mut limited = 0;
    for _ in 0..50 {
        let reply = send(fast, "127.0.0.2", "-").await;
        if reply.status == 429 {
            assert_limited(&reply, 1, "sub-second wait");
            limited += 1;
        }
    }
    assert!(limited > 0, "the fast quota never refused");
    // One per hour: the wait is long and stated in whole seconds.
    let slow = app(Quota::new(1, Duration::from_secs(3600)).unwrap()).await;
    assert_eq!(send(slow, "127.0.0.2", "-").await.status, 200);
    for _ in 0..3 {
        assert_limited(&send(slow, "127.0.0.2", "-").await, 3600, "hour-long wait");
    }
}
