//! Workers: take events from an inbox and run the user's handler on them.

use std::collections::hash_map::RandomState;
use std::collections::HashMap;
use std::fmt;
use std::hash::BuildHasher;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use futures_util::FutureExt;
use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::Instant;
use tower::ServiceExt;
use tower_service::Service;

use super::{Event, Inbox, InboxError, Reader};

/// How long one wait for new events lasts; a worker asked to stop notices within it.
const WAIT: Duration = Duration::from_millis(500);

/// The longest error message kept with an event.
const MAX_ERROR: usize = 300;

type BoxError = Box<dyn std::error::Error + Send + Sync>;
type OnDead = Arc<dyn Fn(&Event) + Send + Sync>;

/// Runs a handler on the events of an [`Inbox`], with retries, backoff, a circuit breaker and
/// dead letters. Built with [`new`](Self::new) and setters, started with
/// [`spawn`](Self::spawn).
///
/// The handler is any Tower service taking an [`Event`] (an async function through
/// [`tower::service_fn`]): `Ok` acknowledges the event; an error, or a panic, is a failed
/// attempt. After a failed attempt the event waits a backoff (`base` × `factor`<sup>n−1</sup>
/// for the n-th failure, at most `max`, of which a random part up to half is taken off so that
/// retries of many events spread out) and is tried again, by any worker; after
/// [`max_attempts`](Self::max_attempts) it becomes a dead letter, and
/// [`on_dead`](Self::on_dead) is called.
///
/// The circuit breaker: after [`breaker`](Self::breaker) consecutive failures (of any events)
/// the worker takes no events for the cool-down; then it tries one, and closes on its success
/// or waits another cool-down. The events wait in the queue meanwhile, spending no attempts.
///
/// See the [module docs](super) for an example.
pub struct Worker<S> {
    inbox: Inbox,
    handler: S,
    settings: Settings,
    on_dead: Option<OnDead>,
}

#[derive(Debug, Clone)]
struct Settings {
    concurrency: usize,
    max_attempts: u32,
    base: Duration,
    factor: f64,
    max: Duration,
    claim_idle: Duration,
    breaker_failures: u32,
    breaker_cooldown: Duration,
    consumer: String,
}

impl<S> Worker<S> {
    /// A worker of `inbox` running `handler`: 4 events at once, 5 attempts, backoff from 1 s to
    /// 60 s, events of a stopped worker reclaimed after 30 s, the breaker opening after 5
    /// consecutive failures for 30 s.
    pub fn new(inbox: Inbox, handler: S) -> Self {
        let unique = RandomState::new().hash_one(std::process::id());
        Self {
            inbox,
            handler,
            settings: Settings {
                concurrency: 4,
                max_attempts: 5,
                base: Duration::from_secs(1),
                factor: 2.0,
                max: Duration::from_secs(60),
                claim_idle: Duration::from_secs(30),
                breaker_failures: 5,
                breaker_cooldown: Duration::from_secs(30),
                consumer: format!("worker-{}-{unique:016x}", std::process::id()),
            },
            on_dead: None,
        }
    }

    /// How many events the handler runs on at once (at least 1).
    #[must_use]
    pub fn concurrency(mut self, concurrency: usize) -> Self {
        self.settings.concurrency = concurrency.max(1);
        self
    }

    /// How many attempts an event gets, the first included (at least 1).
    #[must_use]
    pub fn max_attempts(mut self, attempts: u32) -> Self {
        self.settings.max_attempts = attempts.max(1);
        self
    }

    /// The backoff before the first retry (`base`, default 1 s), multiplied by the
    /// [factor](Self::backoff_factor) with each failure up to `max` (default 60 s).
    #[must_use]
    pub fn backoff(mut self, base: Duration, max: Duration) -> Self {
        self.settings.base = base;
        self.settings.max = max.max(base);
        self
    }

    /// What the backoff is multiplied by after each failure (default 2; at least 1).
    #[must_use]
    pub fn backoff_factor(mut self, factor: f64) -> Self {
        self.settings.factor = if factor.is_finite() {
            factor.max(1.0)
        } else {
            2.0
        };
        self
    }

