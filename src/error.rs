//! Configuration errors, reported when a layer is built rather than at the first request.

use std::fmt;

/// A layer or scheme was configured wrongly. Never contains a secret.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConfigError {
    /// No secret was given.
    NoSecret,
    /// A secret is empty or cannot be decoded as the scheme's secrets are.
    #[non_exhaustive]
    InvalidSecret {
        /// The secret's position, counting from 0 in the order given.
        index: usize,
        /// What is wrong (never the secret itself).
        reason: &'static str,
    },
    /// A header name is not a valid HTTP header name.
    #[non_exhaustive]
    InvalidHeaderName {
        /// The name as given.
        name: String,
    },
    /// The replay layer's settings do not fit the scheme or the verifier.
    #[non_exhaustive]
    InvalidReplay {
        /// What is wrong.
        reason: &'static str,
    },
    /// A replay store cannot be configured (for example an unusable Redis URL).
    #[non_exhaustive]
    InvalidStore {
        /// What is wrong (never a URL, which may hold a password).
        reason: &'static str,
    },
    /// A CIDR or address could not be parsed.
    #[non_exhaustive]
    InvalidCidr {
        /// The value as given.
        value: String,
    },
    /// A quota cannot be used (zero requests, burst or period).
    #[non_exhaustive]
    InvalidQuota {
        /// What is wrong.
        reason: &'static str,
    },
    /// The one-call stack's stages do not fit together.
    #[non_exhaustive]
    InvalidStack {
        /// What is wrong.
        reason: &'static str,
    },
    /// An event-type pattern cannot be used.
    #[non_exhaustive]
    InvalidEventPattern {
        /// The pattern as given.
        pattern: String,
        /// What is wrong.
        reason: &'static str,
    },
    /// A custom scheme's parts do not fit together.
    #[non_exhaustive]
    InvalidScheme {
        /// What is wrong.
        reason: &'static str,
    },
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NoSecret => f.write_str("no secret configured"),
            Self::InvalidSecret { index, reason } => write!(f, "secret #{index}: {reason}"),
            Self::InvalidHeaderName { name } => write!(f, "invalid header name {name:?}"),
            Self::InvalidScheme { reason } => write!(f, "invalid scheme: {reason}"),
            Self::InvalidCidr { value } => write!(f, "invalid CIDR or address {value:?}"),
            Self::InvalidQuota { reason } => write!(f, "invalid quota: {reason}"),
            Self::InvalidReplay { reason } => write!(f, "invalid replay settings: {reason}"),
            Self::InvalidStore { reason } => write!(f, "invalid replay store: {reason}"),
            Self::InvalidStack { reason } => write!(f, "invalid stack: {reason}"),
            Self::InvalidEventPattern { pattern, reason } => {
                write!(f, "invalid event pattern {pattern:?}: {reason}")
            }
        }
    }
}

impl std::error::Error for ConfigError {}
