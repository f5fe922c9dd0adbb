use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use http::{Request, Response};
use http_body::Body;
use ipnet::IpNet;
use tower_layer::Layer;
use tower_service::Service;

use crate::allowlist::IpAllowlist;
use crate::body::{BodyBudget, BodyLimits, BufferedBody, ResponseFuture, Stage, Verifying};
use crate::client_ip::{ForwardedHeader, PeerAddress, ResolveClientIpLayer};
use crate::content_type::MediaTypes;
use crate::events::Subscription;
use crate::observe::{About, Observer, RequestSpan, Watch};
use crate::penalty::PenaltyBox;
use crate::rate_limit::RateLimitLayer;
use crate::rejection::ResponseBody;
use crate::replay::{ReplayBuilder, StoreFuture};
use crate::{ConfigError, Rejection, Verifier};

/// The stages that are on, shared by every clone of the layer and its services.
struct Stack {
    resolve: ResolveClientIpLayer,
    require_https: bool,
    penalty: Option<PenaltyBox>,
    allow: Option<IpAllowlist>,
    rate: Option<RateLimitLayer>,
    content_types: Option<MediaTypes>,
    limits: BodyLimits,
    budget: Option<BodyBudget>,
    /// The signature and the stages after it, handed to each request.
    verifying: Verifying,
    observer: Arc<Observer>,
}

impl Stack {
    /// The stages before the body: client IP, HTTPS, penalty box, allowlist, rate limit,
    /// content type. Says who the client is.
    fn before_body<B>(&self, req: &mut Request<B>) -> Result<IpAddr, (Rejection, Option<IpAddr>)> {
        let ip = self.resolve.resolve_into(req).map_err(|r| (r, None))?;
        let refuse = |rejection| (rejection, Some(ip));
        if self.require_https && !self.resolve.is_https(req) {
            return Err(refuse(Rejection::HttpsRequired));
        }
        if let Some(penalty) = &self.penalty {
            penalty.check(ip).map_err(refuse)?;
        }
        if let Some(allow) = &self.allow {
            if !allow.contains(ip) {
                return Err(refuse(Rejection::Forbidden));
            }
        }
        if let Some(rate) = &self.rate {
            rate.check(req.headers(), req.extensions())
                .map_err(refuse)?;
        }
        if let Some(types) = &self.content_types {
            types.check(req.headers()).map_err(refuse)?;
        }
        Ok(ip)
    }
}

/// Applies [`Webhook`]: the whole stack in the secure order. See the [module docs](super).
///
/// Clones share the stages' state (rate-limit buckets, the replay store).
#[derive(Clone)]
pub struct WebhookLayer {
    stack: Arc<Stack>,
}

impl WebhookLayer {
    /// Starts a stack around `verifier`. Only verification and body buffering are on until
    /// switched on by the builder.
    pub fn builder(verifier: Verifier) -> WebhookBuilder {
        WebhookBuilder {
            limits: *verifier.body_limits(),
            verifier,
            resolve: ResolveClientIpLayer::new(),
            require_https: false,
            penalty: None,
            allow: None,
            rate: None,
            content_types: None,
            budget: None,
            subscription: None,
            replay: None,
            slack_handshake: false,
            endpoint: None,
            #[cfg(feature = "metrics")]
            event_types: None,
        }
    }

    /// Whether the stages that depend on another system answer now: the replay store's
    /// [`ping`](crate::replay::ReplayStore::ping), or at once `Ok` without one. For a health
    /// check endpoint.
    ///
    /// ```
    /// # use tower_webhook::{scheme::Scheme, replay::MemoryStore, Verifier, WebhookLayer};
    /// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
    /// let verifier = Verifier::builder(Scheme::github()).secret("s").build()?;
    /// let layer = WebhookLayer::builder(verifier).replay(MemoryStore::default()).build()?;
    /// assert!(layer.health().await.is_ok());
    /// # Ok::<(), tower_webhook::ConfigError>(())
    /// # }).unwrap();
    /// ```
    pub fn health(&self) -> StoreFuture<()> {
        match &self.stack.verifying.replay {
            Some(replay) => replay.ping(),
            None => StoreFuture::ready(Ok(())),
        }
    }

    /// The verifier the stack checks signatures with.
    #[must_use]
    pub fn verifier(&self) -> &Verifier {
        &self.stack.verifying.verifier
    }
}

impl<S> Layer<S> for WebhookLayer {
    type Service = Webhook<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Webhook {
            inner,
            stack: self.stack.clone(),
        }
    }
}

impl fmt::Debug for WebhookLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = &*self.stack;
        f.debug_struct("WebhookLayer")
            .field("client_ip", &s.resolve)
            .field("require_https", &s.require_https)
            .field("penalty", &s.penalty)
            .field("allow", &s.allow)
            .field("rate_limit", &s.rate)
            .field("content_types", &s.content_types)
            .field("limits", &s.limits)
            .field("budget", &s.budget)
            .field("verifying", &s.verifying)
            .finish()
    }
}

