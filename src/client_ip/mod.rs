//! The client's IP address, resolved once per request and shared by the allowlist and the rate
//! limiter.
//!
//! [`ResolveClientIp`] reads the peer address of the connection and, only when that peer is a
//! trusted proxy, walks `X-Forwarded-For` (or `Forwarded`, RFC 7239) from the right: each hop
//! that is a trusted proxy is skipped, and the first that is not is the client. If every hop is
//! trusted, the leftmost is the client. Several header lines form one list. A hop that cannot be
//! parsed, met on that walk, is a 400 (`malformed_header`); what lies left of the client is
//! never read, so a client cannot spoof its address by prepending values. IPv4-mapped IPv6
//! addresses (`::ffff:a.b.c.d`) are the IPv4 address everywhere.
//!
//! The peer address comes from the request's extensions: a `SocketAddr` (as put there by
//! `hyper` setups and tests), or axum's `ConnectInfo<SocketAddr>` with the `axum` feature; other
//! servers (tonic's `TcpConnectInfo`, for one) plug in with
//! [`peer_address`](ResolveClientIpLayer::peer_address). No peer address at all is a wiring
//! error: 500.
//!
//! # Examples
//!
//! Directly exposed to the internet: the peer is the client.
//!
//! ```
//! use std::net::SocketAddr;
//! use http::Request;
//! use tower::{service_fn, ServiceBuilder, ServiceExt};
//! use tower_webhook::client_ip::{ClientIp, ResolveClientIpLayer};
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! let svc = ServiceBuilder::new()
//!     .layer(ResolveClientIpLayer::new())
//!     .service(service_fn(|req: Request<()>| async move {
//!         let ip = req.extensions().get::<ClientIp>().unwrap().ip();
//!         Ok::<_, std::convert::Infallible>(http::Response::new(ip.to_string()))
//!     }));
//! let mut req = Request::new(());
//! req.extensions_mut().insert(SocketAddr::from(([203, 0, 113, 9], 50000)));
//! let res = svc.oneshot(req).await.unwrap();
//! # }
//! ```
//!
//! Behind a load balancer in `10.0.0.0/8` that appends to `X-Forwarded-For`:
//!
//! ```
//! use tower_webhook::client_ip::{ForwardedHeader, ResolveClientIpLayer};
//!
//! let layer = ResolveClientIpLayer::new()
//!     .trusted_proxies(tower_webhook::parse_cidrs("10.0.0.0/8, fd00::/8")?)
//!     .header(ForwardedHeader::XForwardedFor);
//! # Ok::<(), tower_webhook::ConfigError>(())
//! ```

mod forwarded;

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::task::{Context, Poll};

use http::{Extensions, Request, Response};
use ipnet::IpNet;
use tower_layer::Layer;
use tower_service::Service;

pub mod future {
    //! The response future of [`ResolveClientIp`](super::ResolveClientIp).
    pub use crate::before_body::ResponseFuture;
}
pub use forwarded::ForwardedHeader;

use crate::before_body::ResponseFuture;
use crate::cidr::{canonical, CidrSet};
use crate::rejection::ResponseBody;
use crate::Rejection;

/// The resolved client address (IPv4-mapped IPv6 already turned into IPv4), as a request
/// extension. With the `axum` feature it is also an extractor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ClientIp(IpAddr);

impl ClientIp {
    /// The address.
    #[must_use]
    pub fn ip(self) -> IpAddr {
        self.0
    }
}

impl fmt::Display for ClientIp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// Where the peer address of a connection is found in a request's extensions.
pub type PeerAddress = fn(&Extensions) -> Option<SocketAddr>;

/// The default [`PeerAddress`]: a `SocketAddr` extension, or axum's `ConnectInfo<SocketAddr>`
/// (with the `axum` feature).
pub fn default_peer_address(extensions: &Extensions) -> Option<SocketAddr> {
    let direct = extensions.get::<SocketAddr>().copied();
    #[cfg(feature = "axum")]
    let direct = direct.or_else(|| {
        extensions
            .get::<axum::extract::ConnectInfo<SocketAddr>>()
            .map(|info| info.0)
    });
    direct
}

/// The client address of a request: the [`ClientIp`] extension if [`ResolveClientIp`] ran,
/// otherwise the peer address itself (no proxy is trusted then).
pub(crate) fn of(extensions: &Extensions) -> Option<IpAddr> {
    extensions
        .get::<ClientIp>()
        .map(|c| c.0)
        .or_else(|| default_peer_address(extensions).map(|a| canonical(a.ip())))
}

struct Resolver {
    trusted: CidrSet,
    header: ForwardedHeader,
    peer: PeerAddress,
}

