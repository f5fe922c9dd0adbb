//! Tower middleware for receiving webhooks safely, in front of any hyper, axum or tonic service.
//!
//! [`WebhookLayer::builder`] stacks every stage below in the secure order from one
//! [`Verifier`], switching each optional stage on with one call (see [`stack`]); with the
//! `config` feature, from a TOML policy file ([`stack::config`]).
//!
//! Each layer does one job and works alone; stacked, they form this order (outermost first):
//!
//! | layer | does | rejects with |
//! |---|---|---|
//! | [`client_ip::ResolveClientIpLayer`] | the client's address: the peer, or behind trusted proxies the rightmost untrusted `X-Forwarded-For`/`Forwarded` hop | 400 (malformed hop), 500 (no peer address: wiring) |
//! | [`allowlist::AllowlistLayer`] | CIDR allowlist, swappable at run time | 403 |
//! | [`rate_limit::RateLimitLayer`] | keyed `governor` limiter, by client IP by default | 429 + `Retry-After` |
//! | [`body::BufferBodyLayer`] | collects the body once, within a byte and a time limit, keeping the exact bytes | 413, 408, 400 |
//! | [`verify::VerifyLayer`] | HMAC-SHA256 over the exact bytes, several secrets, the senders' real header formats, signed-timestamp tolerance | 401, 400 |
//! | [`events::SubscribeLayer`] | handles only the subscribed event types ([`Verified::event_type`]) | 200 `ignored`, handler not called |
//! | [`replay::ReplayLayer`] | each verified event handled once (memory or Redis), a failed one retried | 200 duplicate, 409, 503 |
//!
//! The cheap checks run before any body is read; buffering comes before verification, which
//! needs the exact bytes and must never read an unbounded body; verification comes before
//! anything that stores state (deduplication), so forged traffic cannot fill it. The first three
//! never touch the body, so they also stand in front of tonic (gRPC) services, where they answer
//! with gRPC statuses. In a [`ServiceBuilder`](https://docs.rs/tower/latest/tower/struct.ServiceBuilder.html)
//! the first `.layer()` is the outermost.
//!
//! ```
//! use std::convert::Infallible;
//! use http::{Request, Response};
//! use tower::{service_fn, ServiceBuilder};
//! use tower_webhook::body::BufferBodyLayer;
//! use tower_webhook::scheme::Scheme;
//! use tower_webhook::verify::{Verifier, VerifyLayer};
//! use tower_webhook::{BufferedBody, Verified};
//!
//! let verifier = Verifier::builder(Scheme::standard_webhooks())
//!     .secret("whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD")
//!     .build()?;
//!
//! let service = ServiceBuilder::new()
//!     .layer(BufferBodyLayer::new().max_bytes(256 * 1024))
//!     .layer(VerifyLayer::new(verifier))
//!     .service(service_fn(|req: Request<BufferedBody>| async move {
//!         let verified = req.extensions().get::<Verified>().expect("set by VerifyLayer");
//!         println!("event {:?}, {} bytes", verified.id(), req.body().bytes().len());
//!         Ok::<_, Infallible>(Response::new(String::new()))
//!     }));
//! # let _ = service;
//! # Ok::<(), tower_webhook::ConfigError>(())
//! ```
//!
//! Behind the stack, the handler can be an [`inbox`]: it stores each verified event (Redis
//! Streams, or memory) and answers 202 at once, and workers run your handler with retries,
//! backoff, a circuit breaker and dead letters.
//!
//! Every refusal is a response, never a service error: a short JSON body such as
//! `{"error":"signature_mismatch"}` with the right status, and the typed [`Rejection`] in the
//! response's extensions.
//!
//! # Feature flags
//!
//! | feature | default | enables |
//! |---|---|---|
//! | `tracing` | yes | a `tracing` event for every rejection (target `tower_webhook`; reason and event id, never a secret or the body) |
//! | `axum` | no | [`Verified`], [`RawBody`] and [`ClientIp`](client_ip::ClientIp) as axum extractors, [`Rejection`] as an axum response, axum's `ConnectInfo` as the peer address |
//! | `redis` | no | [`replay::RedisStore`], a replay store shared by several replicas, and [`inbox::Inbox::redis`], an inbox on Redis Streams |
//! | `config` | no | `stack::config`: the stack from a TOML policy file, secrets as `env:`/`file:` references |
#![forbid(unsafe_code)]
#![deny(missing_docs, missing_debug_implementations, unreachable_pub)]
#![deny(rustdoc::broken_intra_doc_links)]
#![cfg_attr(docsrs, feature(doc_auto_cfg))]

#[macro_use]
mod macros;

