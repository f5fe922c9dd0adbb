//! What signature verification learned about a request.

use std::fmt;
use std::sync::OnceLock;

use bytes::Bytes;
use http::HeaderValue;

use crate::scheme::{Scheme, SchemeKind, Tag};

/// A request whose signature was verified: put into the request's extensions by
/// [`Verify`](crate::verify::Verify), and, with the `axum` feature, an extractor.
///
/// ```
/// # use tower_webhook::{scheme::{Scheme, Signer}, Verifier};
/// let verifier = Verifier::builder(Scheme::standard_webhooks())
///     .secret("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
///     .secret("whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD")
///     .build()?;
/// let signer = Signer::new(&Scheme::standard_webhooks(), "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD")?;
/// let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_secs();
/// let headers = signer.sign("msg_1", now, b"{}")?;
///
/// let verified = verifier.verify(&headers, b"{}")?;
/// assert_eq!(verified.id(), Some("msg_1"));
/// assert!(verified.id_is_signed());
/// assert_eq!(verified.timestamp(), Some(now));
/// assert_eq!(verified.key_index(), 1); // the second secret matched
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone)]
pub struct Verified {
    /// The scheme that verified it: its kind, and where it puts the event type.
    pub(crate) scheme: Scheme,
    pub(crate) id: Option<HeaderValue>,
    pub(crate) id_signed: bool,
    pub(crate) timestamp: Option<u64>,
    pub(crate) key_index: usize,
    /// The signature that matched: a keyed digest of everything signed.
    pub(crate) tag: Tag,
    /// What the type is read from, beside the scheme: its header's value and the body.
    pub(crate) type_header: Option<HeaderValue>,
    pub(crate) body: Option<Bytes>,
    /// The type, read once when first asked for.
    pub(crate) event_type: OnceLock<Option<Bytes>>,
}

impl Verified {
    /// The scheme that verified the request.
    #[must_use]
    pub fn scheme(&self) -> SchemeKind {
        self.scheme.kind()
    }

    /// The event id from the scheme's id header, if it has one and it was sent. Check
    /// [`id_is_signed`](Self::id_is_signed) before trusting it for deduplication.
    #[must_use]
    pub fn id(&self) -> Option<&str> {
        self.id.as_ref().and_then(|v| v.to_str().ok())
    }

    /// Whether [`id`](Self::id) is covered by the signature. It is not for GitHub
    /// (`X-GitHub-Delivery`) and Shopify (`X-Shopify-Webhook-Id`): anyone holding one signed
    /// delivery can resend it under a fresh id.
    #[must_use]
    pub fn id_is_signed(&self) -> bool {
        self.id_signed
    }

    /// The signed timestamp, Unix seconds, for schemes that sign one. It was within the
    /// tolerance when verified.
    #[must_use]
    pub fn timestamp(&self) -> Option<u64> {
        self.timestamp
    }

    /// Which configured secret matched, counting from 0 in the order given: watch it to know
    /// when an old secret stops being used during a rotation.
    #[must_use]
    pub fn key_index(&self) -> usize {
        self.key_index
    }

    /// The event's type as its sender names it (`invoice.paid`, `issues.opened`,
    /// `orders/create`), read once, when first asked for, from where the scheme's senders put
    /// it (see the table in [`scheme`](crate::scheme#event-types)). `None` when the request
    /// has none there, for example a body that is not JSON.
    ///
    /// A type in the body needs the body: the layers attach it; after calling
    /// [`Verifier::verify`](crate::Verifier::verify) yourself, attach it with
    /// [`with_body`](Self::with_body). Check [`event_type_is_signed`](Self::event_type_is_signed)
    /// before trusting the type for anything that matters.
    ///
    /// ```
    /// # use tower_webhook::{scheme::{Scheme, Signer}, Verifier};
    /// let verifier = Verifier::builder(Scheme::stripe()).secret("whsec_test").build()?;
    /// let body = br#"{"id":"evt_1","object":"event","type":"invoice.paid"}"#;
    /// let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_secs();
    /// let headers = Signer::new(&Scheme::stripe(), "whsec_test")?.sign("-", now, body)?;
    ///
    /// let verified = verifier.verify(&headers, body)?.with_body(bytes::Bytes::from_static(body));
    /// assert_eq!(verified.event_type(), Some("invoice.paid"));
    /// assert!(verified.event_type_is_signed());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[must_use]
    pub fn event_type(&self) -> Option<&str> {
        let text = self.event_type.get_or_init(|| {
            let empty = Bytes::new();
            let body = self.body.as_ref().unwrap_or(&empty);
            self.scheme
                .type_source()
                .read(self.type_header.as_ref(), body)
        });
        // Checked as visible ASCII when read.
        text.as_deref().and_then(|t| std::str::from_utf8(t).ok())
    }

    /// Whether [`event_type`](Self::event_type) is covered by the signature. It is not for
    /// GitHub (`X-GitHub-Event`), Shopify (`X-Shopify-Topic`) and a custom scheme's type
    /// header: anyone holding one signed delivery can resend it under another type.
    #[must_use]
    pub fn event_type_is_signed(&self) -> bool {
        self.scheme.type_source().is_signed()
    }

    /// Slack's URL verification handshake: the `challenge` of a verified Slack
    /// `url_verification` event.
    pub(crate) fn slack_challenge(&self) -> Option<Bytes> {
        let handshake =
            self.scheme() == SchemeKind::Slack && self.event_type() == Some("url_verification");
        handshake
            .then(|| crate::scheme::body_field(self.body.as_ref()?, &["challenge"]))
            .flatten()
    }

    /// Attaches the body that was verified, for [`event_type`](Self::event_type). The layers
    /// do this themselves.
    #[must_use]
    pub fn with_body(mut self, body: Bytes) -> Self {
        self.body = Some(body);
        self.event_type = OnceLock::new();
        self
    }
}

impl fmt::Debug for Verified {
    /// Never the body: only its length.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Verified")
            .field("scheme", &self.scheme())
            .field("id", &self.id())
            .field("id_signed", &self.id_signed)
            .field("timestamp", &self.timestamp)
            .field("key_index", &self.key_index)
            .field("body_len", &self.body.as_ref().map(Bytes::len))
            .finish_non_exhaustive()
    }
}
