//! Helpers for tests that talk to real servers on 127.0.0.1.
#![allow(dead_code)]

#[cfg(feature = "redis")]
pub mod redis;

use std::net::SocketAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::{HeaderMap, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Every network step of a test is bounded by this.
pub const STEP: Duration = Duration::from_secs(10);

pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// The headers `scheme`'s signer makes for `body` with `secret`: the one way tests sign a
/// delivery.
pub fn sign(
    scheme: &tower_webhook::scheme::Scheme,
    secret: &str,
    id: &str,
    timestamp: u64,
    body: &[u8],
) -> HeaderMap {
    tower_webhook::scheme::Signer::new(scheme, secret)
        .unwrap()
        .sign(id, timestamp, body)
        .unwrap()
}

/// Serves `router` on an ephemeral port of `ip` (a loopback address) with the peer address
/// as axum's `ConnectInfo`, until the test's runtime ends.
pub async fn serve_with_peer(ip: &str, router: axum::Router) -> SocketAddr {
    let listener = TcpListener::bind((ip, 0)).await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(
            listener,
            router.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await
        .unwrap();
    });
    addr
}

/// A receiver on 127.0.0.1 whose handler at `/webhook` is `inbox`'s ingest, behind the stack
/// (Standard Webhooks with `secret`, a memory replay store).
pub async fn inbox_receiver(inbox: &tower_webhook::inbox::Inbox, secret: &str) -> SocketAddr {
    use tower::Layer;
    let verifier =
        tower_webhook::Verifier::builder(tower_webhook::scheme::Scheme::standard_webhooks())
            .secret(secret)
            .build()
            .unwrap();
    let layer = tower_webhook::WebhookLayer::builder(verifier)
        .endpoint("/webhook")
        .replay(tower_webhook::replay::MemoryStore::default())
        .build()
        .unwrap();
    let service = axum::routing::post_service(layer.layer(inbox.ingest("/webhook")));
    serve_with_peer(
        "127.0.0.1",
        axum::Router::new().route_service("/webhook", service),
    )
    .await
}

/// Serves an axum router on an ephemeral port of 127.0.0.1 until the test's runtime ends.
pub async fn serve(router: axum::Router) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(listener, router).await.unwrap();
    });
    addr
}

/// A response as the client saw it.
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: String,
}

/// POSTs `body` with `headers` to `http://addr/path` over a fresh HTTP/1.1 connection.
pub async fn post(
    addr: SocketAddr,
    path: &str,
    headers: &HeaderMap,
    body: impl Into<Bytes>,
) -> Reply {
    let mut req = Request::post(path)
        .header("host", addr.to_string())
        .body(Full::new(body.into()))
        .unwrap();
    for (k, v) in headers {
        req.headers_mut().append(k, v.clone());
    }
    send(addr, req).await
}

/// GETs `http://addr/path` over a fresh HTTP/1.1 connection.
pub async fn get(addr: SocketAddr, path: &str) -> Reply {
    let req = Request::get(path)
        .header("host", addr.to_string())
        .body(Full::new(Bytes::new()))
        .unwrap();
    send(addr, req).await
}

/// Sends `req` to `addr` over a fresh HTTP/1.1 connection, within [`STEP`].
async fn send(addr: SocketAddr, req: Request<Full<Bytes>>) -> Reply {
    tokio::time::timeout(STEP, async {
        let stream = TcpStream::connect(addr).await.unwrap();
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .unwrap();
        tokio::spawn(conn);
        let res = sender.send_request(req).await.unwrap();
        let (parts, body) = res.into_parts();
        let body = body.collect().await.unwrap().to_bytes();
        Reply {
            status: parts.status,
            headers: parts.headers,
            body: String::from_utf8_lossy(&body).into_owned(),
        }
    })
    .await
    .expect("request timed out")
}

