use std::fmt;
use std::sync::Arc;
use std::sync::OnceLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwap;

use ed25519_dalek::VerifyingKey;
use http::HeaderMap;
use subtle::{Choice, ConstantTimeEq};

use crate::clock::{self, Clock, SharedClock};
use crate::scheme::{ed25519, AsymmetricKey, Decoded, Key, Kinds, Scheme, Tag, Tags};
use crate::{BodyLimits, ConfigError, Rejection, Verified};

/// Verifies requests of one scheme against one or more secrets. Cheap to clone (shared).
///
/// Usable without Tower, for example on deliveries read from a queue:
/// [`verify`](Self::verify) takes the headers and the exact body bytes.
#[derive(Clone)]
pub struct Verifier {
    inner: Arc<Inner>,
}

struct Inner {
    scheme: Scheme,
    /// The keys in force, replaced whole by [`Verifier::replace_keys`]; read without a lock.
    keys: ArcSwap<Keys>,
    tolerance_secs: u64,
    clock: SharedClock,
    limits: BodyLimits,
}

/// The secrets and public keys a verifier checks with.
struct Keys {
    /// The HMAC secrets, each keying a MAC per request.
    hmac: Box<[Held<Key>]>,
    /// The Ed25519 public keys.
    ed25519: Box<[Held<VerifyingKey>]>,
}

/// A key with its index among all the keys, in the order given, and when it stops verifying
/// (Unix seconds), if ever.
struct Held<K> {
    index: usize,
    key: K,
    expires: Option<u64>,
}

impl<K> Held<K> {
    /// Whether it still verifies at `now`, read from `clock` only when the key expires.
    fn live(&self, now: &mut Option<u64>, clock: &SharedClock) -> bool {
        self.expires
            .is_none_or(|at| *now.get_or_insert_with(|| clock.now_unix_secs()) < at)
    }
}

impl Verifier {
    /// The default tolerance between the signed timestamp and now, in either direction.
    pub const DEFAULT_TOLERANCE: Duration = Duration::from_secs(300);

    /// Starts configuring a verifier for `scheme`.
    pub fn builder(scheme: Scheme) -> VerifierBuilder {
        VerifierBuilder {
            scheme,
            hmac: Vec::new(),
            ed25519: Vec::new(),
            expires: None,
            error: None,
            count: 0,
            tolerance: Self::DEFAULT_TOLERANCE,
            clock: clock::system(),
            limits: BodyLimits::new(),
        }
    }

