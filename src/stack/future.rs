//! The response future of [`Webhook`](super::Webhook).

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use http::request::Parts;
use http::{Request, Response};
use http_body::Body;
use pin_project_lite::pin_project;
use tower_service::Service;

use super::service::Stack;
use crate::body::{buffered_request, BufferedBody, Collect};
use crate::rejection::ResponseBody;
use crate::replay;
use crate::verify::verify_parts;
use crate::Rejection;

pin_project! {
    /// Response future of [`Webhook`](super::Webhook): reads the body, verifies it, then calls
    /// the inner service `S` through the replay stage when it is on, or answers a
    /// [`Rejection`].
    pub struct ResponseFuture<B, S>
    where
        S: Service<Request<BufferedBody>>,
    {
        #[pin]
        state: State<B, S>,
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
            stack: Arc<Stack>,
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
    }
}

impl<B, S: Service<Request<BufferedBody>>> ResponseFuture<B, S> {
    pub(super) fn collecting(
        collect: Collect<B>,
        parts: Parts,
        inner: S,
        stack: Arc<Stack>,
    ) -> Self {
        Self {
            state: State::Collecting {
                collect,
                parts: Some(parts),
                inner: Some(inner),
                stack,
            },
        }
    }

    /// Answers `rejection`, which the caller has logged.
    pub(super) fn rejected(rejection: Rejection) -> Self {
        Self {
            state: State::Rejected {
                rejection: Some(rejection),
            },
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
        let mut state = self.project().state;
        loop {
            match state.as_mut().project() {
                StateProj::Collecting {
                    collect,
                    parts,
                    inner,
                    stack,
                } => {
                    let collected = ready!(collect.poll(cx));
                    let (Some(mut parts), Some(mut inner)) = (parts.take(), inner.take()) else {
                        panic!("ResponseFuture polled after completion");
                    };
                    let verified = collected
                        .inspect_err(|rejection| {
                            rejection.log(stack.verifier.claimed_id(&parts.headers), None);
                        })
                        .and_then(|bytes| {
                            verify_parts(&stack.verifier, &mut parts, &bytes).map(|()| bytes)
                        });
                    let next = match verified {
                        Err(rejection) => State::Rejected {
                            rejection: Some(rejection),
                        },
                        Ok(bytes) => {
                            let req = buffered_request(parts, bytes);
                            match &stack.replay {
                                Some(replay) => State::Replaying {
                                    future: replay.start(req, &mut inner),
                                },
                                None => State::Calling {
                                    future: inner.call(req),
                                },
                            }
                        }
                    };
                    state.set(next);
                }
                StateProj::Calling { future } => {
                    let response = ready!(future.poll(cx))?;
                    return Poll::Ready(Ok(response.map(ResponseBody::new)));
                }
                StateProj::Replaying { future } => return future.poll(cx),
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

impl<B, S: Service<Request<BufferedBody>>> fmt::Debug for ResponseFuture<B, S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match &self.state {
            State::Collecting { .. } => "collecting",
            State::Calling { .. } => "calling",
            State::Replaying { .. } => "replaying",
            State::Rejected { .. } => "rejected",
        };
        f.debug_struct("ResponseFuture")
            .field("state", &state)
            .finish()
    }
}
