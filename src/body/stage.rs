//! What the layers that read the body share: collecting it, then handing it on, after
//! verifying it (`Verify`, the one-call stack) and through the replay stage (the stack).

use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::request::Parts;
use http::{Request, Response};
use http_body::Body;
use pin_project_lite::pin_project;
use tower_service::Service;

use super::collect::Reservation;
use super::{BodyBudget, BodyLimits, BufferedBody, Collect, RawBody};
use crate::events::Subscription;
use crate::observe::{About, RequestSpan, Watch};
use crate::penalty::PenaltyBox;
use crate::rejection::ResponseBody;
use crate::replay::{self, ReplayLayer};
use crate::verify::{verify_parts, Verifier};
use crate::{Rejection, Verified};

/// What a layer does with the collected bytes before calling the inner service.
#[derive(Debug, Clone)]
pub(crate) enum Stage {
    /// Only hand them on.
    Buffer,
    /// Verify the signature first, and what follows it.
    Verify(Verifying),
}

/// What follows the body when verifying: the signature, then the answers the stack gives
/// itself (Slack's handshake, event types not subscribed to), then the replay stage if any.
/// `Verify` uses the signature alone; the one-call stack builds one with its stages and
/// hands a clone to each request.
#[derive(Debug, Clone)]
pub(crate) struct Verifying {
    pub(crate) verifier: Verifier,
    pub(crate) subscription: Option<Subscription>,
    pub(crate) replay: Option<ReplayLayer>,
    pub(crate) slack_handshake: bool,
    /// Counts the client's failed verifications.
    pub(crate) penalty: Option<PenaltyBox>,
}

impl Verifying {
    /// The signature alone.
    pub(crate) fn new(verifier: Verifier) -> Self {
        Self {
            verifier,
            subscription: None,
            replay: None,
            slack_handshake: false,
            penalty: None,
        }
    }
}

impl Stage {
    /// Logs `rejection` of the request `parts`, with what `watch` knows.
    fn log(&self, rejection: &Rejection, parts: &Parts, watch: &Watch) {
        let verifier = match self {
            Self::Verify(v) => Some(&v.verifier),
            Self::Buffer => None,
        };
        rejection.log(watch.about(About::request(&parts.headers, &parts.extensions, verifier)));
    }

    /// Verifies `bytes` when verifying, then calls `inner` with the request it sees.
    fn run<B, S>(
        &self,
        mut parts: Parts,
        bytes: Bytes,
        inner: &mut S,
        watch: &mut Watch,
    ) -> State<B, S>
    where
        S: Service<Request<BufferedBody>> + Clone,
    {
        let replay = match self {
            Self::Buffer => None,
            Self::Verify(Verifying {
                verifier,
                subscription,
                replay,
                slack_handshake,
                penalty,
            }) => {
                if let Err(rejection) = verify_parts(verifier, &mut parts, &bytes) {
                    self.log(&rejection, &parts, watch);
                    if let (Some(penalty), Some(client)) = (penalty, watch.client()) {
                        penalty.fail(client);
                    }
                    return State::Rejected {
                        rejection: Some(rejection),
                    };
                }
                if let Some(verified) = parts.extensions.get::<Verified>() {
                    watch.verified(verified);
                    if let Some(challenge) = slack_handshake
                        .then(|| verified.slack_challenge())
                        .flatten()
                    {
                        return State::Answered {
                            body: Some(challenge_body(&challenge)),
                        };
                    }
                    if let Some(subscription) = subscription {
                        let about =
                            About::request(&parts.headers, &parts.extensions, Some(verifier));
                        let about = watch.about(about);
                        if let Err(rejection) = subscription.check(verified, about) {
                            return State::Rejected {
                                rejection: Some(rejection),
                            };
                        }
                    }
                }
                replay.as_ref()
            }
        };
        let req = buffered_request(parts, bytes);
        match replay {
            Some(replay) => State::Replaying {
                future: replay.start(req, inner),
            },
            None => {
                watch.handler_called();
                State::Calling {
                    future: inner.call(req),
                }
            }
        }
    }
}

/// The answer to Slack's URL verification: `{"challenge":"<challenge>"}`.
fn challenge_body(challenge: &[u8]) -> Bytes {
    let challenge = String::from_utf8_lossy(challenge);
    let quoted = serde_json::to_string(&*challenge).unwrap_or_default();
    Bytes::from(format!("{{\"challenge\":{quoted}}}"))
}

/// The request the inner service sees: `bytes` as its body and as a [`RawBody`] extension.
pub(crate) fn buffered_request(mut parts: Parts, bytes: Bytes) -> Request<BufferedBody> {
    parts.extensions.insert(RawBody::new(bytes.clone()));
    Request::from_parts(parts, BufferedBody::new(bytes))
}

