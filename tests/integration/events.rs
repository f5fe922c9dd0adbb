//! Subscriptions, the event router and the typed extractor, through the one-call stack and
//! real axum servers on 127.0.0.1.

use crate::common;

use std::convert::Infallible;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::routing::{post, post_service};
use bytes::Bytes;
use common::{now, post as post_to, serve_with_peer};
use http::{HeaderMap, Request, Response, StatusCode};
use serde::Deserialize;
use tower::{service_fn, Layer, ServiceBuilder};
use tower_webhook::events::{Event, EventRouter, SubscribeLayer, Subscription};
use tower_webhook::replay::{Begin, MemoryStore, ReplayLayer, ReplayStore, StoreFuture, Token};
use tower_webhook::scheme::Scheme;
use tower_webhook::{BufferedBody, ConfigError, Verifier, WebhookLayer};

const SECRET: &str = "whsec_test_secret";

fn stripe() -> Verifier {
    Verifier::builder(Scheme::stripe())
        .secret(SECRET)
        .build()
        .unwrap()
}

/// A Stripe event of `ty` about object `id`.
fn stripe_event(event_id: &str, ty: &str, object: &str) -> (HeaderMap, String) {
    let body = format!(
        r#"{{"id":"{event_id}","object":"event","data":{{"object":{{"id":"{object}","amount_paid":1200}}}},"type":"{ty}"}}"#
    );
    let headers = common::sign(&Scheme::stripe(), SECRET, "-", now(), body.as_bytes());
    (headers, body)
}

/// A replay store that counts the calls it gets.
#[derive(Debug, Clone, Default)]
struct Counting {
    store: MemoryStore,
    calls: Arc<AtomicUsize>,
}

impl ReplayStore for Counting {
    fn begin(&self, key: &str, token: Token, lease: Duration) -> StoreFuture<Begin> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        self.store.begin(key, token, lease)
    }
    fn complete(&self, key: &str, token: Token, ttl: Duration) -> StoreFuture<bool> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        self.store.complete(key, token, ttl)
    }
    fn release(&self, key: &str, token: Token) -> StoreFuture<bool> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        self.store.release(key, token)
    }
}

#[derive(Debug, Deserialize)]
struct Invoice {
    data: InvoiceData,
}

#[derive(Debug, Deserialize)]
struct InvoiceData {
    object: InvoiceObject,
}

#[derive(Debug, Deserialize)]
struct InvoiceObject {
    id: String,
    amount_paid: u64,
}

