//! Where each sender puts an event's type, and reading it from a verified request.
//!
//! The table of senders is in the [`scheme`](super#event-types) module's docs.

use std::ops::Range;

use bytes::Bytes;
use http::{HeaderName, HeaderValue};

/// Longest type accepted, in bytes.
const MAX_TYPE_LEN: usize = 256;

static GITHUB_EVENT: HeaderName = HeaderName::from_static("x-github-event");

/// The sources of the built-in senders.
pub(crate) static BODY_TYPE: TypeSource = TypeSource::BodyType;
pub(crate) static GITHUB: TypeSource = TypeSource::GitHub;
pub(crate) static SLACK: TypeSource = TypeSource::Slack;
pub(crate) static SHOPIFY: TypeSource =
    TypeSource::Header(HeaderName::from_static("x-shopify-topic"));

/// Where a scheme's senders put the event type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum TypeSource {
    /// The JSON body's top-level `type`.
    BodyType,
    /// Another top-level string field of the JSON body.
    Field(Box<str>),
    /// A header, unsigned.
    Header(HeaderName),
    /// `X-GitHub-Event`, then `.` and the body's `action` when it has one.
    GitHub,
    /// Slack's Events API.
    Slack,
    /// The scheme names no type.
    None,
}

impl TypeSource {
    /// The header this source reads, kept with the verified request.
    pub(crate) fn header(&self) -> Option<&HeaderName> {
        match self {
            Self::Header(name) => Some(name),
            Self::GitHub => Some(&GITHUB_EVENT),
            _ => None,
        }
    }

    /// Whether the type is covered by the signature: only what comes from the body is.
    pub(crate) fn is_signed(&self) -> bool {
        matches!(self, Self::BodyType | Self::Field(_) | Self::Slack)
    }

    /// The type of a verified request: `header` is the value of [`header`](Self::header).
    /// A type taken whole from the body shares its memory.
    pub(crate) fn read(&self, header: Option<&HeaderValue>, body: &Bytes) -> Option<Bytes> {
        let from_header = || {
            let value = header?.as_bytes();
            valid(value).then(|| Bytes::copy_from_slice(value))
        };
        match self {
            Self::None => None,
            Self::Header(_) => from_header(),
            Self::BodyType => field(body, &["type"]),
            Self::Field(name) => field(body, &[name]),
            Self::GitHub => {
                let event = from_header()?;
                match field(body, &["action"]) {
                    Some(action) => Some([&event[..], b".", &action[..]].concat().into()),
                    None => Some(event),
                }
            }
            Self::Slack => match field(body, &["type"]) {
                Some(ty) if &ty[..] == b"event_callback" => field(body, &["event", "type"]),
                other => other,
            },
        }
    }
}

/// Whether `bytes` is a type: 1 to 256 visible ASCII characters.
fn valid(bytes: &[u8]) -> bool {
    !bytes.is_empty()
        && bytes.len() <= MAX_TYPE_LEN
        && bytes.iter().all(|b| (0x21..0x7f).contains(b))
}

/// The string at `path` (a top-level key, then keys of nested objects) of a JSON object body,
/// if it is a type.
///
/// The body is walked only as far as the field, and a top-level field that closes the body
/// (Stripe puts `type` last) is found from the end: either way a large body is not read
/// whole. Nested values on the way are skipped, strings with `memchr`. A body that is not a
/// JSON object up to the field has no type.
pub(crate) fn field(body: &Bytes, path: &[&str]) -> Option<Bytes> {
    let token = string_at(body, path)?;
    let inner = token.start + 1..token.end - 1;
    let text = if body[inner.clone()].contains(&b'\\') {
        Bytes::from(serde_json::from_slice::<String>(&body[token]).ok()?)
    } else {
        body.slice(inner)
    };
    valid(&text).then_some(text)
}

/// Where the string token (quotes included) at `path` is.
fn string_at(body: &[u8], path: &[&str]) -> Option<Range<usize>> {
    if let [key] = path {
        if let Some(value) = last_pair(body, key) {
            return Some(value);
        }
    }
    let mut walk = Walk { body, at: 0 };
    let mut path = path;
    loop {
        let (want, rest) = path.split_first()?;
        walk.expect(b'{')?;
        walk.at = walk.find_key(want)?;
        if rest.is_empty() {
            let start = walk.at;
            walk.skip_string()?;
            return Some(start..walk.at);
        }
        path = rest;
    }
}

/// The value token of `"key":"value"` when it is the last pair of the root object: the body
/// ends with it and the object's closing brace. Valid JSON can end that way only at the top
/// level.
fn last_pair(body: &[u8], key: &str) -> Option<Range<usize>> {
    let mut end = body.len();
    let back = |end: &mut usize| -> Option<u8> {
        while *end > 0 && body[*end - 1].is_ascii_whitespace() {
            *end -= 1;
        }
        *end = end.checked_sub(1)?;
        Some(body[*end])
    };
    (back(&mut end)? == b'}').then_some(())?;
    (back(&mut end)? == b'"').then_some(())?;
    let value_end = end + 1;
    let value_start = string_start(body, end)?;
    end = value_start;
    (back(&mut end)? == b':').then_some(())?;
    (back(&mut end)? == b'"').then_some(())?;
    let key_start = string_start(body, end)?;
    (&body[key_start + 1..end] == key.as_bytes()).then_some(())?;
    end = key_start;
    matches!(back(&mut end)?, b',' | b'{').then_some(value_start..value_end)
}

