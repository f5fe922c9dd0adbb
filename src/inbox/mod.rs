//! Answer at once, process later: a durable inbox of verified events, and workers that run
//! your handler with retries, exponential backoff, a circuit breaker and dead letters.
//!
//! The senders want a 2xx within seconds and retry anything slower. With an inbox, the
//! handler behind the stack only stores the verified event and answers 202
//! `{"status":"queued"}`; [`Worker`]s take the events and run your handler, as fast as it
//! goes, retrying what fails.
//!
//! - **Ingest** ([`Inbox::ingest`]): the service behind the stack. It answers 202 only once the
//!   queue has acknowledged the write. If the queue cannot take the event (down, slower than
//!   [`timeout`](Inbox::timeout), or full), it answers 503 `inbox_unavailable` with
//!   `Retry-After`: the [replay layer](crate::replay) then releases the event's mark and the
//!   sender's retry is taken. A 202 means stored; a 503 means retry. A write that timed out may
//!   still land: the retry then finds the event queued and does not queue it twice (below). A
//!   delivery of an event already queued answers 200 `duplicate` (from the replay layer).
//! - **Queues**: [`Inbox::redis`] (feature `redis`) on Redis Streams, for several receivers and
//!   several worker processes sharing one Redis, which is how this scales past one machine;
//!   [`Inbox::memory`] for one process, bounded, and **lost when the process exits**: for
//!   development and tests.
//! - **Workers** ([`Worker`]): a concurrency limit; success acknowledges the event; failure
//!   schedules a retry after an exponential backoff with jitter; after the last attempt the
//!   event becomes a dead letter with its attempt count and last error. A circuit breaker stops
//!   taking events after consecutive failures. Shutdown finishes or hands back the events in
//!   progress.
//! - **Dead letters**: [`Inbox::dead_letters`], [`Inbox::retry_dead`],
//!   [`Inbox::retry_all_dead`].
//!
//! # Delivery: at least once
//!
//! An event taken by a worker that dies (a crash, `SIGKILL`, a lost machine) is taken over by
//! another worker once it has been idle for the [claim timeout](Worker::claim_idle); a worker
//! alive keeps its hold on a long handler. So a crash never loses an event, but the handler
//! may see an event again after its first run was cut short, or when it succeeded and the
//! worker died before saying so. The attempt cut short counts as one of the event's attempts,
//! so an event that kills its worker each time still ends as a dead letter.
//!
//! Make the handler idempotent with [`Event::key`], which is stable across deliveries of one
//! event (the endpoint and the signed event id): record it in the same transaction as the
//! handler's effects and skip an event whose key is recorded.
//!
//! The inbox itself queues an event once: a delivery whose key is queued already (waiting, in
//! progress, retrying or dead) or was processed successfully within
//! [`done_ttl`](Inbox::done_ttl) is answered 202 without being queued again, even without a
//! [replay layer](crate::replay) in front, and even when the first write's answer was lost.
//!
//! # Examples
//!
//! In memory: the stack answers 202 at once, a worker runs the handler.
//!
//! ```
//! use std::convert::Infallible;
//! use tower::{service_fn, Layer};
//! use tower_webhook::inbox::{Event, Inbox, Worker};
//! use tower_webhook::scheme::Scheme;
//! use tower_webhook::{Verifier, WebhookLayer};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let verifier = Verifier::builder(Scheme::standard_webhooks())
//!     .secret("whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD")
//!     .build()?;
//! let inbox = Inbox::memory();
//! let service = WebhookLayer::builder(verifier)
//!     .endpoint("/webhook")
//!     .build()?
//!     .layer(inbox.ingest("/webhook"));
//!
//! let worker = Worker::new(
//!     inbox.clone(),
//!     service_fn(|event: Event| async move {
//!         println!("event {:?}, attempt {}", event.id(), event.attempt());
//!         Ok::<_, Infallible>(())
//!     }),
//! )
//! .spawn();
//! # let _ = service;
//! // ... serve `service` ...
//! worker.shutdown(std::time::Duration::from_secs(10)).await;
//! # Ok(())
//! # }
//! ```
//!
//! On Redis, receivers and workers in separate processes, tuned:
//!
//! ```no_run
//! use std::time::Duration;
//! use tower::service_fn;
//! use tower_webhook::inbox::{Event, Inbox, Worker};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let inbox = Inbox::redis("redis://127.0.0.1:6379/", "billing")?
//!     .timeout(Duration::from_millis(500))
//!     .max_events(1_000_000);
//!
//! // In the worker process:
//! let worker = Worker::new(
//!     inbox,
//!     service_fn(|event: Event| async move {
//!         let invoice: serde_json::Value = event.json()?;
//!         // ... act on it, idempotently by event.key() ...
//!         # let _ = invoice;
//!         Ok::<_, Box<dyn std::error::Error + Send + Sync>>(())
//!     }),
//! )
//! .concurrency(16)
//! .max_attempts(8)
//! .backoff(Duration::from_secs(1), Duration::from_secs(600))
//! .claim_idle(Duration::from_secs(60))
//! .breaker(10, Duration::from_secs(30))
//! .spawn();
//! # worker.shutdown(Duration::from_secs(30)).await;
//! # Ok(())
//! # }
//! ```

