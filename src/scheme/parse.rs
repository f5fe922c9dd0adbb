//! Strict, total parsing of signature headers: every input either parses or is a
//! [`Rejection`]; nothing here panics, allocates, or overflows.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use http::{HeaderMap, HeaderName, HeaderValue};

use crate::Rejection;

/// Length of an HMAC-SHA256 tag. Shorter (truncated) tags are never accepted.
pub(crate) const TAG_LEN: usize = 32;

/// An HMAC-SHA256 tag.
pub(crate) type Tag = [u8; TAG_LEN];

/// Length of an Ed25519 signature (Standard Webhooks `v1a`).
pub(crate) const SIGNATURE_LEN: usize = 64;

/// An Ed25519 signature.
pub(crate) type Signature = [u8; SIGNATURE_LEN];

/// Most signatures one request may carry; more is a malformed header (and bounds the work a
/// forged request can cause: `secrets x signatures` comparisons).
pub(crate) const MAX_TAGS: usize = 8;

/// Longest event id accepted, in bytes.
pub(crate) const MAX_ID_LEN: usize = 256;

/// The candidate tags of one request, as the header wrote them: checked for count and length
/// while the header is parsed, decoded only by [`decode`](Self::decode). The verifier decodes
/// them after the first MAC in program order, so that the processor decodes while the hash's
/// last rounds, a chain of dependent instructions, are still in flight.
///
/// They hold a scheme's HMAC tags and, for Standard Webhooks, its Ed25519 (`v1a`) signatures,
/// of the kinds the verifier has keys for: an entry of another kind is skipped like an unknown
/// version.
#[derive(Debug)]
pub(crate) struct Tags<'h> {
    texts: [&'h [u8]; MAX_TAGS],
    len: usize,
    encoding: Encoding,
    /// The `v1a` signatures' base64 texts.
    signatures: [&'h [u8]; MAX_TAGS],
    signatures_len: usize,
    /// The header the tags came from, for the rejection of an undecodable one.
    header: Option<&'h HeaderName>,
    kinds: Kinds,
}

/// The kinds of signature a verifier has keys for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Kinds {
    pub(crate) hmac: bool,
    pub(crate) ed25519: bool,
}

#[cfg(test)]
impl Kinds {
    pub(crate) const HMAC: Self = Self {
        hmac: true,
        ed25519: false,
    };
}

/// Decoded candidate tags: the buffer [`Tags::decode`] writes into, owned by the caller.
pub(crate) type Decoded = [Tag; MAX_TAGS];

impl<'h> Tags<'h> {
    /// Tags of a verifier with HMAC keys only.
    #[cfg(test)]
    pub(crate) fn new() -> Self {
        Self::of(Kinds::HMAC)
    }

    /// Tags of a verifier with keys of `kinds`.
    pub(crate) fn of(kinds: Kinds) -> Self {
        Self {
            texts: [&[]; MAX_TAGS],
            len: 0,
            encoding: Encoding::Hex,
            signatures: [&[]; MAX_TAGS],
            signatures_len: 0,
            header: None,
            kinds,
        }
    }

    /// Whether the verifier checks HMAC tags, and Ed25519 signatures.
    pub(crate) fn kinds(&self) -> Kinds {
        self.kinds
    }

    /// Takes `text` as one more candidate Ed25519 signature (base64) of `header`: too many
    /// signatures, or a text that is not 64 bytes in canonical base64, is a malformed header.
    pub(crate) fn push_signature(
        &mut self,
        text: &'h str,
        header: &'h HeaderName,
    ) -> Result<(), Rejection> {
        if self.len + self.signatures_len >= MAX_TAGS {
            return Err(Rejection::malformed(header, "too many signatures"));
        }
        if text.len() != 4 * SIGNATURE_LEN.div_ceil(3) {
            return Err(Rejection::malformed(header, NOT_A_SIGNATURE));
        }
        self.signatures[self.signatures_len] = text.as_bytes();
        self.signatures_len += 1;
        self.header = Some(header);
        Ok(())
    }

