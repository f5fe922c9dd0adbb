//! The adversarial suite: hostile input against real servers on 127.0.0.1, written as raw
//! bytes over TCP wherever a client library would refuse to send it. One module per layer.
//!
//! Every case states the status (and for our own refusals the exact body) the client must get,
//! and whether the handler ran. Nothing here may answer 500, panic or hang: each exchange is
//! bounded by `common::STEP`. `timestamps` also runs under `cargo test --release` (see
//! `.ci/test`), where integer overflow wraps instead of panicking.
#![cfg(feature = "axum")]

#[path = "../common/mod.rs"]
mod common;

mod bodies;
mod client_ip;
mod rate_limit;
mod replay;
mod signatures;
mod timestamps;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use axum::routing::{post, MethodRouter};
use axum::Router;
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use bytes::Bytes;
use hmac::{Mac as _, SimpleHmac};
use tower::ServiceBuilder;
use tower_webhook::body::BufferBodyLayer;
use tower_webhook::clock::ManualClock;
use tower_webhook::scheme::{Encoding, Scheme, SignedContent, TimestampUnit};
use tower_webhook::verify::VerifyLayer;
use tower_webhook::Verifier;

/// The servers' clock: every signed timestamp in the suite is relative to it.
pub const NOW: u64 = 1_700_000_000;

/// The key the hostile-header cases are signed with.
pub const KEY: &[u8] = b"adversarial suite key";

/// A raw header line: name and value bytes.
pub type Line = (String, Vec<u8>);

pub fn line(name: &str, value: impl AsRef<[u8]>) -> Line {
    (name.to_owned(), value.as_ref().to_vec())
}

/// HMAC-SHA256 as a reference, computed apart from the crate (the plain `SimpleHmac`
/// construction, not the crate's pre-keyed state).
pub fn hmac(key: &[u8], msg: &[u8]) -> [u8; 32] {
    let mut mac = SimpleHmac::<sha2::Sha256>::new_from_slice(key).unwrap();
    mac.update(msg);
    mac.finalize().into_bytes().into()
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

pub fn unhex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

pub fn b64(bytes: &[u8]) -> String {
    STANDARD.encode(bytes)
}

/// The senders the crate knows, plus one in-house sender on `Scheme::custom`, each with an
/// independent statement of what it signs and how it writes the tag (from each sender's
/// published documentation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sender {
    Standard,
    Stripe,
    GitHub,
    Slack,
    Shopify,
    /// `x-acme-signature: sha256=<hex>` over `{id}.{ms}.{body}`, millisecond timestamps.
    Acme,
}

impl Sender {
    pub const ALL: [Sender; 6] = [
        Self::Standard,
        Self::Stripe,
        Self::GitHub,
        Self::Slack,
        Self::Shopify,
        Self::Acme,
    ];

    pub fn scheme(self) -> Scheme {
        match self {
            Self::Standard => Scheme::standard_webhooks(),
            Self::Stripe => Scheme::stripe(),
            Self::GitHub => Scheme::github(),
            Self::Slack => Scheme::slack(),
            Self::Shopify => Scheme::shopify(),
            Self::Acme => Scheme::custom("x-acme-signature")
                .prefix("sha256=")
                .encoding(Encoding::Hex)
                .signed_content(SignedContent::IdTimestampBody)
                .timestamp_header("x-acme-timestamp", TimestampUnit::Milliseconds)
                .id_header("x-acme-event-id")
                .build()
                .unwrap(),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Standard => "standard",
            Self::Stripe => "stripe",
            Self::GitHub => "github",
            Self::Slack => "slack",
            Self::Shopify => "shopify",
            Self::Acme => "acme",
        }
    }

    pub fn has_timestamp(self) -> bool {
        !matches!(self, Self::GitHub | Self::Shopify)
    }

