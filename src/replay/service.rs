use std::collections::hash_map::RandomState;
use std::fmt;
use std::future::Future;
use std::hash::BuildHasher;
use std::mem::take;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::{Duration, Instant};

use http::{Request, Response};
use pin_project_lite::pin_project;
use tower_layer::Layer;
use tower_service::Service;

use super::key::dedup_key;
use super::store::{Begin, ReplayStore, StoreError, StoreFuture, Token};
use crate::observe::About;
use crate::rejection::ResponseBody;
use crate::{ConfigError, RawBody, Rejection, Verified, Verifier};

struct Config {
    store: Arc<dyn ReplayStore>,
    namespace: Box<str>,
    ttl: Duration,
    lease: Duration,
    retry_after: Duration,
    fail_open: bool,
    /// The stack's endpoint, for logs.
    endpoint: Option<Box<str>>,
    #[cfg(feature = "metrics")]
    store_errors: metrics::Counter,
    /// The scheme names no event in a header: look for the signed body's `"id"`.
    id_in_body: bool,
    token_base: u64,
    counter: AtomicU64,
}

impl Config {
    /// Counts a failed store call and logs it.
    fn store_failed(&self, error: &StoreError, key: &str, doing: &str) {
        self.count_store_error();
        #[cfg(feature = "tracing")]
        tracing::warn!(target: "tower_webhook", %error, key, "replay store failed to {doing}");
        #[cfg(not(feature = "tracing"))]
        let _ = (error, key, doing);
    }

    fn count_store_error(&self) {
        #[cfg(feature = "metrics")]
        self.store_errors.increment(1);
    }

    fn token(&self) -> Token {
        Token::from_parts(
            self.token_base,
            self.counter.fetch_add(1, Ordering::Relaxed),
        )
    }
}

/// Applies [`Replay`] to a service. Clones share the store and configuration.
#[derive(Clone)]
pub struct ReplayLayer {
    config: Arc<Config>,
}

impl ReplayLayer {
    /// Starts configuring a replay layer that keeps keys in `store`.
    pub fn builder(store: impl ReplayStore) -> ReplayBuilder {
        ReplayBuilder {
            store: Arc::new(store),
            namespace: "default".into(),
            ttl: ReplayBuilder::DEFAULT_TTL,
            lease: ReplayBuilder::DEFAULT_LEASE,
            retry_after: ReplayBuilder::DEFAULT_RETRY_AFTER,
            fail_open: false,
            endpoint: None,
        }
    }
}

impl ReplayLayer {
    /// Whether its store answers now: [`ReplayStore::ping`].
    pub fn ping(&self) -> StoreFuture<()> {
        self.config.store.ping()
    }
}

impl<S> Layer<S> for ReplayLayer {
    type Service = Replay<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Replay {
            inner,
            config: self.config.clone(),
        }
    }
}

impl fmt::Debug for ReplayLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let c = &*self.config;
        f.debug_struct("ReplayLayer")
            .field("store", &c.store)
            .field("namespace", &c.namespace)
            .field("ttl", &c.ttl)
            .field("lease", &c.lease)
            .field("fail_open", &c.fail_open)
            .finish_non_exhaustive()
    }
}

/// Configures a [`ReplayLayer`]; [`ReplayLayer::builder`] starts it.
#[must_use]
pub struct ReplayBuilder {
    store: Arc<dyn ReplayStore>,
    namespace: String,
    ttl: Duration,
    lease: Duration,
    retry_after: Duration,
    fail_open: bool,
    endpoint: Option<Box<str>>,
}

impl ReplayBuilder {
    /// How long a handled event's key is kept by default: 24 hours.
    pub const DEFAULT_TTL: Duration = Duration::from_secs(24 * 3600);
    /// How long an in-flight mark lasts by default if its holder never finishes (a crash).
    pub const DEFAULT_LEASE: Duration = Duration::from_secs(60);
    /// The default `Retry-After` of 409 and 503 answers.
    pub const DEFAULT_RETRY_AFTER: Duration = Duration::from_secs(5);