    /// Decodes every candidate signature, in order (no allocation when there is none); a
    /// text that is not canonical base64 is a malformed header.
    pub(crate) fn decode_signatures(&self) -> Result<Vec<Signature>, Rejection> {
        let texts = &self.signatures[..self.signatures_len];
        let (Some(header), false) = (self.header, texts.is_empty()) else {
            return Ok(Vec::new());
        };
        texts
            .iter()
            .map(|text| {
                let mut buf = [0u8; SIGNATURE_LEN + 1];
                match STANDARD.decode_slice(text, &mut buf) {
                    Ok(SIGNATURE_LEN) => {
                        let mut signature = [0u8; SIGNATURE_LEN];
                        signature.copy_from_slice(&buf[..SIGNATURE_LEN]);
                        Ok(signature)
                    }
                    _ => Err(Rejection::malformed(header, NOT_A_SIGNATURE)),
                }
            })
            .collect()
    }

    /// Takes `text` as one more candidate tag of `header`, in `encoding` (one scheme writes
    /// all its tags in one encoding, in one header). Too many tags, or a text of the wrong
    /// length for a full tag, is a malformed header at once; a bad digit is found by
    /// [`decode`](Self::decode).
    pub(crate) fn push(
        &mut self,
        encoding: Encoding,
        text: &'h str,
        header: &'h HeaderName,
    ) -> Result<(), Rejection> {
        let slot = self
            .texts
            .get_mut(self.len)
            .filter(|_| self.len + self.signatures_len < MAX_TAGS)
            .ok_or_else(|| Rejection::malformed(header, "too many signatures"))?;
        if text.len() != encoding.text_len() {
            return Err(Rejection::malformed(header, NOT_A_TAG));
        }
        *slot = text.as_bytes();
        self.len += 1;
        self.encoding = encoding;
        self.header = Some(header);
        Ok(())
    }

    /// Decodes every candidate into `out`, in order, and returns them; a bad digit or a
    /// non-canonical base64 text is a malformed header.
    pub(crate) fn decode<'o>(&self, out: &'o mut Decoded) -> Result<&'o [Tag], Rejection> {
        let Some(header) = self.header else {
            // Nothing was pushed.
            return Ok(&[]);
        };
        let out = &mut out[..self.len];
        for (text, tag) in self.texts.iter().zip(out.iter_mut()) {
            if !self.encoding.decode_into(text, tag) {
                return Err(Rejection::malformed(header, NOT_A_TAG));
            }
        }
        Ok(out)
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.len == 0 && self.signatures_len == 0
    }
}

/// Why a candidate tag is refused: wrong length, bad digit, non-canonical base64.
const NOT_A_TAG: &str = "signature is not a full-length HMAC-SHA256 tag";

/// Why a candidate `v1a` signature is refused.
const NOT_A_SIGNATURE: &str = "signature is not a 64-byte Ed25519 signature";

/// A header value read as text: the name it was found under, and the value.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Found<'n, 'h> {
    pub(crate) name: &'n HeaderName,
    pub(crate) value: &'h HeaderValue,
    pub(crate) text: &'h str,
}

