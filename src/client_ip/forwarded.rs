//! Reading the hops of `X-Forwarded-For` and `Forwarded` (RFC 7239), right to left.

use std::net::{IpAddr, Ipv6Addr};

use http::header::FORWARDED;
use http::{HeaderMap, HeaderName};

use crate::Rejection;

pub(super) static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");

/// Which header carries the proxy chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum ForwardedHeader {
    /// `X-Forwarded-For: client, proxy1, proxy2` (the default).
    #[default]
    XForwardedFor,
    /// `Forwarded: for=client;proto=https, for="[2001:db8::1]:4711"` (RFC 7239).
    Forwarded,
}

impl ForwardedHeader {
    pub(super) fn name(self) -> &'static HeaderName {
        match self {
            Self::XForwardedFor => &X_FORWARDED_FOR,
            Self::Forwarded => &FORWARDED,
        }
    }
}

/// The hops of the header, right to left (all header lines form one list, in order), each
/// parsed only when the walk reaches it.
pub(super) fn hops_rev<'h>(
    headers: &'h HeaderMap,
    which: ForwardedHeader,
) -> impl Iterator<Item = Result<IpAddr, Rejection>> + 'h {
    let name = which.name();
    headers.get_all(name).iter().rev().flat_map(move |line| {
        let items: Vec<Result<IpAddr, Rejection>> = match line.to_str() {
            Err(_) => vec![Err(Rejection::malformed(name, "not visible ASCII"))],
            Ok(text) => split_outside_quotes(text, b',')
                .into_iter()
                .rev()
                .map(|item| {
                    match which {
                        ForwardedHeader::XForwardedFor => node(item.trim()),
                        ForwardedHeader::Forwarded => forwarded_for(item),
                    }
                    .map_err(|reason| Rejection::malformed(name, reason))
                })
                .collect(),
        };
        items
    })
}

/// The protocol the nearest proxy recorded, in the family of `which`: the rightmost
/// `X-Forwarded-Proto` value, or the `proto=` of the rightmost `Forwarded` element (`None` when
/// that element has none).
pub(super) fn proto(headers: &HeaderMap, which: ForwardedHeader) -> Option<&str> {
    match which {
        ForwardedHeader::XForwardedFor => {
            let line = headers.get_all(&X_FORWARDED_PROTO).iter().next_back()?;
            line.to_str().ok()?.rsplit(',').next().map(str::trim)
        }
        ForwardedHeader::Forwarded => {
            let line = headers.get_all(FORWARDED).iter().next_back()?;
            let element = split_outside_quotes(line.to_str().ok()?, b',').pop()?;
            split_outside_quotes(element, b';')
                .into_iter()
                .find_map(|pair| {
                    let (key, value) = pair.trim().split_once('=')?;
                    let value = value
                        .strip_prefix('"')
                        .and_then(|v| v.strip_suffix('"'))
                        .unwrap_or(value);
                    key.eq_ignore_ascii_case("proto").then_some(value)
                })
        }
    }
}

