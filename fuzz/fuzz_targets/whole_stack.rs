//! Arbitrary requests through the whole stack (client IP, allowlist, rate limit, buffering,
//! verification, replay): every answer is one of the documented statuses, never a panic, never
//! a 500, and the handler only sees verified requests.
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
use tower::{service_fn, ServiceBuilder, ServiceExt};
use tower_webhook::allowlist::{AllowlistLayer, IpAllowlist};
use tower_webhook::body::BufferBodyLayer;
use tower_webhook::client_ip::ResolveClientIpLayer;
use tower_webhook::rate_limit::{Quota, RateLimitLayer};
use tower_webhook::replay::{MemoryStore, ReplayLayer};
use tower_webhook::scheme::Scheme;
use tower_webhook::verify::VerifyLayer;
use tower_webhook::{BufferedBody, Verified, Verifier};

type Svc = BoxCloneSyncService<Request<Full<Bytes>>, u16, Infallible>;

fn stack() -> &'static (tokio::runtime::Runtime, Svc) {
    static STACK: OnceLock<(tokio::runtime::Runtime, Svc)> = OnceLock::new();
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
            .layer(VerifyLayer::new(verifier))
            .layer(replay)
            .service(service_fn(|req: Request<BufferedBody>| async move {
                assert!(req.extensions().get::<Verified>().is_some());
                Ok::<_, Infallible>(Response::new(Full::new(Bytes::new())))
            }));
        let svc =
            ServiceExt::<Request<Full<Bytes>>>::map_response(svc, |res| res.status().as_u16());
        (runtime, BoxCloneSyncService::new(svc))
    })
}

const NAMES: [&str; 9] = [
    "webhook-id",
    "webhook-timestamp",
    "webhook-signature",
    "svix-id",
    "svix-signature",
    "x-forwarded-for",
    "content-length",
    "forwarded",
    "content-type",
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
    let (runtime, svc) = stack();
    let status = runtime.block_on(svc.clone().oneshot(req)).unwrap();
    assert!(
        matches!(status, 200 | 400 | 401 | 403 | 408 | 409 | 413 | 429 | 503),
        "unexpected status {status}"
    );
});
