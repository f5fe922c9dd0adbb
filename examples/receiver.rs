//! The demo receiver: an axum server that accepts signed webhooks on `POST /webhook`.
//!
//! ```sh
//! cargo run --example receiver
//! ```
//!
//! Settings (environment only):
//!
//! | variable | default | meaning |
//! |---|---|---|
//! | `BIND_ADDR` | `127.0.0.1:3000` | address to listen on (port 0 picks a free port) |
//! | `WEBHOOK_SCHEME` | `standard` | `standard`, `stripe`, `github`, `slack` or `shopify` |
//! | `WEBHOOK_SECRET` | a development secret, printed at start | one secret, or several separated by commas |
//! | `MAX_BODY_BYTES` | `1048576` | largest body accepted (413 above) |
//! | `TOLERANCE_SECS` | `300` | how far the signed timestamp may be from now |
//! | `REPLAY_STORE` | `memory` | `memory`, `redis` or `off`: where handled event ids are kept |
//! | `REDIS_URL` | `redis://127.0.0.1:6379/` | the Redis of `REPLAY_STORE=redis` |
//! | `REPLAY_TTL_SECS` | `86400` | how long a handled event id is remembered |
//! | `REPLAY_MAX_ENTRIES` | `100000` | most event ids the memory store holds (503 when full of live ones) |
//! | `ALLOW_CIDRS` | unset | comma-separated CIDRs allowed to deliver (403 otherwise); unset or empty: everyone |
//! | `TRUSTED_PROXIES` | unset | comma-separated CIDRs of proxies whose `X-Forwarded-For` is believed |
//! | `RATE_PER_SEC` | unset | requests per second per client IP (429 above); unset: no limit |
//! | `RATE_BURST` | `RATE_PER_SEC` | requests per client IP at once |
//! | `FAIL_ONCE_PREFIX` | unset | events whose id starts with this fail (500) on their first delivery, to show retries |
//!
//! Standard output carries `listening on <addr>` once bound, then exactly one line per accepted
//! event: `accepted id=<event id or -> bytes=<body length>`. Rejected requests and duplicates
//! never reach the handler and print nothing there; each is a `tracing` event on standard error.

#[path = "support/mod.rs"]
mod support;

use std::collections::HashSet;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{ready, Context, Poll};
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Extension, Router, ServiceExt};
use http_body_util::Either;
use tower::{Layer, Service, ServiceBuilder};
use tower_webhook::buffer::BufferBodyLayer;
use tower_webhook::replay::{MemoryStore, RedisStore, ReplayLayer};
use tower_webhook::verify::{Verifier, VerifyLayer};
use tower_webhook::{RawBody, Verified};

/// `Extension` is axum's own extractor; with this crate's `axum` feature, `Verified` and
/// `RawBody` are extractors by themselves too.
async fn accept(
    State(failures): State<Failures>,
    Extension(verified): Extension<Verified>,
    Extension(body): Extension<RawBody>,
) -> (StatusCode, &'static str) {
    let id = verified.id();
    if failures.fail_first_time(id) {
        eprintln!("simulated failure for id={}", id.unwrap_or("-"));
        return (
            StatusCode::INTERNAL_SERVER_ERROR,
            "{\"error\":\"simulated_failure\"}",
        );
    }
    println!("accepted id={} bytes={}", id.unwrap_or("-"), body.len());
    (StatusCode::OK, "{\"status\":\"accepted\"}")
}

/// The `FAIL_ONCE_PREFIX` demonstration: ids seen failing once by this process.
#[derive(Clone, Default)]
struct Failures {
    prefix: Option<Arc<str>>,
    failed: Arc<Mutex<HashSet<String>>>,
}

impl Failures {
    fn fail_first_time(&self, id: Option<&str>) -> bool {
        match (&self.prefix, id) {
            (Some(prefix), Some(id)) if id.starts_with(&**prefix) => self
                .failed
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .insert(id.to_owned()),
            _ => false,
        }
    }
}

/// `REPLAY_STORE`, `REDIS_URL`, `REPLAY_TTL_SECS`: the replay layer, unless `off`.
fn replay(verifier: &Verifier) -> Result<Option<ReplayLayer>, support::Error> {
    let ttl = Duration::from_secs(support::parsed("REPLAY_TTL_SECS", 86_400)?);
    let builder = match support::var("REPLAY_STORE").as_deref().unwrap_or("memory") {
        "off" => return Ok(None),
        "memory" => {
            let max = support::parsed("REPLAY_MAX_ENTRIES", MemoryStore::DEFAULT_MAX_ENTRIES)?;
            ReplayLayer::builder(MemoryStore::new(max), verifier)
        }
        "redis" => {
            let url = support::var("REDIS_URL").unwrap_or_else(|| "redis://127.0.0.1:6379/".into());
            let store = RedisStore::new(&url).map_err(|e| format!("REDIS_URL: {e}"))?;
            ReplayLayer::builder(store, verifier)
        }
        other => {
            return Err(format!(
                "REPLAY_STORE={other:?}: expected memory, redis or off"
            ))
        }
    };
    builder
        .namespace("receiver")
        .ttl(ttl)
        .build()
        .map(Some)
        .map_err(|e| format!("REPLAY_TTL_SECS: {e}"))
}