/// Configures a [`WebhookLayer`]; [`WebhookLayer::builder`] starts it.
#[must_use]
pub struct WebhookBuilder {
    verifier: Verifier,
    resolve: ResolveClientIpLayer,
    require_https: bool,
    penalty: Option<PenaltyBox>,
    allow: Option<IpAllowlist>,
    rate: Option<RateLimitLayer>,
    content_types: Option<MediaTypes>,
    limits: BodyLimits,
    budget: Option<BodyBudget>,
    subscription: Option<Subscription>,
    replay: Option<ReplayBuilder>,
    slack_handshake: bool,
    endpoint: Option<String>,
    #[cfg(feature = "metrics")]
    event_types: Option<Subscription>,
}

impl WebhookBuilder {
    /// The name of this endpoint in metrics and logs (the `endpoint` label; default
    /// `default`): a fixed name such as its path, never anything a request chooses. See
    /// [`observe`](crate::observe).
    pub fn endpoint(mut self, name: impl Into<String>) -> Self {
        self.endpoint = Some(name.into());
        self
    }

    /// Proxies whose `X-Forwarded-For` (or `Forwarded`, see
    /// [`forwarded_header`](Self::forwarded_header)) is believed. Without them the client is
    /// the peer address.
    pub fn trusted_proxies(mut self, proxies: impl IntoIterator<Item = IpNet>) -> Self {
        self.resolve = self.resolve.trusted_proxies(proxies);
        self
    }

    /// Which header the trusted proxies write (default `X-Forwarded-For`).
    pub fn forwarded_header(mut self, header: ForwardedHeader) -> Self {
        self.resolve = self.resolve.header(header);
        self
    }

    /// Where the peer address is found in the request's extensions (default: a
    /// `SocketAddr`, or axum's `ConnectInfo<SocketAddr>` with the `axum` feature).
    pub fn peer_address(mut self, peer: PeerAddress) -> Self {
        self.resolve = self.resolve.peer_address(peer);
        self
    }

    /// Refuses requests that did not come over TLS with 403 `https_required`: see
    /// [`https`](crate::https) for how a server marks TLS connections, and how trusted proxies
    /// say so (`X-Forwarded-Proto`, or `proto=` in `Forwarded` with
    /// [`ForwardedHeader::Forwarded`]). Off by default.
    pub fn require_https(mut self, require: bool) -> Self {
        self.require_https = require;
        self
    }

    /// Boxes clients that fail verification too often: see [`penalty`](crate::penalty).
    /// Give clones of one [`PenaltyBox`] to several stacks to share it.
    pub fn penalty(mut self, penalty: PenaltyBox) -> Self {
        self.penalty = Some(penalty);
        self
    }

    /// Accepts only these media types; any other `Content-Type`, or none, gets 415 before
    /// the body is read.
    pub fn content_types(mut self, types: MediaTypes) -> Self {
        self.content_types = Some(types);
        self
    }

    /// Reserves each body in a memory budget shared by every stack given a clone of it: a
    /// body it cannot cover gets 503 `overloaded`. See [`BodyBudget`].
    pub fn body_budget(mut self, budget: BodyBudget) -> Self {
        self.budget = Some(budget);
        self
    }

    /// Only clients in these ranges may deliver; others get 403. Give an [`IpAllowlist`] to
    /// keep a handle that replaces the ranges at run time, or the ranges themselves.
    pub fn allow(mut self, allow: impl Into<IpAllowlist>) -> Self {
        self.allow = Some(allow.into());
        self
    }

    /// Limits each client (or whatever [`KeyBy`](crate::rate_limit::KeyBy) says): a
    /// [`Quota`](crate::rate_limit::Quota), or a [`RateLimitLayer`] to share its buckets or
    /// count by another key.
    pub fn rate_limit(mut self, limit: impl Into<RateLimitLayer>) -> Self {
        self.rate = Some(limit.into());
        self
    }

    /// The largest body accepted, in bytes (default: the verifier's body limit, 1 MiB unless
    /// set); a larger one answers 413 before or while it is read.
    pub fn max_body(mut self, max_bytes: usize) -> Self {
        self.limits = self.limits.max_bytes(max_bytes);
        self
    }

    /// The time the whole body may take (default: the verifier's, 10 s unless set); a slower
    /// one answers 408.
    pub fn body_timeout(mut self, timeout: Duration) -> Self {
        self.limits = self.limits.timeout(timeout);
        self
    }

    /// Handles only the event types `subscription` takes; answers every other verified event
    /// 200 `{"status":"ignored"}` without the handler and without touching the replay store.
    pub fn subscribe(mut self, subscription: Subscription) -> Self {
        self.subscription = Some(subscription);
        self
    }

    /// Answers Slack's URL verification handshake itself, once the request is verified: a
    /// Slack `url_verification` event gets 200 `{"challenge":"<its challenge>"}` without the
    /// handler, the subscription or the replay store. Off by default.
    pub fn slack_url_verification(mut self, answer: bool) -> Self {
        self.slack_handshake = answer;
        self
    }

