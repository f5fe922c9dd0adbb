//! Signature schemes: which headers carry the signature, timestamp and event id, which bytes
//! are signed, and how the signature is encoded.
//!
//! Every built-in matches its sender's format byte for byte:
//!
//! | constructor | headers | signed bytes | signature |
//! |---|---|---|---|
//! | [`Scheme::standard_webhooks`] | `webhook-id`, `webhook-timestamp`, `webhook-signature` (or `svix-*`) | `{id}.{timestamp}.{body}` | space-separated `v1,<base64>` (HMAC) and `v1a,<base64>` (Ed25519) |
//! | [`Scheme::stripe`] | `Stripe-Signature: t=<ts>,v1=<hex>[,v1=<hex>...]` | `{t}.{body}` | hex, every `v1` tried |
//! | [`Scheme::github`] | `X-Hub-Signature-256: sha256=<hex>`, id `X-GitHub-Delivery` | the body | hex |
//! | [`Scheme::slack`] | `X-Slack-Signature: v0=<hex>`, `X-Slack-Request-Timestamp` | `v0:{ts}:{body}` | hex |
//! | [`Scheme::shopify`] | `X-Shopify-Hmac-Sha256`, id `X-Shopify-Webhook-Id` | the body | base64 |
//! | [`Scheme::custom`] | yours | body, `{ts}.{body}` or `{id}.{ts}.{body}` | hex or base64 |
//!
//! Secrets are read as each sender documents them: Standard Webhooks secrets are `whsec_`
//! followed by base64 (the prefix is optional), and are decoded; Stripe, GitHub, Slack and
//! Shopify secrets are used as the raw bytes of the string (a Stripe `whsec_...` secret is *not*
//! decoded). A signature of a version the scheme does not know (`v0` for Stripe, `sha1`) is
//! ignored, never accepted.
//!
//! Standard Webhooks also signs asymmetrically: `v1a` is Ed25519 over the same bytes. A
//! verifier given a public key, `whpk_<base64 of 32 bytes>`, checks `v1a` entries (strictly:
//! non-canonical signatures and small-order keys are refused); one given `whsec_` secrets
//! checks `v1` entries; one given both accepts any one valid entry of either kind, HMAC secrets
//! tried first. An entry of a kind the verifier has no key for is skipped like an unknown
//! version. [`Signer`] takes the seed, `whsk_<base64 of 32 bytes>`, and signs `v1a`.
//!
//! GitHub and Shopify sign no timestamp and their id headers are not covered by the signature:
//! [`Verified::id_is_signed`](crate::Verified::id_is_signed) says so.
//!
//! # Event types
//!
//! [`Verified::event_type`](crate::Verified::event_type) reads the event's type from where
//! each sender puts it:
//!
//! | sender | type | signed |
//! |---|---|---|
//! | Standard Webhooks, Stripe | the JSON body's top-level `type` | yes |
//! | GitHub | `X-GitHub-Event`, joined with the body's top-level `action` when there is one: `issues.opened`, `push` | no |
//! | Slack | Events API: `event.type` inside an `event_callback`, the top-level `type` otherwise (`url_verification`) | yes |
//! | Shopify | `X-Shopify-Topic`: `orders/create` | no |
//! | custom | a header, or a top-level JSON field, as configured | a field is, a header is not |
//!
//! Slack's slash commands and interactive payloads are form-encoded, not JSON: they have no
//! type here (route them by path, as Slack sends each kind to its own URL). A body that is not
//! a JSON object has no type. A type is 1 to 256 visible ASCII characters; anything else reads
//! as no type.
//!
//! ```
//! use tower_webhook::scheme::{Scheme, SchemeKind};
//!
//! assert_eq!(Scheme::stripe().kind(), SchemeKind::Stripe);
//! assert_eq!(Scheme::standard_webhooks().kind().as_str(), "standard-webhooks");
//! ```

mod custom;
pub(crate) mod ed25519;
mod event_type;
mod parse;
mod senders;
mod signer;

use std::sync::Arc;

use hmac::digest::generic_array::GenericArray;
use hmac::digest::FixedOutput;
use hmac::{Hmac, Mac};
use http::{HeaderMap, HeaderValue};
use sha2::Sha256;
use zeroize::Zeroizing;

pub use custom::{CustomBuilder, SecretEncoding, SignedContent, TimestampUnit};
pub(crate) use ed25519::AsymmetricKey;
pub(crate) use event_type::{field as body_field, TypeSource};
pub use parse::Encoding;
pub(crate) use parse::{push_hex, Decoded, Kinds, Tag, Tags};
pub use signer::{SignError, Signer};

use crate::Rejection;

/// An HMAC-SHA256 secret. Its bytes are wiped from memory when it is dropped; each message's
/// MAC is keyed from them, so no keyed state (which would sign as well as the secret) is kept
/// beyond one call.
#[derive(Clone)]
pub(crate) struct Key(Zeroizing<Box<[u8]>>);