/// Splits on `sep` outside double-quoted strings (which may hold `\"`).
fn split_outside_quotes(text: &str, sep: u8) -> Vec<&str> {
    let bytes = text.as_bytes();
    let (mut parts, mut start, mut quoted, mut escaped) = (Vec::new(), 0, false, false);
    for (i, &b) in bytes.iter().enumerate() {
        match b {
            _ if escaped => escaped = false,
            b'\\' if quoted => escaped = true,
            b'"' => quoted = !quoted,
            _ if b == sep && !quoted => {
                parts.push(&text[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&text[start..]);
    parts
}

/// The `for=` node of one `Forwarded` element.
fn forwarded_for(element: &str) -> Result<IpAddr, &'static str> {
    let mut found = None;
    for pair in split_outside_quotes(element, b';') {
        let (key, value) = pair.trim().split_once('=').ok_or("parameter without '='")?;
        if key.eq_ignore_ascii_case("for") {
            if found.is_some() {
                return Err("element with two for= parameters");
            }
            found = Some(value);
        }
    }
    let value = found.ok_or("element without for=")?;
    let value = match value.strip_prefix('"') {
        Some(rest) => rest.strip_suffix('"').ok_or("unterminated quoted string")?,
        None => value,
    };
    if value.contains('\\') || value.contains('"') {
        return Err("escaped characters in a node");
    }
    if value.eq_ignore_ascii_case("unknown") || value.starts_with('_') {
        return Err("client hidden by the proxy (unknown or obfuscated node)");
    }
    node(value)
}

/// One node: `1.2.3.4`, `1.2.3.4:80`, `2001:db8::1`, `[2001:db8::1]`, `[2001:db8::1]:80`.
/// Zone ids, names and anything else are refused.
fn node(text: &str) -> Result<IpAddr, &'static str> {
    if text.is_empty() {
        return Err("empty address");
    }
    if let Some(rest) = text.strip_prefix('[') {
        let (inside, after) = rest.split_once(']').ok_or("unterminated '['")?;
        if !(after.is_empty() || port(after.strip_prefix(':'))) {
            return Err("bad port");
        }
        return inside
            .parse::<Ipv6Addr>()
            .map(IpAddr::V6)
            .map_err(|_| "not an IPv6 address");
    }
    if let Ok(ip) = text.parse::<IpAddr>() {
        return Ok(ip);
    }
    match text.rsplit_once(':') {
        Some((v4, p)) if port(Some(p)) => v4
            .parse::<std::net::Ipv4Addr>()
            .map(IpAddr::V4)
            .map_err(|_| "not an IP address"),
        _ => Err("not an IP address"),
    }
}

fn port(text: Option<&str>) -> bool {
    text.is_some_and(|p| !p.is_empty() && p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit()))
        || text.is_some_and(|p| p.starts_with('_') && p.len() > 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn nodes() {
        assert_eq!(node("1.2.3.4"), Ok(ip("1.2.3.4")));
        assert_eq!(node("1.2.3.4:8080"), Ok(ip("1.2.3.4")));
        assert_eq!(node("2001:db8::1"), Ok(ip("2001:db8::1")));
        assert_eq!(node("[2001:db8::1]:4711"), Ok(ip("2001:db8::1")));
        assert_eq!(node("::ffff:1.2.3.4"), Ok(ip("::ffff:1.2.3.4")));
        for bad in [
            "",
            "fe80::1%eth0",
            "[fe80::1%25eth0]",
            "example.com",
            "1.2.3",
            "1.2.3.4:",
            "1.2.3.4:99999x",
            "[::1",
            "[::1]x",
            "[1.2.3.4]",
            "1.2.3.4 5",
        ] {
            assert!(node(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn forwarded_elements() {
        assert_eq!(
            forwarded_for("for=192.0.2.60;proto=http;by=203.0.113.43"),
            Ok(ip("192.0.2.60"))
        );
        assert_eq!(
            forwarded_for(r#" For="[2001:db8:cafe::17]:4711""#),
            Ok(ip("2001:db8:cafe::17"))
        );
        assert_eq!(
            forwarded_for(r#"for="192.0.2.43:47011""#),
            Ok(ip("192.0.2.43"))
        );
        for bad in [
            "for=unknown",
            "for=_hidden",
            r#"for="_gazonk""#,
            "proto=https",
            "for=1.2.3.4;for=5.6.7.8",
            r#"for="[::1]"#,
            "for",
            r#"for="1.2.3.4\"""#,
        ] {
            assert!(forwarded_for(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn the_nearest_proxy_says_the_protocol() {
        let mut headers = HeaderMap::new();
        assert_eq!(proto(&headers, ForwardedHeader::XForwardedFor), None);
        headers.append(&X_FORWARDED_PROTO, "http".parse().unwrap());
        headers.append(&X_FORWARDED_PROTO, "http, https".parse().unwrap());
        assert_eq!(
            proto(&headers, ForwardedHeader::XForwardedFor),
            Some("https")
        );
        assert_eq!(proto(&headers, ForwardedHeader::Forwarded), None);

        let mut headers = HeaderMap::new();
        headers.append(FORWARDED, "for=1.2.3.4;proto=https".parse().unwrap());
        headers.append(
            FORWARDED,
            r#"for=5.6.7.8;proto=https, for="[::1]";Proto="http";by=x"#
                .parse()
                .unwrap(),
        );
        assert_eq!(proto(&headers, ForwardedHeader::Forwarded), Some("http"));
        headers.append(FORWARDED, "for=9.9.9.9".parse().unwrap());
        assert_eq!(
            proto(&headers, ForwardedHeader::Forwarded),
            None,
            "the last element has none"
        );
        assert_eq!(proto(&headers, ForwardedHeader::XForwardedFor), None);
    }

    #[test]
    fn hops_are_read_right_to_left_across_lines() {
        let mut headers = HeaderMap::new();
        headers.append(&X_FORWARDED_FOR, "1.1.1.1, 2.2.2.2".parse().unwrap());
        headers.append(&X_FORWARDED_FOR, "3.3.3.3".parse().unwrap());
        let hops: Vec<_> = hops_rev(&headers, ForwardedHeader::XForwardedFor)
            .map(Result::unwrap)
            .collect();
        assert_eq!(hops, [ip("3.3.3.3"), ip("2.2.2.2"), ip("1.1.1.1")]);

        let mut headers = HeaderMap::new();
        headers.append(
            FORWARDED,
            r#"for="[::1]:80";by=x, for=10.0.0.1"#.parse().unwrap(),
        );
        let hops: Vec<_> = hops_rev(&headers, ForwardedHeader::Forwarded)
            .map(Result::unwrap)
            .collect();
        assert_eq!(hops, [ip("10.0.0.1"), ip("::1")]);
    }
}
