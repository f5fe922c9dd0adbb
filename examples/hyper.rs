//! The one-call stack on a plain hyper 1 server, without axum.
//!
//! ```sh
//! cargo run --example hyper
//! ```
//!
//! Reads the receiver's settings (`BIND_ADDR`, default `127.0.0.1:3000`; `WEBHOOK_SCHEME`;
//! `WEBHOOK_SECRET`; `MAX_BODY_BYTES`; `TOLERANCE_SECS`; `ALLOW_CIDRS`; `TRUSTED_PROXIES`;
//! `RATE_PER_SEC`; `RATE_BURST`) and prints the same lines: `listening on <addr>`, then
//! `accepted id=<id or -> bytes=<n> type=<type or -> path=<request path>` per accepted request. Accepts `POST`
//! on any path; no replay window.

#[path = "support/mod.rs"]
mod support;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use tower::{Layer, ServiceExt};
use tower_webhook::verify::Verifier;
use tower_webhook::{BufferedBody, Verified, WebhookLayer};

async fn handle(req: Request<BufferedBody>) -> Result<Response<Full<Bytes>>, Infallible> {
    if req.method() != Method::POST {
        let mut res = Response::new(Full::new(Bytes::new()));
        *res.status_mut() = StatusCode::METHOD_NOT_ALLOWED;
        return Ok(res);
    }
    let id = req
        .extensions()
        .get::<Verified>()
        .and_then(Verified::id)
        .unwrap_or("-");
    let event_type = req
        .extensions()
        .get::<Verified>()
        .and_then(Verified::event_type)
        .unwrap_or("-");
    let (bytes, path) = (req.body().bytes().len(), req.uri().path());
    println!("accepted id={id} bytes={bytes} type={event_type} path={path}");
    Ok(Response::new(Full::new(Bytes::from_static(
        b"{\"status\":\"accepted\"}",
    ))))
}

/// The stack from the receiver's settings.
fn stack(secrets: &[String]) -> Result<(WebhookLayer, SocketAddr), support::Error> {
    let verifier = Verifier::builder(support::scheme()?)
        .secrets(secrets)
        .tolerance(Duration::from_secs(support::parsed("TOLERANCE_SECS", 300)?))
        .build()
        .map_err(|e| format!("WEBHOOK_SECRET: {e}"))?;
    let max_body: usize = support::parsed("MAX_BODY_BYTES", 1024 * 1024)?;
    let addr = support::parsed("BIND_ADDR", SocketAddr::from(([127, 0, 0, 1], 3000)))?;
    let network = support::network()?;
    let mut builder = WebhookLayer::builder(verifier)
        .trusted_proxies(network.trusted)
        .max_body(max_body);
    if !network.allow_cidrs.is_empty() {
        builder = builder.allow(network.allow_cidrs);
    }
    if let Some(quota) = network.quota {
        builder = builder.rate_limit(quota);
    }
    let layer = builder.build().map_err(|e| e.to_string())?;
    Ok((layer, addr))
}

#[tokio::main]
async fn main() {
    let secrets = support::secrets().unwrap_or_else(|| {
        eprintln!(
            "WEBHOOK_SECRET unset: using the development secret {}",
            support::DEV_SECRET
        );
        vec![support::DEV_SECRET.to_owned()]
    });
    let (layer, addr) = stack(&secrets).unwrap_or_else(|e| support::exit_with(e));
    let service = layer.layer(tower::service_fn(handle));

    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .unwrap_or_else(|e| support::exit_with(format!("cannot listen on {addr}: {e}")));
    println!("listening on {}", listener.local_addr().expect("bound"));
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                // Out of file descriptors and the like: wait instead of spinning.
                eprintln!("accept: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        // The peer address, for the client-IP stage.
        let service = TowerToHyperService::new(service.clone().map_request(
            move |mut req: Request<Incoming>| {
                req.extensions_mut().insert(peer);
                req
            },
        ));
        tokio::spawn(async move {
            // A connection error is the client's business; the server keeps serving.
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}
