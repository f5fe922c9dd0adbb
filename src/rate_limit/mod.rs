//! Keyed rate limiting on [`governor`]: over the quota, 429 with `Retry-After` and the
//! `RateLimit-*` headers.
//!
//! A [`Quota`] says plainly how many requests are allowed per period, and how many may come at
//! once (the burst): `Quota::new(10, Duration::from_secs(1))` is ten requests a second, refilled
//! evenly (one every 100 ms), at most ten at once. Requests are counted per key: the client IP
//! by default (IPv6 grouped per /64, since one host usually holds a whole /64), or a header
//! value, one global bucket, or your own function ([`KeyBy`]).
//!
//! The state lives behind an `Arc` in the layer, so every clone of the service (axum clones
//! services per request) counts against the same buckets. Idle keys are forgotten by the layer
//! itself, no task to run: after every `max(1024, keys / 4)` checks it drops the keys whose
//! bucket is full again, so memory stays proportional to the keys seen within one refill
//! interval, even under a flood of distinct addresses.
//!
//! # Examples
//!
//! Ten requests per second per client IP, bursts of 20:
//!
//! ```
//! use std::time::Duration;
//! use tower_webhook::rate_limit::{Quota, RateLimitLayer};
//!
//! let layer = RateLimitLayer::new(Quota::new(10, Duration::from_secs(1))?.burst(20)?);
//! # let _ = layer;
//! # Ok::<(), tower_webhook::ConfigError>(())
//! ```
//!
//! Per tenant header, 100 a minute:
//!
//! ```
//! use std::time::Duration;
//! use tower_webhook::rate_limit::{KeyBy, Quota, RateLimitLayer};
//!
//! let layer = RateLimitLayer::new(Quota::new(100, Duration::from_secs(60))?)
//!     .key_by(KeyBy::header("x-tenant-id")?);
//! # let _ = layer;
//! # Ok::<(), tower_webhook::ConfigError>(())
//! ```
//!
//! Time is Tokio's, so a test with paused time (`tokio::time::pause`, `advance`) controls
//! the buckets.

use std::fmt;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use governor::clock::Clock;
use governor::middleware::NoOpMiddleware;
use governor::state::keyed::DashMapStateStore;
use http::{Extensions, HeaderMap, HeaderName, Request, Response};
use tower_layer::Layer;
use tower_service::Service;

pub mod future {
    //! The response future of [`RateLimit`](super::RateLimit).
    pub use crate::before_body::ResponseFuture;
}

use crate::before_body::ResponseFuture;
use crate::cidr::group;
use crate::rejection::ResponseBody;
use crate::{client_ip, ConfigError, Rejection};

/// How many requests are allowed, per how long, and how many at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quota {
    requests: NonZeroU32,
    per: Duration,
    burst: NonZeroU32,
}

impl Quota {
    /// `requests` per `per`, refilled evenly, with a burst of `requests`.
    ///
    /// # Errors
    ///
    /// [`ConfigError::InvalidQuota`] when `requests` is zero or `per / requests` is zero.
    pub fn new(requests: u32, per: Duration) -> Result<Self, ConfigError> {
        let requests = NonZeroU32::new(requests).ok_or(ConfigError::InvalidQuota {
            reason: "zero requests",
        })?;
        if (per / requests.get()).is_zero() {
            return Err(ConfigError::InvalidQuota {
                reason: "the period is too short for that many requests",
            });
        }
        Ok(Self {
            requests,
            per,
            burst: requests,
        })
    }

    /// How many requests may come at once.
    ///
    /// # Errors
    ///
    /// [`ConfigError::InvalidQuota`] when `burst` is zero.
    pub fn burst(mut self, burst: u32) -> Result<Self, ConfigError> {
        self.burst = NonZeroU32::new(burst).ok_or(ConfigError::InvalidQuota {
            reason: "zero burst",
        })?;
        Ok(self)
    }

