//! Buffering: bodies that are too long, endless, stalled, trickling, or framed two ways at
//! once, over raw TCP, both with `BufferBody` in front of `Verify` and with `Verify` alone.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::routing::post;
use axum::Router;
use bytes::Bytes;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tower_webhook::body::BufferBodyLayer;
use tower_webhook::clock::ManualClock;
use tower_webhook::verify::VerifyLayer;
use tower_webhook::{BodyLimits, Verifier};

use super::common::{exchange, parse_replies, RawReply, STEP};
use super::{check, Expect, Line, Sender, KEY, NOW};

const LIMIT: usize = 1024;
const DEADLINE: Duration = Duration::from_millis(2500);

/// The app with `BufferBody` then `Verify` (`alone == false`), or `Verify` buffering itself.
async fn app(alone: bool) -> (std::net::SocketAddr, Arc<AtomicUsize>) {
    let limits = BodyLimits::new().max_bytes(LIMIT).timeout(DEADLINE);
    let verifier = Verifier::builder(Sender::Standard.scheme())
        .secret_bytes(KEY)
        .clock(ManualClock::new(NOW))
        .body_limits(limits)
        .build()
        .unwrap();
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = calls.clone();
    let routes = Router::new().route(
        "/hook",
        post(move |body: Bytes| async move {
            counter.fetch_add(1, Ordering::SeqCst);
            body
        }),
    );
    let router = if alone {
        routes.layer(VerifyLayer::new(verifier))
    } else {
        routes
            .layer(VerifyLayer::new(verifier))
            .layer(BufferBodyLayer::with_limits(limits))
    };
    (super::common::serve(router).await, calls)
}

fn signed(id: &str, body: &[u8]) -> Vec<Line> {
    Sender::Standard.sign(KEY, id, &NOW.to_string(), body)
}

