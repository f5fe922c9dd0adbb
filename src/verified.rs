//! What signature verification learned about a request.

use http::HeaderValue;

use crate::scheme::{SchemeKind, Tag};

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
#[derive(Debug, Clone)]
pub struct Verified {
    pub(crate) scheme: SchemeKind,
    pub(crate) id: Option<HeaderValue>,
    pub(crate) id_signed: bool,
    pub(crate) timestamp: Option<u64>,
    pub(crate) key_index: usize,
    /// The signature that matched: a keyed digest of everything signed.
    pub(crate) tag: Tag,
}

impl Verified {
    /// The scheme that verified the request.
    #[must_use]
    pub fn scheme(&self) -> SchemeKind {
        self.scheme
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
}
