//! The one-call stack through real axum servers on 127.0.0.1: every stage in order, inside
//! tower-http's `TimeoutLayer` and `CorsLayer`, and its wiring mistakes refused when built.
#![cfg(feature = "axum")]

use crate::common;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::routing::post;
use axum::Router;
use common::{now, post as post_to, serve_with_peer};
use http::{HeaderMap, StatusCode};
use tower_webhook::rate_limit::Quota;
use tower_webhook::replay::{MemoryStore, ReplayLayer};
use tower_webhook::scheme::Scheme;
use tower_webhook::{parse_cidrs, ConfigError, RawBody, Verified, Verifier, WebhookLayer};

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

/// A router whose handler counts its calls, waits `delay`, and answers with the event id.
fn routes(calls: &Arc<AtomicUsize>, delay: Duration) -> Router {
    let calls = calls.clone();
    Router::new().route(
        "/webhook",
        post(move |verified: Verified, body: RawBody| async move {
            calls.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(delay).await;
            format!("{} {}", verified.id().unwrap_or("-"), body.len())
        }),
    )
}

#[tokio::test]
async fn every_stage_answers_in_order_through_axum() {
    let calls = Arc::new(AtomicUsize::new(0));
    let layer = WebhookLayer::builder(verifier())
        .trusted_proxies(parse_cidrs("127.0.0.1/32").unwrap())
        .allow(parse_cidrs("203.0.113.0/24").unwrap())
        .rate_limit(
            Quota::new(1, Duration::from_secs(3600))
                .unwrap()
                .burst(3)
                .unwrap(),
        )
        .max_body(64)
        .replay(MemoryStore::default())
        .build()
        .unwrap();
    let addr = serve_with_peer("127.0.0.1", routes(&calls, Duration::ZERO).layer(layer)).await;
    let from = |ip: &str, mut headers: HeaderMap| {
        headers.insert("x-forwarded-for", ip.parse().unwrap());
        headers
    };

    // Allowlist before everything that reads the body: no signature needed to be refused.
    let reply = post_to(
        addr,
        "/webhook",
        &from("198.51.100.1", HeaderMap::new()),
        "x",
    )
    .await;
    assert_eq!(
        (reply.status, reply.body.as_str()),
        (StatusCode::FORBIDDEN, r#"{"error":"forbidden"}"#)
    );

    let ok = from("203.0.113.9", signed("msg_1", b"{}"));
    let reply = post_to(addr, "/webhook", &ok, "{}").await;
    assert_eq!(
        (reply.status, reply.body.as_str()),
        (StatusCode::OK, "msg_1 2")
    );
    // The replay stage: the same event again is a duplicate, without the handler.
    let reply = post_to(addr, "/webhook", &ok, "{}").await;
    assert_eq!(
        (reply.status, reply.body.as_str()),
        (StatusCode::OK, r#"{"status":"duplicate"}"#)
    );
    // The body limit comes before verification.
    let big = vec![b'x'; 65];
    let reply = post_to(
        addr,
        "/webhook",
        &from("203.0.113.9", signed("msg_2", &big)),
        big,
    )
    .await;
    assert_eq!(reply.status, StatusCode::PAYLOAD_TOO_LARGE);
    // The burst of 3 is spent: the rate limit answers before the body or the signature.
    let reply = post_to(
        addr,
        "/webhook",
        &from("203.0.113.9", HeaderMap::new()),
        "x",
    )
    .await;
    assert_eq!(reply.status, StatusCode::TOO_MANY_REQUESTS);
    assert!(reply.headers.contains_key("retry-after"));
    // Another client of the allowed range has its own bucket; its forgery is a 401.
    let mut forged = from("203.0.113.10", signed("msg_3", b"{}"));
    forged.insert("webhook-id", "msg_4".parse().unwrap());
    let reply = post_to(addr, "/webhook", &forged, "{}").await;
    assert_eq!(
        (reply.status, reply.body.as_str()),
        (
            StatusCode::UNAUTHORIZED,
            r#"{"error":"signature_mismatch"}"#
        )
    );
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn the_stack_works_inside_tower_http_timeout_and_cors() {
    use tower::ServiceBuilder;
    use tower_http::cors::CorsLayer;
    use tower_http::timeout::TimeoutLayer;

    let calls = Arc::new(AtomicUsize::new(0));
    let stack = WebhookLayer::builder(verifier()).build().unwrap();
    let app = routes(&calls, Duration::from_secs(5)).layer(
        ServiceBuilder::new()
            .layer(CorsLayer::permissive())
            .layer(TimeoutLayer::with_status_code(
                StatusCode::REQUEST_TIMEOUT,
                Duration::from_millis(200),
            ))
            .layer(stack),
    );
    let addr: SocketAddr = serve_with_peer("127.0.0.1", app).await;

    // The handler takes 5 s: the timeout answers with its own (default, empty) body.
    let reply = post_to(addr, "/webhook", &signed("msg_slow", b"{}"), "{}").await;
    assert_eq!(reply.status, StatusCode::REQUEST_TIMEOUT);
    assert_eq!(reply.body, "");
    assert_eq!(calls.load(Ordering::SeqCst), 1);

    // A rejection goes out through both, with the CORS header added.
    let mut headers = signed("msg_bad", b"{}");
    headers.insert("origin", "https://example.com".parse().unwrap());
    let reply = post_to(addr, "/webhook", &headers, "{} ").await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    assert_eq!(reply.headers["access-control-allow-origin"], "*");
}

#[test]
fn wiring_mistakes_are_config_errors_when_built() {
    let empty = WebhookLayer::builder(verifier()).allow(Vec::new()).build();
    assert!(
        matches!(empty, Err(ConfigError::InvalidStack { .. })),
        "{empty:?}"
    );
    let zero = WebhookLayer::builder(verifier()).max_body(0).build();
    assert!(
        matches!(zero, Err(ConfigError::InvalidStack { .. })),
        "{zero:?}"
    );
    let short_ttl = WebhookLayer::builder(verifier())
        .replay(ReplayLayer::builder(MemoryStore::default()).ttl(Duration::from_secs(60)))
        .build();
    assert!(
        matches!(short_ttl, Err(ConfigError::InvalidReplay { .. })),
        "{short_ttl:?}"
    );
    // GitHub has no signed timestamp but an id: replay is fine; the layer prints no secret.
    let github = Verifier::builder(Scheme::github())
        .secret("topsecret")
        .build()
        .unwrap();
    let layer = WebhookLayer::builder(github)
        .replay(MemoryStore::new(10))
        .build()
        .unwrap();
    assert!(!format!("{layer:?}").contains("topsecret"));
}

/// The same stack from code and from a TOML file: every request of a scripted mix gets the
/// same answer from both.
#[tokio::test]
async fn a_stack_from_a_toml_file_answers_as_the_same_stack_from_code() {
    use tower_webhook::stack::config::Config;

    std::env::set_var("STACK_TEST_SECRET", SECRET);
    let file = Config::from_toml(
        r#"
        trusted_proxies = "127.0.0.1/32"
        allow_cidrs = ["203.0.113.0/24"]
        rate_per_sec = 1
        rate_burst = 3
        max_body_bytes = 64

        [[endpoints]]
        path = "/webhook"
        scheme = "standard"
        secrets = ["env:STACK_TEST_SECRET"]
        "#,
    )
    .unwrap();
    let (path, from_file) = file.build().unwrap().remove(0);
    assert_eq!(path, "/webhook");
    let from_code = WebhookLayer::builder(verifier())
        .trusted_proxies(parse_cidrs("127.0.0.1/32").unwrap())
        .allow(parse_cidrs("203.0.113.0/24").unwrap())
        .rate_limit(
            Quota::new(1, Duration::from_secs(1))
                .unwrap()
                .burst(3)
                .unwrap(),
        )
        .max_body(64)
        .replay(ReplayLayer::builder(MemoryStore::default()).namespace("/webhook"))
        .build()
        .unwrap();

    let calls = Arc::new(AtomicUsize::new(0));
    let a = serve_with_peer("127.0.0.1", routes(&calls, Duration::ZERO).layer(from_code)).await;
    let b = serve_with_peer("127.0.0.1", routes(&calls, Duration::ZERO).layer(from_file)).await;
    let from = |ip: &str, mut headers: HeaderMap| {
        headers.insert("x-forwarded-for", ip.parse().unwrap());
        headers
    };
    let ok = signed("msg_same", b"{}");
    let mut tampered = ok.clone();
    tampered.insert("webhook-id", "msg_other".parse().unwrap());
    let script: Vec<(HeaderMap, Vec<u8>)> = vec![
        (from("198.51.100.1", ok.clone()), b"{}".to_vec()),
        (from("203.0.113.1", ok.clone()), b"{}".to_vec()),
        (from("203.0.113.1", ok.clone()), b"{}".to_vec()),
        (from("203.0.113.1", tampered), b"{}".to_vec()),
        (from("203.0.113.2", HeaderMap::new()), vec![b'x'; 65]),
        (from("203.0.113.1", ok), b"{}".to_vec()),
    ];
    let mut statuses = Vec::new();
    for (headers, body) in script {
        let x = post_to(a, "/webhook", &headers, body.clone()).await;
        let y = post_to(b, "/webhook", &headers, body).await;
        assert_eq!((x.status, &x.body), (y.status, &y.body));
        statuses.push(x.status.as_u16());
    }
    assert_eq!(statuses, [403, 200, 200, 401, 413, 429]);
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}

/// The README's config file example reads as it says: two endpoints, every key known.
#[test]
fn the_readme_config_example_is_a_valid_config() {
    use tower_webhook::stack::config::Config;

    let readme = include_str!("../../README.md");
    let start = readme.find("```toml\n").expect("a toml block") + "```toml\n".len();
    let text = &readme[start..start + readme[start..].find("```").unwrap()];
    let mut table: toml::Table = text.parse().unwrap();
    // The receiver's own setting; the library's config has the rest.
    assert!(table.remove("bind_addr").is_some());
    let config = Config::from_table(table).unwrap();
    let paths: Vec<&str> = config.endpoints().iter().map(|e| e.path()).collect();
    assert_eq!(paths, ["/stripe", "/github"]);
}