/// The issue's done criterion: a Stripe receiver subscribed to `invoice.*` accepts
/// `invoice.paid` with a typed handler, and answers `charge.refunded` 200 ignored without its
/// handler and without touching the replay store.
#[tokio::test]
async fn a_stripe_receiver_subscribed_to_invoices() {
    let store = Counting::default();
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = calls.clone();
    let stack = WebhookLayer::builder(stripe())
        .subscribe(Subscription::new(["invoice.*"]).unwrap())
        .replay(store.clone())
        .build()
        .unwrap();
    let app = axum::Router::new().route(
        "/stripe",
        post(move |event: Event<Invoice>| async move {
            counter.fetch_add(1, Ordering::SeqCst);
            let invoice = &event.data().data.object;
            format!(
                "{} {} {}",
                event.event_type().unwrap_or("-"),
                invoice.id,
                invoice.amount_paid
            )
        })
        .layer(stack),
    );
    let addr = serve_with_peer("127.0.0.1", app).await;

    let (headers, body) = stripe_event("evt_1", "invoice.paid", "in_1");
    let reply = post_to(addr, "/stripe", &headers, body).await;
    assert_eq!(
        (reply.status, reply.body.as_str()),
        (StatusCode::OK, "invoice.paid in_1 1200")
    );
    let begun = store.calls.load(Ordering::SeqCst);
    assert_eq!(begun, 2, "begin and complete");

    let (headers, body) = stripe_event("evt_2", "charge.refunded", "ch_1");
    let reply = post_to(addr, "/stripe", &headers, body).await;
    assert_eq!(
        (reply.status, reply.body.as_str()),
        (StatusCode::OK, r#"{"status":"ignored"}"#)
    );
    // A look-alike type is not an invoice either.
    let (headers, body) = stripe_event("evt_3", "invoiceitem.created", "ii_1");
    let reply = post_to(addr, "/stripe", &headers, body).await;
    assert_eq!(reply.body, r#"{"status":"ignored"}"#);
    assert_eq!(
        calls.load(Ordering::SeqCst),
        1,
        "the handler ran for the invoice only"
    );
    assert_eq!(
        store.calls.load(Ordering::SeqCst),
        begun,
        "ignored events never reach the store"
    );

    // A tampered delivery of an ignored type is still refused: verification comes first.
    let (headers, _) = stripe_event("evt_4", "charge.refunded", "ch_2");
    let reply = post_to(addr, "/stripe", &headers, r#"{"type":"charge.refunded"}"#).await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn a_body_that_does_not_fit_the_handlers_type_is_422() {
    let stack = WebhookLayer::builder(stripe()).build().unwrap();
    let app = axum::Router::new().route(
        "/stripe",
        post(|_: Event<Invoice>| async { "handled" }).layer(stack),
    );
    let addr = serve_with_peer("127.0.0.1", app).await;
    let body = r#"{"id":"evt_9","data":{"object":{"id":"in_9","amount_paid":"twelve"}},"type":"invoice.paid"}"#;
    let headers = common::sign(&Scheme::stripe(), SECRET, "-", now(), body.as_bytes());
    let reply = post_to(addr, "/stripe", &headers, body).await;
    assert_eq!(
        (reply.status, reply.body.as_str()),
        (
            StatusCode::UNPROCESSABLE_ENTITY,
            r#"{"error":"invalid_payload"}"#
        )
    );
}

/// What a subscription lets through, by pattern, through the stack: `true` when the handler
/// ran.
async fn handled(patterns: &[&str], body: &str) -> bool {
    use tower::ServiceExt;
    let stack = WebhookLayer::builder(stripe())
        .subscribe(Subscription::new(patterns).unwrap())
        .build()
        .unwrap();
    let svc = stack.layer(service_fn(|_: Request<BufferedBody>| async {
        Ok::<_, Infallible>(Response::new("handled".to_owned()))
    }));
    let mut req = Request::post("/")
        .body(http_body_util::Full::new(Bytes::from(body.to_owned())))
        .unwrap();
    *req.headers_mut() = common::sign(&Scheme::stripe(), SECRET, "-", now(), body.as_bytes());
    req.extensions_mut()
        .insert(std::net::SocketAddr::from(([127, 0, 0, 1], 1)));
    let res = svc.oneshot(req).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    res.extensions().get::<tower_webhook::Rejection>().is_none()
}

#[tokio::test]
async fn exact_prefix_and_catch_all_patterns() {
    let paid = r#"{"type":"invoice.paid"}"#;
    let failed = r#"{"type":"invoice.payment.failed"}"#;
    let untyped = r#"{"object":"event"}"#;
    assert!(handled(&["invoice.paid"], paid).await);
    assert!(!handled(&["invoice.paid"], failed).await);
    assert!(handled(&["invoice.*"], failed).await);
    assert!(!handled(&["invoice.*"], untyped).await);
    assert!(handled(&["customer.*", "*"], untyped).await);
    assert!(handled(&["*"], "not json at all").await);
    assert!(!handled(&["charge.*", "customer.subscription.deleted"], paid).await);
}

#[test]
fn bad_patterns_are_config_errors() {
    for bad in [&["inv*ice"][..], &["*.paid"], &[""], &[]] {
        assert!(Subscription::new(bad).is_err(), "{bad:?}");
    }
    let ok = || {
        service_fn(|_: Request<BufferedBody>| async {
            Ok::<_, Infallible>(Response::new(String::new()))
        })
    };
    let twice = EventRouter::builder()
        .route("invoice.*", ok())
        .route("invoice.*", ok())
        .build();
    assert!(
        matches!(twice, Err(ConfigError::InvalidEventPattern { .. })),
        "{twice:?}"
    );
    let bad = EventRouter::builder().route("in*voice", ok()).build();
    assert!(matches!(bad, Err(ConfigError::InvalidEventPattern { .. })));
}

#[tokio::test]
async fn the_router_sends_each_type_to_the_most_specific_route() {
    let named = |name: &'static str| {
        service_fn(move |_: Request<BufferedBody>| async move {
            Ok::<_, Infallible>(Response::new(name.to_owned()))
        })
    };
    let router = EventRouter::builder()
        .route("invoice.*", named("invoices"))
        .route("invoice.paid", named("paid"))
        .route("invoice.payment.*", named("payments"))
        .route("customer.subscription.deleted", named("cancelled"))
        .build()
        .unwrap();
    let stack = WebhookLayer::builder(stripe()).build().unwrap();
    let app = axum::Router::new().route_service("/stripe", post_service(stack.layer(router)));
    let addr = serve_with_peer("127.0.0.1", app).await;
    for (ty, want) in [
        ("invoice.paid", "paid"),
        ("invoice.voided", "invoices"),
        ("invoice.payment.failed", "payments"),
        ("customer.subscription.deleted", "cancelled"),
        ("charge.refunded", r#"{"status":"ignored"}"#),
    ] {
        let (headers, body) = stripe_event("evt_r", ty, "obj");
        let reply = post_to(addr, "/stripe", &headers, body).await;
        assert_eq!(
            (reply.status, reply.body.as_str()),
            (StatusCode::OK, want),
            "{ty}"
        );
    }

    // With a fallback, and a catch-all that an exact route still beats.
    let router = EventRouter::builder()
        .route("*", named("any"))
        .route("push", named("push"))
        .fallback(named("fallback"))
        .build()
        .unwrap();
    let verifier = Verifier::builder(Scheme::github())
        .secret(SECRET)
        .build()
        .unwrap();
    let stack = WebhookLayer::builder(verifier).build().unwrap();
    let app = axum::Router::new().route_service("/github", post_service(stack.layer(router)));
    let addr = serve_with_peer("127.0.0.1", app).await;
    for (event, want) in [("push", "push"), ("issues", "any")] {
        let mut headers = common::sign(&Scheme::github(), SECRET, "d1", now(), b"{}");
        headers.insert("x-github-event", event.parse().unwrap());
        let reply = post_to(addr, "/github", &headers, "{}").await;
        assert_eq!(reply.body, want, "{event}");
    }
}

/// The subscription as its own layer, in a hand-made order: after verification, before
/// replay.
#[tokio::test]
async fn the_subscribe_layer_alone() {
    use tower::ServiceExt;
    let store = Counting::default();
    let verifier = stripe();
    let replay = ReplayLayer::builder(store.clone())
        .build(&verifier)
        .unwrap();
    let svc = ServiceBuilder::new()
        .layer(tower_webhook::body::BufferBodyLayer::new())
        .layer(tower_webhook::verify::VerifyLayer::new(verifier))
        .layer(SubscribeLayer::new(
            Subscription::new(["invoice.paid"]).unwrap(),
        ))
        .layer(replay)
        .service(service_fn(|_: Request<BufferedBody>| async {
            Ok::<_, Infallible>(Response::new(http_body_util::Full::new(
                Bytes::from_static(b"handled"),
            )))
        }));
    for (ty, ignored) in [("invoice.paid", false), ("charge.refunded", true)] {
        let (headers, body) = stripe_event(&format!("evt_{ty}"), ty, "x");
        let mut req = Request::post("/")
            .body(http_body_util::Full::new(Bytes::from(body)))
            .unwrap();
        *req.headers_mut() = headers;
        let res = svc.clone().oneshot(req).await.unwrap();
        assert_eq!(res.status(), StatusCode::OK);
        let rejection = res.extensions().get::<tower_webhook::Rejection>();
        assert_eq!(
            rejection == Some(&tower_webhook::Rejection::Ignored),
            ignored,
            "{ty}"
        );
    }
    assert_eq!(
        store.calls.load(Ordering::SeqCst),
        2,
        "only the subscribed event"
    );
}

/// Slack's URL verification, answered by the stack when asked to, once verified; a forged
/// handshake is refused, and without the option the handler gets it.
#[tokio::test]
async fn the_stack_answers_slacks_url_verification_when_asked() {
    use tower::ServiceExt;
    let send = |answer: bool, tamper: bool| async move {
        let verifier = Verifier::builder(Scheme::slack())
            .secret(SECRET)
            .build()
            .unwrap();
        let stack = WebhookLayer::builder(verifier)
            .slack_url_verification(answer)
            .subscribe(Subscription::new(["app_mention"]).unwrap())
            .build()
            .unwrap();
        let svc = stack.layer(service_fn(|_: Request<BufferedBody>| async {
            Ok::<_, Infallible>(Response::new("handler".to_owned()))
        }));
        let body = r#"{"token":"Jhj5dZrVaK7ZwHHjRyZWjbDl","challenge":"3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P","type":"url_verification"}"#;
        let headers = common::sign(&Scheme::slack(), SECRET, "-", now(), body.as_bytes());
        let sent = if tamper {
            body.replace("3eZ", "4eZ")
        } else {
            body.to_owned()
        };
        let mut req = Request::post("/")
            .body(http_body_util::Full::new(Bytes::from(sent)))
            .unwrap();
        *req.headers_mut() = headers;
        req.extensions_mut()
            .insert(std::net::SocketAddr::from(([127, 0, 0, 1], 1)));
        let res = svc.oneshot(req).await.unwrap();
        let status = res.status();
        let body = http_body_util::BodyExt::collect(res.into_body())
            .await
            .unwrap()
            .to_bytes();
        (status, String::from_utf8(body.to_vec()).unwrap())
    };
    assert_eq!(
        send(true, false).await,
        (
            StatusCode::OK,
            r#"{"challenge":"3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P"}"#.to_owned()
        )
    );
    assert_eq!(send(true, true).await.0, StatusCode::UNAUTHORIZED);
    // Without the option, the subscription (app_mention only) ignores the handshake.
    assert_eq!(
        send(false, false).await,
        (StatusCode::OK, r#"{"status":"ignored"}"#.to_owned())
    );
}

/// `Event::from_request`, for plain Tower and hyper handlers: the parsed payload, or the
/// rejection the axum extractor answers with.
#[tokio::test]
async fn event_from_request_without_axum() {
    use tower::ServiceExt;
    let stack = WebhookLayer::builder(stripe()).build().unwrap();
    let svc = stack.layer(service_fn(|req: Request<BufferedBody>| async move {
        let answer = match Event::<Invoice>::from_request(&req) {
            Ok(event) => format!(
                "{} {}",
                event.data().data.object.id,
                event.timestamp().is_some()
            ),
            Err(rejection) => format!("{} {}", rejection.status().as_u16(), rejection.code()),
        };
        Ok::<_, Infallible>(Response::new(answer))
    }));
    for (body, want) in [
        (
            r#"{"data":{"object":{"id":"in_7","amount_paid":5}},"type":"invoice.paid"}"#,
            "in_7 true",
        ),
        (
            r#"{"data":{"object":{}},"type":"invoice.paid"}"#,
            "422 invalid_payload",
        ),
        ("not json", "422 invalid_payload"),
    ] {
        let mut req = Request::post("/")
            .body(http_body_util::Full::new(Bytes::from(body)))
            .unwrap();
        *req.headers_mut() = common::sign(&Scheme::stripe(), SECRET, "-", now(), body.as_bytes());
        req.extensions_mut()
            .insert(std::net::SocketAddr::from(([127, 0, 0, 1], 1)));
        let res = svc.clone().oneshot(req).await.unwrap();
        let got = http_body_util::BodyExt::collect(res.into_body())
            .await
            .unwrap()
            .to_bytes();
        assert_eq!(std::str::from_utf8(&got).unwrap(), want, "{body}");
    }
    // Without verification in front: a wiring error, never the client's fault.
    let req = Request::new(());
    assert_eq!(
        Event::<Invoice>::from_request(&req).unwrap_err().status(),
        StatusCode::INTERNAL_SERVER_ERROR
    );
}