pub mod allowlist;
mod before_body;
pub mod body;
mod cidr;
pub mod client_ip;
pub mod clock;
pub mod content_type;
mod error;
pub mod events;
#[cfg(feature = "axum")]
pub mod extract;
pub mod https;
pub mod inbox;
pub mod observe;
pub mod penalty;
pub mod rate_limit;
mod rejection;
pub mod replay;
pub mod scheme;
pub mod stack;
mod verified;
pub mod verify;

pub use body::{BodyLimits, BufferedBody, RawBody};
pub use error::ConfigError;
pub use rejection::{Rejection, ResponseBody};
pub use stack::{WebhookBuilder, WebhookLayer};
pub use verified::Verified;
pub use verify::Verifier;

/// Parses a comma-separated list of CIDRs or single addresses, as the allowlist and trusted
/// proxies take them: `"10.0.0.0/8, 192.0.2.7, 2001:db8::/32"`. Empty items are skipped.
///
/// # Errors
///
/// [`ConfigError::InvalidCidr`] naming the first item that is neither.
pub fn parse_cidrs(list: &str) -> Result<Vec<ipnet::IpNet>, ConfigError> {
    list.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(cidr::parse_net)
        .collect()
}

/// The README's examples, compiled and run as doctests (they use the `axum` extractors).
#[cfg(all(doctest, feature = "axum"))]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;

#[cfg(test)]
mod tests {
    use super::*;

    fn send_sync_clone<T: Send + Sync + Clone>() {}

    #[test]
    fn layers_and_services_are_send_sync_clone() {
        #[derive(Clone)]
        struct Inner;
        send_sync_clone::<body::BufferBodyLayer>();
        send_sync_clone::<body::BufferBody<Inner>>();
        send_sync_clone::<verify::VerifyLayer>();
        send_sync_clone::<verify::Verify<Inner>>();
        send_sync_clone::<Verifier>();
        send_sync_clone::<Verified>();
        send_sync_clone::<RawBody>();
        send_sync_clone::<Rejection>();
        send_sync_clone::<scheme::Scheme>();
        send_sync_clone::<scheme::Signer>();
        send_sync_clone::<clock::ManualClock>();
        send_sync_clone::<client_ip::ResolveClientIpLayer>();
        send_sync_clone::<client_ip::ResolveClientIp<Inner>>();
        send_sync_clone::<allowlist::AllowlistLayer>();
        send_sync_clone::<allowlist::Allowlist<Inner>>();
        send_sync_clone::<rate_limit::RateLimitLayer>();
        send_sync_clone::<rate_limit::RateLimit<Inner>>();
        send_sync_clone::<replay::ReplayLayer>();
        send_sync_clone::<replay::Replay<Inner>>();
        send_sync_clone::<replay::MemoryStore>();
        send_sync_clone::<WebhookLayer>();
        send_sync_clone::<inbox::Inbox>();
        send_sync_clone::<inbox::Ingest>();
        send_sync_clone::<inbox::Event>();
        send_sync_clone::<stack::Webhook<Inner>>();
    }

    #[test]
    fn futures_are_send() {
        fn send<T: Send>(_: &T) {}
        use tower::{service_fn, Service, ServiceExt};
        let inner = service_fn(|_: http::Request<BufferedBody>| async {
            Ok::<_, std::convert::Infallible>(http::Response::new(String::new()))
        });
        let verifier = Verifier::builder(scheme::Scheme::github())
            .secret("s")
            .build()
            .unwrap();
        let mut svc = tower::ServiceBuilder::new()
            .layer(body::BufferBodyLayer::new())
            .layer(verify::VerifyLayer::new(verifier))
            .service(inner);
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        rt.block_on(async {
            let ready =
                ServiceExt::<http::Request<http_body_util::Full<bytes::Bytes>>>::ready(&mut svc)
                    .await
                    .unwrap();
            let future = ready.call(http::Request::new(http_body_util::Full::new(
                bytes::Bytes::new(),
            )));
            send(&future);
            let res = future.await.unwrap();
            assert_eq!(res.status(), http::StatusCode::UNAUTHORIZED);
        });
    }

    #[test]
    fn debug_never_prints_secrets() {
        let builder = Verifier::builder(scheme::Scheme::stripe()).secret("whsec_topsecret");
        assert!(!format!("{builder:?}").contains("topsecret"));
        let verifier = builder.build().unwrap();
        assert!(!format!("{verifier:?}").contains("topsecret"));
        let signer = scheme::Signer::new(&scheme::Scheme::stripe(), "whsec_topsecret").unwrap();
        assert!(!format!("{signer:?}").contains("topsecret"));
        let err = Verifier::builder(scheme::Scheme::standard_webhooks())
            .secret("whsec_not*base64")
            .build()
            .unwrap_err();
        assert!(!err.to_string().contains("not*base64"));
    }
}
