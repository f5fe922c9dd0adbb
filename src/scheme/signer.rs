//! Producing the headers a scheme's verifier accepts.

use std::fmt;

use http::HeaderMap;

use super::{AsymmetricKey, Key, Scheme};
use crate::ConfigError;

/// Signs deliveries the way a scheme's sender does: for tests, and for in-house senders.
///
/// ```
/// use tower_webhook::scheme::{Scheme, Signer};
/// use tower_webhook::Verifier;
///
/// let scheme = Scheme::github();
/// let signer = Signer::new(&scheme, "It's a Secret to Everybody")?;
/// let headers = signer.sign("72d3162e-cc78-11e3-81ab-4c9367dc0958", 0, b"Hello, World!")?;
/// assert_eq!(
///     headers["x-hub-signature-256"],
///     "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
/// );
///
/// let verifier = Verifier::builder(scheme).secret("It's a Secret to Everybody").build()?;
/// assert!(verifier.verify(&headers, b"Hello, World!").is_ok());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// A Standard Webhooks signer also takes an Ed25519 seed, `whsk_<base64 of 32 bytes>`, and then
/// signs `v1a`, which a verifier holding the matching `whpk_` public key accepts.
#[derive(Clone)]
pub struct Signer {
    scheme: Scheme,
    key: SigningKey,
}

#[derive(Clone)]
enum SigningKey {
    Hmac(Key),
    Ed25519(Box<ed25519_dalek::SigningKey>),
}

impl Signer {
    /// A signer for `scheme` with a secret written as the sender writes it (see
    /// [`Scheme`](crate::scheme) for how each scheme reads secrets).
    ///
    /// # Errors
    ///
    /// The secret is empty or cannot be decoded.
    pub fn new(scheme: &Scheme, secret: &str) -> Result<Self, ConfigError> {
        let invalid = |reason| ConfigError::InvalidSecret { index: 0, reason };
        match scheme.asymmetric_key(secret) {
            Some(Ok(AsymmetricKey::Signing(key))) => {
                return Ok(Self {
                    scheme: scheme.clone(),
                    key: SigningKey::Ed25519(Box::new(key)),
                })
            }
            Some(Ok(AsymmetricKey::Public(_))) => {
                return Err(invalid(
                    "a public key (whpk_) verifies: sign with the whsk_ seed",
                ))
            }
            Some(Err(reason)) => return Err(invalid(reason)),
            None => {}
        }
        let key = scheme.decode_secret(secret).map_err(invalid)?;
        Self::from_bytes(scheme, &key)
    }

    /// A signer with the raw key bytes.
    ///
    /// # Errors
    ///
    /// The key is empty.
    pub fn from_bytes(scheme: &Scheme, key: &[u8]) -> Result<Self, ConfigError> {
        if key.is_empty() {
            return Err(ConfigError::InvalidSecret {
                index: 0,
                reason: "secret is empty",
            });
        }
        let key = Key::new_from_slice(key).map_err(|_| ConfigError::InvalidSecret {
            index: 0,
            reason: "secret is not a valid HMAC key",
        })?;
        Ok(Self {
            scheme: scheme.clone(),
            key: SigningKey::Hmac(key),
        })
    }

    /// The headers for a delivery of `body` with event id `id`, signed at `timestamp` (Unix
    /// seconds). Schemes without an id header or without a timestamp ignore those arguments.
    ///
    /// # Errors
    ///
    /// `id` is empty, longer than 256 bytes, or not printable ASCII.
    pub fn sign(&self, id: &str, timestamp: u64, body: &[u8]) -> Result<HeaderMap, SignError> {
        match &self.key {
            SigningKey::Hmac(key) => self.scheme.sign(key, id, timestamp, body),
            SigningKey::Ed25519(key) => {
                super::senders::sign_standard_webhooks_ed25519(key, id, timestamp, body)
            }
        }
    }
}

impl fmt::Debug for Signer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Signer")
            .field("scheme", &self.scheme.kind())
            .field("key", &"..")
            .finish()
    }
}

/// Why a delivery could not be signed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum SignError {
    /// The event id is empty, longer than 256 bytes, or not printable ASCII.
    InvalidId,
    /// The custom scheme's signature prefix cannot be sent in a header.
    InvalidPrefix,
}

impl fmt::Display for SignError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::InvalidId => "event id must be 1 to 256 printable ASCII characters",
            Self::InvalidPrefix => "signature prefix is not valid in a header",
        })
    }
}

impl std::error::Error for SignError {}