impl Key {
    /// A key of these bytes (HMAC takes any length).
    pub(crate) fn new_from_slice(bytes: &[u8]) -> Result<Self, hmac::digest::InvalidLength> {
        // Checked once here, so that `mac` cannot fail.
        Hmac::<Sha256>::new_from_slice(bytes)?;
        Ok(Self(Zeroizing::new(bytes.into())))
    }

    /// A MAC keyed with it.
    pub(crate) fn mac(&self) -> Hmac<Sha256> {
        Hmac::<Sha256>::new_from_slice(&self.0)
            .unwrap_or_else(|_| unreachable!("checked when made"))
    }
}

/// A signature scheme. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Scheme {
    kind: Kind,
}

#[derive(Debug, Clone)]
enum Kind {
    StandardWebhooks,
    Stripe,
    GitHub,
    Slack,
    Shopify,
    Custom(Arc<custom::Custom>),
}

/// Which scheme verified an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum SchemeKind {
    /// Standard Webhooks (Svix).
    StandardWebhooks,
    /// Stripe.
    Stripe,
    /// GitHub.
    GitHub,
    /// Slack.
    Slack,
    /// Shopify.
    Shopify,
    /// A [`Scheme::custom`] scheme.
    Custom,
}

impl SchemeKind {
    /// A short lower-case name: `standard-webhooks`, `stripe`, `github`, `slack`, `shopify`,
    /// `custom`.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::StandardWebhooks => "standard-webhooks",
            Self::Stripe => "stripe",
            Self::GitHub => "github",
            Self::Slack => "slack",
            Self::Shopify => "shopify",
            Self::Custom => "custom",
        }
    }
}

impl Scheme {
    /// [Standard Webhooks](https://www.standardwebhooks.com/), as sent by Svix and the many
    /// services built on it. Reads the `webhook-*` headers and their `svix-*` equivalents (a
    /// request that gives one field two different values is refused).
    #[must_use]
    pub fn standard_webhooks() -> Self {
        Self {
            kind: Kind::StandardWebhooks,
        }
    }

    /// Stripe's `Stripe-Signature` header. Every `v1` signature in it is tried.
    #[must_use]
    pub fn stripe() -> Self {
        Self { kind: Kind::Stripe }
    }

    /// GitHub's `X-Hub-Signature-256`.
    #[must_use]
    pub fn github() -> Self {
        Self { kind: Kind::GitHub }
    }

    /// Slack's `v0` request signing.
    #[must_use]
    pub fn slack() -> Self {
        Self { kind: Kind::Slack }
    }

    /// Shopify's `X-Shopify-Hmac-Sha256`.
    #[must_use]
    pub fn shopify() -> Self {
        Self {
            kind: Kind::Shopify,
        }
    }

    /// A scheme for an in-house sender, with the signature in the header `signature_header`.
    /// See [`CustomBuilder`].
    pub fn custom(signature_header: &str) -> CustomBuilder {
        CustomBuilder::new(signature_header)
    }

    /// Which scheme this is.
    #[must_use]
    pub fn kind(&self) -> SchemeKind {
        match self.kind {
            Kind::StandardWebhooks => SchemeKind::StandardWebhooks,
            Kind::Stripe => SchemeKind::Stripe,
            Kind::GitHub => SchemeKind::GitHub,
            Kind::Slack => SchemeKind::Slack,
            Kind::Shopify => SchemeKind::Shopify,
            Kind::Custom(_) => SchemeKind::Custom,
        }
    }

    /// Whether requests of this scheme carry a signed timestamp.
    #[must_use]
    pub fn has_timestamp(&self) -> bool {
        match &self.kind {
            Kind::StandardWebhooks | Kind::Stripe | Kind::Slack => true,
            Kind::GitHub | Kind::Shopify => false,
            Kind::Custom(c) => c.has_timestamp(),
        }
    }

    /// Where this scheme's senders put the event type.
    pub(crate) fn type_source(&self) -> &TypeSource {
        match &self.kind {
            Kind::StandardWebhooks | Kind::Stripe => &event_type::BODY_TYPE,
            Kind::GitHub => &event_type::GITHUB,
            Kind::Slack => &event_type::SLACK,
            Kind::Shopify => &event_type::SHOPIFY,
            Kind::Custom(c) => c.type_source(),
        }
    }

    /// Whether requests of this scheme name their event in a header (signed or not).
    pub(crate) fn has_id_header(&self) -> bool {
        match &self.kind {
            Kind::StandardWebhooks | Kind::GitHub | Kind::Shopify => true,
            Kind::Stripe | Kind::Slack => false,
            Kind::Custom(c) => c.id_header().is_some(),
        }
    }

