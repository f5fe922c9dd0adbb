//! The one-call stack: every stage in the secure order, built from one verifier.
//!
//! [`WebhookLayer::builder`] takes the [`Verifier`](crate::Verifier) once and switches each optional stage on
//! with one call. Whatever is switched on runs in this order, outermost first:
//!
//! 1. client IP: the peer address, or behind [trusted proxies](WebhookBuilder::trusted_proxies)
//!    the rightmost untrusted `X-Forwarded-For` / `Forwarded` hop ([`ClientIp`](crate::client_ip::ClientIp) in the
//!    extensions);
//! 2. [HTTPS only](WebhookBuilder::require_https) (403);
//! 3. [penalty box](WebhookBuilder::penalty) for clients that keep failing verification (429 +
//!    `Retry-After`);
//! 4. [allowlist](WebhookBuilder::allow) (403);
//! 5. [rate limit](WebhookBuilder::rate_limit) (429 + `Retry-After`);
//! 6. [content type](WebhookBuilder::content_types) (415);
//! 7. body buffering within the [body limits](WebhookBuilder::max_body) (413, 408, 400) and the
//!    [memory budget](WebhookBuilder::body_budget) (503 + `Retry-After`);
//! 8. signature verification (401, 400), with [`Verified`](crate::Verified) in the extensions;
//! 9. [event subscription](WebhookBuilder::subscribe) (200 `ignored` for other types);
//! 10. [replay window](WebhookBuilder::replay) (200 duplicate, 409, 503).
//!
//! The first six never read the body, so forged or unwanted traffic costs no buffer and no
//! hash; only authenticated requests reach the replay store, so forgeries cannot fill it.
//!
//! The handler gets a `Request<`[`BufferedBody`](crate::BufferedBody)`>` holding the exact bytes. Every answer has
//! one body type, [`ResponseBody`](crate::ResponseBody)`<B>` around the handler's body `B`, whatever stages are on:
//! it implements `Default`, so the stack sits inside tower-http's `TimeoutLayer` and
//! `CorsLayer`. The separate layers ([`client_ip`](crate::client_ip),
//! [`allowlist`](crate::allowlist), ...) stay available for other orders.
//!
//! # Examples
//!
//! The defaults: client IP from the peer address, 1 MiB and 10 s for the body, verification.
//!
//! ```
//! use std::convert::Infallible;
//! use http::{Request, Response};
//! use tower::{service_fn, Layer};
//! use tower_webhook::scheme::Scheme;
//! use tower_webhook::{BufferedBody, Verifier, WebhookLayer};
//!
//! let verifier = Verifier::builder(Scheme::stripe()).secret("whsec_test").build()?;
//! let layer = WebhookLayer::builder(verifier).build()?;
//! let service = layer.layer(service_fn(|req: Request<BufferedBody>| async move {
//!     Ok::<_, Infallible>(Response::new(format!("{} bytes", req.body().bytes().len())))
//! }));
//! # let _ = service;
//! # Ok::<(), tower_webhook::ConfigError>(())
//! ```
//!
//! Every stage on: behind a load balancer, GitHub's hook ranges only, 20 deliveries a second
//! per client, 256 KiB bodies, each event handled once.
//!
//! ```
//! use std::time::Duration;
//! use tower_webhook::rate_limit::Quota;
//! use tower_webhook::replay::{MemoryStore, ReplayLayer};
//! use tower_webhook::scheme::Scheme;
//! use tower_webhook::{parse_cidrs, Verifier, WebhookLayer};
//!
//! let verifier = Verifier::builder(Scheme::github()).secret("It's a Secret to Everybody").build()?;
//! let layer = WebhookLayer::builder(verifier)
//!     .trusted_proxies(parse_cidrs("10.0.0.0/8")?)
//!     .allow(parse_cidrs("192.30.252.0/22, 185.199.108.0/22, 140.82.112.0/20")?)
//!     .rate_limit(Quota::new(20, Duration::from_secs(1))?)
//!     .max_body(256 * 1024)
//!     .replay(ReplayLayer::builder(MemoryStore::default()).namespace("github"))
//!     .build()?;
//! # let _ = layer;
//! # Ok::<(), tower_webhook::ConfigError>(())
//! ```

pub mod future {
    //! The response future of [`Webhook`](super::Webhook).
    pub use crate::body::future::ResponseFuture;
}
mod service;

#[cfg(feature = "config")]
pub mod config;

pub use service::{Webhook, WebhookBuilder, WebhookLayer};
