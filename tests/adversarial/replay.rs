//! Replay: a storm of identical deliveries (memory and Redis stores), a handler that fails and
//! then succeeds, a handler abandoned by its client mid-call, and a store at capacity, all over
//! raw TCP. Redis stopped mid-run is in `tests/redis.rs`, where the server is restarted too.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::routing::post;
use axum::Router;
use bytes::Bytes;
use tokio::io::AsyncWriteExt;
use tower::ServiceBuilder;
use tower_webhook::body::BufferBodyLayer;
use tower_webhook::replay::{MemoryStore, ReplayLayer, ReplayStore};
use tower_webhook::verify::VerifyLayer;

use super::common::{exchange, raw_post, serve, RawReply};
use super::{verifier, Line, Sender, KEY, NOW};

/// What the handler does on its first call (later calls answer 200 at once).
#[derive(Clone, Copy)]
enum First {
    /// 200 after a pause, so that concurrent deliveries overlap.
    SlowOk,
    /// 500.
    Fail,
    /// Never answers (the client gives up).
    Hang,
}

async fn app(store: impl ReplayStore, first: First) -> (std::net::SocketAddr, Arc<AtomicUsize>) {
    let verifier = verifier(Sender::Standard);
    let replay = ReplayLayer::builder(store).build(&verifier).unwrap();
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = calls.clone();
    let handler = move |body: Bytes| async move {
        let call = counter.fetch_add(1, Ordering::SeqCst);
        match (call, first) {
            (0, First::SlowOk) => tokio::time::sleep(Duration::from_millis(50)).await,
            (0, First::Fail) => return (http::StatusCode::INTERNAL_SERVER_ERROR, body),
            (0, First::Hang) => std::future::pending::<()>().await,
            _ => {}
        }
        (http::StatusCode::OK, body)
    };
    let router = Router::new().route("/hook", post(handler)).layer(
        ServiceBuilder::new()
            .layer(BufferBodyLayer::new())
            .layer(VerifyLayer::new(verifier))
            .layer(replay),
    );
    (serve(router).await, calls)
}

const BODY: &[u8] = br#"{"type":"invoice.paid"}"#;

fn delivery(id: &str) -> Vec<Line> {
    Sender::Standard.sign(KEY, id, &NOW.to_string(), BODY)
}

async fn deliver(addr: std::net::SocketAddr, id: &str) -> RawReply {
    exchange(addr, &raw_post("/hook", &delivery(id), BODY))
        .await
        .remove(0)
}

fn is_duplicate(reply: &RawReply) -> bool {
    reply.status == 200 && reply.text() == r#"{"status":"duplicate"}"#
}

/// 100 copies of one delivery at once: the handler runs once; every other copy is told it is
/// in flight (409, retry later) or a duplicate (200), nothing else.
async fn storm(store: impl ReplayStore) {
    let (addr, calls) = app(store, First::SlowOk).await;
    let tasks: Vec<_> = (0..100)
        .map(|_| tokio::spawn(async move { deliver(addr, "msg_storm").await }))
        .collect();
    let (mut handled, mut in_flight, mut duplicate) = (0, 0, 0);
    for task in tasks {
        let reply = task.await.unwrap();
        match reply.status {
            200 if reply.body == BODY => handled += 1,
            200 if is_duplicate(&reply) => duplicate += 1,
            409 => {
                assert_eq!(reply.text(), r#"{"error":"in_flight"}"#);
                assert!(reply.header("retry-after").is_some());
                in_flight += 1;
            }
            other => panic!("{other}: {}", reply.text()),
        }
    }
    assert_eq!((handled, handled + in_flight + duplicate), (1, 100));
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    // Afterwards, always a duplicate.
    assert!(is_duplicate(&deliver(addr, "msg_storm").await));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_identical_deliveries_at_once_memory() {
    storm(MemoryStore::default()).await;
}

#[cfg(feature = "redis")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_identical_deliveries_at_once_redis() {
    let Some(redis) = super::common::redis::RedisServer::start() else {
        return;
    };
    storm(tower_webhook::replay::RedisStore::new(&redis.url()).unwrap()).await;
}

#[tokio::test]
async fn a_failed_handler_is_retried_then_deduplicated() {
    let (addr, calls) = app(MemoryStore::default(), First::Fail).await;
    let first = deliver(addr, "msg_fail").await;
    assert_eq!((first.status, &first.body[..]), (500, BODY));
    let retry = deliver(addr, "msg_fail").await;
    assert_eq!((retry.status, &retry.body[..]), (200, BODY));
    assert!(is_duplicate(&deliver(addr, "msg_fail").await));
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}

/// The client hangs up while the handler runs: the server drops the handler's future, and
/// the event is released at once for the sender's retry (not held for the whole lease).
#[tokio::test]
async fn a_handler_abandoned_by_its_client_releases_the_event() {
    let (addr, calls) = app(MemoryStore::default(), First::Hang).await;
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(&raw_post("/hook", &delivery("msg_gone"), BODY))
        .await
        .unwrap();
    tokio::time::timeout(super::common::STEP, async {
        while calls.load(Ordering::SeqCst) == 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("the handler never ran");
    drop(stream);
    // The release runs when hyper notices the closed connection; allow it a moment.
    let mut retry = deliver(addr, "msg_gone").await;
    for _ in 0..50 {
        if retry.status != 409 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        retry = deliver(addr, "msg_gone").await;
    }
    assert_eq!(
        (retry.status, &retry.body[..]),
        (200, BODY),
        "{}",
        retry.text()
    );
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn a_store_at_capacity_refuses_new_events_and_forgets_none() {
    let (addr, calls) = app(MemoryStore::new(3), First::SlowOk).await;
    for i in 0..3 {
        assert_eq!(deliver(addr, &format!("msg_{i}")).await.status, 200);
    }
    for _ in 0..3 {
        let full = deliver(addr, "msg_new").await;
        assert_eq!(
            (full.status, full.text()),
            (503, r#"{"error":"store_unavailable"}"#.to_owned())
        );
        let retry: u64 = full.header("retry-after").unwrap().parse().unwrap();
        assert!(retry >= 1);
    }
    for i in 0..3 {
        assert!(is_duplicate(&deliver(addr, &format!("msg_{i}")).await));
    }
    assert_eq!(calls.load(Ordering::SeqCst), 3);
}
