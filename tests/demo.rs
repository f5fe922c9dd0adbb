//! The demo receiver and sender, run as the README runs them: for every scheme, a signed
//! delivery is accepted and printed once, and the same delivery with one byte changed is
//! refused and not printed.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// Path of a built example, building it if `cargo test` was run for this test alone.
fn example(name: &str) -> PathBuf {
    let dir = std::env::current_exe()
        .unwrap()
        .parent()
        .unwrap()
        .parent()
        .unwrap()
        .join("examples");
    let path = dir.join(name);
    if !path.exists() {
        let status = Command::new(env!("CARGO"))
            .args(["build", "--example", name])
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .status()
            .unwrap();
        assert!(status.success());
    }
    path
}

/// A running receiver, killed when dropped.
struct Receiver {
    child: Child,
    lines: mpsc::Receiver<String>,
    url: String,
}

impl Receiver {
    fn start(env: &[(&str, &str)]) -> Self {
        let mut child = Command::new(example("receiver"))
            .env_clear()
            .env("BIND_ADDR", "127.0.0.1:0")
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let (tx, lines) = mpsc::channel();
        let stdout = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let first = lines
            .recv_timeout(Duration::from_secs(30))
            .expect("receiver did not start");
        let addr = first
            .strip_prefix("listening on ")
            .expect(&first)
            .to_owned();
        Self {
            child,
            lines,
            url: format!("http://{addr}/webhook"),
        }
    }

