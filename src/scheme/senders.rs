//! The built-in senders' formats.

use http::{HeaderMap, HeaderName, HeaderValue};

use super::parse::{decimal, event_id, optional, present, required, scan, Encoding, Found, Tags};
use super::{id_value, Key, Prefix, SignError, Signed};
use crate::Rejection;

pub(super) static WEBHOOK_ID: HeaderName = HeaderName::from_static("webhook-id");
pub(super) static WEBHOOK_TIMESTAMP: HeaderName = HeaderName::from_static("webhook-timestamp");
pub(super) static WEBHOOK_SIGNATURE: HeaderName = HeaderName::from_static("webhook-signature");
pub(super) static SVIX_ID: HeaderName = HeaderName::from_static("svix-id");
pub(super) static SVIX_TIMESTAMP: HeaderName = HeaderName::from_static("svix-timestamp");
pub(super) static SVIX_SIGNATURE: HeaderName = HeaderName::from_static("svix-signature");
pub(super) static STRIPE_SIGNATURE: HeaderName = HeaderName::from_static("stripe-signature");
pub(super) static GITHUB_SIGNATURE: HeaderName = HeaderName::from_static("x-hub-signature-256");
pub(super) static GITHUB_DELIVERY: HeaderName = HeaderName::from_static("x-github-delivery");
pub(super) static SLACK_SIGNATURE: HeaderName = HeaderName::from_static("x-slack-signature");
pub(super) static SLACK_TIMESTAMP: HeaderName =
    HeaderName::from_static("x-slack-request-timestamp");
pub(super) static SHOPIFY_HMAC: HeaderName = HeaderName::from_static("x-shopify-hmac-sha256");
pub(super) static SHOPIFY_WEBHOOK_ID: HeaderName = HeaderName::from_static("x-shopify-webhook-id");

/// A timestamp header's value as Unix seconds.
pub(super) fn timestamp(found: Found<'_, '_>) -> Result<u64, Rejection> {
    decimal(found.text).map_err(|reason| Rejection::malformed(found.name, reason))
}

fn no_tags_is_unsupported(tags: &Tags<'_>) -> Result<(), Rejection> {
    if tags.is_empty() {
        Err(Rejection::NoSupportedSignature)
    } else {
        Ok(())
    }
}

fn header_value(s: &str) -> HeaderValue {
    // Every caller passes digits, base64, hex and fixed ASCII: always a valid value.
    HeaderValue::from_str(s).expect("signer produced an invalid header value")
}

// ---- Standard Webhooks ----------------------------------------------------------------------

pub(super) fn standard_webhooks<'h>(
    headers: &'h HeaderMap,
    tags: &mut Tags<'h>,
) -> Result<Signed<'h>, Rejection> {
    const ID: &[&HeaderName] = &[&WEBHOOK_ID, &SVIX_ID];
    const TS: &[&HeaderName] = &[&WEBHOOK_TIMESTAMP, &SVIX_TIMESTAMP];
    const SIG: &[&HeaderName] = &[&WEBHOOK_SIGNATURE, &SVIX_SIGNATURE];
    let [id, ts, sig] = scan(headers, [ID, TS, SIG])?;
    let id = event_id(present(id, ID)?)?;
    let ts = present(ts, TS)?;
    let sig = present(sig, SIG)?;
    let timestamp = timestamp(ts)?;
    if sig.text.is_empty() {
        return Err(Rejection::malformed(sig.name, "empty signature list"));
    }
    let kinds = tags.kinds();
    for entry in sig.text.split(' ') {
        // `v1,` first: the common case needs no search for the comma. An entry of a kind the
        // verifier has no key for is skipped like an unknown version.
        if let Some(value) = entry.strip_prefix("v1,") {
            if kinds.hmac {
                tags.push(Encoding::Base64, value, sig.name)?;
            }
        } else if let Some(value) = entry.strip_prefix("v1a,") {
            if kinds.ed25519 {
                tags.push_signature(value, sig.name)?;
            }
        } else if !entry.contains(',') {
            return Err(Rejection::malformed(
                sig.name,
                "signature without a version",
            ));
        }
    }
    no_tags_is_unsupported(tags)?;
    Ok(Signed {
        prefix: Prefix::new(&[id.text.as_bytes(), b".", ts.text.as_bytes(), b"."]),
        timestamp: Some(timestamp),
        id: Some(id.value),
        id_signed: true,
    })
}

