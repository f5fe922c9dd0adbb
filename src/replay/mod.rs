//! Replay window: each verified event reaches the handler once, on one process or across
//! replicas, and an event whose handler failed is never lost.
//!
//! [`Replay`] sits behind [`Verify`](crate::verify::Verify) and reads its
//! [`Verified`](crate::Verified) value. The signed-timestamp window is checked by `Verify` (one
//! place owns it); this layer owns the event ids:
//!
//! | the store holds | the layer | the sender sees |
//! |---|---|---|
//! | nothing | marks the key *in flight* atomically, calls the handler | the handler's answer |
//! | | handler answered 2xx: marks the key *done* for the TTL | |
//! | | handler answered non-2xx, failed, or its future was dropped: releases the key | (its retry will be handled) |
//! | *done* | does not call the handler | 200 `{"status":"duplicate"}` |
//! | *in flight* | does not call the handler | 409 with `Retry-After` |
//! | (store down) | fails closed, or open if configured | 503 with `Retry-After` |
//!
//! # Which key
//!
//! The key comes from signed data only, prefixed by a namespace and the scheme's name:
//!
//! - a signed event id: Standard Webhooks' `webhook-id`, a custom scheme signing
//!   `{id}.{ts}.{body}`;
//! - for schemes with no id header (Stripe), the signed body's top-level `"id"`;
//! - otherwise the verified HMAC tag, a keyed digest of everything signed. GitHub's
//!   `X-GitHub-Delivery` and Shopify's `X-Shopify-Webhook-Id` are **not** signed: keyed on them,
//!   a captured body could be replayed under a fresh id. Keyed on the tag, a byte-identical
//!   redelivery of the same body counts as the same event.
//!
//! The TTL (default 24 h) must outlive the window in which a signed timestamp is still accepted,
//! both directions: the builder refuses less than twice the verifier's tolerance. GitHub and
//! Shopify sign no timestamp, so for them only this TTL bounds replays.
//!
//! # Examples
//!
//! In memory, with the defaults:
//!
//! ```
//! use tower::ServiceBuilder;
//! use tower_webhook::body::BufferBodyLayer;
//! use tower_webhook::replay::{MemoryStore, ReplayLayer};
//! use tower_webhook::scheme::Scheme;
//! use tower_webhook::verify::{Verifier, VerifyLayer};
//!
//! let verifier = Verifier::builder(Scheme::stripe()).secret("whsec_test").build()?;
//! let replay = ReplayLayer::builder(MemoryStore::default()).build(&verifier)?;
//! let stack = ServiceBuilder::new()
//!     .layer(BufferBodyLayer::new())
//!     .layer(VerifyLayer::new(verifier))
//!     .layer(replay);
//! # let _ = stack;
//! # Ok::<(), tower_webhook::ConfigError>(())
//! ```
//!
//! Customised: a namespace per endpoint, a shorter TTL, failing open when the store is down.
//!
//! ```
//! use std::time::Duration;
//! use tower_webhook::replay::{MemoryStore, ReplayLayer};
//! use tower_webhook::scheme::Scheme;
//! use tower_webhook::Verifier;
//!
//! let verifier = Verifier::builder(Scheme::standard_webhooks())
//!     .secret("whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD")
//!     .build()?;
//! let replay = ReplayLayer::builder(MemoryStore::new(1_000_000))
//!     .namespace("billing")
//!     .ttl(Duration::from_secs(3600))
//!     .in_flight_lease(Duration::from_secs(30))
//!     .fail_open(true)
//!     .build(&verifier)?;
//! # let _ = replay;
//! # Ok::<(), tower_webhook::ConfigError>(())
//! ```

pub(crate) mod key;
mod memory;
#[cfg(feature = "redis")]
mod redis;
mod service;
mod store;

pub use memory::MemoryStore;
#[cfg(feature = "redis")]
pub use redis::RedisStore;
pub use service::{Replay, ReplayBuilder, ReplayLayer};

pub mod future {
    //! The response future of [`Replay`](super::Replay).
    pub use super::service::ResponseFuture;
}
pub use store::{Begin, ReplayStore, StoreError, StoreFuture, Token};
