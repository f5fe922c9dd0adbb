//! The stored event: what the inbox keeps of a verified delivery and hands to the workers.

use std::fmt;
use std::net::IpAddr;
use std::time::SystemTime;
#[cfg(feature = "redis")]
use std::time::{Duration, UNIX_EPOCH};

use bytes::Bytes;

/// A verified event as the [inbox](super) stored it, handed to the worker's handler.
///
/// It holds the exact body that was verified and what verification learned, so the handler
/// needs nothing from the request. [`key`](Self::key) identifies the event for idempotency.
///
/// ```
/// use tower_webhook::inbox::Event;
///
/// let event = Event::builder(r#"{"type":"invoice.paid","amount":3}"#)
///     .id("msg_1")
///     .event_type("invoice.paid")
///     .endpoint("/webhook")
///     .build();
/// assert_eq!(event.id(), Some("msg_1"));
/// assert_eq!(event.attempt(), 1);
///
/// #[derive(serde::Deserialize)]
/// struct Invoice { amount: u64 }
/// assert_eq!(event.json::<Invoice>()?.amount, 3);
/// # Ok::<(), serde_json::Error>(())
/// ```
#[derive(Clone)]
pub struct Event {
    /// The queue's own id of this entry: a stream entry id, or a counter in memory.
    pub(crate) entry: Box<str>,
    pub(crate) key: Box<str>,
    pub(crate) body: Bytes,
    pub(crate) id: Option<Box<str>>,
    pub(crate) event_type: Option<Box<str>>,
    pub(crate) timestamp: Option<u64>,
    pub(crate) scheme: Box<str>,
    pub(crate) endpoint: Box<str>,
    pub(crate) client: Option<IpAddr>,
    pub(crate) received: SystemTime,
    /// Attempts made before this one.
    pub(crate) attempts: u32,
    pub(crate) last_error: Option<Box<str>>,
}

impl Event {
    /// An event with this body and nothing else known, to build by hand: for tests of a
    /// handler, or to queue an event that came another way ([`Inbox::push`](super::Inbox::push)).
    pub fn builder(body: impl Into<Bytes>) -> EventBuilder {
        EventBuilder {
            event: Self {
                entry: "".into(),
                key: "".into(),
                body: body.into(),
                id: None,
                event_type: None,
                timestamp: None,
                scheme: "-".into(),
                endpoint: "-".into(),
                client: None,
                received: SystemTime::now(),
                attempts: 0,
                last_error: None,
            },
        }
    }

    /// The exact body that was verified.
    #[must_use]
    pub fn body(&self) -> &Bytes {
        &self.body
    }

    /// The body deserialized as `T` (JSON).
    ///
    /// # Errors
    ///
    /// When the body does not fit `T`.
    pub fn json<T: serde::de::DeserializeOwned>(&self) -> Result<T, serde_json::Error> {
        serde_json::from_slice(&self.body)
    }

    /// The event id the sender gave, if any (see [`Verified::id`](crate::Verified::id)).
    #[must_use]
    pub fn id(&self) -> Option<&str> {
        self.id.as_deref()
    }

    /// What identifies this event for idempotency: the endpoint and the signed event id, or a
    /// digest of what was signed when the id is not signed (as the
    /// [replay layer](crate::replay) keys it). Record it with your side effects to make a
    /// handler idempotent: see [the inbox docs](super#delivery-at-least-once).
    #[must_use]
    pub fn key(&self) -> &str {
        &self.key
    }

    /// The event type, if the sender gave one (see
    /// [`Verified::event_type`](crate::Verified::event_type)).
    #[must_use]
    pub fn event_type(&self) -> Option<&str> {
        self.event_type.as_deref()
    }

    /// The signed timestamp, Unix seconds, for schemes that sign one.
    #[must_use]
    pub fn timestamp(&self) -> Option<u64> {
        self.timestamp
    }

    /// The scheme that verified it ([`SchemeKind::as_str`](crate::scheme::SchemeKind::as_str)).
    #[must_use]
    pub fn scheme(&self) -> &str {
        &self.scheme
    }

    /// The endpoint that received it.
    #[must_use]
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// The client's address, as the stack resolved it.
    #[must_use]
    pub fn client(&self) -> Option<IpAddr> {
        self.client
    }

    /// When the receiver stored it (millisecond precision).
    #[must_use]
    pub fn received_at(&self) -> SystemTime {
        self.received
    }

    /// Which attempt this is, from 1. An attempt cut short by a worker that stopped counts.
    #[must_use]
    pub fn attempt(&self) -> u32 {
        self.attempts.saturating_add(1)
    }