    /// Prefix of every key, so that two endpoints (or services) sharing one store keep their
    /// events apart; the scheme's name is always part of the key too. Default `default`.
    pub fn namespace(mut self, namespace: &str) -> Self {
        namespace.clone_into(&mut self.namespace);
        self
    }

    /// How long a handled event stays *done* (default 24 h). It must outlive the whole window
    /// in which its signed timestamp is accepted, future skew included: at least twice the
    /// verifier's tolerance.
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.ttl = ttl;
        self
    }

    /// How long an in-flight mark lasts when its handler never finishes, for example after a
    /// crash (default 60 s). Longer than your slowest handler.
    pub fn in_flight_lease(mut self, lease: Duration) -> Self {
        self.lease = lease;
        self
    }

    /// The `Retry-After` of a 409 (in flight) or 503 (store unavailable) answer (default 5 s).
    pub fn retry_after(mut self, retry_after: Duration) -> Self {
        self.retry_after = retry_after;
        self
    }

    /// When the store fails: `false` (the default) answers 503 with `Retry-After`, so the
    /// sender retries later and nothing is handled twice; `true` calls the handler without
    /// deduplication, so nothing waits on the store but a replay may get through. Either way a
    /// `tracing` event says which.
    pub fn fail_open(mut self, fail_open: bool) -> Self {
        self.fail_open = fail_open;
        self
    }

    /// The endpoint its log lines name: the one-call stack's.
    pub(crate) fn endpoint(mut self, endpoint: &str) -> Self {
        self.endpoint = Some(endpoint.into());
        self
    }

    /// Builds the layer for requests verified by `verifier`: its scheme says where the event
    /// id comes from, and its tolerance bounds the TTL.
    ///
    /// # Errors
    ///
    /// [`ConfigError::InvalidReplay`] when the scheme has neither an event id nor a signed
    /// timestamp, when the TTL is shorter than twice the tolerance, or when the lease is zero.
    pub fn build(self, verifier: &Verifier) -> Result<ReplayLayer, ConfigError> {
        let has_id = verifier.scheme().has_id_header();
        if !verifier.scheme().has_timestamp() && !has_id {
            return Err(ConfigError::InvalidReplay {
                reason: "the scheme has neither an event id nor a signed timestamp",
            });
        }
        if self.ttl < verifier.tolerance().saturating_mul(2) || self.ttl.is_zero() {
            return Err(ConfigError::InvalidReplay {
                reason: "the TTL must be at least twice the verifier's tolerance",
            });
        }
        if self.lease.is_zero() {
            return Err(ConfigError::InvalidReplay {
                reason: "the in-flight lease must not be zero",
            });
        }
        #[cfg(feature = "metrics")]
        let store_errors = crate::observe::store_errors(self.store.name());
        Ok(ReplayLayer {
            config: Arc::new(Config {
                store: self.store,
                namespace: self.namespace.into(),
                ttl: self.ttl,
                lease: self.lease,
                retry_after: self.retry_after,
                fail_open: self.fail_open,
                endpoint: self.endpoint,
                #[cfg(feature = "metrics")]
                store_errors,
                id_in_body: !has_id,
                token_base: RandomState::new().hash_one(std::process::id()),
                counter: AtomicU64::new(0),
            }),
        })
    }
}

impl<T: ReplayStore> From<T> for ReplayBuilder {
    /// The defaults, with keys in `store`.
    fn from(store: T) -> Self {
        ReplayLayer::builder(store)
    }
}

impl fmt::Debug for ReplayBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReplayBuilder")
            .field("store", &self.store)
            .field("namespace", &self.namespace)
            .field("ttl", &self.ttl)
            .finish_non_exhaustive()
    }
}

/// Lets each verified event reach the inner service once. See the [module docs](super).
#[derive(Clone)]
pub struct Replay<S> {
    inner: S,
    config: Arc<Config>,
}