mod event;
mod ingest;
mod memory;
#[cfg(feature = "redis")]
mod redis;
mod worker;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

pub use event::{Event, EventBuilder};
pub use ingest::Ingest;
pub(crate) use ingest::Queued;
pub use worker::{Worker, WorkerHandle};

#[cfg(feature = "redis")]
use crate::ConfigError;

/// The futures of this module's services.
pub mod future {
    pub use super::ingest::ResponseFuture;
}

/// Why the inbox could not do what was asked. The message is for logs only; clients see
/// `inbox_unavailable`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum InboxError {
    /// The queue did not answer within the inbox's [`timeout`](Inbox::timeout).
    Timeout,
    /// The queue could not be reached or answered with an error.
    #[non_exhaustive]
    Unavailable {
        /// What went wrong.
        message: String,
    },
    /// The inbox holds as many events as it may ([`max_events`](Inbox::max_events),
    /// [`max_bytes`](Inbox::max_bytes)).
    Full,
}

impl InboxError {
    #[cfg(feature = "redis")]
    pub(crate) fn unavailable(message: impl fmt::Display) -> Self {
        Self::Unavailable {
            message: message.to_string(),
        }
    }
}

impl fmt::Display for InboxError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Timeout => f.write_str("inbox timed out"),
            Self::Unavailable { message } => write!(f, "inbox unavailable: {message}"),
            Self::Full => f.write_str("inbox full"),
        }
    }
}

impl std::error::Error for InboxError {}

/// How many events an inbox holds, by where they are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Depth {
    queued: usize,
    retrying: usize,
    dead: usize,
}

impl Depth {
    /// Waiting for a worker or being handled.
    #[must_use]
    pub fn queued(&self) -> usize {
        self.queued
    }

    /// Failed, waiting for their next attempt.
    #[must_use]
    pub fn retrying(&self) -> usize {
        self.retrying
    }

    /// Out of attempts: dead letters.
    #[must_use]
    pub fn dead(&self) -> usize {
        self.dead
    }
}

/// The bounds of an inbox, given to the queue with each write.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    pub(crate) max_events: usize,
    pub(crate) max_bytes: usize,
}

/// A durable queue of verified events: where [`ingest`](Self::ingest) puts them and
/// [`Worker`]s take them. Cheap to clone; clones share the queue.
///
/// See the [module docs](self).
#[derive(Clone)]
pub struct Inbox {
    queue: Queue,
    limits: Limits,
    timeout: Duration,
    retry_after: Duration,
    done_ttl: Duration,
}

#[derive(Clone)]
enum Queue {
    Memory(Arc<memory::Memory>),
    #[cfg(feature = "redis")]
    Redis(Arc<redis::Redis>),
}

