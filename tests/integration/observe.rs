//! What the stack tells operators, through a real axum server on 127.0.0.1: exact metric
//! values after a scripted mix of deliveries, and the log lines a subscriber captures.
#![cfg(feature = "axum")]

use crate::common;

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::routing::post;
use axum::Router;
use common::{now, post as post_to, serve_with_peer};
use http::{HeaderMap, StatusCode};
use metrics_util::debugging::{DebugValue, DebuggingRecorder, Snapshotter};
use tower_webhook::events::Subscription;
use tower_webhook::rate_limit::Quota;
use tower_webhook::replay::MemoryStore;
use tower_webhook::scheme::Scheme;
use tower_webhook::{parse_cidrs, Verified, Verifier, WebhookLayer};

const NEW: &str = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";
const OLD: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

fn verifier() -> Verifier {
    Verifier::builder(Scheme::standard_webhooks())
        .secrets([NEW, OLD])
        .build()
        .unwrap()
}

fn signed(secret: &str, id: &str, timestamp: u64, body: &[u8]) -> HeaderMap {
    common::sign(&Scheme::standard_webhooks(), secret, id, timestamp, body)
}

/// A handler that fails (500) for ids starting with `fail`, and otherwise logs one line of
/// its own and answers 200.
fn routes() -> Router {
    Router::new().route(
        "/hooks",
        post(|verified: Verified| async move {
            if verified.id().is_some_and(|id| id.starts_with("fail")) {
                return StatusCode::INTERNAL_SERVER_ERROR;
            }
            tracing::info!("handler ran");
            StatusCode::OK
        }),
    )
}

/// One series: its name, its labels and its value.
type Series = (String, Vec<(String, String)>, DebugValue);

/// The value of the counter `name` with exactly `labels`, 0 when absent.
fn counter(snapshot: &[Series], name: &str, labels: &[(&str, &str)]) -> u64 {
    let found = snapshot.iter().find(|(n, l, _)| {
        n == name
            && l.len() == labels.len()
            && labels
                .iter()
                .all(|(k, v)| l.contains(&((*k).into(), (*v).into())))
    });
    match found {
        Some((_, _, DebugValue::Counter(n))) => *n,
        Some((_, _, other)) => panic!("{name} is not a counter: {other:?}"),
        None => 0,
    }
}

/// Every series recorded.
fn series(snapshotter: &Snapshotter) -> Vec<Series> {
    snapshotter
        .snapshot()
        .into_vec()
        .into_iter()
        .map(|(key, _, _, value)| {
            let key = key.key();
            let labels = key
                .labels()
                .map(|l| (l.key().to_owned(), l.value().to_owned()))
                .collect();
            (key.name().to_owned(), labels, value)
        })
        .collect()
}