pin_project! {
    /// Response future of [`BufferBody`](super::BufferBody), [`Verify`](crate::verify::Verify)
    /// and [`Webhook`](crate::stack::Webhook): reads the body (when needed), then calls the
    /// inner service `S`, or answers a [`Rejection`].
    pub struct ResponseFuture<B, S>
    where
        S: Service<Request<BufferedBody>>,
    {
        #[pin]
        state: State<B, S>,
        watch: Watch,
        span: RequestSpan,
        // The body's share of the memory budget, held until the answer is done.
        reservation: Option<Reservation>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<B, S>
    where
        S: Service<Request<BufferedBody>>,
    {
        Collecting {
            #[pin]
            collect: Collect<B>,
            parts: Option<Parts>,
            inner: Option<S>,
            stage: Stage,
        },
        Calling {
            #[pin]
            future: S::Future,
        },
        Replaying {
            #[pin]
            future: replay::future::ResponseFuture<BufferedBody, S>,
        },
        Rejected {
            rejection: Option<Rejection>,
        },
        Answered {
            body: Option<Bytes>,
        },
    }
}

impl<B: Body, S: Service<Request<BufferedBody>> + Clone> ResponseFuture<B, S> {
    /// Reads `body` within `limits`, runs `stage`, then calls the inner service: the ready one
    /// taken out of `inner` (a clone is left in its place). Refuses at once when the announced
    /// length is over the limit.
    pub(crate) fn start(
        body: B,
        parts: Parts,
        limits: &BodyLimits,
        inner: &mut S,
        stage: Stage,
        (watch, span): (Watch, RequestSpan),
        budget: Option<&BodyBudget>,
    ) -> Self {
        match Collect::start(body, &parts.headers, limits, budget) {
            Ok(collect) => {
                let clone = inner.clone();
                let inner = std::mem::replace(inner, clone);
                Self {
                    state: State::Collecting {
                        collect,
                        parts: Some(parts),
                        inner: Some(inner),
                        stage,
                    },
                    watch,
                    span,
                    reservation: None,
                }
            }
            Err(rejection) => {
                span.in_scope(|| stage.log(&rejection, &parts, &watch));
                Self::rejected(rejection, watch, span)
            }
        }
    }
}

impl<B, S: Service<Request<BufferedBody>>> ResponseFuture<B, S> {
    pub(crate) fn calling(future: S::Future) -> Self {
        Self {
            state: State::Calling { future },
            watch: Watch::default(),
            span: RequestSpan::default(),
            reservation: None,
        }
    }

    /// Answers `rejection`, which the caller has logged.
    pub(crate) fn rejected(rejection: Rejection, watch: Watch, span: RequestSpan) -> Self {
        Self {
            state: State::Rejected {
                rejection: Some(rejection),
            },
            watch,
            span,
            reservation: None,
        }
    }
}

impl<B, S, ResBody> Future for ResponseFuture<B, S>
where
    B: Body,
    S: Service<Request<BufferedBody>, Response = Response<ResBody>> + Clone,
{
    type Output = Result<Response<ResponseBody<ResBody>>, S::Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let (state, watch, reservation) = (this.state, this.watch, this.reservation);
        this.span.in_scope(|| {
            let (output, handler_time) = ready!(poll_state(state, watch, reservation, cx));
            watch.finish(&output, handler_time);
            Poll::Ready(output)
        })
    }
}

/// What the future answers, and how long the handler ran if it did.
type Polled<ResBody, E> = (Result<Response<ResponseBody<ResBody>>, E>, Option<Duration>);

/// Polls the state machine to its answer, and says how long the handler ran if it did.
fn poll_state<B, S, ResBody>(
    mut state: Pin<&mut State<B, S>>,
    watch: &mut Watch,
    reservation: &mut Option<Reservation>,
    cx: &mut Context<'_>,
) -> Poll<Polled<ResBody, S::Error>>
where
    B: Body,
    S: Service<Request<BufferedBody>, Response = Response<ResBody>> + Clone,
{
    loop {
        match state.as_mut().project() {
            StateProj::Collecting {
                mut collect,
                parts,
                inner,
                stage,
            } => {
                let collected = ready!(collect.as_mut().poll(cx));
                *reservation = collect.take_reservation();
                let (Some(parts), Some(mut inner)) = (parts.take(), inner.take()) else {
                    panic!("ResponseFuture polled after completion");
                };
                let next = match collected {
                    Ok(bytes) => stage.run(parts, bytes, &mut inner, watch),
                    Err(rejection) => {
                        stage.log(&rejection, &parts, watch);
                        State::Rejected {
                            rejection: Some(rejection),
                        }
                    }
                };
                state.set(next);
            }
            StateProj::Calling { future } => {
                let response = ready!(future.poll(cx));
                let answer = response.map(|r| r.map(ResponseBody::new));
                return Poll::Ready((answer, watch.handler_time()));
            }
            StateProj::Replaying { mut future } => {
                let answer = ready!(future.as_mut().poll(cx));
                return Poll::Ready((answer, future.handler_time()));
            }
            StateProj::Rejected { rejection } => {
                let rejection = rejection
                    .take()
                    .expect("ResponseFuture polled after completion");
                return Poll::Ready((Ok(rejection.into_response()), None));
            }
            StateProj::Answered { body } => {
                let body = body.take().expect("ResponseFuture polled after completion");
                let mut response = Response::new(ResponseBody::rejection(body));
                response.headers_mut().insert(
                    http::header::CONTENT_TYPE,
                    http::HeaderValue::from_static("application/json"),
                );
                return Poll::Ready((Ok(response), None));
            }
        }
    }
}

impl<B, S: Service<Request<BufferedBody>>> std::fmt::Debug for ResponseFuture<B, S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = match &self.state {
            State::Collecting { .. } => "collecting",
            State::Calling { .. } => "calling",
            State::Replaying { .. } => "replaying",
            State::Rejected { .. } => "rejected",
            State::Answered { .. } => "answered",
        };
        f.debug_struct("ResponseFuture")
            .field("state", &state)
            .finish()
    }
}
