//! What the one-call stack tells operators: metrics, logs and a span per request.
//!
//! # Metrics
//!
//! With the `metrics` feature (on by default) the [stack](crate::stack) records through the
//! [`metrics`](https://docs.rs/metrics) facade, so any recorder (Prometheus, StatsD, ...)
//! collects them; without one installed they cost next to nothing. **Install the recorder
//! (globally, as exporters do) before building the stack**: each stack registers its series
//! once, when [`WebhookBuilder::build`](crate::WebhookBuilder::build) runs, and they start at
//! zero; only the series by event type (and those of a key added later) are registered when
//! they first occur.
//!
//! | name | kind | labels | what |
//! |---|---|---|---|
//! | `webhook_requests_total` | counter | `endpoint`, `scheme`, `outcome` | every answer, by outcome |
//! | `webhook_rejections_total` | counter | `endpoint`, `scheme`, `code` | the `rejected` answers, by their [`code`](crate::Rejection::code) |
//! | `webhook_handler_duration_seconds` | histogram | `endpoint`, `scheme` | the handler's time, when it ran |
//! | `webhook_verified_key_total` | counter | `endpoint`, `scheme`, `key` | which secret verified (`0` the first): when the old secret of a rotation stops appearing, it can go |
//! | `webhook_replay_store_errors_total` | counter | `store` (`memory`, `redis`, or the store's [`name`](crate::replay::ReplayStore::name)) | failed replay-store calls |
//! | `webhook_events_total` | counter | `endpoint`, `scheme`, `event_type`, `outcome` | verified deliveries by event type, when [opted in](crate::WebhookBuilder::metrics_event_types) |
//! | `webhook_event_handler_duration_seconds` | histogram | `endpoint`, `scheme`, `event_type` | the handler's time by event type, when opted in |
//! | `webhook_inbox_attempts_total` | counter | `endpoint`, `result` | the [inbox](crate::inbox) workers' attempts: `success`, `failure`, `lost` (cut short by a worker that stopped) |
//! | `webhook_inbox_dead_total` | counter | `endpoint` | events that became dead letters |
//! | `webhook_inbox_handler_duration_seconds` | histogram | `endpoint` | the workers' handler time |
//! | `webhook_inbox_depth` | gauge | `inbox` (`memory`, `redis`), `state` (`queued`, `retrying`, `dead`) | events held, recorded each second by each running worker |
//! | `webhook_inbox_breaker_open` | gauge | `inbox` | 1 while a worker's circuit breaker is open or half open |
//! | `webhook_inbox_errors_total` | counter | `inbox` | failed calls of the workers to the queue |
//!
//! `outcome` is one of `accepted` (the handler answered 2xx), `queued` (the
//! [inbox](crate::inbox) stored the event for its workers), `handler_error` (the handler
//! answered anything else, or failed), `rejected` (a stage refused; the code is in
//! `webhook_rejections_total`, so the two add up), `duplicate`, `in_flight` and `ignored` (an
//! event type not subscribed to). `endpoint` is the stack's
//! [`endpoint`](crate::WebhookBuilder::endpoint) name (the path, for a config file), `scheme`
//! the [`SchemeKind`](crate::scheme::SchemeKind) name. No label holds an event id, an address
//! or anything else a sender chooses, so the number of series stays bounded. Event types are
//! the sender's choice, so they are labels only in the two metrics by event type, and only
//! the types a [subscription](crate::events::Subscription) given to
//! [`metrics_event_types`](crate::WebhookBuilder::metrics_event_types) takes: any other type
//! is counted as `other`, an event without one as `-`.
//!
//! # Logs
//!
//! With the `tracing` feature (on by default), every request runs in one `webhook` span (at
//! INFO, with the `endpoint`, and the `event_id` once verified), so a subscriber can add its
//! own fields and the handler's own events are tied to the delivery. Inside it:
//!
//! - every refusal is one event, `webhook rejected` (INFO; target `tower_webhook`), with its
//!   `status`, `code`, `reason`, and the `endpoint`, `scheme`, `client` address and claimed
//!   `event_id` when known, whichever stage refused;
//! - every accepted event is one event, `webhook accepted` (INFO), the audit record: `event_id`,
//!   `event_type`, `scheme`, `endpoint`, `key`, `client`, `bytes`, `handler_ms`, and `queued`
//!   (whether it went to the [inbox](crate::inbox)). Never the body, never a secret;
//! - a handler that fails is one event, `webhook handler failed` (WARN), with its `status`.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use http::{Extensions, HeaderMap, Response};