impl Resolver {
    fn resolve<B>(&self, req: &Request<B>) -> Result<IpAddr, Rejection> {
        let peer = (self.peer)(req.extensions())
            .map(|a| canonical(a.ip()))
            .ok_or(Rejection::Misconfigured {
                reason: "no peer address in the request extensions",
            })?;
        if !self.trusted.contains(peer) {
            return Ok(peer);
        }
        let mut client = peer;
        for hop in forwarded::hops_rev(req.headers(), self.header) {
            client = canonical(hop?);
            if !self.trusted.contains(client) {
                break;
            }
        }
        Ok(client)
    }
}

/// Applies [`ResolveClientIp`]. Clones share the configuration.
#[derive(Clone)]
pub struct ResolveClientIpLayer {
    resolver: Arc<Resolver>,
}

impl ResolveClientIpLayer {
    /// The peer address is the client; no proxy is trusted.
    #[must_use]
    pub fn new() -> Self {
        Self {
            resolver: Arc::new(Resolver {
                trusted: CidrSet::default(),
                header: ForwardedHeader::default(),
                peer: default_peer_address,
            }),
        }
    }

    fn with(self, f: impl FnOnce(&mut Resolver)) -> Self {
        let r = &*self.resolver;
        let mut resolver = Resolver {
            trusted: r.trusted.clone(),
            header: r.header,
            peer: r.peer,
        };
        f(&mut resolver);
        Self {
            resolver: Arc::new(resolver),
        }
    }

    /// The proxies whose forwarding header is believed.
    #[must_use]
    pub fn trusted_proxies(self, proxies: impl IntoIterator<Item = IpNet>) -> Self {
        let trusted = CidrSet::new(proxies);
        self.with(|r| r.trusted = trusted)
    }

    /// Which header trusted proxies write (default `X-Forwarded-For`).
    #[must_use]
    pub fn header(self, header: ForwardedHeader) -> Self {
        self.with(|r| r.header = header)
    }

    /// Where the peer address is found (default [`default_peer_address`]).
    #[must_use]
    pub fn peer_address(self, peer: PeerAddress) -> Self {
        self.with(|r| r.peer = peer)
    }
}

impl ResolveClientIpLayer {
    /// Whether `req` came over TLS: marked [`Tls`](crate::https::Tls) by the server, or said
    /// to by a trusted peer in the header family it writes.
    pub(crate) fn is_https<B>(&self, req: &Request<B>) -> bool {
        if req.extensions().get::<crate::https::Tls>().is_some() {
            return true;
        }
        let r = &*self.resolver;
        let from_trusted =
            (r.peer)(req.extensions()).is_some_and(|peer| r.trusted.contains(canonical(peer.ip())));
        from_trusted
            && forwarded::proto(req.headers(), r.header)
                .is_some_and(|p| p.eq_ignore_ascii_case("https"))
    }

    /// Resolves the client of `req` and puts it into its extensions as [`ClientIp`]: the
    /// first stage of the one-call stack.
    pub(crate) fn resolve_into<B>(&self, req: &mut Request<B>) -> Result<IpAddr, Rejection> {
        resolve_into(&self.resolver, req)
    }
}

fn resolve_into<B>(resolver: &Resolver, req: &mut Request<B>) -> Result<IpAddr, Rejection> {
    let ip = resolver.resolve(req)?;
    req.extensions_mut().insert(ClientIp(ip));
    Ok(ip)
}

impl Default for ResolveClientIpLayer {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for ResolveClientIpLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResolveClientIpLayer")
            .field("trusted_ranges", &self.resolver.trusted.ranges())
            .field("header", &self.resolver.header)
            .finish_non_exhaustive()
    }
}

impl<S> Layer<S> for ResolveClientIpLayer {
    type Service = ResolveClientIp<S>;

    fn layer(&self, inner: S) -> Self::Service {
        ResolveClientIp {
            inner,
            resolver: self.resolver.clone(),
        }
    }
}

/// Puts the request's [`ClientIp`] into its extensions. See the [module docs](self).
#[derive(Clone)]
pub struct ResolveClientIp<S> {
    inner: S,
    resolver: Arc<Resolver>,
}

impl<S> ResolveClientIp<S> {
    /// A [`ResolveClientIpLayer`] with the defaults: the peer address, no trusted proxy.
    #[must_use]
    pub fn layer() -> ResolveClientIpLayer {
        ResolveClientIpLayer::new()
    }

    inner_accessors!();
}

impl<S: fmt::Debug> fmt::Debug for ResolveClientIp<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResolveClientIp")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

