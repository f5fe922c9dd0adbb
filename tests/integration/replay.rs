//! The replay layer with the in-memory store: each event handled once, a failed or abandoned
//! attempt released for the retry, through `oneshot` and a real axum server on 127.0.0.1.

use crate::common;

use std::convert::Infallible;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use tokio::sync::Notify;
use tower::util::BoxCloneSyncService;
use tower::{service_fn, ServiceBuilder, ServiceExt};
use tower_webhook::body::BufferBodyLayer;
use tower_webhook::replay::{
    Begin, MemoryStore, ReplayLayer, ReplayStore, StoreError, StoreFuture, Token,
};
use tower_webhook::scheme::{Scheme, SignedContent, TimestampUnit};
use tower_webhook::verify::VerifyLayer;
use tower_webhook::{BufferedBody, ConfigError, Rejection, ResponseBody, Verifier};

const SECRET: &str = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";

/// What the test handler does with each call.
#[derive(Clone, Copy)]
enum Behaviour {
    Ok,
    /// Answer 500 on the first call, 200 after.
    FailFirst,
    /// Return a service error on the first call.
    ErrorFirst,
    /// Wait for the gate before answering 200.
    Gate,
}

struct Handler {
    calls: Arc<AtomicUsize>,
    gate: Arc<Notify>,
}

/// The response body through the three layers.
type Nested = ResponseBody<ResponseBody<ResponseBody<Full<Bytes>>>>;

type Svc = BoxCloneSyncService<Request<Full<Bytes>>, Response<String>, std::io::Error>;

fn stack(
    scheme: Scheme,
    store: impl ReplayStore,
    namespace: &str,
    behaviour: Behaviour,
) -> (Svc, Handler) {
    let verifier = Verifier::builder(scheme).secret(SECRET).build().unwrap();
    let replay = ReplayLayer::builder(store)
        .namespace(namespace)
        .build(&verifier)
        .unwrap();
    let calls = Arc::new(AtomicUsize::new(0));
    let gate = Arc::new(Notify::new());
    let (c, g) = (calls.clone(), gate.clone());
    let svc = ServiceBuilder::new()
        .layer(BufferBodyLayer::new())
        .layer(VerifyLayer::new(verifier))
        .layer(replay)
        .service(service_fn(move |_: Request<BufferedBody>| {
            let (calls, gate) = (c.clone(), g.clone());
            async move {
                let n = calls.fetch_add(1, Ordering::SeqCst);
                match behaviour {
                    Behaviour::FailFirst if n == 0 => {
                        let mut r = Response::new(Full::new(Bytes::from_static(b"boom")));
                        *r.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
                        return Ok(r);
                    }
                    Behaviour::ErrorFirst if n == 0 => {
                        return Err(std::io::Error::other("handler failed"))
                    }
                    Behaviour::Gate => gate.notified().await,
                    _ => {}
                }
                Ok(Response::new(Full::new(Bytes::from_static(b"handled"))))
            }
        }));
    let svc =
        ServiceExt::<Request<Full<Bytes>>>::and_then(svc, |res: Response<Nested>| async move {
            let (parts, body) = res.into_parts();
            let bytes = body
                .collect()
                .await
                .unwrap_or_else(|e| match e {})
                .to_bytes();
            Ok(Response::from_parts(
                parts,
                String::from_utf8_lossy(&bytes).into_owned(),
            ))
        });
    (BoxCloneSyncService::new(svc), Handler { calls, gate })
}

fn request(headers: &HeaderMap, body: &'static [u8]) -> Request<Full<Bytes>> {
    let mut req = Request::post("/webhook")
        .body(Full::new(Bytes::from_static(body)))
        .unwrap();
    *req.headers_mut() = headers.clone();
    req
}

fn delivery(scheme: &Scheme, id: &str, body: &[u8]) -> HeaderMap {
    common::sign(scheme, SECRET, id, common::now(), body)
}

async fn send(
    svc: &Svc,
    headers: &HeaderMap,
    body: &'static [u8],
) -> (StatusCode, String, Option<String>) {
    let res = svc.clone().oneshot(request(headers, body)).await.unwrap();
    let retry = res
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().to_owned());
    (res.status(), res.into_body(), retry)
}

const BODY: &[u8] = br#"{"id":"evt_1","type":"invoice.paid"}"#;

