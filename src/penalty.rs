//! A penalty box for forgers: a client whose deliveries keep failing verification is refused
//! with 429 and `Retry-After` before its body is read, so it stops costing a body read and a
//! hash.
//!
//! After `failures` failed verifications (any 401 or 400 from the signature stage) from one
//! client (its IP; IPv6 by /64) within a sliding `window`, the client is boxed until a whole
//! window has passed since the failure that boxed it. Valid deliveries never count, and a
//! boxed client's refused requests do not extend its box.
//!
//! Memory is bounded: at most [`max_clients`](PenaltyBox::max_clients) clients are tracked
//! (100,000 by default); each holds its address, its box's end and the times of its last
//! `failures` failures. When the table is full,
//! clients whose failures are all older than a window are forgotten first, then clients that
//! are not boxed; a new client goes untracked only when those looked at are all boxed.
//!
//! In the [stack](crate::WebhookBuilder::penalty) it runs right after the client IP; alone,
//! [`PenaltyLayer`] goes outside the verification layer, whose refusals it counts.
//!
//! ```
//! use std::time::Duration;
//! use tower::ServiceBuilder;
//! use tower_webhook::client_ip::ResolveClientIpLayer;
//! use tower_webhook::penalty::{PenaltyBox, PenaltyLayer};
//!
//! let penalty = PenaltyBox::new(5, Duration::from_secs(60))?;
//! let stack = ServiceBuilder::new()
//!     .layer(ResolveClientIpLayer::new())
//!     .layer(PenaltyLayer::new(penalty));
//!     // ... then the body and verification layers.
//! # let _ = stack;
//! # Ok::<(), tower_webhook::ConfigError>(())
//! ```

use std::collections::hash_map::{Entry, HashMap, RandomState};
use std::collections::VecDeque;
use std::fmt;
use std::hash::BuildHasher;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use http::{Request, Response};
use tokio::time::Instant;
use tower_layer::Layer;
use tower_service::Service;

pub mod future {
    //! The response future of [`Penalty`](super::Penalty).
    pub use crate::before_body::ResponseFuture;
}

use crate::before_body::ResponseFuture;
use crate::cidr::group;
use crate::rejection::ResponseBody;
use crate::{client_ip, ConfigError, Rejection};

/// Locks the clients are spread over.
const SHARDS: usize = 16;

/// Which clients failed verification, and which are boxed. Clones share them: give the same
/// box to several stacks and a forger is boxed on all of them.
#[derive(Clone)]
pub struct PenaltyBox {
    inner: Arc<Inner>,
}

struct Inner {
    failures: usize,
    window: u64,
    per_shard: usize,
    shards: Box<[Mutex<Shard>]>,
    /// Picks a client's shard with a random key, so no one can crowd one shard.
    hasher: RandomState,
    start: Instant,
}

#[derive(Default)]
struct Shard {
    clients: HashMap<IpAddr, Client>,
    /// When the table may next be swept for clients nothing is known of any more.
    next_sweep: u64,
}

struct Client {
    /// When the box ends, in milliseconds since the penalty box was made; 0: not boxed.
    boxed_until: u64,
    /// When the most recent failures came, oldest first: at most `failures` of them.
    recent: VecDeque<u64>,
}

impl Client {
    /// Whether anything about it still matters at `now`.
    fn live(&self, now: u64, window: u64) -> bool {
        self.boxed_until > now || self.recent.back().is_some_and(|t| t + window > now)
    }
}

impl PenaltyBox {
    /// The default bound on the clients tracked.
    pub const DEFAULT_MAX_CLIENTS: usize = 100_000;

    /// Boxes a client after `failures` failed verifications within `window`, for a window
    /// from the last of them.
    ///
    /// # Errors
    ///
    /// [`ConfigError::InvalidStack`] when `failures` is 0 or over 1,000, or `window` is under
    /// a millisecond.
    pub fn new(failures: u32, window: Duration) -> Result<Self, ConfigError> {
        let invalid = |reason| ConfigError::InvalidStack { reason };
        if failures == 0 || failures > 1_000 {
            return Err(invalid("the penalty box needs from 1 to 1,000 failures"));
        }
        let window = u64::try_from(window.as_millis()).unwrap_or(u64::MAX);
        if window == 0 {
            return Err(invalid(
                "the penalty box window must be at least a millisecond",
            ));
        }
        Ok(Self::build(
            failures as usize,
            window,
            Self::DEFAULT_MAX_CLIENTS,
        ))
    }

    fn build(failures: usize, window: u64, max_clients: usize) -> Self {
        Self {
            inner: Arc::new(Inner {
                failures,
                window,
                per_shard: max_clients.div_ceil(SHARDS).max(1),
                shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
                hasher: RandomState::new(),
                start: Instant::now(),
            }),
        }
    }

