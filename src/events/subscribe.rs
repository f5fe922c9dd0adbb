use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::{Request, Response};
use tower_layer::Layer;
use tower_service::Service;

use super::Pattern;
use crate::before_body::ResponseFuture;
use crate::observe::About;
use crate::rejection::ResponseBody;
use crate::{ConfigError, Rejection, Verified};

/// The event types a receiver handles. See the [module docs](super).
///
/// ```
/// use tower_webhook::events::Subscription;
///
/// let invoices = Subscription::new(["invoice.*", "customer.subscription.deleted"])?;
/// assert!(invoices.accepts(Some("invoice.payment.failed")));
/// assert!(!invoices.accepts(Some("invoiceitem.created")));
/// assert!(!invoices.accepts(None)); // no type: ignored, unless `*` is among the patterns
/// # Ok::<(), tower_webhook::ConfigError>(())
/// ```
#[derive(Clone)]
pub struct Subscription {
    patterns: Arc<[Pattern]>,
}

impl Subscription {
    /// Handles the events whose type one of `patterns` takes: an exact type, a prefix ending
    /// in `*`, or `*` alone for every event (one with no type included).
    ///
    /// # Errors
    ///
    /// [`ConfigError::InvalidEventPattern`] for a pattern that is empty, not visible ASCII, or
    /// has a `*` anywhere but at its end; [`ConfigError::InvalidStack`] for no pattern at all.
    pub fn new<I>(patterns: I) -> Result<Self, ConfigError>
    where
        I: IntoIterator,
        I::Item: AsRef<str>,
    {
        let patterns = patterns
            .into_iter()
            .map(|p| Pattern::parse(p.as_ref()))
            .collect::<Result<Arc<[_]>, _>>()?;
        if patterns.is_empty() {
            return Err(ConfigError::InvalidStack {
                reason: "a subscription needs at least one pattern",
            });
        }
        Ok(Self { patterns })
    }

    /// Whether an event of type `event_type` (`None`: it has none) is handled.
    #[must_use]
    pub fn accepts(&self, event_type: Option<&str>) -> bool {
        self.patterns.iter().any(|p| p.matches(event_type))
    }

    /// Answers an event this subscription does not take: logs it, with what `about` knows,
    /// and gives the rejection.
    pub(crate) fn check(&self, verified: &Verified, about: About<'_>) -> Result<(), Rejection> {
        if self.accepts(verified.event_type()) {
            return Ok(());
        }
        #[cfg(feature = "tracing")]
        tracing::info!(
            target: "tower_webhook",
            event_id = verified.id().unwrap_or("-"),
            event_type = verified.event_type().unwrap_or("-"),
            scheme = verified.scheme().as_str(),
            endpoint = about.endpoint.unwrap_or("-"),
            client = %crate::observe::OrDash(about.client),
            "webhook ignored: not subscribed"
        );
        #[cfg(not(feature = "tracing"))]
        let _ = about;
        Err(Rejection::Ignored)
    }
}

impl fmt::Debug for Subscription {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.patterns.iter()).finish()
    }
}

/// Applies [`Subscribe`]. Put it after verification and before the replay layer.
#[derive(Debug, Clone)]
pub struct SubscribeLayer {
    subscription: Subscription,
}

impl SubscribeLayer {
    /// Handles only the events `subscription` takes.
    #[must_use]
    pub fn new(subscription: Subscription) -> Self {
        Self { subscription }
    }
}

impl<S> Layer<S> for SubscribeLayer {
    type Service = Subscribe<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Subscribe {
            inner,
            subscription: self.subscription.clone(),
        }
    }
}

/// Calls the inner service only for the event types of its [`Subscription`]; answers the
/// others 200 `{"status":"ignored"}`. See the [module docs](super).
#[derive(Debug, Clone)]
pub struct Subscribe<S> {
    inner: S,
    subscription: Subscription,
}

impl<S> Subscribe<S> {
    /// A [`SubscribeLayer`] for `subscription`.
    #[must_use]
    pub fn layer(subscription: Subscription) -> SubscribeLayer {
        SubscribeLayer::new(subscription)
    }

    inner_accessors!();
}

impl<S, B, ResBody> Service<Request<B>> for Subscribe<S>
where
    S: Service<Request<B>, Response = Response<ResBody>>,
{
    type Response = Response<ResponseBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let checked = match req.extensions().get::<Verified>() {
            Some(verified) => self
                .subscription
                .check(verified, About::extensions(req.extensions())),
            None => {
                let rejection = Rejection::Misconfigured {
                    reason: "Subscribe needs the Verify layer in front of it",
                };
                rejection.log(About::extensions(req.extensions()));
                Err(rejection)
            }
        };
        match checked {
            Ok(()) => ResponseFuture::inner(self.inner.call(req)),
            Err(rejection) => ResponseFuture::answer(rejection),
        }
    }
}