    /// How long an event taken by a worker may go without a sign of life before another
    /// worker takes it over (Redis; default 30 s). A worker alive renews its hold on a slow
    /// handler's event every third of this, so only a stopped worker's events are reclaimed.
    #[must_use]
    pub fn claim_idle(mut self, idle: Duration) -> Self {
        self.settings.claim_idle = idle.max(Duration::from_millis(100));
        self
    }

    /// After `failures` consecutive failed attempts (0: never) the worker takes no events for
    /// `cooldown`, then tries one.
    #[must_use]
    pub fn breaker(mut self, failures: u32, cooldown: Duration) -> Self {
        self.settings.breaker_failures = failures;
        self.settings.breaker_cooldown = cooldown;
        self
    }

    /// Called with each event that becomes a dead letter (its attempts made and last error),
    /// for example to alert.
    #[must_use]
    pub fn on_dead(mut self, on_dead: impl Fn(&Event) + Send + Sync + 'static) -> Self {
        self.on_dead = Some(Arc::new(on_dead));
        self
    }

    /// The worker's name in the Redis consumer group (default `worker-<pid>-<random>`): unique
    /// among the live workers of an inbox.
    #[must_use]
    pub fn name(mut self, name: &str) -> Self {
        self.settings.consumer = name.to_owned();
        self
    }
}

impl<S> Worker<S>
where
    S: Service<Event> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    S::Response: Send + 'static,
{
    /// Starts the worker on the current Tokio runtime. It runs until
    /// [`WorkerHandle::shutdown`]; dropping the handle leaves it running.
    #[must_use]
    pub fn spawn(self) -> WorkerHandle {
        let (stop, stopped) = watch::channel(None);
        let task = tokio::spawn(self.run(stopped));
        WorkerHandle { stop, task }
    }

    async fn run(self, mut stop: watch::Receiver<Option<Duration>>) -> usize {
        let settings = self.settings;
        let inbox = self.inbox;
        let metrics = Metrics::new(inbox.name());
        let shared = Arc::new(Shared {
            breaker: Mutex::new(Breaker::new(
                settings.breaker_failures,
                settings.breaker_cooldown,
            )),
            in_progress: Mutex::default(),
            jitter: RandomState::new(),
            draws: AtomicU64::new(0),
            on_dead: self.on_dead,
            metrics,
            inbox,
            settings,
        });
        let Some(reader) = shared.reader(&mut stop).await else {
            return 0;
        };
        let semaphore = Arc::new(Semaphore::new(shared.settings.concurrency));
        let mut tasks = JoinSet::new();
        let mut cursor = "0-0".to_owned();
        let mut next_claim = Instant::now();
        let mut next_depth = Instant::now();
        while stop.borrow().is_none() {
            while tasks.try_join_next().is_some() {}
            let now = Instant::now();
            if now >= next_depth {
                next_depth = now + Duration::from_secs(1);
                shared.record_depth().await;
            }
            let room = semaphore.available_permits();
            let admit = shared.breaker().admit(now, tasks.is_empty());
            let allowed = match admit {
                Admit::Any => room,
                Admit::One if tasks.is_empty() => room.min(1),
                Admit::One => 0,
                Admit::Until(until) => {
                    tokio::select! {
                        () = tokio::time::sleep_until(until.min(next_depth)) => {}
                        () = stopped(&mut stop) => {}
                    }
                    continue;
                }
            };
            if allowed == 0 {
                // Every slot is busy (or the breaker's trial runs): wait for one to free.
                tokio::select! {
                    _ = tasks.join_next(), if !tasks.is_empty() => {}
                    () = tokio::time::sleep(WAIT) => {}
                    () = stopped(&mut stop) => {}
                }
                continue;
            }
            let mut events = Vec::new();
            if now >= next_claim {
                let claim = shared.reclaim(&cursor, allowed).await;
                (cursor, events) = claim.unwrap_or_else(|error| {
                    shared.queue_failed(&error, "reclaim");
                    (cursor.clone(), Vec::new())
                });
                if cursor == "0-0" {
                    next_claim = now + shared.settings.claim_idle / 4;
                }
            }
            if events.is_empty() {
                match shared.take(&reader, allowed).await {
                    Ok(taken) => events = taken,
                    Err(error) => {
                        shared.queue_failed(&error, "take");
                        tokio::select! {
                            () = tokio::time::sleep(Duration::from_secs(1)) => {}
                            () = stopped(&mut stop) => {}
                        }
                    }
                }
            }
            if !events.is_empty() {
                shared.breaker().taken();
            }
            for event in events {
                let permit = semaphore
                    .clone()
                    .try_acquire_owned()
                    .expect("no more events taken than free slots");
                shared.hold(&event);
                let handler = self.handler.clone();
                tasks.spawn(shared.clone().process(handler, event, permit));
            }
        }
        let grace = (*stop.borrow()).unwrap_or_default();
        let finished =
            tokio::time::timeout(grace, async { while tasks.join_next().await.is_some() {} });
        if finished.await.is_err() {
            tasks.abort_all();
            while tasks.join_next().await.is_some() {}
        }
        shared.hand_back().await
    }
}

