//! Typed rejections: every way a layer can refuse a request, with its status code and the short
//! JSON body sent back.
//!
//! A rejection is a *response*, never a service error: the layers answer it themselves, put the
//! [`Rejection`] into the response's extensions (so outer middleware can log, count or rewrite
//! it) and emit a `tracing` event (with the `tracing` feature). The body is only
//! `{"error":"<code>"}`: never a secret, the request body, or an internal message.
//!
//! ```
//! use http::StatusCode;
//! use tower_webhook::Rejection;
//!
//! let rejection = Rejection::SignatureMismatch;
//! assert_eq!(rejection.status(), StatusCode::UNAUTHORIZED);
//! assert_eq!(rejection.code(), "signature_mismatch");
//! ```

use std::fmt;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use std::time::Duration;

use http::header::{HeaderValue, CONTENT_TYPE, RETRY_AFTER};
use http::{HeaderName, Response, StatusCode};
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;

use crate::observe::About;
#[cfg(feature = "tracing")]
use crate::observe::OrDash;

static GRPC_STATUS: HeaderName = HeaderName::from_static("grpc-status");
static GRPC_MESSAGE: HeaderName = HeaderName::from_static("grpc-message");
static RATELIMIT_LIMIT: HeaderName = HeaderName::from_static("ratelimit-limit");
static RATELIMIT_REMAINING: HeaderName = HeaderName::from_static("ratelimit-remaining");
static RATELIMIT_RESET: HeaderName = HeaderName::from_static("ratelimit-reset");

/// Why a request was refused.
///
/// Each variant maps to one status code ([`status`](Self::status)) and one stable error code
/// ([`code`](Self::code)), which is all the client sees. The variants' fields are for your logs
/// and metrics. More variants will come with more layers, so match with a wildcard arm.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Rejection {
    /// The body is larger than the configured limit (413), either announced by
    /// `Content-Length` or found while reading.
    #[non_exhaustive]
    PayloadTooLarge {
        /// The limit in bytes.
        limit: usize,
    },
    /// The whole body did not arrive within the time limit (408).
    BodyTimeout,
    /// Reading the body failed, for example the connection broke mid-body (400).
    BodyRead,
    /// A header the scheme needs is absent (401).
    #[non_exhaustive]
    MissingHeader {
        /// The header's name.
        header: HeaderName,
    },
    /// A header is present but not in the scheme's format (400).
    #[non_exhaustive]
    MalformedHeader {
        /// The header's name.
        header: HeaderName,
        /// What is wrong with it, for logs.
        reason: &'static str,
    },
    /// The signature header holds no signature of a version this scheme verifies (401).
    NoSupportedSignature,
    /// No signature matched any configured secret (401).
    SignatureMismatch,
    /// The signed timestamp is further from now than the tolerance, in either direction (401).
    #[non_exhaustive]
    TimestampOutOfTolerance {
        /// The signed timestamp, Unix seconds.
        timestamp: u64,
        /// The receiver's clock when checked, Unix seconds.
        now: u64,
    },
    /// This event was already handled (200, without calling the handler): the sender can stop
    /// retrying.
    Duplicate,
    /// This event's type is not subscribed to (200 `{"status":"ignored"}`, without calling
    /// the handler): the sender can stop retrying it.
    Ignored,
    /// The verified body does not fit the type the handler reads it as (422). Logged with the
    /// event's id and type, so that a sender's schema change shows.
    InvalidPayload,
    /// This event is being handled right now by another request (409, with `Retry-After`).
    #[non_exhaustive]
    InFlight {
        /// When to try again.
        retry_after: Duration,
    },
    /// The replay store cannot be used: unreachable, too slow, or full of live entries (503,
    /// with `Retry-After`).
    #[non_exhaustive]
    StoreUnavailable {
        /// When to try again.
        retry_after: Duration,
    },
    /// The client's address is not in the allowlist, or could not be determined (403).
    Forbidden,
    /// The request did not come over TLS (403): see [`https`](crate::https).
    HttpsRequired,
    /// The request's `Content-Type` is not one the endpoint accepts, or it has none (415).
    UnsupportedMediaType,
    /// The client failed verification too often and is in the
    /// [penalty box](crate::penalty) (429, with `Retry-After`).
    #[non_exhaustive]
    Penalized {
        /// When the box ends.
        retry_after: Duration,
    },
    /// The bodies being read already hold the whole memory budget (503, with `Retry-After`):
    /// see [`BodyBudget`](crate::body::BodyBudget).
    #[non_exhaustive]
    Overloaded {
        /// When to try again.
        retry_after: Duration,
    },
    /// The [inbox](crate::inbox) could not store the event: its queue is unreachable, too slow
    /// or full (503, with `Retry-After`). The sender should retry: a write that timed out and
    /// landed after all is not queued twice.
    #[non_exhaustive]
    InboxUnavailable {
        /// When to try again.
        retry_after: Duration,
    },
    /// The client sent more than its quota allows (429, with `Retry-After` and the
    /// `RateLimit-Limit`, `RateLimit-Remaining`, `RateLimit-Reset` headers).
    #[non_exhaustive]
    RateLimited {
        /// When a request will be allowed again.
        retry_after: Duration,
        /// The quota's burst: how many requests may come at once.
        limit: u32,
    },
    /// The layers were wired wrongly, for example an extractor used without its layer (500).
    /// Never caused by the request itself.
    #[non_exhaustive]
    Misconfigured {
        /// What is missing, for logs.
        reason: &'static str,
    },
}