use crate::client_ip::ClientIp;
#[cfg(feature = "metrics")]
use crate::events::Subscription;
use crate::inbox::Queued;
use crate::{Rejection, Verified, Verifier};

/// Who and what a log line is about: the fields every rejection event carries, each `-` when
/// unknown.
#[derive(Debug, Default, Clone, Copy)]
#[cfg_attr(not(feature = "tracing"), allow(dead_code))]
pub(crate) struct About<'a> {
    pub(crate) endpoint: Option<&'a str>,
    pub(crate) scheme: Option<&'static str>,
    pub(crate) client: Option<IpAddr>,
    pub(crate) event_id: Option<&'a str>,
}

impl<'a> About<'a> {
    /// What a request says, verified by `verifier` when given: the client address, the
    /// scheme, and the verified event id, or the one its headers claim.
    pub(crate) fn request(
        headers: &'a HeaderMap,
        extensions: &'a Extensions,
        verifier: Option<&Verifier>,
    ) -> Self {
        let mut about = Self::extensions(extensions);
        if let Some(verifier) = verifier {
            about.scheme = Some(verifier.scheme().kind().as_str());
            about.event_id = about.event_id.or_else(|| verifier.claimed_id(headers));
        }
        about
    }

    /// What a request's extensions say: the client address, and the verified event if any.
    pub(crate) fn extensions(extensions: &'a Extensions) -> Self {
        let verified = extensions.get::<Verified>();
        Self {
            endpoint: None,
            scheme: verified.map(|v| v.scheme().as_str()),
            client: extensions.get::<ClientIp>().map(|c| c.ip()),
            event_id: verified.and_then(Verified::id),
        }
    }
}

/// Shows the value, or `-` without one.
#[cfg(feature = "tracing")]
pub(crate) struct OrDash<T>(pub(crate) Option<T>);

#[cfg(feature = "tracing")]
impl<T: std::fmt::Display> std::fmt::Display for OrDash<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.0 {
            Some(value) => value.fmt(f),
            None => f.write_str("-"),
        }
    }
}

/// How a request ended, the `outcome` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    Accepted,
    HandlerError,
    Rejected,
    Duplicate,
    InFlight,
    Ignored,
    Queued,
}

impl Outcome {
    #[cfg(feature = "metrics")]
    const ALL: [Self; 7] = [
        Self::Accepted,
        Self::HandlerError,
        Self::Rejected,
        Self::Duplicate,
        Self::InFlight,
        Self::Ignored,
        Self::Queued,
    ];

    #[cfg(feature = "metrics")]
    fn as_str(self) -> &'static str {
        match self {
            Self::Accepted => "accepted",
            Self::HandlerError => "handler_error",
            Self::Rejected => "rejected",
            Self::Duplicate => "duplicate",
            Self::InFlight => "in_flight",
            Self::Ignored => "ignored",
            Self::Queued => "queued",
        }
    }

    /// The outcome of an answer: a rejection's kind, else the handler's status.
    fn of<B, E>(result: &Result<Response<B>, E>) -> Self {
        match result {
            Ok(response) => match response.extensions().get::<Rejection>() {
                Some(Rejection::Duplicate) => Self::Duplicate,
                Some(Rejection::InFlight { .. }) => Self::InFlight,
                Some(Rejection::Ignored) => Self::Ignored,
                Some(_) => Self::Rejected,
                None if response.extensions().get::<Queued>().is_some() => Self::Queued,
                None if response.status().is_success() => Self::Accepted,
                None => Self::HandlerError,
            },
            Err(_) => Self::HandlerError,
        }
    }
}

/// One stack's labels and metric handles, registered when the stack is built.
#[derive(Debug)]
pub(crate) struct Observer {
    endpoint: Box<str>,
    scheme: &'static str,
    #[cfg(feature = "metrics")]
    metrics: Handles,
    /// The event types that are labels of their own.
    #[cfg(feature = "metrics")]
    event_types: Option<Subscription>,
}

