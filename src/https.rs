//! HTTPS only: a request that did not come over TLS gets 403 `{"error":"https_required"}`
//! before its body is read.
//!
//! A request came over TLS when either:
//!
//! - the server marked it: the connection was TLS and the server put [`Tls`] into each of its
//!   requests' extensions (how, below); or
//! - a trusted proxy says so: the peer is one of the
//!   [trusted proxies](crate::client_ip::ResolveClientIpLayer::trusted_proxies), and the
//!   value the nearest proxy added (the rightmost) is `https`, in the header family the
//!   proxies write: `X-Forwarded-Proto` beside `X-Forwarded-For`, or the `proto=` of the last
//!   `Forwarded` element. From any other peer these headers are ignored, as anyone can send
//!   them.
//!
//! # Marking TLS connections
//!
//! hyper and axum serve TLS through an acceptor (such as `tokio-rustls`) in your own accept
//! loop; after the handshake, serve that connection with a service that marks its requests:
//!
//! ```
//! use http::Request;
//! use tower::ServiceBuilder;
//! use tower_webhook::https::Tls;
//!
//! /// Marks a request of a TLS connection.
//! fn mark_tls<B>(mut req: Request<B>) -> Request<B> {
//!     req.extensions_mut().insert(Tls);
//!     req
//! }
//!
//! # use hyper::body::Incoming;
//! # let app = tower::service_fn(|_: Request<Incoming>| async { Ok::<_, std::convert::Infallible>(()) });
//! // For each accepted TLS connection, after the handshake:
//! let per_connection = ServiceBuilder::new()
//!     .map_request(mark_tls::<Incoming>)
//!     .service(app.clone());
//! # let _ = per_connection;
//! ```
//!
//! Behind a load balancer that ends TLS, trust it instead:
//!
//! ```
//! use tower::ServiceBuilder;
//! use tower_webhook::client_ip::ResolveClientIpLayer;
//! use tower_webhook::https::RequireHttpsLayer;
//!
//! let resolve = ResolveClientIpLayer::new().trusted_proxies(tower_webhook::parse_cidrs("10.0.0.0/8")?);
//! let stack = ServiceBuilder::new()
//!     .layer(RequireHttpsLayer::behind(&resolve))
//!     .layer(resolve);
//! # let _ = stack;
//! # Ok::<(), tower_webhook::ConfigError>(())
//! ```

use std::fmt;
use std::task::{Context, Poll};

use http::{Request, Response};
use tower_layer::Layer;
use tower_service::Service;

pub mod future {
    //! The response future of [`RequireHttps`](super::RequireHttps).
    pub use crate::before_body::ResponseFuture;
}

use crate::before_body::ResponseFuture;
use crate::client_ip::{self, ResolveClientIpLayer};
use crate::rejection::ResponseBody;
use crate::Rejection;

/// The mark of a request that came over a TLS connection, put into its extensions by the
/// server. See the [module docs](self).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Tls;

/// Applies [`RequireHttps`].
#[derive(Clone)]
pub struct RequireHttpsLayer {
    resolve: ResolveClientIpLayer,
}

impl RequireHttpsLayer {
    /// Only requests the server marked with [`Tls`] pass; no proxy is believed.
    #[must_use]
    pub fn new() -> Self {
        Self {
            resolve: ResolveClientIpLayer::new(),
        }
    }

    /// Also believes what the proxies `resolve` trusts say, in the header family it reads.
    #[must_use]
    pub fn behind(resolve: &ResolveClientIpLayer) -> Self {
        Self {
            resolve: resolve.clone(),
        }
    }
}

impl Default for RequireHttpsLayer {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for RequireHttpsLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RequireHttpsLayer")
            .field("client_ip", &self.resolve)
            .finish()
    }
}

impl<S> Layer<S> for RequireHttpsLayer {
    type Service = RequireHttps<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RequireHttps {
            inner,
            resolve: self.resolve.clone(),
        }
    }
}

/// Refuses requests that did not come over TLS with 403. See the [module docs](self).
#[derive(Debug, Clone)]
pub struct RequireHttps<S> {
    inner: S,
    resolve: ResolveClientIpLayer,
}

impl<S> RequireHttps<S> {
    inner_accessors!();
}

impl<S, B, ResBody> Service<Request<B>> for RequireHttps<S>
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
        if self.resolve.is_https(&req) {
            return ResponseFuture::inner(self.inner.call(req));
        }
        let client = client_ip::of(req.extensions());
        ResponseFuture::rejected(Rejection::HttpsRequired, req.headers(), client)
    }
}
