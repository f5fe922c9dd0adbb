//! The inbox on a real Redis (on 127.0.0.1, started per test): refused while Redis is down
//! and queued once on the sender's retry, retries and dead letters, a slow handler kept, a
//! stopped worker's event reclaimed, and every event kept across a restart with append-only
//! persistence.
#![cfg(feature = "redis")]

use crate::common;
use crate::inbox::event;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::redis::RedisServer;
use common::{now, post};
use http::StatusCode;
use tower::service_fn;
use tower_webhook::inbox::{Event, Inbox, Worker};
use tower_webhook::scheme::Scheme;

const SECRET: &str = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";

/// One call of the test handler: the attempt, and the last error it was given.
type Call = (u32, Option<String>);

/// Calls of the test handler by event id.
#[derive(Clone, Default)]
struct Calls(Arc<Mutex<HashMap<String, Vec<Call>>>>);

impl Calls {
    fn record(&self, event: &Event) {
        let id = event.id().unwrap_or("-").to_owned();
        let call = (event.attempt(), event.last_error().map(str::to_owned));
        self.0.lock().unwrap().entry(id).or_default().push(call);
    }

    fn of(&self, id: &str) -> Vec<Call> {
        self.0.lock().unwrap().get(id).cloned().unwrap_or_default()
    }

    fn total(&self) -> usize {
        self.0.lock().unwrap().values().map(Vec::len).sum()
    }