    /// Tracks at most about `max_clients` clients (default 100,000). Call before sharing it.
    #[must_use]
    pub fn max_clients(self, max_clients: usize) -> Self {
        let inner = &*self.inner;
        Self::build(inner.failures, inner.window, max_clients)
    }

    /// How many clients are tracked now.
    #[must_use]
    pub fn clients(&self) -> usize {
        let shards = self.inner.shards.iter();
        shards.map(|s| lock(s).clients.len()).sum()
    }

    /// Refuses `ip` with [`Rejection::Penalized`] while it is boxed.
    ///
    /// # Errors
    ///
    /// [`Rejection::Penalized`], with the time left in the box.
    pub fn check(&self, ip: IpAddr) -> Result<(), Rejection> {
        let (key, now) = (group(ip, 64), self.now());
        let shard = lock(self.shard(&key));
        match shard.clients.get(&key) {
            Some(client) if client.boxed_until > now => Err(Rejection::Penalized {
                retry_after: Duration::from_millis(client.boxed_until - now),
            }),
            _ => Ok(()),
        }
    }

    /// Counts a failed verification from `ip`, boxing it when that makes `failures` within
    /// the window.
    pub fn fail(&self, ip: IpAddr) {
        let inner = &*self.inner;
        let (key, now) = (group(ip, 64), self.now());
        let mut shard = lock(self.shard(&key));
        if !shard.clients.contains_key(&key) && !shard.make_room(inner.per_shard, now, inner.window)
        {
            return;
        }
        let client = match shard.clients.entry(key) {
            Entry::Occupied(found) => found.into_mut(),
            Entry::Vacant(free) => free.insert(Client {
                boxed_until: 0,
                recent: VecDeque::with_capacity(inner.failures),
            }),
        };
        if client.boxed_until > now {
            return;
        }
        if client.recent.len() == inner.failures {
            client.recent.pop_front();
        }
        client.recent.push_back(now);
        let oldest = client.recent.front().copied().unwrap_or(now);
        if client.recent.len() == inner.failures && now - oldest < inner.window {
            client.boxed_until = now + inner.window;
            client.recent.clear();
            #[cfg(feature = "tracing")]
            tracing::warn!(
                target: "tower_webhook",
                client = %ip,
                failures = inner.failures,
                window_ms = inner.window,
                "webhook client boxed: too many failed verifications"
            );
        }
    }

    fn shard(&self, key: &IpAddr) -> &Mutex<Shard> {
        let inner = &*self.inner;
        let index = inner.hasher.hash_one(key) as usize;
        &inner.shards[index % inner.shards.len()]
    }

    /// Milliseconds since the box was made, at least 1 (0 means "not boxed").
    fn now(&self) -> u64 {
        u64::try_from(self.inner.start.elapsed().as_millis()).unwrap_or(u64::MAX) + 1
    }
}

impl Shard {
    /// Clients looked at, at most, for one that may be forgotten to make room.
    const LOOK: usize = 64;

    /// Makes room for one more client: forgets the clients nothing is known of any more (a
    /// sweep of the table, at most once a second, so that a flood of new addresses does not
    /// sweep on every failure), else one of the first it finds that is not boxed. Says whether
    /// there is room.
    fn make_room(&mut self, per_shard: usize, now: u64, window: u64) -> bool {
        if self.clients.len() < per_shard {
            return true;
        }
        if now >= self.next_sweep {
            self.next_sweep = now + 1_000;
            self.clients.retain(|_, c| c.live(now, window));
            if self.clients.len() < per_shard {
                return true;
            }
        }
        let unboxed = self
            .clients
            .iter()
            .take(Self::LOOK)
            .find(|(_, c)| c.boxed_until <= now)
            .map(|(ip, _)| *ip);
        unboxed.is_some_and(|ip| self.clients.remove(&ip).is_some())
    }
}

fn lock(shard: &Mutex<Shard>) -> std::sync::MutexGuard<'_, Shard> {
    shard.lock().unwrap_or_else(PoisonError::into_inner)
}

impl fmt::Debug for PenaltyBox {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let inner = &*self.inner;
        f.debug_struct("PenaltyBox")
            .field("failures", &inner.failures)
            .field("window_ms", &inner.window)
            .field("max_clients", &(inner.per_shard * SHARDS))
            .finish_non_exhaustive()
    }
}

/// Applies [`Penalty`].
#[derive(Debug, Clone)]
pub struct PenaltyLayer {
    penalty: PenaltyBox,
}

