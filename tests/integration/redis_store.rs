//! The replay layer on a real Redis (on 127.0.0.1, started per test): guarded transitions,
//! two replicas sharing one Redis, exactly-once under concurrency, and Redis stopped mid-run.
#![cfg(feature = "redis")]

use crate::common;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::redis::RedisServer;
use common::{now, post, serve};
use http::{HeaderMap, StatusCode};
use tower_webhook::replay::{Begin, RedisStore, ReplayLayer, ReplayStore, StoreError, Token};
use tower_webhook::scheme::Scheme;
use tower_webhook::Verifier;

const SECRET: &str = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";
const BODY: &[u8] = br#"{"type":"order.created"}"#;

/// One replica: its own store client and layer, a real axum server, a handler counter.
async fn replica(url: &str, fail_open: bool, calls: Arc<AtomicUsize>) -> SocketAddr {
    let verifier = Verifier::builder(Scheme::standard_webhooks())
        .secret(SECRET)
        .build()
        .unwrap();
    let store = RedisStore::new(url).unwrap();
    let replay = ReplayLayer::builder(store)
        .namespace("orders")
        .fail_open(fail_open)
        .build(&verifier)
        .unwrap();
    serve(common::counting_app(
        verifier,
        replay,
        calls,
        Duration::from_millis(30),
    ))
    .await
}

fn delivery(id: &str) -> HeaderMap {
    common::sign(&Scheme::standard_webhooks(), SECRET, id, now(), BODY)
}

#[tokio::test]
async fn transitions_are_atomic_and_guarded() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let store = RedisStore::new(&redis.url()).unwrap();
    let lease = Duration::from_secs(30);
    let (a, b) = (Token::from_parts(1, 1), Token::from_parts(1, 2));
    assert_eq!(store.begin("k", a, lease).await, Ok(Begin::Started));
    assert_eq!(store.begin("k", b, lease).await, Ok(Begin::InFlight));
    assert_eq!(store.release("k", b).await, Ok(false));
    assert_eq!(store.complete("k", b, lease).await, Ok(false));
    assert_eq!(store.release("k", a).await, Ok(true));
    assert_eq!(store.begin("k", b, lease).await, Ok(Begin::Started));
    assert_eq!(store.complete("k", b, lease).await, Ok(true));
    assert_eq!(store.begin("k", a, lease).await, Ok(Begin::Done));
    assert_eq!(store.release("k", b).await, Ok(false));
    // The lease expires by itself in Redis.
    assert_eq!(
        store.begin("short", a, Duration::from_millis(50)).await,
        Ok(Begin::Started)
    );
    tokio::time::sleep(Duration::from_millis(120)).await;
    assert_eq!(store.begin("short", b, lease).await, Ok(Begin::Started));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_sharing_redis_handle_an_event_once() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let calls = Arc::new(AtomicUsize::new(0));
    let a = replica(&redis.url(), false, calls.clone()).await;
    let b = replica(&redis.url(), false, calls.clone()).await;

    let headers = delivery("msg_shared");
    assert_eq!(post(a, "/webhook", &headers, BODY).await.body, "handled");
    let reply = post(b, "/webhook", &headers, BODY).await;
    assert_eq!(
        (reply.status, reply.body.as_str()),
        (StatusCode::OK, r#"{"status":"duplicate"}"#)
    );

    // 60 concurrent deliveries of a new event, split over both replicas.
    let headers = delivery("msg_storm");
    let tasks: Vec<_> = (0..60)
        .map(|i| {
            let headers = headers.clone();
            let addr = if i % 2 == 0 { a } else { b };
            tokio::spawn(async move { post(addr, "/webhook", &headers, BODY).await })
        })
        .collect();
    let mut handled = 0;
    for task in tasks {
        let reply = task.await.unwrap();
        match (reply.status, reply.body.as_str()) {
            (StatusCode::OK, "handled") => handled += 1,
            (StatusCode::OK, r#"{"status":"duplicate"}"#) | (StatusCode::CONFLICT, _) => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(handled, 1);
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_stopped_mid_run_fails_closed_or_open_as_configured() {
    let Some(mut redis) = RedisServer::start() else {
        return;
    };
    let closed_calls = Arc::new(AtomicUsize::new(0));
    let open_calls = Arc::new(AtomicUsize::new(0));
    let closed = replica(&redis.url(), false, closed_calls.clone()).await;
    let open = replica(&redis.url(), true, open_calls.clone()).await;
    assert_eq!(
        post(closed, "/webhook", &delivery("msg_before"), BODY)
            .await
            .body,
        "handled"
    );

    redis.stop();
    let started = Instant::now();
    let reply = post(closed, "/webhook", &delivery("msg_during"), BODY).await;
    assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(reply.body, r#"{"error":"store_unavailable"}"#);
    assert_eq!(reply.headers["retry-after"], "5");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "the store call is time-limited"
    );
    assert_eq!(
        closed_calls.load(Ordering::SeqCst),
        1,
        "fail closed: handler not called"
    );

    let reply = post(open, "/webhook", &delivery("msg_during"), BODY).await;
    assert_eq!(
        reply.body, "handled",
        "fail open: handled without deduplication"
    );
    assert_eq!(open_calls.load(Ordering::SeqCst), 1);

    // Back up: the same client reconnects by itself and the event is handled.
    redis.restart();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let reply = post(closed, "/webhook", &delivery("msg_during"), BODY).await;
        if reply.status == StatusCode::OK {
            assert_eq!(reply.body, "handled");
            break;
        }
        assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE);
        assert!(Instant::now() < deadline, "no reconnection");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(closed_calls.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn an_unreachable_redis_is_a_store_error_not_a_hang() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let store = RedisStore::with_timeout(
        &format!("redis://127.0.0.1:{port}/"),
        Duration::from_millis(200),
    )
    .unwrap();
    let started = Instant::now();
    let result = store
        .begin("k", Token::from_parts(0, 1), Duration::from_secs(1))
        .await;
    assert!(
        matches!(
            result,
            Err(StoreError::Unavailable { .. } | StoreError::Timeout)
        ),
        "{result:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(3));
    assert!(RedisStore::new("not a url").is_err());
}
