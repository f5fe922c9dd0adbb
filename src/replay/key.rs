//! The dedup key of a verified request: from signed data only.

use std::fmt;

use serde::de::{self, Deserialize, Deserializer, IgnoredAny, MapAccess, Visitor};

use crate::scheme::push_hex;
use crate::Verified;

/// Longest body `"id"` used as a key; a longer one falls back to the signature digest.
const MAX_BODY_ID: usize = 256;

/// `{namespace}:{scheme}:id:{id}` when the event id is signed (in a header, or as the signed
/// body's top-level `"id"` for schemes without an id header); otherwise
/// `{namespace}:{scheme}:sig:{hex}`, keyed on the verified HMAC tag, a keyed digest of all that
/// was signed, so an unsigned id header (GitHub, Shopify) can never open a way around it.
///
/// Built in one allocation of the exact length: this runs on every request.
pub(crate) fn dedup_key(
    namespace: &str,
    verified: &Verified,
    id_in_body: bool,
    body: Option<&[u8]>,
) -> Box<str> {
    let scheme = verified.scheme().as_str();
    let signed_id = verified.id().filter(|_| verified.id_is_signed());
    let body_id = if id_in_body && signed_id.is_none() {
        body.and_then(top_level_id)
    } else {
        None
    };
    let id = signed_id.or(body_id.as_deref());
    let (kind, id_len) = match id {
        Some(id) => (":id:", id.len()),
        None => (":sig:", verified.tag.len() * 2),
    };
    let mut key = String::with_capacity(namespace.len() + 1 + scheme.len() + kind.len() + id_len);
    key.push_str(namespace);
    key.push(':');
    key.push_str(scheme);
    key.push_str(kind);
    match id {
        Some(id) => key.push_str(id),
        None => push_hex(&mut key, &verified.tag),
    }
    key.into_boxed_str()
}

/// The top-level `"id"` of a JSON object body, when it is a string or an integer (Stripe:
/// `"evt_..."`). `None` for anything else: not JSON, not an object, no `"id"`, two `"id"`s.
pub(crate) fn top_level_id(body: &[u8]) -> Option<String> {
    let TopLevelId(id) = serde_json::from_slice(body).ok()?;
    id.filter(|id| !id.is_empty() && id.len() <= MAX_BODY_ID)
}

struct TopLevelId(Option<String>);

impl<'de> Deserialize<'de> for TopLevelId {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(ObjectVisitor)
    }
}

struct ObjectVisitor;

impl<'de> Visitor<'de> for ObjectVisitor {
    type Value = TopLevelId;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<TopLevelId, A::Error> {
        let mut id = None;
        while let Some(IsId(is_id)) = map.next_key()? {
            if !is_id {
                map.next_value::<IgnoredAny>()?;
            } else if id.is_some() {
                return Err(de::Error::custom("duplicate id"));
            } else {
                id = Some(map.next_value::<IdValue>()?.0);
            }
        }
        Ok(TopLevelId(id.flatten()))
    }
}

/// Whether a key is `"id"`, without allocating.
struct IsId(bool);

impl<'de> Deserialize<'de> for IsId {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl Visitor<'_> for KeyVisitor {
            type Value = IsId;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a key")
            }
            fn visit_str<E: de::Error>(self, key: &str) -> Result<IsId, E> {
                Ok(IsId(key == "id"))
            }
        }
        deserializer.deserialize_str(KeyVisitor)
    }
}

/// An `"id"` value: a string or an integer; anything else reads as no id.
struct IdValue(Option<String>);

impl<'de> Deserialize<'de> for IdValue {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ValueVisitor;
        impl<'de> Visitor<'de> for ValueVisitor {
            type Value = IdValue;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an id")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<IdValue, E> {
                Ok(IdValue(Some(v.to_owned())))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<IdValue, E> {
                Ok(IdValue(Some(v.to_string())))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<IdValue, E> {
                Ok(IdValue(Some(v.to_string())))
            }
            fn visit_f64<E: de::Error>(self, _: f64) -> Result<IdValue, E> {
                Ok(IdValue(None))
            }
            fn visit_bool<E: de::Error>(self, _: bool) -> Result<IdValue, E> {
                Ok(IdValue(None))
            }
            fn visit_unit<E: de::Error>(self) -> Result<IdValue, E> {
                Ok(IdValue(None))
            }
            fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<IdValue, A::Error> {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(IdValue(None))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<IdValue, A::Error> {
                while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(IdValue(None))
            }
        }
        deserializer.deserialize_any(ValueVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn top_level_id_only() {
        let id = |s: &str| top_level_id(s.as_bytes());
        assert_eq!(
            id(r#"{"id":"evt_1","object":"event"}"#).as_deref(),
            Some("evt_1")
        );
        assert_eq!(
            id(r#"{"data":{"id":"inner"},"id":"evt_2"}"#).as_deref(),
            Some("evt_2")
        );
        assert_eq!(id(r#"{"data":{"id":"inner"}}"#), None);
        assert_eq!(
            id(r#"{"\u0069d":"escaped_key"}"#).as_deref(),
            Some("escaped_key")
        );
        assert_eq!(id(r#"{"id":42}"#).as_deref(), Some("42"));
        for none in [
            r#"{"id":"a","id":"b"}"#,
            r#"{"id":null}"#,
            r#"{"id":""}"#,
            r#"{"id":["x"]}"#,
            r#"["id"]"#,
            "token=abc&id=1",
            r#"{"id":"x""#,
            "",
        ] {
            assert_eq!(id(none), None, "{none}");
        }
        assert_eq!(id(&format!(r#"{{"id":"{}"}}"#, "x".repeat(257))), None);
    }
}
