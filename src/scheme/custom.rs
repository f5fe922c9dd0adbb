//! A configurable HMAC-SHA256 scheme for in-house senders.

use std::sync::Arc;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use http::{HeaderMap, HeaderName, HeaderValue};

use super::parse::{event_id, present, scan, Encoding, Tags};
use super::senders::timestamp;
use super::TypeSource;
use super::{id_value, Key, Kind, Prefix, Scheme, SignError, Signed};
use crate::{ConfigError, Rejection};

/// What an in-house sender signs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum SignedContent {
    /// The body alone (no replay protection from the signature).
    Body,
    /// `{timestamp}{separator}{body}`.
    TimestampBody,
    /// `{id}{separator}{timestamp}{separator}{body}`.
    IdTimestampBody,
}

/// The unit of a timestamp header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum TimestampUnit {
    /// Unix seconds.
    Seconds,
    /// Unix milliseconds.
    Milliseconds,
}

/// How secrets given as text are turned into key bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum SecretEncoding {
    /// The bytes of the string as written.
    Raw,
    /// Standard base64 with padding.
    Base64,
    /// Hexadecimal.
    Hex,
}

impl SecretEncoding {
    pub(crate) fn decode(self, secret: &str) -> Result<Vec<u8>, &'static str> {
        let key = match self {
            Self::Raw => secret.as_bytes().to_vec(),
            Self::Base64 => STANDARD
                .decode(secret)
                .map_err(|_| "secret is not valid base64")?,
            Self::Hex => hex::decode(secret).map_err(|_| "secret is not valid hex")?,
        };
        if key.is_empty() {
            return Err("secret is empty");
        }
        Ok(key)
    }
}

#[derive(Debug)]
pub(super) struct Custom {
    signature: HeaderName,
    prefix: String,
    encoding: Encoding,
    content: SignedContent,
    separator: String,
    timestamp: Option<(HeaderName, TimestampUnit)>,
    id: Option<HeaderName>,
    secret_encoding: SecretEncoding,
    type_source: TypeSource,
}

/// Builds a [`Scheme`] for an in-house sender: [`Scheme::custom`] starts it.
///
/// The defaults: hex signature with no prefix, over the body alone, secrets used as raw bytes,
/// `.` as the separator.
///
/// ```
/// use tower_webhook::scheme::{Encoding, Scheme, SignedContent, TimestampUnit};
///
/// let scheme = Scheme::custom("x-acme-signature")
///     .prefix("sha256=")
///     .encoding(Encoding::Hex)
///     .signed_content(SignedContent::IdTimestampBody)
///     .timestamp_header("x-acme-timestamp", TimestampUnit::Milliseconds)
///     .id_header("x-acme-event-id")
///     .build()?;
/// assert!(scheme.has_timestamp());
/// # Ok::<(), tower_webhook::ConfigError>(())
/// ```
#[derive(Debug, Clone)]
#[must_use]
pub struct CustomBuilder {
    signature: String,
    prefix: String,
    encoding: Encoding,
    content: SignedContent,
    separator: String,
    timestamp: Option<(String, TimestampUnit)>,
    id: Option<String>,
    secret_encoding: SecretEncoding,
    event_type: Option<(String, bool)>,
}

impl CustomBuilder {
    pub(super) fn new(signature_header: &str) -> Self {
        Self {
            signature: signature_header.to_owned(),
            prefix: String::new(),
            encoding: Encoding::Hex,
            content: SignedContent::Body,
            separator: ".".to_owned(),
            timestamp: None,
            id: None,
            secret_encoding: SecretEncoding::Raw,
            event_type: None,
        }
    }

    /// Text before the encoded signature in its header, such as `sha256=`. A header without
    /// it holds no signature this scheme knows.
    pub fn prefix(mut self, prefix: &str) -> Self {
        prefix.clone_into(&mut self.prefix);
        self
    }

    /// How the signature is encoded.
    pub fn encoding(mut self, encoding: Encoding) -> Self {
        self.encoding = encoding;
        self
    }

    /// What is signed.
    pub fn signed_content(mut self, content: SignedContent) -> Self {
        self.content = content;
        self
    }

    /// What joins the id, timestamp and body in the signed content (default `.`).
    pub fn separator(mut self, separator: &str) -> Self {
        separator.clone_into(&mut self.separator);
        self
    }

    /// The header holding the signed timestamp, and its unit.
    pub fn timestamp_header(mut self, name: &str, unit: TimestampUnit) -> Self {
        self.timestamp = Some((name.to_owned(), unit));
        self
    }