    /// Checks the signature of a request with these headers and exactly these body bytes.
    ///
    /// # Errors
    ///
    /// The [`Rejection`] to answer: a missing or malformed header, a timestamp outside the
    /// tolerance, no signature of a supported version, or no signature matching any secret.
    pub fn verify(&self, headers: &HeaderMap, body: &[u8]) -> Result<Verified, Rejection> {
        let inner = &*self.inner;
        let keys = inner.keys.load();
        let mut tags = Tags::of(Kinds {
            hmac: !keys.hmac.is_empty(),
            ed25519: !keys.ed25519.is_empty(),
        });
        let signed = inner.scheme.parse(headers, &mut tags)?;
        // The first key's MAC comes before the candidates are decoded and the clock is read,
        // though neither needs it: the hash ends in a long chain of dependent instructions,
        // and the processor runs the independent work after it while that chain completes.
        // Rejections keep their order (a malformed header, then a stale timestamp, then a
        // mismatch); a request refused for either of the first two has cost one MAC.
        let first = keys
            .hmac
            .first()
            .map(|held| signed.prefix.tag(&held.key, body));
        let mut decoded = Decoded::default();
        let candidates = tags.decode(&mut decoded)?;
        let signatures = tags.decode_signatures()?;
        let mut now = None;
        if let Some(timestamp) = signed.timestamp {
            let clock = *now.insert(inner.clock.now_unix_secs());
            if clock.abs_diff(timestamp) > inner.tolerance_secs {
                return Err(Rejection::TimestampOutOfTolerance {
                    timestamp,
                    now: clock,
                });
            }
        }
        let verified = |key_index, tag| {
            let type_header = inner.scheme.type_source().header();
            Verified {
                scheme: inner.scheme.clone(),
                id: signed.id.cloned(),
                id_signed: signed.id_signed,
                timestamp: signed.timestamp,
                key_index,
                tag,
                type_header: type_header.and_then(|name| headers.get(name)).cloned(),
                body: None,
                event_type: OnceLock::new(),
            }
        };
        for (position, held) in keys.hmac.iter().enumerate() {
            if !held.live(&mut now, &inner.clock) {
                continue;
            }
            let tag = match (position, first) {
                (0, Some(tag)) => tag,
                _ => signed.prefix.tag(&held.key, body),
            };
            let matched = candidates.iter().fold(Choice::from(0), |acc, candidate| {
                acc | tags_equal(&tag, candidate)
            });
            if bool::from(matched) {
                return Ok(verified(held.index, tag));
            }
        }
        if !signatures.is_empty() {
            let message = ed25519::message(&signed.prefix, body);
            for held in keys.ed25519.iter() {
                if !held.live(&mut now, &inner.clock) {
                    continue;
                }
                if let Some(signature) = signatures
                    .iter()
                    .find(|s| ed25519::verifies(&held.key, &message, s))
                {
                    return Ok(verified(held.index, ed25519::digest(signature)));
                }
            }
        }
        Err(Rejection::SignatureMismatch)
    }

    /// How far a signed timestamp may be from now, either way.
    #[must_use]
    pub fn tolerance(&self) -> Duration {
        Duration::from_secs(self.inner.tolerance_secs)
    }

    /// The scheme.
    #[must_use]
    pub fn scheme(&self) -> &Scheme {
        &self.inner.scheme
    }

    /// The limits [`Verify`](super::Verify) applies when it has to read the body itself.
    #[must_use]
    pub fn body_limits(&self) -> &BodyLimits {
        &self.inner.limits
    }

    /// How many secrets it holds; [`Verified::key_index`](crate::Verified::key_index) is below.
    #[must_use]
    pub fn key_count(&self) -> usize {
        let keys = self.inner.keys.load();
        keys.hmac.len() + keys.ed25519.len()
    }

    /// Replaces the secrets and keys in force with those of `from`, a verifier built for the
    /// same scheme (its other settings are not taken). Every clone of this verifier, and every
    /// layer built from one, checks the next request with the new keys; requests being
    /// verified finish with the old ones. The request path takes no lock.
    ///
    /// ```
    /// use std::time::{Duration, SystemTime};
    /// use tower_webhook::scheme::{Scheme, Signer};
    /// use tower_webhook::Verifier;
    ///
    /// let live = Verifier::builder(Scheme::github()).secret("old").build()?;
    /// let in_the_stack = live.clone();
    /// // Rotation: the new secret, and the old one for one more hour.
    /// let next = Verifier::builder(Scheme::github())
    ///     .secret("new")
    ///     .secret_until("old", SystemTime::now() + Duration::from_secs(3600))
    ///     .build()?;
    /// live.replace_keys(&next)?;
    ///
    /// let headers = Signer::new(&Scheme::github(), "new")?.sign("d1", 0, b"{}")?;
    /// assert_eq!(in_the_stack.verify(&headers, b"{}")?.key_index(), 0);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`ConfigError::InvalidScheme`] when `from` is for another scheme; nothing changes then.
    pub fn replace_keys(&self, from: &Verifier) -> Result<(), ConfigError> {
        if from.inner.scheme.kind() != self.inner.scheme.kind() {
            return Err(ConfigError::InvalidScheme {
                reason: "the new keys are for another scheme",
            });
        }
        self.inner.keys.store(from.inner.keys.load_full());
        Ok(())
    }

