//! Raw-body buffering: collect the body once, within a byte limit and a time limit, and keep
//! the exact bytes.
//!
//! [`BufferBody`] reads the whole body before calling the inner service, which then gets a
//! `Request<`[`BufferedBody`]`>` holding exactly those bytes, and the same bytes as a
//! [`RawBody`] extension for later layers and the handler (with the `axum` feature, `RawBody`
//! is also an extractor). [`Verify`](crate::verify::Verify), used alone, reads the body the
//! same way. A body
//! that arrives in one chunk is not copied.
//!
//! - `Content-Length` over the limit: 413 at once, nothing read.
//! - A body (chunked or not) that passes the limit while streaming: 413 the moment it does; no
//!   more than the limit is ever held.
//! - The whole body not in within the time limit (a hard deadline, not per chunk): 408.
//! - A body that fails mid-stream: 400.
//!
//! The time limit uses Tokio's timer, so the service must run inside a Tokio runtime (as
//! hyper, axum and tonic servers do).
//!
//! # Examples
//!
//! The defaults (1 MiB, 10 s):
//!
//! ```
//! use bytes::Bytes;
//! use http::Request;
//! use http_body_util::Full;
//! use tower::{service_fn, ServiceBuilder, ServiceExt};
//! use tower_webhook::body::BufferBodyLayer;
//! use tower_webhook::{BufferedBody, RawBody};
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! let svc = ServiceBuilder::new()
//!     .layer(BufferBodyLayer::new())
//!     .service(service_fn(|req: Request<BufferedBody>| async move {
//!         let raw = req.extensions().get::<RawBody>().unwrap().clone();
//!         Ok::<_, std::convert::Infallible>(http::Response::new(Full::new(raw.into_bytes())))
//!     }));
//!
//! let res = svc.oneshot(Request::new(Full::new(Bytes::from("hello")))).await.unwrap();
//! assert_eq!(res.status(), 200);
//! # }
//! ```
//!
//! Customised limits:
//!
//! ```
//! use std::time::Duration;
//! use bytes::Bytes;
//! use http::{Request, StatusCode};
//! use http_body_util::Full;
//! use tower::{service_fn, ServiceBuilder, ServiceExt};
//! use tower_webhook::body::BufferBodyLayer;
//! use tower_webhook::{BodyLimits, BufferedBody};
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! let limits = BodyLimits::new().max_bytes(4).timeout(Duration::from_secs(2));
//! let svc = ServiceBuilder::new()
//!     .layer(BufferBodyLayer::with_limits(limits))
//!     .service(service_fn(|_: Request<BufferedBody>| async {
//!         Ok::<_, std::convert::Infallible>(http::Response::new(Full::new(Bytes::new())))
//!     }));
//!
//! let res = svc.oneshot(Request::new(Full::new(Bytes::from("hello")))).await.unwrap();
//! assert_eq!(res.status(), StatusCode::PAYLOAD_TOO_LARGE);
//! # }
//! ```

mod collect;
mod layer;

pub mod future {
    //! The response future of [`BufferBody`](super::BufferBody),
    //! [`Verify`](crate::verify::Verify) and [`Webhook`](crate::stack::Webhook).
    pub use super::stage::ResponseFuture;
}
mod stage;

use std::fmt;
use std::ops::Deref;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};

pub use collect::BodyBudget;
pub(crate) use collect::Collect;
pub use layer::{BufferBody, BufferBodyLayer};
pub(crate) use stage::{ResponseFuture, Stage, Verifying};

/// A request body that holds the whole body in memory, exactly as received.
///
/// It yields its bytes as one frame and then ends. Cloning the bytes out of it is cheap
/// ([`Bytes`] is reference counted).
#[derive(Clone, Default)]
pub struct BufferedBody {
    data: Option<Bytes>,
}

impl BufferedBody {
    /// A body holding `bytes`.
    #[must_use]
    pub fn new(bytes: Bytes) -> Self {
        Self {
            data: (!bytes.is_empty()).then_some(bytes),
        }
    }

    /// The bytes not yet read out of the body.
    #[must_use]
    pub fn bytes(&self) -> &[u8] {
        self.data.as_deref().unwrap_or_default()
    }

    /// Takes the bytes out of the body.
    #[must_use]
    pub fn into_bytes(self) -> Bytes {
        self.data.unwrap_or_default()
    }
}