    /// The header holding the event id.
    pub fn id_header(mut self, name: &str) -> Self {
        self.id = Some(name.to_owned());
        self
    }

    /// The header naming the event's type, such as `X-Event-Type`. It is not signed:
    /// [`Verified::event_type_is_signed`](crate::Verified::event_type_is_signed) says so.
    pub fn type_header(mut self, name: &str) -> Self {
        self.event_type = Some((name.to_owned(), true));
        self
    }

    /// The top-level field of the JSON body naming the event's type, such as `event`.
    pub fn type_field(mut self, field: &str) -> Self {
        self.event_type = Some((field.to_owned(), false));
        self
    }

    /// How secrets given as text are decoded (default: raw bytes).
    pub fn secret_encoding(mut self, encoding: SecretEncoding) -> Self {
        self.secret_encoding = encoding;
        self
    }

    /// Checks the configuration.
    ///
    /// # Errors
    ///
    /// A header name that is not valid, the same header named for two of the signature,
    /// timestamp and id, an empty separator, or signed content that needs a timestamp or id
    /// header that was not given.
    pub fn build(self) -> Result<Scheme, ConfigError> {
        let name = |n: &str| {
            HeaderName::try_from(n)
                .map_err(|_| ConfigError::InvalidHeaderName { name: n.to_owned() })
        };
        let needs_ts = self.content != SignedContent::Body;
        let needs_id = self.content == SignedContent::IdTimestampBody;
        if needs_ts && self.timestamp.is_none() {
            return Err(ConfigError::InvalidScheme {
                reason: "signed content includes a timestamp but no timestamp header is set",
            });
        }
        if needs_id && self.id.is_none() {
            return Err(ConfigError::InvalidScheme {
                reason: "signed content includes an id but no id header is set",
            });
        }
        if needs_ts && self.separator.is_empty() {
            return Err(ConfigError::InvalidScheme {
                reason: "the separator is empty",
            });
        }
        let signature = name(&self.signature)?;
        let timestamp = self
            .timestamp
            .map(|(n, unit)| name(&n).map(|n| (n, unit)))
            .transpose()?;
        let id = self.id.as_deref().map(name).transpose()?;
        let ts_name = timestamp.as_ref().map(|(n, _)| n);
        // One header, one field: a request is read in one pass that files each header under
        // one field, and no sender puts two fields in one header.
        if ts_name == Some(&signature)
            || id.as_ref() == Some(&signature)
            || (id.is_some() && id.as_ref() == ts_name)
        {
            return Err(ConfigError::InvalidScheme {
                reason: "the signature, timestamp and id headers must be different",
            });
        }
        let type_source = match self.event_type {
            None => TypeSource::None,
            Some((header, true)) => TypeSource::Header(name(&header)?),
            Some((field, false)) if field.is_empty() => {
                return Err(ConfigError::InvalidScheme {
                    reason: "the type field's name is empty",
                })
            }
            Some((field, false)) => TypeSource::Field(field.into()),
        };
        let custom = Custom {
            signature,
            prefix: self.prefix,
            encoding: self.encoding,
            content: self.content,
            separator: self.separator,
            timestamp,
            id,
            secret_encoding: self.secret_encoding,
            type_source,
        };
        Ok(Scheme {
            kind: Kind::Custom(Arc::new(custom)),
        })
    }
}

impl Custom {
    pub(super) fn has_timestamp(&self) -> bool {
        self.timestamp.is_some()
    }

    pub(super) fn id_header(&self) -> Option<&HeaderName> {
        self.id.as_ref()
    }