/// Where the string whose closing quote is at `close` opens: the nearest quote before it not
/// escaped by an odd run of backslashes.
fn string_start(body: &[u8], close: usize) -> Option<usize> {
    let mut end = close;
    loop {
        let quote = memchr::memrchr(b'"', &body[..end])?;
        let slashes = body[..quote]
            .iter()
            .rev()
            .take_while(|&&b| b == b'\\')
            .count();
        if slashes % 2 == 0 {
            return Some(quote);
        }
        end = quote;
    }
}

/// A forward walk over the body, at byte `at`.
struct Walk<'b> {
    body: &'b [u8],
    at: usize,
}

impl Walk<'_> {
    fn skip_ws(&mut self) {
        while self.body.get(self.at).is_some_and(u8::is_ascii_whitespace) {
            self.at += 1;
        }
    }

    /// The next byte after white space, consumed.
    fn next(&mut self) -> Option<u8> {
        self.skip_ws();
        let b = *self.body.get(self.at)?;
        self.at += 1;
        Some(b)
    }

    fn expect(&mut self, byte: u8) -> Option<()> {
        (self.next()? == byte).then_some(())
    }

    /// Past the string opening at `at` (white space before it skipped).
    fn skip_string(&mut self) -> Option<()> {
        self.expect(b'"')?;
        loop {
            let i = memchr::memchr2(b'"', b'\\', self.body.get(self.at..)?)?;
            self.at += i + 1;
            if self.body[self.at - 1] == b'"' {
                return Some(());
            }
            // A backslash: the next byte is escaped, whatever it is (even past the end).
            self.at += 1;
        }
    }

    /// Past one value of any kind. Brackets are counted, not matched: the body is signed
    /// JSON, and a walk that loses its way finds no type, nothing worse.
    fn skip_value(&mut self) -> Option<()> {
        self.skip_ws();
        match *self.body.get(self.at)? {
            b'"' => self.skip_string(),
            b'{' | b'[' => {
                let mut depth = 0usize;
                loop {
                    match *self.body.get(self.at)? {
                        b'"' => {
                            self.skip_string()?;
                            continue;
                        }
                        b'{' | b'[' => depth += 1,
                        b'}' | b']' => {
                            depth -= 1;
                            if depth == 0 {
                                self.at += 1;
                                return Some(());
                            }
                        }
                        _ => {}
                    }
                    self.at += 1;
                }
            }
            // A number, `true`, `false` or `null`: up to the next delimiter.
            _ => {
                while self
                    .body
                    .get(self.at)
                    .is_some_and(|&b| !matches!(b, b',' | b'}' | b']') && !b.is_ascii_whitespace())
                {
                    self.at += 1;
                }
                Some(())
            }
        }
    }

    /// Inside an object just opened: finds `key` at this level and returns where its value
    /// starts. Keys are compared as written; one with an escape is read by `serde_json`.
    fn find_key(&mut self, key: &str) -> Option<usize> {
        self.skip_ws();
        if self.body.get(self.at) == Some(&b'}') {
            return None;
        }
        loop {
            self.skip_ws();
            let start = self.at;
            self.skip_string()?;
            let token = &self.body[start..self.at];
            let matched = if token.contains(&b'\\') {
                serde_json::from_slice::<String>(token).is_ok_and(|k| k == key)
            } else {
                &token[1..token.len() - 1] == key.as_bytes()
            };
            self.expect(b':')?;
            self.skip_ws();
            if matched {
                return Some(self.at);
            }
            self.skip_value()?;
            match self.next()? {
                b',' => {}
                _ => return None,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(source: &TypeSource, text: &str) -> Option<String> {
        let bytes = Bytes::copy_from_slice(text.as_bytes());
        source
            .read(None, &bytes)
            .map(|t| String::from_utf8(t.to_vec()).unwrap())
    }

    fn text(found: Option<Bytes>) -> Option<String> {
        found.map(|t| String::from_utf8(t.to_vec()).unwrap())
    }

    #[test]
    fn the_top_level_field_only_and_the_first_match() {
        let ty = TypeSource::BodyType;
        assert_eq!(
            body(&ty, r#"{"type":"invoice.paid"}"#).as_deref(),
            Some("invoice.paid")
        );
        // Nested `type`s are not the event's; the top-level one may come last (Stripe).
        let stripe = r#"{"id":"evt_1","data":{"object":{"type":"card"}},"type":"charge.refunded"}"#;
        assert_eq!(body(&ty, stripe).as_deref(), Some("charge.refunded"));
        assert_eq!(body(&ty, r#"{"data":{"type":"x"}}"#), None);
        assert_eq!(
            body(&ty, r#"  {"\u0074ype":"escaped.key"}"#).as_deref(),
            Some("escaped.key")
        );
        for none in [
            r#"{"type":7}"#,
            r#"{"type":""}"#,
            r#"{"type":"has space"}"#,
            r#"["type"]"#,
            "type=invoice.paid",
            "",
            r#"{"type""#,
        ] {
            assert_eq!(body(&ty, none), None, "{none}");
        }
        // Cut short anywhere, escapes included: never a panic.
        let whole = r#"{"a":"x\\\"y","b":[{"c":"\\"}],"type":"t\u0041"}"#;
        for end in 0..whole.len() {
            let _ = body(&ty, &whole[..end]);
            let _ = body(&TypeSource::Slack, &whole[..end]);
        }
        assert_eq!(body(&ty, r#"{"a":"\"#), None);
        assert_eq!(body(&ty, whole).as_deref(), Some("tA"));
        let long = format!(r#"{{"type":"{}"}}"#, "x".repeat(257));
        assert_eq!(body(&ty, &long), None);
    }

    #[test]
    fn github_joins_the_event_and_the_action() {
        let issues = HeaderValue::from_static("issues");
        let read = |h: &HeaderValue, b: &str| {
            text(TypeSource::GitHub.read(Some(h), &Bytes::copy_from_slice(b.as_bytes())))
        };
        assert_eq!(
            read(&issues, r#"{"action":"opened","issue":{}}"#).as_deref(),
            Some("issues.opened")
        );
        let push = HeaderValue::from_static("push");
        assert_eq!(
            read(&push, r#"{"ref":"refs/heads/main"}"#).as_deref(),
            Some("push")
        );
        assert_eq!(
            TypeSource::GitHub.read(None, &Bytes::from_static(b"{}")),
            None
        );
    }

    #[test]
    fn slack_reads_inside_event_callbacks() {
        let slack = TypeSource::Slack;
        let callback =
            r#"{"token":"t","type":"event_callback","event":{"type":"app_mention","text":"hi"}}"#;
        assert_eq!(body(&slack, callback).as_deref(), Some("app_mention"));
        let handshake = r#"{"token":"t","challenge":"c","type":"url_verification"}"#;
        assert_eq!(body(&slack, handshake).as_deref(), Some("url_verification"));
        assert_eq!(body(&slack, "token=t&command=%2Fweather&text=94070"), None);
    }

    /// Random JSON objects, read by the walk and by `serde_json` into a `Value`: the walk
    /// finds what the full parse finds, wherever `type` sits and whatever surrounds it.
    #[test]
    fn the_walk_agrees_with_a_full_parse() {
        let mut seed = 0x2545_f491_4f6c_dd1d_u64;
        let mut next = move |n: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % n
        };
        fn value(next: &mut dyn FnMut(u64) -> u64, depth: u32) -> serde_json::Value {
            use serde_json::Value;
            let key = |next: &mut dyn FnMut(u64) -> u64| {
                ["type", "id", "t\"ype", "data", "typ", "event", "\\", "a b"][next(8) as usize]
                    .to_owned()
            };
            match if depth > 3 { next(4) } else { next(7) } {
                0 => Value::from(["x.y", "in\"voice", "a\\b", "", "type", "}"][next(6) as usize]),
                1 => Value::from(next(1000) as i64 - 500),
                2 => Value::Bool(next(2) == 0),
                3 => Value::Null,
                4 | 5 => (0..next(4))
                    .map(|_| (key(next), value(next, depth + 1)))
                    .collect(),
                _ => (0..next(4)).map(|_| value(next, depth + 1)).collect(),
            }
        }
        let mut found = 0;
        for _ in 0..20_000 {
            let mut object = serde_json::Map::new();
            for _ in 0..next(5) {
                let key = ["type", "id", "data", "event", "action"][next(5) as usize];
                object.insert(key.to_owned(), value(&mut next, 0));
            }
            let text = if next(2) == 0 {
                serde_json::to_string(&object).unwrap()
            } else {
                serde_json::to_string_pretty(&object).unwrap()
            };
            let want = object
                .get("type")
                .and_then(|v| v.as_str())
                .filter(|t| valid(t.as_bytes()))
                .map(str::to_owned);
            found += usize::from(want.is_some());
            assert_eq!(body(&TypeSource::BodyType, &text), want, "{text}");
            let nested = object
                .get("event")
                .and_then(|e| e.get("type"))
                .and_then(|v| v.as_str())
                .filter(|t| valid(t.as_bytes()))
                .map(str::to_owned);
            let bytes = Bytes::copy_from_slice(text.as_bytes());
            let found_nested = field(&bytes, &["event", "type"]);
            assert_eq!(self::text(found_nested), nested, "{text}");
        }
        assert!(found > 500, "{found}");
    }
}
