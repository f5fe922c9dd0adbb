//! The service that queues verified requests.

use std::convert::Infallible;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::SystemTime;

use bytes::Bytes;
use http::header::{HeaderValue, CONTENT_TYPE};
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use tower_service::Service;

use super::{Event, Inbox, InboxError, Queue};
use crate::client_ip::ClientIp;
use crate::replay::key::dedup_key;
use crate::{BufferedBody, Rejection, ResponseBody, Verified};

/// Marks the inbox's 202 in the response's extensions, for the `queued` outcome.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Queued;

/// What [`Ingest`] answers: 202 `{"status":"queued"}`, or a [`Rejection`].
type Answer = Response<ResponseBody<Full<Bytes>>>;

/// The handler that stores each verified request in an [`Inbox`] and answers 202
/// `{"status":"queued"}` once stored, or 503 `inbox_unavailable` (with `Retry-After`) when it
/// could not be. Made by [`Inbox::ingest`]; it needs the verification stage in front (500
/// `internal_error` otherwise).
#[derive(Clone)]
pub struct Ingest {
    inbox: Inbox,
    endpoint: Arc<str>,
}

impl Ingest {
    pub(crate) fn new(inbox: Inbox, endpoint: &str) -> Self {
        Self {
            inbox,
            endpoint: endpoint.into(),
        }
    }

    /// The stored event of a verified request.
    fn event(&self, req: Request<BufferedBody>) -> Result<Event, Rejection> {
        let (parts, body) = req.into_parts();
        let Some(verified) = parts.extensions.get::<Verified>() else {
            return Err(Rejection::Misconfigured {
                reason: "the inbox behind no verification stage",
            });
        };
        let body = body.into_bytes();
        Ok(Event {
            entry: "".into(),
            key: dedup_key(&self.endpoint, verified, true, Some(&body)),
            id: verified.id().map(Into::into),
            event_type: verified.event_type().map(Into::into),
            timestamp: verified.timestamp(),
            scheme: verified.scheme().as_str().into(),
            endpoint: (*self.endpoint).into(),
            client: parts.extensions.get::<ClientIp>().map(|c| c.ip()),
            received: SystemTime::now(),
            attempts: 0,
            last_error: None,
            body,
        })
    }
}

/// 202 `{"status":"queued"}`, or the refusal of an event the inbox could not store.
fn answer(stored: Result<bool, InboxError>, inbox: &Inbox, id: Option<&str>) -> Answer {
    match stored {
        Ok(_) => {
            let body = Full::new(Bytes::from_static(b"{\"status\":\"queued\"}"));
            let mut response = Response::new(ResponseBody::new(body));
            *response.status_mut() = StatusCode::ACCEPTED;
            response
                .headers_mut()
                .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
            response.extensions_mut().insert(Queued);
            response
        }
        Err(error) => {
            #[cfg(feature = "tracing")]
            tracing::warn!(
                target: "tower_webhook",
                event_id = id.unwrap_or("-"),
                inbox = inbox.name(),
                %error,
                "webhook not queued"
            );
            #[cfg(not(feature = "tracing"))]
            let _ = (id, error);
            Rejection::InboxUnavailable {
                retry_after: inbox.retry_after,
            }
            .into_response()
        }
    }
}

impl Service<Request<BufferedBody>> for Ingest {
    type Response = Answer;
    type Error = Infallible;
    type Future = ResponseFuture;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<BufferedBody>) -> Self::Future {
        let event = match self.event(req) {
            Ok(event) => event,
            Err(rejection) => return ResponseFuture::ready(rejection.into_response()),
        };
        let inbox = self.inbox.clone();
        match &inbox.queue {
            // Stored at once: no future to box.
            Queue::Memory(memory) => {
                let id = event.id.clone();
                let stored = memory.push(event, inbox.limits);
                ResponseFuture::ready(answer(stored, &inbox, id.as_deref()))
            }
            #[cfg(feature = "redis")]
            Queue::Redis(_) => ResponseFuture {
                inner: Inner::Boxed(Box::pin(async move {
                    let id = event.id.clone();
                    let stored = inbox.push(event).await;
                    answer(stored, &inbox, id.as_deref())
                })),
            },
        }
    }
}

impl fmt::Debug for Ingest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ingest")
            .field("inbox", &self.inbox)
            .field("endpoint", &self.endpoint)
            .finish()
    }
}

/// The future of [`Ingest`]: ready at once for the memory inbox, a boxed write for Redis.
pub struct ResponseFuture {
    inner: Inner,
}

enum Inner {
    Ready(Option<Answer>),
    #[cfg(feature = "redis")]
    Boxed(Pin<Box<dyn Future<Output = Answer> + Send>>),
}

impl ResponseFuture {
    fn ready(answer: Answer) -> Self {
        Self {
            inner: Inner::Ready(Some(answer)),
        }
    }
}

impl Future for ResponseFuture {
    type Output = Result<Answer, Infallible>;

    #[cfg_attr(not(feature = "redis"), allow(unused_variables))]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match &mut self.get_mut().inner {
            Inner::Ready(answer) => Poll::Ready(Ok(answer
                .take()
                .expect("ResponseFuture polled after completion"))),
            #[cfg(feature = "redis")]
            Inner::Boxed(future) => future.as_mut().poll(cx).map(Ok),
        }
    }
}

impl fmt::Debug for ResponseFuture {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("inbox::future::ResponseFuture")
    }
}

#[cfg(test)]
mod tests {
    use http_body_util::BodyExt;
    use tower::ServiceExt;

    use super::*;

    #[tokio::test]
    async fn a_request_without_verification_is_a_wiring_error_and_not_queued() {
        let inbox = Inbox::memory();
        let req = Request::post("/webhook")
            .body(BufferedBody::new(Bytes::from_static(b"{}")))
            .unwrap();
        let response = inbox.ingest("/webhook").oneshot(req).await.unwrap();
        assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
        let body = response.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(&body[..], br#"{"error":"internal_error"}"#);
        assert_eq!(inbox.depth().await.unwrap().queued(), 0);
    }
}
