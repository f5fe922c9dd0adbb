//! The layers before the body, through `oneshot` and a real axum server on 127.0.0.1: an
//! allowlist swapped while serving, limiter state shared by every clone, and `ConnectInfo` as
//! the peer address.

use crate::common;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;

use http::{Request, Response, StatusCode};
use tower::{service_fn, Layer, ServiceExt};
use tower_webhook::allowlist::{AllowlistLayer, IpAllowlist};
use tower_webhook::client_ip::{ClientIp, ResolveClientIpLayer};
use tower_webhook::rate_limit::{Quota, RateLimitLayer};
use tower_webhook::{parse_cidrs, Rejection};

fn from(ip: [u8; 4]) -> Request<()> {
    let mut req = Request::new(());
    req.extensions_mut().insert(SocketAddr::from((ip, 1234)));
    req
}

fn ok() -> impl tower::Service<Request<()>, Response = Response<String>, Error = Infallible> + Clone
{
    service_fn(|_: Request<()>| async { Ok::<_, Infallible>(Response::new(String::new())) })
}

/// The status a service answers to a request from `ip`.
async fn status<S>(svc: S, ip: [u8; 4]) -> StatusCode
where
    S: tower::Service<
        Request<()>,
        Response = Response<tower_webhook::ResponseBody<String>>,
        Error = Infallible,
    >,
{
    svc.oneshot(from(ip)).await.unwrap().status()
}

#[tokio::test]
async fn the_allowlist_is_swapped_while_serving() {
    let list = IpAllowlist::new(parse_cidrs("192.0.2.0/24").unwrap());
    let svc = AllowlistLayer::new(list.clone()).layer(ok());
    assert_eq!(
        status(svc.clone(), [198, 51, 100, 7]).await,
        StatusCode::FORBIDDEN
    );
    list.replace(parse_cidrs("198.51.100.0/24").unwrap());
    assert_eq!(status(svc.clone(), [198, 51, 100, 7]).await, StatusCode::OK);
    assert_eq!(
        status(svc.clone(), [192, 0, 2, 7]).await,
        StatusCode::FORBIDDEN
    );
    // No address at all: fail closed.
    let res = svc.oneshot(Request::new(())).await.unwrap();
    assert_eq!(
        res.extensions().get::<Rejection>(),
        Some(&Rejection::Forbidden)
    );
}

#[tokio::test(start_paused = true)]
async fn every_clone_counts_against_the_same_buckets() {
    let layer = RateLimitLayer::new(Quota::new(2, Duration::from_secs(60)).unwrap());
    let a = layer.layer(ok());
    let b = a.clone();
    let c = layer.layer(ok());
    assert_eq!(status(a, [192, 0, 2, 1]).await, StatusCode::OK);
    assert_eq!(status(b.clone(), [192, 0, 2, 1]).await, StatusCode::OK);
    let res = c.clone().oneshot(from([192, 0, 2, 1])).await.unwrap();
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(res.headers()["retry-after"], "30");
    tokio::time::advance(Duration::from_secs(30)).await;
    assert_eq!(status(c, [192, 0, 2, 1]).await, StatusCode::OK);
    assert_eq!(
        status(b, [192, 0, 2, 1]).await,
        StatusCode::TOO_MANY_REQUESTS
    );
}

#[tokio::test]
async fn axum_connect_info_is_the_peer_address() {
    let router = axum::Router::new()
        .route(
            "/ip",
            axum::routing::post(|ip: ClientIp| async move { ip.to_string() }),
        )
        .layer(AllowlistLayer::new(IpAllowlist::new(
            parse_cidrs("127.0.0.1").unwrap(),
        )))
        .layer(ResolveClientIpLayer::new());
    let addr = common::serve_with_peer("127.0.0.1", router).await;
    let reply = common::post(addr, "/ip", &http::HeaderMap::new(), "").await;
    assert_eq!(
        (reply.status, reply.body.as_str()),
        (StatusCode::OK, "127.0.0.1")
    );
}