/// A worker's connection for waiting on new events.
#[derive(Debug, Clone)]
pub(crate) enum Reader {
    Memory,
    #[cfg(feature = "redis")]
    Redis(redis::Reader),
}

impl Inbox {
    /// The default time limit of one queue call.
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(1);

    /// An inbox in this process's memory, holding at most 10,000 events and 64 MiB of bodies
    /// by default (dead letters included). Its events are **lost when the process exits**: for
    /// development and tests.
    #[must_use]
    pub fn memory() -> Self {
        Self::with_queue(
            Queue::Memory(Arc::default()),
            Limits {
                max_events: 10_000,
                max_bytes: 64 << 20,
            },
        )
    }

    /// An inbox on Redis Streams at `url` (`redis://[:password@]host:port/db`), its keys under
    /// `namespace` (each inbox its own). Unbounded by default: a queued event is never dropped;
    /// see [`max_events`](Self::max_events). The connection is made on first use, so Redis need
    /// not be up yet.
    ///
    /// Redis 6.2 or later. Run it with persistence (`appendonly yes`) for events to survive its
    /// restart.
    ///
    /// # Errors
    ///
    /// [`ConfigError::InvalidStore`] when the URL cannot be used.
    #[cfg(feature = "redis")]
    pub fn redis(url: &str, namespace: &str) -> Result<Self, ConfigError> {
        let queue = Queue::Redis(Arc::new(redis::Redis::new(url, namespace)?));
        Ok(Self::with_queue(
            queue,
            Limits {
                max_events: 0,
                max_bytes: usize::MAX,
            },
        ))
    }

    fn with_queue(queue: Queue, limits: Limits) -> Self {
        Self {
            queue,
            limits,
            timeout: Self::DEFAULT_TIMEOUT,
            retry_after: Duration::from_secs(5),
            done_ttl: Duration::from_secs(24 * 3600),
        }
    }

    /// The most events held (Redis: the length of the stream of waiting and running events;
    /// `0`, the Redis default, for no bound). A full inbox refuses new events (503); it never
    /// drops queued ones.
    #[must_use]
    pub fn max_events(mut self, max: usize) -> Self {
        self.limits.max_events = match self.queue {
            Queue::Memory(_) => max.max(1),
            #[cfg(feature = "redis")]
            Queue::Redis(_) => max,
        };
        self
    }

    /// The most bytes of bodies the memory inbox holds (default 64 MiB). Ignored by Redis.
    #[must_use]
    pub fn max_bytes(mut self, max: usize) -> Self {
        if matches!(self.queue, Queue::Memory(_)) {
            self.limits.max_bytes = max;
        }
        self
    }

    /// The time limit of one queue call (default 1 s): a write that takes longer is refused
    /// with 503.
    #[must_use]
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The `Retry-After` of the 503 answered when the inbox cannot take an event (default 5 s).
    #[must_use]
    pub fn retry_after(mut self, retry_after: Duration) -> Self {
        self.retry_after = retry_after;
        self
    }

    /// How long the key of an event processed successfully is remembered, so that the same
    /// event queued again is not handled twice (default 24 h).
    #[must_use]
    pub fn done_ttl(mut self, ttl: Duration) -> Self {
        self.done_ttl = ttl;
        self
    }

    /// The service that queues the verified events of `endpoint`: the handler behind a
    /// [`WebhookLayer`](crate::WebhookLayer) (or the verification layers). `endpoint` names
    /// the events' origin for the workers and the metrics: use the stack's
    /// [`endpoint`](crate::WebhookBuilder::endpoint) name.
    #[must_use]
    pub fn ingest(&self, endpoint: &str) -> Ingest {
        Ingest::new(self.clone(), endpoint)
    }