    /// Also counts verified deliveries by event type (`webhook_events_total` and
    /// `webhook_event_handler_duration_seconds`, see [`observe`](crate::observe)), for the
    /// types `types` takes; any other type counts as `other`. Types are the sender's choice, so
    /// they are never a label unless named here.
    ///
    /// ```
    /// # use tower_webhook::{events::Subscription, scheme::Scheme, Verifier, WebhookLayer};
    /// let verifier = Verifier::builder(Scheme::stripe()).secret("whsec_test").build()?;
    /// let layer = WebhookLayer::builder(verifier)
    ///     .metrics_event_types(Subscription::new(["invoice.*", "customer.subscription.*"])?)
    ///     .build()?;
    /// # let _ = layer;
    /// # Ok::<(), tower_webhook::ConfigError>(())
    /// ```
    #[cfg(feature = "metrics")]
    pub fn metrics_event_types(mut self, types: Subscription) -> Self {
        self.event_types = Some(types);
        self
    }

    /// Handles each verified event once: a store (for the defaults) or a
    /// [`ReplayBuilder`] with its settings. Its TTL is checked against the verifier's
    /// tolerance when the stack is built.
    pub fn replay(mut self, replay: impl Into<ReplayBuilder>) -> Self {
        self.replay = Some(replay.into());
        self
    }

    /// Builds the layer.
    ///
    /// # Errors
    ///
    /// - [`ConfigError::InvalidStack`] when an allowlist has no range (it would refuse
    ///   everyone), or a limit is zero;
    /// - the replay builder's errors ([`ConfigError::InvalidReplay`]): a TTL shorter than
    ///   twice the tolerance, or a scheme with neither event id nor signed timestamp.
    pub fn build(self) -> Result<WebhookLayer, ConfigError> {
        if self
            .allow
            .as_ref()
            .is_some_and(|a| a.ranges() == 0 && !a.is_filled_later())
        {
            return Err(ConfigError::InvalidStack {
                reason: "the allowlist has no range: it would refuse every request",
            });
        }
        if self.limits.byte_limit() == 0 || self.limits.time_limit().is_zero() {
            return Err(ConfigError::InvalidStack {
                reason: "the body limits must not be zero",
            });
        }
        let endpoint = self.endpoint.as_deref().unwrap_or("default");
        let replay = match self.replay {
            Some(builder) => Some(builder.endpoint(endpoint).build(&self.verifier)?),
            None => None,
        };
        let scheme = self.verifier.scheme().kind().as_str();
        let observer = Observer::new(endpoint, scheme, self.verifier.key_count());
        #[cfg(feature = "metrics")]
        let observer = observer.event_types(self.event_types);
        Ok(WebhookLayer {
            stack: Arc::new(Stack {
                resolve: self.resolve,
                require_https: self.require_https,
                penalty: self.penalty.clone(),
                allow: self.allow,
                rate: self.rate,
                content_types: self.content_types,
                limits: self.limits,
                budget: self.budget,
                verifying: Verifying {
                    verifier: self.verifier,
                    subscription: self.subscription,
                    replay,
                    slack_handshake: self.slack_handshake,
                    penalty: self.penalty,
                },
                observer: Arc::new(observer),
            }),
        })
    }
}

impl fmt::Debug for WebhookBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebhookBuilder")
            .field("verifier", &self.verifier)
            .field("client_ip", &self.resolve)
            .field("require_https", &self.require_https)
            .field("penalty", &self.penalty)
            .field("allow", &self.allow)
            .field("rate_limit", &self.rate)
            .field("content_types", &self.content_types)
            .field("limits", &self.limits)
            .field("budget", &self.budget)
            .field("subscription", &self.subscription)
            .field("replay", &self.replay)
            .field("endpoint", &self.endpoint)
            .finish_non_exhaustive()
    }
}

/// Runs every stage of the stack in front of `S`. See the [module docs](super).
#[derive(Clone)]
pub struct Webhook<S> {
    inner: S,
    stack: Arc<Stack>,
}

impl<S> Webhook<S> {
    inner_accessors!();
}

impl<S: fmt::Debug> fmt::Debug for Webhook<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Webhook")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

impl<S, B, ResBody> Service<Request<B>> for Webhook<S>
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

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        let stack = &self.stack;
        let span = RequestSpan::new(&stack.observer);
        let client = match span.in_scope(|| stack.before_body(&mut req)) {
            Ok(client) => client,
            Err((rejection, client)) => {
                let watch = Watch::new(&stack.observer, client, &span);
                let verifier = Some(&stack.verifying.verifier);
                let about = About::request(req.headers(), req.extensions(), verifier);
                span.in_scope(|| rejection.log(watch.about(about)));
                return ResponseFuture::rejected(rejection, watch, span);
            }
        };
        let (parts, body) = req.into_parts();
        let stage = Stage::Verify(stack.verifying.clone());
        let watched = (Watch::new(&stack.observer, Some(client), &span), span);
        let (limits, budget) = (&stack.limits, stack.budget.as_ref());
        ResponseFuture::start(body, parts, limits, &mut self.inner, stage, watched, budget)
    }
}
