//! The inbox in memory: 202 at once through a real axum server, workers with backoff, the
//! circuit breaker, dead letters, shutdown, and a full inbox refusing with 503. Worker timing
//! runs on paused Tokio time.

use crate::common;

use std::convert::Infallible;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{now, post};
use http::{HeaderMap, StatusCode};
use tokio::time::Instant;
use tower::service_fn;
use tower_webhook::inbox::{Event, Inbox, Worker};
use tower_webhook::scheme::Scheme;

const SECRET: &str = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";

fn signed(id: &str, body: &[u8]) -> HeaderMap {
    common::sign(&Scheme::standard_webhooks(), SECRET, id, now(), body)
}

/// A receiver on 127.0.0.1 in front of `inbox`.
async fn receiver(inbox: &Inbox) -> std::net::SocketAddr {
    common::inbox_receiver(inbox, SECRET).await
}

/// What a test handler saw: each call's event and when it came.
#[derive(Clone, Default)]
struct Seen(Arc<Mutex<Vec<(Instant, Event)>>>);

impl Seen {
    fn push(&self, event: &Event) {
        self.0.lock().unwrap().push((Instant::now(), event.clone()));
    }

    fn len(&self) -> usize {
        self.0.lock().unwrap().len()
    }

    fn times(&self) -> Vec<Instant> {
        self.0.lock().unwrap().iter().map(|(t, _)| *t).collect()
    }

    fn ids(&self) -> Vec<String> {
        let seen = self.0.lock().unwrap();
        seen.iter()
            .map(|(_, e)| e.id().unwrap_or("-").to_owned())
            .collect()
    }

    /// Waits (real or paused time) until `n` calls were seen.
    async fn wait_for(&self, n: usize) {
        let waited = tokio::time::timeout(Duration::from_secs(120), async {
            while self.len() < n {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        });
        waited.await.expect("the handler was not called in time");
    }
}

/// A handler that records each call, then fails when `fail` says so for the event.
fn handler(
    seen: &Seen,
    fail: impl Fn(&Event) -> bool + Clone + Send + Sync + 'static,
) -> impl tower::Service<Event, Response = (), Error = std::io::Error, Future: Send + 'static>
       + Clone
       + Send
       + 'static {
    let seen = seen.clone();
    service_fn(move |event: Event| {
        seen.push(&event);
        let failed = fail(&event);
        async move {
            if failed {
                Err(std::io::Error::other("downstream said no"))
            } else {
                Ok(())
            }
        }
    })
}

