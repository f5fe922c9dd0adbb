//! The demo receiver with an inbox, and the demo worker, run as the README runs them: 202 at
//! once, retries and dead letters, a worker process killed with SIGKILL in the middle of a
//! slow handler losing nothing, and the dead letters listed and retried from the command line.

use crate::common;

use std::net::SocketAddr;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{now, post, Example};
use http::StatusCode;
use tower_webhook::scheme::Scheme;

const SECRET: &str = "whsec_c2VjcmV0LWZvci10ZXN0cw==";

/// Posts a signed event `id` to the demo receiver; answers its status.
async fn deliver(receiver: &Example, id: &str) -> StatusCode {
    let addr: SocketAddr = receiver.addr.parse().unwrap();
    let body = br#"{"type":"order.created"}"#;
    let headers = common::sign(&Scheme::standard_webhooks(), SECRET, id, now(), body);
    post(addr, "/webhook", &headers, &body[..]).await.status
}

/// `dead`, `retry ID` or `retry-all` of the demo worker: its exit code and standard output.
fn manage(redis_url: &str, args: &[&str]) -> (i32, Vec<String>) {
    let out = Command::new(common::example("worker"))
        .env_clear()
        .env("REDIS_URL", redis_url)
        .args(args)
        .output()
        .unwrap();
    let lines = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        .collect();
    (out.status.code().unwrap_or(-1), lines)
}

fn accepted(id: &str) -> String {
    format!("accepted id={id} bytes=24 type=order.created path=/webhook")
}

#[tokio::test]
async fn in_process_workers_retry_with_backoff_and_dead_letter_the_hopeless() {
    let receiver = Example::start(
        "receiver",
        &[
            ("WEBHOOK_SECRET", SECRET),
            ("INBOX", "memory"),
            ("WORKERS", "2"),
            ("MAX_ATTEMPTS", "3"),
            ("RETRY_BASE_MS", "50"),
            ("RETRY_MAX_MS", "100"),
            ("BREAKER_FAILURES", "0"),
            ("FAIL_ONCE_PREFIX", "once"),
            ("FAIL_ALWAYS_PREFIX", "bad"),
        ],
    );
    for id in ["ok_1", "once_1", "bad_1"] {
        assert_eq!(deliver(&receiver, id).await, StatusCode::ACCEPTED);
    }
    let mut lines = receiver.printed_until(Duration::from_secs(10), |l| l.len() >= 3);
    lines.sort();
    assert_eq!(
        lines,
        [
            accepted("ok_1"),
            accepted("once_1"),
            "dead id=bad_1 attempts=3".to_owned()
        ]
    );
    // A delivery of a handled event is a duplicate, and prints nothing.
    assert_eq!(deliver(&receiver, "ok_1").await, StatusCode::OK);
    assert!(receiver.printed().is_empty());
    let stderr = receiver.stderr();
    assert_eq!(
        stderr.matches("simulated failure for id=once_1").count(),
        1,
        "{stderr}"
    );
    assert_eq!(
        stderr.matches("simulated failure for id=bad_1").count(),
        3,
        "{stderr}"
    );
}

