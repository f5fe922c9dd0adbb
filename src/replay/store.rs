//! The replay store interface.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

/// Identifies one attempt at handling an event: only the holder of an in-flight mark may turn
/// it into *done* or release it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Token(pub(crate) u128);

impl Token {
    /// A token from two halves: the layer uses a random per-instance half and a counter.
    #[must_use]
    pub fn from_parts(high: u64, low: u64) -> Self {
        Self(u128::from(high) << 64 | u128::from(low))
    }

    /// The token as a string of 32 hex digits, for stores that keep text.
    #[must_use]
    pub fn to_hex(self) -> String {
        format!("{:032x}", self.0)
    }
}

/// What [`ReplayStore::begin`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Begin {
    /// The key was free: it is now marked in flight with the caller's token.
    Started,
    /// Another attempt holds the key in flight.
    InFlight,
    /// The event was handled already.
    Done,
}

/// Why a store call failed. The message is for logs only; clients see `store_unavailable`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum StoreError {
    /// The store did not answer within its time limit.
    Timeout,
    /// The store could not be reached or answered with an error.
    #[non_exhaustive]
    Unavailable {
        /// What went wrong.
        message: String,
    },
    /// The store is full of entries that are still live; none may be forgotten.
    Full,
}

impl StoreError {
    /// A [`StoreError::Unavailable`] with this message.
    pub fn unavailable(message: impl fmt::Display) -> Self {
        Self::Unavailable {
            message: message.to_string(),
        }
    }
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Timeout => f.write_str("replay store timed out"),
            Self::Unavailable { message } => write!(f, "replay store unavailable: {message}"),
            Self::Full => f.write_str("replay store full of live entries"),
        }
    }
}

impl std::error::Error for StoreError {}

/// The answer of a store call: ready at once (in-memory stores, no allocation) or a boxed
/// future (stores that do I/O).
pub struct StoreFuture<T> {
    inner: Inner<T>,
}

enum Inner<T> {
    Ready(Option<Result<T, StoreError>>),
    Boxed(Pin<Box<dyn Future<Output = Result<T, StoreError>> + Send + 'static>>),
}

impl<T> StoreFuture<T> {
    /// An answer known at once.
    pub fn ready(result: Result<T, StoreError>) -> Self {
        Self {
            inner: Inner::Ready(Some(result)),
        }
    }

    /// An answer that needs I/O.
    pub fn new(future: impl Future<Output = Result<T, StoreError>> + Send + 'static) -> Self {
        Self {
            inner: Inner::Boxed(Box::pin(future)),
        }
    }

    /// The answer, if it was known at once and not taken yet.
    pub(crate) fn take_ready(&mut self) -> Option<Result<T, StoreError>> {
        match &mut self.inner {
            Inner::Ready(result) => result.take(),
            Inner::Boxed(_) => None,
        }
    }
}

// The result is only moved out, never pinned; the boxed future is pinned in its box.
impl<T> Unpin for StoreFuture<T> {}

impl<T> Future for StoreFuture<T> {
    type Output = Result<T, StoreError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match &mut self.get_mut().inner {
            Inner::Ready(result) => {
                Poll::Ready(result.take().expect("StoreFuture polled after completion"))
            }
            Inner::Boxed(future) => future.as_mut().poll(cx),
        }
    }
}

impl<T> fmt::Debug for StoreFuture<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self.inner {
            Inner::Ready(_) => "StoreFuture::Ready",
            Inner::Boxed(_) => "StoreFuture::Boxed",
        })
    }
}

/// Where the replay layer keeps event keys: *in flight* while a handler runs, *done* for a
/// TTL after it succeeded.
///
/// Every transition is atomic and guarded by the caller's [`Token`]; implement it for your own
/// store with the same guarantees:
///
/// - `begin`: if `key` is absent (or expired), mark it in flight with `token` for `lease` and
///   answer [`Begin::Started`]; otherwise answer what it holds. Two concurrent `begin`s of one key
///   must not both start.
/// - `complete`: if `key` is in flight with `token`, mark it done for `ttl`; answer whether it was.
/// - `release`: if `key` is in flight with `token`, remove it; answer whether it was.
pub trait ReplayStore: Send + Sync + fmt::Debug + 'static {
    /// Marks `key` in flight if it is free.
    fn begin(&self, key: &str, token: Token, lease: Duration) -> StoreFuture<Begin>;
    /// Turns the caller's in-flight mark into *done* for `ttl`.
    fn complete(&self, key: &str, token: Token, ttl: Duration) -> StoreFuture<bool>;
    /// Removes the caller's in-flight mark, so a retry is handled.
    fn release(&self, key: &str, token: Token) -> StoreFuture<bool>;

    /// A short fixed name for metrics (the `store` label): `memory`, `redis`, or by default
    /// `custom`.
    fn name(&self) -> &'static str {
        "custom"
    }

    /// Whether the store answers now, for health checks. By default it always does.
    fn ping(&self) -> StoreFuture<()> {
        StoreFuture::ready(Ok(()))
    }
}

/// A store behind an `Arc` is the same store: several replay layers (one per endpoint, each
/// under its own namespace) can share one.
impl<T: ReplayStore + ?Sized> ReplayStore for std::sync::Arc<T> {
    fn begin(&self, key: &str, token: Token, lease: Duration) -> StoreFuture<Begin> {
        (**self).begin(key, token, lease)
    }

    fn complete(&self, key: &str, token: Token, ttl: Duration) -> StoreFuture<bool> {
        (**self).complete(key, token, ttl)
    }

    fn release(&self, key: &str, token: Token) -> StoreFuture<bool> {
        (**self).release(key, token)
    }

    fn name(&self) -> &'static str {
        (**self).name()
    }

    fn ping(&self) -> StoreFuture<()> {
        (**self).ping()
    }
}
