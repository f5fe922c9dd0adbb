//! Verification throughput per scheme and body size, against baselines measured in the same
//! run: a pre-keyed raw HMAC-SHA256 over the same signed bytes (the physical limit), HMAC keyed
//! from scratch per call (what naive code does), and the `svix` crate (Standard Webhooks).
//!
//! `cargo bench --bench verify` (HTML reports in `target/criterion/`). Compare a scheme's time
//! with `raw_hmac` of the same size: the ratio is what this crate adds.
//!
//! `ed25519/{1024,65536}`: Standard Webhooks' asymmetric `v1a` (Ed25519) against its HMAC
//! `v1`, same bodies, same run.
//!
//! Both verifiers read the system clock, as they do in production: requests are signed at the
//! current time. `manual_clock/standard_webhooks` is the same verification with a clock that
//! costs nothing, so the system clock's share of a verification is the difference.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BatchSize, BenchmarkId, Criterion, Throughput};
use hmac::{Hmac, Mac};
use http::HeaderMap;
use sha2::Sha256;
use tower_webhook::scheme::{Scheme, Signer};
use tower_webhook::Verifier;

#[path = "support/mod.rs"]
mod support;

use support::{now, TOLERANCE};

const SIZES: [usize; 5] = [64, 1024, 4096, 64 * 1024, 1024 * 1024];
const SECRET: &str = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";