#[tokio::test]
async fn a_scripted_mix_gives_exact_counts() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    // Series are registered when the stack is built, with the recorder then in force.
    let layer = metrics::with_local_recorder(&recorder, || {
        WebhookLayer::builder(verifier())
            .endpoint("/hooks")
            .rate_limit(
                Quota::new(1, Duration::from_secs(3600))
                    .unwrap()
                    .burst(8)
                    .unwrap(),
            )
            .max_body(64)
            .replay(MemoryStore::default())
            .build()
            .unwrap()
    });
    let addr = serve_with_peer("127.0.0.1", routes().layer(layer)).await;
    let send = |headers: HeaderMap, body: &'static str| async move {
        post_to(addr, "/hooks", &headers, body).await.status
    };
    let body = r#"{"type":"invoice.paid"}"#;

    let script = [
        (signed(NEW, "evt_1", now(), body.as_bytes()), body, 200),
        // The old secret of a rotation.
        (signed(OLD, "evt_2", now(), body.as_bytes()), body, 200),
        // A replay of evt_1.
        (signed(NEW, "evt_1", now(), body.as_bytes()), body, 200),
        // Tampered: signed for another body.
        (signed(NEW, "evt_3", now(), b"{}"), body, 401),
        // Stale: an hour old.
        (
            signed(NEW, "evt_4", now() - 3600, body.as_bytes()),
            body,
            401,
        ),
        // Over the 64-byte limit.
        (
            HeaderMap::new(),
            "0123456789012345678901234567890123456789012345678901234567890123456789",
            413,
        ),
        (signed(NEW, "fail_1", now(), body.as_bytes()), body, 500),
        (signed(NEW, "evt_5", now(), body.as_bytes()), body, 200),
        // The ninth request from this client: over its burst of 8.
        (signed(NEW, "evt_6", now(), body.as_bytes()), body, 429),
    ];
    for (i, (headers, body, status)) in script.into_iter().enumerate() {
        assert_eq!(send(headers, body).await.as_u16(), status, "delivery {i}");
    }

    let all = series(&snapshotter);
    let requests = |outcome| {
        counter(
            &all,
            "webhook_requests_total",
            &[
                ("endpoint", "/hooks"),
                ("scheme", "standard-webhooks"),
                ("outcome", outcome),
            ],
        )
    };
    assert_eq!(requests("accepted"), 3);
    assert_eq!(requests("duplicate"), 1);
    assert_eq!(requests("rejected"), 4);
    assert_eq!(requests("handler_error"), 1);
    assert_eq!(requests("in_flight"), 0);
    assert_eq!(requests("ignored"), 0);
    let rejections = |code| {
        counter(
            &all,
            "webhook_rejections_total",
            &[
                ("endpoint", "/hooks"),
                ("scheme", "standard-webhooks"),
                ("code", code),
            ],
        )
    };
    for (code, n) in [
        ("signature_mismatch", 1),
        ("timestamp_out_of_tolerance", 1),
        ("payload_too_large", 1),
        ("rate_limited", 1),
        ("forbidden", 0),
        ("missing_header", 0),
    ] {
        assert_eq!(rejections(code), n, "{code}");
    }
    // Each verified delivery counts its key: evt_1 twice, fail_1 and evt_5 with the new one.
    let key = |k| {
        counter(
            &all,
            "webhook_verified_key_total",
            &[
                ("endpoint", "/hooks"),
                ("scheme", "standard-webhooks"),
                ("key", k),
            ],
        )
    };
    assert_eq!((key("0"), key("1")), (4, 1));
    // The handler ran for the three accepted deliveries and the failed one.
    let handler = all
        .iter()
        .find(|(name, _, _)| name == "webhook_handler_duration_seconds")
        .expect("the handler histogram");
    match &handler.2 {
        DebugValue::Histogram(times) => {
            assert_eq!(times.len(), 4);
            assert!(times
                .iter()
                .all(|t| t.into_inner() >= 0.0 && t.into_inner() < 10.0));
        }
        other => panic!("not a histogram: {other:?}"),
    }
    // No label holds anything a request chose.
    for (name, labels, _) in &all {
        for (key, value) in labels {
            assert!(
                ["endpoint", "scheme", "outcome", "code", "key", "store"].contains(&key.as_str()),
                "{name} has the label {key}"
            );
            assert!(
                !value.contains("evt_") && !value.contains("127.0.0.1"),
                "{name}: {value}"
            );
        }
    }
}

