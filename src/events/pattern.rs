//! Event-type patterns: an exact type, a prefix ending in `*`, or `*` alone.

use std::fmt;

use crate::ConfigError;

/// One pattern of event types.
///
/// - `invoice.paid`: that type only;
/// - `invoice.*`: every type that starts with `invoice.` (`invoice.paid`,
///   `invoice.payment.failed`, not `invoiceitem.created`); `orders/*` for Shopify topics;
/// - `*`: every event, one with no type included.
#[derive(Clone, PartialEq, Eq, Hash)]
pub(crate) enum Pattern {
    Exact(Box<str>),
    Prefix(Box<str>),
    Any,
}

impl Pattern {
    pub(crate) fn parse(text: &str) -> Result<Self, ConfigError> {
        let bad = |reason| {
            Err(ConfigError::InvalidEventPattern {
                pattern: text.to_owned(),
                reason,
            })
        };
        if text == "*" {
            return Ok(Self::Any);
        }
        if text.is_empty() {
            return bad("empty");
        }
        if !text.bytes().all(|b| (0x21..0x7f).contains(&b)) {
            return bad("not visible ASCII");
        }
        match text.find('*') {
            None => Ok(Self::Exact(text.into())),
            Some(at) if at + 1 == text.len() => Ok(Self::Prefix(text[..at].into())),
            Some(_) => bad("`*` may only end a pattern"),
        }
    }

    /// Whether the pattern takes an event of type `ty` (`None`: the event has no type).
    pub(crate) fn matches(&self, ty: Option<&str>) -> bool {
        match (self, ty) {
            (Self::Any, _) => true,
            (Self::Exact(want), Some(ty)) => **want == *ty,
            (Self::Prefix(prefix), Some(ty)) => ty.starts_with(&**prefix),
            (_, None) => false,
        }
    }

    /// How specific the pattern is: an exact type beats any prefix, a longer prefix a shorter
    /// one, and `*` comes last.
    pub(crate) fn specificity(&self) -> (u8, usize) {
        match self {
            Self::Exact(_) => (2, 0),
            Self::Prefix(prefix) => (1, prefix.len()),
            Self::Any => (0, 0),
        }
    }
}

impl fmt::Debug for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl fmt::Display for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Exact(ty) => f.write_str(ty),
            Self::Prefix(prefix) => write!(f, "{prefix}*"),
            Self::Any => f.write_str("*"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_prefix_and_any() {
        let p = |s: &str| Pattern::parse(s).unwrap();
        assert!(p("invoice.paid").matches(Some("invoice.paid")));
        assert!(!p("invoice.paid").matches(Some("invoice.paid.late")));
        assert!(p("invoice.*").matches(Some("invoice.payment.failed")));
        assert!(!p("invoice.*").matches(Some("invoiceitem.created")));
        assert!(p("orders/*").matches(Some("orders/create")));
        assert!(!p("invoice.*").matches(None));
        assert!(p("*").matches(None) && p("*").matches(Some("x")));
        for bad in ["", "inv*ice", "*.paid", "**", "a b", "invoice.**", "é"] {
            assert!(Pattern::parse(bad).is_err(), "{bad}");
        }
        assert!(p("invoice.paid").specificity() > p("invoice.*").specificity());
        assert!(p("invoice.payment.*").specificity() > p("invoice.*").specificity());
        assert!(p("i*").specificity() > p("*").specificity());
    }
}
