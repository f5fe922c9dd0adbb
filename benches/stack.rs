//! The whole stack in process: client IP, allowlist (1,000 ranges), rate limit, buffering,
//! verification and in-memory replay, through `oneshot` on a ready inner service, at 1 KiB and
//! 64 KiB, against a pre-keyed raw HMAC of the same signed bytes measured in the same run. The
//! difference is the stack's fixed cost per request.
//!
//! Every request is a fresh signed delivery (signed outside the timed part), so replay takes
//! its full path: begin, handler, complete.
//!
//! `cargo bench --bench stack`

use std::convert::Infallible;
use std::hint::black_box;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use hmac::{Hmac, Mac};
use http::{Request, Response};
use http_body_util::Full;
use ipnet::{IpNet, Ipv4Net};
use sha2::Sha256;
use tower::{service_fn, Service, ServiceBuilder, ServiceExt};
use tower_webhook::allowlist::{AllowlistLayer, IpAllowlist};
use tower_webhook::buffer::BufferBodyLayer;
use tower_webhook::client_ip::ResolveClientIpLayer;
use tower_webhook::clock::ManualClock;
use tower_webhook::rate_limit::{Quota, RateLimitLayer};
use tower_webhook::replay::{MemoryStore, ReplayLayer};
use tower_webhook::scheme::{Scheme, Signer};
use tower_webhook::verify::VerifyLayer;
use tower_webhook::{BufferedBody, Verifier};

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const NOW: u64 = 1_700_000_000;

fn stack(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let _guard = rt.enter();
    let scheme = Scheme::standard_webhooks();
    let verifier = Verifier::builder(scheme.clone())
        .secret(SECRET)
        .clock(ManualClock::new(NOW))
        .build()
        .unwrap();
    let mut ranges: Vec<IpNet> = (0..999u32)
        .map(|i| IpNet::V4(Ipv4Net::new(Ipv4Addr::from(0x0a00_0000 + (i << 8)), 24).unwrap()))
        .collect();
    ranges.push("192.0.2.0/24".parse().unwrap());
    let replay = ReplayLayer::builder(MemoryStore::new(50_000_000), &verifier)
        .build()
        .unwrap();
    let quota = Quota::new(1_000_000_000, Duration::from_secs(1)).unwrap();
    let mut svc = ServiceBuilder::new()
        .layer(ResolveClientIpLayer::new())
        .layer(AllowlistLayer::new(IpAllowlist::new(ranges)))
        .layer(RateLimitLayer::new(quota))
        .layer(BufferBodyLayer::new())
        .layer(VerifyLayer::new(verifier))
        .layer(replay)
        .service(service_fn(|_: Request<BufferedBody>| async {
            Ok::<_, Infallible>(Response::new(Full::new(Bytes::new())))
        }));
    let signer = Signer::new(&scheme, SECRET).unwrap();
    let key = Hmac::<Sha256>::new_from_slice(b"0123456789abcdef0123456789abcdef").unwrap();

    for size in [1024usize, 64 * 1024] {
        let body = Bytes::from(vec![b'x'; size]);
        let mut group = c.benchmark_group(format!("stack/{size}"));
        group.throughput(Throughput::Bytes(size as u64));
        group.bench_function("raw_hmac", |b| {
            b.iter(|| {
                let mut mac = key.clone();
                mac.update(b"evt_000000000000.1700000000.");
                mac.update(black_box(&body));
                black_box(mac.finalize().into_bytes())
            });
        });
        let mut n = 0u64;
        group.bench_function("full_stack", |b| {
            b.iter_batched(
                || {
                    n += 1;
                    let headers = signer.sign(&format!("evt_{n:012}"), NOW, &body).unwrap();
                    let mut req = Request::post("/webhook")
                        .body(Full::new(body.clone()))
                        .unwrap();
                    *req.headers_mut() = headers;
                    req.extensions_mut()
                        .insert(SocketAddr::from(([192, 0, 2, 10], 40000)));
                    req
                },
                |req| {
                    rt.block_on(async {
                        let res = ServiceExt::<Request<Full<Bytes>>>::ready(&mut svc)
                            .await
                            .unwrap()
                            .call(req)
                            .await
                            .unwrap();
                        assert!(res.status().is_success());
                        black_box(res)
                    })
                },
                BatchSize::SmallInput,
            );
        });
        group.finish();
    }
}

criterion_group!(benches, stack);
criterion_main!(benches);