    /// How many attempts were made before this one; for a dead letter, all of them.
    #[must_use]
    pub fn attempts(&self) -> u32 {
        self.attempts
    }

    /// Why the previous attempt failed, if one did.
    #[must_use]
    pub fn last_error(&self) -> Option<&str> {
        self.last_error.as_deref()
    }

    /// The queue's own id of this entry (a Redis stream entry id), unique among the queued
    /// events.
    #[must_use]
    pub fn entry_id(&self) -> &str {
        &self.entry
    }

    /// Approximate memory held, for the memory inbox's byte bound.
    pub(crate) fn size(&self) -> usize {
        self.body.len() + self.key.len() + 256
    }

    /// Gives `field` each field as stored in a Redis stream entry, by name; `attempts` and
    /// `error` are always there.
    #[cfg(feature = "redis")]
    pub(crate) fn write_fields(&self, mut field: impl FnMut(&'static str, &[u8])) {
        field("key", self.key.as_bytes());
        field("endpoint", self.endpoint.as_bytes());
        field("scheme", self.scheme.as_bytes());
        field("received", millis(self.received).to_string().as_bytes());
        field("attempts", self.attempts.to_string().as_bytes());
        field("error", self.last_error().unwrap_or("").as_bytes());
        field("body", &self.body);
        if let Some(id) = self.id() {
            field("id", id.as_bytes());
        }
        if let Some(t) = self.event_type() {
            field("type", t.as_bytes());
        }
        if let Some(ts) = self.timestamp {
            field("ts", ts.to_string().as_bytes());
        }
        if let Some(client) = self.client {
            field("client", client.to_string().as_bytes());
        }
    }

    /// An event from a stream entry's fields; `None` when one is missing or unreadable.
    #[cfg(feature = "redis")]
    pub(crate) fn from_fields(
        entry: &str,
        mut field: impl FnMut(&str) -> Option<Vec<u8>>,
    ) -> Option<Self> {
        let mut text = |name: &str| field(name).map(String::from_utf8).transpose().ok();
        let number = |t: Option<String>| t.map(|t| t.parse::<u64>()).transpose().ok();
        let key = text("key")??;
        let endpoint = text("endpoint")??;
        let scheme = text("scheme")??;
        let received = number(text("received")?)??;
        let attempts = number(text("attempts")?)??;
        let error = text("error")?.filter(|e| !e.is_empty());
        let id = text("id")?;
        let event_type = text("type")?;
        let timestamp = number(text("ts")?)?;
        let client = text("client")?.map(|c| c.parse()).transpose().ok()?;
        let body = field("body")?;
        Some(Self {
            entry: entry.into(),
            key: key.into(),
            body: body.into(),
            id: id.map(Into::into),
            event_type: event_type.map(Into::into),
            timestamp,
            scheme: scheme.into(),
            endpoint: endpoint.into(),
            client,
            received: UNIX_EPOCH + Duration::from_millis(received),
            attempts: u32::try_from(attempts).unwrap_or(u32::MAX),
            last_error: error.map(Into::into),
        })
    }
}

/// Unix milliseconds.
#[cfg(feature = "redis")]
fn millis(time: SystemTime) -> u128 {
    time.duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis()
}

impl fmt::Debug for Event {
    /// Never the body: only its length.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Event")
            .field("entry", &self.entry)
            .field("id", &self.id)
            .field("event_type", &self.event_type)
            .field("endpoint", &self.endpoint)
            .field("attempt", &self.attempt())
            .field("body_len", &self.body.len())
            .finish_non_exhaustive()
    }
}

/// Builds an [`Event`] by hand; see [`Event::builder`].
#[derive(Debug)]
#[must_use]
pub struct EventBuilder {
    event: Event,
}

impl EventBuilder {
    /// The sender's event id. Also the idempotency [`key`](Event::key) unless one is given.
    pub fn id(mut self, id: &str) -> Self {
        self.event.id = Some(id.into());
        self
    }

    /// The event type.
    pub fn event_type(mut self, event_type: &str) -> Self {
        self.event.event_type = Some(event_type.into());
        self
    }

    /// The endpoint it arrived at.
    pub fn endpoint(mut self, endpoint: &str) -> Self {
        self.event.endpoint = endpoint.into();
        self
    }

    /// The idempotency key, when the id is not one.
    pub fn key(mut self, key: &str) -> Self {
        self.event.key = key.into();
        self
    }

    /// The event.
    #[must_use]
    pub fn build(mut self) -> Event {
        if self.event.key.is_empty() {
            self.event.key = self.event.id.clone().unwrap_or_default();
        }
        self.event
    }
}
