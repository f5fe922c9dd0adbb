//! The demo receiver and sender, run as the README runs them: for every scheme, a signed
//! delivery is accepted and printed once, and the same delivery with one byte changed is
//! refused and not printed.

use crate::common;

use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::time::Duration;

/// A running receiver, killed when dropped.
struct Receiver {
    process: common::Example,
    url: String,
}

impl Receiver {
    fn start(env: &[(&str, &str)]) -> Self {
        let process = common::Example::start("receiver", env);
        let url = format!("http://{}/webhook", process.addr);
        Self { process, url }
    }

    fn printed(&self) -> Vec<String> {
        self.process.printed()
    }
}

/// Runs the sender with `body` on stdin; returns its exit code and output.
fn send(url: &str, env: &[(&str, &str)], args: &[&str], body: &[u8]) -> (i32, String) {
    let mut child = Command::new(common::example("send"))
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
        // The body's `type`, for the senders that put it there; GitHub's and Shopify's are
        // headers the demo sender does not send.
        let ty = match scheme {
            "github" | "shopify" => "-",
            _ => "ping",
        };
        assert_eq!(
            receiver.printed(),
            [format!(
                "accepted id={id} bytes={} type={ty} path=/webhook",
                body.len()
            )],
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

    // Standard Webhooks with Ed25519: the receiver holds the public key beside an HMAC
    // secret, the sender signs with the seed (the reference library's test key).
    let receiver = Receiver::start(&[(
        "WEBHOOK_SECRET",
        "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw,whpk_ZlN4eg7dSSqi0moX9hQUk3orrOouK3QVQSlJa248c/g=",
    )]);
    let seed = [(
        "WEBHOOK_SECRET",
        "whsk_VEVTVFNJR05JTkdLRVlET05PVFVTRVRISVNGT1JBTlk=",
    )];
    let (code, out) = send(&receiver.url, &seed, &["--id", "evt_ed25519"], b"{}");
    assert_eq!((code, out.as_str()), (0, "200 {\"status\":\"accepted\"}\n"));
    let (code, out) = send(&receiver.url, &seed, &["--tamper"], b"{}");
    assert_eq!(code, 1, "{out}");
    assert_eq!(
        receiver.printed(),
        ["accepted id=evt_ed25519 bytes=2 type=- path=/webhook"]
    );
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
        [("REPLAY_MAX_ENTRIES", "lots"), ("BIND_ADDR", "127.0.0.1:0")],
        [("METRICS_ADDR", "localhost"), ("BIND_ADDR", "127.0.0.1:0")],
        [("HANDLER_DELAY_MS", "1s"), ("BIND_ADDR", "127.0.0.1:0")],
        [("SHUTDOWN_GRACE_SECS", "-1"), ("BIND_ADDR", "127.0.0.1:0")],
        [("INBOX", "kafka"), ("BIND_ADDR", "127.0.0.1:0")],
        [("INBOX", "memory"), ("WORKERS", "0")],
        [("INBOX", "memory"), ("MAX_ATTEMPTS", "five")],
        [("INBOX", "redis"), ("REDIS_URL", "http://nope")],
    ] {
        let out = Command::new(common::example("receiver"))
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
    let (head, _) = raw_from([127, 0, 0, 1], url, headers, body);
    head.lines().next().unwrap_or_default().to_owned()
}

/// Sends a request from the local address `source` (any 127.0.0.0/8 address is this machine)
/// and returns the response head and body.
fn raw_from(
    source: [u8; 4],
    url: &str,
    headers: &http::HeaderMap,
    body: &[u8],
) -> (String, String) {
    let addr: std::net::SocketAddr = url
        .trim_start_matches("http://")
        .trim_end_matches("/webhook")
        .parse()
        .unwrap();
    let mut stream = BoundSocket(std::net::SocketAddr::from((source, 0))).connect(addr);
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
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
    (head.to_owned(), body.to_owned())
}

/// A blocking TCP client bound to a chosen local address, through tokio's socket builder.
struct BoundSocket(std::net::SocketAddr);

impl BoundSocket {
    fn connect(&self, to: std::net::SocketAddr) -> std::net::TcpStream {
        let source = self.0;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let stream = runtime.block_on(async move {
            let socket = tokio::net::TcpSocket::new_v4().unwrap();
            socket.bind(source).unwrap();
            socket.connect(to).await.unwrap()
        });
        let stream = stream.into_std().unwrap();
        stream.set_nonblocking(false).unwrap();
        stream
    }
}

fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines().find_map(|l| {
        l.split_once(": ")
            .filter(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
    })
}

fn captured(scheme: &str, secret: &str, id: &str, body: &[u8]) -> http::HeaderMap {
    use tower_webhook::scheme::Scheme;
    let scheme = match scheme {
        "standard" => Scheme::standard_webhooks(),
        "stripe" => Scheme::stripe(),
        "github" => Scheme::github(),
        _ => unreachable!(),
    };
    common::sign(&scheme, secret, id, common::now(), body)
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
            format!(
                "accepted id=evt_fail_1 bytes={} type={} path=/webhook",
                body.len(),
                if scheme == "github" { "-" } else { "ping" }
            )
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

#[test]
fn allowlist_and_rate_limit_in_both_demo_servers() {
    let secret = "whsec_c2VjcmV0LWZvci10ZXN0cw==";
    for program in ["receiver", "hyper"] {
        let env = [
            ("WEBHOOK_SECRET", secret),
            ("ALLOW_CIDRS", "127.0.0.1/32, 127.0.0.3/32"),
            ("RATE_PER_SEC", "1"),
            ("RATE_BURST", "5"),
            ("REPLAY_STORE", "off"),
        ];
        let server = common::Example::start(program, &env);
        let url = format!("http://{}/webhook", server.addr);
        let body = br#"{"type":"ping"}"#;
        let signed = |id: &str| captured("standard", secret, id, body);

        // Outside the allowlist: 403, signed or not.
        let (head, reply) = raw_from([127, 0, 0, 2], &url, &signed("evt_a"), body);
        assert!(head.starts_with("HTTP/1.1 403"), "{program}: {head}");
        assert_eq!(reply, r#"{"error":"forbidden"}"#);

        // A flood from one allowed address: the burst passes, the rest is 429.
        let mut limited = 0;
        for i in 0..12 {
            let (head, reply) = raw_from(
                [127, 0, 0, 3],
                &url,
                &signed(&format!("evt_flood_{i}")),
                body,
            );
            if head.starts_with("HTTP/1.1 429") {
                limited += 1;
                assert_eq!(reply, r#"{"error":"rate_limited"}"#);
                let retry: u64 = header(&head, "retry-after").unwrap().parse().unwrap();
                assert!(retry >= 1, "{head}");
                assert_eq!(header(&head, "ratelimit-limit"), Some("5"));
                assert_eq!(header(&head, "ratelimit-remaining"), Some("0"));
            } else {
                assert!(head.starts_with("HTTP/1.1 200"), "{program}: {head}");
            }
        }
        assert!(limited >= 6, "{program}: only {limited} of 12 limited");

        // Meanwhile another allowed client, within its rate, is still accepted.
        for i in 0..3 {
            let (head, _) = raw_from([127, 0, 0, 1], &url, &signed(&format!("evt_ok_{i}")), body);
            assert!(head.starts_with("HTTP/1.1 200"), "{program}: {head}");
        }
        let accepted = server.printed();
        assert_eq!(accepted.len(), 12 - limited + 3, "{program}: {accepted:?}");
    }
}

#[test]
fn forwarded_for_is_believed_only_from_trusted_proxies() {
    let secret = "whsec_c2VjcmV0LWZvci10ZXN0cw==";
    let env = [
        ("WEBHOOK_SECRET", secret),
        ("ALLOW_CIDRS", "203.0.113.0/24"),
        ("TRUSTED_PROXIES", "127.0.0.1/32"),
    ];
    let server = common::Example::start("receiver", &env);
    let url = format!("http://{}/webhook", server.addr);
    let body = br#"{"type":"ping"}"#;
    let with_xff = |id: &str, xff: &str| {
        let mut h = captured("standard", secret, id, body);
        h.insert("x-forwarded-for", xff.parse().unwrap());
        h
    };
    // Through the trusted proxy 127.0.0.1: the client is the rightmost untrusted hop.
    let (head, _) = raw_from(
        [127, 0, 0, 1],
        &url,
        &with_xff("evt_1", "198.51.100.1, 203.0.113.5"),
        body,
    );
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let (head, _) = raw_from(
        [127, 0, 0, 1],
        &url,
        &with_xff("evt_2", "203.0.113.5, 198.51.100.1"),
        body,
    );
    assert!(
        head.starts_with("HTTP/1.1 403"),
        "spoofed leftmost value ignored: {head}"
    );
    // Garbage on the walk: 400.
    let (head, reply) = raw_from(
        [127, 0, 0, 1],
        &url,
        &with_xff("evt_3", "203.0.113.5, not-an-ip"),
        body,
    );
    assert!(head.starts_with("HTTP/1.1 400"), "{head}");
    assert_eq!(reply, r#"{"error":"malformed_header"}"#);
    // From an untrusted peer the header is not read at all.
    let (head, _) = raw_from(
        [127, 0, 0, 2],
        &url,
        &with_xff("evt_4", "203.0.113.5"),
        body,
    );
    assert!(head.starts_with("HTTP/1.1 403"), "{head}");
    assert_eq!(server.printed().len(), 1);
}

/// A config file in a fresh temporary folder, removed when dropped.
struct ConfigFile {
    dir: std::path::PathBuf,
}

impl ConfigFile {
    fn new(name: &str, text: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("tower-webhook-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = Self { dir };
        std::fs::write(file.path(), text).unwrap();
        file
    }

    fn path(&self) -> String {
        self.dir.join("receiver.toml").display().to_string()
    }

    fn sibling(&self, name: &str) -> String {
        self.dir.join(name).display().to_string()
    }
}

impl Drop for ConfigFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

const STRIPE_SECRET: &str = "whsec_c3RyaXBlLXNlY3JldA==";
const GITHUB_SECRET: &str = "github-secret";

#[test]
fn one_config_file_serves_two_schemes_on_two_paths() {
    let file = ConfigFile::new("two", "");
    std::fs::write(file.sibling("github.secret"), format!("{GITHUB_SECRET}\n")).unwrap();
    std::fs::write(
        file.path(),
        format!(
            r#"
bind_addr = "127.0.0.1:0"
replay_store = "memory"
tolerance_secs = 300

[[endpoints]]
path = "/stripe"
scheme = "stripe"
secrets = ["env:TEST_STRIPE_SECRET"]

[[endpoints]]
path = "/github"
scheme = "github"
secrets = ["file:{}"]

[[endpoints]]
path = "/stripe-eu"
scheme = "stripe"
secrets = ["{STRIPE_SECRET}"]
"#,
            file.sibling("github.secret")
        ),
    )
    .unwrap();
    let config = file.path();
    let receiver = common::Example::start(
        "receiver",
        &[
            ("WEBHOOK_CONFIG", &config),
            ("TEST_STRIPE_SECRET", STRIPE_SECRET),
        ],
    );
    let url = |path: &str| format!("http://{}{path}", receiver.addr);
    let stripe = [
        ("WEBHOOK_SCHEME", "stripe"),
        ("WEBHOOK_SECRET", STRIPE_SECRET),
    ];
    let github = [
        ("WEBHOOK_SCHEME", "github"),
        ("WEBHOOK_SECRET", GITHUB_SECRET),
    ];
    let event = br#"{"id":"evt_cfg_1","type":"invoice.paid"}"#;

    let (code, out) = send(&url("/stripe"), &stripe, &[], event);
    assert_eq!(code, 0, "{out}");
    let (code, out) = send(&url("/github"), &github, &["--id", "gh_1"], b"{\"zen\":1}");
    assert_eq!(code, 0, "{out}");
    // Each endpoint checks its own scheme and secret.
    let (code, out) = send(&url("/github"), &stripe, &[], event);
    assert_eq!((code, &out[..4]), (1, "401 "), "{out}");
    // The same event on another path is another endpoint's: its replay keys are its own.
    let (code, out) = send(&url("/stripe-eu"), &stripe, &[], event);
    assert_eq!(code, 0, "{out}");
    // The same event again on the first path is a duplicate there.
    let (code, out) = send(&url("/stripe"), &stripe, &[], event);
    assert!(
        out.starts_with("200 {\"status\":\"duplicate\"}"),
        "{code} {out}"
    );
    // No endpoint serves this path.
    let (code, out) = send(&url("/webhook"), &stripe, &[], event);
    assert_eq!((code, &out[..4]), (1, "404 "), "{out}");

    assert_eq!(
        receiver.printed(),
        [
            format!(
                "accepted id=- bytes={} type=invoice.paid path=/stripe",
                event.len()
            ),
            "accepted id=gh_1 bytes=9 type=- path=/github".to_owned(),
            format!(
                "accepted id=- bytes={} type=invoice.paid path=/stripe-eu",
                event.len()
            ),
        ]
    );
}

#[test]
fn the_environment_wins_over_the_file() {
    let file = ConfigFile::new(
        "env",
        &format!(
            r#"
max_body_bytes = 8
rate_per_sec = 1

[[endpoints]]
path = "/stripe"
scheme = "stripe"
secrets = ["{STRIPE_SECRET}"]
"#
        ),
    );
    let config = file.path();
    let receiver = common::Example::start(
        "receiver",
        &[
            ("WEBHOOK_CONFIG", &config),
            ("MAX_BODY_BYTES", "4096"),
            ("RATE_PER_SEC", "1000"),
        ],
    );
    let url = format!("http://{}/stripe", receiver.addr);
    let stripe = [
        ("WEBHOOK_SCHEME", "stripe"),
        ("WEBHOOK_SECRET", STRIPE_SECRET),
    ];
    for i in 0..3 {
        let body = format!(r#"{{"id":"evt_env_{i}","type":"ping"}}"#);
        let (code, out) = send(&url, &stripe, &[], body.as_bytes());
        assert_eq!(code, 0, "{out}");
    }
    assert_eq!(receiver.printed().len(), 3);
}

#[test]
fn a_bad_config_file_exits_with_status_2_naming_the_field() {
    let endpoint = |extra: &str| {
        format!(
            "[[endpoints]]\npath = \"/a\"\nscheme = \"stripe\"\nsecrets = [\"whsec_x\"]\n{extra}"
        )
    };
    let cases = [
        ("unknown key", format!("colour = \"blue\"\n{}", endpoint("")), "colour"),
        ("unknown endpoint key", endpoint("events_typo = 1\n"), "endpoints[0]"),
        (
            "unknown scheme",
            "[[endpoints]]\npath = \"/a\"\nscheme = \"paypal\"\nsecrets = [\"s\"]\n".to_owned(),
            "endpoints[0].scheme",
        ),
        (
            "unresolved secret",
            "[[endpoints]]\npath = \"/a\"\nscheme = \"github\"\nsecrets = [\"s\", \"env:TOWER_WEBHOOK_UNSET\"]\n"
                .to_owned(),
            "endpoints[0].secrets[1]",
        ),
        (
            "unreadable secret file",
            "[[endpoints]]\npath = \"/a\"\nscheme = \"github\"\nsecrets = [\"file:/nonexistent/secret\"]\n"
                .to_owned(),
            "endpoints[0].secrets[0]",
        ),
        ("no endpoint", "tolerance_secs = 60\n".to_owned(), "endpoints"),
        ("bad CIDR", format!("allow_cidrs = [\"10.0.0.0/33\"]\n{}", endpoint("")), "allow_cidrs"),
        ("not TOML", "endpoints = [[\n".to_owned(), "WEBHOOK_CONFIG"),
    ];
    for (name, text, field) in cases {
        let file = ConfigFile::new("bad", &text);
        let out = Command::new(common::example("receiver"))
            .env_clear()
            .env("WEBHOOK_CONFIG", file.path())
            .env("BIND_ADDR", "127.0.0.1:0")
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{name}: {stderr}");
        assert!(out.stdout.is_empty(), "{name}");
        assert!(stderr.contains(field), "{name}: {stderr}");
        assert!(!stderr.contains("whsec_x"), "{name}: {stderr}");
    }
    // A file that cannot be read at all.
    let out = Command::new(common::example("receiver"))
        .env_clear()
        .env("WEBHOOK_CONFIG", "/nonexistent/receiver.toml")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn webhook_events_answers_other_types_ignored_and_prints_no_line() {
    let stripe = [
        ("WEBHOOK_SCHEME", "stripe"),
        ("WEBHOOK_SECRET", STRIPE_SECRET),
        ("WEBHOOK_EVENTS", "invoice.*, customer.subscription.deleted"),
    ];
    let receiver = Receiver::start(&stripe);
    let paid = br#"{"id":"evt_e1","object":"event","type":"invoice.paid"}"#;
    let (code, out) = send(&receiver.url, &stripe, &[], paid);
    assert_eq!(code, 0, "{out}");
    let refund = br#"{"id":"evt_e2","object":"event","type":"charge.refunded"}"#;
    let (code, out) = send(&receiver.url, &stripe, &[], refund);
    assert_eq!((code, out.trim()), (0, r#"200 {"status":"ignored"}"#));
    assert_eq!(
        receiver.printed(),
        [format!(
            "accepted id=- bytes={} type=invoice.paid path=/webhook",
            paid.len()
        )]
    );

    // The same per endpoint in a config file; a bad pattern names its field.
    let file = ConfigFile::new(
        "events",
        &format!(
            "[[endpoints]]\npath = \"/stripe\"\nscheme = \"stripe\"\nsecrets = [\"{STRIPE_SECRET}\"]\nevents = [\"charge.*\"]\n"
        ),
    );
    let config = file.path();
    let receiver = common::Example::start("receiver", &[("WEBHOOK_CONFIG", &config)]);
    let url = format!("http://{}/stripe", receiver.addr);
    let (_, out) = send(&url, &stripe, &[], paid);
    assert!(out.starts_with(r#"200 {"status":"ignored"}"#), "{out}");
    let (code, _) = send(&url, &stripe, &[], refund);
    assert_eq!(code, 0);
    assert_eq!(receiver.printed().len(), 1);

    let bad = ConfigFile::new(
        "badevents",
        "[[endpoints]]\npath = \"/a\"\nscheme = \"github\"\nsecrets = [\"s\"]\nevents = [\"is*sues\"]\n",
    );
    let out = Command::new(common::example("receiver"))
        .env_clear()
        .env("WEBHOOK_CONFIG", bad.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("endpoints[0].events"));
}
