//! The demo receiver as an operator runs it: its `/metrics` scraped and parsed as Prometheus
//! text, its `/healthz` following a real Redis down and up, and SIGTERM during a slow handler.
#![cfg(all(feature = "redis", feature = "metrics"))]

use crate::common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::redis::RedisServer;
use common::{get, now, post, Example};
use http::StatusCode;
use prometheus_parse::{Scrape, Value};
use tower_webhook::scheme::Scheme;

const SECRET: &str = "whsec_c2VjcmV0LWZvci10ZXN0cw==";

fn signed(id: &str, body: &[u8]) -> http::HeaderMap {
    common::sign(&Scheme::standard_webhooks(), SECRET, id, now(), body)
}

fn addr(example: &Example) -> SocketAddr {
    example.addr.parse().unwrap()
}

/// The `metrics=<addr>` of the receiver's first line.
fn metrics_addr(example: &Example) -> SocketAddr {
    let field = example
        .listening
        .iter()
        .find_map(|f| f.strip_prefix("metrics="))
        .expect("a metrics= field");
    field.parse().unwrap()
}

/// The value of the sample `name` whose labels include `labels`.
fn sample(scrape: &Scrape, name: &str, labels: &[(&str, &str)]) -> Option<Value> {
    scrape
        .samples
        .iter()
        .find(|s| s.metric == name && labels.iter().all(|(k, v)| s.labels.get(k) == Some(v)))
        .map(|s| s.value.clone())
}

/// Waits until `/healthz` answers `status`, for at most 10 s.
async fn health_becomes(ops: SocketAddr, status: StatusCode) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let reply = get(ops, "/healthz").await;
        if reply.status == status {
            return reply.body;
        }
        assert!(Instant::now() < deadline, "healthz stayed {}", reply.status);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn metrics_are_scraped_and_health_follows_redis() {
    let Some(mut redis) = RedisServer::start() else {
        return;
    };
    let url = redis.url();
    let receiver = Example::start(
        "receiver",
        &[
            ("WEBHOOK_SECRET", SECRET),
            ("REPLAY_STORE", "redis"),
            ("REDIS_URL", &url),
            ("METRICS_ADDR", "127.0.0.1:0"),
        ],
    );
    let (hooks, ops) = (addr(&receiver), metrics_addr(&receiver));
    let body = br#"{"type":"invoice.paid"}"#;
    let send = |headers, body: &'static [u8]| async move {
        post(hooks, "/webhook", &headers, body).await.status
    };
    assert_eq!(send(signed("evt_1", body), body).await, StatusCode::OK);
    assert_eq!(send(signed("evt_1", body), body).await, StatusCode::OK);
    assert_eq!(
        send(signed("evt_2", b"{}"), body).await,
        StatusCode::UNAUTHORIZED
    );

    let reply = get(ops, "/metrics").await;
    assert_eq!(reply.status, StatusCode::OK);
    let scrape = Scrape::parse(reply.body.lines().map(|l| Ok(l.to_owned()))).unwrap();
    let endpoint = [("endpoint", "/webhook"), ("scheme", "standard-webhooks")];
    let counted = |name: &str, label: (&str, &str)| {
        let labels = [endpoint[0], endpoint[1], label];
        match sample(&scrape, name, &labels) {
            Some(Value::Counter(n)) => n,
            other => panic!("{name} {label:?}: {other:?}\n{}", reply.body),
        }
    };
    assert_eq!(
        counted("webhook_requests_total", ("outcome", "accepted")),
        1.0
    );
    assert_eq!(
        counted("webhook_requests_total", ("outcome", "duplicate")),
        1.0
    );
    assert_eq!(
        counted("webhook_requests_total", ("outcome", "rejected")),
        1.0
    );
    assert_eq!(
        counted("webhook_requests_total", ("outcome", "handler_error")),
        0.0
    );
    assert_eq!(
        counted("webhook_rejections_total", ("code", "signature_mismatch")),
        1.0
    );
    assert_eq!(counted("webhook_verified_key_total", ("key", "0")), 2.0);
    match sample(&scrape, "webhook_handler_duration_seconds", &endpoint) {
        Some(Value::Histogram(buckets)) => {
            let all = buckets.iter().find(|b| b.less_than.is_infinite()).unwrap();
            assert_eq!(all.count, 1.0);
        }
        other => panic!("handler histogram: {other:?}\n{}", reply.body),
    }
    assert!(sample(
        &scrape,
        "webhook_replay_store_errors_total",
        &[("store", "redis")]
    )
    .is_some());

    assert_eq!(
        health_becomes(ops, StatusCode::OK).await,
        r#"{"status":"ok"}"#
    );
    redis.stop();
    assert_eq!(
        health_becomes(ops, StatusCode::SERVICE_UNAVAILABLE).await,
        r#"{"status":"unavailable"}"#
    );
    redis.restart();
    health_becomes(ops, StatusCode::OK).await;
}