impl<S> fmt::Debug for Worker<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Worker")
            .field("inbox", &self.inbox)
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

/// A running [`Worker`].
#[derive(Debug)]
pub struct WorkerHandle {
    stop: watch::Sender<Option<Duration>>,
    task: JoinHandle<usize>,
}

impl WorkerHandle {
    /// Stops taking events, lets the events in progress finish within `grace`, then hands
    /// the rest back to the queue without spending an attempt (their handlers are dropped);
    /// answers how many were handed back.
    pub async fn shutdown(self, grace: Duration) -> usize {
        let _ = self.stop.send(Some(grace));
        self.task.await.unwrap_or(0)
    }
}

/// What the worker's tasks share.
struct Shared {
    inbox: Inbox,
    settings: Settings,
    breaker: Mutex<Breaker>,
    /// The events being handled, by entry id: handed back if the worker stops first.
    in_progress: Mutex<HashMap<Box<str>, Event>>,
    jitter: RandomState,
    draws: AtomicU64,
    on_dead: Option<OnDead>,
    metrics: Metrics,
}

/// How an attempt ended.
enum Attempt {
    Succeeded,
    Failed(String),
}

impl Shared {
    fn breaker(&self) -> MutexGuard<'_, Breaker> {
        self.breaker.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn in_progress(&self) -> MutexGuard<'_, HashMap<Box<str>, Event>> {
        self.in_progress
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn hold(&self, event: &Event) {
        self.in_progress()
            .insert(event.entry.clone(), event.clone());
    }

    fn consumer(&self) -> &str {
        &self.settings.consumer
    }

    /// The queue readied and a connection to wait on it, trying again each second until
    /// told to stop.
    async fn reader(&self, stop: &mut watch::Receiver<Option<Duration>>) -> Option<Reader> {
        loop {
            match self.inbox.reader(WAIT).await {
                Ok(reader) => return Some(reader),
                Err(error) => self.queue_failed(&error, "start"),
            }
            tokio::select! {
                () = tokio::time::sleep(Duration::from_secs(1)) => {}
                () = stopped(stop) => return None,
            }
        }
    }

    async fn take(&self, reader: &Reader, max: usize) -> Result<Vec<Event>, InboxError> {
        self.inbox.take(reader, self.consumer(), max, WAIT).await
    }

    /// The events of stopped workers; each one's attempt cut short counts.
    async fn reclaim(&self, cursor: &str, max: usize) -> Result<(String, Vec<Event>), InboxError> {
        let idle = self.settings.claim_idle;
        let (cursor, mut events) = self
            .inbox
            .reclaim(self.consumer(), idle, cursor, max)
            .await?;
        for event in &mut events {
            event.attempts = event.attempts.saturating_add(1);
            event.last_error = Some("worker stopped during the handler".into());
            self.metrics.attempt(event, "lost");
            #[cfg(feature = "tracing")]
            tracing::warn!(
                target: "tower_webhook",
                event_id = event.id().unwrap_or("-"),
                endpoint = event.endpoint(),
                attempts = event.attempts,
                "webhook taken over from a stopped worker"
            );
        }
        Ok((cursor, events))
    }

