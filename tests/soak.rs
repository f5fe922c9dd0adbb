//! Soak tests with faults, against the demo receiver with the Redis replay store: thousands of
//! deliveries over loopback from concurrent senders, some failing on their first try (retried
//! with back-off), some replayed, and Redis restarted in the middle. Every unique event must be
//! accepted exactly once, none lost, and the receiver's memory must stay under a bound.
//!
//! The second runs the same against the Redis inbox and separate worker processes, one of them
//! killed with SIGKILL mid-handler: every event answered 202 is processed exactly once or
//! dead-lettered after its attempts, none lost, and only the killed worker's events may be
//! processed twice.
//!
//! Bounded (a few thousand requests, at most two minutes); `bash .ci/test` runs it with
//! `--ignored --nocapture` so its closing line is shown.

mod common;

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use http::StatusCode;
use tower_webhook::scheme::{Scheme, Signer};

const EVENTS: usize = 2500;
const SENDERS: usize = 8;
const SECRET: &str = "whsec_c29hay10ZXN0LXNlY3JldA==";
/// The receiver's peak resident memory must stay under this.
const MAX_RSS_MIB: u64 = 200;

#[derive(Default)]
struct Counts {
    deliveries: AtomicUsize,
    retries: AtomicUsize,
    duplicates_refused: AtomicUsize,
    accepted_answers: AtomicUsize,
    /// 503 answers: the Redis outage as the senders saw it.
    store_unavailable: AtomicUsize,
}

fn event_id(i: usize) -> String {
    // Every fifth event fails on its first delivery (the receiver's FAIL_ONCE_PREFIX).
    if i % 5 == 0 {
        format!("evt_fail_{i:05}")
    } else {
        format!("evt_{i:05}")
    }
}

/// Sends one delivery until it is answered `status` with the body `expected`, backing off
/// like a sender after each answer in `retry_on`.
async fn deliver(
    addr: std::net::SocketAddr,
    headers: &http::HeaderMap,
    body: &str,
    (status, expected): (u16, &str),
    retry_on: &[u16],
    counts: &Counts,
) {
    for attempt in 1u64..200 {
        counts.deliveries.fetch_add(1, Ordering::SeqCst);
        let reply = common::post(addr, "/webhook", headers, body.to_owned()).await;
        if reply.status.as_u16() == status {
            assert_eq!(reply.body, expected);
            return;
        }
        if reply.status == StatusCode::SERVICE_UNAVAILABLE {
            counts.store_unavailable.fetch_add(1, Ordering::SeqCst);
        }
        assert!(
            retry_on.contains(&reply.status.as_u16()),
            "unexpected {} {}",
            reply.status,
            reply.body
        );
        counts.retries.fetch_add(1, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(20 * attempt.min(10))).await;
    }
    panic!("delivery never answered {status} {expected}");
}