fn schemes() -> [(&'static str, Scheme); 5] {
    [
        ("standard_webhooks", Scheme::standard_webhooks()),
        ("stripe", Scheme::stripe()),
        ("github", Scheme::github()),
        ("slack", Scheme::slack()),
        ("shopify", Scheme::shopify()),
    ]
}

fn body(size: usize) -> Vec<u8> {
    (0..size)
        .map(|i| b"{\"type\":\"invoice.paid\"}"[i % 23])
        .collect()
}

fn verify(c: &mut Criterion) {
    for size in SIZES {
        let body = body(size);
        let mut group = c.benchmark_group(format!("verify/{size}"));
        group.throughput(Throughput::Bytes(size as u64));

        // Baseline: what any verifier must at least do, on the Standard Webhooks message.
        let key = Hmac::<Sha256>::new_from_slice(b"0123456789abcdef0123456789abcdef").unwrap();
        group.bench_function("raw_hmac", |b| {
            b.iter(|| {
                let mut mac = key.clone();
                mac.update(b"msg_2Lh9KRb0pIq2ZvQ1T9bPWOtBWjk.1700000000.");
                mac.update(black_box(&body));
                black_box(mac.finalize().into_bytes())
            });
        });
        group.bench_function("hmac_keyed_per_call", |b| {
            b.iter(|| {
                let mut mac =
                    Hmac::<Sha256>::new_from_slice(black_box(b"0123456789abcdef0123456789abcdef"))
                        .unwrap();
                mac.update(b"msg_2Lh9KRb0pIq2ZvQ1T9bPWOtBWjk.1700000000.");
                mac.update(black_box(&body));
                black_box(mac.finalize().into_bytes())
            });
        });

        for (name, scheme) in schemes() {
            let headers: HeaderMap = Signer::new(&scheme, SECRET)
                .unwrap()
                .sign("msg_2Lh9KRb0pIq2ZvQ1T9bPWOtBWjk", now(), &body)
                .unwrap();
            let verifier = Verifier::builder(scheme)
                .secret(SECRET)
                .tolerance(TOLERANCE)
                .build()
                .unwrap();
            assert!(verifier.verify(&headers, &body).is_ok());
            group.bench_with_input(BenchmarkId::new("tower_webhook", name), &body, |b, body| {
                b.iter(|| black_box(verifier.verify(black_box(&headers), black_box(body))));
            });
            assert!(verifier.verify(&headers, &body).is_ok());
        }

        let headers = Signer::new(&Scheme::standard_webhooks(), SECRET)
            .unwrap()
            .sign("msg_2Lh9KRb0pIq2ZvQ1T9bPWOtBWjk", now(), &body)
            .unwrap();
        // The system clock's share: the same verifier reading a clock that is only a load.
        let pinned = Verifier::builder(Scheme::standard_webhooks())
            .secret(SECRET)
            .tolerance(TOLERANCE)
            .clock(tower_webhook::clock::ManualClock::new(now()))
            .build()
            .unwrap();
        assert!(pinned.verify(&headers, &body).is_ok());
        group.bench_with_input(
            BenchmarkId::new("manual_clock", "standard_webhooks"),
            &body,
            |b, body| {
                b.iter(|| black_box(pinned.verify(black_box(&headers), black_box(body))));
            },
        );
        let svix = svix::webhooks::Webhook::new(SECRET).unwrap();
        assert!(svix.verify(&body, &headers).is_ok());
        group.bench_with_input(
            BenchmarkId::new("svix", "standard_webhooks"),
            &body,
            |b, body| {
                b.iter(|| black_box(svix.verify(black_box(body), &headers)));
            },
        );
        // svix allows 5 minutes: had the run outlasted them, it would have timed a rejection.
        assert!(svix.verify(&body, &headers).is_ok());
        group.finish();
    }
}

/// A Stripe event of about `size` bytes: `type` is the last top-level key, after `data`, so
/// reading it walks the whole body (the worst case; Standard Webhooks puts it first).
fn stripe_event(size: usize) -> Vec<u8> {
    let head = r#"{"id":"evt_1","object":"event","data":{"object":{"items":["#;
    let tail = r#""]}},"livemode":false,"type":"invoice.paid"}"#;
    let mut body = head.as_bytes().to_vec();
    while body.len() + tail.len() + 8 < size {
        body.extend_from_slice(br#""item","#);
    }
    body.extend_from_slice(b"\"last");
    body.extend_from_slice(tail.as_bytes());
    body
}

/// Reading the event type against verifying the same request, per body size.
fn event_type(c: &mut Criterion) {
    for size in [1024usize, 1024 * 1024] {
        let body = bytes::Bytes::from(stripe_event(size));
        let mut group = c.benchmark_group(format!("event_type/{size}"));
        group.throughput(Throughput::Bytes(body.len() as u64));
        let headers = Signer::new(&Scheme::stripe(), SECRET)
            .unwrap()
            .sign("-", now(), &body)
            .unwrap();
        let verifier = Verifier::builder(Scheme::stripe())
            .secret(SECRET)
            .tolerance(TOLERANCE)
            .build()
            .unwrap();
        let verified = verifier.verify(&headers, &body).unwrap();
        assert_eq!(
            verified.clone().with_body(body.clone()).event_type(),
            Some("invoice.paid")
        );
        group.bench_function("verify", |b| {
            b.iter(|| black_box(verifier.verify(black_box(&headers), black_box(&body))));
        });
        // The type is read once per verified request: each iteration gets a fresh copy, made
        // (and dropped) outside the timed part.
        let fresh = |body: &bytes::Bytes| {
            let (verified, body) = (verified.clone(), body.clone());
            move || verified.clone().with_body(body.clone())
        };
        group.bench_function("type_last", |b| {
            b.iter_batched(
                fresh(&body),
                |v| black_box(v.event_type().map(str::len)).map(|_| v),
                BatchSize::SmallInput,
            );
        });
        // Standard Webhooks' layout: the type first.
        let first =
            bytes::Bytes::from([br#"{"type":"invoice.paid","#.as_slice(), &body[1..]].concat());
        group.bench_function("type_first", |b| {
            b.iter_batched(
                fresh(&first),
                |v| black_box(v.event_type().map(str::len)).map(|_| v),
                BatchSize::SmallInput,
            );
        });
        group.finish();
    }
}

/// Standard Webhooks verified with an Ed25519 public key (`v1a`) against the same with an HMAC
/// secret (`v1`).
fn ed25519(c: &mut Criterion) {
    let seed = "whsk_VEVTVFNJR05JTkdLRVlET05PVFVTRVRISVNGT1JBTlk=";
    let public = "whpk_ZlN4eg7dSSqi0moX9hQUk3orrOouK3QVQSlJa248c/g=";
    for size in [1024, 64 * 1024] {
        let body = body(size);
        let mut group = c.benchmark_group(format!("ed25519/{size}"));
        group.throughput(Throughput::Bytes(size as u64));
        for (name, signing, verifying) in
            [("hmac_v1", SECRET, SECRET), ("ed25519_v1a", seed, public)]
        {
            let headers = Signer::new(&Scheme::standard_webhooks(), signing)
                .unwrap()
                .sign("msg_2Lh9KRb0pIq2ZvQ1T9bPWOtBWjk", now(), &body)
                .unwrap();
            let verifier = Verifier::builder(Scheme::standard_webhooks())
                .secret(verifying)
                .tolerance(TOLERANCE)
                .build()
                .unwrap();
            assert!(verifier.verify(&headers, &body).is_ok());
            group.bench_with_input(BenchmarkId::new("verify", name), &body, |b, body| {
                b.iter(|| black_box(verifier.verify(black_box(&headers), black_box(body))));
            });
            assert!(verifier.verify(&headers, &body).is_ok());
        }
        group.finish();
    }
}

criterion_group!(benches, verify, event_type, ed25519);
criterion_main!(benches);