    /// One event: the handler, then its outcome stored.
    async fn process<S>(self: Arc<Self>, handler: S, mut event: Event, _slot: OwnedSemaphorePermit)
    where
        S: Service<Event> + Send,
        S::Future: Send,
        S::Error: Into<BoxError>,
    {
        if event.attempts < self.settings.max_attempts {
            let started = Instant::now();
            let attempt = self.attempt(handler, &event).await;
            let handler_time = started.elapsed();
            self.metrics.handled(&event, handler_time);
            match attempt {
                Attempt::Succeeded => {
                    self.breaker().succeeded();
                    self.metrics.attempt(&event, "success");
                    self.persist(&event, "ack", || self.inbox.ack(&event)).await;
                    #[cfg(feature = "tracing")]
                    tracing::info!(
                        target: "tower_webhook",
                        event_id = event.id().unwrap_or("-"),
                        event_type = event.event_type().unwrap_or("-"),
                        endpoint = event.endpoint(),
                        attempt = event.attempt(),
                        handler_ms = handler_time.as_secs_f64() * 1000.0,
                        "webhook processed"
                    );
                    return self.release(&event);
                }
                Attempt::Failed(error) => {
                    self.breaker().failed(Instant::now());
                    self.metrics.attempt(&event, "failure");
                    event.attempts += 1;
                    event.last_error = Some(error.into());
                }
            }
        }
        if event.attempts < self.settings.max_attempts {
            let delay = self.backoff(event.attempts);
            #[cfg(feature = "tracing")]
            tracing::warn!(
                target: "tower_webhook",
                event_id = event.id().unwrap_or("-"),
                endpoint = event.endpoint(),
                attempt = event.attempts,
                error = event.last_error().unwrap_or("-"),
                retry_in_ms = delay.as_millis(),
                "webhook attempt failed"
            );
            let consumer = self.consumer();
            self.persist(&event, "retry", || {
                self.inbox.settle(&event, consumer, Some(delay))
            })
            .await;
        } else {
            let consumer = self.consumer();
            let buried = self
                .persist(&event, "dead-letter", || {
                    self.inbox.settle(&event, consumer, None)
                })
                .await;
            if buried == Some(true) {
                #[cfg(feature = "tracing")]
                tracing::error!(
                    target: "tower_webhook",
                    event_id = event.id().unwrap_or("-"),
                    endpoint = event.endpoint(),
                    attempts = event.attempts,
                    error = event.last_error().unwrap_or("-"),
                    "webhook dead-lettered"
                );
                self.metrics.dead(&event);
                if let Some(on_dead) = &self.on_dead {
                    on_dead(&event);
                }
            }
        }
        self.release(&event);
    }

    /// Runs the handler once, keeping the hold on the event meanwhile.
    async fn attempt<S>(&self, mut handler: S, event: &Event) -> Attempt
    where
        S: Service<Event>,
        S::Error: Into<BoxError>,
    {
        let run = async move {
            let handler = handler.ready().await.map_err(Into::into)?;
            handler.call(event.clone()).await.map_err(Into::into)
        };
        let run = AssertUnwindSafe(run).catch_unwind();
        let mut run = std::pin::pin!(run);
        let every = self.settings.claim_idle / 3;
        let result = loop {
            tokio::select! {
                result = &mut run => break result,
                () = tokio::time::sleep(every) => {
                    if let Ok(false) = self.inbox.touch(event, self.consumer()).await {
                        #[cfg(feature = "tracing")]
                        tracing::warn!(target: "tower_webhook", event_id = event.id().unwrap_or("-"), "webhook taken over by another worker while its handler ran");
                    }
                }
            }
        };
        match result {
            Ok(Ok(_)) => Attempt::Succeeded,
            Ok(Err(error)) => Attempt::Failed(shorten(error.to_string())),
            Err(_) => Attempt::Failed("handler panicked".to_owned()),
        }
    }

