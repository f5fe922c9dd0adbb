//! IP allowlist by CIDR: a client outside every range gets 403.
//!
//! [`Allowlist`] reads the [`ClientIp`](crate::client_ip::ClientIp) that
//! [`ResolveClientIp`](crate::client_ip::ResolveClientIp) put into the request (or, without
//! that layer, the connection's peer address). It fails closed: no address at all is a 403 too.
//! The ranges are merged into sorted intervals, so a lookup is one binary search whether there
//! are ten ranges or a hundred thousand. [`IpAllowlist::replace`] swaps the ranges while
//! serving, for the senders that publish their address ranges and change them.
//!
//! # Examples
//!
//! ```
//! use tower::ServiceBuilder;
//! use tower_webhook::allowlist::{AllowlistLayer, IpAllowlist};
//! use tower_webhook::client_ip::ResolveClientIpLayer;
//!
//! let list = IpAllowlist::new(tower_webhook::parse_cidrs("192.30.252.0/22, 2606:50c0::/32")?);
//! let stack = ServiceBuilder::new()
//!     .layer(ResolveClientIpLayer::new())
//!     .layer(AllowlistLayer::new(list));
//! # let _ = stack;
//! # Ok::<(), tower_webhook::ConfigError>(())
//! ```
//!
//! Swapping the ranges at run time, for example from a periodic fetch of a sender's meta API:
//!
//! ```
//! use std::net::IpAddr;
//! use tower_webhook::allowlist::IpAllowlist;
//!
//! let list = IpAllowlist::new(tower_webhook::parse_cidrs("192.0.2.0/24")?);
//! let in_the_layer = list.clone(); // clones share the ranges
//! list.replace(tower_webhook::parse_cidrs("198.51.100.0/24")?);
//! assert!(in_the_layer.contains("198.51.100.7".parse::<IpAddr>().unwrap()));
//! assert!(!in_the_layer.contains("192.0.2.7".parse::<IpAddr>().unwrap()));
//! # Ok::<(), tower_webhook::ConfigError>(())
//! ```

use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;

use arc_swap::ArcSwap;
use std::task::{Context, Poll};

use http::{Request, Response};
use ipnet::IpNet;
use tower_layer::Layer;
use tower_service::Service;

#[cfg(feature = "provider-ranges")]
mod providers;
#[cfg(feature = "provider-ranges")]
pub use providers::{Provider, ProviderRanges, ProviderRangesBuilder};

pub mod future {
    //! The response future of [`Allowlist`](super::Allowlist).
    pub use crate::before_body::ResponseFuture;
}

use crate::before_body::ResponseFuture;
use crate::cidr::CidrSet;
use crate::rejection::ResponseBody;
use crate::{client_ip, Rejection};

/// The allowed ranges; clones share them, and [`replace`](Self::replace) swaps them for every
/// clone at once.
#[derive(Clone)]
pub struct IpAllowlist {
    set: Arc<ArcSwap<CidrSet>>,
    /// Filled at run time (by [`replace`](Self::replace)): may be empty when a stack is built,
    /// refusing everyone until then.
    filled_later: bool,
}

impl IpAllowlist {
    /// An allowlist of these ranges.
    #[must_use]
    pub fn new(nets: impl IntoIterator<Item = IpNet>) -> Self {
        Self {
            set: Arc::new(ArcSwap::from_pointee(CidrSet::new(nets))),
            filled_later: false,
        }
    }

    /// An allowlist of these ranges (perhaps none yet) that [`replace`](Self::replace) fills
    /// while serving: it fails closed, refusing everyone outside `nets` until then. A stack
    /// accepts it empty, where it refuses an empty [`new`](Self::new) one as a mistake.
    #[must_use]
    pub fn filled_later(nets: impl IntoIterator<Item = IpNet>) -> Self {
        Self {
            filled_later: true,
            ..Self::new(nets)
        }
    }

    /// Whether it is meant to be filled while serving.
    pub(crate) fn is_filled_later(&self) -> bool {
        self.filled_later
    }

    /// Replaces the ranges; requests already past the check are not affected.
    pub fn replace(&self, nets: impl IntoIterator<Item = IpNet>) {
        self.set.store(Arc::new(CidrSet::new(nets)));
    }

    /// Whether `ip` is in a range (IPv4-mapped IPv6 counts as IPv4).
    #[must_use]
    pub fn contains(&self, ip: IpAddr) -> bool {
        self.set.load().contains(ip)
    }

    /// The number of disjoint ranges after merging.
    #[must_use]
    pub fn ranges(&self) -> usize {
        self.set.load().ranges()
    }
}

impl From<Vec<IpNet>> for IpAllowlist {
    fn from(nets: Vec<IpNet>) -> Self {
        Self::new(nets)
    }
}

impl fmt::Debug for IpAllowlist {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IpAllowlist")
            .field("ranges", &self.ranges())
            .finish()
    }
}

/// Applies [`Allowlist`].
#[derive(Debug, Clone)]
pub struct AllowlistLayer {
    list: IpAllowlist,
}

impl AllowlistLayer {
    /// Allows only `list`.
    #[must_use]
    pub fn new(list: IpAllowlist) -> Self {
        Self { list }
    }
}

impl<S> Layer<S> for AllowlistLayer {
    type Service = Allowlist<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Allowlist {
            inner,
            list: self.list.clone(),
        }
    }
}

/// Refuses clients outside the allowlist with 403. See the [module docs](self).
#[derive(Debug, Clone)]
pub struct Allowlist<S> {
    inner: S,
    list: IpAllowlist,
}

impl<S> Allowlist<S> {
    /// Wraps `inner`.
    pub fn new(inner: S, list: IpAllowlist) -> Self {
        Self { inner, list }
    }

    /// An [`AllowlistLayer`] for `list`.
    #[must_use]
    pub fn layer(list: IpAllowlist) -> AllowlistLayer {
        AllowlistLayer::new(list)
    }

    inner_accessors!();
}

impl<S, B, ResBody> Service<Request<B>> for Allowlist<S>
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
        match client_ip::of(req.extensions()) {
            Some(ip) if self.list.contains(ip) => ResponseFuture::inner(self.inner.call(req)),
            ip => ResponseFuture::rejected(Rejection::Forbidden, req.headers(), ip),
        }
    }
}