    pub(crate) fn claimed_id<'h>(&self, headers: &'h HeaderMap) -> Option<&'h str> {
        self.inner.scheme.claimed_id(headers)
    }
}

impl fmt::Debug for Verifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Verifier")
            .field("scheme", &self.inner.scheme.kind())
            .field("secrets", &format_args!("[..; {}]", self.key_count()))
            .field("tolerance_secs", &self.inner.tolerance_secs)
            .field("clock", &self.inner.clock)
            .field("limits", &self.inner.limits)
            .finish()
    }
}

/// Configures a [`Verifier`]; [`Verifier::builder`] starts it. Errors (an empty or undecodable
/// secret, no secret at all) are reported by [`build`](Self::build).
#[must_use]
pub struct VerifierBuilder {
    scheme: Scheme,
    hmac: Vec<Held<Key>>,
    ed25519: Vec<Held<VerifyingKey>>,
    /// The expiry of the secret being added.
    expires: Option<u64>,
    error: Option<ConfigError>,
    count: usize,
    tolerance: Duration,
    clock: SharedClock,
    limits: BodyLimits,
}

impl VerifierBuilder {
    /// Adds a secret written as the scheme's sender writes it (for example `whsec_...` for
    /// Standard Webhooks). Several secrets may be active at once; the first that matches wins.
    ///
    /// For Standard Webhooks it may also be an Ed25519 public key, `whpk_<base64 of 32
    /// bytes>`: it verifies `v1a` signatures, beside the `v1` of the `whsec_` secrets (which
    /// are tried first). A small-order key is refused, since it would accept almost any
    /// signature. [`Verified::key_index`] counts every secret and key in the order given.
    pub fn secret(mut self, secret: impl AsRef<str>) -> Self {
        let secret = secret.as_ref();
        match self.scheme.asymmetric_key(secret) {
            Some(Ok(AsymmetricKey::Public(key))) => {
                self.ed25519.push(Held {
                    index: self.count,
                    key,
                    expires: self.expires,
                });
                self.count += 1;
            }
            Some(Ok(AsymmetricKey::Signing(_))) => self.add(Err(
                "a signing seed (whsk_) signs: the verifier takes its whpk_ public key",
            )),
            Some(Err(reason)) => self.add(Err(reason)),
            None => {
                let decoded = self.scheme.decode_secret(secret);
                self.add(decoded.as_ref().map(|k| k.as_slice()).map_err(|e| *e));
            }
        }
        self
    }

    /// Adds a secret (or public key) that verifies until `expires`, and no longer from then
    /// on, by the verifier's clock: the last step of a rotation, when the old secret is kept
    /// only until every sender has the new one.
    pub fn secret_until(mut self, secret: impl AsRef<str>, expires: SystemTime) -> Self {
        let at = expires
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        self.expires = Some(at);
        self = self.secret(secret);
        self.expires = None;
        self
    }

    /// Adds several secrets, as [`secret`](Self::secret).
    pub fn secrets<I>(self, secrets: I) -> Self
    where
        I: IntoIterator,
        I::Item: AsRef<str>,
    {
        secrets.into_iter().fold(self, Self::secret)
    }

    /// Adds a secret given as the raw key bytes.
    pub fn secret_bytes(mut self, key: impl AsRef<[u8]>) -> Self {
        let key = key.as_ref();
        self.add(if key.is_empty() {
            Err("secret is empty")
        } else {
            Ok(key)
        });
        self
    }

    fn add(&mut self, key: Result<&[u8], &'static str>) {
        let index = self.count;
        self.count += 1;
        let key = key.and_then(|k| Key::new_from_slice(k).map_err(|_| "not a valid HMAC key"));
        match key {
            Ok(key) => self.hmac.push(Held {
                index,
                key,
                expires: self.expires,
            }),
            Err(reason) => {
                self.error
                    .get_or_insert(ConfigError::InvalidSecret { index, reason });
            }
        }
    }