    /// A queue call, tried again with a growing pause while the queue fails, for up to the
    /// claim timeout (after which another worker may take the event over). `None` if it
    /// never succeeded: the event stays taken until reclaimed.
    async fn persist<T, F, Fut>(&self, event: &Event, doing: &'static str, call: F) -> Option<T>
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = Result<T, InboxError>>,
    {
        let give_up = Instant::now() + self.settings.claim_idle;
        let mut pause = Duration::from_millis(50);
        loop {
            match call().await {
                Ok(value) => return Some(value),
                Err(error) => {
                    self.queue_failed(&error, doing);
                    if Instant::now() + pause > give_up {
                        #[cfg(feature = "tracing")]
                        tracing::error!(target: "tower_webhook", event_id = event.id().unwrap_or("-"), doing, "inbox unavailable: the event stays taken until reclaimed");
                        #[cfg(not(feature = "tracing"))]
                        let _ = event;
                        return None;
                    }
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_millis(250));
                }
            }
        }
    }

    fn release(&self, event: &Event) {
        self.in_progress().remove(&event.entry);
    }

    /// The events whose handler was cut short by the shutdown, back in the queue as they
    /// were; how many.
    async fn hand_back(&self) -> usize {
        let left: Vec<Event> = self.in_progress().drain().map(|(_, e)| e).collect();
        let mut handed = 0;
        for event in left {
            let back = self
                .inbox
                .settle(&event, self.consumer(), Some(Duration::ZERO));
            match back.await {
                Ok(true) => handed += 1,
                Ok(false) => {}
                Err(error) => self.queue_failed(&error, "hand back"),
            }
        }
        handed
    }

    /// The pause before the attempt after `failures` failed ones: `base` times the factor
    /// for each failure after the first, at most `max`, less a random part of up to half.
    fn backoff(&self, failures: u32) -> Duration {
        let settings = &self.settings;
        let growth = settings
            .factor
            .powi(failures.saturating_sub(1).min(1024) as i32);
        let full = settings.base.as_secs_f64() * growth;
        let full = Duration::try_from_secs_f64(full).map_or(settings.max, |d| d.min(settings.max));
        let draw = self
            .jitter
            .hash_one(self.draws.fetch_add(1, Ordering::Relaxed));
        let fraction = (draw >> 11) as f64 / (1u64 << 53) as f64;
        full.mul_f64(1.0 - fraction / 2.0)
    }

    async fn record_depth(&self) {
        #[cfg(feature = "metrics")]
        if let Ok(depth) = self.inbox.depth().await {
            self.metrics.depth(depth);
        }
        self.metrics
            .breaker(!matches!(self.breaker().state, State::Closed));
    }

    fn queue_failed(&self, error: &InboxError, doing: &'static str) {
        #[cfg(feature = "tracing")]
        tracing::warn!(target: "tower_webhook", inbox = self.inbox.name(), doing, %error, "inbox call failed");
        #[cfg(not(feature = "tracing"))]
        let _ = (error, doing);
        self.metrics.queue_error();
    }
}

/// Resolves once a shutdown is asked for; never when the handle was dropped without one (the
/// worker then runs on).
async fn stopped(stop: &mut watch::Receiver<Option<Duration>>) {
    if stop.wait_for(Option::is_some).await.is_err() {
        std::future::pending::<()>().await;
    }
}

/// `message`, cut to at most [`MAX_ERROR`] bytes on a character boundary.
fn shorten(mut message: String) -> String {
    if message.len() > MAX_ERROR {
        let mut end = MAX_ERROR;
        while !message.is_char_boundary(end) {
            end -= 1;
        }
        message.truncate(end);
    }
    message
}

/// The circuit breaker's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Closed,
    Open {
        until: Instant,
    },
    /// The cool-down is over: one event may be tried (`trying` once taken).
    HalfOpen {
        trying: bool,
    },
}