/// `SENDERS` concurrent senders of the events `0..events` (ids from `id_of`), each delivered
/// until answered `first` (retried on `retry_on`); a quarter are then replayed as captured,
/// and must be answered 200 duplicate.
fn spawn_senders(
    addr: std::net::SocketAddr,
    counts: &Arc<Counts>,
    events: usize,
    id_of: fn(usize) -> String,
    first: (u16, &'static str),
    retry_on: &'static [u16],
) -> Vec<tokio::task::JoinHandle<()>> {
    let next = Arc::new(AtomicUsize::new(0));
    let signer = Arc::new(Signer::new(&Scheme::standard_webhooks(), SECRET).unwrap());
    (0..SENDERS)
        .map(|_| {
            let (counts, next, signer) = (counts.clone(), next.clone(), signer.clone());
            tokio::spawn(async move {
                loop {
                    let i = next.fetch_add(1, Ordering::SeqCst);
                    if i >= events {
                        return;
                    }
                    let body = format!(r#"{{"seq":{i},"type":"soak"}}"#);
                    let headers = signer
                        .sign(&id_of(i), common::now(), body.as_bytes())
                        .unwrap();
                    deliver(addr, &headers, &body, first, retry_on, &counts).await;
                    counts.accepted_answers.fetch_add(1, Ordering::SeqCst);
                    if i % 4 == 1 {
                        let duplicate = (200, r#"{"status":"duplicate"}"#);
                        deliver(addr, &headers, &body, duplicate, &[503, 409], &counts).await;
                        counts.duplicates_refused.fetch_add(1, Ordering::SeqCst);
                    }
                }
            })
        })
        .collect()
}

/// Once `after` events were answered, stops Redis for a moment and starts it again.
fn restart_redis_after(
    redis: Arc<std::sync::Mutex<common::redis::RedisServer>>,
    counts: Arc<Counts>,
    after: usize,
) -> tokio::task::JoinHandle<()> {
    tokio::task::spawn_blocking(move || {
        while counts.accepted_answers.load(Ordering::SeqCst) < after {
            std::thread::sleep(Duration::from_millis(5));
        }
        let mut redis = redis.lock().unwrap();
        redis.stop();
        std::thread::sleep(Duration::from_millis(300));
        redis.restart();
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "soak test: run by `bash .ci/test` with --ignored"]
async fn soak_with_faults_accepts_every_event_exactly_once() {
    let Some(redis) = common::redis::RedisServer::start_persistent() else {
        return;
    };
    let receiver = common::Example::start(
        "receiver",
        &[
            ("WEBHOOK_SECRET", SECRET),
            ("REPLAY_STORE", "redis"),
            ("REDIS_URL", &redis.url()),
            ("FAIL_ONCE_PREFIX", "evt_fail_"),
        ],
    );
    let addr: std::net::SocketAddr = receiver.addr.parse().unwrap();
    let redis = Arc::new(std::sync::Mutex::new(redis));
    let counts = Arc::new(Counts::default());
    let started = Instant::now();

    // Halfway through, Redis goes down for a moment and comes back.
    let restarter = restart_redis_after(redis.clone(), counts.clone(), EVENTS / 2);
    // Delivered until answered 2xx, backing off like a sender; the first 2xx must be the
    // handler's.
    let first = (200, r#"{"status":"accepted"}"#);
    let senders = spawn_senders(addr, &counts, EVENTS, event_id, first, &[500, 503, 409]);
    tokio::time::timeout(Duration::from_secs(120), async {
        for sender in senders {
            sender.await.unwrap();
        }
    })
    .await
    .expect("soak test did not finish within two minutes");
    restarter.await.unwrap();

    // Every unique event accepted exactly once: the receiver's own record, its stdout.
    let mut accepted: HashMap<String, usize> = HashMap::new();
    for line in receiver.printed() {
        let id = line
            .strip_prefix("accepted id=")
            .and_then(|rest| rest.split(' ').next())
            .unwrap_or_else(|| panic!("unexpected output {line:?}"));
        *accepted.entry(id.to_owned()).or_default() += 1;
    }
    let twice: Vec<_> = accepted.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "handled more than once: {twice:?}");
    let lost: Vec<_> = (0..EVENTS)
        .map(event_id)
        .filter(|id| !accepted.contains_key(id))
        .collect();
    assert!(
        lost.is_empty(),
        "{} events lost, e.g. {:?}",
        lost.len(),
        lost.first()
    );
    assert_eq!(accepted.len(), EVENTS);

    let peak_mib = peak_rss_mib(receiver.pid());
    assert!(peak_mib < MAX_RSS_MIB, "receiver peak RSS {peak_mib} MiB");
    let unavailable = counts.store_unavailable.load(Ordering::SeqCst);
    assert!(
        unavailable > 0,
        "the Redis restart was not felt by any delivery"
    );
    println!(
        "soak: deliveries={} duplicates_refused={} retries={} store_unavailable={} accepted={} peak_rss={}MiB (bound {}MiB) in {:.1}s",
        counts.deliveries.load(Ordering::SeqCst),
        counts.duplicates_refused.load(Ordering::SeqCst),
        counts.retries.load(Ordering::SeqCst),
        unavailable,
        accepted.len(),
        peak_mib,
        MAX_RSS_MIB,
        started.elapsed().as_secs_f64()
    );
}

/// The inbox soak's events: a fifth fail once, one in a hundred always.
fn inbox_event_id(i: usize) -> String {
    match i {
        _ if i % 100 == 7 => format!("evt_dead_{i:05}"),
        _ if i % 5 == 0 => format!("evt_fail_{i:05}"),
        _ => format!("evt_{i:05}"),
    }
}

/// What the workers printed, by event id: `accepted` lines and `dead` attempts.
#[derive(Default)]
struct Processed {
    accepted: HashMap<String, usize>,
    dead: HashMap<String, Vec<u32>>,
}

impl Processed {
    fn read(&mut self, lines: Vec<String>) {
        for line in lines {
            if let Some(rest) = line.strip_prefix("accepted id=") {
                let id = rest.split(' ').next().unwrap().to_owned();
                *self.accepted.entry(id).or_default() += 1;
            } else if let Some(rest) = line.strip_prefix("dead id=") {
                let (id, attempts) = rest.split_once(" attempts=").unwrap();
                let attempts = attempts.parse().unwrap();
                self.dead.entry(id.to_owned()).or_default().push(attempts);
            } else {
                panic!("unexpected output {line:?}");
            }
        }
    }

    fn settled(&self) -> usize {
        self.accepted.len() + self.dead.len()
    }
}

/// The peak resident memory of the process `pid`, in MiB.
fn peak_rss_mib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse().ok())
        .unwrap();
    kib / 1024
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "soak test: run by `bash .ci/test` with --ignored"]
async fn soak_inbox_with_faults_processes_every_queued_event_once_or_dead_letters_it() {
    const QUEUED: usize = 2000;
    const CONCURRENCY: &str = "8";
    let Some(redis) = common::redis::RedisServer::start_persistent() else {
        return;
    };
    let url = redis.url();
    let receiver = common::Example::start(
        "receiver",
        &[
            ("WEBHOOK_SECRET", SECRET),
            ("REPLAY_STORE", "redis"),
            ("INBOX", "redis"),
            ("REDIS_URL", &url),
            ("WORKERS", "0"),
        ],
    );
    let worker_env = [
        ("REDIS_URL", url.as_str()),
        ("WORKERS", CONCURRENCY),
        ("MAX_ATTEMPTS", "3"),
        ("RETRY_BASE_MS", "20"),
        ("RETRY_MAX_MS", "200"),
        ("CLAIM_IDLE_SECS", "5"),
        ("BREAKER_FAILURES", "0"),
        ("HANDLER_DELAY_MS", "50"),
        ("FAIL_ONCE_PREFIX", "evt_fail_"),
        ("FAIL_ALWAYS_PREFIX", "evt_dead_"),
    ];
    let mut doomed = common::Example::start("worker", &worker_env);
    let steady = common::Example::start("worker", &worker_env);
    let addr: std::net::SocketAddr = receiver.addr.parse().unwrap();
    let redis = Arc::new(std::sync::Mutex::new(redis));
    let counts = Arc::new(Counts::default());
    let started = Instant::now();

    // Two thirds of the way through, Redis goes down for a moment and comes back.
    let restarter = restart_redis_after(redis.clone(), counts.clone(), 2 * QUEUED / 3);
    let first = (202, r#"{"status":"queued"}"#);
    let senders = spawn_senders(addr, &counts, QUEUED, inbox_event_id, first, &[503, 409]);

    // A third of the way through, a worker is killed mid-handler and another takes its place;
    // its events come back to the others after the claim timeout.
    let mut processed = Processed::default();
    while counts.accepted_answers.load(Ordering::SeqCst) < QUEUED / 3 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    doomed.signal("KILL");
    assert!(doomed.exit_within(Duration::from_secs(5)).is_some());
    processed.read(doomed.printed());
    let before_kill = processed.accepted.clone();
    let replacement = common::Example::start("worker", &worker_env);

    tokio::time::timeout(Duration::from_secs(120), async {
        for sender in senders {
            sender.await.unwrap();
        }
    })
    .await
    .expect("the senders did not finish within two minutes");
    restarter.await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    while processed.settled() < QUEUED && Instant::now() < deadline {
        processed.read(steady.printed());
        processed.read(replacement.printed());
    }

    // Every event that got 202 was processed successfully, or dead-lettered after its three
    // attempts; none lost.
    let lost: Vec<String> = (0..QUEUED)
        .map(inbox_event_id)
        .filter(|id| !processed.accepted.contains_key(id) && !processed.dead.contains_key(id))
        .collect();
    assert!(
        lost.is_empty(),
        "{} events lost, e.g. {:?}",
        lost.len(),
        lost.first()
    );
    for (id, attempts) in &processed.dead {
        assert!(id.starts_with("evt_dead_"), "{id} dead-lettered");
        assert_eq!(attempts, &[3], "{id}");
    }
    assert_eq!(processed.dead.len(), QUEUED / 100);
    // None processed twice, except those the killed worker was handling: at most as many as
    // it ran at once, and each was handled by it before the kill.
    let twice: Vec<&String> = processed
        .accepted
        .iter()
        .filter(|(_, n)| **n > 1)
        .map(|(id, _)| id)
        .collect();
    assert!(
        twice.len() <= CONCURRENCY.parse().unwrap(),
        "handled twice: {twice:?}"
    );
    assert!(
        twice.iter().all(|id| before_kill.contains_key(*id)),
        "handled twice, not by the killed worker: {twice:?}"
    );
    assert!(
        twice.iter().all(|id| processed.accepted[*id] == 2),
        "{twice:?}"
    );

    // The killed worker was in the middle of handlers: the others took its events over.
    let stderr = steady.stderr() + &replacement.stderr();
    let taken_over = stderr
        .matches("webhook taken over from a stopped worker")
        .count();
    assert!(taken_over > 0, "no event taken over from the killed worker");
    let peaks = [receiver.pid(), steady.pid(), replacement.pid()].map(peak_rss_mib);
    assert!(
        peaks.iter().all(|p| *p < MAX_RSS_MIB),
        "peak RSS {peaks:?} MiB"
    );
    let unavailable = counts.store_unavailable.load(Ordering::SeqCst);
    assert!(
        unavailable > 0,
        "the Redis restart was not felt by any delivery"
    );
    println!(
        "soak inbox: deliveries={} duplicates_refused={} retries={} unavailable={} processed={} dead={} taken_over={} handled_twice_after_kill={} peak_rss={:?}MiB (bound {}MiB) in {:.1}s",
        counts.deliveries.load(Ordering::SeqCst),
        counts.duplicates_refused.load(Ordering::SeqCst),
        counts.retries.load(Ordering::SeqCst),
        unavailable,
        processed.accepted.len(),
        processed.dead.len(),
        taken_over,
        twice.len(),
        peaks,
        MAX_RSS_MIB,
        started.elapsed().as_secs_f64()
    );
}