/// Path of an example, built (or found up to date) first: `cargo test --test x` alone does
/// not rebuild examples, and a stale binary would test old code.
pub fn example(name: &str) -> std::path::PathBuf {
    static BUILT: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());
    // target/<profile>/deps/<this test>: build the example with the same profile.
    let profile_dir = std::env::current_exe()
        .unwrap()
        .parent()
        .unwrap()
        .parent()
        .unwrap()
        .to_owned();
    let release = profile_dir.ends_with("release");
    let mut built = BUILT
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if !built.iter().any(|b| b == name) {
        let status = std::process::Command::new(env!("CARGO"))
            .args(["build", "--quiet", "--example", name])
            .args(release.then_some("--release"))
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .status()
            .unwrap();
        assert!(status.success(), "building example {name}");
        built.push(name.to_owned());
    }
    profile_dir.join("examples").join(name)
}

/// A running example program on a free port of 127.0.0.1, killed when dropped.
pub struct Example {
    child: std::process::Child,
    lines: std::sync::mpsc::Receiver<String>,
    /// Where its standard error goes.
    stderr: std::path::PathBuf,
    /// The address from its `listening on <addr>` line.
    pub addr: String,
    /// The other fields of that line, such as `metrics=<addr>`.
    pub listening: Vec<String>,
}

impl Example {
    /// Starts `name` with only `env` (and `BIND_ADDR=127.0.0.1:0`) in its environment, and
    /// waits for its first line.
    pub fn start(name: &str, env: &[(&str, &str)]) -> Self {
        use std::io::BufRead;
        static STARTED: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = STARTED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let stderr = std::env::temp_dir().join(format!(
            "tower-webhook-{name}-{}-{n}.stderr",
            std::process::id()
        ));
        let mut child = std::process::Command::new(example(name))
            .env_clear()
            .env("BIND_ADDR", "127.0.0.1:0")
            .envs(env.iter().copied())
            .stdout(std::process::Stdio::piped())
            .stderr(std::fs::File::create(&stderr).unwrap())
            .spawn()
            .unwrap();
        let (tx, lines) = std::sync::mpsc::channel();
        let stdout = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stdout)
                .lines()
                .map_while(Result::ok)
            {
                let _ = tx.send(line);
            }
        });
        let first = lines
            .recv_timeout(Duration::from_secs(30))
            .expect("example did not start");
        // A server's first line is `listening on <addr> ...`; another program's is kept whole
        // in `listening`.
        let (addr, listening) = match first.strip_prefix("listening on ") {
            Some(rest) => {
                let mut fields = rest.split(' ').map(str::to_owned);
                (fields.next().unwrap_or_default(), fields.collect())
            }
            None => (String::new(), first.split(' ').map(str::to_owned).collect()),
        };
        Self {
            child,
            lines,
            stderr,
            addr,
            listening,
        }
    }

    /// What it wrote on standard error so far.
    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends it the signal `name` (`TERM`, `INT`, ...).
    pub fn signal(&self, name: &str) {
        let status = std::process::Command::new("kill")
            .args(["-s", name, &self.pid().to_string()])
            .status()
            .unwrap();
        assert!(status.success(), "kill -s {name}");
    }

    /// Its exit status, if it exits within `limit`.
    pub fn exit_within(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        let deadline = std::time::Instant::now() + limit;
        while std::time::Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    /// Lines printed since the last call, until `done` says they are enough or `limit` has
    /// passed.
    pub fn printed_until(&self, limit: Duration, done: impl Fn(&[String]) -> bool) -> Vec<String> {
        let deadline = std::time::Instant::now() + limit;
        let mut out = Vec::new();
        while !done(&out) {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => out.push(line),
                Err(_) => break,
            }
        }
        out
    }

    /// Lines printed since the last call (waiting briefly for stragglers).
    pub fn printed(&self) -> Vec<String> {
        let mut out = Vec::new();
        while let Ok(line) = self.lines.recv_timeout(Duration::from_millis(300)) {
            out.push(line);
        }
        out
    }
}

impl Drop for Example {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.stderr);
    }
}