impl<S, B, ResBody> Service<Request<B>> for ResolveClientIp<S>
where
    S: Service<Request<B>, Response = Response<ResBody>>,
{
    type Response = Response<ResponseBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        match resolve_into(&self.resolver, &mut req) {
            Ok(_) => ResponseFuture::inner(self.inner.call(req)),
            Err(rejection) => {
                let peer = (self.resolver.peer)(req.extensions());
                ResponseFuture::rejected(rejection, req.headers(), peer.map(|p| p.ip()))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resolve(
        trusted: &str,
        header: ForwardedHeader,
        peer: &str,
        lines: &[&str],
    ) -> Result<IpAddr, Rejection> {
        let layer = ResolveClientIpLayer::new()
            .trusted_proxies(crate::parse_cidrs(trusted).unwrap())
            .header(header);
        let mut req = Request::new(());
        req.extensions_mut()
            .insert(peer.parse::<SocketAddr>().unwrap());
        for line in lines {
            req.headers_mut()
                .append(header.name(), line.parse().unwrap());
        }
        layer.resolver.resolve(&req)
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    const XFF: ForwardedHeader = ForwardedHeader::XForwardedFor;
    const FWD: ForwardedHeader = ForwardedHeader::Forwarded;

    #[test]
    fn an_untrusted_peer_cannot_spoof() {
        assert_eq!(
            resolve("10.0.0.0/8", XFF, "198.51.100.7:1", &["1.2.3.4"]),
            Ok(ip("198.51.100.7"))
        );
        // Not even with garbage: the header of an untrusted peer is never read.
        assert_eq!(
            resolve("10.0.0.0/8", XFF, "198.51.100.7:1", &["garbage"]),
            Ok(ip("198.51.100.7"))
        );
    }

    #[test]
    fn proxy_hops_are_walked_from_the_right() {
        // client 203.0.113.5 -> attacker-prepended 6.6.6.6 -> proxies 10.0.0.2, 10.0.0.1
        let lines = ["6.6.6.6, 203.0.113.5, 10.0.0.2"];
        assert_eq!(
            resolve("10.0.0.0/8", XFF, "10.0.0.1:1", &lines),
            Ok(ip("203.0.113.5"))
        );
        // Several lines are one list.
        let lines = ["6.6.6.6", "203.0.113.5", "10.0.0.2"];
        assert_eq!(
            resolve("10.0.0.0/8", XFF, "10.0.0.1:1", &lines),
            Ok(ip("203.0.113.5"))
        );
        // Every hop trusted: the leftmost.
        assert_eq!(
            resolve("10.0.0.0/8", XFF, "10.0.0.1:1", &["10.9.9.9, 10.0.0.2"]),
            Ok(ip("10.9.9.9"))
        );
        // No header at all: the peer.
        assert_eq!(
            resolve("10.0.0.0/8", XFF, "10.0.0.1:1", &[]),
            Ok(ip("10.0.0.1"))
        );
    }

    #[test]
    fn garbage_met_on_the_walk_is_400_but_left_of_the_client_is_ignored() {
        for bad in ["1.2.3.4, nonsense", "1.2.3.4,", "fe80::1%eth0", ""] {
            assert!(
                matches!(
                    resolve("10.0.0.0/8", XFF, "10.0.0.1:1", &[bad]),
                    Err(Rejection::MalformedHeader { .. })
                ),
                "{bad:?}"
            );
        }
        assert_eq!(
            resolve("10.0.0.0/8", XFF, "10.0.0.1:1", &["nonsense, 203.0.113.5"]),
            Ok(ip("203.0.113.5"))
        );
    }

    #[test]
    fn forwarded_with_quoted_ipv6_and_ports() {
        let lines = [r#"for=192.0.2.60;proto=http, for="[2001:db8:cafe::17]:4711""#];
        assert_eq!(
            resolve("10.0.0.0/8", FWD, "10.0.0.1:1", &lines),
            Ok(ip("2001:db8:cafe::17"))
        );
        let lines = [r#"for=192.0.2.60, for="[fd00::1]:80""#];
        assert_eq!(
            resolve("10.0.0.0/8, fd00::/8", FWD, "10.0.0.1:1", &lines),
            Ok(ip("192.0.2.60"))
        );
        assert!(resolve("10.0.0.0/8", FWD, "10.0.0.1:1", &["for=unknown"]).is_err());
        assert!(resolve("10.0.0.0/8", FWD, "10.0.0.1:1", &["for=_hidden"]).is_err());
    }

    #[test]
    fn ipv4_mapped_addresses_are_ipv4() {
        assert_eq!(
            resolve(
                "10.0.0.0/8",
                XFF,
                "[::ffff:10.0.0.1]:1",
                &["::ffff:203.0.113.5"]
            ),
            Ok(ip("203.0.113.5"))
        );
        assert_eq!(
            resolve("::ffff:10.0.0.0/104", XFF, "10.0.0.1:1", &["203.0.113.5"]),
            Ok(ip("203.0.113.5"))
        );
    }

    #[test]
    fn no_peer_is_a_wiring_error() {
        let layer = ResolveClientIpLayer::new();
        assert!(matches!(
            layer.resolver.resolve(&Request::new(())),
            Err(Rejection::Misconfigured { .. })
        ));
    }
}