    pub(super) fn decode_secret(&self, secret: &str) -> Result<Vec<u8>, &'static str> {
        self.secret_encoding.decode(secret)
    }

    pub(super) fn type_source(&self) -> &TypeSource {
        &self.type_source
    }

    fn prefix<'a>(&'a self, id: &'a str, ts: &'a str) -> Prefix<'a> {
        let sep = self.separator.as_bytes();
        match self.content {
            SignedContent::Body => Prefix::new(&[]),
            SignedContent::TimestampBody => Prefix::new(&[ts.as_bytes(), sep]),
            SignedContent::IdTimestampBody => {
                Prefix::new(&[id.as_bytes(), sep, ts.as_bytes(), sep])
            }
        }
    }

    pub(super) fn parse<'h>(
        &'h self,
        headers: &'h HeaderMap,
        tags: &mut Tags<'h>,
    ) -> Result<Signed<'h>, Rejection> {
        let sig_name = [&self.signature];
        let ts_name = self.timestamp.as_ref().map(|(name, _)| name);
        let ts_name = ts_name.as_slice();
        let id_name = self.id.as_ref();
        let id_name = id_name.as_slice();
        let [sig, ts, id] = scan(headers, [&sig_name, ts_name, id_name])?;

        let sig = present(sig, &sig_name)?;
        if sig.text.is_empty() {
            return Err(Rejection::malformed(sig.name, "empty signature"));
        }
        let encoded = sig
            .text
            .strip_prefix(self.prefix.as_str())
            .ok_or(Rejection::NoSupportedSignature)?;
        tags.push(self.encoding, encoded, sig.name)?;

        let (ts_text, timestamp) = match &self.timestamp {
            Some((_, unit)) => {
                let found = present(ts, ts_name)?;
                let value = timestamp(found)?;
                let secs = match unit {
                    TimestampUnit::Seconds => value,
                    TimestampUnit::Milliseconds => value / 1000,
                };
                (found.text, Some(secs))
            }
            None => ("", None),
        };
        let id = if self.content == SignedContent::IdTimestampBody && self.id.is_some() {
            Some(event_id(present(id, id_name)?)?)
        } else {
            id.map(event_id).transpose()?
        };
        Ok(Signed {
            prefix: self.prefix(id.map_or("", |f| f.text), ts_text),
            timestamp,
            id: id.map(|f| f.value),
            id_signed: self.content == SignedContent::IdTimestampBody,
        })
    }

    pub(super) fn sign(
        &self,
        key: &Key,
        id: &str,
        timestamp: u64,
        body: &[u8],
    ) -> Result<HeaderMap, SignError> {
        let ts = match self.timestamp {
            Some((_, TimestampUnit::Milliseconds)) => timestamp.saturating_mul(1000).to_string(),
            _ => timestamp.to_string(),
        };
        let tag = self.prefix(id, &ts).tag(key, body);
        let mut headers = HeaderMap::new();
        let signature = format!("{}{}", self.prefix, self.encoding.encode(&tag));
        headers.insert(
            &self.signature,
            HeaderValue::from_str(&signature).map_err(|_| SignError::InvalidPrefix)?,
        );
        if let Some((name, _)) = &self.timestamp {
            headers.insert(
                name,
                HeaderValue::from_str(&ts).map_err(|_| SignError::InvalidId)?,
            );
        }
        if let Some(name) = &self.id {
            headers.insert(name, id_value(id)?);
        }
        Ok(headers)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_needs_its_headers() {
        assert!(Scheme::custom("x-sig")
            .signed_content(SignedContent::TimestampBody)
            .build()
            .is_err());
        assert!(Scheme::custom("x-sig")
            .signed_content(SignedContent::IdTimestampBody)
            .timestamp_header("x-ts", TimestampUnit::Seconds)
            .build()
            .is_err());
        assert!(matches!(
            Scheme::custom("bad header").build(),
            Err(ConfigError::InvalidHeaderName { .. })
        ));
        assert!(Scheme::custom("x-sig").build().is_ok());
    }

    #[test]
    fn one_header_per_field() {
        let same = |builder: CustomBuilder| {
            matches!(builder.build(), Err(ConfigError::InvalidScheme { reason })
                if reason.contains("must be different"))
        };
        let ts = |b: CustomBuilder, n: &str| b.timestamp_header(n, TimestampUnit::Seconds);
        // Header names are case-insensitive, so `X-Sig` is `x-sig`.
        assert!(same(ts(Scheme::custom("x-sig"), "X-Sig")));
        assert!(same(Scheme::custom("x-sig").id_header("x-sig")));
        assert!(same(ts(Scheme::custom("x-sig"), "x-ts").id_header("x-ts")));
        assert!(ts(Scheme::custom("x-sig"), "x-ts")
            .id_header("x-id")
            .build()
            .is_ok());
    }

    #[test]
    fn secret_encodings() {
        assert_eq!(SecretEncoding::Hex.decode("0aFf"), Ok(vec![0x0a, 0xff]));
        assert!(SecretEncoding::Hex.decode("0g").is_err());
        assert!(SecretEncoding::Hex.decode("+1").is_err());
        assert_eq!(SecretEncoding::Base64.decode("AQI="), Ok(vec![1, 2]));
        assert!(SecretEncoding::Base64.decode("AQI").is_err());
        assert!(SecretEncoding::Raw.decode("").is_err());
    }
}