#[cfg(feature = "metrics")]
#[derive(Debug)]
struct Handles {
    outcomes: [metrics::Counter; Outcome::ALL.len()],
    rejections: [metrics::Counter; Rejection::CODES.len()],
    handler: metrics::Histogram,
    keys: Vec<metrics::Counter>,
}

impl Observer {
    /// Registers the series of a stack at `endpoint` verifying `scheme` with `keys` secrets.
    pub(crate) fn new(endpoint: &str, scheme: &'static str, keys: usize) -> Self {
        #[cfg(not(feature = "metrics"))]
        let _ = keys;
        Self {
            endpoint: endpoint.into(),
            scheme,
            #[cfg(feature = "metrics")]
            metrics: Handles::register(endpoint, scheme, keys),
            #[cfg(feature = "metrics")]
            event_types: None,
        }
    }

    /// Also counts the event types `types` takes, each under its own label.
    #[cfg(feature = "metrics")]
    pub(crate) fn event_types(mut self, types: Option<Subscription>) -> Self {
        self.event_types = types;
        self
    }

    /// The `event_type` label of `verified`, if event types are labels.
    #[cfg(feature = "metrics")]
    fn event_type_label(&self, verified: &Verified) -> Option<Box<str>> {
        let types = self.event_types.as_ref()?;
        Some(match verified.event_type() {
            None => "-".into(),
            Some(t) if types.accepts(Some(t)) => t.into(),
            Some(_) => "other".into(),
        })
    }

    /// Counts a verified delivery of the type `label` that ended with `outcome`.
    #[cfg(feature = "metrics")]
    fn finish_typed(&self, label: Box<str>, outcome: Outcome, handler_time: Option<Duration>) {
        let labels = |outcome: Option<Outcome>| {
            let mut labels = vec![
                metrics::Label::new("endpoint", self.endpoint.to_string()),
                metrics::Label::new("scheme", self.scheme),
                metrics::Label::new("event_type", label.to_string()),
            ];
            labels.extend(outcome.map(|o| metrics::Label::new("outcome", o.as_str())));
            labels
        };
        metrics::counter!("webhook_events_total", labels(Some(outcome))).increment(1);
        if let Some(time) = handler_time {
            metrics::histogram!("webhook_event_handler_duration_seconds", labels(None))
                .record(time.as_secs_f64());
        }
    }

    pub(crate) fn endpoint(&self) -> &str {
        &self.endpoint
    }

    pub(crate) fn scheme(&self) -> &'static str {
        self.scheme
    }

    /// Counts the key that verified a request.
    pub(crate) fn verified(&self, key_index: usize) {
        #[cfg(feature = "metrics")]
        match self.metrics.keys.get(key_index) {
            Some(counter) => counter.increment(1),
            // A key added after the stack was built.
            None => key_counter(&self.endpoint, self.scheme, key_index).increment(1),
        }
        #[cfg(not(feature = "metrics"))]
        let _ = key_index;
    }
}

#[cfg(feature = "metrics")]
fn key_counter(endpoint: &str, scheme: &'static str, key: usize) -> metrics::Counter {
    metrics::counter!(
        "webhook_verified_key_total",
        "endpoint" => endpoint.to_owned(),
        "scheme" => scheme,
        "key" => key.to_string()
    )
}

#[cfg(feature = "metrics")]
impl Handles {
    fn register(endpoint: &str, scheme: &'static str, keys: usize) -> Self {
        describe();
        let labels = |name: &'static str, value: &'static str| {
            vec![
                metrics::Label::new("endpoint", endpoint.to_owned()),
                metrics::Label::new("scheme", scheme),
                metrics::Label::new(name, value),
            ]
        };
        Self {
            outcomes: Outcome::ALL.map(|o| {
                metrics::counter!("webhook_requests_total", labels("outcome", o.as_str()))
            }),
            rejections: Rejection::CODES
                .map(|code| metrics::counter!("webhook_rejections_total", labels("code", code))),
            handler: metrics::histogram!(
                "webhook_handler_duration_seconds",
                "endpoint" => endpoint.to_owned(),
                "scheme" => scheme
            ),
            keys: (0..keys)
                .map(|k| key_counter(endpoint, scheme, k))
                .collect(),
        }
    }