#[cfg(feature = "redis")]
#[tokio::test]
async fn a_worker_killed_in_the_middle_of_a_slow_handler_loses_nothing() {
    let Some(redis) = common::redis::RedisServer::start() else {
        return;
    };
    let url = redis.url();
    let receiver = Example::start(
        "receiver",
        &[
            ("WEBHOOK_SECRET", SECRET),
            ("INBOX", "redis"),
            ("REDIS_URL", &url),
            ("REPLAY_STORE", "redis"),
            ("WORKERS", "0"),
        ],
    );
    let worker_env = |delay: &'static str| {
        [
            ("REDIS_URL", url.clone()),
            ("CLAIM_IDLE_SECS", "1".to_owned()),
            ("HANDLER_DELAY_MS", delay.to_owned()),
        ]
    };
    let env = worker_env("30000");
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let mut doomed = Example::start("worker", &env);
    assert_eq!(
        doomed.listening,
        ["working", "namespace=webhooks", "workers=4"]
    );

    // Answered at once, though the handler takes 30 s.
    let sent = Instant::now();
    assert_eq!(deliver(&receiver, "evt_slow").await, StatusCode::ACCEPTED);
    assert!(sent.elapsed() < Duration::from_secs(2));
    assert!(receiver.printed().is_empty());
    // The worker took it and is in its handler: killed without a chance to say so.
    std::thread::sleep(Duration::from_millis(700));
    doomed.signal("KILL");
    assert!(doomed.exit_within(Duration::from_secs(5)).is_some());
    assert!(doomed.printed().is_empty());

    // Another worker takes it over once it has been idle for a second, and handles it once.
    let env = worker_env("0");
    let mut env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    env.push(("METRICS_ADDR", "127.0.0.1:0"));
    let mut rescuer = Example::start("worker", &env);
    let lines = rescuer.printed_until(Duration::from_secs(10), |l| !l.is_empty());
    assert_eq!(lines, [accepted("evt_slow")]);
    assert!(rescuer.printed().is_empty(), "handled once");
    // Its metrics count the attempt cut short by the kill, and the one that succeeded.
    let ops: SocketAddr = rescuer.listening[3]
        .strip_prefix("metrics=")
        .unwrap()
        .parse()
        .unwrap();
    let scrape = common::get(ops, "/metrics").await.body;
    for result in ["lost", "success"] {
        let series =
            format!("webhook_inbox_attempts_total{{endpoint=\"/webhook\",result=\"{result}\"}} 1");
        assert!(scrape.lines().any(|l| l == series), "{series}\n{scrape}");
    }
    assert_eq!(common::get(ops, "/healthz").await.status, StatusCode::OK);
    // The sender's retry is a duplicate.
    assert_eq!(deliver(&receiver, "evt_slow").await, StatusCode::OK);
    // Stopped gracefully: exit 0.
    rescuer.signal("TERM");
    let status = rescuer.exit_within(Duration::from_secs(5)).expect("exits");
    assert!(status.success(), "{status:?}");
}

#[cfg(feature = "redis")]
#[tokio::test]
async fn the_worker_lists_and_retries_dead_letters() {
    let Some(redis) = common::redis::RedisServer::start() else {
        return;
    };
    let url = redis.url();
    let receiver = Example::start(
        "receiver",
        &[
            ("WEBHOOK_SECRET", SECRET),
            ("INBOX", "redis"),
            ("REDIS_URL", &url),
            ("WORKERS", "0"),
        ],
    );
    let mut failing = Example::start(
        "worker",
        &[
            ("REDIS_URL", &url),
            ("FAIL_ALWAYS_PREFIX", "bad"),
            ("MAX_ATTEMPTS", "2"),
            ("RETRY_BASE_MS", "50"),
        ],
    );
    for id in ["bad_1", "bad_2"] {
        assert_eq!(deliver(&receiver, id).await, StatusCode::ACCEPTED);
    }
    let mut lines = failing.printed_until(Duration::from_secs(10), |l| l.len() >= 2);
    lines.sort();
    assert_eq!(
        lines,
        ["dead id=bad_1 attempts=2", "dead id=bad_2 attempts=2"]
    );
    failing.signal("TERM");
    assert!(failing.exit_within(Duration::from_secs(5)).is_some());

    let (code, mut dead) = manage(&url, &["dead"]);
    dead.sort();
    assert_eq!((code, dead), (0, lines));
    assert_eq!(
        manage(&url, &["retry", "nope"]),
        (1, vec!["retried 0".to_owned()])
    );
    assert_eq!(
        manage(&url, &["retry", "bad_1"]),
        (0, vec!["retried 1".to_owned()])
    );
    let fixed = Example::start("worker", &[("REDIS_URL", &url)]);
    let lines = fixed.printed_until(Duration::from_secs(10), |l| !l.is_empty());
    assert_eq!(lines, [accepted("bad_1")]);
    assert_eq!(
        manage(&url, &["retry-all"]),
        (0, vec!["retried 1".to_owned()])
    );
    let lines = fixed.printed_until(Duration::from_secs(10), |l| !l.is_empty());
    assert_eq!(lines, [accepted("bad_2")]);
    assert_eq!(manage(&url, &["dead"]), (0, vec![]));
    assert_eq!(manage(&url, &["nonsense"]).0, 2);
}