/// Expands an error code into the pair `(code, JSON body)`, both `&'static str`.
macro_rules! code {
    ($c:literal) => {
        ($c, concat!("{\"error\":\"", $c, "\"}"))
    };
}

impl Rejection {
    pub(crate) fn malformed(header: &HeaderName, reason: &'static str) -> Self {
        Self::MalformedHeader {
            header: header.clone(),
            reason,
        }
    }

    pub(crate) fn missing(header: &HeaderName) -> Self {
        Self::MissingHeader {
            header: header.clone(),
        }
    }

    /// The HTTP status code this rejection answers with.
    #[must_use]
    pub fn status(&self) -> StatusCode {
        match self {
            Self::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Self::BodyTimeout => StatusCode::REQUEST_TIMEOUT,
            Self::BodyRead | Self::MalformedHeader { .. } => StatusCode::BAD_REQUEST,
            Self::MissingHeader { .. }
            | Self::NoSupportedSignature
            | Self::SignatureMismatch
            | Self::TimestampOutOfTolerance { .. } => StatusCode::UNAUTHORIZED,
            Self::Misconfigured { .. } => StatusCode::INTERNAL_SERVER_ERROR,
            Self::Duplicate | Self::Ignored => StatusCode::OK,
            Self::InvalidPayload => StatusCode::UNPROCESSABLE_ENTITY,
            Self::Forbidden | Self::HttpsRequired => StatusCode::FORBIDDEN,
            Self::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::RateLimited { .. } | Self::Penalized { .. } => StatusCode::TOO_MANY_REQUESTS,
            Self::InFlight { .. } => StatusCode::CONFLICT,
            Self::StoreUnavailable { .. }
            | Self::Overloaded { .. }
            | Self::InboxUnavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// How long the client should wait before retrying, for the refusals that say so.
    #[must_use]
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::InFlight { retry_after }
            | Self::StoreUnavailable { retry_after }
            | Self::Penalized { retry_after }
            | Self::Overloaded { retry_after }
            | Self::InboxUnavailable { retry_after }
            | Self::RateLimited { retry_after, .. } => Some(*retry_after),
            _ => None,
        }
    }