    async fn wait_for(&self, n: usize, limit: Duration) {
        let waited = tokio::time::timeout(limit, async {
            while self.total() < n {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        });
        waited.await.expect("the handler was not called in time");
    }
}

/// A worker whose handler records each call, waits `delay`, and fails the ids starting with
/// `fail`.
fn worker(
    inbox: &Inbox,
    calls: &Calls,
    delay: Duration,
    fail: &'static str,
) -> Worker<
    impl tower::Service<Event, Response = (), Error = String, Future: Send> + Clone + Send + 'static,
> {
    let calls = calls.clone();
    let handler = service_fn(move |event: Event| {
        calls.record(&event);
        let failing = event
            .id()
            .is_some_and(|id| !fail.is_empty() && id.starts_with(fail));
        async move {
            tokio::time::sleep(delay).await;
            if failing {
                Err("always fails".to_owned())
            } else {
                Ok(())
            }
        }
    });
    Worker::new(inbox.clone(), handler)
        .backoff(Duration::from_millis(50), Duration::from_millis(100))
        .breaker(0, Duration::ZERO)
}

#[tokio::test]
async fn redis_down_at_ingest_gives_503_and_the_retry_is_queued_once() {
    let Some(mut redis) = RedisServer::start() else {
        return;
    };
    let inbox = Inbox::redis(&redis.url(), "ingest")
        .unwrap()
        .timeout(Duration::from_millis(300));
    let addr = receiver(&inbox).await;
    let send = || deliver(addr, "msg_1");

    redis.stop();
    let refused = send().await;
    assert_eq!(
        refused.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{}",
        refused.body
    );
    assert_eq!(refused.body, r#"{"error":"inbox_unavailable"}"#);
    assert_eq!(refused.headers["retry-after"], "5");
    redis.restart();
    // The sender retries: queued (the replay layer released its mark), then a duplicate.
    let mut queued = send().await;
    for _ in 0..20 {
        if queued.status == StatusCode::ACCEPTED {
            break;
        }
        // The connection comes back within a second.
        tokio::time::sleep(Duration::from_millis(100)).await;
        queued = send().await;
    }
    assert_eq!(queued.status, StatusCode::ACCEPTED, "{}", queued.body);
    assert_eq!(send().await.body, r#"{"status":"duplicate"}"#);
    assert_eq!(inbox.depth().await.unwrap().queued(), 1);

    let calls = Calls::default();
    let running = worker(&inbox, &calls, Duration::ZERO, "").spawn();
    calls.wait_for(1, Duration::from_secs(10)).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(calls.of("msg_1").len(), 1, "handled once");
    assert_eq!(running.shutdown(Duration::from_secs(2)).await, 0);
    assert_eq!(inbox.depth().await.unwrap(), Default::default());
}

#[tokio::test]
async fn failures_are_retried_then_dead_lettered_and_revived() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let inbox = Inbox::redis(&redis.url(), "retries").unwrap();
    let calls = Calls::default();
    let dead = Arc::new(Mutex::new(Vec::new()));
    let on_dead = dead.clone();
    let running = worker(&inbox, &calls, Duration::ZERO, "bad")
        .max_attempts(3)
        .on_dead(move |e| on_dead.lock().unwrap().push(e.id().unwrap().to_owned()))
        .spawn();
    for id in ["good_1", "bad_1", "good_2", "bad_2"] {
        inbox.push(event(id)).await.unwrap();
    }
    calls.wait_for(8, Duration::from_secs(20)).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(calls.of("good_1"), [(1, None)]);
    let error = Some("always fails".to_owned());
    assert_eq!(
        calls.of("bad_1"),
        [(1, None), (2, error.clone()), (3, error.clone())]
    );
    let mut buried = dead.lock().unwrap().clone();
    buried.sort();
    assert_eq!(buried, ["bad_1", "bad_2"]);
    let letters = inbox.dead_letters().await.unwrap();
    assert_eq!(letters.len(), 2);
    assert!(letters
        .iter()
        .all(|e| e.attempts() == 3 && e.last_error() == Some("always fails")));
    let bad_1 = letters.iter().find(|e| e.id() == Some("bad_1")).unwrap();
    assert_eq!(bad_1.body().as_ref(), br#"{"id":"bad_1"}"#);
    running.shutdown(Duration::from_secs(2)).await;

    // A fixed handler: the dead letters come back with fresh attempts, one by id, then all.
    let calls = Calls::default();
    let running = worker(&inbox, &calls, Duration::ZERO, "").spawn();
    assert_eq!(inbox.retry_dead("bad_2").await.unwrap(), 1);
    calls.wait_for(1, Duration::from_secs(10)).await;
    // Fresh attempts; the last error is kept for the handler to see.
    assert_eq!(calls.of("bad_2"), [(1, error.clone())]);
    assert_eq!(inbox.retry_all_dead().await.unwrap(), 1);
    calls.wait_for(2, Duration::from_secs(10)).await;
    assert_eq!(calls.of("bad_1"), [(1, error)]);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(inbox.depth().await.unwrap(), Default::default());
    running.shutdown(Duration::from_secs(2)).await;
}

#[tokio::test]
async fn a_slow_handler_keeps_its_event_and_a_stopped_workers_event_is_reclaimed() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let inbox = Inbox::redis(&redis.url(), "claims").unwrap();
    // A worker that took an event and stopped without a word: read by hand, never settled.
    inbox.push(event("orphan")).await.unwrap();
    let client = redis::Client::open(redis.url()).unwrap();
    let mut connection = client.get_multiplexed_async_connection().await.unwrap();
    let _: () = redis::cmd("XGROUP")
        .arg(&["CREATE", "{claims}:queue", "workers", "0", "MKSTREAM"][..])
        .query_async(&mut connection)
        .await
        .unwrap();
    let read: redis::Value = redis::cmd("XREADGROUP")
        .arg(
            &[
                "GROUP",
                "workers",
                "ghost",
                "COUNT",
                "1",
                "STREAMS",
                "{claims}:queue",
                ">",
            ][..],
        )
        .query_async(&mut connection)
        .await
        .unwrap();
    assert_ne!(read, redis::Value::Nil);

    // Two live workers with a short claim timeout, and a handler four times longer.
    inbox.push(event("slow")).await.unwrap();
    let calls = Calls::default();
    let idle = Duration::from_millis(500);
    let a = worker(&inbox, &calls, Duration::from_secs(2), "")
        .claim_idle(idle)
        .spawn();
    let b = worker(&inbox, &calls, Duration::from_secs(2), "")
        .claim_idle(idle)
        .spawn();
    calls.wait_for(2, Duration::from_secs(10)).await;
    tokio::time::sleep(Duration::from_secs(4)).await;
    // The orphan was taken over once, its cut-short attempt counted; the slow event, held
    // alive by its worker, ran once.
    assert_eq!(
        calls.of("orphan"),
        [(2, Some("worker stopped during the handler".to_owned()))]
    );
    assert_eq!(calls.of("slow"), [(1, None)]);
    a.shutdown(Duration::from_secs(3)).await;
    b.shutdown(Duration::from_secs(3)).await;
    assert_eq!(inbox.depth().await.unwrap(), Default::default());
}

#[tokio::test]
async fn every_event_survives_a_redis_restart_with_append_only_persistence() {
    let Some(mut redis) = RedisServer::start_persistent() else {
        return;
    };
    let inbox = Inbox::redis(&redis.url(), "durable").unwrap();
    // A dead letter and a retry waiting for its time, as well as queued events.
    let calls = Calls::default();
    let running = worker(&inbox, &calls, Duration::ZERO, "bad")
        .max_attempts(2)
        .backoff(Duration::from_secs(3600), Duration::from_secs(3600))
        .spawn();
    inbox.push(event("bad_dead")).await.unwrap();
    calls.wait_for(1, Duration::from_secs(10)).await;
    running.shutdown(Duration::from_secs(2)).await;
    assert_eq!(inbox.depth().await.unwrap().retrying(), 1);
    for n in 0..50 {
        inbox.push(event(&format!("evt_{n}"))).await.unwrap();
    }

    redis.restart();
    let depth = inbox.depth().await;
    let depth = match depth {
        Ok(depth) => depth,
        // The first call after the restart may meet the old connection.
        Err(_) => inbox.depth().await.unwrap(),
    };
    assert_eq!((depth.queued(), depth.retrying()), (50, 1));
    let calls = Calls::default();
    let running = worker(&inbox, &calls, Duration::ZERO, "").spawn();
    calls.wait_for(50, Duration::from_secs(20)).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    for n in 0..50 {
        assert_eq!(calls.of(&format!("evt_{n}")).len(), 1, "evt_{n}");
    }
    assert_eq!(inbox.retry_all_dead().await.unwrap(), 0);
    running.shutdown(Duration::from_secs(2)).await;
}

#[tokio::test]
async fn an_event_is_queued_once_while_held_and_once_processed() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let inbox = Inbox::redis(&redis.url(), "once").unwrap();
    assert!(inbox.push(event("evt_1")).await.unwrap());
    assert!(!inbox.push(event("evt_1")).await.unwrap());
    assert_eq!(inbox.depth().await.unwrap().queued(), 1);
    let calls = Calls::default();
    let running = worker(&inbox, &calls, Duration::ZERO, "").spawn();
    calls.wait_for(1, Duration::from_secs(10)).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!inbox.push(event("evt_1")).await.unwrap());
    // A dead letter is still held: a delivery of it is not queued beside it.
    let bad = worker(&inbox, &calls, Duration::ZERO, "bad").max_attempts(1);
    running.shutdown(Duration::from_secs(2)).await;
    let running = bad.spawn();
    assert!(inbox.push(event("bad_1")).await.unwrap());
    calls.wait_for(2, Duration::from_secs(10)).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!inbox.push(event("bad_1")).await.unwrap());
    assert_eq!(inbox.depth().await.unwrap().dead(), 1);
    running.shutdown(Duration::from_secs(2)).await;
    assert_eq!(calls.of("evt_1").len(), 1);
    // Events with no key (built by hand without an id) are queued each time.
    let anonymous = || Event::builder("{}").build();
    assert!(inbox.push(anonymous()).await.unwrap());
    assert!(inbox.push(anonymous()).await.unwrap());
}

