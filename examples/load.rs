//! A small load generator for the end-to-end benchmark (`benches/e2e.sh`): keep-alive
//! connections to 127.0.0.1, every request a fresh signed delivery (an event id unique to this
//! run, so the replay layer takes its full path even against a server that saw earlier runs),
//! for a bounded time.
//!
//! ```sh
//! cargo run --release --example load -- http://127.0.0.1:3000/webhook 10 32 1024
//! #                                        url                          secs conns body bytes
//! ```
//!
//! Signs with `WEBHOOK_SECRET` (default: the demo's development secret) as Standard Webhooks.
//! Prints one line: `requests=<n> rps=<n> p50_us=<n> p90_us=<n> p99_us=<n> p999_us=<n> non_2xx=<n>
//! duplicates=<n>`, where `duplicates` counts answers the replay layer gave as duplicates
//! (200 `{"status":"duplicate"}`): a run that measures the full path has none.

#[path = "support/mod.rs"]
mod support;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::{Request, Uri};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use tower_webhook::scheme::{Scheme, Signer};

fn arg<T: std::str::FromStr>(n: usize, default: T) -> T {
    std::env::args()
        .nth(n)
        .and_then(|a| a.parse().ok())
        .unwrap_or(default)
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let url: Uri = arg(1, "http://127.0.0.1:3000/webhook".to_owned())
        .parse()
        .expect("url");
    let secs: u64 = arg(2, 10);
    let conns: usize = arg(3, 32);
    let size: usize = arg(4, 1024);
    let authority = url.authority().expect("url with host:port").to_string();
    if !matches!(
        url.host(),
        Some("127.0.0.1" | "localhost" | "::1" | "[::1]")
    ) {
        support::exit_with("load only targets loopback");
    }
    let secret = support::secrets()
        .and_then(|s| s.into_iter().next())
        .unwrap_or_else(|| support::DEV_SECRET.to_owned());
    let signer = Arc::new(Signer::new(&Scheme::standard_webhooks(), &secret).expect("secret"));
    let body = Bytes::from(vec![b'x'; size]);
    let deadline = Instant::now() + Duration::from_secs(secs);
    let counter = Arc::new(AtomicU64::new(0));
    let non_2xx = Arc::new(AtomicU64::new(0));
    let duplicates = Arc::new(AtomicU64::new(0));
    // Ids of this run never repeat those of an earlier run against the same server.
    let run = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let started = Instant::now();
    let workers: Vec<_> = (0..conns)
        .map(|_| {
            let (signer, body, counter, non_2xx, duplicates) = (
                signer.clone(),
                body.clone(),
                counter.clone(),
                non_2xx.clone(),
                duplicates.clone(),
            );
            let (authority, path) = (authority.clone(), url.path().to_owned());
            tokio::spawn(async move {
                let stream = tokio::net::TcpStream::connect(&authority)
                    .await
                    .expect("connect");
                stream.set_nodelay(true).ok();
                let (mut sender, conn) =
                    hyper::client::conn::http1::handshake(TokioIo::new(stream))
                        .await
                        .expect("handshake");
                tokio::spawn(conn);
                let mut latencies = Vec::with_capacity(1 << 16);
                while Instant::now() < deadline {
                    let n = counter.fetch_add(1, Ordering::Relaxed);
                    let now = SystemTime::now()
                        .duration_since(UNIX_EPOCH)
                        .unwrap()
                        .as_secs();
                    let mut req = Request::post(path.as_str())
                        .header(http::header::HOST, authority.as_str())
                        .body(Full::new(body.clone()))
                        .unwrap();
                    *req.headers_mut() = signer
                        .sign(&format!("evt_load_{run:x}_{n:012}"), now, &body)
                        .unwrap();
                    req.headers_mut()
                        .insert(http::header::HOST, authority.parse().unwrap());
                    let sent = Instant::now();
                    let res = sender.send_request(req).await.expect("request");
                    let ok = res.status().is_success();
                    let answer = res.into_body().collect().await.expect("body").to_bytes();
                    if answer.as_ref() == br#"{"status":"duplicate"}"# {
                        duplicates.fetch_add(1, Ordering::Relaxed);
                    }
                    latencies.push(sent.elapsed().as_micros() as u32);
                    if !ok {
                        non_2xx.fetch_add(1, Ordering::Relaxed);
                    }
                }
                latencies
            })
        })
        .collect();
    let mut all = Vec::new();
    for worker in workers {
        all.extend(worker.await.expect("worker"));
    }
    let elapsed = started.elapsed().as_secs_f64();
    all.sort_unstable();
    let pct = |p: f64| {
        all.get(((all.len() as f64 * p) as usize).min(all.len().saturating_sub(1)))
            .copied()
            .unwrap_or(0)
    };
    println!(
        "requests={} rps={:.0} p50_us={} p90_us={} p99_us={} p999_us={} non_2xx={} duplicates={}",
        all.len(),
        all.len() as f64 / elapsed,
        pct(0.50),
        pct(0.90),
        pct(0.99),
        pct(0.999),
        non_2xx.load(Ordering::Relaxed),
        duplicates.load(Ordering::Relaxed)
    );
}
