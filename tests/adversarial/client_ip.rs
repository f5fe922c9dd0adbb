//! Client IP and allowlist: spoofed headers from untrusted peers, IPv4-mapped IPv6 (in headers
//! and as the peer itself), zone ids and ports in header values, `unknown` and obfuscated
//! `Forwarded` nodes, from real source addresses on 127.0.0.0/8 and ::1.

use std::net::{IpAddr, SocketAddr};

use axum::routing::post;
use axum::Router;
use tower::ServiceBuilder;
use tower_webhook::allowlist::{AllowlistLayer, IpAllowlist};
use tower_webhook::client_ip::{ClientIp, ForwardedHeader, ResolveClientIpLayer};
use tower_webhook::parse_cidrs;

use super::common::{exchange_from, serve_with_peer};

/// The proxy the app trusts, and the ranges it lets in.
const TRUSTED: &str = "127.0.0.1/32, ::1/128";
const ALLOWED: &str = "203.0.113.0/24, 2001:db8:1::/48, 127.0.0.3/32";

/// What a request must get: 200 with this client address echoed, or a refusal.
#[derive(Debug, Clone, Copy)]
enum Want {
    Client(&'static str),
    Forbidden,
    Malformed,
}

/// A peer address, the forwarding header it sends (if any), and what it must get.
type Case<'a> = (&'a str, Option<(&'a str, &'a str)>, Want);

async fn app(bind: &str, header: ForwardedHeader) -> SocketAddr {
    let router = Router::new()
        .route(
            "/hook",
            post(|client: ClientIp| async move { client.ip().to_string() }),
        )
        .layer(
            ServiceBuilder::new()
                .layer(
                    ResolveClientIpLayer::new()
                        .trusted_proxies(parse_cidrs(TRUSTED).unwrap())
                        .header(header),
                )
                .layer(AllowlistLayer::new(IpAllowlist::new(
                    parse_cidrs(ALLOWED).unwrap(),
                ))),
        );
    serve_with_peer(bind, router).await
}