    /// Requests per period.
    #[must_use]
    pub fn requests(&self) -> u32 {
        self.requests.get()
    }

    /// The period.
    #[must_use]
    pub fn period(&self) -> Duration {
        self.per
    }

    /// The burst.
    #[must_use]
    pub fn burst_size(&self) -> u32 {
        self.burst.get()
    }

    fn governor(&self) -> governor::Quota {
        governor::Quota::with_period(self.per / self.requests.get())
            .expect("checked non-zero in Quota::new")
            .allow_burst(self.burst)
    }
}

/// A function naming the bucket of a request, from its headers and extensions.
pub type KeyFn = Arc<dyn Fn(&HeaderMap, &Extensions) -> Option<String> + Send + Sync>;

/// What requests are counted by.
#[derive(Clone)]
#[non_exhaustive]
pub enum KeyBy {
    /// The client IP ([`ClientIp`](crate::client_ip::ClientIp), or the peer address), IPv6
    /// grouped per network of this prefix length. Requests with no address share one bucket.
    ClientIp {
        /// Prefix length IPv6 addresses are grouped by (64 by default; 128 for none).
        ipv6_prefix: u8,
    },
    /// A header's value; requests without it share one bucket.
    Header(HeaderName),
    /// One bucket for everything.
    Global,
    /// Your function of the headers and extensions; `None` shares one bucket.
    Custom(KeyFn),
}

impl KeyBy {
    /// By client IP, IPv6 per /64.
    #[must_use]
    pub fn client_ip() -> Self {
        Self::ClientIp { ipv6_prefix: 64 }
    }

    /// By the value of the header `name`.
    ///
    /// # Errors
    ///
    /// [`ConfigError::InvalidHeaderName`].
    pub fn header(name: &str) -> Result<Self, ConfigError> {
        HeaderName::try_from(name)
            .map(Self::Header)
            .map_err(|_| ConfigError::InvalidHeaderName {
                name: name.to_owned(),
            })
    }

    /// By your function.
    pub fn custom(
        f: impl Fn(&HeaderMap, &Extensions) -> Option<String> + Send + Sync + 'static,
    ) -> Self {
        Self::Custom(Arc::new(f))
    }

    fn key(&self, headers: &HeaderMap, extensions: &Extensions) -> Key {
        match self {
            Self::ClientIp { ipv6_prefix } => client_ip::of(extensions)
                .map_or(Key::Missing, |ip| Key::Ip(group(ip, *ipv6_prefix))),
            Self::Header(name) => headers
                .get(name)
                .map_or(Key::Missing, |v| Key::Text(v.as_bytes().into())),
            Self::Global => Key::Missing,
            Self::Custom(f) => {
                f(headers, extensions).map_or(Key::Missing, |s| Key::Text(s.into_bytes().into()))
            }
        }
    }
}

impl Default for KeyBy {
    fn default() -> Self {
        Self::client_ip()
    }
}

