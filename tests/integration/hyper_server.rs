//! The layers on a plain hyper 1 server (no axum), over 127.0.0.1.

use crate::common;

use std::convert::Infallible;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use common::{now, post};
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use tower::ServiceBuilder;
use tower_webhook::body::BufferBodyLayer;
use tower_webhook::scheme::Scheme;
use tower_webhook::verify::VerifyLayer;
use tower_webhook::{BufferedBody, RawBody, Verified, Verifier};

const SECRET: &str = "shpss_0123456789abcdef";

#[tokio::test]
async fn plain_hyper_server() {
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = calls.clone();
    let verifier = Verifier::builder(Scheme::shopify())
        .secret(SECRET)
        .build()
        .unwrap();
    let service = ServiceBuilder::new()
        .layer(BufferBodyLayer::new().max_bytes(64))
        .layer(VerifyLayer::new(verifier))
        .service_fn(move |req: Request<BufferedBody>| {
            let counter = counter.clone();
            async move {
                counter.fetch_add(1, Ordering::SeqCst);
                let verified = req.extensions().get::<Verified>().unwrap();
                let raw = req.extensions().get::<RawBody>().unwrap();
                assert_eq!(raw.bytes(), &req.body().bytes());
                let line = format!("{} {}", verified.id().unwrap_or("-"), raw.len());
                Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(line))))
            }
        });

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            let service = TowerToHyperService::new(service.clone());
            tokio::spawn(
                hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service),
            );
        }
    });

    let body = br#"{"id":820982911946154500,"email":"jon@example.com"}"#;
    let headers = common::sign(
        &Scheme::shopify(),
        SECRET,
        "b54557e4-bdd9-4b37-8a5f-bf7d70bcd043",
        now(),
        body,
    );

    let reply = post(addr, "/orders", &headers, &body[..]).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(
        reply.body,
        format!("b54557e4-bdd9-4b37-8a5f-bf7d70bcd043 {}", body.len())
    );

    let reply = post(addr, "/orders", &headers, &b"{}"[..]).await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    assert_eq!(reply.body, r#"{"error":"signature_mismatch"}"#);

    let reply = post(addr, "/orders", &headers, vec![b'x'; 65]).await;
    assert_eq!(reply.status, StatusCode::PAYLOAD_TOO_LARGE);

    let reply = post(addr, "/orders", &http::HeaderMap::new(), &body[..]).await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    assert_eq!(reply.body, r#"{"error":"missing_header"}"#);

    assert_eq!(calls.load(Ordering::SeqCst), 1);
}
