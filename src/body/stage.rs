//! What the two layers that read the body share: collecting it, then handing it on (after
//! verifying it, for `Verify`).

use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use bytes::Bytes;
use http::request::Parts;
use http::{Request, Response};
use http_body::Body;
use pin_project_lite::pin_project;
use tower_service::Service;

use super::{BodyLimits, BufferedBody, Collect, RawBody};
use crate::rejection::ResponseBody;
use crate::verify::{verify_parts, Verifier};
use crate::Rejection;

/// What a layer does with the collected bytes before calling the inner service.
#[derive(Debug, Clone)]
pub(crate) enum Stage {
    /// Only hand them on.
    Buffer,
    /// Verify the signature first.
    Verify(Verifier),
}

impl Stage {
    /// Builds the request the inner service sees, with the bytes as its body and as a
    /// [`RawBody`] extension (and the verified event, when verifying).
    pub(crate) fn run(
        &self,
        mut parts: Parts,
        bytes: Bytes,
    ) -> Result<Request<BufferedBody>, Rejection> {
        if let Self::Verify(verifier) = self {
            verify_parts(verifier, &mut parts, &bytes)?;
        }
        Ok(buffered_request(parts, bytes))
    }
}

/// The request the inner service sees: `bytes` as its body and as a [`RawBody`] extension.
pub(crate) fn buffered_request(mut parts: Parts, bytes: Bytes) -> Request<BufferedBody> {
    parts.extensions.insert(RawBody::new(bytes.clone()));
    Request::from_parts(parts, BufferedBody::new(bytes))
}

pin_project! {
    /// Response future of [`BufferBody`](crate::body::BufferBody) and
    /// [`Verify`](crate::verify::Verify): reads the body (when needed), then calls the inner
    /// service `S` (whose future is `F`), or answers a [`Rejection`].
    pub struct ResponseFuture<B, S, F> {
        #[pin]
        state: State<B, S, F>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<B, S, F> {
        Collecting {
            #[pin]
            collect: Collect<B>,
            parts: Option<Parts>,
            inner: Option<S>,
            stage: Stage,
        },
        Calling {
            #[pin]
            future: F,
        },
        Rejected {
            rejection: Option<Rejection>,
        },
    }
}

impl<B: Body, S: Clone, F> ResponseFuture<B, S, F> {
    /// Reads `body` within `limits`, runs `stage`, then calls the inner service: the ready one
    /// taken out of `inner` (a clone is left in its place). Refuses at once when the announced
    /// length is over the limit.
    pub(crate) fn start(
        body: B,
        parts: Parts,
        limits: &BodyLimits,
        inner: &mut S,
        stage: Stage,
    ) -> Self {
        match Collect::start(body, &parts.headers, limits) {
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
                }
            }
            Err(rejection) => {
                let claimed_id = match &stage {
                    Stage::Verify(verifier) => verifier.claimed_id(&parts.headers),
                    Stage::Buffer => None,
                };
                rejection.log(claimed_id, None);
                Self::rejected(rejection)
            }
        }
    }
}

impl<B, S, F> ResponseFuture<B, S, F> {
    pub(crate) fn calling(future: F) -> Self {
        Self {
            state: State::Calling { future },
        }
    }

    /// Answers `rejection`, which the caller has logged.
    pub(crate) fn rejected(rejection: Rejection) -> Self {
        Self {
            state: State::Rejected {
                rejection: Some(rejection),
            },
        }
    }
}

impl<B, S, ResBody, E> Future for ResponseFuture<B, S, S::Future>
where
    B: Body,
    S: Service<Request<BufferedBody>, Response = Response<ResBody>, Error = E>,
{
    type Output = Result<Response<ResponseBody<ResBody>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut state = self.project().state;
        loop {
            match state.as_mut().project() {
                StateProj::Collecting {
                    collect,
                    parts,
                    inner,
                    stage,
                } => {
                    let collected = ready!(collect.poll(cx));
                    let (Some(parts), Some(mut inner)) = (parts.take(), inner.take()) else {
                        panic!("ResponseFuture polled after completion");
                    };
                    let next = match collected {
                        Ok(bytes) => stage.run(parts, bytes).map(|req| inner.call(req)),
                        Err(rejection) => {
                            rejection.log(None, None);
                            Err(rejection)
                        }
                    };
                    match next {
                        Ok(future) => state.set(State::Calling { future }),
                        Err(rejection) => state.set(State::Rejected {
                            rejection: Some(rejection),
                        }),
                    }
                }
                StateProj::Calling { future } => {
                    let response = ready!(future.poll(cx))?;
                    return Poll::Ready(Ok(response.map(ResponseBody::new)));
                }
                StateProj::Rejected { rejection } => {
                    let rejection = rejection
                        .take()
                        .expect("ResponseFuture polled after completion");
                    return Poll::Ready(Ok(rejection.into_response()));
                }
            }
        }
    }
}

impl<B, S, F> std::fmt::Debug for ResponseFuture<B, S, F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = match &self.state {
            State::Collecting { .. } => "collecting",
            State::Calling { .. } => "calling",
            State::Rejected { .. } => "rejected",
        };
        f.debug_struct("ResponseFuture")
            .field("state", &state)
            .finish()
    }
}