/// An event `id` for the endpoint `/webhook`, its body `{"id":"<id>"}`.
pub(crate) fn event(id: &str) -> Event {
    Event::builder(format!(r#"{{"id":"{id}"}}"#))
        .id(id)
        .endpoint("/webhook")
        .build()
}

#[tokio::test]
async fn the_receiver_answers_202_at_once_and_a_worker_handles_the_event() {
    let inbox = Inbox::memory();
    let addr = receiver(&inbox).await;
    let body = br#"{"type":"invoice.paid","amount":3}"#;
    let reply = post(addr, "/webhook", &signed("msg_1", body), &body[..]).await;
    assert_eq!(reply.status, StatusCode::ACCEPTED);
    assert_eq!(reply.body, r#"{"status":"queued"}"#);
    // Queued, not handled: no worker runs yet.
    assert_eq!(inbox.depth().await.unwrap().queued(), 1);
    // A second delivery of the queued event is a duplicate.
    let again = post(addr, "/webhook", &signed("msg_1", body), &body[..]).await;
    assert_eq!(again.status, StatusCode::OK);
    assert_eq!(again.body, r#"{"status":"duplicate"}"#);

    let seen = Seen::default();
    let worker = Worker::new(inbox.clone(), handler(&seen, |_| false)).spawn();
    seen.wait_for(1).await;
    let (_, event) = seen.0.lock().unwrap()[0].clone();
    assert_eq!(event.id(), Some("msg_1"));
    assert_eq!(event.body().as_ref(), body);
    assert_eq!(event.event_type(), Some("invoice.paid"));
    assert_eq!(event.endpoint(), "/webhook");
    assert_eq!(event.scheme(), "standard-webhooks");
    assert_eq!(event.client(), Some("127.0.0.1".parse().unwrap()));
    assert!(event.timestamp().is_some());
    assert_eq!((event.attempt(), event.attempts()), (1, 0));
    assert!(event.key().contains("msg_1"), "{}", event.key());
    assert_eq!(worker.shutdown(Duration::from_secs(5)).await, 0);
    assert_eq!(inbox.depth().await.unwrap(), Default::default());
    assert_eq!(seen.len(), 1);
}

#[tokio::test(start_paused = true)]
async fn failures_back_off_exponentially_then_become_a_dead_letter() {
    let inbox = Inbox::memory();
    let seen = Seen::default();
    let dead = Arc::new(Mutex::new(Vec::new()));
    let on_dead = dead.clone();
    let worker = Worker::new(inbox.clone(), handler(&seen, |_| true))
        .max_attempts(5)
        .backoff(Duration::from_secs(1), Duration::from_secs(6))
        .breaker(0, Duration::ZERO)
        .on_dead(move |e| {
            on_dead
                .lock()
                .unwrap()
                .push((e.id().unwrap().to_owned(), e.attempts()))
        })
        .spawn();
    inbox.push(event("evt_1")).await.unwrap();
    seen.wait_for(5).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let times = seen.times();
    // Each pause is the full backoff (1, 2, 4, then 6 s: the cap) less up to half of it.
    for (gap, full) in times.windows(2).zip([1.0, 2.0, 4.0, 6.0]) {
        let gap = (gap[1] - gap[0]).as_secs_f64();
        assert!(
            gap >= full / 2.0 && gap <= full + 0.01,
            "{gap} s for a backoff of {full} s"
        );
    }
    assert_eq!(*dead.lock().unwrap(), vec![("evt_1".to_owned(), 5)]);
    let letters = inbox.dead_letters().await.unwrap();
    assert_eq!(letters.len(), 1);
    assert_eq!(letters[0].attempts(), 5);
    assert_eq!(letters[0].last_error(), Some("downstream said no"));
    let depth = inbox.depth().await.unwrap();
    assert_eq!((depth.queued(), depth.retrying(), depth.dead()), (0, 0, 1));
    // No sixth attempt.
    tokio::time::sleep(Duration::from_secs(120)).await;
    assert_eq!(seen.len(), 5);
    worker.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test(start_paused = true)]
async fn the_breaker_stops_taking_events_then_tries_one() {
    let inbox = Inbox::memory();
    let seen = Seen::default();
    let broken = Arc::new(AtomicBool::new(true));
    let down = broken.clone();
    let worker = Worker::new(
        inbox.clone(),
        handler(&seen, move |_| down.load(Ordering::SeqCst)),
    )
    .concurrency(1)
    .max_attempts(10)
    .backoff(Duration::from_millis(100), Duration::from_millis(100))
    .breaker(3, Duration::from_secs(10))
    .spawn();
    for n in 0..6 {
        inbox.push(event(&format!("evt_{n}"))).await.unwrap();
    }
    seen.wait_for(3).await;
    let opened = seen.times()[2];
    // Open: nothing taken for the cool-down.
    tokio::time::sleep(Duration::from_millis(9_900)).await;
    assert_eq!(seen.len(), 3);
    // Half open: one trial, which fails and opens it again.
    seen.wait_for(4).await;
    let trial = seen.times()[3];
    assert!(
        trial - opened >= Duration::from_secs(10),
        "{:?}",
        trial - opened
    );
    tokio::time::sleep(Duration::from_millis(9_800)).await;
    assert_eq!(seen.len(), 4);
    // The dependency is back: the next trial succeeds and closes it; the rest follow.
    broken.store(false, Ordering::SeqCst);
    seen.wait_for(10).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(seen.len(), 10, "4 failures, then each of the 6 events once");
    // The events that waited spent no attempts: no event failed more than its own failures.
    let seen_events = seen.0.lock().unwrap().clone();
    let last_attempts: Vec<u32> = seen_events[4..].iter().map(|(_, e)| e.attempt()).collect();
    assert_eq!(
        last_attempts.iter().sum::<u32>(),
        6 + 4,
        "{last_attempts:?}"
    );
    assert_eq!(inbox.depth().await.unwrap(), Default::default());
    worker.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test(start_paused = true)]
async fn shutdown_hands_back_an_event_in_progress_without_spending_an_attempt() {
    let inbox = Inbox::memory();
    let started = Arc::new(AtomicUsize::new(0));
    let s = started.clone();
    let slow = service_fn(move |_: Event| {
        s.fetch_add(1, Ordering::SeqCst);
        async {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            Ok::<_, Infallible>(())
        }
    });
    let worker = Worker::new(inbox.clone(), slow).spawn();
    inbox.push(event("evt_slow")).await.unwrap();
    while started.load(Ordering::SeqCst) == 0 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(worker.shutdown(Duration::from_secs(2)).await, 1);
    assert_eq!(inbox.depth().await.unwrap().retrying(), 1);

    let seen = Seen::default();
    let worker = Worker::new(inbox.clone(), handler(&seen, |_| false)).spawn();
    seen.wait_for(1).await;
    assert_eq!(seen.0.lock().unwrap()[0].1.attempt(), 1);
    assert_eq!(worker.shutdown(Duration::from_secs(2)).await, 0);
}

#[tokio::test(start_paused = true)]
async fn shutdown_lets_the_events_in_progress_finish_within_the_grace_period() {
    let inbox = Inbox::memory();
    let seen = Seen::default();
    let s = seen.clone();
    let slow = service_fn(move |event: Event| {
        let s = s.clone();
        async move {
            tokio::time::sleep(Duration::from_secs(2)).await;
            s.push(&event);
            Ok::<_, Infallible>(())
        }
    });
    let worker = Worker::new(inbox.clone(), slow).spawn();
    inbox.push(event("evt_1")).await.unwrap();
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(worker.shutdown(Duration::from_secs(10)).await, 0);
    assert_eq!(seen.len(), 1);
    assert_eq!(inbox.depth().await.unwrap(), Default::default());
}

#[tokio::test(start_paused = true)]
async fn an_event_is_queued_once_and_a_panic_is_a_failed_attempt() {
    let inbox = Inbox::memory();
    let seen = Seen::default();
    let s = seen.clone();
    let panicky = service_fn(move |event: Event| {
        s.push(&event);
        async move {
            assert!(
                event.id() != Some("evt_panic") || event.attempt() > 1,
                "handler bug"
            );
            Ok::<_, Infallible>(())
        }
    });
    let worker = Worker::new(inbox.clone(), panicky)
        .backoff(Duration::from_millis(10), Duration::from_millis(10))
        .spawn();
    assert!(inbox.push(event("evt_1")).await.unwrap());
    // Queued once: again while it waits (no replay layer in front), and once processed.
    assert!(!inbox.push(event("evt_1")).await.unwrap());
    seen.wait_for(1).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(!inbox.push(event("evt_1")).await.unwrap());
    assert!(inbox.push(event("evt_panic")).await.unwrap());
    seen.wait_for(3).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(seen.ids(), ["evt_1", "evt_panic", "evt_panic"]);
    assert_eq!(inbox.depth().await.unwrap(), Default::default());
    worker.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test(start_paused = true)]
async fn dead_letters_are_retried_by_id_or_all_at_once() {
    let inbox = Inbox::memory();
    let seen = Seen::default();
    let broken = Arc::new(AtomicBool::new(true));
    let down = broken.clone();
    let worker = Worker::new(
        inbox.clone(),
        handler(&seen, move |_| down.load(Ordering::SeqCst)),
    )
    .max_attempts(1)
    .breaker(0, Duration::ZERO)
    .spawn();
    for id in ["evt_a", "evt_b", "evt_c"] {
        inbox.push(event(id)).await.unwrap();
    }
    seen.wait_for(3).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let mut dead: Vec<String> = inbox
        .dead_letters()
        .await
        .unwrap()
        .iter()
        .map(|e| e.id().unwrap().to_owned())
        .collect();
    dead.sort();
    assert_eq!(dead, ["evt_a", "evt_b", "evt_c"]);
    broken.store(false, Ordering::SeqCst);
    assert_eq!(inbox.retry_dead("evt_b").await.unwrap(), 1);
    assert_eq!(inbox.retry_dead("evt_none").await.unwrap(), 0);
    seen.wait_for(4).await;
    assert_eq!(seen.ids()[3], "evt_b");
    assert_eq!(seen.0.lock().unwrap()[3].1.attempt(), 1, "fresh attempts");
    assert_eq!(inbox.dead_letters().await.unwrap().len(), 2);
    assert_eq!(inbox.retry_all_dead().await.unwrap(), 2);
    seen.wait_for(6).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(inbox.depth().await.unwrap(), Default::default());
    worker.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn a_full_inbox_answers_503_and_the_senders_retry_is_queued() {
    let inbox = Inbox::memory().max_events(1);
    let addr = receiver(&inbox).await;
    let body = br#"{"type":"a"}"#;
    assert_eq!(
        post(addr, "/webhook", &signed("msg_1", body), &body[..])
            .await
            .status,
        StatusCode::ACCEPTED
    );
    let refused = post(addr, "/webhook", &signed("msg_2", body), &body[..]).await;
    assert_eq!(refused.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(refused.body, r#"{"error":"inbox_unavailable"}"#);
    assert_eq!(refused.headers["retry-after"], "5");
    // A worker makes room; the sender's retry of the refused event is queued (the replay
    // layer released its mark).
    let seen = Seen::default();
    let worker = Worker::new(inbox.clone(), handler(&seen, |_| false)).spawn();
    seen.wait_for(1).await;
    let retried = post(addr, "/webhook", &signed("msg_2", body), &body[..]).await;
    assert_eq!(retried.status, StatusCode::ACCEPTED);
    seen.wait_for(2).await;
    assert_eq!(seen.ids(), ["msg_1", "msg_2"]);
    worker.shutdown(Duration::from_secs(1)).await;
}

// One thread, whose recorder is the test's while the server and the worker run.
#[tokio::test(flavor = "current_thread")]
async fn metrics_count_the_queued_answers_attempts_and_dead_letters() {
    use metrics_util::debugging::{DebugValue, DebuggingRecorder};

    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let _recorder = metrics::set_default_local_recorder(&recorder);
    let inbox = Inbox::memory();
    let addr = receiver(&inbox).await;
    let body = br#"{"type":"a"}"#;
    for id in ["ok_1", "ok_2", "bad_1"] {
        let reply = post(addr, "/webhook", &signed(id, body), &body[..]).await;
        assert_eq!(reply.status, StatusCode::ACCEPTED);
    }
    let seen = Seen::default();
    let worker = Worker::new(inbox.clone(), handler(&seen, |e| e.id() == Some("bad_1")))
        .max_attempts(2)
        .backoff(Duration::from_millis(10), Duration::from_millis(10))
        .spawn();
    seen.wait_for(4).await;
    // The gauges are recorded each second.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    worker.shutdown(Duration::from_secs(1)).await;

    let snapshot = snapshotter.snapshot().into_hashmap();
    let value = |name: &str, labels: &[(&str, &str)]| {
        let found = snapshot.iter().find(|(key, _)| {
            let key = key.key();
            key.name() == name
                && key.labels().count() == labels.len()
                && labels
                    .iter()
                    .all(|(k, v)| key.labels().any(|l| l.key() == *k && l.value() == *v))
        });
        match found.map(|(_, (_, _, value))| value) {
            Some(DebugValue::Counter(n)) => *n as f64,
            Some(DebugValue::Gauge(g)) => g.into_inner(),
            other => panic!("{name} {labels:?}: {other:?}"),
        }
    };
    let endpoint = ("endpoint", "/webhook");
    let scheme = ("scheme", "standard-webhooks");
    let requests = "webhook_requests_total";
    assert_eq!(
        value(requests, &[endpoint, scheme, ("outcome", "queued")]),
        3.0
    );
    assert_eq!(
        value(requests, &[endpoint, scheme, ("outcome", "accepted")]),
        0.0
    );
    let attempts = "webhook_inbox_attempts_total";
    assert_eq!(value(attempts, &[endpoint, ("result", "success")]), 2.0);
    assert_eq!(value(attempts, &[endpoint, ("result", "failure")]), 2.0);
    assert_eq!(value("webhook_inbox_dead_total", &[endpoint]), 1.0);
    let depth = |state| {
        value(
            "webhook_inbox_depth",
            &[("inbox", "memory"), ("state", state)],
        )
    };
    assert_eq!(
        (depth("queued"), depth("retrying"), depth("dead")),
        (0.0, 0.0, 1.0)
    );
    assert_eq!(
        value("webhook_inbox_breaker_open", &[("inbox", "memory")]),
        0.0
    );
}

#[tokio::test(start_paused = true)]
async fn a_worker_whose_handle_was_dropped_runs_on() {
    let inbox = Inbox::memory();
    let seen = Seen::default();
    let s = seen.clone();
    let slow = service_fn(move |event: Event| {
        let s = s.clone();
        async move {
            tokio::time::sleep(Duration::from_secs(1)).await;
            s.push(&event);
            Ok::<_, Infallible>(())
        }
    });
    // One slot, busy with a slow handler: the worker waits for it, not for a shutdown.
    drop(Worker::new(inbox.clone(), slow).concurrency(1).spawn());
    for id in ["evt_1", "evt_2", "evt_3"] {
        inbox.push(event(id)).await.unwrap();
    }
    seen.wait_for(3).await;
    assert_eq!(seen.ids(), ["evt_1", "evt_2", "evt_3"]);
}