/// What the breaker lets the worker take now.
#[derive(Debug, PartialEq, Eq)]
enum Admit {
    Any,
    One,
    Until(Instant),
}

#[derive(Debug)]
struct Breaker {
    threshold: u32,
    cooldown: Duration,
    failures: u32,
    state: State,
}

impl Breaker {
    fn new(threshold: u32, cooldown: Duration) -> Self {
        Self {
            threshold,
            cooldown,
            failures: 0,
            state: State::Closed,
        }
    }

    /// What may be taken at `now`; `idle` when no event is being handled (so a trial that
    /// ended without a verdict, its outcome not stored, gives way to another).
    fn admit(&mut self, now: Instant, idle: bool) -> Admit {
        match self.state {
            State::Closed => Admit::Any,
            State::Open { until } if now < until => Admit::Until(until),
            State::Open { .. } => {
                self.state = State::HalfOpen { trying: false };
                Admit::One
            }
            State::HalfOpen { trying } if !trying || idle => Admit::One,
            State::HalfOpen { .. } => Admit::Until(now + WAIT),
        }
    }

    /// Events were taken: in half-open state, that is the trial.
    fn taken(&mut self) {
        if let State::HalfOpen { .. } = self.state {
            self.state = State::HalfOpen { trying: true };
        }
    }

    fn succeeded(&mut self) {
        self.failures = 0;
        if self.state != State::Closed {
            #[cfg(feature = "tracing")]
            tracing::info!(target: "tower_webhook", "inbox circuit breaker closed");
            self.state = State::Closed;
        }
    }

    fn failed(&mut self, now: Instant) {
        self.failures = self.failures.saturating_add(1);
        let open = match self.state {
            State::HalfOpen { .. } => true,
            State::Closed => self.threshold > 0 && self.failures >= self.threshold,
            State::Open { .. } => false,
        };
        if open {
            #[cfg(feature = "tracing")]
            tracing::warn!(target: "tower_webhook", failures = self.failures, cooldown_secs = self.cooldown.as_secs_f64(), "inbox circuit breaker open");
            self.state = State::Open {
                until: now + self.cooldown,
            };
        }
    }
}

/// The workers' metrics (feature `metrics`).
struct Metrics {
    #[cfg(feature = "metrics")]
    inbox: &'static str,
}

#[cfg(feature = "metrics")]
impl Metrics {
    fn new(inbox: &'static str) -> Self {
        Self { inbox }
    }

    fn attempt(&self, event: &Event, result: &'static str) {
        let endpoint = event.endpoint().to_owned();
        metrics::counter!("webhook_inbox_attempts_total", "endpoint" => endpoint, "result" => result)
            .increment(1);
    }

    fn handled(&self, event: &Event, time: Duration) {
        let endpoint = event.endpoint().to_owned();
        metrics::histogram!("webhook_inbox_handler_duration_seconds", "endpoint" => endpoint)
            .record(time.as_secs_f64());
    }

    fn dead(&self, event: &Event) {
        let endpoint = event.endpoint().to_owned();
        metrics::counter!("webhook_inbox_dead_total", "endpoint" => endpoint).increment(1);
    }

    #[allow(clippy::cast_precision_loss)]
    fn depth(&self, depth: super::Depth) {
        for (state, n) in [
            ("queued", depth.queued),
            ("retrying", depth.retrying),
            ("dead", depth.dead),
        ] {
            metrics::gauge!("webhook_inbox_depth", "inbox" => self.inbox, "state" => state)
                .set(n as f64);
        }
    }

    fn breaker(&self, open: bool) {
        metrics::gauge!("webhook_inbox_breaker_open", "inbox" => self.inbox)
            .set(f64::from(u8::from(open)));
    }

    fn queue_error(&self) {
        metrics::counter!("webhook_inbox_errors_total", "inbox" => self.inbox).increment(1);
    }
}