/// A request head with `framing` lines (length headers) and the signature lines.
fn head(framing: &str, lines: &[Line], close: bool) -> Vec<u8> {
    let mut out = format!("POST /hook HTTP/1.1\r\nhost: 127.0.0.1\r\n{framing}").into_bytes();
    if close {
        out.extend_from_slice(b"connection: close\r\n");
    }
    for (name, value) in lines {
        out.extend_from_slice(format!("{name}: ").as_bytes());
        out.extend_from_slice(value);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
    out
}

/// Writes `head`, then each of `chunks` `pause` apart, while reading: returns the first
/// response and when it arrived. The writer stops when the server closes.
async fn paced(
    addr: std::net::SocketAddr,
    head: Vec<u8>,
    chunks: Vec<Vec<u8>>,
    pause: Duration,
) -> (RawReply, Duration) {
    let (mut read, mut write) = TcpStream::connect(addr).await.unwrap().into_split();
    let start = Instant::now();
    let writer = tokio::spawn(async move {
        write.write_all(&head).await?;
        for chunk in chunks {
            tokio::time::sleep(pause).await;
            write.write_all(&chunk).await?;
        }
        Ok::<_, std::io::Error>(write)
    });
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    let reply = tokio::time::timeout(STEP, async {
        loop {
            let n = read.read(&mut buf).await.unwrap_or(0);
            out.extend_from_slice(&buf[..n]);
            if let Some(reply) = parse_replies(&out).into_iter().next() {
                return reply;
            }
            assert!(n > 0, "closed without a response");
        }
    })
    .await
    .expect("no response in time");
    let elapsed = start.elapsed();
    writer.abort();
    (reply, elapsed)
}

fn assert_refused(reply: &RawReply, status: u16, code: &str, what: &str) {
    assert_eq!(
        (reply.status, reply.text()),
        (status, format!(r#"{{"error":"{code}"}}"#)),
        "{what}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn too_long_endless_stalled_and_trickling_bodies() {
    for alone in [false, true] {
        let (addr, calls) = app(alone).await;
        let lines = signed("msg_body", b"x");
        let what = |case: &str| format!("{case} (verify alone: {alone})");

        // Content-Length over the limit: refused before a body byte is sent.
        let (reply, _) = paced(
            addr,
            head("content-length: 5000\r\n", &lines, false),
            vec![],
            Duration::ZERO,
        )
        .await;
        assert_refused(&reply, 413, "payload_too_large", &what("content-length"));

        // A chunked body that never ends: refused once it passes the limit.
        let chunk = format!("100\r\n{}\r\n", "y".repeat(0x100)).into_bytes();
        let (reply, _) = paced(
            addr,
            head("transfer-encoding: chunked\r\n", &lines, false),
            vec![chunk; 1000],
            Duration::from_millis(1),
        )
        .await;
        assert_refused(&reply, 413, "payload_too_large", &what("endless chunked"));

        // A stall after 3 of 10 bytes, and a trickle of one byte a second: the deadline is
        // for the whole body, so a byte arriving now and then does not extend it. (With a
        // per-chunk timer the trickle would finish after 10 s.)
        let (reply, elapsed) = paced(
            addr,
            head("content-length: 10\r\n", &lines, false),
            vec![b"abc".to_vec()],
            Duration::ZERO,
        )
        .await;
        assert_refused(&reply, 408, "body_timeout", &what("stall"));
        assert!(elapsed >= DEADLINE, "{elapsed:?}");
        let (reply, elapsed) = paced(
            addr,
            head("content-length: 10\r\n", &lines, false),
            vec![b"x".to_vec(); 10],
            Duration::from_secs(1),
        )
        .await;
        assert_refused(&reply, 408, "body_timeout", &what("trickle"));
        assert!(
            elapsed >= DEADLINE && elapsed < Duration::from_secs(9),
            "{elapsed:?}"
        );

        // Half-closed mid-body.
        let mut stream = TcpStream::connect(addr).await.unwrap();
        stream
            .write_all(&head("content-length: 100\r\n", &lines, false))
            .await
            .unwrap();
        stream.write_all(b"0123456789").await.unwrap();
        stream.shutdown().await.unwrap();
        let mut out = Vec::new();
        tokio::time::timeout(STEP, stream.read_to_end(&mut out))
            .await
            .unwrap()
            .unwrap();
        assert_refused(
            &parse_replies(&out)[0],
            400,
            "body_read_error",
            &what("half-close"),
        );

        assert_eq!(calls.load(Ordering::SeqCst), 0, "{}", what("handler"));
    }
}

#[tokio::test]
async fn conflicting_and_malformed_framing() {
    let body = br#"{"id":"evt_frame"}"#;
    let len = body.len();
    for alone in [false, true] {
        let (addr, calls) = app(alone).await;
        let lines = signed("msg_frame", body);
        let send = |framing: String, payload: Vec<u8>| {
            let mut request = head(&framing, &lines, true);
            request.extend_from_slice(&payload);
            request
        };
        let refused_by_server = [
            format!("content-length: {len}\r\ncontent-length: {}\r\n", len + 1),
            format!("content-length: {len}, {}\r\n", len + 1),
            "content-length: -1\r\n".to_owned(),
            format!("content-length: +{len}\r\n"),
            format!("content-length: 0x{len:x}\r\n"),
            "transfer-encoding: chunked\r\ntransfer-encoding: identity\r\n".to_owned(),
        ];
        for framing in refused_by_server {
            let what = format!("{framing:?} (verify alone: {alone})");
            check(
                addr,
                &calls,
                &send(framing, body.to_vec()),
                body,
                Expect::RefusedByServer(400),
                &what,
            )
            .await;
        }
        // The same length twice is one length.
        let framing = format!("content-length: {len}\r\ncontent-length: {len}\r\n");
        check(
            addr,
            &calls,
            &send(framing, body.to_vec()),
            body,
            Expect::Accepted,
            "same length twice",
        )
        .await;

        // Chunked with extensions and a trailer: the handler sees the decoded body only.
        let chunked = [
            format!("{:x};ext=1\r\n", 5).into_bytes(),
            body[..5].to_vec(),
            format!("\r\n{:x}\r\n", len - 5).into_bytes(),
            body[5..].to_vec(),
            b"\r\n0\r\nx-trailer: 1\r\n\r\n".to_vec(),
        ]
        .concat();
        check(
            addr,
            &calls,
            &send("transfer-encoding: chunked\r\n".into(), chunked.clone()),
            body,
            Expect::Accepted,
            "chunked with extensions and a trailer",
        )
        .await;

        // Chunked and Content-Length together: whatever the server makes of it, a body
        // signed as one framing can't be read as the other.
        let framing = format!(
            "transfer-encoding: chunked\r\ncontent-length: {}\r\n",
            chunked.len()
        );
        let before = calls.load(Ordering::SeqCst);
        let replies = exchange(addr, &send(framing, chunked.clone())).await;
        match replies[0].status {
            200 => assert_eq!(replies[0].body, body),
            400 => assert_eq!(calls.load(Ordering::SeqCst), before),
            other => panic!("chunked plus length: {other}"),
        }
        let framed_as_length = signed("msg_frame", &chunked[..8]);
        let mut request = head(
            "transfer-encoding: chunked\r\ncontent-length: 8\r\n",
            &framed_as_length,
            true,
        );
        request.extend_from_slice(&chunked);
        let replies = exchange(addr, &request).await;
        assert_ne!(
            replies[0].status, 200,
            "a body read by the wrong framing was accepted"
        );
        assert_ne!(replies[0].status, 500);

        // A chunk size that overflows.
        let request = send(
            "transfer-encoding: chunked\r\n".into(),
            b"ffffffffffffffffffff\r\nx\r\n0\r\n\r\n".to_vec(),
        );
        let replies = exchange(addr, &request).await;
        assert!(
            matches!(replies[0].status, 400 | 413),
            "{}",
            replies[0].status
        );

        // Bytes after a Content-Length body are the next request, verified on their own.
        let mut request = head(&format!("content-length: {len}\r\n"), &lines, false);
        request.extend_from_slice(body);
        request.extend_from_slice(&head("content-length: 2\r\n", &[], true));
        request.extend_from_slice(b"{}");
        let before = calls.load(Ordering::SeqCst);
        let replies = exchange(addr, &request).await;
        assert_eq!(replies.len(), 2, "{replies:?}");
        assert_eq!((replies[0].status, &replies[0].body[..]), (200, &body[..]));
        assert_refused(&replies[1], 401, "missing_header", "smuggled request");
        assert_eq!(calls.load(Ordering::SeqCst), before + 1);
    }
}
