//! The same layers on a plain hyper 1 server, without axum.
//!
//! ```sh
//! cargo run --example hyper
//! ```
//!
//! Reads the receiver's settings (`BIND_ADDR`, default `127.0.0.1:3000`; `WEBHOOK_SCHEME`;
//! `WEBHOOK_SECRET`; `MAX_BODY_BYTES`; `TOLERANCE_SECS`; `ALLOW_CIDRS`; `TRUSTED_PROXIES`;
//! `RATE_PER_SEC`; `RATE_BURST`) and prints the same lines:
//! `listening on <addr>`, then `accepted id=<id or -> bytes=<n>` per accepted request.
//! Accepts `POST` on any path.

#[path = "support/mod.rs"]
mod support;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use tower::util::BoxCloneService;
use tower::{Layer, Service, ServiceBuilder, ServiceExt};
use tower_webhook::body::BufferBodyLayer;
use tower_webhook::verify::{Verifier, VerifyLayer};
use tower_webhook::{BufferedBody, Verified};

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
    println!("accepted id={id} bytes={}", req.body().bytes().len());
    Ok(Response::new(Full::new(Bytes::from_static(
        b"{\"status\":\"accepted\"}",
    ))))
}

type Boxed =
    BoxCloneService<Request<Incoming>, Response<UnsyncBoxBody<Bytes, Infallible>>, Infallible>;

fn boxed<S, B>(service: S) -> Boxed
where
    S: Service<Request<Incoming>, Response = Response<B>, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    B: http_body::Body<Data = Bytes, Error = Infallible> + Send + 'static,
{
    BoxCloneService::new(service.map_response(|res: Response<B>| res.map(UnsyncBoxBody::new)))
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
    let settings = (|| -> Result<_, support::Error> {
        let verifier = Verifier::builder(support::scheme()?)
            .secrets(&secrets)
            .tolerance(Duration::from_secs(support::parsed("TOLERANCE_SECS", 300)?))
            .build()
            .map_err(|e| format!("WEBHOOK_SECRET: {e}"))?;
        let max_body: usize = support::parsed("MAX_BODY_BYTES", 1024 * 1024)?;
        let addr: SocketAddr =
            support::parsed("BIND_ADDR", SocketAddr::from(([127, 0, 0, 1], 3000)))?;
        Ok((verifier, max_body, addr))
    })();
    let (verifier, max_body, addr) = settings.unwrap_or_else(|e| support::exit_with(e));

    let network = support::network().unwrap_or_else(|e| support::exit_with(e));
    let service = boxed(
        ServiceBuilder::new()
            .layer(BufferBodyLayer::new().max_bytes(max_body))
            .layer(VerifyLayer::new(verifier))
            .service_fn(handle),
    );
    // The optional layers change the service's type; boxing keeps one type either way.
    let service = match network.rate {
        Some(rate) => boxed(rate.layer(service)),
        None => service,
    };
    let service = match network.allow {
        Some(allow) => boxed(allow.layer(service)),
        None => service,
    };
    let service = boxed(network.resolve.layer(service));

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
        // The peer address, for the client-IP layer.
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
