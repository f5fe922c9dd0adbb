//! One begin/settle cycle of each replay store, against the cost of verifying a 1 KiB body
//! measured in the same run (the ratio is what deduplication adds per request).
//!
//! `cargo bench --bench replay`. The Redis cases start their own `redis-server` on loopback
//! (skipped, with a message, when it is not installed).

use std::hint::black_box;
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use tower_webhook::clock::ManualClock;
use tower_webhook::replay::{Begin, MemoryStore, RedisStore, ReplayStore, Token};
use tower_webhook::scheme::{Scheme, Signer};
use tower_webhook::Verifier;

const LEASE: Duration = Duration::from_secs(60);
const TTL: Duration = Duration::from_secs(3600);

fn block<F: std::future::Future>(rt: &tokio::runtime::Runtime, f: F) -> F::Output {
    rt.block_on(f)
}

fn stores(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let _guard = rt.enter();
    let mut group = c.benchmark_group("replay");

    // Baseline: verifying a 1 KiB Standard Webhooks delivery.
    let body = vec![b'x'; 1024];
    let headers = Signer::new(
        &Scheme::standard_webhooks(),
        "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
    )
    .unwrap()
    .sign("msg_1", 1_700_000_000, &body)
    .unwrap();
    let verifier = Verifier::builder(Scheme::standard_webhooks())
        .secret("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
        .clock(ManualClock::new(1_700_000_000))
        .build()
        .unwrap();
    group.bench_function("baseline_verify_1KiB", |b| {
        b.iter(|| black_box(verifier.verify(&headers, &body).unwrap()));
    });

    // One hot key: begin, then release so the next begin starts again.
    let store = MemoryStore::new(1024);
    let token = Token::from_parts(1, 1);
    group.bench_function("memory/single_key", |b| {
        b.iter(|| {
            assert_eq!(
                block(
                    &rt,
                    store.begin("ns:standard-webhooks:id:msg_1", token, LEASE)
                ),
                Ok(Begin::Started)
            );
            block(&rt, store.release("ns:standard-webhooks:id:msg_1", token)).unwrap();
        });
    });

    // A store holding 1M done keys; each cycle begins and completes a fresh key, then takes it
    // out again so the size stays at 1M.
    let store = MemoryStore::new(2_000_000);
    for i in 0..1_000_000u64 {
        let key = format!("ns:standard-webhooks:id:evt_{i}");
        block(&rt, store.begin(&key, Token::from_parts(0, i), LEASE)).unwrap();
        block(&rt, store.complete(&key, Token::from_parts(0, i), TTL)).unwrap();
    }
    let fresh: Vec<String> = (0..4096)
        .map(|i| format!("ns:standard-webhooks:id:new_{i}"))
        .collect();
    let mut n = 0usize;
    group.bench_function("memory/1M_keys", |b| {
        b.iter(|| {
            let key = &fresh[n % fresh.len()];
            n += 1;
            let token = Token::from_parts(2, n as u64);
            assert_eq!(
                block(&rt, store.begin(key, token, LEASE)),
                Ok(Begin::Started)
            );
            block(&rt, store.release(key, token)).unwrap();
        });
    });
    println!("memory store: {} keys held", store.len());

    match RedisProcess::start() {
        Some(redis) => {
            let store = RedisStore::new(&redis.url()).unwrap();
            let mut n = 0u64;
            group.bench_function("redis/begin_complete", |b| {
                b.iter(|| {
                    n += 1;
                    let key = format!("bench:{n}");
                    let token = Token::from_parts(3, n);
                    assert_eq!(
                        block(&rt, store.begin(&key, token, LEASE)),
                        Ok(Begin::Started)
                    );
                    assert_eq!(
                        block(&rt, store.complete(&key, token, Duration::from_secs(30))),
                        Ok(true)
                    );
                });
            });
        }
        None => println!("redis-server not installed: Redis store not measured"),
    }
    group.finish();
}

/// A throwaway `redis-server` on a free loopback port.
struct RedisProcess {
    child: Child,
    port: u16,
}

impl RedisProcess {
    fn start() -> Option<Self> {
        let port = TcpListener::bind("127.0.0.1:0")
            .ok()?
            .local_addr()
            .ok()?
            .port();
        let child = Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .stdout(Stdio::null())
            .spawn()
            .ok()?;
        for _ in 0..200 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return Some(Self { child, port });
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        None
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }
}

impl Drop for RedisProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

criterion_group!(benches, stores);
criterion_main!(benches);