impl<S> Replay<S> {
    inner_accessors!();
}

impl<S: fmt::Debug> fmt::Debug for Replay<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Replay")
            .field("inner", &self.inner)
            .field("namespace", &self.config.namespace)
            .finish_non_exhaustive()
    }
}

impl<S, B, ResBody> Service<Request<B>> for Replay<S>
where
    S: Service<Request<B>, Response = Response<ResBody>> + Clone,
{
    type Response = Response<ResponseBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<B, S>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        start(&self.config, req, &mut self.inner)
    }
}

impl ReplayLayer {
    /// Runs the replay stage for `req` in front of `inner` (the ready service, which may be
    /// replaced by a clone): what [`Replay`] does, for the one-call stack.
    pub(crate) fn start<B, S>(&self, req: Request<B>, inner: &mut S) -> ResponseFuture<B, S>
    where
        S: Service<Request<B>> + Clone,
    {
        start(&self.config, req, inner)
    }
}

fn start<B, S>(config: &Arc<Config>, req: Request<B>, inner: &mut S) -> ResponseFuture<B, S>
where
    S: Service<Request<B>> + Clone,
{
    let Some(verified) = req.extensions().get::<Verified>() else {
        let rejection = Rejection::Misconfigured {
            reason: "Replay needs the Verify layer in front of it",
        };
        rejection.log(About::extensions(req.extensions()));
        return ResponseFuture::answer(rejection, Guard::disarmed(config));
    };
    let body = req.extensions().get::<RawBody>().map(|b| &b[..]);
    let key = dedup_key(&config.namespace, verified, config.id_in_body, body);
    let token = config.token();
    let mut begin = config.store.begin(&key, token, config.lease);
    // Armed from the start: if this future is dropped while `begin` is under way, the mark
    // it may have taken is released (a release with a token that holds nothing does
    // nothing).
    let mut guard = Guard {
        config: config.clone(),
        key,
        token,
        armed: true,
        settling: None,
        called: None,
        handler_time: None,
    };
    // A store that answered at once (the memory store) lets the ready inner service be
    // called right here, with no request to hold and no clone of the service.
    if let Some(begun) = begin.take_ready() {
        return ResponseFuture {
            state: after_begin(begun, req, inner, &mut guard),
            guard,
        };
    }
    let clone = inner.clone();
    let inner = std::mem::replace(inner, clone);
    ResponseFuture {
        state: State::Beginning {
            begin,
            req: Some(req),
            inner: Some(inner),
        },
        guard,
    }
}

/// Settles the in-flight mark if the request future is dropped before it could: the client
/// went away, or the server shut down. Mid-handler, it releases the mark (the sender's retry
/// will be handled); after the handler, it lets the pending `complete` or `release` finish on
/// the runtime instead of dropping it half-way.
struct Guard {
    config: Arc<Config>,
    key: Box<str>,
    token: Token,
    /// The handler may be running: release on drop.
    armed: bool,
    /// The `complete` (`true`) or `release` (`false`) under way, finished on the runtime if
    /// dropped.
    settling: Option<(StoreFuture<bool>, bool)>,
    /// When the handler was called, and how long it ran once it answered.
    called: Option<Instant>,
    handler_time: Option<Duration>,
}

impl Guard {
    fn disarmed(config: &Arc<Config>) -> Self {
        Self {
            config: config.clone(),
            key: Box::default(),
            token: Token(0),
            armed: false,
            settling: None,
            called: None,
            handler_time: None,
        }
    }

