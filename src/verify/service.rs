use std::task::{Context, Poll};

use bytes::Bytes;
use http::request::Parts;
use http::{Request, Response};
use http_body::Body;
use tower_layer::Layer;
use tower_service::Service;

use super::Verifier;
use crate::body::{BufferedBody, ResponseFuture, Stage, Verifying};
use crate::observe::{About, RequestSpan, Watch};
use crate::rejection::ResponseBody;
use crate::{RawBody, Rejection};

/// Applies [`Verify`] to a service.
#[derive(Debug, Clone)]
pub struct VerifyLayer {
    verifier: Verifier,
}

impl VerifyLayer {
    /// Verifies with `verifier`.
    #[must_use]
    pub fn new(verifier: Verifier) -> Self {
        Self { verifier }
    }
}

impl<S> Layer<S> for VerifyLayer {
    type Service = Verify<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Verify {
            inner,
            verifier: self.verifier.clone(),
        }
    }
}

/// Verifies each request's signature before calling the inner service. See the
/// [module docs](crate::verify).
#[derive(Debug, Clone)]
pub struct Verify<S> {
    inner: S,
    verifier: Verifier,
}

impl<S> Verify<S> {
    /// Wraps `inner`.
    pub fn new(inner: S, verifier: Verifier) -> Self {
        Self { inner, verifier }
    }

    /// A [`VerifyLayer`] with `verifier`.
    #[must_use]
    pub fn layer(verifier: Verifier) -> VerifyLayer {
        VerifyLayer::new(verifier)
    }

    inner_accessors!();
}

impl<S, B, ResBody> Service<Request<B>> for Verify<S>
where
    S: Service<Request<BufferedBody>, Response = Response<ResBody>> + Clone,
    B: Body,
{
    type Response = Response<ResponseBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<B, S>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let (mut parts, body) = req.into_parts();
        // Bytes already collected by `BufferBody` (possibly behind other layers that changed
        // the body's type): verify them without reading the body again.
        if let Some(raw) = parts.extensions.get::<RawBody>() {
            let bytes = raw.bytes().clone();
            drop(body);
            return match verify_parts(&self.verifier, &mut parts, &bytes) {
                Ok(()) => ResponseFuture::calling(
                    self.inner
                        .call(Request::from_parts(parts, BufferedBody::new(bytes))),
                ),
                Err(rejection) => {
                    rejection.log(About::request(
                        &parts.headers,
                        &parts.extensions,
                        Some(&self.verifier),
                    ));
                    ResponseFuture::rejected(rejection, Watch::default(), RequestSpan::default())
                }
            };
        }
        let limits = *self.verifier.body_limits();
        let stage = Stage::Verify(Verifying::new(self.verifier.clone()));
        let unwatched = Default::default();
        ResponseFuture::start(
            body,
            parts,
            &limits,
            &mut self.inner,
            stage,
            unwatched,
            None,
        )
    }
}

/// Verifies a request's signature over `bytes`, inserting [`Verified`](crate::Verified) into
/// its extensions, or returns the rejection for the caller to log.
pub(crate) fn verify_parts(
    verifier: &Verifier,
    parts: &mut Parts,
    bytes: &Bytes,
) -> Result<(), Rejection> {
    let verified = verifier.verify(&parts.headers, bytes)?;
    parts.extensions.insert(verified.with_body(bytes.clone()));
    Ok(())
}
