//! The response future of the layers that decide before calling the inner service, without
//! reading the body: client IP, allowlist, rate limit. They also stand in front of gRPC
//! services, so a gRPC request is refused with a gRPC status.

use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use http::header::CONTENT_TYPE;
use http::{HeaderMap, Response};
use pin_project_lite::pin_project;

use std::net::IpAddr;

use crate::observe::About;
use crate::penalty::PenaltyBox;
use crate::rejection::ResponseBody;
use crate::Rejection;

pin_project! {
    /// Response future of [`ResolveClientIp`](crate::client_ip::ResolveClientIp),
    /// [`Allowlist`](crate::allowlist::Allowlist) and [`RateLimit`](crate::rate_limit::RateLimit):
    /// the inner service's future `F`, or a [`Rejection`] decided up front.
    pub struct ResponseFuture<F> {
        #[pin]
        state: State<F>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<F> {
        Inner {
            #[pin]
            future: F,
            // The penalty box that counts this client's failed verifications, if any.
            penalty: Option<(PenaltyBox, IpAddr)>,
        },
        Rejected { rejection: Option<Rejection>, grpc: bool },
    }
}

impl<F> ResponseFuture<F> {
    pub(crate) fn inner(future: F) -> Self {
        Self {
            state: State::Inner {
                future,
                penalty: None,
            },
        }
    }

    /// Counts a verification refusal in the answer as a failure of `client`.
    pub(crate) fn counting_failures(self, penalty: PenaltyBox, client: IpAddr) -> Self {
        match self.state {
            State::Inner { future, .. } => Self {
                state: State::Inner {
                    future,
                    penalty: Some((penalty, client)),
                },
            },
            state @ State::Rejected { .. } => Self { state },
        }
    }

    /// Answers `rejection` (as a gRPC status when the request is gRPC), logging it once.
    pub(crate) fn rejected(
        rejection: Rejection,
        headers: &HeaderMap,
        client: Option<IpAddr>,
    ) -> Self {
        let grpc = headers
            .get(CONTENT_TYPE)
            .is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"));
        rejection.log(About {
            client,
            ..About::default()
        });
        Self {
            state: State::Rejected {
                rejection: Some(rejection),
                grpc,
            },
        }
    }
}

impl<F> ResponseFuture<F> {
    /// Answers `rejection` over HTTP, which the caller has logged.
    pub(crate) fn answer(rejection: Rejection) -> Self {
        Self {
            state: State::Rejected {
                rejection: Some(rejection),
                grpc: false,
            },
        }
    }
}

impl<F, B, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = Result<Response<ResponseBody<B>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().state.project() {
            StateProj::Inner { future, penalty } => {
                let response = ready!(future.poll(cx))?;
                if let Some((penalty, client)) = penalty.take() {
                    let rejection = response.extensions().get::<Rejection>();
                    if rejection.is_some_and(Rejection::is_verification_failure) {
                        penalty.fail(client);
                    }
                }
                Poll::Ready(Ok(response.map(ResponseBody::new)))
            }
            StateProj::Rejected { rejection, grpc } => {
                let rejection = rejection
                    .take()
                    .expect("ResponseFuture polled after completion");
                Poll::Ready(Ok(if *grpc {
                    rejection.into_grpc_response()
                } else {
                    rejection.into_response()
                }))
            }
        }
    }
}

impl<F> std::fmt::Debug for ResponseFuture<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = match &self.state {
            State::Inner { .. } => "inner",
            State::Rejected { .. } => "rejected",
        };
        f.debug_struct("ResponseFuture")
            .field("state", &state)
            .finish()
    }
}
