//! Allocations per verified request, and memory per key of the replay store, the rate
//! limiter and the penalty box at 1M keys, counted by a global allocator (not timed: counts are exact), and what
//! the replay store still holds once those keys have expired. Two timed figures ride along:
//! how long a memory store's calls wait while its tables grow, as the slowest call against the
//! median call of the same run; and what its calls cost once keys expire as fast as they
//! arrive, against the same store filling.
//!
//! `cargo bench --bench alloc` prints one line per figure.

use std::alloc::{GlobalAlloc, Layout, System};
use std::convert::Infallible;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicIsize, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, Response};
use tower::{service_fn, Layer, Service, ServiceExt};
use tower_webhook::penalty::PenaltyBox;
use tower_webhook::rate_limit::{Quota, RateLimitLayer};
use tower_webhook::replay::{MemoryStore, ReplayStore, Token};
use tower_webhook::scheme::{Scheme, Signer};

#[path = "support/mod.rs"]
mod support;

struct Counting;

static ALLOCS: AtomicUsize = AtomicUsize::new(0);
static LIVE: AtomicIsize = AtomicIsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        LIVE.fetch_add(
            new_size as isize - layout.size() as isize,
            Ordering::Relaxed,
        );
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

use support::SECRET;

fn main() {
    let rt = support::runtime();
    let _guard = rt.enter();
    let scheme = Scheme::standard_webhooks();
    let signer = Signer::new(&scheme, SECRET).unwrap();
    let verifier = support::verifier();

    for size in [1024usize, 64 * 1024, 1024 * 1024] {
        let body = Bytes::from(vec![b'x'; size]);
        // Header values as hyper makes them: slices of one shared buffer.
        let headers = signer.sign("evt_1", support::now(), &body).unwrap();
        let headers: http::HeaderMap = headers
            .iter()
            .map(|(k, v)| {
                (
                    k.clone(),
                    http::HeaderValue::from_maybe_shared(Bytes::copy_from_slice(v.as_bytes()))
                        .unwrap(),
                )
            })
            .collect();
        let _ = verifier.verify(&headers, &body);
        let before = ALLOCS.load(Ordering::Relaxed);
        for _ in 0..100 {
            assert!(verifier.verify(&headers, &body).is_ok());
        }
        let per = (ALLOCS.load(Ordering::Relaxed) - before) as f64 / 100.0;
        println!("allocations per Verifier::verify, {size} B body: {per}");
    }

    let ranges = tower_webhook::parse_cidrs("192.0.2.0/24, 10.0.0.0/8").unwrap();
    let mut full = support::full_stack(verifier.clone(), ranges, 1_000_000);
    for size in [1024usize, 64 * 1024, 1024 * 1024] {
        let body = Bytes::from(vec![b'x'; size]);
        let mut requests = (0..101)
            .map(|i| {
                support::signed_request(&signer, &format!("evt_{size}_{i}"), support::now(), &body)
            })
            .collect::<Vec<_>>()
            .into_iter();
        support::call(&rt, &mut full, requests.next().unwrap());
        let before = ALLOCS.load(Ordering::Relaxed);
        for req in requests {
            support::call(&rt, &mut full, req);
        }
        let per = (ALLOCS.load(Ordering::Relaxed) - before) as f64 / 100.0;
        println!("allocations per request through the whole stack, {size} B body: {per}");
    }

    fill_memory_store();
    steady_memory_store();

    let layer = RateLimitLayer::new(Quota::new(1, Duration::from_secs(3600)).unwrap());
    let mut limited = layer.layer(service_fn(|_: Request<()>| async {
        Ok::<_, Infallible>(Response::new(()))
    }));
    let live = LIVE.load(Ordering::Relaxed);
    for i in 0..1_000_000u32 {
        let mut req = Request::new(());
        req.extensions_mut().insert(SocketAddr::new(
            IpAddr::V4(Ipv4Addr::from(0x0b00_0000 + i)),
            1,
        ));
        rt.block_on(async { limited.ready().await.unwrap().call(req).await.unwrap() });
    }
    let bytes = LIVE.load(Ordering::Relaxed) - live;
    println!(
        "rate limiter, {} live keys: {} MiB, {} bytes per key",
        layer.keys(),
        bytes >> 20,
        bytes / 1_000_000
    );

    penalty_box(&rt);
}

/// A penalty box of 5 failures a minute, bound 1M clients, after a failure from each of 1M
/// addresses.
fn penalty_box(rt: &tokio::runtime::Runtime) {
    let _guard = rt.enter();
    let live = LIVE.load(Ordering::Relaxed);
    let penalty = PenaltyBox::new(5, Duration::from_secs(60))
        .unwrap()
        .max_clients(1_000_000);
    for i in 0..1_000_000u32 {
        penalty.fail(IpAddr::V4(Ipv4Addr::from(0x0c00_0000 + i)));
    }
    let bytes = LIVE.load(Ordering::Relaxed) - live;
    println!(
        "penalty box (5 failures), {} clients: {} MiB, {} bytes per client",
        penalty.clients(),
        bytes >> 20,
        bytes / 1_000_000
    );
}