    /// How far the signed timestamp may be from now, in either direction (default 5 minutes).
    /// Whole seconds; the fraction is dropped.
    pub fn tolerance(mut self, tolerance: Duration) -> Self {
        self.tolerance = tolerance;
        self
    }

    /// The clock to check timestamps against (default [`SystemClock`](crate::clock::SystemClock)).
    pub fn clock(mut self, clock: impl Clock) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// The limits [`Verify`](super::Verify) applies when it reads the body itself, that is
    /// when no [`BufferBody`](crate::body::BufferBody) layer did so before it.
    pub fn body_limits(mut self, limits: BodyLimits) -> Self {
        self.limits = limits;
        self
    }

    /// Builds the verifier.
    ///
    /// # Errors
    ///
    /// [`ConfigError::InvalidSecret`] for the first secret that is empty or cannot be decoded;
    /// [`ConfigError::NoSecret`] when none was given.
    pub fn build(self) -> Result<Verifier, ConfigError> {
        if let Some(error) = self.error {
            return Err(error);
        }
        if self.hmac.is_empty() && self.ed25519.is_empty() {
            return Err(ConfigError::NoSecret);
        }
        Ok(Verifier {
            inner: Arc::new(Inner {
                scheme: self.scheme,
                keys: ArcSwap::from_pointee(Keys {
                    hmac: self.hmac.into_boxed_slice(),
                    ed25519: self.ed25519.into_boxed_slice(),
                }),
                tolerance_secs: self.tolerance.as_secs(),
                clock: self.clock,
                limits: self.limits,
            }),
        })
    }
}

impl fmt::Debug for VerifierBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VerifierBuilder")
            .field("scheme", &self.scheme.kind())
            .field("secrets", &format_args!("[..; {}]", self.count))
            .field("tolerance", &self.tolerance)
            .finish_non_exhaustive()
    }
}

/// Constant-time equality of two tags, a machine word at a time: the differences are OR-ed
/// together without a branch and compared with zero once, through `subtle`.
fn tags_equal(a: &Tag, b: &Tag) -> Choice {
    let diff = a
        .chunks_exact(8)
        .zip(b.chunks_exact(8))
        .fold(0u64, |acc, (x, y)| {
            let word = |c: &[u8]| u64::from_ne_bytes(c.try_into().unwrap_or_default());
            acc | (word(x) ^ word(y))
        });
    diff.ct_eq(&0)
}

#[cfg(test)]
mod tests {
    use http::HeaderValue;

    use super::*;
    use crate::clock::ManualClock;
    use crate::scheme::{Encoding, Signer};

    const NOW: u64 = 1_700_000_000;
    const OLD: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    const NEW: &str = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";

    /// A Standard Webhooks delivery of event `msg_1` with the body `{}`, signed with `secret`
    /// at `at`, its tag's text replaced by `tag` when given.
    fn delivery(secret: &str, at: u64, tag: Option<&str>) -> HeaderMap {
        let signer = Signer::new(&Scheme::standard_webhooks(), secret).unwrap();
        let mut headers = signer.sign("msg_1", at, b"{}").unwrap();
        if let Some(tag) = tag {
            let value = HeaderValue::from_str(&format!("v1,{tag}")).unwrap();
            headers.insert("webhook-signature", value);
        }
        headers
    }

