//! What several benches share: the whole stack, and one signed request through it.
#![allow(dead_code)]

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::Full;
use ipnet::IpNet;
use tower::{service_fn, Service, ServiceBuilder, ServiceExt};
use tower_webhook::allowlist::{AllowlistLayer, IpAllowlist};
use tower_webhook::body::BufferBodyLayer;
use tower_webhook::client_ip::ResolveClientIpLayer;
use tower_webhook::rate_limit::{Quota, RateLimitLayer};
use tower_webhook::replay::{MemoryStore, ReplayLayer};
use tower_webhook::scheme::Signer;
use tower_webhook::verify::VerifyLayer;
use tower_webhook::{BufferedBody, Verifier};

/// The secret every bench signs with.
pub const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
/// How far a bench's signed timestamps may be from the clock: longer than any run.
pub const TOLERANCE: Duration = Duration::from_secs(3600);

/// The wall time now, in Unix seconds, to sign requests with.
pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// A current-thread runtime with timers (the body deadline needs them).
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// A Standard Webhooks verifier for [`SECRET`] on the default clock, as users run it (its cost
/// is part of every figure), with a [`TOLERANCE`] of an hour.
pub fn verifier() -> Verifier {
    Verifier::builder(tower_webhook::scheme::Scheme::standard_webhooks())
        .secret(SECRET)
        .tolerance(TOLERANCE)
        .build()
        .unwrap()
}

/// The source address of every bench request; `allowed` must contain it.
pub const CLIENT: [u8; 4] = [192, 0, 2, 10];

/// Client IP, allowlist of `allowed`, a rate limit no bench reaches, buffering, verification,
/// replay in a memory store of `capacity` keys, and a handler that answers 200 at once.
pub fn full_stack(
    verifier: Verifier,
    allowed: Vec<IpNet>,
    capacity: usize,
) -> impl Service<Request<Full<Bytes>>, Response = Response<impl http_body::Body>, Error = Infallible>
{
    let replay = ReplayLayer::builder(MemoryStore::new(capacity))
        .build(&verifier)
        .unwrap();
    let quota = Quota::new(1_000_000_000, Duration::from_secs(1)).unwrap();
    ServiceBuilder::new()
        .layer(ResolveClientIpLayer::new())
        .layer(AllowlistLayer::new(IpAllowlist::new(allowed)))
        .layer(RateLimitLayer::new(quota))
        .layer(BufferBodyLayer::new())
        .layer(VerifyLayer::new(verifier))
        .layer(replay)
        .service(service_fn(|_: Request<BufferedBody>| async {
            Ok::<_, Infallible>(Response::new(Full::new(Bytes::new())))
        }))
}

/// The same stages as [`full_stack`], built by the one-call `WebhookLayer`.
pub fn webhook_stack(
    verifier: Verifier,
    allowed: Vec<IpNet>,
    capacity: usize,
) -> impl Service<Request<Full<Bytes>>, Response = Response<impl http_body::Body>, Error = Infallible>
{
    let layer = tower_webhook::WebhookLayer::builder(verifier)
        .allow(allowed)
        .rate_limit(Quota::new(1_000_000_000, Duration::from_secs(1)).unwrap())
        .replay(MemoryStore::new(capacity))
        .build()
        .unwrap();
    tower::Layer::layer(
        &layer,
        service_fn(|_: Request<BufferedBody>| async {
            Ok::<_, Infallible>(Response::new(Full::new(Bytes::new())))
        }),
    )
}

/// A delivery of `body` as event `id`, signed at `now`, from [`CLIENT`].
pub fn signed_request(signer: &Signer, id: &str, now: u64, body: &Bytes) -> Request<Full<Bytes>> {
    let mut req = Request::post("/webhook")
        .body(Full::new(body.clone()))
        .unwrap();
    *req.headers_mut() = signer.sign(id, now, body).unwrap();
    req.extensions_mut()
        .insert(SocketAddr::from((CLIENT, 40000)));
    req
}

/// Sends `req` through `svc` once it is ready; panics unless the answer is 2xx.
pub fn call<S, B>(
    rt: &tokio::runtime::Runtime,
    svc: &mut S,
    req: Request<Full<Bytes>>,
) -> S::Response
where
    S: Service<Request<Full<Bytes>>, Response = Response<B>, Error = Infallible>,
{
    rt.block_on(async {
        let res = svc.ready().await.unwrap().call(req).await.unwrap();
        assert!(res.status().is_success());
        res
    })
}