    /// The stable error code sent in the body as `{"error":"<code>"}`.
    #[must_use]
    pub fn code(&self) -> &'static str {
        self.code_and_body().0
    }

    fn code_and_body(&self) -> (&'static str, &'static str) {
        match self {
            Self::PayloadTooLarge { .. } => code!("payload_too_large"),
            Self::BodyTimeout => code!("body_timeout"),
            Self::BodyRead => code!("body_read_error"),
            Self::MissingHeader { .. } => code!("missing_header"),
            Self::MalformedHeader { .. } => code!("malformed_header"),
            Self::NoSupportedSignature => code!("no_supported_signature"),
            Self::SignatureMismatch => code!("signature_mismatch"),
            Self::TimestampOutOfTolerance { .. } => code!("timestamp_out_of_tolerance"),
            Self::Misconfigured { .. } => code!("internal_error"),
            // Not an error: the sender's delivery succeeded earlier.
            Self::Duplicate => ("duplicate", "{\"status\":\"duplicate\"}"),
            Self::Ignored => ("ignored", "{\"status\":\"ignored\"}"),
            Self::InvalidPayload => code!("invalid_payload"),
            Self::InFlight { .. } => code!("in_flight"),
            Self::StoreUnavailable { .. } => code!("store_unavailable"),
            Self::Forbidden => code!("forbidden"),
            Self::RateLimited { .. } => code!("rate_limited"),
            Self::HttpsRequired => code!("https_required"),
            Self::UnsupportedMediaType => code!("unsupported_media_type"),
            Self::Penalized { .. } => code!("too_many_failures"),
            Self::Overloaded { .. } => code!("overloaded"),
            Self::InboxUnavailable { .. } => code!("inbox_unavailable"),
        }
    }

    /// Whether the signature stage refused the request: a missing, malformed or wrong
    /// signature, or a stale timestamp. What the [penalty box](crate::penalty) counts.
    #[must_use]
    pub fn is_verification_failure(&self) -> bool {
        matches!(
            self,
            Self::MissingHeader { .. }
                | Self::MalformedHeader { .. }
                | Self::NoSupportedSignature
                | Self::SignatureMismatch
                | Self::TimestampOutOfTolerance { .. }
        )
    }

    /// The response this rejection answers with: its status, `Content-Type: application/json`,
    /// the body `{"error":"<code>"}`, and the rejection itself in the response's extensions.
    #[must_use]
    pub fn into_response<B>(self) -> Response<ResponseBody<B>> {
        let body = ResponseBody::rejection(Bytes::from_static(self.code_and_body().1.as_bytes()));
        let mut response = Response::new(body);
        *response.status_mut() = self.status();
        response
            .headers_mut()
            .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        if let Some(after) = self.retry_after() {
            // A whole number of seconds, at least 1 (RFC 9110 section 10.2.3).
            let secs = after.as_secs() + u64::from(after.subsec_nanos() > 0);
            let secs = secs.max(1);
            response
                .headers_mut()
                .insert(RETRY_AFTER, HeaderValue::from(secs));
            if let Self::RateLimited { limit, .. } = &self {
                // draft-ietf-httpapi-ratelimit-headers
                let headers = response.headers_mut();
                headers.insert(RATELIMIT_LIMIT.clone(), HeaderValue::from(*limit));
                headers.insert(RATELIMIT_REMAINING.clone(), HeaderValue::from(0u32));
                headers.insert(RATELIMIT_RESET.clone(), HeaderValue::from(secs));
            }
        }
        response.extensions_mut().insert(self);
        response
    }

    /// The gRPC status code for this rejection (as gRPC maps HTTP statuses, with 429 read as
    /// `RESOURCE_EXHAUSTED`).
    #[must_use]
    pub fn grpc_code(&self) -> u8 {
        match self.status().as_u16() {
            200 => 0,       // OK
            400 => 3,       // INVALID_ARGUMENT
            401 => 16,      // UNAUTHENTICATED
            403 => 7,       // PERMISSION_DENIED
            408 => 4,       // DEADLINE_EXCEEDED
            409 => 10,      // ABORTED
            413 | 429 => 8, // RESOURCE_EXHAUSTED
            415 | 422 => 3, // INVALID_ARGUMENT
            503 => 14,      // UNAVAILABLE
            _ => 13,        // INTERNAL
        }
    }

    /// The answer for a gRPC client: a "trailers-only" response (HTTP 200, `grpc-status` and
    /// `grpc-message` in the headers, no body), with the same `Retry-After` and rate-limit
    /// headers as [`into_response`](Self::into_response) and the rejection in its extensions.
    #[must_use]
    pub fn into_grpc_response<B>(self) -> Response<ResponseBody<B>> {
        let code = self.grpc_code();
        let message = self.code();
        let mut response = self.into_response();
        *response.status_mut() = StatusCode::OK;
        *response.body_mut() = ResponseBody::rejection(Bytes::new());
        let headers = response.headers_mut();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/grpc"));
        headers.insert(GRPC_STATUS.clone(), HeaderValue::from(u16::from(code)));
        headers.insert(GRPC_MESSAGE.clone(), HeaderValue::from_static(message));
        response
    }

    /// The codes of the refusals, every [`code`](Self::code) but `duplicate`, `in_flight` and
    /// `ignored` (answers the sender needs no alarm for).
    #[cfg(any(test, feature = "metrics"))]
    pub(crate) const CODES: [&'static str; 18] = [
        "payload_too_large",
        "body_timeout",
        "body_read_error",
        "missing_header",
        "malformed_header",
        "no_supported_signature",
        "signature_mismatch",
        "timestamp_out_of_tolerance",
        "internal_error",
        "invalid_payload",
        "store_unavailable",
        "forbidden",
        "rate_limited",
        "https_required",
        "unsupported_media_type",
        "too_many_failures",
        "overloaded",
        "inbox_unavailable",
    ];

    /// Emits the `tracing` event for this rejection (a no-op without the `tracing` feature):
    /// status, code, reason, and what `about` knows of the request.
    pub(crate) fn log(&self, about: About<'_>) {
        #[cfg(feature = "tracing")]
        tracing::info!(
            target: "tower_webhook",
            status = self.status().as_u16(),
            code = self.code(),
            endpoint = about.endpoint.unwrap_or("-"),
            scheme = about.scheme.unwrap_or("-"),
            client = %OrDash(about.client),
            event_id = about.event_id.unwrap_or("-"),
            reason = %self,
            "webhook rejected"
        );
        #[cfg(not(feature = "tracing"))]
        let _ = about;
    }
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::PayloadTooLarge { limit } => write!(f, "body larger than {limit} bytes"),
            Self::BodyTimeout => f.write_str("body not received within the time limit"),
            Self::BodyRead => f.write_str("body could not be read"),
            Self::MissingHeader { header } => write!(f, "missing header {header}"),
            Self::MalformedHeader { header, reason } => {
                write!(f, "malformed header {header}: {reason}")
            }
            Self::NoSupportedSignature => f.write_str("no signature of a supported version"),
            Self::SignatureMismatch => f.write_str("no signature matched"),
            Self::TimestampOutOfTolerance { timestamp, now } => {
                write!(f, "signed timestamp {timestamp} too far from now ({now})")
            }
            Self::Misconfigured { reason } => write!(f, "misconfigured: {reason}"),
            Self::Duplicate => f.write_str("event already handled"),
            Self::Ignored => f.write_str("event type not subscribed to"),
            Self::InvalidPayload => f.write_str("body does not fit the handler's type"),
            Self::InFlight { .. } => f.write_str("event being handled by another request"),
            Self::StoreUnavailable { .. } => f.write_str("replay store unavailable"),
            Self::Forbidden => f.write_str("client address not allowed"),
            Self::RateLimited { .. } => f.write_str("rate limit exceeded"),
            Self::HttpsRequired => f.write_str("request not over TLS"),
            Self::UnsupportedMediaType => f.write_str("content type not accepted"),
            Self::Penalized { .. } => f.write_str("client in the penalty box"),
            Self::Overloaded { .. } => f.write_str("memory budget for bodies used up"),
            Self::InboxUnavailable { .. } => f.write_str("inbox cannot store the event"),
        }
    }
}