async fn expect(addr: SocketAddr, from: &str, header: Option<(&str, &str)>, want: Want) {
    let mut request =
        b"POST /hook HTTP/1.1\r\nhost: 127.0.0.1\r\nconnection: close\r\ncontent-length: 0\r\n"
            .to_vec();
    if let Some((name, value)) = header {
        request.extend_from_slice(format!("{name}: {value}\r\n").as_bytes());
    }
    request.extend_from_slice(b"\r\n");
    let from: IpAddr = from.parse().unwrap();
    let replies = exchange_from(Some(from), addr, &request).await;
    let reply = &replies[0];
    let got = (reply.status, reply.text());
    let what = format!("from {from} with {header:?}");
    match want {
        Want::Client(ip) => assert_eq!(got, (200, ip.to_owned()), "{what}"),
        Want::Forbidden => assert_eq!(got, (403, r#"{"error":"forbidden"}"#.into()), "{what}"),
        Want::Malformed => {
            assert_eq!(
                got,
                (400, r#"{"error":"malformed_header"}"#.into()),
                "{what}"
            );
        }
    }
}

#[tokio::test]
async fn x_forwarded_for() {
    use Want::{Client, Forbidden, Malformed};
    let addr = app("127.0.0.1", ForwardedHeader::XForwardedFor).await;
    let xff = |v| Some(("x-forwarded-for", v));
    let cases: &[Case] = &[
        // Untrusted peers: whatever they claim is ignored, garbage included.
        ("127.0.0.2", None, Forbidden),
        ("127.0.0.2", xff("203.0.113.5"), Forbidden),
        (
            "127.0.0.2",
            Some(("forwarded", "for=203.0.113.5")),
            Forbidden,
        ),
        ("127.0.0.2", xff("not an address"), Forbidden),
        ("127.0.0.3", xff("198.51.100.1"), Client("127.0.0.3")),
        ("127.0.0.3", xff("unknown, %%%"), Client("127.0.0.3")),
        // The trusted proxy: the rightmost hop it did not add itself is the client.
        ("127.0.0.1", None, Forbidden),
        ("127.0.0.1", xff("203.0.113.5"), Client("203.0.113.5")),
        (
            "127.0.0.1",
            xff("198.51.100.9, 203.0.113.5"),
            Client("203.0.113.5"),
        ),
        ("127.0.0.1", xff("203.0.113.5, 198.51.100.9"), Forbidden),
        (
            "127.0.0.1",
            xff("203.0.113.5, 127.0.0.1"),
            Client("203.0.113.5"),
        ),
        (
            "127.0.0.1",
            xff("garbage, 203.0.113.5"),
            Client("203.0.113.5"),
        ),
        // IPv4-mapped IPv6 is the IPv4 client.
        (
            "127.0.0.1",
            xff("::ffff:203.0.113.5"),
            Client("203.0.113.5"),
        ),
        (
            "127.0.0.1",
            xff("[::ffff:203.0.113.5]:443"),
            Client("203.0.113.5"),
        ),
        ("127.0.0.1", xff("::ffff:198.51.100.9"), Forbidden),
        // Ports are dropped; IPv6 in or out of brackets.
        ("127.0.0.1", xff("203.0.113.5:8080"), Client("203.0.113.5")),
        ("127.0.0.1", xff("2001:db8:1::7"), Client("2001:db8:1::7")),
        (
            "127.0.0.1",
            xff("[2001:db8:1::7]:443"),
            Client("2001:db8:1::7"),
        ),
        ("127.0.0.1", xff("2001:db8:2::7"), Forbidden),
        // Zone ids, names, `unknown`, bad ports and empty hops are refused, not guessed at.
        ("127.0.0.1", xff("fe80::1%eth0"), Malformed),
        ("127.0.0.1", xff("[fe80::1%25eth0]:80"), Malformed),
        ("127.0.0.1", xff("proxy.example"), Malformed),
        ("127.0.0.1", xff("unknown"), Malformed),
        ("127.0.0.1", xff("203.0.113.5:99999999"), Malformed),
        ("127.0.0.1", xff("203.0.113.5,"), Malformed),
        ("127.0.0.1", xff(""), Malformed),
        (
            "127.0.0.1",
            xff("203.0.113.5 , 2001:db8:1::7"),
            Client("2001:db8:1::7"),
        ),
    ];
    for (from, header, want) in cases {
        expect(addr, from, *header, *want).await;
    }
}

#[tokio::test]
async fn forwarded() {
    use Want::{Client, Forbidden, Malformed};
    let addr = app("127.0.0.1", ForwardedHeader::Forwarded).await;
    let fwd = |v| Some(("forwarded", v));
    let cases: &[Case] = &[
        ("127.0.0.2", fwd("for=203.0.113.5"), Forbidden),
        ("127.0.0.1", fwd("for=203.0.113.5"), Client("203.0.113.5")),
        (
            "127.0.0.1",
            fwd("For=203.0.113.5;proto=https;by=127.0.0.1"),
            Client("203.0.113.5"),
        ),
        (
            "127.0.0.1",
            fwd(r#"for="[2001:db8:1::7]:4711""#),
            Client("2001:db8:1::7"),
        ),
        (
            "127.0.0.1",
            fwd(r#"for="[::ffff:203.0.113.5]""#),
            Client("203.0.113.5"),
        ),
        (
            "127.0.0.1",
            fwd("for=198.51.100.9, for=203.0.113.5"),
            Client("203.0.113.5"),
        ),
        (
            "127.0.0.1",
            fwd("for=203.0.113.5, for=198.51.100.9"),
            Forbidden,
        ),
        // The proxy hid the client: there is no address to allow or limit.
        ("127.0.0.1", fwd("for=unknown"), Malformed),
        ("127.0.0.1", fwd("for=_hidden"), Malformed),
        ("127.0.0.1", fwd(r#"for="_gazonk""#), Malformed),
        ("127.0.0.1", fwd(r#"for="[fe80::1%25eth0]""#), Malformed),
        (
            "127.0.0.1",
            fwd("for=203.0.113.5;for=203.0.113.6"),
            Malformed,
        ),
        ("127.0.0.1", fwd(r#"for="203.0.113.5"#), Malformed),
        ("127.0.0.1", fwd(r#"for="\"203.0.113.5\"""#), Malformed),
        ("127.0.0.1", fwd("proto=https"), Malformed),
        (
            "127.0.0.1",
            fwd("for=2001:db8:1::7"),
            Client("2001:db8:1::7"),
        ),
    ];
    for (from, header, want) in cases {
        expect(addr, from, *header, *want).await;
    }
}

/// A server on an IPv6 socket bound to `::ffff:127.0.0.1` sees IPv4 peers as IPv4-mapped
/// addresses; they must match the IPv4 ranges. And `::1` as a trusted peer.
#[tokio::test]
async fn ipv4_mapped_and_ipv6_peers() {
    use Want::{Client, Forbidden};
    let mapped = app("::ffff:127.0.0.1", ForwardedHeader::XForwardedFor).await;
    assert!(mapped.is_ipv6(), "{mapped}");
    let addr = SocketAddr::from(([127, 0, 0, 1], mapped.port()));
    let xff = |v| Some(("x-forwarded-for", v));
    expect(addr, "127.0.0.1", xff("203.0.113.5"), Client("203.0.113.5")).await;
    expect(addr, "127.0.0.2", xff("203.0.113.5"), Forbidden).await;
    expect(addr, "127.0.0.3", None, Client("127.0.0.3")).await;

    let v6 = app("::1", ForwardedHeader::XForwardedFor).await;
    expect(v6, "::1", xff("2001:db8:1::7"), Client("2001:db8:1::7")).await;
    expect(v6, "::1", None, Forbidden).await;
}