impl fmt::Debug for KeyBy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::ClientIp { ipv6_prefix } => write!(f, "ClientIp(/{ipv6_prefix})"),
            Self::Header(name) => write!(f, "Header({name})"),
            Self::Global => f.write_str("Global"),
            Self::Custom(_) => f.write_str("Custom(..)"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Key {
    Ip(IpAddr),
    Text(Box<[u8]>),
    /// No key: one shared bucket.
    Missing,
}

/// Tokio's clock, as time since the limiter was made: paused time in tests moves it.
#[derive(Debug, Clone)]
struct TokioClock {
    start: tokio::time::Instant,
}

impl Clock for TokioClock {
    type Instant = Duration;

    fn now(&self) -> Duration {
        self.start.elapsed()
    }
}

type Limiter =
    governor::RateLimiter<Key, DashMapStateStore<Key>, TokioClock, NoOpMiddleware<Duration>>;

struct Shared {
    limiter: Limiter,
    clock: TokioClock,
    key_by: KeyBy,
    quota: Quota,
    checks: AtomicU64,
    since_sweep: AtomicU64,
    sweeping: AtomicBool,
}

impl Shared {
    fn new(quota: Quota, key_by: KeyBy) -> Self {
        let clock = TokioClock {
            start: tokio::time::Instant::now(),
        };
        Self {
            limiter: governor::RateLimiter::dashmap_with_clock(quota.governor(), clock.clone()),
            clock,
            key_by,
            quota,
            checks: AtomicU64::new(0),
            since_sweep: AtomicU64::new(0),
            sweeping: AtomicBool::new(false),
        }
    }
}

impl Shared {
    fn check(&self, headers: &HeaderMap, extensions: &Extensions) -> Result<(), Rejection> {
        let key = self.key_by.key(headers, extensions);
        let result = self.limiter.check_key(&key);
        self.maybe_sweep();
        result.map_err(|not_until| Rejection::RateLimited {
            retry_after: not_until.wait_time_from(self.clock.now()),
            limit: self.quota.burst.get(),
        })
    }

    /// Every 1,024 checks, sweep idle keys if at least a quarter of the map's size in checks
    /// happened since the last sweep: amortized constant work per request.
    fn maybe_sweep(&self) {
        let n = self.checks.fetch_add(1, Ordering::Relaxed);
        let since = self.since_sweep.fetch_add(1, Ordering::Relaxed) + 1;
        if n % 1024 != 1023 || since < (self.limiter.len() as u64 / 4).max(1024) {
            return;
        }
        if self.sweeping.swap(true, Ordering::Acquire) {
            return;
        }
        self.limiter.retain_recent();
        self.limiter.shrink_to_fit();
        self.since_sweep.store(0, Ordering::Relaxed);
        self.sweeping.store(false, Ordering::Release);
    }
}

/// Applies [`RateLimit`]; clones share the buckets.
#[derive(Clone)]
pub struct RateLimitLayer {
    shared: Arc<Shared>,
}

impl RateLimitLayer {
    /// Limits each client IP to `quota`.
    #[must_use]
    pub fn new(quota: Quota) -> Self {
        Self {
            shared: Arc::new(Shared::new(quota, KeyBy::default())),
        }
    }

    /// What requests are counted by (default: client IP, IPv6 per /64). Starts from empty
    /// buckets: call it while building the layer.
    #[must_use]
    pub fn key_by(self, key_by: KeyBy) -> Self {
        let s = &*self.shared;
        Self {
            shared: Arc::new(Shared::new(s.quota, key_by)),
        }
    }

    /// Counts a request against its key's quota: the rate-limit stage of the one-call stack.
    pub(crate) fn check(
        &self,
        headers: &HeaderMap,
        extensions: &Extensions,
    ) -> Result<(), Rejection> {
        self.shared.check(headers, extensions)
    }

    /// The number of keys tracked now (idle ones are swept as requests come).
    #[must_use]
    pub fn keys(&self) -> usize {
        self.shared.limiter.len()
    }
}

impl From<Quota> for RateLimitLayer {
    /// Limits each client IP to the quota.
    fn from(quota: Quota) -> Self {
        Self::new(quota)
    }
}

impl fmt::Debug for RateLimitLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RateLimitLayer")
            .field("quota", &self.shared.quota)
            .field("key_by", &self.shared.key_by)
            .finish_non_exhaustive()
    }
}

impl<S> Layer<S> for RateLimitLayer {
    type Service = RateLimit<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RateLimit {
            inner,
            shared: self.shared.clone(),
        }
    }
}

/// Answers 429 to requests over their key's quota. See the [module docs](self).
#[derive(Clone)]
pub struct RateLimit<S> {
    inner: S,
    shared: Arc<Shared>,
}

impl<S> RateLimit<S> {
    /// A [`RateLimitLayer`] limiting each client IP to `quota`.
    #[must_use]
    pub fn layer(quota: Quota) -> RateLimitLayer {
        RateLimitLayer::new(quota)
    }

