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
    tokio::time::timeout(STEP, async {
        let stream = TcpStream::connect(addr).await.unwrap();
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .unwrap();
        tokio::spawn(conn);
        let mut req = Request::post(path)
            .header("host", addr.to_string())
            .body(Full::new(body.into()))
            .unwrap();
        for (k, v) in headers {
            req.headers_mut().append(k, v.clone());
        }
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

/// Writes `head` (and then each of `chunks`, `pause` apart) on a raw TCP connection, optionally
/// half-closes, and returns everything the server answered until it closed or `STEP` passed.
pub async fn raw(
    addr: SocketAddr,
    head: &[u8],
    chunks: &[&[u8]],
    pause: Duration,
    half_close: bool,
) -> String {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(head).await.unwrap();
    for chunk in chunks {
        tokio::time::sleep(pause).await;
        if stream.write_all(chunk).await.is_err() {
            break;
        }
    }
    if half_close {
        stream.shutdown().await.unwrap();
    }
    let mut out = Vec::new();
    let _ = tokio::time::timeout(STEP, async {
        let mut buf = [0u8; 4096];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    out.extend_from_slice(&buf[..n]);
                    // One response is all these tests need.
                    if let Ok(text) = std::str::from_utf8(&out) {
                        if text.contains("\r\n\r\n{") && text.ends_with('}') {
                            break;
                        }
                    }
                }
            }
        }
    })
    .await;
    String::from_utf8_lossy(&out).into_owned()
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
    /// The address from its `listening on <addr>` line.
    pub addr: String,
}

impl Example {
    /// Starts `name` with only `env` (and `BIND_ADDR=127.0.0.1:0`) in its environment.
    pub fn start(name: &str, env: &[(&str, &str)]) -> Self {
        use std::io::BufRead;
        let mut child = std::process::Command::new(example(name))
            .env_clear()
            .env("BIND_ADDR", "127.0.0.1:0")
            .envs(env.iter().copied())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
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
        let addr = first
            .strip_prefix("listening on ")
            .expect(&first)
            .to_owned();
        Self { child, lines, addr }
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
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
                .layer(tower_webhook::buffer::BufferBodyLayer::new())
                .layer(tower_webhook::verify::VerifyLayer::new(verifier))
                .layer(replay),
        )
}