    /// Lines printed so far (waiting briefly for stragglers).
    fn printed(&self) -> Vec<String> {
        let mut out = Vec::new();
        while let Ok(line) = self.lines.recv_timeout(Duration::from_millis(300)) {
            out.push(line);
        }
        out
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs the sender with `body` on stdin; returns its exit code and output.
fn send(url: &str, env: &[(&str, &str)], args: &[&str], body: &[u8]) -> (i32, String) {
    let mut child = Command::new(example("send"))
        .env_clear()
        .env("WEBHOOK_URL", url)
        .envs(env.iter().copied())
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(body).unwrap();
    let out = child.wait_with_output().unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.code().unwrap_or(-1), text)
}

#[test]
fn every_scheme_accepts_signed_and_refuses_tampered() {
    let body = br#"{"id":"evt_1","type":"ping"}"#;
    for scheme in ["standard", "stripe", "github", "slack", "shopify"] {
        let env = [
            ("WEBHOOK_SCHEME", scheme),
            ("WEBHOOK_SECRET", "whsec_c2VjcmV0LWZvci10ZXN0cw=="),
        ];
        let receiver = Receiver::start(&env);
        let (code, out) = send(&receiver.url, &env, &["--id", "evt_demo"], body);
        assert_eq!(code, 0, "{scheme}: {out}");
        assert!(out.starts_with("200 "), "{scheme}: {out}");
        let (code, out) = send(&receiver.url, &env, &["--id", "evt_demo", "--tamper"], body);
        assert_eq!(code, 1, "{scheme}: {out}");
        assert!(out.starts_with("401 "), "{scheme}: {out}");

        let id = match scheme {
            "standard" | "github" | "shopify" => "evt_demo",
            _ => "-",
        };
        assert_eq!(
            receiver.printed(),
            [format!("accepted id={id} bytes={}", body.len())],
            "{scheme}"
        );
    }
}

#[test]
fn defaults_rotation_and_limits() {
    // No settings at all: the development secret, on both sides.
    let receiver = Receiver::start(&[]);
    let (code, out) = send(&receiver.url, &[], &[], b"{}");
    assert_eq!(code, 0, "{out}");
    assert_eq!(receiver.printed().len(), 1);
    drop(receiver);

    // Two secrets (rotation): a delivery signed with either is accepted.
    let receiver = Receiver::start(&[
        ("WEBHOOK_SCHEME", "github"),
        ("WEBHOOK_SECRET", "new-secret,old-secret"),
    ]);
    for secret in ["old-secret", "new-secret"] {
        let (code, out) = send(
            &receiver.url,
            &[("WEBHOOK_SCHEME", "github"), ("WEBHOOK_SECRET", secret)],
            &[],
            b"{}",
        );
        assert_eq!(code, 0, "{secret}: {out}");
    }
    let (code, _) = send(
        &receiver.url,
        &[("WEBHOOK_SCHEME", "github"), ("WEBHOOK_SECRET", "other")],
        &[],
        b"{}",
    );
    assert_eq!(code, 1);
    assert_eq!(receiver.printed().len(), 2);
    drop(receiver);

    // MAX_BODY_BYTES is enforced.
    let receiver = Receiver::start(&[("MAX_BODY_BYTES", "8")]);
    let (code, out) = send(&receiver.url, &[], &[], b"0123456789");
    assert_eq!(code, 1);
    assert!(out.starts_with("413 "), "{out}");
    assert!(receiver.printed().is_empty());
}

#[test]
fn bad_settings_exit_with_status_2() {
    for env in [
        [("WEBHOOK_SCHEME", "paypal"), ("BIND_ADDR", "127.0.0.1:0")],
        [
            ("WEBHOOK_SECRET", "whsec_not*base64"),
            ("BIND_ADDR", "127.0.0.1:0"),
        ],
        [("TOLERANCE_SECS", "-5"), ("BIND_ADDR", "127.0.0.1:0")],
        [("MAX_BODY_BYTES", "1MB"), ("BIND_ADDR", "127.0.0.1:0")],
        [("REPLAY_STORE", "disk"), ("BIND_ADDR", "127.0.0.1:0")],
        [("REPLAY_TTL_SECS", "60"), ("BIND_ADDR", "127.0.0.1:0")],
    ] {
        let out = Command::new(example("receiver"))
            .env_clear()
            .envs(env)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{env:?}");
        assert!(out.stdout.is_empty(), "{env:?}");
    }
}

/// Sends exactly these headers and body (a captured delivery) and returns the status line.
fn replay_raw(url: &str, headers: &http::HeaderMap, body: &[u8]) -> String {
    let addr = url
        .trim_start_matches("http://")
        .trim_end_matches("/webhook");
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut request = format!(
        "POST /webhook HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\ncontent-length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        request.push_str(&format!("{k}: {}\r\n", v.to_str().unwrap()));
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes()).unwrap();
    stream.write_all(body).unwrap();
    let mut response = String::new();
    let _ = stream.read_to_string(&mut response);
    response.lines().next().unwrap_or_default().to_owned()
}

fn captured(scheme: &str, secret: &str, id: &str, body: &[u8]) -> http::HeaderMap {
    use tower_webhook::scheme::{Scheme, Signer};
    let scheme = match scheme {
        "standard" => Scheme::standard_webhooks(),
        "stripe" => Scheme::stripe(),
        "github" => Scheme::github(),
        _ => unreachable!(),
    };
    Signer::new(&scheme, secret)
        .unwrap()
        .sign(id, common::now(), body)
        .unwrap()
}

#[test]
fn a_replayed_delivery_is_accepted_once_and_a_failed_one_on_retry() {
    let secret = "whsec_c2VjcmV0LWZvci10ZXN0cw==";
    for scheme in ["standard", "stripe", "github"] {
        let env = [
            ("WEBHOOK_SCHEME", scheme),
            ("WEBHOOK_SECRET", secret),
            ("FAIL_ONCE_PREFIX", "evt_fail"),
        ];
        let receiver = Receiver::start(&env);
        let body = br#"{"id":"evt_captured","type":"ping"}"#;
        let headers = captured(scheme, secret, "evt_captured", body);
        for attempt in 0..3 {
            let status = replay_raw(&receiver.url, &headers, body);
            assert!(
                status.starts_with("HTTP/1.1 200"),
                "{scheme} attempt {attempt}: {status}"
            );
        }
        if scheme == "stripe" {
            // Stripe names its event only in the body: `FAIL_ONCE_PREFIX` (which reads the
            // header id) does not apply.
            assert_eq!(receiver.printed().len(), 1);
            continue;
        }
        // The sender's retry after a failed first attempt is handled.
        let body = br#"{"id":"evt_fail_1","type":"ping"}"#;
        let (code, out) = send(&receiver.url, &env, &["--id", "evt_fail_1"], body);
        assert_eq!((code, &out[..4]), (1, "500 "), "{scheme}: {out}");
        let (code, out) = send(&receiver.url, &env, &["--id", "evt_fail_1"], body);
        assert_eq!(code, 0, "{scheme}: {out}");
        let printed = receiver.printed();
        assert_eq!(printed.len(), 2, "{scheme}: {printed:?}");
        assert_eq!(
            printed[1],
            format!("accepted id=evt_fail_1 bytes={}", body.len())
        );
    }
}

#[test]
fn two_receivers_sharing_redis_accept_an_event_once_between_them() {
    let Some(redis) = common::redis::RedisServer::start() else {
        return;
    };
    let secret = "whsec_c2VjcmV0LWZvci10ZXN0cw==";
    let env = [
        ("REPLAY_STORE", "redis"),
        ("REDIS_URL", &redis.url()),
        ("WEBHOOK_SECRET", secret),
    ];
    let a = Receiver::start(&env);
    let b = Receiver::start(&env);
    let body = br#"{"type":"ping"}"#;
    let headers = captured("standard", secret, "evt_both", body);
    for receiver in [&a, &b, &a, &b] {
        let status = replay_raw(&receiver.url, &headers, body);
        assert!(status.starts_with("HTTP/1.1 200"), "{status}");
    }
    let lines = a.printed().len() + b.printed().len();
    assert_eq!(
        lines, 1,
        "exactly one accepted line between the two receivers"
    );
}
