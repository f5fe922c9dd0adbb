//! Every rejection path of buffering and verification, through a real axum server on
//! 127.0.0.1 and through `oneshot`, for the three ways of wiring the layers. Raw-TCP hostile
//! input is in `tests/adversarial/`.
#![cfg(feature = "axum")]

use crate::common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::routing::post;
use axum::Router;
use bytes::Bytes;
use common::{now, serve, Reply};
use http::{HeaderMap, HeaderValue, Request, StatusCode};
use http_body_util::BodyExt;
use tower::{ServiceBuilder, ServiceExt};
use tower_webhook::body::BufferBodyLayer;
use tower_webhook::clock::ManualClock;
use tower_webhook::scheme::Scheme;
use tower_webhook::verify::VerifyLayer;
use tower_webhook::{BodyLimits, RawBody, Rejection, Verified, Verifier};

const SECRET: &str = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";
const LIMIT: usize = 1024;

#[derive(Debug, Clone, Copy)]
enum Wiring {
    /// One `ServiceBuilder` stack given to one `Router::layer` call.
    Stack,
    /// `Router::layer` once per layer (each layer then sees axum's body type).
    OneByOne,
    /// `Verify` alone, buffering the body itself.
    VerifyAlone,
}

const WIRINGS: [Wiring; 3] = [Wiring::Stack, Wiring::OneByOne, Wiring::VerifyAlone];

struct App {
    router: Router,
    calls: Arc<AtomicUsize>,
    clock: ManualClock,
}

/// The app for `wiring`, its clock pinned at `now`: the cases are signed relative to the same
/// instant, so a second ticking over between the two cannot move a case across the tolerance.
fn app_at(wiring: Wiring, now: u64) -> App {
    let clock = ManualClock::new(now);
    let limits = BodyLimits::new()
        .max_bytes(LIMIT)
        .timeout(Duration::from_millis(600));
    let verifier = Verifier::builder(Scheme::standard_webhooks())
        .secret(SECRET)
        .clock(clock.clone())
        .body_limits(limits)
        .build()
        .unwrap();
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = calls.clone();
    let routes = Router::new().route(
        "/webhook",
        post(move |verified: Verified, body: RawBody| async move {
            counter.fetch_add(1, Ordering::SeqCst);
            format!("{} {}", verified.id().unwrap_or("-"), body.len())
        }),
    );
    let router = match wiring {
        Wiring::Stack => routes.layer(
            ServiceBuilder::new()
                .layer(BufferBodyLayer::with_limits(limits))
                .layer(VerifyLayer::new(verifier)),
        ),
        Wiring::OneByOne => routes
            .layer(VerifyLayer::new(verifier))
            .layer(BufferBodyLayer::with_limits(limits)),
        Wiring::VerifyAlone => routes.layer(VerifyLayer::new(verifier)),
    };
    App {
        router,
        calls,
        clock,
    }
}

fn signed(id: &str, ts: u64, body: &[u8]) -> HeaderMap {
    common::sign(&Scheme::standard_webhooks(), SECRET, id, ts, body)
}

/// A request case: headers and body, and what the client must get.
struct Case {
    name: &'static str,
    headers: HeaderMap,
    body: Bytes,
    status: StatusCode,
    /// `Some(code)` for a rejection, `None` for an accepted request.
    code: Option<&'static str>,
}