/// An axum app whose handler counts its calls in `calls`, takes `delay`, and answers
/// `handled`, behind buffering, verification and `replay`.
pub fn counting_app(
    verifier: tower_webhook::Verifier,
    replay: tower_webhook::replay::ReplayLayer,
    calls: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    delay: Duration,
) -> axum::Router {
    axum::Router::new()
        .route(
            "/webhook",
            axum::routing::post(move || {
                let calls = calls.clone();
                async move {
                    calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    tokio::time::sleep(delay).await;
                    "handled"
                }
            }),
        )
        .layer(
            tower::ServiceBuilder::new()
                .layer(tower_webhook::body::BufferBodyLayer::new())
                .layer(tower_webhook::verify::VerifyLayer::new(verifier))
                .layer(replay),
        )
}

/// One HTTP/1.1 response read off a raw connection.
#[derive(Debug)]
pub struct RawReply {
    pub status: u16,
    /// Header lines, names lower-cased, as `name: value`.
    pub headers: Vec<String>,
    pub body: Vec<u8>,
}

impl RawReply {
    /// The first value of header `name` (lower case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find_map(|line| {
            let (n, v) = line.split_once(':')?;
            (n == name).then(|| v.trim())
        })
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Writes `request` (raw bytes, anything a client library would refuse to send) on a fresh
/// connection, then reads until the server closes or `STEP` passes, and splits what came back
/// into responses (bodies framed by `content-length`, as every response here is).
pub async fn exchange(addr: SocketAddr, request: &[u8]) -> Vec<RawReply> {
    exchange_from(None, addr, request).await
}

/// [`exchange`] from the local address `from` (any of 127.0.0.0/8 works on Linux loopback).
pub async fn exchange_from(
    from: Option<std::net::IpAddr>,
    addr: SocketAddr,
    request: &[u8],
) -> Vec<RawReply> {
    let mut stream = match from {
        None => TcpStream::connect(addr).await.unwrap(),
        Some(ip) => {
            let socket = match ip {
                std::net::IpAddr::V4(_) => tokio::net::TcpSocket::new_v4(),
                std::net::IpAddr::V6(_) => tokio::net::TcpSocket::new_v6(),
            }
            .unwrap();
            socket.bind(SocketAddr::new(ip, 0)).unwrap();
            socket.connect(addr).await.unwrap()
        }
    };
    // The server may answer and close before reading all of it (a 413 on `content-length`).
    let _ = stream.write_all(request).await;
    let mut out = Vec::new();
    let read = tokio::time::timeout(STEP, stream.read_to_end(&mut out)).await;
    assert!(read.is_ok(), "the server neither answered nor closed");
    parse_replies(&out)
}

/// Splits raw response bytes into responses; a truncated tail is dropped.
pub fn parse_replies(mut raw: &[u8]) -> Vec<RawReply> {
    let mut replies = Vec::new();
    while let Some(end) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
        let head = String::from_utf8_lossy(&raw[..end]).into_owned();
        let mut lines = head.split("\r\n");
        let status = lines
            .next()
            .and_then(|l| l.get(9..12))
            .and_then(|s| s.parse().ok())
            .expect("a status line");
        let headers: Vec<String> = lines
            .map(|l| match l.split_once(':') {
                Some((n, v)) => format!("{}:{v}", n.to_ascii_lowercase()),
                None => l.to_owned(),
            })
            .collect();
        let length: usize = headers
            .iter()
            .find_map(|l| l.strip_prefix("content-length:"))
            .map_or(0, |v| v.trim().parse().unwrap());
        let rest = &raw[end + 4..];
        if rest.len() < length {
            break;
        }
        replies.push(RawReply {
            status,
            headers,
            body: rest[..length].to_vec(),
        });
        raw = &rest[length..];
    }
    replies
}

/// A POST of `body` to `path` with raw header lines (name, value bytes) and
/// `connection: close`, as bytes for [`exchange`].
pub fn raw_post(path: &str, lines: &[(String, Vec<u8>)], body: &[u8]) -> Vec<u8> {
    let mut out = format!(
        "POST {path} HTTP/1.1\r\nhost: 127.0.0.1\r\nconnection: close\r\ncontent-length: {}\r\n",
        body.len()
    )
    .into_bytes();
    for (name, value) in lines {
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(body);
    out
}