    #[test]
    fn rejections_keep_their_order_though_tags_are_decoded_after_the_first_mac() {
        let verifier = Verifier::builder(Scheme::standard_webhooks())
            .secrets([OLD, NEW])
            .clock(ManualClock::new(NOW))
            .build()
            .unwrap();
        let check = |headers: &HeaderMap| verifier.verify(headers, b"{}");
        // Either key matches, the second one after the first's MAC was computed up front.
        assert_eq!(check(&delivery(OLD, NOW, None)).unwrap().key_index(), 0);
        assert_eq!(check(&delivery(NEW, NOW, None)).unwrap().key_index(), 1);
        // A bad digit is found after the MAC, yet still comes before the timestamp...
        let stale = NOW - 3_600;
        // 44 characters with the padding in place: only the `!` in a digit's place is wrong.
        let bad_digit = format!("{}!=", "A".repeat(42));
        for at in [NOW, stale] {
            assert!(
                matches!(
                    check(&delivery(OLD, at, Some(&bad_digit))),
                    Err(Rejection::MalformedHeader { .. })
                ),
                "signed at {at}"
            );
        }
        // ... and a stale timestamp before a mismatch.
        let wrong = Encoding::Base64.encode(&[7; 32]);
        assert!(matches!(
            check(&delivery(OLD, stale, Some(&wrong))),
            Err(Rejection::TimestampOutOfTolerance { .. })
        ));
        assert!(matches!(
            check(&delivery(OLD, NOW, Some(&wrong))),
            Err(Rejection::SignatureMismatch)
        ));
        // A second, undecodable candidate refuses the request though the first one matches:
        // every candidate is decoded before any is compared.
        let good = delivery(NEW, NOW, None);
        let both = format!(
            "{} v1,{bad_digit}",
            good["webhook-signature"].to_str().unwrap()
        );
        let mut headers = good.clone();
        headers.insert("webhook-signature", HeaderValue::from_str(&both).unwrap());
        assert!(matches!(
            check(&headers),
            Err(Rejection::MalformedHeader { .. })
        ));
    }

    #[test]
    fn an_expired_key_no_longer_verifies() {
        let clock = ManualClock::new(NOW);
        let until = UNIX_EPOCH + Duration::from_secs(NOW + 60);
        for scheme in [Scheme::standard_webhooks(), Scheme::github()] {
            let verifier = Verifier::builder(scheme.clone())
                .secret(NEW)
                .secret_until(OLD, until)
                .clock(clock.clone())
                .tolerance(Duration::from_secs(3600))
                .build()
                .unwrap();
            let signed = |secret| {
                Signer::new(&scheme, secret)
                    .unwrap()
                    .sign("msg_1", NOW, b"{}")
                    .unwrap()
            };
            clock.set(NOW + 59);
            assert_eq!(verifier.verify(&signed(OLD), b"{}").unwrap().key_index(), 1);
            clock.set(NOW + 60);
            assert_eq!(
                verifier.verify(&signed(OLD), b"{}").unwrap_err(),
                Rejection::SignatureMismatch
            );
            assert_eq!(verifier.verify(&signed(NEW), b"{}").unwrap().key_index(), 0);
            clock.set(NOW);
        }
    }

    #[test]
    fn replaced_keys_take_effect_in_every_clone() {
        let live = Verifier::builder(Scheme::standard_webhooks())
            .secret(OLD)
            .clock(ManualClock::new(NOW))
            .build()
            .unwrap();
        let clone = live.clone();
        let next = Verifier::builder(Scheme::standard_webhooks())
            .secret(NEW)
            .build()
            .unwrap();
        live.replace_keys(&next).unwrap();
        assert!(clone.verify(&delivery(NEW, NOW, None), b"{}").is_ok());
        assert_eq!(
            clone.verify(&delivery(OLD, NOW, None), b"{}").unwrap_err(),
            Rejection::SignatureMismatch
        );
        // Keys of another scheme are refused, and change nothing.
        let github = Verifier::builder(Scheme::github())
            .secret("s")
            .build()
            .unwrap();
        assert!(matches!(
            live.replace_keys(&github),
            Err(ConfigError::InvalidScheme { .. })
        ));
        assert!(clone.verify(&delivery(NEW, NOW, None), b"{}").is_ok());
    }

    #[test]
    fn tags_equal_sees_every_byte() {
        let a: Tag = std::array::from_fn(|i| i as u8);
        assert!(bool::from(tags_equal(&a, &a)));
        for i in 0..a.len() {
            for bit in 0..8 {
                let mut b = a;
                b[i] ^= 1 << bit;
                assert!(!bool::from(tags_equal(&a, &b)), "byte {i} bit {bit}");
            }
        }
    }
}