    /// The Ed25519 key a Standard Webhooks secret names (`whpk_` to verify, `whsk_` to sign);
    /// `None` for an HMAC secret, and for every other scheme.
    pub(crate) fn asymmetric_key(
        &self,
        secret: &str,
    ) -> Option<Result<AsymmetricKey, &'static str>> {
        match self.kind {
            Kind::StandardWebhooks => ed25519::decode(secret),
            _ => None,
        }
    }

    /// The key bytes of a secret written as this scheme's sender writes it.
    pub(crate) fn decode_secret(&self, secret: &str) -> Result<Zeroizing<Vec<u8>>, &'static str> {
        match &self.kind {
            Kind::StandardWebhooks => {
                SecretEncoding::Base64.decode(secret.strip_prefix("whsec_").unwrap_or(secret))
            }
            Kind::Custom(c) => c.decode_secret(secret),
            _ => SecretEncoding::Raw.decode(secret),
        }
        .map(Zeroizing::new)
    }

    /// Reads the signature headers of a request; the candidate tags are decoded into `tags`,
    /// which the caller owns (so 256 bytes of tags are never moved).
    pub(crate) fn parse<'s, 'h>(
        &'s self,
        headers: &'h HeaderMap,
        tags: &mut Tags<'h>,
    ) -> Result<Signed<'h>, Rejection>
    where
        's: 'h,
    {
        match &self.kind {
            Kind::StandardWebhooks => senders::standard_webhooks(headers, tags),
            Kind::Stripe => senders::stripe(headers, tags),
            Kind::GitHub => senders::github(headers, tags),
            Kind::Slack => senders::slack(headers, tags),
            Kind::Shopify => senders::shopify(headers, tags),
            Kind::Custom(c) => c.parse(headers, tags),
        }
    }

    /// The event id a request claims, unverified: for logs only.
    pub(crate) fn claimed_id<'h>(&self, headers: &'h HeaderMap) -> Option<&'h str> {
        let name = match &self.kind {
            Kind::StandardWebhooks => {
                return senders::standard_webhooks_id(headers);
            }
            Kind::GitHub => &senders::GITHUB_DELIVERY,
            Kind::Shopify => &senders::SHOPIFY_WEBHOOK_ID,
            Kind::Custom(c) => c.id_header()?,
            Kind::Stripe | Kind::Slack => return None,
        };
        parse::optional(headers, &[name])
            .ok()
            .flatten()
            .map(|f| f.text)
    }

    /// The headers that carry `tag` for a delivery with this id and timestamp.
    pub(crate) fn sign(
        &self,
        key: &Key,
        id: &str,
        timestamp: u64,
        body: &[u8],
    ) -> Result<HeaderMap, SignError> {
        match &self.kind {
            Kind::StandardWebhooks => senders::sign_standard_webhooks(key, id, timestamp, body),
            Kind::Stripe => senders::sign_stripe(key, timestamp, body),
            Kind::GitHub => senders::sign_github(key, id, body),
            Kind::Slack => senders::sign_slack(key, timestamp, body),
            Kind::Shopify => senders::sign_shopify(key, id, body),
            Kind::Custom(c) => c.sign(key, id, timestamp, body),
        }
    }
}

/// What a request's headers say was signed (the signatures to check go to [`Tags`]).
#[derive(Debug)]
pub(crate) struct Signed<'h> {
    /// The pieces signed before the body, in order.
    pub(crate) prefix: Prefix<'h>,
    /// The signed timestamp, Unix seconds.
    pub(crate) timestamp: Option<u64>,
    pub(crate) id: Option<&'h HeaderValue>,
    /// Whether `id` is covered by the signature.
    pub(crate) id_signed: bool,
}

/// Up to four byte strings signed before the body (`id`, `.`, `ts`, `.` at most).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Prefix<'a> {
    parts: [&'a [u8]; 4],
    len: usize,
}

impl<'a> Prefix<'a> {
    /// The pieces, in order.
    pub(crate) fn parts(&self) -> &[&'a [u8]] {
        &self.parts[..self.len]
    }

    pub(crate) fn new(pieces: &[&'a [u8]]) -> Self {
        let mut parts: [&[u8]; 4] = [&[]; 4];
        parts[..pieces.len()].copy_from_slice(pieces);
        Self {
            parts,
            len: pieces.len(),
        }
    }

    /// The HMAC of the prefix followed by `body`. A prefix that fits one hash block is joined
    /// on the stack first (one call into the hash instead of one per piece); a longer one is
    /// fed in pieces. Either way the body is never copied.
    pub(crate) fn tag(&self, key: &Key, body: &[u8]) -> Tag {
        let mut mac = key.mac();
        let parts = &self.parts[..self.len];
        let total: usize = parts.iter().map(|p| p.len()).sum();
        let mut joined = [0u8; 64];
        if total <= joined.len() {
            let mut at = 0;
            for part in parts {
                joined[at..at + part.len()].copy_from_slice(part);
                at += part.len();
            }
            mac.update(&joined[..total]);
        } else {
            for part in parts {
                mac.update(part);
            }
        }
        mac.update(body);
        let mut tag = Tag::default();
        FixedOutput::finalize_into(mac, GenericArray::from_mut_slice(&mut tag));
        tag
    }
}

/// An event id as a header value, checked by the signer before it is sent.
pub(crate) fn id_value(id: &str) -> Result<HeaderValue, SignError> {
    if id.is_empty()
        || id.len() > parse::MAX_ID_LEN
        || !id.bytes().all(|b| (0x20..0x7f).contains(&b))
    {
        return Err(SignError::InvalidId);
    }
    HeaderValue::from_str(id).map_err(|_| SignError::InvalidId)
}