    fn finish(&self, outcome: Outcome, code: Option<&str>, handler_time: Option<Duration>) {
        let index = Outcome::ALL.iter().position(|o| *o == outcome);
        if let Some(counter) = index.and_then(|i| self.outcomes.get(i)) {
            counter.increment(1);
        }
        if outcome == Outcome::Rejected {
            let index = code.and_then(|code| Rejection::CODES.iter().position(|c| *c == code));
            if let Some(counter) = index.and_then(|i| self.rejections.get(i)) {
                counter.increment(1);
            }
        }
        if let Some(time) = handler_time {
            self.handler.record(time.as_secs_f64());
        }
    }
}

/// The metrics' units and help texts, for recorders that show them.
#[cfg(feature = "metrics")]
fn describe() {
    use metrics::Unit;
    metrics::describe_counter!(
        "webhook_requests_total",
        Unit::Count,
        "Webhook deliveries answered, by outcome."
    );
    metrics::describe_counter!(
        "webhook_rejections_total",
        Unit::Count,
        "Webhook deliveries refused, by rejection code."
    );
    metrics::describe_histogram!(
        "webhook_handler_duration_seconds",
        Unit::Seconds,
        "Time the webhook handler took."
    );
    metrics::describe_counter!(
        "webhook_verified_key_total",
        Unit::Count,
        "Verified deliveries, by the index of the secret that matched."
    );
    metrics::describe_counter!(
        "webhook_replay_store_errors_total",
        Unit::Count,
        "Replay store calls that failed."
    );
    metrics::describe_counter!(
        "webhook_events_total",
        Unit::Count,
        "Verified webhook deliveries answered, by event type and outcome."
    );
    metrics::describe_histogram!(
        "webhook_event_handler_duration_seconds",
        Unit::Seconds,
        "Time the webhook handler took, by event type."
    );
}

/// The counter of a replay store's failed calls.
#[cfg(feature = "metrics")]
pub(crate) fn store_errors(store: &'static str) -> metrics::Counter {
    describe();
    metrics::counter!("webhook_replay_store_errors_total", "store" => store)
}

/// The span of one request of the stack, `webhook` with its `endpoint` and (once verified)
/// its `event_id`; none outside the stack, without the `tracing` feature, or when no
/// subscriber wants it.
#[derive(Debug, Default)]
pub(crate) struct RequestSpan {
    #[cfg(feature = "tracing")]
    span: Option<tracing::Span>,
}

impl RequestSpan {
    pub(crate) fn new(observer: &Observer) -> Self {
        #[cfg(not(feature = "tracing"))]
        let _ = observer;
        Self {
            // Made only for a subscriber that wants it.
            #[cfg(feature = "tracing")]
            span: tracing::span_enabled!(target: "tower_webhook", tracing::Level::INFO).then(
                || {
                    tracing::info_span!(
                        target: "tower_webhook",
                        "webhook",
                        endpoint = observer.endpoint(),
                        event_id = tracing::field::Empty,
                    )
                },
            ),
        }
    }

    #[cfg(feature = "tracing")]
    fn is_on(&self) -> bool {
        self.span.is_some()
    }

    /// Runs `f` inside the span.
    pub(crate) fn in_scope<T>(&self, f: impl FnOnce() -> T) -> T {
        #[cfg(feature = "tracing")]
        if let Some(span) = &self.span {
            return span.in_scope(f);
        }
        f()
    }
}

/// What one request of the stack is watched by: its stack's observer, the client, the span,
/// the handler's start, and what the accepted log line will say. Inert outside the stack.
#[derive(Debug, Default)]
pub(crate) struct Watch {
    observer: Option<Arc<Observer>>,
    client: Option<IpAddr>,
    handler_started: Option<Instant>,
    /// The request runs in a span: name its event there.
    #[cfg(feature = "tracing")]
    in_span: bool,
    /// Kept for the accepted log line, only when it will be written.
    #[cfg(feature = "tracing")]
    verified: Option<Box<Verified>>,
    /// Its `event_type` label, when event types are labels.
    #[cfg(feature = "metrics")]
    event_type: Option<Box<str>>,
}

impl Watch {
    /// Watches a request of the stack of `observer`, from `client`, in `span`.
    pub(crate) fn new(
        observer: &Arc<Observer>,
        client: Option<IpAddr>,
        span: &RequestSpan,
    ) -> Self {
        #[cfg(not(feature = "tracing"))]
        let _ = span;
        Self {
            observer: Some(observer.clone()),
            client,
            handler_started: None,
            #[cfg(feature = "tracing")]
            in_span: span.is_on(),
            #[cfg(feature = "tracing")]
            verified: None,
            #[cfg(feature = "metrics")]
            event_type: None,
        }
    }