#[tokio::test]
async fn sigterm_lets_a_slow_delivery_finish_then_exits_0() {
    let mut receiver = Example::start(
        "receiver",
        &[("WEBHOOK_SECRET", SECRET), ("HANDLER_DELAY_MS", "1500")],
    );
    let hooks = addr(&receiver);
    let body = br#"{"type":"slow"}"#;
    let headers = signed("evt_slow", body);
    let slow = tokio::spawn(async move { post(hooks, "/webhook", &headers, &body[..]).await });
    // The handler is waiting when the signal comes.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let signalled = Instant::now();
    receiver.signal("TERM");

    let reply = slow.await.unwrap();
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.body, r#"{"status":"accepted"}"#);
    let status = tokio::task::spawn_blocking(move || {
        let status = receiver.exit_within(Duration::from_secs(10));
        (status, receiver.printed())
    })
    .await
    .unwrap();
    assert_eq!(status.0.and_then(|s| s.code()), Some(0));
    assert!(signalled.elapsed() < Duration::from_secs(10));
    assert_eq!(
        status.1,
        [format!(
            "accepted id=evt_slow bytes={} type=slow path=/webhook",
            body.len()
        )]
    );
    // Nothing listens any more.
    assert!(tokio::net::TcpStream::connect(hooks).await.is_err());
}

