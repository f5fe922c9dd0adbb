//! Signature verification: HMAC-SHA256 over the exact raw bytes, constant-time comparison,
//! several secrets at once, and the signed-timestamp tolerance.
//!
//! [`Verify`] reads the bytes that [`BufferBody`](crate::body::BufferBody) collected (from
//! the [`RawBody`](crate::RawBody) extension). Used alone, it collects the body itself within
//! the [`BodyLimits`](crate::BodyLimits) given to the [`Verifier`] (1 MiB and 10 s by default),
//! so it never reads an unbounded body. On success the inner service gets the request with a
//! [`Verified`](crate::Verified) extension; otherwise the client gets a
//! [`Rejection`](crate::Rejection): 401 for a missing or wrong signature or a stale timestamp,
//! 400 for a malformed header.
//!
//! # Examples
//!
//! The defaults: one secret, 5 minutes of tolerance, the system clock.
//!
//! ```
//! use tower_webhook::scheme::Scheme;
//! use tower_webhook::verify::{Verifier, VerifyLayer};
//!
//! let layer = VerifyLayer::new(
//!     Verifier::builder(Scheme::stripe())
//!         .secret("whsec_test_secret")
//!         .build()?,
//! );
//! # let _ = layer;
//! # Ok::<(), tower_webhook::ConfigError>(())
//! ```
//!
//! Customised: two secrets during a rotation, a tighter tolerance, a pinned clock, a larger
//! body limit for when `Verify` buffers by itself.
//!
//! ```
//! use std::time::Duration;
//! use tower_webhook::clock::ManualClock;
//! use tower_webhook::scheme::{Scheme, Signer};
//! use tower_webhook::{BodyLimits, Rejection, Verifier};
//!
//! let clock = ManualClock::new(1_700_000_000);
//! let verifier = Verifier::builder(Scheme::slack())
//!     .secrets(["new-signing-secret", "old-signing-secret"])
//!     .tolerance(Duration::from_secs(60))
//!     .clock(clock.clone())
//!     .body_limits(BodyLimits::new().max_bytes(4 * 1024 * 1024))
//!     .build()?;
//!
//! let signer = Signer::new(&Scheme::slack(), "old-signing-secret")?;
//! let headers = signer.sign("-", 1_700_000_000, b"token=abc")?;
//! assert_eq!(verifier.verify(&headers, b"token=abc")?.key_index(), 1);
//!
//! clock.advance(Duration::from_secs(61));
//! assert!(matches!(
//!     verifier.verify(&headers, b"token=abc"),
//!     Err(Rejection::TimestampOutOfTolerance { .. })
//! ));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod service;
mod verifier;

pub mod future {
    //! The response future of [`Verify`](super::Verify).
    pub use crate::body::future::ResponseFuture;
}
pub(crate) use service::verify_parts;
pub use service::{Verify, VerifyLayer};
pub use verifier::{Verifier, VerifierBuilder};