/// Fills a memory store (bound 2M) with 1M done keys; prints the memory it took and how long
/// its calls waited. Each begin and complete is timed: while the store grows, calls also move
/// entries into larger tables, a few at a time, and the slowest show how many at most. Then
/// lets every key expire and prints what the store holds once calls have reclaimed them.
fn fill_memory_store() {
    let rt = paused_runtime();
    let _guard = rt.enter();
    let mut cycles = Vec::with_capacity(1_000_000);
    let live = LIVE.load(Ordering::Relaxed);
    let store = MemoryStore::new(2_000_000);
    for i in 0..1_000_000u64 {
        let key = format!("default:standard-webhooks:id:evt_{i:012}");
        let started = Instant::now();
        rt.block_on(store.begin(&key, Token::from_parts(1, i), Duration::from_secs(60)))
            .unwrap();
        rt.block_on(store.complete(&key, Token::from_parts(1, i), Duration::from_secs(3600)))
            .unwrap();
        cycles.push(started.elapsed());
    }
    let bytes = LIVE.load(Ordering::Relaxed) - live;
    println!(
        "memory store, 1M done keys (bound 2M): {} MiB, {} bytes per key",
        bytes >> 20,
        bytes / 1_000_000
    );
    let over_1ms = cycles
        .iter()
        .filter(|c| **c > Duration::from_millis(1))
        .count();
    cycles.sort_unstable();
    let median = cycles[cycles.len() / 2];
    let slowest = cycles[cycles.len() - 1];
    println!(
        "memory store filling to 1M keys, begin + complete: median {median:?}, \
         99.9th percentile {:?}, slowest {slowest:?} ({:.0}x the median), {over_1ms} over 1 ms",
        cycles[cycles.len() * 999 / 1000],
        slowest.as_secs_f64() / median.as_secs_f64(),
    );

    // Every key expires. Each `begin` reclaims a few expiry records in the shard of its key:
    // keys done for longer, enough to land in every shard, and asked about again and again,
    // reclaim them all without adding records of their own.
    let probes: Vec<String> = (0..4096).map(|i| format!("probe_{i}")).collect();
    for (i, key) in probes.iter().enumerate() {
        let token = Token::from_parts(2, i as u64);
        rt.block_on(store.begin(key, token, Duration::from_secs(60)))
            .unwrap();
        rt.block_on(store.complete(key, token, Duration::from_secs(7200)))
            .unwrap();
    }
    let peak = LIVE.load(Ordering::Relaxed) - live;
    rt.block_on(tokio::time::advance(Duration::from_secs(3600)));
    let mut calls = 0;
    while store.len() > probes.len() {
        assert!(calls < 10_000_000, "the store's keys were not reclaimed");
        let key = &probes[calls % probes.len()];
        let begin = rt.block_on(store.begin(key, Token::from_parts(3, 0), Duration::from_secs(60)));
        assert_eq!(begin, Ok(tower_webhook::replay::Begin::Done));
        calls += 1;
    }
    let left = LIVE.load(Ordering::Relaxed) - live;
    println!(
        "memory store, {} keys, once the others expired and calls reclaimed them: {} KiB \
         ({} MiB before)",
        probes.len(),
        left >> 10,
        peak >> 20
    );
}

/// Times begin + complete on a memory store of 1M keys, one call per simulated millisecond
/// with a TTL of 1,000 s: first while it fills, then twice over at steady state, where every
/// call also reclaims the records that came due (its lease's, a minute after it was taken, and
/// its done mark's, at the end of its TTL).
fn steady_memory_store() {
    const KEYS: u64 = 1_000_000;
    let rt = paused_runtime();
    let _guard = rt.enter();
    let store = MemoryStore::new(2 * KEYS as usize);
    let mut per_call = Vec::new();
    for round in 0..3 {
        let mut spent = Duration::ZERO;
        for i in round * KEYS..(round + 1) * KEYS {
            let key = format!("default:standard-webhooks:id:evt_{i:012}");
            let token = Token::from_parts(4, i);
            let started = Instant::now();
            rt.block_on(store.begin(&key, token, Duration::from_secs(60)))
                .unwrap();
            rt.block_on(store.complete(&key, token, Duration::from_secs(KEYS / 1000)))
                .unwrap();
            spent += started.elapsed();
            rt.block_on(tokio::time::advance(Duration::from_millis(1)));
        }
        per_call.push(spent.as_nanos() as f64 / KEYS as f64);
    }
    println!(
        "memory store of 1M keys, begin + complete: filling {:.0} ns, steady state {:.0} and \
         {:.0} ns ({:.2}x and {:.2}x), {} keys held",
        per_call[0],
        per_call[1],
        per_call[2],
        per_call[1] / per_call[0],
        per_call[2] / per_call[0],
        store.len()
    );
}

/// A runtime whose clock is paused, so that a memory store's keys can expire without waiting
/// for their TTL; the calls are still timed on the real clock.
fn paused_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .unwrap()
}