#[tokio::test]
async fn a_duplicate_is_answered_without_the_handler() {
    let scheme = Scheme::standard_webhooks();
    let (svc, handler) = stack(scheme.clone(), MemoryStore::default(), "t", Behaviour::Ok);
    let headers = delivery(&scheme, "msg_1", BODY);
    assert_eq!(send(&svc, &headers, BODY).await.0, StatusCode::OK);
    let (status, body, _) = send(&svc, &headers, BODY).await;
    assert_eq!(
        (status, body.as_str()),
        (StatusCode::OK, r#"{"status":"duplicate"}"#)
    );
    // A new delivery of the same event (new timestamp, new signature) is a duplicate too.
    let again = common::sign(&scheme, SECRET, "msg_1", common::now() + 1, BODY);
    assert_ne!(again["webhook-signature"], headers["webhook-signature"]);
    assert_eq!(
        send(&svc, &again, BODY).await.1,
        r#"{"status":"duplicate"}"#
    );
    assert_eq!(handler.calls.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_failed_handler_is_retried_and_then_deduplicated() {
    let scheme = Scheme::standard_webhooks();
    let (svc, handler) = stack(
        scheme.clone(),
        MemoryStore::default(),
        "t",
        Behaviour::FailFirst,
    );
    let headers = delivery(&scheme, "msg_fail", BODY);
    assert_eq!(
        send(&svc, &headers, BODY).await.0,
        StatusCode::INTERNAL_SERVER_ERROR
    );
    assert_eq!(send(&svc, &headers, BODY).await.0, StatusCode::OK);
    assert_eq!(
        send(&svc, &headers, BODY).await.1,
        r#"{"status":"duplicate"}"#
    );
    assert_eq!(handler.calls.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn a_handler_error_releases_the_event() {
    let scheme = Scheme::standard_webhooks();
    let (svc, handler) = stack(
        scheme.clone(),
        MemoryStore::default(),
        "t",
        Behaviour::ErrorFirst,
    );
    let headers = delivery(&scheme, "msg_err", BODY);
    assert!(svc.clone().oneshot(request(&headers, BODY)).await.is_err());
    assert_eq!(send(&svc, &headers, BODY).await.0, StatusCode::OK);
    assert_eq!(handler.calls.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn in_flight_answers_409_and_a_dropped_request_releases_the_event() {
    let scheme = Scheme::standard_webhooks();
    let (svc, handler) = stack(scheme.clone(), MemoryStore::default(), "t", Behaviour::Gate);
    let headers = delivery(&scheme, "msg_gate", BODY);
    let first = tokio::spawn(svc.clone().oneshot(request(&headers, BODY)));
    while handler.calls.load(Ordering::SeqCst) == 0 {
        tokio::task::yield_now().await;
    }
    let (status, body, retry) = send(&svc, &headers, BODY).await;
    assert_eq!(
        (status, body.as_str()),
        (StatusCode::CONFLICT, r#"{"error":"in_flight"}"#)
    );
    assert_eq!(retry.as_deref(), Some("5"));

    // The client goes away mid-handler: the future is dropped, the mark released.
    first.abort();
    assert!(first.await.unwrap_err().is_cancelled());
    tokio::time::sleep(Duration::from_millis(20)).await;
    let retry = tokio::spawn(svc.clone().oneshot(request(&headers, BODY)));
    while handler.calls.load(Ordering::SeqCst) == 1 {
        tokio::task::yield_now().await;
    }
    handler.gate.notify_one();
    assert_eq!(retry.await.unwrap().unwrap().status(), StatusCode::OK);
    assert_eq!(
        send(&svc, &headers, BODY).await.1,
        r#"{"status":"duplicate"}"#
    );
    assert_eq!(handler.calls.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn github_replays_under_a_fresh_delivery_id_are_caught() {
    let scheme = Scheme::github();
    let (svc, handler) = stack(scheme.clone(), MemoryStore::default(), "t", Behaviour::Ok);
    let headers = delivery(&scheme, "72d3162e-0001", BODY);
    assert_eq!(send(&svc, &headers, BODY).await.0, StatusCode::OK);
    let mut replay = headers.clone();
    replay.insert(
        "x-github-delivery",
        HeaderValue::from_static("72d3162e-9999"),
    );
    assert_eq!(
        send(&svc, &replay, BODY).await.1,
        r#"{"status":"duplicate"}"#
    );
    // A different body is a different event.
    let other = delivery(&scheme, "72d3162e-0002", b"{}");
    assert_eq!(send(&svc, &other, b"{}").await.0, StatusCode::OK);
    assert_eq!(handler.calls.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn stripe_retries_are_keyed_on_the_signed_body_id() {
    let scheme = Scheme::stripe();
    let (svc, handler) = stack(scheme.clone(), MemoryStore::default(), "t", Behaviour::Ok);
    let first = delivery(&scheme, "-", BODY);
    assert_eq!(send(&svc, &first, BODY).await.0, StatusCode::OK);
    // Stripe's retry: same event, new timestamp and signature.
    let retry = common::sign(&scheme, SECRET, "-", common::now() + 1, BODY);
    assert_ne!(retry["stripe-signature"], first["stripe-signature"]);
    assert_eq!(
        send(&svc, &retry, BODY).await.1,
        r#"{"status":"duplicate"}"#
    );
    // A body without an id is keyed on its signature: a replay is still caught.
    const NO_ID: &[u8] = br#"{"type":"ping"}"#;
    let h = delivery(&scheme, "-", NO_ID);
    assert_eq!(send(&svc, &h, NO_ID).await.0, StatusCode::OK);
    assert_eq!(send(&svc, &h, NO_ID).await.1, r#"{"status":"duplicate"}"#);
    assert_eq!(handler.calls.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn namespaces_keep_endpoints_apart_in_one_store() {
    let scheme = Scheme::standard_webhooks();
    let store = MemoryStore::default();
    let (billing, b) = stack(scheme.clone(), store.clone(), "billing", Behaviour::Ok);
    let (shipping, s) = stack(scheme.clone(), store.clone(), "shipping", Behaviour::Ok);
    let headers = delivery(&scheme, "msg_shared", BODY);
    assert_eq!(send(&billing, &headers, BODY).await.1, "handled");
    assert_eq!(send(&shipping, &headers, BODY).await.1, "handled");
    assert_eq!(
        send(&billing, &headers, BODY).await.1,
        r#"{"status":"duplicate"}"#
    );
    assert_eq!(
        (
            b.calls.load(Ordering::SeqCst),
            s.calls.load(Ordering::SeqCst)
        ),
        (1, 1)
    );
    assert_eq!(store.len(), 2);
}

#[tokio::test]
async fn a_full_store_answers_503_and_forgets_nothing() {
    let scheme = Scheme::standard_webhooks();
    let (svc, handler) = stack(scheme.clone(), MemoryStore::new(2), "t", Behaviour::Ok);
    for id in ["msg_a", "msg_b"] {
        assert_eq!(
            send(&svc, &delivery(&scheme, id, BODY), BODY).await.0,
            StatusCode::OK
        );
    }
    let (status, body, retry) = send(&svc, &delivery(&scheme, "msg_c", BODY), BODY).await;
    assert_eq!(
        (status, body.as_str()),
        (
            StatusCode::SERVICE_UNAVAILABLE,
            r#"{"error":"store_unavailable"}"#
        )
    );
    assert_eq!(retry.as_deref(), Some("5"));
    assert_eq!(
        send(&svc, &delivery(&scheme, "msg_a", BODY), BODY).await.1,
        r#"{"status":"duplicate"}"#
    );
    assert_eq!(handler.calls.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn replay_without_verify_is_a_wiring_error() {
    let verifier = Verifier::builder(Scheme::github())
        .secret("s")
        .build()
        .unwrap();
    let replay = ReplayLayer::builder(MemoryStore::default())
        .build(&verifier)
        .unwrap();
    let svc =
        ServiceBuilder::new()
            .layer(replay)
            .service(service_fn(|_: Request<Full<Bytes>>| async {
                Ok::<_, Infallible>(Response::new(Full::new(Bytes::new())))
            }));
    let res = svc
        .oneshot(Request::new(Full::new(Bytes::new())))
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::INTERNAL_SERVER_ERROR);
    assert!(matches!(
        res.extensions().get::<Rejection>(),
        Some(Rejection::Misconfigured { .. })
    ));
    let body = res.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(&body[..], br#"{"error":"internal_error"}"#);
}

#[test]
fn configuration_errors_are_reported_at_build() {
    let verifier = Verifier::builder(Scheme::stripe())
        .secret("s")
        .tolerance(Duration::from_secs(600))
        .build()
        .unwrap();
    let err = ReplayLayer::builder(MemoryStore::default())
        .ttl(Duration::from_secs(1199))
        .build(&verifier)
        .unwrap_err();
    assert!(matches!(err, ConfigError::InvalidReplay { .. }));
    assert!(ReplayLayer::builder(MemoryStore::default())
        .ttl(Duration::from_secs(1200))
        .build(&verifier)
        .is_ok());

    // A scheme with neither an id nor a timestamp cannot be deduplicated safely.
    let body_only = Scheme::custom("x-sig").build().unwrap();
    let verifier = Verifier::builder(body_only).secret("s").build().unwrap();
    assert!(matches!(
        ReplayLayer::builder(MemoryStore::default()).build(&verifier),
        Err(ConfigError::InvalidReplay { .. })
    ));
    let with_ts = Scheme::custom("x-sig")
        .signed_content(SignedContent::TimestampBody)
        .timestamp_header("x-ts", TimestampUnit::Seconds)
        .build()
        .unwrap();
    let verifier = Verifier::builder(with_ts).secret("s").build().unwrap();
    assert!(ReplayLayer::builder(MemoryStore::default())
        .build(&verifier)
        .is_ok());
}

/// A store whose `complete` takes a while, like a slow Redis.
#[derive(Debug, Clone)]
struct SlowComplete(MemoryStore);

impl ReplayStore for SlowComplete {
    fn begin(&self, key: &str, token: Token, lease: Duration) -> StoreFuture<Begin> {
        self.0.begin(key, token, lease)
    }
    fn complete(&self, key: &str, token: Token, ttl: Duration) -> StoreFuture<bool> {
        let (store, key) = (self.0.clone(), key.to_owned());
        StoreFuture::new(async move {
            tokio::time::sleep(Duration::from_millis(100)).await;
            store.complete(&key, token, ttl).await
        })
    }
    fn release(&self, key: &str, token: Token) -> StoreFuture<bool> {
        self.0.release(key, token)
    }
}

#[tokio::test]
async fn marking_done_finishes_even_if_the_client_leaves_meanwhile() {
    let scheme = Scheme::standard_webhooks();
    let (svc, handler) = stack(
        scheme.clone(),
        SlowComplete(MemoryStore::default()),
        "t",
        Behaviour::Ok,
    );
    let headers = delivery(&scheme, "msg_slow", BODY);
    let first = tokio::spawn(svc.clone().oneshot(request(&headers, BODY)));
    while handler.calls.load(Ordering::SeqCst) == 0 {
        tokio::task::yield_now().await;
    }
    // The handler has answered 2xx; `complete` is under way. The client goes away.
    tokio::time::sleep(Duration::from_millis(20)).await;
    first.abort();
    assert!(first.await.unwrap_err().is_cancelled());
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        send(&svc, &headers, BODY).await.1,
        r#"{"status":"duplicate"}"#
    );
    assert_eq!(handler.calls.load(Ordering::SeqCst), 1);
}

/// A store whose `complete` and `release` fail the first time each, like a Redis that blinked.
#[derive(Debug, Clone)]
struct Blinking {
    inner: MemoryStore,
    failed_complete: Arc<std::sync::atomic::AtomicBool>,
    failed_release: Arc<std::sync::atomic::AtomicBool>,
}

impl ReplayStore for Blinking {
    fn begin(&self, key: &str, token: Token, lease: Duration) -> StoreFuture<Begin> {
        self.inner.begin(key, token, lease)
    }
    fn complete(&self, key: &str, token: Token, ttl: Duration) -> StoreFuture<bool> {
        if !self.failed_complete.swap(true, Ordering::SeqCst) {
            return StoreFuture::ready(Err(StoreError::unavailable("connection refused")));
        }
        self.inner.complete(key, token, ttl)
    }
    fn release(&self, key: &str, token: Token) -> StoreFuture<bool> {
        if !self.failed_release.swap(true, Ordering::SeqCst) {
            return StoreFuture::ready(Err(StoreError::Timeout));
        }
        self.inner.release(key, token)
    }
}

#[tokio::test]
async fn a_store_that_blinks_after_the_handler_is_settled_in_the_background() {
    let scheme = Scheme::standard_webhooks();
    let store = Blinking {
        inner: MemoryStore::default(),
        failed_complete: Arc::default(),
        failed_release: Arc::default(),
    };
    let (svc, handler) = stack(scheme.clone(), store.clone(), "t", Behaviour::FailFirst);

    // Handler fails (500); the release fails too. The sender's retry must not wait out the
    // 60 s lease: the release is retried in the background.
    let failing = delivery(&scheme, "msg_blink", BODY);
    assert_eq!(
        send(&svc, &failing, BODY).await.0,
        StatusCode::INTERNAL_SERVER_ERROR
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    // Handler succeeds; marking done fails once, then goes through in the background.
    assert_eq!(send(&svc, &failing, BODY).await.0, StatusCode::OK);
    tokio::time::sleep(Duration::from_millis(200)).await;
    // So a replay is a duplicate, not "in flight" until the lease ends (and then handled again).
    assert_eq!(
        send(&svc, &failing, BODY).await.1,
        r#"{"status":"duplicate"}"#
    );
    assert_eq!(handler.calls.load(Ordering::SeqCst), 2);
}