/// The receiver: the stack around a router with one route, answering axum's `Response`.
fn app() -> Result<
    impl Service<Request, Response = Response, Error = Infallible, Future: Send>
        + Clone
        + Send
        + 'static,
    support::Error,
> {
    let scheme = support::scheme()?;
    let secrets = support::secrets().unwrap_or_else(|| {
        eprintln!(
            "WEBHOOK_SECRET unset: using the development secret {}",
            support::DEV_SECRET
        );
        vec![support::DEV_SECRET.to_owned()]
    });
    let max_body: usize = support::parsed("MAX_BODY_BYTES", 1024 * 1024)?;
    let tolerance: u64 = support::parsed("TOLERANCE_SECS", 300)?;
    let verifier = Verifier::builder(scheme)
        .secrets(&secrets)
        .tolerance(Duration::from_secs(tolerance))
        .build()
        .map_err(|e| format!("WEBHOOK_SECRET: {e}"))?;
    let replay = replay(&verifier)?;
    let failures = Failures {
        prefix: support::var("FAIL_ONCE_PREFIX").map(Into::into),
        ..Failures::default()
    };
    let network = support::network()?;
    let router = Router::new()
        .route("/webhook", post(accept))
        .with_state(failures);
    // The stack wraps the whole router rather than going in through `Router::layer`, which
    // boxes the layered route, and clones that box and the handler's box inside it on every
    // request. axum clones the service it serves for each request too: here that is a few
    // `Arc`s and the router's own. Every path goes through the stack: a receiver has no route
    // for anyone but signed senders.
    let stack = ServiceBuilder::new()
        .map_response(IntoResponse::into_response)
        .layer(network.resolve)
        .layer(Maybe(network.allow))
        .layer(Maybe(network.rate))
        .layer(BufferBodyLayer::new().max_bytes(max_body))
        .layer(VerifyLayer::new(verifier))
        .layer(Maybe(replay))
        .service(router);
    Ok(stack)
}

/// A layer switched on or off by the settings, as one type either way so that the stack is
/// built once. tower's `option_layer` gives an `Either` service, which needs both branches to
/// answer the same type; with a layer on, the response body is the layer's own type, so the
/// branches differ. Here the answer's body is `http_body_util::Either` of the two: turning each
/// into axum's `Response` instead would box a body at every optional layer, on every request,
/// and make each poll of the response body go through one more box per layer.
#[derive(Clone)]
struct Maybe<L>(Option<L>);

impl<S, L: Layer<S>> Layer<S> for Maybe<L> {
    type Service = MaybeService<L::Service, S>;

    fn layer(&self, inner: S) -> Self::Service {
        match &self.0 {
            Some(layer) => MaybeService::On(layer.layer(inner)),
            None => MaybeService::Off(inner),
        }
    }
}

#[derive(Clone)]
enum MaybeService<A, B> {
    On(A),
    Off(B),
}

impl<A, B, Req, BodyA, BodyB> Service<Req> for MaybeService<A, B>
where
    A: Service<Req, Response = http::Response<BodyA>, Error = Infallible>,
    B: Service<Req, Response = http::Response<BodyB>, Error = Infallible>,
{
    type Response = http::Response<Either<BodyA, BodyB>>;
    type Error = Infallible;
    type Future = MaybeFuture<A::Future, B::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        match self {
            Self::On(a) => a.poll_ready(cx),
            Self::Off(b) => b.poll_ready(cx),
        }
    }

    fn call(&mut self, req: Req) -> Self::Future {
        match self {
            Self::On(a) => MaybeFuture::On {
                future: a.call(req),
            },
            Self::Off(b) => MaybeFuture::Off {
                future: b.call(req),
            },
        }
    }
}

pin_project_lite::pin_project! {
    #[project = MaybeProj]
    enum MaybeFuture<A, B> {
        On { #[pin] future: A },
        Off { #[pin] future: B },
    }
}

impl<A, B, BodyA, BodyB> Future for MaybeFuture<A, B>
where
    A: Future<Output = Result<http::Response<BodyA>, Infallible>>,
    B: Future<Output = Result<http::Response<BodyB>, Infallible>>,
{
    type Output = Result<http::Response<Either<BodyA, BodyB>>, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Poll::Ready(Ok(match self.project() {
            MaybeProj::On { future } => ready!(future.poll(cx))?.map(Either::Left),
            MaybeProj::Off { future } => ready!(future.poll(cx))?.map(Either::Right),
        }))
    }
}

#[tokio::main]
async fn main() {
    tracing_subscriber_init();
    let app = app().unwrap_or_else(|e| support::exit_with(e));
    let addr: SocketAddr = support::parsed("BIND_ADDR", SocketAddr::from(([127, 0, 0, 1], 3000)))
        .unwrap_or_else(|e| support::exit_with(e));
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .unwrap_or_else(|e| support::exit_with(format!("cannot listen on {addr}: {e}")));
    let bound = listener.local_addr().expect("bound socket has an address");
    println!("listening on {bound}");
    axum::serve(
        listener,
        ServiceExt::<Request>::into_make_service_with_connect_info::<SocketAddr>(app),
    )
    .await
    .unwrap_or_else(|e| support::exit_with(e));
}

/// Rejections are `tracing` events; show them on standard error.
fn tracing_subscriber_init() {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_target(false)
        .init();
}