// One thread, whose recorder is the test's while the server runs: series by event type are
// registered when a type first comes.
#[tokio::test(flavor = "current_thread")]
async fn event_types_are_labels_only_when_named() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let _recorder = metrics::set_default_local_recorder(&recorder);
    let layer = WebhookLayer::builder(verifier())
        .endpoint("/hooks")
        .metrics_event_types(Subscription::new(["invoice.*"]).unwrap())
        .replay(MemoryStore::default())
        .build()
        .unwrap();
    let addr = serve_with_peer("127.0.0.1", routes().layer(layer)).await;
    for (id, body, status) in [
        ("evt_1", r#"{"type":"invoice.paid"}"#, 200),
        ("evt_1", r#"{"type":"invoice.paid"}"#, 200),
        ("fail_2", r#"{"type":"invoice.voided"}"#, 500),
        ("evt_3", r#"{"type":"charge.refunded"}"#, 200),
        ("evt_4", r#"{"no":"type"}"#, 200),
    ] {
        let headers = signed(NEW, id, now(), body.as_bytes());
        let reply = post_to(addr, "/hooks", &headers, body).await;
        assert_eq!(reply.status.as_u16(), status, "{id}");
    }
    // A forgery has no verified type: it is not counted by type.
    let forged = signed(OLD, "evt_5", now(), b"{}");
    assert_eq!(
        post_to(addr, "/hooks", &forged, "x").await.status,
        StatusCode::UNAUTHORIZED
    );

    let all = series(&snapshotter);
    let typed = |event_type, outcome| {
        let labels = [
            ("endpoint", "/hooks"),
            ("scheme", "standard-webhooks"),
            ("event_type", event_type),
            ("outcome", outcome),
        ];
        counter(&all, "webhook_events_total", &labels)
    };
    assert_eq!(typed("invoice.paid", "accepted"), 1);
    assert_eq!(typed("invoice.paid", "duplicate"), 1);
    assert_eq!(typed("invoice.voided", "handler_error"), 1);
    assert_eq!(typed("other", "accepted"), 1);
    assert_eq!(typed("-", "accepted"), 1);
    let typed_total: u64 = all
        .iter()
        .filter(|(name, _, _)| name == "webhook_events_total")
        .map(|(_, _, v)| match v {
            DebugValue::Counter(n) => *n,
            _ => 0,
        })
        .sum();
    assert_eq!(typed_total, 5);
    // The sender's own types never reach a label unless named.
    assert!(all
        .iter()
        .all(|(_, labels, _)| labels.iter().all(|(_, v)| v != "charge.refunded")));
    let timed = all
        .iter()
        .filter(|(name, _, _)| name == "webhook_event_handler_duration_seconds")
        .count();
    assert_eq!(timed, 4, "invoice.paid, invoice.voided, other and -");
}

#[tokio::test]
async fn a_failing_replay_store_is_counted() {
    // A Redis store on a port where nothing listens: every call fails.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let store = tower_webhook::replay::RedisStore::with_timeout(
        &format!("redis://127.0.0.1:{port}/"),
        Duration::from_millis(200),
    )
    .unwrap();
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let layer = metrics::with_local_recorder(&recorder, || {
        WebhookLayer::builder(verifier())
            .replay(store)
            .build()
            .unwrap()
    });
    assert!(layer.health().await.is_err());
    let addr = serve_with_peer("127.0.0.1", routes().layer(layer)).await;
    let body = b"{}";
    let reply = post_to(
        addr,
        "/hooks",
        &signed(NEW, "evt_1", now(), body),
        &body[..],
    )
    .await;
    assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE);
    let all = series(&snapshotter);
    assert_eq!(
        counter(
            &all,
            "webhook_replay_store_errors_total",
            &[("store", "redis")]
        ),
        1
    );
    let rejected = [
        ("endpoint", "default"),
        ("scheme", "standard-webhooks"),
        ("code", "store_unavailable"),
    ];
    assert_eq!(counter(&all, "webhook_rejections_total", &rejected), 1);
}

/// Everything a `tracing` subscriber writes, for the test to read.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    /// The captured lines that contain `needle`.
    fn lines_with(&self, needle: &str) -> Vec<String> {
        String::from_utf8_lossy(&self.0.lock().unwrap())
            .lines()
            .filter(|l| l.contains(needle))
            .map(str::to_owned)
            .collect()
    }
}

// One thread: the server runs where the subscriber is the default.
#[tokio::test(flavor = "current_thread")]
async fn logs_name_the_client_behind_a_proxy_and_audit_each_accepted_event() {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .finish();
    let _default = tracing::subscriber::set_default(subscriber);
    // Tests on other threads, with no subscriber, register the same callsites at the same time;
    // one registered while this subscriber was being set could keep the interest it had
    // without it. Computed again, now that this thread has one.
    tracing::callsite::rebuild_interest_cache();

    let layer = WebhookLayer::builder(verifier())
        .endpoint("/hooks")
        .trusted_proxies(parse_cidrs("127.0.0.1/32").unwrap())
        .build()
        .unwrap();
    let addr = serve_with_peer("127.0.0.1", routes().layer(layer)).await;
    let from_proxy = |mut headers: HeaderMap| {
        headers.insert("x-forwarded-for", "203.0.113.9".parse().unwrap());
        headers
    };
    let body = r#"{"type":"invoice.paid","id":"x"}"#;

    // A forgery, relayed by the trusted proxy.
    let forged = from_proxy(signed(
        "whsec_bm90IHRoZSBzZWNyZXQgYXQgYWxsISE=",
        "evt_forged",
        now(),
        body.as_bytes(),
    ));
    assert_eq!(
        post_to(addr, "/hooks", &forged, body).await.status,
        StatusCode::UNAUTHORIZED
    );
    let rejected = captured.lines_with("webhook rejected");
    assert_eq!(rejected.len(), 1, "{rejected:?}");
    for field in [
        "status=401",
        "code=\"signature_mismatch\"",
        "endpoint=\"/hooks\"",
        "scheme=\"standard-webhooks\"",
        "client=203.0.113.9",
        "event_id=\"evt_forged\"",
    ] {
        assert!(
            rejected[0].contains(field),
            "{field} missing in {}",
            rejected[0]
        );
    }

    // A good delivery signed with the old secret: one audit line, and the handler's own line
    // in the request's span.
    let good = from_proxy(signed(OLD, "evt_good", now(), body.as_bytes()));
    assert_eq!(
        post_to(addr, "/hooks", &good, body).await.status,
        StatusCode::OK
    );
    let accepted = captured.lines_with("webhook accepted");
    assert_eq!(accepted.len(), 1, "{accepted:?}");
    for field in [
        "event_id=\"evt_good\"",
        "event_type=\"invoice.paid\"",
        "scheme=\"standard-webhooks\"",
        "endpoint=\"/hooks\"",
        "key=1",
        "client=203.0.113.9",
        &format!("bytes={}", body.len()),
        "handler_ms=",
    ] {
        assert!(
            accepted[0].contains(field),
            "{field} missing in {}",
            accepted[0]
        );
    }
    let handler = captured.lines_with("handler ran");
    assert_eq!(handler.len(), 1);
    assert!(
        handler[0].contains("webhook{endpoint=\"/hooks\" event_id=\"evt_good\"}"),
        "{}",
        handler[0]
    );
    // Nothing logged holds the body or a secret.
    let all = captured.lines_with("");
    assert!(all
        .iter()
        .all(|l| !l.contains("invoice.paid\",\"id") && !l.contains("whsec_")));
}