impl PenaltyLayer {
    /// Boxes clients in `penalty`.
    #[must_use]
    pub fn new(penalty: PenaltyBox) -> Self {
        Self { penalty }
    }
}

impl<S> Layer<S> for PenaltyLayer {
    type Service = Penalty<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Penalty {
            inner,
            penalty: self.penalty.clone(),
        }
    }
}

/// Refuses boxed clients with 429, and counts the verification failures of the answers from
/// the inner service. See the [module docs](self).
#[derive(Debug, Clone)]
pub struct Penalty<S> {
    inner: S,
    penalty: PenaltyBox,
}

impl<S> Penalty<S> {
    inner_accessors!();
}

impl<S, B, ResBody> Service<Request<B>> for Penalty<S>
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
        let Some(ip) = client_ip::of(req.extensions()) else {
            return ResponseFuture::inner(self.inner.call(req));
        };
        match self.penalty.check(ip) {
            Ok(()) => {
                let future = self.inner.call(req);
                ResponseFuture::inner(future).counting_failures(self.penalty.clone(), ip)
            }
            Err(rejection) => ResponseFuture::rejected(rejection, req.headers(), Some(ip)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[tokio::test(start_paused = true)]
    async fn boxed_after_n_failures_within_the_window_until_a_window_has_passed() {
        let penalty = PenaltyBox::new(3, Duration::from_secs(60)).unwrap();
        let forger = ip("192.0.2.1");
        penalty.fail(forger);
        tokio::time::advance(Duration::from_secs(30)).await;
        penalty.fail(forger);
        assert!(penalty.check(forger).is_ok());
        tokio::time::advance(Duration::from_secs(29)).await;
        penalty.fail(forger);
        match penalty.check(forger) {
            Err(Rejection::Penalized { retry_after }) => {
                assert_eq!(retry_after, Duration::from_secs(60));
            }
            other => panic!("{other:?}"),
        }
        // Others are not touched.
        assert!(penalty.check(ip("192.0.2.2")).is_ok());
        // Failures while boxed do not extend the box.
        tokio::time::advance(Duration::from_secs(59)).await;
        penalty.fail(forger);
        assert!(penalty.check(forger).is_err());
        tokio::time::advance(Duration::from_secs(1)).await;
        assert!(penalty.check(forger).is_ok());
        // It starts from nothing again.
        penalty.fail(forger);
        penalty.fail(forger);
        assert!(penalty.check(forger).is_ok());
    }

    #[tokio::test(start_paused = true)]
    async fn failures_spread_wider_than_the_window_never_box() {
        let penalty = PenaltyBox::new(3, Duration::from_secs(60)).unwrap();
        let slow = ip("2001:db8::1");
        for _ in 0..20 {
            penalty.fail(slow);
            assert!(penalty.check(slow).is_ok());
            tokio::time::advance(Duration::from_secs(31)).await;
        }
    }

    #[tokio::test(start_paused = true)]
    async fn ipv6_counts_per_64() {
        let penalty = PenaltyBox::new(2, Duration::from_secs(60)).unwrap();
        penalty.fail(ip("2001:db8:1:2::1"));
        penalty.fail(ip("2001:db8:1:2:ffff::9"));
        assert!(penalty.check(ip("2001:db8:1:2::77")).is_err());
        assert!(penalty.check(ip("2001:db8:1:3::1")).is_ok());
    }

    #[tokio::test(start_paused = true)]
    async fn a_flood_of_addresses_stays_within_the_bound_and_keeps_the_boxed() {
        let penalty = PenaltyBox::new(2, Duration::from_secs(60))
            .unwrap()
            .max_clients(1_600);
        let boxed = ip("198.51.100.1");
        penalty.fail(boxed);
        penalty.fail(boxed);
        for i in 0..100_000u32 {
            penalty.fail(IpAddr::from((0x0a00_0000 + i).to_be_bytes()));
        }
        assert!(penalty.clients() <= 1_600, "{}", penalty.clients());
        assert!(
            penalty.check(boxed).is_err(),
            "the boxed client was forgotten"
        );
        // Once a window has passed, the old failures are forgotten as room is needed.
        tokio::time::advance(Duration::from_secs(61)).await;
        penalty.fail(ip("203.0.113.1"));
        penalty.fail(ip("203.0.113.1"));
        assert!(penalty.check(ip("203.0.113.1")).is_err());
    }

    #[test]
    fn bad_settings_are_config_errors() {
        assert!(PenaltyBox::new(0, Duration::from_secs(1)).is_err());
        assert!(PenaltyBox::new(1_001, Duration::from_secs(1)).is_err());
        assert!(PenaltyBox::new(1, Duration::ZERO).is_err());
    }
}