    /// The header holding the signature.
    pub fn signature_header(self) -> &'static str {
        match self {
            Self::Standard => "webhook-signature",
            Self::Stripe => "stripe-signature",
            Self::GitHub => "x-hub-signature-256",
            Self::Slack => "x-slack-signature",
            Self::Shopify => "x-shopify-hmac-sha256",
            Self::Acme => "x-acme-signature",
        }
    }

    /// The header holding the event id, if the sender sends one.
    pub fn id_header(self) -> Option<&'static str> {
        match self {
            Self::Standard => Some("webhook-id"),
            Self::GitHub => Some("x-github-delivery"),
            Self::Shopify => Some("x-shopify-webhook-id"),
            Self::Acme => Some("x-acme-event-id"),
            Self::Stripe | Self::Slack => None,
        }
    }

    /// `secs` written as this sender writes its timestamp.
    pub fn timestamp(self, secs: u64) -> String {
        match self {
            Self::Acme => (secs * 1000).to_string(),
            _ => secs.to_string(),
        }
    }

    /// The exact bytes the sender MACs.
    pub fn signed(self, id: &str, ts: &str, body: &[u8]) -> Vec<u8> {
        let prefix = match self {
            Self::Standard | Self::Acme => format!("{id}.{ts}."),
            Self::Stripe => format!("{ts}."),
            Self::Slack => format!("v0:{ts}:"),
            Self::GitHub | Self::Shopify => String::new(),
        };
        [prefix.as_bytes(), body].concat()
    }

    /// The signature header's value for `tag` (of any length, to send truncated tags too).
    pub fn signature_value(self, ts: &str, tag: &[u8]) -> String {
        match self {
            Self::Standard => format!("v1,{}", b64(tag)),
            Self::Stripe => format!("t={ts},v1={}", hex(tag)),
            Self::GitHub | Self::Acme => format!("sha256={}", hex(tag)),
            Self::Slack => format!("v0={}", hex(tag)),
            Self::Shopify => b64(tag),
        }
    }

    /// The header lines of a delivery carrying `tag`.
    pub fn lines(self, id: &str, ts: &str, tag: &[u8]) -> Vec<Line> {
        let mut lines = vec![line(self.signature_header(), self.signature_value(ts, tag))];
        if let Some(name) = self.id_header() {
            lines.push(line(name, id));
        }
        match self {
            Self::Standard => lines.push(line("webhook-timestamp", ts)),
            Self::Slack => lines.push(line("x-slack-request-timestamp", ts)),
            Self::Acme => lines.push(line("x-acme-timestamp", ts)),
            _ => {}
        }
        lines
    }

    /// A correctly signed delivery's header lines.
    pub fn sign(self, key: &[u8], id: &str, ts: &str, body: &[u8]) -> Vec<Line> {
        self.lines(id, ts, &hmac(key, &self.signed(id, ts, body)))
    }
}

/// A POST route behind buffering and verification whose handler adds one to `calls` and
/// echoes the exact body it was given.
pub fn verified_route(verifier: Verifier, calls: &Arc<AtomicUsize>) -> MethodRouter {
    let counter = calls.clone();
    post(move |body: Bytes| async move {
        counter.fetch_add(1, Ordering::SeqCst);
        body
    })
    .layer(
        ServiceBuilder::new()
            .layer(BufferBodyLayer::new())
            .layer(VerifyLayer::new(verifier)),
    )
}

/// An app with [`verified_route`] at `/hook`, and its call counter.
pub fn verified_app(verifier: Verifier) -> (Router, Arc<AtomicUsize>) {
    let calls = Arc::new(AtomicUsize::new(0));
    let router = Router::new().route("/hook", verified_route(verifier, &calls));
    (router, calls)
}

/// A verifier for `sender` with [`KEY`] and the clock at [`NOW`].
pub fn verifier(sender: Sender) -> Verifier {
    Verifier::builder(sender.scheme())
        .secret_bytes(KEY)
        .clock(ManualClock::new(NOW))
        .build()
        .unwrap()
}

/// What a client must get back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    /// 200 from the handler, which saw exactly the body sent.
    Accepted,
    /// Our refusal: this status and body `{"error":"<code>"}`; the handler did not run.
    Refused(u16, &'static str),
    /// Refused by the HTTP server before our layers (no body promised); the handler did not run.
    RefusedByServer(u16),
}

/// Sends `request` to `addr` and checks the single reply against `expect`, and that the
/// handler's call count moved exactly when it should have.
pub async fn check(
    addr: std::net::SocketAddr,
    calls: &AtomicUsize,
    request: &[u8],
    body: &[u8],
    expect: Expect,
    what: &str,
) {
    let before = calls.load(Ordering::SeqCst);
    let replies = common::exchange(addr, request).await;
    let reply = replies
        .first()
        .unwrap_or_else(|| panic!("{what}: no response"));
    let after = calls.load(Ordering::SeqCst);
    match expect {
        Expect::Accepted => {
            assert_eq!(reply.status, 200, "{what}: {}", reply.text());
            assert_eq!(reply.body, body, "{what}: the handler saw other bytes");
            assert_eq!(after, before + 1, "{what}");
        }
        Expect::Refused(status, code) => {
            assert_eq!(
                (reply.status, reply.text()),
                (status, format!(r#"{{"error":"{code}"}}"#)),
                "{what}"
            );
            assert_eq!(after, before, "{what}: the handler ran");
        }
        Expect::RefusedByServer(status) => {
            assert_eq!(reply.status, status, "{what}: {}", reply.text());
            assert_eq!(after, before, "{what}: the handler ran");
        }
    }
}