pub(super) fn standard_webhooks_id(headers: &HeaderMap) -> Option<&str> {
    optional(headers, &[&WEBHOOK_ID, &SVIX_ID])
        .ok()
        .flatten()
        .map(|f| f.text)
}

pub(super) fn sign_standard_webhooks(
    key: &Key,
    id: &str,
    timestamp: u64,
    body: &[u8],
) -> Result<HeaderMap, SignError> {
    standard_webhooks_headers(id, timestamp, |prefix| {
        format!("v1,{}", Encoding::Base64.encode(&prefix.tag(key, body)))
    })
}

/// A Standard Webhooks delivery signed with an Ed25519 seed: a `v1a` signature.
pub(super) fn sign_standard_webhooks_ed25519(
    key: &ed25519_dalek::SigningKey,
    id: &str,
    timestamp: u64,
    body: &[u8],
) -> Result<HeaderMap, SignError> {
    standard_webhooks_headers(id, timestamp, |prefix| {
        super::ed25519::sign(key, &super::ed25519::message(prefix, body))
    })
}

/// The headers of a Standard Webhooks delivery whose signature `signature` makes from what is
/// signed before the body.
fn standard_webhooks_headers(
    id: &str,
    timestamp: u64,
    signature: impl FnOnce(&Prefix<'_>) -> String,
) -> Result<HeaderMap, SignError> {
    let id_value = id_value(id)?;
    let ts = timestamp.to_string();
    let prefix = Prefix::new(&[id.as_bytes(), b".", ts.as_bytes(), b"."]);
    let mut headers = HeaderMap::new();
    headers.insert(&WEBHOOK_ID, id_value);
    headers.insert(&WEBHOOK_TIMESTAMP, header_value(&ts));
    headers.insert(&WEBHOOK_SIGNATURE, header_value(&signature(&prefix)));
    Ok(headers)
}

// ---- Stripe ---------------------------------------------------------------------------------

pub(super) fn stripe<'h>(
    headers: &'h HeaderMap,
    tags: &mut Tags<'h>,
) -> Result<Signed<'h>, Rejection> {
    let sig = required(headers, &[&STRIPE_SIGNATURE])?;
    let mut t = None;
    for item in sig.text.split(',') {
        let (key, value) = item
            .split_once('=')
            .ok_or_else(|| Rejection::malformed(sig.name, "item without '='"))?;
        match key {
            "t" if t.is_some() => return Err(Rejection::malformed(sig.name, "repeated t=")),
            "t" => t = Some(value),
            "v1" => tags.push(Encoding::Hex, value, sig.name)?,
            _ => {}
        }
    }
    let t = t.ok_or_else(|| Rejection::malformed(sig.name, "no t= timestamp"))?;
    let timestamp = decimal(t).map_err(|reason| Rejection::malformed(sig.name, reason))?;
    no_tags_is_unsupported(tags)?;
    Ok(Signed {
        prefix: Prefix::new(&[t.as_bytes(), b"."]),
        timestamp: Some(timestamp),
        id: None,
        id_signed: false,
    })
}

pub(super) fn sign_stripe(key: &Key, timestamp: u64, body: &[u8]) -> Result<HeaderMap, SignError> {
    let ts = timestamp.to_string();
    let tag = Prefix::new(&[ts.as_bytes(), b"."]).tag(key, body);
    let mut headers = HeaderMap::new();
    headers.insert(
        &STRIPE_SIGNATURE,
        header_value(&format!("t={ts},v1={}", Encoding::Hex.encode(&tag))),
    );
    Ok(headers)
}

// ---- GitHub ---------------------------------------------------------------------------------

/// A `<version>=<hex>` signature of which only `version` is verified.
fn versioned_hex<'h>(
    sig: Found<'h, 'h>,
    version: &str,
    tags: &mut Tags<'h>,
) -> Result<(), Rejection> {
    let (v, value) = sig
        .text
        .split_once('=')
        .ok_or_else(|| Rejection::malformed(sig.name, "signature without a version"))?;
    if v != version {
        return Err(Rejection::NoSupportedSignature);
    }
    tags.push(Encoding::Hex, value, sig.name)
}