/// The one value of a header that may be sent under any of `names` (for example `webhook-id`
/// and `svix-id`). Repeats with the same value are tolerated; different values are a malformed
/// header, so an attacker cannot make two readers of the request see two different values.
/// The value must be printable ASCII (no control characters, tabs or bytes over 0x7e).
pub(crate) fn optional<'n, 'h>(
    headers: &'h HeaderMap,
    names: &[&'n HeaderName],
) -> Result<Option<Found<'n, 'h>>, Rejection> {
    let [found] = scan(headers, [names])?;
    Ok(found)
}

/// [`optional`] for several fields at once, in one pass over the request's headers (cheaper
/// than one hash lookup per name when a scheme reads several names).
pub(crate) fn scan<'n, 'h, const N: usize>(
    headers: &'h HeaderMap,
    fields: [&[&'n HeaderName]; N],
) -> Result<[Option<Found<'n, 'h>>; N], Rejection> {
    let mut seen: [Option<(&'n HeaderName, &'h HeaderValue)>; N] = [None; N];
    for (name, value) in headers {
        for (slot, names) in seen.iter_mut().zip(fields) {
            let Some(&field) = names.iter().find(|n| **n == name) else {
                continue;
            };
            match *slot {
                None => *slot = Some((field, value)),
                Some((_, first)) if first == value => {}
                Some(_) => {
                    return Err(Rejection::malformed(
                        field,
                        "sent more than once with different values",
                    ))
                }
            }
            // A name belongs to one field at most.
            break;
        }
    }
    let mut out = [None; N];
    for (out, seen) in out.iter_mut().zip(seen) {
        if let Some((name, value)) = seen {
            // Visible ASCII, spaces and tabs. Tabs can only matter in free text, that is in
            // event ids, which `event_id` checks; every other field has a strict grammar.
            let text = value
                .to_str()
                .map_err(|_| Rejection::malformed(name, "not printable ASCII"))?;
            *out = Some(Found { name, value, text });
        }
    }
    Ok(out)
}

/// A field that must be present: absence is a [`Rejection::MissingHeader`] for its first name.
pub(crate) fn present<'n, 'h>(
    found: Option<Found<'n, 'h>>,
    names: &[&'n HeaderName],
) -> Result<Found<'n, 'h>, Rejection> {
    found.ok_or_else(|| Rejection::missing(names[0]))
}

/// Like [`optional`], but absence is a [`Rejection::MissingHeader`] for the first name.
pub(crate) fn required<'n, 'h>(
    headers: &'h HeaderMap,
    names: &[&'n HeaderName],
) -> Result<Found<'n, 'h>, Rejection> {
    present(optional(headers, names)?, names)
}

/// An event id: non-empty, at most [`MAX_ID_LEN`] bytes.
pub(crate) fn event_id<'n, 'h>(found: Found<'n, 'h>) -> Result<Found<'n, 'h>, Rejection> {
    match found.text.len() {
        0 => Err(Rejection::malformed(found.name, "empty event id")),
        n if n > MAX_ID_LEN => Err(Rejection::malformed(found.name, "event id too long")),
        _ if found.text.contains('\t') => {
            Err(Rejection::malformed(found.name, "not printable ASCII"))
        }
        _ => Ok(found),
    }
}

/// A non-negative decimal integer, as senders write Unix times: ASCII digits only, no sign, no
/// spaces, no leading zero, at most 19 digits (so it always fits in a `u64`).
pub(crate) fn decimal(text: &str) -> Result<u64, &'static str> {
    let bytes = text.as_bytes();
    if bytes.is_empty() {
        return Err("empty timestamp");
    }
    if bytes.len() > 19 {
        return Err("timestamp has too many digits");
    }
    if !bytes.iter().all(u8::is_ascii_digit) {
        return Err("timestamp is not a plain decimal number");
    }
    if bytes[0] == b'0' && bytes.len() > 1 {
        return Err("timestamp has a leading zero");
    }
    bytes.iter().try_fold(0u64, |acc, &b| {
        acc.checked_mul(10)
            .and_then(|acc| acc.checked_add(u64::from(b - b'0')))
            .ok_or("timestamp out of range")
    })
}

/// How a signature is written in its header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Encoding {
    /// Hexadecimal, 64 digits (either case accepted, lower case produced).
    Hex,
    /// Standard base64 with padding (RFC 4648 section 4), 44 characters.
    Base64,
}

impl Encoding {
    /// Decodes exactly one full-length tag; anything else (wrong length, bad digit, non-canonical
    /// base64) is `None`.
    #[cfg(test)]
    pub(crate) fn decode(self, text: &str) -> Option<Tag> {
        let mut tag = [0; TAG_LEN];
        self.decode_into(text.as_bytes(), &mut tag).then_some(tag)
    }

    /// Decodes exactly one full-length tag into `out` and says whether it was one (right
    /// length, every digit valid, canonical base64). On `false`, `out` holds garbage.
    pub(crate) fn decode_into(self, text: &[u8], out: &mut Tag) -> bool {
        match self {
            Self::Hex => decode_hex(text, out),
            Self::Base64 => decode_base64(text, out),
        }
    }

    /// The length of a full tag's text: 64 hex digits, or 44 base64 characters with padding.
    const fn text_len(self) -> usize {
        match self {
            Self::Hex => 2 * TAG_LEN,
            Self::Base64 => 4 * TAG_LEN.div_ceil(3),
        }
    }

    pub(crate) fn encode(self, tag: &Tag) -> String {
        match self {
            Self::Hex => encode_hex(tag),
            Self::Base64 => STANDARD.encode(tag),
        }
    }
}

/// Exactly 64 hex digits, either case.
fn decode_hex(text: &[u8], out: &mut Tag) -> bool {
    hex::decode_to_slice(text, out).is_ok()
}

pub(crate) fn encode_hex(bytes: &[u8]) -> String {
    hex::encode(bytes)
}

/// Appends `bytes` as lower-case hex digits.
pub(crate) fn push_hex(out: &mut String, bytes: &[u8]) {
    out.push_str(&hex::encode(bytes));
}

/// Standard base64 with padding, canonical (RFC 4648 section 4), of exactly 32 bytes: 44
/// characters, which the `STANDARD` engine decodes to at most 33 bytes.
fn decode_base64(text: &[u8], out: &mut Tag) -> bool {
    let mut buf = [0u8; TAG_LEN + 1];
    if text.len() != 4 * TAG_LEN.div_ceil(3) {
        return false;
    }
    match STANDARD.decode_slice(text, &mut buf) {
        Ok(TAG_LEN) => {
            out.copy_from_slice(&buf[..TAG_LEN]);
            true
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimal_is_strict_and_total() {
        assert_eq!(decimal("0"), Ok(0));
        assert_eq!(decimal("1649367553"), Ok(1_649_367_553));
        assert_eq!(
            decimal("9999999999999999999"),
            Ok(9_999_999_999_999_999_999)
        );
        for bad in [
            "",
            "+1",
            "-1",
            " 1",
            "1 ",
            "01",
            "1.0",
            "1e3",
            "１",
            "99999999999999999999",
            "0x10",
            "\t1",
        ] {
            assert!(decimal(bad).is_err(), "{bad:?} must be refused");
        }
    }

    #[test]
    fn hex_needs_exactly_64_digits() {
        let tag = [0xabu8; 32];
        let hex = encode_hex(&tag);
        assert_eq!(Encoding::Hex.decode(&hex), Some(tag));
        assert_eq!(Encoding::Hex.decode(&hex.to_uppercase()), Some(tag));
        assert_eq!(Encoding::Hex.decode(&hex[..62]), None);
        assert_eq!(Encoding::Hex.decode(&format!("{hex}00")), None);
        assert_eq!(Encoding::Hex.decode(&hex.replace('a', "g")), None);
    }

    #[test]
    fn base64_needs_exactly_32_bytes_canonically_encoded() {
        let tag = [7u8; 32];
        let b64 = Encoding::Base64.encode(&tag);
        assert_eq!(Encoding::Base64.decode(&b64), Some(tag));
        // 16 bytes (a truncated tag), 33 bytes, missing padding, non-canonical last digit.
        assert_eq!(Encoding::Base64.decode(&STANDARD.encode([7u8; 16])), None);
        assert_eq!(Encoding::Base64.decode(&STANDARD.encode([7u8; 33])), None);
        assert_eq!(Encoding::Base64.decode(b64.trim_end_matches('=')), None);
        let mut non_canonical = b64.clone().into_bytes();
        non_canonical[42] = b'd'; // 'c' -> 'd' changes only the discarded low bits
        assert_eq!(
            Encoding::Base64.decode(std::str::from_utf8(&non_canonical).unwrap()),
            None
        );
    }

    #[test]
    fn base64_tags_are_exactly_what_the_base64_crate_decodes_to_32_bytes() {
        // Random tags, each also with one character replaced by an arbitrary byte.
        let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for _ in 0..2_000 {
            let tag: Vec<u8> = (0..32).map(|_| next() as u8).collect();
            let text = STANDARD.encode(&tag);
            assert_eq!(Encoding::Base64.decode(&text).map(Vec::from), Some(tag));
            // One character replaced by any byte: the crate and ours agree on the result.
            let mut mangled = text.into_bytes();
            let at = (next() % 44) as usize;
            mangled[at] = next() as u8;
            if let Ok(text) = std::str::from_utf8(&mangled) {
                let theirs = STANDARD
                    .decode(text)
                    .ok()
                    .filter(|t| t.len() == 32)
                    .map(|t| <[u8; 32]>::try_from(t).unwrap());
                assert_eq!(Encoding::Base64.decode(text), theirs, "{text}");
            }
        }
    }

    #[test]
    fn base64_agrees_with_the_base64_crate_on_every_one_byte_change() {
        // Every position of a valid tag's text replaced by every byte value: 44 x 256 inputs,
        // among them the padding position, non-canonical final digits and non-ASCII bytes.
        let text = STANDARD.encode((0..32u8).map(|i| i.wrapping_mul(37)).collect::<Vec<_>>());
        for at in 0..text.len() {
            for byte in 0..=u8::MAX {
                let mut mangled = text.clone().into_bytes();
                mangled[at] = byte;
                let mut ours = [0; TAG_LEN];
                let accepted = decode_base64(&mangled, &mut ours);
                let theirs = STANDARD
                    .decode(&mangled)
                    .ok()
                    .filter(|t| t.len() == TAG_LEN);
                assert_eq!(
                    accepted.then_some(&ours[..]),
                    theirs.as_deref(),
                    "{at} {byte}"
                );
            }
        }
    }

    #[test]
    fn hex_agrees_with_a_digit_by_digit_decoder_on_every_one_byte_change() {
        let text = encode_hex(&[0x5a; TAG_LEN]).to_uppercase();
        for at in 0..text.len() {
            for byte in 0..=u8::MAX {
                let mut mangled = text.clone().into_bytes();
                mangled[at] = byte;
                let reference: Option<Vec<u8>> = mangled
                    .chunks_exact(2)
                    .map(|pair| {
                        let digit = |b: u8| char::from(b).to_digit(16).map(|d| d as u8);
                        Some(digit(pair[0])? << 4 | digit(pair[1])?)
                    })
                    .collect();
                let mut ours = [0; TAG_LEN];
                let accepted = decode_hex(&mangled, &mut ours);
                assert_eq!(
                    accepted.then_some(&ours[..]),
                    reference.as_deref(),
                    "{at} {byte}"
                );
            }
        }
    }

    #[test]
    fn repeated_headers_must_agree() {
        let a = HeaderName::from_static("webhook-id");
        let b = HeaderName::from_static("svix-id");
        let mut headers = HeaderMap::new();
        headers.append(&a, HeaderValue::from_static("msg_1"));
        headers.append(&b, HeaderValue::from_static("msg_1"));
        assert_eq!(required(&headers, &[&a, &b]).unwrap().text, "msg_1");
        headers.append(&b, HeaderValue::from_static("msg_2"));
        assert!(matches!(
            required(&headers, &[&a, &b]),
            Err(Rejection::MalformedHeader { .. })
        ));
    }

    #[test]
    fn non_printable_values_are_refused() {
        let a = HeaderName::from_static("x-sig");
        for raw in [&b"caf\xc3\xa9"[..], b"\xff"] {
            let mut headers = HeaderMap::new();
            headers.insert(&a, HeaderValue::from_bytes(raw).unwrap());
            assert!(required(&headers, &[&a]).is_err(), "{raw:?}");
        }
        // A tab is refused where free text is kept: in an event id.
        let mut headers = HeaderMap::new();
        headers.insert(&a, HeaderValue::from_static("msg\t1"));
        assert!(event_id(required(&headers, &[&a]).unwrap()).is_err());
        assert!(matches!(
            required(&HeaderMap::new(), &[&a]),
            Err(Rejection::MissingHeader { .. })
        ));
    }
}