    /// `memory` or `redis`.
    #[must_use]
    pub fn name(&self) -> &'static str {
        match self.queue {
            Queue::Memory(_) => "memory",
            #[cfg(feature = "redis")]
            Queue::Redis(_) => "redis",
        }
    }

    /// Queues `event`. Answers `false`, queuing nothing, when an event with its
    /// [`key`](Event::key) is held already (waiting, in progress, retrying or dead) or was
    /// processed within [`done_ttl`](Self::done_ttl): a write retried because its answer was
    /// lost queues the event once.
    ///
    /// # Errors
    ///
    /// [`InboxError`] when the queue cannot take it; nothing is queued then, unless the queue
    /// stored it and its answer was lost (Redis stopping at that moment), which a retry
    /// resolves as above.
    pub async fn push(&self, event: Event) -> Result<bool, InboxError> {
        match &self.queue {
            Queue::Memory(memory) => memory.push(event, self.limits),
            #[cfg(feature = "redis")]
            Queue::Redis(redis) => {
                let push = redis.push(&event, self.limits.max_events, self.done_ttl);
                self.timed(push).await
            }
        }
    }

    /// The dead letters, oldest first: each event with its [`attempts`](Event::attempts) and
    /// [`last_error`](Event::last_error).
    ///
    /// # Errors
    ///
    /// [`InboxError`] when the queue cannot be read.
    pub async fn dead_letters(&self) -> Result<Vec<Event>, InboxError> {
        match &self.queue {
            Queue::Memory(memory) => Ok(memory.dead_letters()),
            #[cfg(feature = "redis")]
            Queue::Redis(redis) => self.timed(redis.dead_letters()).await,
        }
    }

    /// Puts the dead letters whose event id (or entry id) is `id` back in the queue with fresh
    /// attempts; answers how many.
    ///
    /// # Errors
    ///
    /// [`InboxError`] when the queue cannot be used.
    pub async fn retry_dead(&self, id: &str) -> Result<usize, InboxError> {
        self.revive(Some(id)).await
    }

    /// Puts every dead letter back in the queue with fresh attempts; answers how many.
    ///
    /// # Errors
    ///
    /// [`InboxError`] when the queue cannot be used.
    pub async fn retry_all_dead(&self) -> Result<usize, InboxError> {
        self.revive(None).await
    }

    async fn revive(&self, id: Option<&str>) -> Result<usize, InboxError> {
        match &self.queue {
            Queue::Memory(memory) => Ok(memory.revive(id)),
            #[cfg(feature = "redis")]
            Queue::Redis(redis) => {
                let dead = self.timed(redis.dead_letters()).await?;
                let matching =
                    |e: &&Event| id.is_none_or(|id| e.entry_id() == id || e.id() == Some(id));
                let entries: Vec<&str> =
                    dead.iter().filter(matching).map(Event::entry_id).collect();
                self.timed(redis.revive(&entries)).await
            }
        }
    }

    /// How many events the inbox holds, by where they are.
    ///
    /// # Errors
    ///
    /// [`InboxError`] when the queue cannot be read.
    pub async fn depth(&self) -> Result<Depth, InboxError> {
        match &self.queue {
            Queue::Memory(memory) => Ok(memory.depth()),
            #[cfg(feature = "redis")]
            Queue::Redis(redis) => self.timed(redis.depth()).await,
        }
    }

    /// Whether the queue answers now, for health checks (Redis: `PING` within the timeout).
    ///
    /// # Errors
    ///
    /// [`InboxError`] when it does not.
    pub async fn ping(&self) -> Result<(), InboxError> {
        match &self.queue {
            Queue::Memory(_) => Ok(()),
            #[cfg(feature = "redis")]
            Queue::Redis(redis) => self.timed(redis.ping()).await,
        }
    }

    #[cfg(feature = "redis")]
    async fn timed<T>(
        &self,
        call: impl std::future::Future<Output = Result<T, InboxError>>,
    ) -> Result<T, InboxError> {
        tokio::time::timeout(self.timeout, call)
            .await
            .unwrap_or(Err(InboxError::Timeout))
    }

    // What the workers do, whichever the queue.

    /// Readies the queue for workers, and a connection to wait on it.
    #[cfg_attr(not(feature = "redis"), allow(unused_variables))]
    pub(crate) async fn reader(&self, wait: Duration) -> Result<Reader, InboxError> {
        match &self.queue {
            Queue::Memory(_) => Ok(Reader::Memory),
            #[cfg(feature = "redis")]
            Queue::Redis(redis) => {
                self.timed(redis.create_group()).await?;
                Ok(Reader::Redis(redis.reader(wait)?))
            }
        }
    }

    /// Up to `max` events for `consumer`, waiting at most `wait` for the first.
    #[cfg_attr(not(feature = "redis"), allow(unused_variables))]
    pub(crate) async fn take(
        &self,
        reader: &Reader,
        consumer: &str,
        max: usize,
        wait: Duration,
    ) -> Result<Vec<Event>, InboxError> {
        match (&self.queue, reader) {
            (Queue::Memory(memory), _) => Ok(memory.take(max, wait).await),
            #[cfg(feature = "redis")]
            (Queue::Redis(redis), Reader::Redis(reader)) => {
                let take = redis.take(reader, consumer, max, wait);
                tokio::time::timeout(wait + self.timeout, take)
                    .await
                    .unwrap_or(Err(InboxError::Timeout))
            }
            #[cfg(feature = "redis")]
            (Queue::Redis(_), Reader::Memory) => Ok(Vec::new()),
        }
    }

    /// Events whose worker stopped (idle for `idle`), taken over by `consumer`, from the
    /// cursor `start`; and the next cursor. None in memory: its workers live in this process.
    #[cfg_attr(not(feature = "redis"), allow(unused_variables))]
    pub(crate) async fn reclaim(
        &self,
        consumer: &str,
        idle: Duration,
        start: &str,
        max: usize,
    ) -> Result<(String, Vec<Event>), InboxError> {
        match &self.queue {
            Queue::Memory(_) => Ok((start.to_owned(), Vec::new())),
            #[cfg(feature = "redis")]
            Queue::Redis(redis) => self.timed(redis.reclaim(consumer, idle, start, max)).await,
        }
    }

    /// Processed: out of the queue, its key remembered.
    pub(crate) async fn ack(&self, event: &Event) -> Result<(), InboxError> {
        match &self.queue {
            Queue::Memory(memory) => {
                memory.ack(event, self.done_ttl, self.limits);
                Ok(())
            }
            #[cfg(feature = "redis")]
            Queue::Redis(redis) => self.timed(redis.ack(event, self.done_ttl)).await,
        }
    }

    /// Back in the queue after `delay`, or a dead letter for `None`, with the attempts and
    /// error `event` holds; `false` when `consumer` no longer holds it.
    #[cfg_attr(not(feature = "redis"), allow(unused_variables))]
    pub(crate) async fn settle(
        &self,
        event: &Event,
        consumer: &str,
        delay: Option<Duration>,
    ) -> Result<bool, InboxError> {
        match &self.queue {
            Queue::Memory(memory) => Ok(match delay {
                Some(delay) => memory.retry(event, delay),
                None => memory.bury(event),
            }),
            #[cfg(feature = "redis")]
            Queue::Redis(redis) => self.timed(redis.settle(event, consumer, delay)).await,
        }
    }

    /// Keeps `consumer`'s hold on `event` while its handler runs; `false` when it lost it.
    #[cfg_attr(not(feature = "redis"), allow(unused_variables))]
    pub(crate) async fn touch(&self, event: &Event, consumer: &str) -> Result<bool, InboxError> {
        match &self.queue {
            Queue::Memory(_) => Ok(true),
            #[cfg(feature = "redis")]
            Queue::Redis(redis) => self.timed(redis.touch(event, consumer)).await,
        }
    }
}

impl fmt::Debug for Inbox {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Inbox")
            .field("queue", &self.name())
            .field("limits", &self.limits)
            .field("timeout", &self.timeout)
            .field("retry_after", &self.retry_after)
            .field("done_ttl", &self.done_ttl)
            .finish()
    }
}