    /// `about` with what the stack knows: its endpoint and scheme, and the client.
    pub(crate) fn about<'a>(&'a self, mut about: About<'a>) -> About<'a> {
        if let Some(observer) = &self.observer {
            about.endpoint = Some(observer.endpoint());
            about.scheme = Some(observer.scheme());
        }
        about.client = about.client.or(self.client);
        about
    }

    /// Notes a verified request: counts its key, names its event in the span, and keeps it
    /// for the accepted log line if that will be written.
    pub(crate) fn verified(&mut self, verified: &Verified) {
        let Some(observer) = &self.observer else {
            return;
        };
        observer.verified(verified.key_index());
        #[cfg(feature = "metrics")]
        {
            self.event_type = observer.event_type_label(verified);
        }
        #[cfg(feature = "tracing")]
        {
            // Called inside the request's span.
            let id = if self.in_span { verified.id() } else { None };
            if let Some(id) = id {
                tracing::Span::current().record("event_id", id);
            }
            if tracing::enabled!(target: "tower_webhook", tracing::Level::WARN) {
                self.verified = Some(Box::new(verified.clone()));
            }
        }
    }

    /// The client, in the stack.
    pub(crate) fn client(&self) -> Option<IpAddr> {
        self.client
    }

    /// Notes that the handler is called now.
    pub(crate) fn handler_called(&mut self) {
        if self.observer.is_some() {
            self.handler_started = Some(Instant::now());
        }
    }

    /// How long the handler has run, if it was called.
    pub(crate) fn handler_time(&self) -> Option<Duration> {
        self.handler_started.map(|started| started.elapsed())
    }

    /// Records how the request ended: `result` is the answer, `handler_time` how long the
    /// handler ran if it did.
    pub(crate) fn finish<B, E>(
        &mut self,
        result: &Result<Response<B>, E>,
        handler_time: Option<Duration>,
    ) {
        let Some(observer) = self.observer.take() else {
            return;
        };
        let outcome = Outcome::of(result);
        #[cfg(feature = "metrics")]
        {
            let code = match result {
                Ok(response) => response
                    .extensions()
                    .get::<Rejection>()
                    .map(Rejection::code),
                Err(_) => None,
            };
            observer.metrics.finish(outcome, code, handler_time);
            if let Some(label) = self.event_type.take() {
                observer.finish_typed(label, outcome, handler_time);
            }
        }
        #[cfg(feature = "tracing")]
        self.log(&observer, outcome, result, handler_time);
        #[cfg(not(any(feature = "tracing", feature = "metrics")))]
        let _ = (observer, outcome, result, handler_time);
    }

    #[cfg(feature = "tracing")]
    fn log<B, E>(
        &self,
        observer: &Observer,
        outcome: Outcome,
        result: &Result<Response<B>, E>,
        handler_time: Option<Duration>,
    ) {
        let handler_ms = handler_time.map_or(0.0, |t| t.as_secs_f64() * 1000.0);
        let client = OrDash(self.client);
        match outcome {
            Outcome::Accepted | Outcome::Queued => {
                let Some(verified) = &self.verified else {
                    return;
                };
                tracing::info!(
                    target: "tower_webhook",
                    event_id = verified.id().unwrap_or("-"),
                    event_type = verified.event_type().unwrap_or("-"),
                    scheme = observer.scheme(),
                    endpoint = observer.endpoint(),
                    key = verified.key_index(),
                    client = %client,
                    bytes = verified.body.as_ref().map_or(0, bytes::Bytes::len),
                    handler_ms,
                    queued = outcome == Outcome::Queued,
                    "webhook accepted"
                );
            }
            Outcome::HandlerError => tracing::warn!(
                target: "tower_webhook",
                status = result.as_ref().map_or(0, |r| r.status().as_u16()),
                event_id = self.verified.as_ref().and_then(|v| v.id()).unwrap_or("-"),
                scheme = observer.scheme(),
                endpoint = observer.endpoint(),
                client = %client,
                handler_ms,
                "webhook handler failed"
            ),
            _ => {}
        }
    }
}
