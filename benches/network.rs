//! The layers that act before the body: allowlist lookups with 10, 1,000 and 100,000 ranges,
//! and a rate-limiter check with one key and with 1M distinct keys, through the real services
//! (`oneshot` on a ready inner service), against the same call with no layer in the same run.
//!
//! `cargo bench --bench network`

use std::convert::Infallible;
use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use http::{Request, Response};
use ipnet::{IpNet, Ipv4Net};
use tower::{service_fn, Layer, Service, ServiceExt};
use tower_webhook::allowlist::{AllowlistLayer, IpAllowlist};
use tower_webhook::rate_limit::{Quota, RateLimitLayer};

/// `n` disjoint /24 ranges spread over the IPv4 space.
fn ranges(n: u32) -> Vec<IpNet> {
    let step = (u32::MAX / n) & !0xff;
    (0..n)
        .map(|i| IpNet::V4(Ipv4Net::new(Ipv4Addr::from(i * step), 24).unwrap()))
        .collect()
}

fn request(ip: IpAddr) -> Request<()> {
    let mut req = Request::new(());
    req.extensions_mut().insert(SocketAddr::new(ip, 40000));
    req
}

fn call<S>(rt: &tokio::runtime::Runtime, svc: &mut S, req: Request<()>) -> S::Response
where
    S: Service<Request<()>, Error = Infallible>,
{
    rt.block_on(async {
        let ready = svc.ready().await.unwrap();
        ready.call(req).await.unwrap()
    })
}

fn network(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let inner = service_fn(|_: Request<()>| async { Ok::<_, Infallible>(Response::new(())) });
    let mut group = c.benchmark_group("network");

    let mut bare = inner;
    group.bench_function("baseline_no_layer", |b| {
        b.iter(|| black_box(call(&rt, &mut bare, request(IpAddr::from([10, 0, 0, 1])))));
    });

    for n in [10u32, 1_000, 100_000] {
        let list = IpAllowlist::new(ranges(n));
        let mut svc = AllowlistLayer::new(list.clone()).layer(inner);
        // Inside the last range, and outside every range.
        let step = (u32::MAX / n) & !0xff;
        let inside = IpAddr::from(Ipv4Addr::from((n - 1) * step + 7));
        let outside = IpAddr::from(Ipv4Addr::from(step / 2 + 7));
        assert!(list.contains(inside) && !list.contains(outside));
        group.bench_with_input(
            BenchmarkId::new("allowlist_allowed", n),
            &inside,
            |b, ip| {
                b.iter(|| black_box(call(&rt, &mut svc, request(*ip))));
            },
        );
        group.bench_with_input(
            BenchmarkId::new("allowlist_refused", n),
            &outside,
            |b, ip| {
                b.iter(|| black_box(call(&rt, &mut svc, request(*ip))));
            },
        );
    }

    let quota = Quota::new(1_000_000_000, Duration::from_secs(1)).unwrap();
    let mut one = RateLimitLayer::new(quota).layer(inner);
    group.bench_function("rate_limit_one_key", |b| {
        b.iter(|| black_box(call(&rt, &mut one, request(IpAddr::from([192, 0, 2, 1])))));
    });

    // 1M distinct clients already tracked (a slow quota keeps them all live), then checks
    // spread over them.
    let layer = RateLimitLayer::new(
        Quota::new(1, Duration::from_secs(3600))
            .unwrap()
            .burst(1_000_000)
            .unwrap(),
    );
    let mut many = layer.layer(inner);
    for i in 0..1_000_000u32 {
        call(
            &rt,
            &mut many,
            request(IpAddr::from(Ipv4Addr::from(0x0b00_0000 + i))),
        );
    }
    println!("rate limiter: {} keys tracked", layer.keys());
    let mut i = 0u32;
    group.bench_function("rate_limit_1M_keys", |b| {
        b.iter(|| {
            i = (i + 7919) % 1_000_000;
            black_box(call(
                &rt,
                &mut many,
                request(IpAddr::from(Ipv4Addr::from(0x0b00_0000 + i))),
            ))
        });
    });
    group.finish();
}

criterion_group!(benches, network);
criterion_main!(benches);