#[tokio::test]
async fn a_handler_slower_than_the_grace_period_exits_1() {
    let mut receiver = Example::start(
        "receiver",
        &[
            ("WEBHOOK_SECRET", SECRET),
            ("HANDLER_DELAY_MS", "20000"),
            ("SHUTDOWN_GRACE_SECS", "1"),
        ],
    );
    let body = b"{}";
    let hooks = addr(&receiver);
    let headers: Vec<(String, Vec<u8>)> = signed("evt_stuck", body)
        .iter()
        .map(|(k, v)| (k.to_string(), v.as_bytes().to_vec()))
        .collect();
    let request = common::raw_post("/webhook", &headers, body);
    let stuck = tokio::spawn(async move { common::exchange(hooks, &request).await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    receiver.signal("INT");
    let status = tokio::task::spawn_blocking(move || receiver.exit_within(Duration::from_secs(10)))
        .await
        .unwrap();
    assert_eq!(status.and_then(|s| s.code()), Some(1));
    // The cut delivery got no answer: its sender will retry it.
    assert!(stuck.await.unwrap().is_empty());
}

#[tokio::test]
async fn the_inbox_is_scraped_and_in_the_health_check() {
    let Some(mut redis) = RedisServer::start() else {
        return;
    };
    let url = redis.url();
    let receiver = Example::start(
        "receiver",
        &[
            ("WEBHOOK_SECRET", SECRET),
            ("REPLAY_STORE", "redis"),
            ("INBOX", "redis"),
            ("REDIS_URL", &url),
            ("METRICS_ADDR", "127.0.0.1:0"),
            ("WORKERS", "2"),
            ("MAX_ATTEMPTS", "1"),
            ("FAIL_ALWAYS_PREFIX", "bad"),
        ],
    );
    let (hooks, ops) = (addr(&receiver), metrics_addr(&receiver));
    let body = br#"{"type":"invoice.paid"}"#;
    for id in ["evt_1", "bad_1"] {
        let reply = post(hooks, "/webhook", &signed(id, body), &body[..]).await;
        assert_eq!(reply.status, StatusCode::ACCEPTED);
    }
    let mut lines = receiver.printed_until(Duration::from_secs(10), |l| l.len() >= 2);
    lines.sort();
    assert_eq!(
        lines,
        [
            "accepted id=evt_1 bytes=23 type=invoice.paid path=/webhook",
            "dead id=bad_1 attempts=1"
        ]
    );
    // The workers record the depth each second.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let reply = get(ops, "/metrics").await;
    let scrape = Scrape::parse(reply.body.lines().map(|l| Ok(l.to_owned()))).unwrap();
    let value = |name: &str, labels: &[(&str, &str)]| match sample(&scrape, name, labels) {
        Some(Value::Counter(n) | Value::Gauge(n)) => n,
        other => panic!("{name} {labels:?}: {other:?}\n{}", reply.body),
    };
    let endpoint = ("endpoint", "/webhook");
    assert_eq!(
        value("webhook_requests_total", &[endpoint, ("outcome", "queued")]),
        2.0
    );
    let attempts = "webhook_inbox_attempts_total";
    assert_eq!(value(attempts, &[endpoint, ("result", "success")]), 1.0);
    assert_eq!(value(attempts, &[endpoint, ("result", "failure")]), 1.0);
    assert_eq!(value("webhook_inbox_dead_total", &[endpoint]), 1.0);
    let depth = |state| {
        value(
            "webhook_inbox_depth",
            &[("inbox", "redis"), ("state", state)],
        )
    };
    assert_eq!(
        (depth("queued"), depth("retrying"), depth("dead")),
        (0.0, 0.0, 1.0)
    );
    // The alert rules watch series that exist.
    let rules = include_str!("../../contrib/prometheus/alerts.yml");
    for name in rules.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')) {
        if name.starts_with("webhook_") {
            assert!(scrape.samples.iter().any(|s| s.metric == name), "{name}");
        }
    }

    health_becomes(ops, StatusCode::OK).await;
    redis.stop();
    health_becomes(ops, StatusCode::SERVICE_UNAVAILABLE).await;
    let refused = post(hooks, "/webhook", &signed("evt_2", body), &body[..]).await;
    assert_eq!(refused.status, StatusCode::SERVICE_UNAVAILABLE);
    redis.restart();
    health_becomes(ops, StatusCode::OK).await;
}

#[tokio::test]
async fn sigterm_hands_back_an_event_in_progress_to_the_inbox() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let url = redis.url();
    let mut receiver = Example::start(
        "receiver",
        &[
            ("WEBHOOK_SECRET", SECRET),
            ("INBOX", "redis"),
            ("REDIS_URL", &url),
            ("WORKERS", "1"),
            ("HANDLER_DELAY_MS", "20000"),
            ("SHUTDOWN_GRACE_SECS", "1"),
        ],
    );
    let body = br#"{"type":"slow"}"#;
    let reply = post(
        addr(&receiver),
        "/webhook",
        &signed("evt_slow", body),
        &body[..],
    )
    .await;
    assert_eq!(reply.status, StatusCode::ACCEPTED);
    tokio::time::sleep(Duration::from_millis(700)).await;
    receiver.signal("TERM");
    let signalled = Instant::now();
    let (status, receiver) = tokio::task::spawn_blocking(move || {
        (receiver.exit_within(Duration::from_secs(10)), receiver)
    })
    .await
    .unwrap();
    assert_eq!(status.and_then(|s| s.code()), Some(0));
    assert!(signalled.elapsed() < Duration::from_secs(5));
    assert!(receiver.printed().is_empty());
    assert!(receiver
        .stderr()
        .contains("events in progress handed back to the inbox: 1"));
    // A worker handles it at once, on its first attempt still.
    let worker = Example::start("worker", &[("REDIS_URL", &url)]);
    let lines = worker.printed_until(Duration::from_secs(10), |l| !l.is_empty());
    assert_eq!(
        lines,
        ["accepted id=evt_slow bytes=15 type=slow path=/webhook"]
    );
}