/// An optional, unsigned id header (GitHub's and Shopify's).
fn unsigned_id<'h>(found: Option<Found<'_, 'h>>) -> Result<Option<&'h HeaderValue>, Rejection> {
    found
        .map(|found| event_id(found).map(|f| f.value))
        .transpose()
}

pub(super) fn github<'h>(
    headers: &'h HeaderMap,
    tags: &mut Tags<'h>,
) -> Result<Signed<'h>, Rejection> {
    const SIG: &[&HeaderName] = &[&GITHUB_SIGNATURE];
    let [sig, id] = scan(headers, [SIG, &[&GITHUB_DELIVERY]])?;
    versioned_hex(present(sig, SIG)?, "sha256", tags)?;
    Ok(Signed {
        prefix: Prefix::new(&[]),
        timestamp: None,
        id: unsigned_id(id)?,
        id_signed: false,
    })
}

pub(super) fn sign_github(key: &Key, id: &str, body: &[u8]) -> Result<HeaderMap, SignError> {
    let id_value = id_value(id)?;
    let tag = Prefix::new(&[]).tag(key, body);
    let mut headers = HeaderMap::new();
    headers.insert(
        &GITHUB_SIGNATURE,
        header_value(&format!("sha256={}", Encoding::Hex.encode(&tag))),
    );
    headers.insert(&GITHUB_DELIVERY, id_value);
    Ok(headers)
}

// ---- Slack ----------------------------------------------------------------------------------

pub(super) fn slack<'h>(
    headers: &'h HeaderMap,
    tags: &mut Tags<'h>,
) -> Result<Signed<'h>, Rejection> {
    const TS: &[&HeaderName] = &[&SLACK_TIMESTAMP];
    const SIG: &[&HeaderName] = &[&SLACK_SIGNATURE];
    let [ts, sig] = scan(headers, [TS, SIG])?;
    let ts = present(ts, TS)?;
    let timestamp = timestamp(ts)?;
    versioned_hex(present(sig, SIG)?, "v0", tags)?;
    Ok(Signed {
        prefix: Prefix::new(&[b"v0:", ts.text.as_bytes(), b":"]),
        timestamp: Some(timestamp),
        id: None,
        id_signed: false,
    })
}

pub(super) fn sign_slack(key: &Key, timestamp: u64, body: &[u8]) -> Result<HeaderMap, SignError> {
    let ts = timestamp.to_string();
    let tag = Prefix::new(&[b"v0:", ts.as_bytes(), b":"]).tag(key, body);
    let mut headers = HeaderMap::new();
    headers.insert(&SLACK_TIMESTAMP, header_value(&ts));
    headers.insert(
        &SLACK_SIGNATURE,
        header_value(&format!("v0={}", Encoding::Hex.encode(&tag))),
    );
    Ok(headers)
}

// ---- Shopify --------------------------------------------------------------------------------

pub(super) fn shopify<'h>(
    headers: &'h HeaderMap,
    tags: &mut Tags<'h>,
) -> Result<Signed<'h>, Rejection> {
    const SIG: &[&HeaderName] = &[&SHOPIFY_HMAC];
    let [sig, id] = scan(headers, [SIG, &[&SHOPIFY_WEBHOOK_ID]])?;
    let sig = present(sig, SIG)?;
    tags.push(Encoding::Base64, sig.text, sig.name)?;
    Ok(Signed {
        prefix: Prefix::new(&[]),
        timestamp: None,
        id: unsigned_id(id)?,
        id_signed: false,
    })
}