impl std::error::Error for Rejection {}

pin_project! {
    /// The response body of the layers: the inner service's body, or a rejection's short JSON.
    #[derive(Debug)]
    pub struct ResponseBody<B> {
        #[pin]
        kind: Kind<B>,
    }
}

pin_project! {
    #[project = KindProj]
    #[derive(Debug)]
    enum Kind<B> {
        Inner { #[pin] body: B },
        Rejection { body: Option<Bytes> },
    }
}

impl<B> ResponseBody<B> {
    /// Wraps the inner service's body.
    pub fn new(body: B) -> Self {
        Self {
            kind: Kind::Inner { body },
        }
    }

    pub(crate) fn rejection(body: Bytes) -> Self {
        Self {
            kind: Kind::Rejection {
                body: (!body.is_empty()).then_some(body),
            },
        }
    }
}

impl<B> Default for ResponseBody<B> {
    /// An empty body, as middleware such as tower-http's `TimeoutLayer` and `CorsLayer` make
    /// for the answers they give themselves.
    fn default() -> Self {
        Self::rejection(Bytes::new())
    }
}

impl<B> Body for ResponseBody<B>
where
    B: Body<Data = Bytes>,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        match self.project().kind.project() {
            KindProj::Inner { body } => body.poll_frame(cx),
            KindProj::Rejection { body } => Poll::Ready(body.take().map(|b| Ok(Frame::data(b)))),
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Inner { body } => body.is_end_stream(),
            Kind::Rejection { body } => body.is_none(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Inner { body } => body.size_hint(),
            Kind::Rejection { body } => {
                SizeHint::with_exact(body.as_ref().map_or(0, |b| b.len() as u64))
            }
        }
    }
}