#[cfg(not(feature = "metrics"))]
impl Metrics {
    fn new(_: &'static str) -> Self {
        Self {}
    }
    fn attempt(&self, _: &Event, _: &'static str) {}
    fn handled(&self, _: &Event, _: Duration) {}
    fn dead(&self, _: &Event) {}
    fn breaker(&self, _: bool) {}
    fn queue_error(&self) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_breaker_opens_after_consecutive_failures_and_closes_on_a_trial_success() {
        let start = Instant::now();
        let mut breaker = Breaker::new(3, Duration::from_secs(10));
        breaker.failed(start);
        breaker.failed(start);
        breaker.succeeded();
        breaker.failed(start);
        breaker.failed(start);
        // A success in between: two consecutive only.
        assert_eq!(breaker.admit(start, false), Admit::Any);
        breaker.failed(start);
        let reopen = start + Duration::from_secs(10);
        assert_eq!(breaker.admit(start, false), Admit::Until(reopen));
        // After the cool-down: one trial, nothing more while it runs.
        assert_eq!(breaker.admit(reopen, false), Admit::One);
        breaker.taken();
        assert!(matches!(breaker.admit(reopen, false), Admit::Until(_)));
        // A trial that ended without a verdict gives way to another.
        assert_eq!(breaker.admit(reopen, true), Admit::One);
        // A failed trial opens it again for a whole cool-down.
        breaker.failed(reopen);
        let again = reopen + Duration::from_secs(10);
        assert_eq!(breaker.admit(reopen, true), Admit::Until(again));
        assert_eq!(breaker.admit(again, true), Admit::One);
        breaker.taken();
        breaker.succeeded();
        assert_eq!(breaker.admit(again, false), Admit::Any);
        // Off: never opens.
        let mut off = Breaker::new(0, Duration::from_secs(10));
        for _ in 0..100 {
            off.failed(start);
        }
        assert_eq!(off.admit(start, false), Admit::Any);
    }

    /// What a worker with these settings shares with its tasks.
    fn shared<S>(worker: Worker<S>) -> Shared {
        Shared {
            inbox: worker.inbox,
            settings: worker.settings,
            breaker: Mutex::new(Breaker::new(0, Duration::ZERO)),
            in_progress: Mutex::default(),
            jitter: RandomState::new(),
            draws: AtomicU64::new(0),
            on_dead: None,
            metrics: Metrics::new("memory"),
        }
    }

    #[test]
    fn backoff_grows_by_the_factor_up_to_the_cap_less_up_to_half() {
        let worker = || Worker::new(Inbox::memory(), ());
        let base = Duration::from_millis(100);
        let doubling = shared(worker().backoff(base, Duration::from_secs(1)));
        let tripling = shared(
            worker()
                .backoff(base, Duration::from_secs(10))
                .backoff_factor(3.0),
        );
        let cases = [
            (&doubling, 1, 100),
            (&doubling, 2, 200),
            (&doubling, 3, 400),
            (&doubling, 4, 800),
            (&doubling, 5, 1000),
            (&doubling, 40, 1000),
            (&doubling, u32::MAX, 1000),
            (&tripling, 2, 300),
            (&tripling, 3, 900),
            (&tripling, 5, 8100),
            (&tripling, 6, 10_000),
        ];
        for (shared, failures, full) in cases {
            let full = Duration::from_millis(full);
            let delays: Vec<Duration> = (0..200).map(|_| shared.backoff(failures)).collect();
            assert!(
                delays.iter().all(|d| *d >= full / 2 && *d <= full),
                "{failures}: {delays:?}"
            );
            // Jittered: spread over the range, not one value.
            let (min, max) = (delays.iter().min().unwrap(), delays.iter().max().unwrap());
            assert!(*max - *min > full / 4, "{failures}: {min:?}..{max:?}");
        }
    }

    #[test]
    fn long_errors_are_cut_on_a_character_boundary() {
        assert_eq!(shorten("short".into()), "short");
        let long = "é".repeat(400);
        let cut = shorten(long);
        assert!(cut.len() <= MAX_ERROR && cut.len() >= MAX_ERROR - 1);
        assert!(cut.chars().all(|c| c == 'é'));
    }
}
