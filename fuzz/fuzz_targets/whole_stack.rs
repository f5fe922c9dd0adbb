//! Arbitrary requests through the whole stack (client IP, allowlist, rate limit, buffering,
//! verification, replay), as separate layers or as the one-call stack with every guard on
//! (HTTPS only, penalty box, content type, memory budget): every answer is one of the
//! documented statuses, never a panic, never a 500, and the handler only sees verified
//! requests.
#![no_main]

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::OnceLock;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderName, HeaderValue, Request, Response};
use http_body_util::Full;
use libfuzzer_sys::fuzz_target;
use tower::util::BoxCloneSyncService;
use tower::Layer;
use tower::{service_fn, ServiceBuilder, ServiceExt};
use tower_webhook::allowlist::{AllowlistLayer, IpAllowlist};
use tower_webhook::body::{BodyBudget, BufferBodyLayer};
use tower_webhook::client_ip::ResolveClientIpLayer;
use tower_webhook::content_type::MediaTypes;
use tower_webhook::penalty::PenaltyBox;
use tower_webhook::rate_limit::{Quota, RateLimitLayer};
use tower_webhook::replay::{MemoryStore, ReplayLayer};
use tower_webhook::scheme::Scheme;
use tower_webhook::verify::VerifyLayer;
use tower_webhook::{BufferedBody, Verified, Verifier, WebhookLayer};

type Svc = BoxCloneSyncService<Request<Full<Bytes>>, u16, Infallible>;

/// The handler: only verified requests reach it.
async fn handler(req: Request<BufferedBody>) -> Result<Response<Full<Bytes>>, Infallible> {
    assert!(req.extensions().get::<Verified>().is_some());
    Ok(Response::new(Full::new(Bytes::new())))
}

/// The one-call stack with every guard on.
fn guarded(verifier: Verifier) -> Svc {
    let layer = WebhookLayer::builder(verifier)
        .trusted_proxies(tower_webhook::parse_cidrs("10.0.0.0/8").unwrap())
        .require_https(true)
        .penalty(PenaltyBox::new(3, Duration::from_secs(60)).unwrap())
        .content_types(MediaTypes::new(["application/json"]).unwrap())
        .body_budget(BodyBudget::new(16 * 1024))
        .max_body(4096)
        .replay(MemoryStore::new(10_000))
        .build()
        .unwrap();
    let svc = layer.layer(service_fn(handler));
    let svc = ServiceExt::<Request<Full<Bytes>>>::map_response(svc, |res| res.status().as_u16());
    BoxCloneSyncService::new(svc)
}

fn stack() -> &'static (tokio::runtime::Runtime, Svc, Svc) {
    static STACK: OnceLock<(tokio::runtime::Runtime, Svc, Svc)> = OnceLock::new();
    STACK.get_or_init(|| {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        let _guard = runtime.enter();
        let verifier = Verifier::builder(Scheme::standard_webhooks())
            .secret("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
            .build()
            .unwrap();
        let replay = ReplayLayer::builder(MemoryStore::new(10_000))
            .build(&verifier)
            .unwrap();
        let svc = ServiceBuilder::new()
            .layer(
                ResolveClientIpLayer::new()
                    .trusted_proxies(tower_webhook::parse_cidrs("10.0.0.0/8").unwrap()),
            )
            .layer(AllowlistLayer::new(IpAllowlist::new(
                tower_webhook::parse_cidrs("0.0.0.0/0, ::/0").unwrap(),
            )))
            .layer(RateLimitLayer::new(
                Quota::new(1_000_000, Duration::from_secs(1)).unwrap(),
            ))
            .layer(BufferBodyLayer::new().max_bytes(4096))
            .layer(VerifyLayer::new(verifier.clone()))
            .layer(replay)
            .service(service_fn(handler));
        let svc =
            ServiceExt::<Request<Full<Bytes>>>::map_response(svc, |res| res.status().as_u16());
        let guarded = guarded(verifier);
        (runtime, BoxCloneSyncService::new(svc), guarded)
    })
}

const NAMES: [&str; 10] = [
    "webhook-id",
    "webhook-timestamp",
    "webhook-signature",
    "svix-id",
    "svix-signature",
    "x-forwarded-for",
    "content-length",
    "forwarded",
    "content-type",
    "x-forwarded-proto",
];

fuzz_target!(|data: &[u8]| {
    let (head, body) = match data.windows(2).position(|w| w == [1, 1]) {
        Some(i) => (&data[..i], &data[i + 2..]),
        None => (data, &b""[..]),
    };
    let mut req = Request::post("/webhook")
        .body(Full::new(Bytes::copy_from_slice(body)))
        .unwrap();
    for line in head.split(|&b| b == 0) {
        let Some((&index, value)) = line.split_first() else {
            continue;
        };
        if let Ok(value) = HeaderValue::from_bytes(value) {
            req.headers_mut().append(
                HeaderName::from_static(NAMES[usize::from(index) % NAMES.len()]),
                value,
            );
        }
    }
    let peer = if head.first().is_some_and(|b| b & 1 == 1) {
        [10, 0, 0, 1]
    } else {
        [192, 0, 2, 1]
    };
    req.extensions_mut().insert(SocketAddr::from((peer, 4000)));
    let (runtime, layers, guarded) = stack();
    let svc = if head.first().is_some_and(|b| b & 2 == 2) {
        guarded
    } else {
        layers
    };
    let status = runtime.block_on(svc.clone().oneshot(req)).unwrap();
    assert!(
        matches!(
            status,
            200 | 400 | 401 | 403 | 408 | 409 | 413 | 415 | 429 | 503
        ),
        "unexpected status {status}"
    );
});