    /// Logs how the `complete` (`done`) or `release` went, and keeps retrying it in the
    /// background if the store could not be reached.
    fn settled(&self, settled: Result<bool, StoreError>, done: bool) {
        let doing = settle_name(done);
        match settled {
            Ok(true) => {}
            // The lease ran out while the handler worked: another attempt may have started
            // meanwhile. Nothing to undo, but worth knowing.
            Ok(false) => {
                #[cfg(feature = "tracing")]
                tracing::warn!(
                    target: "tower_webhook", key = &*self.key,
                    "replay store could not {doing}: the in-flight lease expired before the handler finished"
                );
            }
            Err(error) => {
                self.config.store_failed(&error, &self.key, doing);
                settle_later(self.config.clone(), self.key.clone(), self.token, done);
            }
        }
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        let (pending, done) = match self.settling.take() {
            Some(settling) => settling,
            None if self.armed => (self.config.store.release(&self.key, self.token), false),
            None => return,
        };
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                let (config, key, token) = (self.config.clone(), take(&mut self.key), self.token);
                runtime.spawn(async move {
                    if let Err(error) = pending.await {
                        config.store_failed(&error, &key, settle_name(done));
                        settle_later(config, key, token, done);
                    }
                });
            }
            // No runtime (shutting down): the lease expires the mark instead.
            Err(_) => drop(pending),
        }
    }
}

fn settle_name(done: bool) -> &'static str {
    if done {
        "mark done"
    } else {
        "release"
    }
}

/// Keeps retrying, in the background, a `complete` or `release` that failed because the store
/// was unreachable, until it goes through or the in-flight lease is over (the mark has expired
/// by then anyway). Without it, a store outage right after a handler ran would leave the event
/// in flight for the whole lease: a failed release blocks the sender's retries that long, and a
/// failed done-mark lets a later replay through once the lease ends. The token still guards
/// each attempt.
fn settle_later(config: Arc<Config>, key: Box<str>, token: Token, done: bool) {
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        return;
    };
    runtime.spawn(async move {
        let deadline = tokio::time::Instant::now() + config.lease;
        let mut wait = Duration::from_millis(50);
        loop {
            tokio::time::sleep(wait).await;
            if tokio::time::Instant::now() >= deadline {
                #[cfg(feature = "tracing")]
                tracing::warn!(
                    target: "tower_webhook", key = &*key,
                    "replay store could not {} before the in-flight lease ended", settle_name(done)
                );
                return;
            }
            let attempt = if done {
                config.store.complete(&key, token, config.ttl)
            } else {
                config.store.release(&key, token)
            };
            if attempt.await.is_ok() {
                return;
            }
            config.count_store_error();
            wait = (wait * 2).min(Duration::from_secs(1));
        }
    });
}