    inner_accessors!();
}

impl<S: fmt::Debug> fmt::Debug for RateLimit<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RateLimit")
            .field("inner", &self.inner)
            .field("quota", &self.shared.quota)
            .finish_non_exhaustive()
    }
}

impl<S, B, ResBody> Service<Request<B>> for RateLimit<S>
where
    S: Service<Request<B>, Response = Response<ResBody>>,
{
    type Response = Response<ResponseBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        match self.shared.check(req.headers(), req.extensions()) {
            Ok(()) => ResponseFuture::inner(self.inner.call(req)),
            Err(rejection) => {
                ResponseFuture::rejected(rejection, req.headers(), client_ip::of(req.extensions()))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers_from(ip: &str) -> (HeaderMap, Extensions) {
        let mut ext = Extensions::new();
        ext.insert(std::net::SocketAddr::new(ip.parse().unwrap(), 1));
        (HeaderMap::new(), ext)
    }

    #[tokio::test(start_paused = true)]
    async fn quota_means_requests_per_period_with_a_burst() {
        let quota = Quota::new(2, Duration::from_secs(10))
            .unwrap()
            .burst(3)
            .unwrap();
        let shared = Shared::new(quota, KeyBy::client_ip());
        let (h, e) = headers_from("192.0.2.1");
        for _ in 0..3 {
            shared.check(&h, &e).unwrap();
        }
        let Err(Rejection::RateLimited { retry_after, limit }) = shared.check(&h, &e) else {
            panic!("fourth request within the burst must be refused");
        };
        // Two per ten seconds: one cell every five seconds.
        assert_eq!((retry_after, limit), (Duration::from_secs(5), 3));
        // Another client has its own bucket.
        let (h2, e2) = headers_from("192.0.2.2");
        shared.check(&h2, &e2).unwrap();
        tokio::time::advance(Duration::from_secs(5)).await;
        shared.check(&h, &e).unwrap();
        assert!(shared.check(&h, &e).is_err());
    }

    #[tokio::test(start_paused = true)]
    async fn ipv6_clients_share_their_64() {
        let shared = Shared::new(
            Quota::new(1, Duration::from_secs(60)).unwrap(),
            KeyBy::client_ip(),
        );
        let (h, e) = headers_from("2001:db8:0:1::1");
        shared.check(&h, &e).unwrap();
        let (h, e) = headers_from("2001:db8:0:1:ffff::2");
        assert!(
            shared.check(&h, &e).is_err(),
            "rotating within one /64 does not help"
        );
        let (h, e) = headers_from("2001:db8:0:2::1");
        assert!(shared.check(&h, &e).is_ok());
    }

    #[tokio::test(start_paused = true)]
    async fn idle_keys_are_swept_by_the_layer() {
        let shared = Shared::new(
            Quota::new(1, Duration::from_secs(1)).unwrap(),
            KeyBy::client_ip(),
        );
        for i in 0..5000u32 {
            let (h, e) = headers_from(&std::net::Ipv4Addr::from(0x0a00_0000 + i).to_string());
            shared.check(&h, &e).unwrap();
        }
        assert!(shared.limiter.len() >= 4000);
        // All buckets refill; the flood's keys are idle now and go at the next sweep.
        tokio::time::advance(Duration::from_secs(2)).await;
        let (h, e) = headers_from("192.0.2.9");
        for _ in 0..2048 {
            let _ = shared.check(&h, &e);
        }
        assert!(shared.limiter.len() <= 2, "{}", shared.limiter.len());
    }

    #[test]
    fn quotas_are_checked() {
        assert!(Quota::new(0, Duration::from_secs(1)).is_err());
        assert!(Quota::new(10, Duration::from_nanos(5)).is_err());
        assert!(Quota::new(1, Duration::from_secs(1))
            .unwrap()
            .burst(0)
            .is_err());
    }
}