pub(super) fn sign_shopify(key: &Key, id: &str, body: &[u8]) -> Result<HeaderMap, SignError> {
    let id_value = id_value(id)?;
    let tag = Prefix::new(&[]).tag(key, body);
    let mut headers = HeaderMap::new();
    headers.insert(&SHOPIFY_HMAC, header_value(&Encoding::Base64.encode(&tag)));
    headers.insert(&SHOPIFY_WEBHOOK_ID, id_value);
    Ok(headers)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&HeaderName, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, HeaderValue::from_str(value).unwrap());
        }
        map
    }

    const HEX: &str = "757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";
    const B64: &str = "tZ1I4/hDygAJgO5TYxiSd6Sd0kDW6hPenDe+bTa3Kkw=";

    fn std_headers(sig: &str) -> HeaderMap {
        headers(&[
            (&WEBHOOK_ID, "msg_1"),
            (&WEBHOOK_TIMESTAMP, "1649367553"),
            (&WEBHOOK_SIGNATURE, sig),
        ])
    }

    #[test]
    fn standard_webhooks_ignores_unknown_versions_but_needs_one_v1() {
        let map = std_headers(&format!("v1a,abc v1,{B64} v2,zzz"));
        let mut tags = Tags::new();
        standard_webhooks(&map, &mut tags).unwrap();
        assert_eq!(tags.len(), 1);
        assert!(matches!(
            standard_webhooks(&std_headers("v1a,abc"), &mut Tags::new()),
            Err(Rejection::NoSupportedSignature)
        ));
        for bad in ["", "v1", &format!("v1,{B64}  v1,{B64}"), "v1,AAAA", B64] {
            assert!(
                matches!(
                    standard_webhooks(&std_headers(bad), &mut Tags::new()),
                    Err(Rejection::MalformedHeader { .. })
                ),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn standard_webhooks_refuses_conflicting_svix_headers() {
        let mut map = std_headers(&format!("v1,{B64}"));
        map.insert(&SVIX_TIMESTAMP, HeaderValue::from_static("1649367554"));
        assert!(matches!(
            standard_webhooks(&map, &mut Tags::new()),
            Err(Rejection::MalformedHeader { .. })
        ));
    }

    #[test]
    fn stripe_needs_exactly_one_t_and_takes_every_v1() {
        let two = format!("t=1,v1={HEX},v0={HEX},v1={HEX},foo=bar");
        let map = headers(&[(&STRIPE_SIGNATURE, &two)]);
        let mut tags = Tags::new();
        let ok = stripe(&map, &mut tags).unwrap();
        assert_eq!(tags.len(), 2);
        assert_eq!(ok.timestamp, Some(1));
        for bad in [
            format!("t=1,t=1,v1={HEX}"),
            format!("v1={HEX}"),
            format!("t=,v1={HEX}"),
            format!("t=-1,v1={HEX}"),
            format!("t=1,v1={}", &HEX[..32]),
            "t=1,v1".to_owned(),
            String::new(),
        ] {
            assert!(
                matches!(
                    stripe(&headers(&[(&STRIPE_SIGNATURE, &bad)]), &mut Tags::new()),
                    Err(Rejection::MalformedHeader { .. })
                ),
                "{bad:?}"
            );
        }
        assert!(matches!(
            stripe(
                &headers(&[(&STRIPE_SIGNATURE, &format!("t=1,v0={HEX}"))]),
                &mut Tags::new()
            ),
            Err(Rejection::NoSupportedSignature)
        ));
    }

    #[test]
    fn github_refuses_other_algorithms_and_short_tags() {
        let sig = |s: &str| headers(&[(&GITHUB_SIGNATURE, s)]);
        assert!(github(&sig(&format!("sha256={HEX}")), &mut Tags::new()).is_ok());
        assert!(matches!(
            github(&sig(&format!("sha1={}", &HEX[..40])), &mut Tags::new()),
            Err(Rejection::NoSupportedSignature)
        ));
        assert!(matches!(
            github(&sig(&format!("sha256={}", &HEX[..32])), &mut Tags::new()),
            Err(Rejection::MalformedHeader { .. })
        ));
        assert!(matches!(
            github(&sig(HEX), &mut Tags::new()),
            Err(Rejection::MalformedHeader { .. })
        ));
        assert!(matches!(
            github(&HeaderMap::new(), &mut Tags::new()),
            Err(Rejection::MissingHeader { .. })
        ));
    }

    #[test]
    fn too_many_signatures_is_malformed() {
        let many = vec![format!("v1,{B64}"); super::super::parse::MAX_TAGS + 1].join(" ");
        assert!(matches!(
            standard_webhooks(&std_headers(&many), &mut Tags::new()),
            Err(Rejection::MalformedHeader { .. })
        ));
    }
}