pin_project! {
    /// Response future of [`Replay`].
    pub struct ResponseFuture<B, S>
    where
        S: Service<Request<B>>,
    {
        #[pin]
        state: State<B, S>,
        guard: Guard,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<B, S>
    where
        S: Service<Request<B>>,
    {
        Beginning {
            begin: StoreFuture<Begin>,
            req: Option<Request<B>>,
            inner: Option<S>,
        },
        Calling {
            #[pin]
            future: S::Future,
        },
        Finishing {
            outcome: Option<Result<S::Response, S::Error>>,
        },
        Answer {
            rejection: Option<Rejection>,
        },
    }
}

impl<B, S: Service<Request<B>>> ResponseFuture<B, S> {
    /// How long the handler ran, once it answered.
    pub(crate) fn handler_time(&self) -> Option<Duration> {
        self.guard.handler_time
    }

    fn answer(rejection: Rejection, guard: Guard) -> Self {
        Self {
            state: State::Answer {
                rejection: Some(rejection),
            },
            guard,
        }
    }
}

/// What follows `begin`'s answer: the inner service called with `req`, or a refusal.
fn after_begin<B, S: Service<Request<B>>>(
    begun: Result<Begin, StoreError>,
    req: Request<B>,
    inner: &mut S,
    guard: &mut Guard,
) -> State<B, S> {
    let config = &*guard.config;
    let refuse = |rejection: Rejection| {
        rejection.log(About {
            endpoint: config.endpoint.as_deref(),
            ..About::extensions(req.extensions())
        });
        State::Answer {
            rejection: Some(rejection),
        }
    };
    match begun {
        Ok(Begin::Started) => {
            guard.called = Some(Instant::now());
            State::Calling {
                future: inner.call(req),
            }
        }
        Ok(Begin::Done) => {
            guard.armed = false;
            refuse(Rejection::Duplicate)
        }
        Ok(Begin::InFlight) => {
            guard.armed = false;
            refuse(Rejection::InFlight {
                retry_after: config.retry_after,
            })
        }
        Err(error) if config.fail_open && error != StoreError::Full => {
            guard.armed = false;
            let doing = "begin; failing open: handling without deduplication";
            config.store_failed(&error, &guard.key, doing);
            guard.called = Some(Instant::now());
            State::Calling {
                future: inner.call(req),
            }
        }
        Err(error) => {
            config.store_failed(&error, &guard.key, "begin; failing closed: 503");
            refuse(Rejection::StoreUnavailable {
                retry_after: config.retry_after,
            })
        }
    }
}

impl<B, S, ResBody> Future for ResponseFuture<B, S>
where
    S: Service<Request<B>, Response = Response<ResBody>>,
{
    type Output = Result<Response<ResponseBody<ResBody>>, S::Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            let guard = &mut *this.guard;
            let config = &*guard.config;
            match this.state.as_mut().project() {
                StateProj::Beginning { begin, req, inner } => {
                    let begun = ready!(Pin::new(begin).poll(cx));
                    let (Some(req), Some(mut inner)) = (req.take(), inner.take()) else {
                        panic!("ResponseFuture polled after completion");
                    };
                    let next = after_begin(begun, req, &mut inner, guard);
                    this.state.set(next);
                }
                StateProj::Calling { future } => {
                    let outcome = ready!(future.poll(cx));
                    guard.handler_time = guard.called.map(|called| called.elapsed());
                    if !guard.armed {
                        // Failing open: there is no mark to settle.
                        return Poll::Ready(outcome.map(|r| r.map(ResponseBody::new)));
                    }
                    let handled = matches!(&outcome, Ok(r) if r.status().is_success());
                    let mut finish = if handled {
                        config.store.complete(&guard.key, guard.token, config.ttl)
                    } else {
                        config.store.release(&guard.key, guard.token)
                    };
                    // From here the mark is settled by `finish`. An in-memory store answers at
                    // once; otherwise `finish` is kept in the guard, so that it completes even
                    // if this future is dropped.
                    guard.armed = false;
                    if let Poll::Ready(settled) = Pin::new(&mut finish).poll(cx) {
                        guard.settled(settled, handled);
                        return Poll::Ready(outcome.map(|r| r.map(ResponseBody::new)));
                    }
                    guard.settling = Some((finish, handled));
                    this.state.set(State::Finishing {
                        outcome: Some(outcome),
                    });
                }
                StateProj::Finishing { outcome } => {
                    let (finish, done) = guard
                        .settling
                        .as_mut()
                        .expect("ResponseFuture polled after completion");
                    let done = *done;
                    let settled = ready!(Pin::new(finish).poll(cx));
                    guard.settling = None;
                    guard.settled(settled, done);
                    let outcome = outcome
                        .take()
                        .expect("ResponseFuture polled after completion");
                    return Poll::Ready(outcome.map(|r| r.map(ResponseBody::new)));
                }
                StateProj::Answer { rejection } => {
                    let rejection = rejection
                        .take()
                        .expect("ResponseFuture polled after completion");
                    return Poll::Ready(Ok(rejection.into_response()));
                }
            }
        }
    }
}

impl<B, S: Service<Request<B>>> fmt::Debug for ResponseFuture<B, S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match &self.state {
            State::Beginning { .. } => "beginning",
            State::Calling { .. } => "calling",
            State::Finishing { .. } => "finishing",
            State::Answer { .. } => "answer",
        };
        f.debug_struct("ResponseFuture")
            .field("state", &state)
            .finish_non_exhaustive()
    }
}
