//! The demo receiver and sender, run as the README runs them: for every scheme, a signed
//! delivery is accepted and printed once, and the same delivery with one byte changed is
//! refused and not printed.

use std::io::{BufRead, BufReader, Write};
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
