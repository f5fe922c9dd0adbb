//! The demo receiver: an axum server that accepts signed webhooks on `POST /webhook`.
//!
//! ```sh
//! cargo run --example receiver
//! ```
//!
//! Settings (environment only):
//!
//! | variable | default | meaning |
//! |---|---|---|
//! | `BIND_ADDR` | `127.0.0.1:3000` | address to listen on (port 0 picks a free port) |
//! | `WEBHOOK_SCHEME` | `standard` | `standard`, `stripe`, `github`, `slack` or `shopify` |
//! | `WEBHOOK_SECRET` | a development secret, printed at start | one secret, or several separated by commas |
//! | `MAX_BODY_BYTES` | `1048576` | largest body accepted (413 above) |
//! | `TOLERANCE_SECS` | `300` | how far the signed timestamp may be from now |
//!
//! Standard output carries `listening on <addr>` once bound, then exactly one line per request
//! that reached the handler: `accepted id=<event id or -> bytes=<body length>`. Rejected
//! requests print nothing there; each is a `tracing` event on standard error.

#[path = "support/mod.rs"]
mod support;

use std::net::SocketAddr;
use std::time::Duration;

use axum::http::StatusCode;
use axum::routing::post;
use axum::{Extension, Router};
use tower::ServiceBuilder;
use tower_webhook::buffer::BufferBodyLayer;
use tower_webhook::verify::{Verifier, VerifyLayer};
use tower_webhook::{RawBody, Verified};

/// `Extension` is axum's own extractor; with this crate's `axum` feature, `Verified` and
/// `RawBody` are extractors by themselves too.
async fn accept(
    Extension(verified): Extension<Verified>,
    Extension(body): Extension<RawBody>,
) -> (StatusCode, &'static str) {
    println!(
        "accepted id={} bytes={}",
        verified.id().unwrap_or("-"),
        body.len()
    );
    (StatusCode::OK, "{\"status\":\"accepted\"}")
}

fn app() -> Result<Router, support::Error> {
    let scheme = support::scheme()?;
    let secrets = support::secrets().unwrap_or_else(|| {
        eprintln!(
            "WEBHOOK_SECRET unset: using the development secret {}",
            support::DEV_SECRET
        );
        vec![support::DEV_SECRET.to_owned()]
    });
    let max_body: usize = support::parsed("MAX_BODY_BYTES", 1024 * 1024)?;
    let tolerance: u64 = support::parsed("TOLERANCE_SECS", 300)?;
    let verifier = Verifier::builder(scheme)
        .secrets(&secrets)
        .tolerance(Duration::from_secs(tolerance))
        .build()
        .map_err(|e| format!("WEBHOOK_SECRET: {e}"))?;
    Ok(Router::new().route("/webhook", post(accept)).layer(
        ServiceBuilder::new()
            .layer(BufferBodyLayer::new().max_bytes(max_body))
            .layer(VerifyLayer::new(verifier)),
    ))
}

#[tokio::main]
async fn main() {
    tracing_subscriber_init();
    let app = app().unwrap_or_else(|e| support::exit_with(e));
    let addr: SocketAddr = support::parsed("BIND_ADDR", SocketAddr::from(([127, 0, 0, 1], 3000)))
        .unwrap_or_else(|e| support::exit_with(e));
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .unwrap_or_else(|e| support::exit_with(format!("cannot listen on {addr}: {e}")));
    let bound = listener.local_addr().expect("bound socket has an address");
    println!("listening on {bound}");
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .await
    .unwrap_or_else(|e| support::exit_with(e));
}

/// Rejections are `tracing` events; show them on standard error.
fn tracing_subscriber_init() {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_target(false)
        .init();
}
