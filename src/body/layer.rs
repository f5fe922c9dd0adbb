use std::task::{Context, Poll};

use http::{Request, Response};
use http_body::Body;
use tower_layer::Layer;
use tower_service::Service;

use crate::body::{BodyBudget, BufferedBody, ResponseFuture, Stage};
use crate::rejection::ResponseBody;
use crate::BodyLimits;

/// Applies [`BufferBody`] to a service.
#[derive(Debug, Clone, Default)]
pub struct BufferBodyLayer {
    limits: BodyLimits,
    budget: Option<BodyBudget>,
}

impl BufferBodyLayer {
    /// Buffers with the default limits (1 MiB, 10 s).
    #[must_use]
    pub const fn new() -> Self {
        Self::with_limits(BodyLimits::new())
    }

    /// Buffers with `limits`.
    #[must_use]
    pub const fn with_limits(limits: BodyLimits) -> Self {
        Self {
            limits,
            budget: None,
        }
    }

    /// Reserves each body in `budget`, shared with every layer given a clone of it: a body it
    /// cannot cover is refused with 503 `overloaded`.
    #[must_use]
    pub fn budget(mut self, budget: BodyBudget) -> Self {
        self.budget = Some(budget);
        self
    }

    /// Sets the largest body accepted, in bytes.
    #[must_use]
    pub const fn max_bytes(mut self, max_bytes: usize) -> Self {
        self.limits = self.limits.max_bytes(max_bytes);
        self
    }

    /// Sets the time the whole body may take.
    #[must_use]
    pub const fn timeout(mut self, timeout: std::time::Duration) -> Self {
        self.limits = self.limits.timeout(timeout);
        self
    }
}

impl<S> Layer<S> for BufferBodyLayer {
    type Service = BufferBody<S>;

    fn layer(&self, inner: S) -> Self::Service {
        BufferBody {
            inner,
            limits: self.limits,
            budget: self.budget.clone(),
        }
    }
}

/// Collects the request body before calling the inner service. See the
/// [module docs](crate::body).
#[derive(Debug, Clone)]
pub struct BufferBody<S> {
    inner: S,
    limits: BodyLimits,
    budget: Option<BodyBudget>,
}

impl<S> BufferBody<S> {
    /// Wraps `inner`.
    pub fn new(inner: S, limits: BodyLimits) -> Self {
        Self {
            inner,
            limits,
            budget: None,
        }
    }

    /// A [`BufferBodyLayer`] with the default limits.
    #[must_use]
    pub const fn layer() -> BufferBodyLayer {
        BufferBodyLayer::new()
    }

    inner_accessors!();
}

impl<S, B, ResBody> Service<Request<B>> for BufferBody<S>
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
        let (parts, body) = req.into_parts();
        let (limits, unwatched) = (&self.limits, Default::default());
        let budget = self.budget.as_ref();
        let stage = Stage::Buffer;
        ResponseFuture::start(
            body,
            parts,
            limits,
            &mut self.inner,
            stage,
            unwatched,
            budget,
        )
    }
}
