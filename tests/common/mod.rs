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