#[cfg(feature = "axum")]
impl axum_core::response::IntoResponse for Rejection {
    fn into_response(self) -> axum_core::response::Response {
        self.log(About::default());
        Rejection::into_response::<axum_core::body::Body>(self).map(axum_core::body::Body::new)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    #[tokio::test]
    async fn response_has_status_json_and_extension() {
        let response = Rejection::TimestampOutOfTolerance {
            timestamp: 1,
            now: 1000,
        }
        .into_response::<http_body_util::Empty<Bytes>>();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(response.headers()[CONTENT_TYPE], "application/json");
        assert!(matches!(
            response.extensions().get::<Rejection>(),
            Some(Rejection::TimestampOutOfTolerance { timestamp: 1, .. })
        ));
        let body = response.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(&body[..], br#"{"error":"timestamp_out_of_tolerance"}"#);
    }

    #[test]
    fn grpc_answers_are_trailers_only() {
        let response = Rejection::RateLimited {
            retry_after: Duration::from_secs(2),
            limit: 3,
        }
        .into_grpc_response::<http_body_util::Empty<Bytes>>();
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.headers()["grpc-status"], "8");
        assert_eq!(response.headers()["grpc-message"], "rate_limited");
        assert_eq!(response.headers()["retry-after"], "2");
        assert!(response.body().is_end_stream());
        assert_eq!(Rejection::Forbidden.grpc_code(), 7);
    }

    #[test]
    fn every_code_is_snake_case_and_body_matches() {
        let all = [
            Rejection::PayloadTooLarge { limit: 1 },
            Rejection::BodyTimeout,
            Rejection::BodyRead,
            Rejection::missing(&HeaderName::from_static("x")),
            Rejection::malformed(&HeaderName::from_static("x"), "r"),
            Rejection::NoSupportedSignature,
            Rejection::SignatureMismatch,
            Rejection::TimestampOutOfTolerance {
                timestamp: 0,
                now: 0,
            },
            Rejection::Misconfigured { reason: "r" },
            Rejection::InvalidPayload,
            Rejection::InFlight {
                retry_after: Duration::from_millis(1),
            },
            Rejection::StoreUnavailable {
                retry_after: Duration::ZERO,
            },
            Rejection::Forbidden,
            Rejection::RateLimited {
                retry_after: Duration::from_millis(300),
                limit: 5,
            },
            Rejection::HttpsRequired,
            Rejection::UnsupportedMediaType,
            Rejection::Penalized {
                retry_after: Duration::from_secs(1),
            },
            Rejection::Overloaded {
                retry_after: Duration::from_millis(10),
            },
            Rejection::InboxUnavailable {
                retry_after: Duration::from_millis(900),
            },
        ];
        for r in all {
            let (code, body) = r.code_and_body();
            // Every refusal is counted under its code.
            assert_eq!(
                Rejection::CODES.contains(&code),
                !matches!(r, Rejection::InFlight { .. }),
                "{code}"
            );
            assert!(code.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'));
            assert_eq!(body, format!("{{\"error\":\"{code}\"}}"));
            let response = r.clone().into_response::<http_body_util::Empty<Bytes>>();
            match r.retry_after() {
                // Always a whole number of seconds, at least 1.
                Some(_) => assert_eq!(response.headers()[RETRY_AFTER], "1"),
                None => assert!(response.headers().get(RETRY_AFTER).is_none()),
            }
        }
        assert_eq!(
            Rejection::Duplicate.code_and_body(),
            ("duplicate", r#"{"status":"duplicate"}"#)
        );
    }
}
