//! The end-to-end benchmark's baseline (`benches/e2e.sh`): the same axum server as the demo
//! receiver, whose handler only reads the body and prints the same line, with none of this
//! crate's layers. Not a way to receive webhooks.
//!
//! ```sh
//! BIND_ADDR=127.0.0.1:3001 cargo run --release --example bare
//! ```

#[path = "support/mod.rs"]
mod support;

use std::net::SocketAddr;

use axum::body::Bytes;
use axum::http::StatusCode;
use axum::routing::post;
use axum::Router;

async fn read(body: Bytes) -> (StatusCode, &'static str) {
    println!("accepted id=- bytes={}", body.len());
    (StatusCode::OK, "{\"status\":\"accepted\"}")
}

#[tokio::main]
async fn main() {
    let addr: SocketAddr = support::parsed("BIND_ADDR", SocketAddr::from(([127, 0, 0, 1], 3001)))
        .unwrap_or_else(|e| support::exit_with(e));
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .unwrap_or_else(|e| support::exit_with(format!("cannot listen on {addr}: {e}")));
    println!("listening on {}", listener.local_addr().expect("bound"));
    axum::serve(listener, Router::new().route("/webhook", post(read)))
        .await
        .unwrap_or_else(|e| support::exit_with(e));
}