fn cases(now: u64) -> Vec<Case> {
    let body = Bytes::from_static(br#"{"type":"invoice.paid"}"#);
    let binary = Bytes::from_static(b"\x00\xff\xfe{not utf-8}\x80");
    let ok = signed("msg_ok", now, &body);
    let with = |name: &str, value: &str| {
        let mut h = ok.clone();
        h.insert(
            http::HeaderName::try_from(name).unwrap(),
            HeaderValue::from_str(value).unwrap(),
        );
        h
    };
    let without = |name: &str| {
        let mut h = ok.clone();
        h.remove(name);
        h
    };
    let sig = ok["webhook-signature"].to_str().unwrap().to_owned();
    let reject = |name, headers, body: &Bytes, status, code| Case {
        name,
        headers,
        body: body.clone(),
        status,
        code: Some(code),
    };
    let mut conflicting = ok.clone();
    conflicting.append("webhook-timestamp", HeaderValue::from(now + 1));
    let mut svix_conflict = ok.clone();
    svix_conflict.insert("svix-id", HeaderValue::from_static("msg_other"));
    let mut tampered = body.to_vec();
    tampered[2] ^= 0x20;
    vec![
        Case {
            name: "valid",
            headers: ok.clone(),
            body: body.clone(),
            status: StatusCode::OK,
            code: None,
        },
        Case {
            name: "valid binary body",
            headers: signed("msg_bin", now, &binary),
            body: binary.clone(),
            status: StatusCode::OK,
            code: None,
        },
        Case {
            name: "valid among several, unknown versions ignored",
            headers: with(
                "webhook-signature",
                &format!("v1a,Zm9v v1,{} {sig}", "A".repeat(43) + "="),
            ),
            body: body.clone(),
            status: StatusCode::OK,
            code: None,
        },
        reject(
            "missing signature",
            without("webhook-signature"),
            &body,
            StatusCode::UNAUTHORIZED,
            "missing_header",
        ),
        reject(
            "missing id",
            without("webhook-id"),
            &body,
            StatusCode::UNAUTHORIZED,
            "missing_header",
        ),
        reject(
            "missing timestamp",
            without("webhook-timestamp"),
            &body,
            StatusCode::UNAUTHORIZED,
            "missing_header",
        ),
        reject(
            "tampered body",
            ok.clone(),
            &Bytes::from(tampered),
            StatusCode::UNAUTHORIZED,
            "signature_mismatch",
        ),
        reject(
            "signature for another id",
            with("webhook-id", "msg_other"),
            &body,
            StatusCode::UNAUTHORIZED,
            "signature_mismatch",
        ),
        reject(
            "only unknown versions",
            with("webhook-signature", "v1a,Zm9v v2,YmFy"),
            &body,
            StatusCode::UNAUTHORIZED,
            "no_supported_signature",
        ),
        reject(
            "empty signature list",
            with("webhook-signature", ""),
            &body,
            StatusCode::BAD_REQUEST,
            "malformed_header",
        ),
        reject(
            "truncated tag",
            with("webhook-signature", &sig[..sig.len() - 24]),
            &body,
            StatusCode::BAD_REQUEST,
            "malformed_header",
        ),
        reject(
            "signed timestamp",
            with("webhook-timestamp", &format!("+{now}")),
            &body,
            StatusCode::BAD_REQUEST,
            "malformed_header",
        ),
        reject(
            "padded timestamp",
            with("webhook-timestamp", &format!("0{now}")),
            &body,
            StatusCode::BAD_REQUEST,
            "malformed_header",
        ),
        reject(
            "overflowing timestamp",
            with("webhook-timestamp", "99999999999999999999999"),
            &body,
            StatusCode::BAD_REQUEST,
            "malformed_header",
        ),
        reject(
            "timestamp with a space",
            with("webhook-timestamp", &format!("{} {}", now / 10, now % 10)),
            &body,
            StatusCode::BAD_REQUEST,
            "malformed_header",
        ),
        reject(
            "absurd timestamp",
            with("webhook-timestamp", "9999999999999999999"),
            &body,
            StatusCode::UNAUTHORIZED,
            "timestamp_out_of_tolerance",
        ),
        reject(
            "stale timestamp",
            signed("msg_old", now - 301, &body),
            &body,
            StatusCode::UNAUTHORIZED,
            "timestamp_out_of_tolerance",
        ),
        reject(
            "future timestamp",
            signed("msg_new", now + 301, &body),
            &body,
            StatusCode::UNAUTHORIZED,
            "timestamp_out_of_tolerance",
        ),
        Case {
            name: "timestamp exactly at the tolerance",
            headers: signed("msg_edge", now - 300, &body),
            body: body.clone(),
            status: StatusCode::OK,
            code: None,
        },
        reject(
            "header twice, different values",
            conflicting,
            &body,
            StatusCode::BAD_REQUEST,
            "malformed_header",
        ),
        reject(
            "svix-id disagrees with webhook-id",
            svix_conflict,
            &body,
            StatusCode::BAD_REQUEST,
            "malformed_header",
        ),
        reject(
            "body over the limit",
            signed("msg_big", now, &[b'x'; LIMIT + 1]),
            &Bytes::from(vec![b'x'; LIMIT + 1]),
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
        ),
    ]
}

fn check(case: &Case, wiring: Wiring, via: &str, status: StatusCode, body: &str, calls: usize) {
    let ctx = format!("{} ({wiring:?}, {via})", case.name);
    assert_eq!(status, case.status, "{ctx}: {body}");
    match case.code {
        Some(code) => {
            assert_eq!(body, format!("{{\"error\":\"{code}\"}}"), "{ctx}");
            assert_eq!(calls, 0, "{ctx}: a rejected request reached the handler");
        }
        None => {
            assert_eq!(calls, 1, "{ctx}: handler not called exactly once");
            assert!(
                body.ends_with(&format!(" {}", case.body.len())),
                "{ctx}: {body}"
            );
        }
    }
    assert!(
        !body.contains("whsec_") && !body.contains("C2FVsBQI"),
        "{ctx}: secret leaked"
    );
}

#[tokio::test]
async fn every_case_through_a_real_server() {
    for wiring in WIRINGS {
        let t = now();
        for case in cases(t) {
            let app = app_at(wiring, t);
            let addr = serve(app.router).await;
            let Reply {
                status,
                body,
                headers,
            } = common::post(addr, "/webhook", &case.headers, case.body.clone()).await;
            if case.code.is_some() {
                assert_eq!(headers["content-type"], "application/json");
            }
            check(
                &case,
                wiring,
                "server",
                status,
                &body,
                app.calls.load(Ordering::SeqCst),
            );
        }
    }
}

#[tokio::test]
async fn every_case_through_oneshot() {
    for wiring in WIRINGS {
        let t = now();
        for case in cases(t) {
            let app = app_at(wiring, t);
            let mut req = Request::post("/webhook")
                .body(axum::body::Body::from(case.body.clone()))
                .unwrap();
            *req.headers_mut() = case.headers.clone();
            let res = app.router.oneshot(req).await.unwrap();
            let status = res.status();
            if let Some(code) = case.code {
                let rejection = res
                    .extensions()
                    .get::<Rejection>()
                    .expect("typed rejection");
                assert_eq!(rejection.code(), code);
            }
            let body = res.into_body().collect().await.unwrap().to_bytes();
            let body = String::from_utf8_lossy(&body);
            check(
                &case,
                wiring,
                "oneshot",
                status,
                &body,
                app.calls.load(Ordering::SeqCst),
            );
        }
    }
}

#[tokio::test]
async fn clock_moves_a_delivery_out_of_the_window() {
    let app = app_at(Wiring::Stack, now());
    let t = now();
    let headers = signed("msg_clock", t, b"{}");
    app.clock.set(t + 300);
    let addr = serve(app.router.clone()).await;
    assert_eq!(
        common::post(addr, "/webhook", &headers, "{}").await.status,
        StatusCode::OK
    );
    app.clock.set(t + 301);
    let reply = common::post(addr, "/webhook", &headers, "{}").await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    assert_eq!(app.calls.load(Ordering::SeqCst), 1);
}

#[tokio::test(start_paused = true)]
async fn body_deadline_and_errors_through_oneshot() {
    use http_body_util::channel::Channel;
    for wiring in WIRINGS {
        let app = app_at(wiring, now());
        let headers = signed("msg_ch", now(), b"xx");

        let (mut tx, body) = Channel::<Bytes, std::io::Error>::new(1);
        let mut req = Request::post("/webhook")
            .body(axum::body::Body::new(body))
            .unwrap();
        *req.headers_mut() = headers.clone();
        let pending = tokio::spawn(app.router.clone().oneshot(req));
        tx.send_data(Bytes::from_static(b"x")).await.unwrap();
        tokio::time::sleep(Duration::from_millis(700)).await;
        let res = pending.await.unwrap().unwrap();
        assert_eq!(res.status(), StatusCode::REQUEST_TIMEOUT, "{wiring:?}");
        drop(tx);

        let (tx, body) = Channel::<Bytes, std::io::Error>::new(1);
        tx.abort(std::io::Error::other("reset"));
        let mut req = Request::post("/webhook")
            .body(axum::body::Body::new(body))
            .unwrap();
        *req.headers_mut() = headers;
        let res = app.router.clone().oneshot(req).await.unwrap();
        assert_eq!(res.status(), StatusCode::BAD_REQUEST, "{wiring:?}");
        assert_eq!(
            res.extensions().get::<Rejection>(),
            Some(&Rejection::BodyRead)
        );
        assert_eq!(app.calls.load(Ordering::SeqCst), 0);
    }
}

#[tokio::test]
async fn extractors_without_their_layer_are_a_wiring_error() {
    let router = Router::new().route("/webhook", post(|_: Verified| async { "unreachable" }));
    let res = router
        .oneshot(
            Request::post("/webhook")
                .body(axum::body::Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::INTERNAL_SERVER_ERROR);
    let body = res.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(&body[..], br#"{"error":"internal_error"}"#);
}