/// A receiver on 127.0.0.1 in front of `inbox`, with its own memory replay store.
async fn receiver(inbox: &Inbox) -> std::net::SocketAddr {
    common::inbox_receiver(inbox, SECRET).await
}

async fn deliver(addr: std::net::SocketAddr, id: &str) -> common::Reply {
    let body = br#"{"type":"order.created"}"#;
    let headers = common::sign(&Scheme::standard_webhooks(), SECRET, id, now(), body);
    post(addr, "/webhook", &headers, &body[..]).await
}

#[tokio::test]
async fn receivers_share_one_inbox_and_an_event_sent_to_both_is_queued_once() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    // Two receivers, each with its own client and its own replay store.
    let a = receiver(&Inbox::redis(&redis.url(), "shared").unwrap()).await;
    let b = receiver(&Inbox::redis(&redis.url(), "shared").unwrap()).await;
    for (addr, id) in [(a, "evt_a"), (b, "evt_b"), (a, "evt_both"), (b, "evt_both")] {
        assert_eq!(deliver(addr, id).await.status, StatusCode::ACCEPTED, "{id}");
    }
    let inbox = Inbox::redis(&redis.url(), "shared").unwrap();
    assert_eq!(inbox.depth().await.unwrap().queued(), 3);
    let calls = Calls::default();
    let running = worker(&inbox, &calls, Duration::ZERO, "").spawn();
    calls.wait_for(3, Duration::from_secs(10)).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(calls.total(), 3);
    assert_eq!(calls.of("evt_both").len(), 1);
    running.shutdown(Duration::from_secs(2)).await;
}

#[tokio::test]
async fn a_slow_or_full_redis_inbox_refuses_with_503() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let inbox = Inbox::redis(&redis.url(), "bounded")
        .unwrap()
        .max_events(2)
        .timeout(Duration::from_millis(200))
        .retry_after(Duration::from_secs(7));
    let addr = receiver(&inbox).await;
    assert_eq!(deliver(addr, "evt_1").await.status, StatusCode::ACCEPTED);
    assert_eq!(deliver(addr, "evt_2").await.status, StatusCode::ACCEPTED);
    // Full: refused, nothing dropped.
    let full = deliver(addr, "evt_3").await;
    assert_eq!(full.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(full.headers["retry-after"], "7");
    assert_eq!(inbox.depth().await.unwrap().queued(), 2);

    // Slow: Redis holds every write for a second, past the inbox's time limit.
    let client = redis::Client::open(redis.url()).unwrap();
    let mut connection = client.get_multiplexed_async_connection().await.unwrap();
    let calls = Calls::default();
    let running = worker(&inbox, &calls, Duration::ZERO, "").spawn();
    calls.wait_for(2, Duration::from_secs(10)).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let _: () = redis::cmd("CLIENT")
        .arg(&["PAUSE", "1000", "WRITE"][..])
        .query_async(&mut connection)
        .await
        .unwrap();
    let started = std::time::Instant::now();
    let slow = deliver(addr, "evt_3").await;
    assert_eq!(
        slow.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{}",
        slow.body
    );
    assert!(started.elapsed() < Duration::from_millis(900));
    // Once Redis answers again, the sender's retry is queued and handled, once.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert_eq!(deliver(addr, "evt_3").await.status, StatusCode::ACCEPTED);
    calls.wait_for(3, Duration::from_secs(10)).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(calls.of("evt_3").len(), 1);
    running.shutdown(Duration::from_secs(2)).await;
}
