//! A tonic gRPC server (the standard `grpc.health.v1.Health` service) behind the layers that
//! act before any body is read: client IP, allowlist and rate limit.
//!
//! ```sh
//! ALLOW_CIDRS=127.0.0.1/32 RATE_PER_SEC=5 cargo run --example tonic
//! ```
//!
//! Settings: `BIND_ADDR` (default `127.0.0.1:50051`), `ALLOW_CIDRS`, `TRUSTED_PROXIES`,
//! `RATE_PER_SEC`, `RATE_BURST`, as for the demo receiver. Prints `listening on <addr>` once
//! bound. A refused gRPC call is answered as gRPC: `PERMISSION_DENIED` outside the allowlist,
//! `RESOURCE_EXHAUSTED` over the rate (with `retry-after`).

#[path = "support/mod.rs"]
mod support;

use std::convert::Infallible;
use std::net::SocketAddr;

use http::{Extensions, Request, Response};
use tonic::body::Body;
use tonic::transport::server::{TcpConnectInfo, TcpIncoming};
use tower::layer::layer_fn;
use tower::util::BoxCloneService;
use tower::{Layer, Service, ServiceExt};

/// tonic records the peer in `TcpConnectInfo`.
fn tonic_peer(extensions: &Extensions) -> Option<SocketAddr> {
    extensions.get::<TcpConnectInfo>()?.remote_addr()
}

type Grpc = BoxCloneService<Request<Body>, Response<Body>, Infallible>;

/// One type whichever optional layers are on.
fn boxed<S, B>(service: S) -> Grpc
where
    S: Service<Request<Body>, Response = Response<B>, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send + 'static,
    B: http_body::Body<Data = bytes::Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    BoxCloneService::new(service.map_response(|res: Response<B>| res.map(Body::new)))
}

#[tokio::main]
async fn main() {
    let network = support::network().unwrap_or_else(|e| support::exit_with(e));
    let addr: SocketAddr = support::parsed("BIND_ADDR", SocketAddr::from(([127, 0, 0, 1], 50051)))
        .unwrap_or_else(|e| support::exit_with(e));
    let resolve = network.resolve.peer_address(tonic_peer);
    let (allow, rate) = (network.allow, network.rate);
    let layers = layer_fn(move |routes| {
        let service = boxed(routes);
        let service = match &rate {
            Some(rate) => boxed(rate.layer(service)),
            None => service,
        };
        let service = match &allow {
            Some(allow) => boxed(allow.layer(service)),
            None => service,
        };
        boxed(resolve.layer(service))
    });

    let (_reporter, health) = tonic_health::server::health_reporter();
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .unwrap_or_else(|e| support::exit_with(format!("cannot listen on {addr}: {e}")));
    println!("listening on {}", listener.local_addr().expect("bound"));
    tonic::transport::Server::builder()
        .layer(layers)
        .add_service(health)
        .serve_with_incoming(TcpIncoming::from(listener))
        .await
        .unwrap_or_else(|e| support::exit_with(e));
}