impl From<Bytes> for BufferedBody {
    fn from(bytes: Bytes) -> Self {
        Self::new(bytes)
    }
}

impl fmt::Debug for BufferedBody {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BufferedBody")
            .field("len", &self.bytes().len())
            .finish()
    }
}

impl Body for BufferedBody {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        Poll::Ready(self.data.take().map(|b| Ok(Frame::data(b))))
    }

    fn is_end_stream(&self) -> bool {
        self.data.is_none()
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.bytes().len() as u64)
    }
}

/// The exact bytes of the request body, as a request extension.
///
/// Put there by [`BufferBody`] and by
/// [`Verify`](crate::verify::Verify); read it with `req.extensions().get::<RawBody>()`, or, with
/// the `axum` feature, as an extractor. `Debug` prints only the length, so a body never lands in
/// a log by accident.
///
/// ```
/// use bytes::Bytes;
/// use tower_webhook::RawBody;
///
/// let raw = RawBody::new(Bytes::from_static(b"{\"id\":1}"));
/// assert_eq!(raw.len(), 8);
/// assert_eq!(format!("{raw:?}"), "RawBody { len: 8 }");
/// ```
#[derive(Clone)]
pub struct RawBody(Bytes);

impl RawBody {
    /// Wraps the bytes.
    #[must_use]
    pub fn new(bytes: Bytes) -> Self {
        Self(bytes)
    }

    /// The bytes, as a cheaply clonable [`Bytes`].
    #[must_use]
    pub fn bytes(&self) -> &Bytes {
        &self.0
    }

    /// Takes the bytes.
    #[must_use]
    pub fn into_bytes(self) -> Bytes {
        self.0
    }
}

impl Deref for RawBody {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        &self.0
    }
}

impl AsRef<[u8]> for RawBody {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for RawBody {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RawBody")
            .field("len", &self.0.len())
            .finish()
    }
}

/// How much body a layer reads, and for how long.
///
/// The defaults are 1 MiB and 10 seconds for the whole body (a hard deadline, not per chunk).
///
/// ```
/// use std::time::Duration;
/// use tower_webhook::BodyLimits;
///
/// let limits = BodyLimits::new()
///     .max_bytes(256 * 1024)
///     .timeout(Duration::from_secs(5));
/// assert_eq!(limits.byte_limit(), 262_144);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BodyLimits {
    max_bytes: usize,
    timeout: Duration,
}

impl BodyLimits {
    /// The default limit on body size: 1 MiB.
    pub const DEFAULT_MAX_BYTES: usize = 1024 * 1024;
    /// The default time limit for the whole body: 10 seconds.
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

    /// The defaults.
    #[must_use]
    pub const fn new() -> Self {
        Self {
            max_bytes: Self::DEFAULT_MAX_BYTES,
            timeout: Self::DEFAULT_TIMEOUT,
        }
    }

    /// Sets the largest body accepted, in bytes; a larger one answers 413.
    #[must_use]
    pub const fn max_bytes(mut self, max_bytes: usize) -> Self {
        self.max_bytes = max_bytes;
        self
    }

    /// Sets the time the whole body may take to arrive; a slower one answers 408. The time
    /// runs from the first moment the body has to be waited for: what had already arrived
    /// when reading began cost the peer no time.
    #[must_use]
    pub const fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The largest body accepted, in bytes.
    #[must_use]
    pub const fn byte_limit(&self) -> usize {
        self.max_bytes
    }

    /// The time the whole body may take.
    #[must_use]
    pub const fn time_limit(&self) -> Duration {
        self.timeout
    }
}

impl Default for BodyLimits {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    #[tokio::test]
    async fn buffered_body_yields_its_bytes_once() {
        let body = BufferedBody::new(Bytes::from_static(b"abc"));
        assert_eq!(body.size_hint().exact(), Some(3));
        assert!(!body.is_end_stream());
        let collected = body.collect().await.unwrap().to_bytes();
        assert_eq!(&collected[..], b"abc");
    }

    #[test]
    fn empty_buffered_body_is_at_end() {
        let body = BufferedBody::new(Bytes::new());
        assert!(body.is_end_stream());
        assert_eq!(body.size_hint().exact(), Some(0));
    }
}
