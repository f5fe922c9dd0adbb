//! Instruction counts, the steady figure on a shared machine: not a timed bench, but fixed
//! loops to run under callgrind, one mode at a time. Each mode builds its inputs, warms up, then
//! runs `measure` over `N` inputs (5,000 unless given); callgrind counts only inside `measure`:
//!
//! ```text
//! cargo bench --bench instructions --no-run    # prints the binary's path
//! valgrind --tool=callgrind --toggle-collect='instructions::measure*' \
//!     target/release/deps/instructions-<hash> stack [N]
//! ```
//!
//! Divide "Collected" by `N`. The modes, all at 1 KiB and on the Standard Webhooks scheme:
//! - `stack`: one fresh signed delivery through the whole stack of the `stack` bench (client IP,
//!   allowlist of 1,000 ranges, rate limit, buffering, verification, memory replay);
//! - `webhook`: the same deliveries through `WebhookLayer` with the allowlist, rate limit and
//!   memory replay; `recorded`: the same, built with a Prometheus recorder in force, so their
//!   difference is what metrics cost;
//! - `handler`: the same deliveries sent the same way to the bare handler (the harness);
//! - `hmac`: a pre-keyed HMAC-SHA256 of a signed message of the same length;
//! - `verify`: `Verifier::verify` of one signed request.
//!
//! The stack's fixed cost is `stack - handler - hmac`, the verifier's `verify - hmac`. Under
//! valgrind `sha2` takes its software path, the same in every mode, so it cancels out.
//!
//! `cargo bench --bench instructions` alone runs every mode over a few inputs (a check that
//! they work) and prints one line pointing here.

use std::convert::Infallible;
use std::hint::black_box;
use std::net::Ipv4Addr;

use bytes::Bytes;
use hmac::{Hmac, Mac};
use http::{Request, Response};
use http_body_util::Full;
use ipnet::{IpNet, Ipv4Net};
use sha2::Sha256;
use tower_webhook::scheme::{Scheme, Signer};

#[path = "support/mod.rs"]
mod support;

const MODES: [&str; 6] = ["stack", "webhook", "recorded", "handler", "hmac", "verify"];
const WARM_UP: usize = 2_000;
const BODY: usize = 1024;

/// The only function callgrind counts in: `each` over every input.
#[inline(never)]
fn measure<T>(inputs: impl IntoIterator<Item = T>, each: impl FnMut(T)) {
    inputs.into_iter().for_each(each);
}

fn run(mode: &str, n: usize) {
    let rt = support::runtime();
    let _guard = rt.enter();
    let scheme = Scheme::standard_webhooks();
    let signer = Signer::new(&scheme, support::SECRET).unwrap();
    let body = Bytes::from(vec![b'x'; BODY]);
    let mut sent = 0u64;
    let mut deliveries = |count: usize| -> Vec<Request<Full<Bytes>>> {
        (0..count)
            .map(|_| {
                sent += 1;
                let id = format!("evt_{sent:012}");
                support::signed_request(&signer, &id, support::now(), &body)
            })
            .collect()
    };
    match mode {
        "stack" => {
            let mut ranges: Vec<IpNet> = (0..999u32)
                .map(|i| {
                    let base = Ipv4Addr::from(0x0a00_0000 + (i << 8));
                    IpNet::V4(Ipv4Net::new(base, 24).unwrap())
                })
                .collect();
            ranges.push("192.0.2.0/24".parse().unwrap());
            let mut svc = support::full_stack(support::verifier(), ranges, 1_000_000);
            for req in deliveries(WARM_UP) {
                support::call(&rt, &mut svc, req);
            }
            let inputs = deliveries(n);
            measure(inputs, |req| {
                black_box(support::call(&rt, &mut svc, req));
            });
        }
        "webhook" | "recorded" => {
            let ranges: Vec<IpNet> = vec!["192.0.2.0/24".parse().unwrap()];
            let build = || support::webhook_stack(support::verifier(), ranges, 1_000_000);
            let prometheus = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
            let mut svc = if mode == "recorded" {
                metrics::with_local_recorder(&prometheus, build)
            } else {
                build()
            };
            for req in deliveries(WARM_UP) {
                support::call(&rt, &mut svc, req);
            }
            let inputs = deliveries(n);
            measure(inputs, |req| {
                black_box(support::call(&rt, &mut svc, req));
            });
        }
        "handler" => {
            let mut bare = tower::service_fn(|_: Request<Full<Bytes>>| async {
                Ok::<_, Infallible>(Response::new(Full::new(Bytes::new())))
            });
            for req in deliveries(WARM_UP) {
                support::call(&rt, &mut bare, req);
            }
            let inputs = deliveries(n);
            measure(inputs, |req| {
                black_box(support::call(&rt, &mut bare, req));
            });
        }
        "hmac" => {
            // The stack's signed message: `evt_` and 12 digits, a 10-digit time, the body.
            let key = Hmac::<Sha256>::new_from_slice(b"0123456789abcdef0123456789abcdef").unwrap();
            let mut each = |_| {
                let mut mac = key.clone();
                mac.update(b"evt_000000000000.1700000000.");
                mac.update(black_box(&body));
                black_box(mac.finalize().into_bytes());
            };
            (0..WARM_UP).for_each(&mut each);
            measure(0..n, each);
        }
        "verify" => {
            let verifier = support::verifier();
            let req = deliveries(1).pop().unwrap();
            let mut each = |_| {
                black_box(verifier.verify(black_box(req.headers()), black_box(&body))).unwrap();
            };
            (0..WARM_UP).for_each(&mut each);
            measure(0..n, each);
        }
        other => panic!("unknown mode {other:?}: one of {MODES:?}"),
    }
}

fn main() {
    // `cargo bench` passes `--bench`; a mode and a count are the other arguments.
    let mut args = std::env::args().skip(1).filter(|a| !a.starts_with("--"));
    match args.next() {
        Some(mode) => {
            let n = args.next().map_or(5_000, |n| n.parse().expect("a count"));
            run(&mode, n);
        }
        None => {
            for mode in MODES {
                run(mode, 10);
            }
            println!("instructions: run one mode under callgrind, see benches/instructions.rs");
        }
    }
}
