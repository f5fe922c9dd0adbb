use std::convert::Infallible;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::{Request, Response};
use tower::util::BoxCloneSyncService;
use tower::ServiceExt;
use tower_service::Service;

use super::Pattern;
use crate::observe::About;
use crate::rejection::ResponseBody;
use crate::{BufferedBody, ConfigError, Rejection, Verified};

type Route<B> = BoxCloneSyncService<Request<BufferedBody>, Response<B>, Infallible>;

/// A service that sends each verified event to the service of the most specific pattern that
/// takes its type: an exact type before any prefix, a longer prefix before a shorter one, `*`
/// last. An event no pattern takes goes to the fallback, by default answered 200
/// `{"status":"ignored"}`.
///
/// It stands where a handler stands: behind the stack (or `Verify`), under axum's
/// `Router::route_service` or as a plain Tower service. Routes are any services of
/// `Request<BufferedBody>` (an async function through `tower::service_fn`); they are cloned
/// for each event, as axum does.
///
/// ```
/// use std::convert::Infallible;
/// use axum::routing::post_service;
/// use http::{Request, Response};
/// use tower::{service_fn, Layer};
/// use tower_webhook::events::EventRouter;
/// use tower_webhook::scheme::Scheme;
/// use tower_webhook::{BufferedBody, Verifier, WebhookLayer};
///
/// async fn issues(_: Request<BufferedBody>) -> Result<Response<String>, Infallible> {
///     Ok(Response::new("an issue".into()))
/// }
/// async fn push(_: Request<BufferedBody>) -> Result<Response<String>, Infallible> {
///     Ok(Response::new("a push".into()))
/// }
///
/// let github = EventRouter::builder()
///     .route("issues.opened", service_fn(issues))
///     .route("push", service_fn(push))
///     .build()?;
/// let verifier = Verifier::builder(Scheme::github()).secret("It's a Secret to Everybody").build()?;
/// let stack = WebhookLayer::builder(verifier).build()?;
/// let app: axum::Router = axum::Router::new().route("/github", post_service(stack.layer(github)));
/// # let _ = app;
/// # Ok::<(), tower_webhook::ConfigError>(())
/// ```
pub struct EventRouter<B> {
    routes: Arc<[(Pattern, Route<B>)]>,
    fallback: Option<Route<B>>,
}

impl<B> EventRouter<B> {
    /// Starts a router with no route.
    pub fn builder() -> EventRouterBuilder<B> {
        EventRouterBuilder {
            routes: Vec::new(),
            fallback: None,
            error: None,
        }
    }

    /// The route of an event of type `ty`, if a pattern takes it.
    fn route(&self, ty: Option<&str>) -> Option<&Route<B>> {
        self.routes
            .iter()
            .filter(|(pattern, _)| pattern.matches(ty))
            .max_by_key(|(pattern, _)| pattern.specificity())
            .map(|(_, route)| route)
    }
}

impl<B> Clone for EventRouter<B> {
    fn clone(&self) -> Self {
        Self {
            routes: self.routes.clone(),
            fallback: self.fallback.clone(),
        }
    }
}

impl<B> fmt::Debug for EventRouter<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EventRouter")
            .field(
                "patterns",
                &self.routes.iter().map(|(p, _)| p).collect::<Vec<_>>(),
            )
            .field("fallback", &self.fallback.is_some())
            .finish()
    }
}

/// Configures an [`EventRouter`]; [`EventRouter::builder`] starts it.
#[must_use]
pub struct EventRouterBuilder<B> {
    routes: Vec<(Pattern, Route<B>)>,
    fallback: Option<Route<B>>,
    error: Option<ConfigError>,
}

impl<B> EventRouterBuilder<B> {
    /// Sends the events whose type `pattern` takes (`invoice.paid`, `invoice.*`, `*`) to
    /// `service`, unless a more specific pattern takes them too.
    pub fn route<S>(mut self, pattern: &str, service: S) -> Self
    where
        S: tower_service::Service<
                Request<BufferedBody>,
                Response = Response<B>,
                Error = Infallible,
            > + Clone
            + Send
            + Sync
            + 'static,
        S::Future: Send + 'static,
    {
        match Pattern::parse(pattern) {
            Ok(pattern) => self
                .routes
                .push((pattern, BoxCloneSyncService::new(service))),
            Err(error) => {
                self.error.get_or_insert(error);
            }
        }
        self
    }

    /// Sends the events no pattern takes to `service` (by default they are answered 200
    /// `{"status":"ignored"}`).
    pub fn fallback<S>(mut self, service: S) -> Self
    where
        S: tower_service::Service<
                Request<BufferedBody>,
                Response = Response<B>,
                Error = Infallible,
            > + Clone
            + Send
            + Sync
            + 'static,
        S::Future: Send + 'static,
    {
        self.fallback = Some(BoxCloneSyncService::new(service));
        self
    }

    /// Builds the router.
    ///
    /// # Errors
    ///
    /// [`ConfigError::InvalidEventPattern`] for a pattern that cannot be parsed, or one given
    /// to two routes.
    pub fn build(self) -> Result<EventRouter<B>, ConfigError> {
        if let Some(error) = self.error {
            return Err(error);
        }
        for (i, (pattern, _)) in self.routes.iter().enumerate() {
            if self.routes[..i]
                .iter()
                .any(|(earlier, _)| earlier == pattern)
            {
                return Err(ConfigError::InvalidEventPattern {
                    pattern: pattern.to_string(),
                    reason: "two routes have this pattern",
                });
            }
        }
        Ok(EventRouter {
            routes: self.routes.into(),
            fallback: self.fallback,
        })
    }
}

impl<B> fmt::Debug for EventRouterBuilder<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EventRouterBuilder")
            .field(
                "patterns",
                &self.routes.iter().map(|(p, _)| p).collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

/// The response future of [`EventRouter`].
type RouterFuture<B> =
    Pin<Box<dyn Future<Output = Result<Response<ResponseBody<B>>, Infallible>> + Send>>;

impl<B: Send + 'static> Service<Request<BufferedBody>> for EventRouter<B> {
    type Response = Response<ResponseBody<B>>;
    type Error = Infallible;
    type Future = RouterFuture<B>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        // Each event's route is cloned and made ready in its own future.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<BufferedBody>) -> Self::Future {
        let Some(verified) = req.extensions().get::<Verified>() else {
            let rejection = Rejection::Misconfigured {
                reason: "EventRouter needs the verification layer in front of it",
            };
            rejection.log(About::extensions(req.extensions()));
            return Box::pin(std::future::ready(Ok(rejection.into_response())));
        };
        let route = self.route(verified.event_type()).or(self.fallback.as_ref());
        match route {
            Some(route) => {
                let route = route.clone();
                Box::pin(async move {
                    let response = route.oneshot(req).await?;
                    Ok(response.map(ResponseBody::new))
                })
            }
            None => {
                #[cfg(feature = "tracing")]
                tracing::info!(
                    target: "tower_webhook",
                    event_id = verified.id().unwrap_or("-"),
                    event_type = verified.event_type().unwrap_or("-"),
                    scheme = verified.scheme().as_str(),
                    "webhook ignored: no route"
                );
                Box::pin(std::future::ready(Ok(Rejection::Ignored.into_response())))
            }
        }
    }
}
