//! The whole stack in process: client IP, allowlist (1,000 ranges), rate limit, buffering,
//! verification and in-memory replay, through `oneshot` on a ready inner service, at 1 KiB and
//! 64 KiB, against two baselines measured in the same run: a pre-keyed raw HMAC of the same
//! signed bytes, and the same request sent the same way to the bare handler (the harness:
//! `block_on`, the call, dropping the request and the answer). The stack's fixed cost per
//! request is `full_stack - handler_only - raw_hmac`.
//!
//! Every request is a fresh signed delivery (signed outside the timed part), so replay takes
//! its full path: begin, handler, complete. `full_stack` is the six layers in a
//! `ServiceBuilder`; `webhook_layer` the same stages built by `WebhookLayer`.
//!
//! `recording/1024` measures what metrics cost: `webhook_layer` built with a Prometheus
//! recorder in force (every request counts its outcome and key and times its handler) against
//! the same without a recorder, in the same run.
//!
//! `cargo bench --bench stack`

use std::hint::black_box;
use std::net::Ipv4Addr;

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use hmac::{Hmac, Mac};
use ipnet::{IpNet, Ipv4Net};
use sha2::Sha256;
use tower_webhook::scheme::{Scheme, Signer};

#[path = "support/mod.rs"]
mod support;

use support::SECRET;

fn stack(c: &mut Criterion) {
    let rt = support::runtime();
    let _guard = rt.enter();
    let scheme = Scheme::standard_webhooks();
    let verifier = support::verifier();
    let mut ranges: Vec<IpNet> = (0..999u32)
        .map(|i| IpNet::V4(Ipv4Net::new(Ipv4Addr::from(0x0a00_0000 + (i << 8)), 24).unwrap()))
        .collect();
    ranges.push("192.0.2.0/24".parse().unwrap());
    let mut svc = support::full_stack(verifier.clone(), ranges.clone(), 50_000_000);
    let mut one_call = support::webhook_stack(verifier, ranges, 50_000_000);
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
        let mut bare = tower::service_fn(|_: http::Request<http_body_util::Full<Bytes>>| async {
            Ok::<_, std::convert::Infallible>(http::Response::new(http_body_util::Full::new(
                Bytes::new(),
            )))
        });
        // Every request a new event, across both benches: the replay layer never sees a repeat.
        let mut n = 0u64;
        let mut next_request = || {
            n += 1;
            support::signed_request(&signer, &format!("evt_{n:012}"), support::now(), &body)
        };
        group.bench_function("handler_only", |b| {
            b.iter_batched(
                &mut next_request,
                |req| black_box(support::call(&rt, &mut bare, req)),
                BatchSize::SmallInput,
            );
        });
        group.bench_function("full_stack", |b| {
            b.iter_batched(
                &mut next_request,
                |req| black_box(support::call(&rt, &mut svc, req)),
                BatchSize::SmallInput,
            );
        });
        group.bench_function("webhook_layer", |b| {
            b.iter_batched(
                &mut next_request,
                |req| black_box(support::call(&rt, &mut one_call, req)),
                BatchSize::SmallInput,
            );
        });
        group.finish();
    }
}

fn recording(c: &mut Criterion) {
    let rt = support::runtime();
    let _guard = rt.enter();
    let signer = Signer::new(&Scheme::standard_webhooks(), SECRET).unwrap();
    let ranges: Vec<IpNet> = vec!["192.0.2.0/24".parse().unwrap()];
    let mut silent = support::webhook_stack(support::verifier(), ranges.clone(), 50_000_000);
    let prometheus = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
    let handle = prometheus.handle();
    let mut recorded = metrics::with_local_recorder(&prometheus, || {
        support::webhook_stack(support::verifier(), ranges, 50_000_000)
    });
    let body = Bytes::from(vec![b'x'; 1024]);
    let mut n = 0u64;
    let mut next_request = || {
        n += 1;
        support::signed_request(&signer, &format!("evt_{n:012}"), support::now(), &body)
    };
    let mut group = c.benchmark_group("recording/1024");
    group.bench_function("no_recorder", |b| {
        b.iter_batched(
            &mut next_request,
            |req| black_box(support::call(&rt, &mut silent, req)),
            BatchSize::SmallInput,
        );
    });
    group.bench_function("prometheus", |b| {
        b.iter_batched(
            &mut next_request,
            |req| black_box(support::call(&rt, &mut recorded, req)),
            BatchSize::SmallInput,
        );
        // As a scrape would: the histogram's samples are summed up, not kept.
        handle.run_upkeep();
    });
    group.finish();
    let rendered = handle.render();
    let accepted = rendered
        .lines()
        .find(|l| l.contains("outcome=\"accepted\""))
        .and_then(|l| l.rsplit(' ').next()?.parse::<u64>().ok());
    assert!(accepted > Some(0), "the recorder saw no request");
}

criterion_group!(benches, stack, recording);
criterion_main!(benches);
