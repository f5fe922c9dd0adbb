//! The stack from a TOML policy file that several services share (feature `config`).
//!
//! The file holds settings every endpoint shares, then one `[[endpoints]]` table per path.
//! Secrets are references: `env:NAME` (an environment variable) or `file:PATH` (a file's
//! content, without its trailing line break). A plain string is taken as the secret itself,
//! for development only: loading logs a warning for each.
//!
//! | key | default | meaning |
//! |---|---|---|
//! | `trusted_proxies` | none | CIDRs of proxies whose `X-Forwarded-For` is believed (a list, or one comma-separated string) |
//! | `allow_cidrs` | everyone | CIDRs allowed to deliver; others get 403 |
//! | `allow_provider` | none | `github`, `stripe` (a list, or one comma-separated string): their published webhook ranges are allowed too, fetched and refreshed (feature `provider-ranges`; see [`ProviderRanges`](crate::allowlist::ProviderRanges)); `build` must then run inside a Tokio runtime |
//! | `provider_url_github`, `provider_url_stripe` | the providers' own URLs | where each list is fetched from instead (a mirror; may be `http://`) |
//! | `provider_refresh_secs` | `3600` | how often the lists are fetched again |
//! | `rate_per_sec`, `rate_burst` | no limit; burst = rate | requests per second per client IP, and at once |
//! | `replay_store` | `memory` | `memory`, `redis` (feature `redis`) or `off` |
//! | `redis_url` | `redis://127.0.0.1:6379/` | the Redis of `replay_store = "redis"` (a reference or a literal) |
//! | `replay_ttl_secs` | a day, or twice the endpoint's tolerance if that is longer | how long a handled event id is remembered (at least twice the tolerance) |
//! | `replay_max_entries` | `100000` | most ids the memory store holds |
//! | `max_body_bytes` | `1048576` | largest body accepted |
//! | `tolerance_secs` | `300` | how far a signed timestamp may be from now |
//! | `forwarded_header` | `x-forwarded-for` | which header the trusted proxies write: `x-forwarded-for` (with `X-Forwarded-Proto`) or `forwarded` |
//! | `require_https` | `false` | refuse requests that did not come over TLS (see [`https`](crate::https)) |
//! | `penalty_failures`, `penalty_window_secs` | off; 60 | box a client after this many failed verifications within the window (see [`penalty`](crate::penalty)) |
//! | `allow_content_types` | any | media types accepted (a list, or one comma-separated string); others get 415 |
//! | `max_buffered_bytes` | `67108864` (64 MiB) | memory budget for all bodies being read at once (see [`BodyBudget`]); over it, 503 |
//! | `[[endpoints]]` | | `path`, `scheme` (`standard`, `stripe`, `github`, `slack`, `shopify`), `secrets` (a list), and optionally `events` (event-type patterns, see [`Subscription`]; unset: every event), `tolerance_secs` and `max_body_bytes` |
//!
//! Every endpoint gets its own stack, named by its path in metrics and logs (see
//! [`observe`](crate::observe)); they share one replay store, each under its own namespace
//! (its path), so two endpoints never share replay keys.
//!
//! ```
//! use tower_webhook::stack::config::Config;
//!
//! # std::env::set_var("STRIPE_WEBHOOK_SECRET", "whsec_test");
//! let config = Config::from_toml(r#"
//!     trusted_proxies = ["10.0.0.0/8"]
//!     rate_per_sec = 20
//!
//!     [[endpoints]]
//!     path = "/stripe"
//!     scheme = "stripe"
//!     secrets = ["env:STRIPE_WEBHOOK_SECRET"]
//! "#)?;
//! let endpoints = config.build()?;
//! assert_eq!(endpoints[0].0, "/stripe");
//! # Ok::<(), tower_webhook::stack::config::LoadError>(())
//! ```
//!
//! A mistake is reported by the path of the first field it is in, never with a secret:
//!
//! ```
//! use tower_webhook::stack::config::Config;
//!
//! let err = Config::from_toml(r#"
//!     [[endpoints]]
//!     path = "/a"
//!     scheme = "stripe"
//!     secrets = ["env:SURELY_UNSET_VARIABLE"]
//! "#)?.build().unwrap_err();
//! assert_eq!(err.field(), "endpoints[0].secrets[0]");
//! # Ok::<(), tower_webhook::stack::config::LoadError>(())
//! ```

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use ipnet::IpNet;
use serde::Deserialize;
use zeroize::Zeroizing;

use super::{WebhookBuilder, WebhookLayer};
use crate::allowlist::IpAllowlist;
use crate::body::BodyBudget;
use crate::client_ip::ForwardedHeader;
use crate::content_type::MediaTypes;
use crate::events::Subscription;
use crate::penalty::PenaltyBox;
use crate::rate_limit::Quota;
use crate::replay::{MemoryStore, ReplayLayer, ReplayStore};
use crate::scheme::Scheme;
use crate::{ConfigError, Verifier};

/// A policy file: shared settings and the endpoints. See the [module docs](self).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    trusted_proxies: Items,
    #[serde(default)]
    allow_cidrs: Items,
    rate_per_sec: Option<u32>,
    rate_burst: Option<u32>,
    #[serde(default)]
    replay_store: StoreKind,
    redis_url: Option<SecretRef>,
    replay_ttl_secs: Option<u64>,
    replay_max_entries: Option<usize>,
    max_body_bytes: Option<usize>,
    tolerance_secs: Option<u64>,
    #[serde(default)]
    forwarded_header: HeaderKind,
    #[serde(default)]
    require_https: bool,
    penalty_failures: Option<u32>,
    penalty_window_secs: Option<u64>,
    #[serde(default)]
    allow_content_types: Items,
    #[serde(default)]
    allow_provider: Items,
    provider_url_github: Option<String>,
    provider_url_stripe: Option<String>,
    provider_refresh_secs: Option<u64>,
    max_buffered_bytes: Option<usize>,
    #[serde(default)]
    endpoints: Vec<EndpointConfig>,
}

/// The memory budget for bodies when the file sets none: 64 MiB.
const DEFAULT_MAX_BUFFERED_BYTES: usize = 64 * 1024 * 1024;

/// What every endpoint shares beside the replay store.
struct Guards {
    header: ForwardedHeader,
    penalty: Option<PenaltyBox>,
    content_types: Option<MediaTypes>,
    budget: BodyBudget,
}

/// One `[[endpoints]]` table.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EndpointConfig {
    path: String,
    scheme: SchemeName,
    secrets: Vec<SecretRef>,
    events: Option<Vec<String>>,
    tolerance_secs: Option<u64>,
    max_body_bytes: Option<usize>,
}

impl EndpointConfig {
    /// The path this endpoint serves.
    #[must_use]
    pub fn path(&self) -> &str {
        &self.path
    }
}

#[derive(Debug, Clone, Copy, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
enum StoreKind {
    #[default]
    Memory,
    Redis,
    Off,
}

#[derive(Debug, Clone, Copy, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
enum HeaderKind {
    #[default]
    XForwardedFor,
    Forwarded,
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "lowercase")]
enum SchemeName {
    Standard,
    Stripe,
    Github,
    Slack,
    Shopify,
}

impl SchemeName {
    fn scheme(self) -> Scheme {
        match self {
            Self::Standard => Scheme::standard_webhooks(),
            Self::Stripe => Scheme::stripe(),
            Self::Github => Scheme::github(),
            Self::Slack => Scheme::slack(),
            Self::Shopify => Scheme::shopify(),
        }
    }
}

/// A list (of CIDRs, of media types): a TOML list of strings, or one comma-separated string.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(untagged)]
enum Items {
    #[default]
    None,
    One(String),
    List(Vec<String>),
}

impl Items {
    fn joined(&self) -> String {
        match self {
            Self::None => String::new(),
            Self::One(list) => list.clone(),
            Self::List(items) => items.join(","),
        }
    }

    fn parse(&self, field: &str) -> Result<Vec<IpNet>, LoadError> {
        crate::parse_cidrs(&self.joined()).map_err(|e| LoadError::new(field, e))
    }

    /// The items, trimmed, empty ones left out.
    fn items(&self) -> Vec<String> {
        let joined = self.joined();
        let items = joined.split(',').map(str::trim).filter(|i| !i.is_empty());
        items.map(str::to_owned).collect()
    }
}

/// A secret as the file gives it: `env:NAME`, `file:PATH`, or (for development) the secret
/// itself. `Debug` never prints a literal.
#[derive(Clone, Deserialize)]
#[serde(from = "String")]
struct SecretRef(String);

impl From<String> for SecretRef {
    fn from(s: String) -> Self {
        Self(s)
    }
}

impl fmt::Debug for SecretRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0.split_once(':') {
            Some(("env" | "file", _)) => f.write_str(&self.0),
            _ => f.write_str(".."),
        }
    }
}

impl SecretRef {
    /// The value, read from where the reference says. A literal is logged as a warning when
    /// `literal_is_a_secret` (a Redis URL without a password is no secret).
    fn resolve(&self, field: &str, literal_is_a_secret: bool) -> Result<String, LoadError> {
        let value = if let Some(name) = self.0.strip_prefix("env:") {
            std::env::var(name).map_err(|_| {
                LoadError::new(field, format!("environment variable {name} is not set"))
            })?
        } else if let Some(path) = self.0.strip_prefix("file:") {
            let text = std::fs::read_to_string(path)
                .map_err(|e| LoadError::new(field, format!("cannot read {path}: {}", e.kind())))?;
            text.trim_end_matches(['\r', '\n']).to_owned()
        } else {
            #[cfg(feature = "tracing")]
            if literal_is_a_secret {
                tracing::warn!(
                    target: "tower_webhook",
                    field,
                    "a literal secret in the config file: use env:NAME or file:PATH outside development"
                );
            }
            #[cfg(not(feature = "tracing"))]
            let _ = literal_is_a_secret;
            self.0.clone()
        };
        if value.is_empty() {
            return Err(LoadError::new(field, "the value is empty"));
        }
        Ok(value)
    }
}

/// What is wrong with a config file: the path of the first bad field (`endpoints[1].scheme`)
/// and why. Never holds a secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadError {
    field: String,
    reason: String,
}

impl LoadError {
    fn new(field: &str, reason: impl fmt::Display) -> Self {
        Self {
            field: field.to_owned(),
            reason: reason.to_string(),
        }
    }

    /// The path of the field, as `endpoints[0].secrets[1]`; empty when the file itself is
    /// not TOML.
    #[must_use]
    pub fn field(&self) -> &str {
        &self.field
    }

    /// What is wrong with it.
    #[must_use]
    pub fn reason(&self) -> &str {
        &self.reason
    }
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.field.is_empty() {
            f.write_str(&self.reason)
        } else {
            write!(f, "{}: {}", self.field, self.reason)
        }
    }
}

impl std::error::Error for LoadError {}

/// Parses TOML text into a table, for a caller that edits it before
/// [`Config::from_table`] (the demo receiver lays its environment settings over it).
///
/// # Errors
///
/// A [`LoadError`] that names the line of a syntax error, never quoting it: the line may hold
/// a secret.
pub fn parse_toml(text: &str) -> Result<toml::Table, LoadError> {
    text.parse().map_err(|e: toml::de::Error| {
        let line = e
            .span()
            .map_or(0, |span| text[..span.start].matches('\n').count() + 1);
        LoadError::new("", format!("not valid TOML at line {line}"))
    })
}

impl Config {
    /// Reads a config from TOML text.
    ///
    /// # Errors
    ///
    /// A [`LoadError`] naming the first field that is unknown, missing or of the wrong type.
    /// A syntax error names its line only: the line may hold a secret.
    pub fn from_toml(text: &str) -> Result<Self, LoadError> {
        Self::from_table(parse_toml(text)?)
    }

    /// Reads a config from a TOML table, for example one the caller has edited (the demo
    /// receiver lays its environment settings over the file's), with the same errors as
    /// [`from_toml`](Self::from_toml).
    ///
    /// # Errors
    ///
    /// A [`LoadError`] naming the first bad field.
    pub fn from_table(table: toml::Table) -> Result<Self, LoadError> {
        serde_path_to_error::deserialize(table).map_err(|e| {
            let field = e.path().to_string();
            let field = if field == "." { String::new() } else { field };
            // serde quotes a value of the wrong type in its message: never a secret's.
            let reason = if field.contains("secrets") || field.starts_with("redis_url") {
                "expected a string, or for secrets a list of strings".to_owned()
            } else {
                e.into_inner().message().to_owned()
            };
            LoadError::new(&field, reason)
        })
    }

    /// The endpoints, in file order.
    #[must_use]
    pub fn endpoints(&self) -> &[EndpointConfig] {
        &self.endpoints
    }

    /// Builds one stack per endpoint, in file order, with its path: secrets resolved, one
    /// replay store shared under a namespace per path.
    ///
    /// # Errors
    ///
    /// A [`LoadError`] naming the first field that cannot be used: a secret reference that
    /// does not resolve, a CIDR, a quota, a TTL shorter than twice the tolerance, two
    /// endpoints on one path, no endpoint at all.
    pub fn build(&self) -> Result<Vec<(String, WebhookLayer)>, LoadError> {
        if self.endpoints.is_empty() {
            return Err(LoadError::new("endpoints", "no endpoint is configured"));
        }
        let trusted = self.trusted_proxies.parse("trusted_proxies")?;
        let allow = self.allowlist()?;
        let rate = self.quota()?;
        let store = self.store()?;
        let guards = self.guards()?;
        let mut built: Vec<(String, WebhookLayer)> = Vec::new();
        for (i, endpoint) in self.endpoints.iter().enumerate() {
            let at = |field: &str| format!("endpoints[{i}].{field}");
            if !endpoint.path.starts_with('/') {
                return Err(LoadError::new(&at("path"), "a path starts with /"));
            }
            if built.iter().any(|(path, _)| *path == endpoint.path) {
                return Err(LoadError::new(
                    &at("path"),
                    "another endpoint serves this path",
                ));
            }
            let secrets = endpoint
                .secrets
                .iter()
                .enumerate()
                .map(|(j, s)| s.resolve(&at(&format!("secrets[{j}]")), true))
                .map(|s| s.map(Zeroizing::new))
                .collect::<Result<Vec<_>, _>>()?;
            let tolerance = endpoint
                .tolerance_secs
                .or(self.tolerance_secs)
                .unwrap_or(300);
            let verifier = Verifier::builder(endpoint.scheme.scheme())
                .secrets(secrets.iter().map(|s| s.as_str()))
                .tolerance(Duration::from_secs(tolerance))
                .build()
                .map_err(|e| match e {
                    ConfigError::InvalidSecret { index, .. } => {
                        LoadError::new(&at(&format!("secrets[{index}]")), e)
                    }
                    ConfigError::NoSecret => LoadError::new(&at("secrets"), e),
                    _ => LoadError::new(&at("scheme"), e),
                })?;
            let max_body = endpoint.max_body_bytes.or(self.max_body_bytes);
            let mut builder: WebhookBuilder = WebhookLayer::builder(verifier)
                .endpoint(&endpoint.path)
                .trusted_proxies(trusted.clone())
                .forwarded_header(guards.header)
                .require_https(self.require_https)
                .body_budget(guards.budget.clone())
                .max_body(max_body.unwrap_or(crate::BodyLimits::DEFAULT_MAX_BYTES));
            if let Some(allow) = &allow {
                builder = builder.allow(allow.clone());
            }
            if let Some(rate) = &rate {
                builder = builder.rate_limit(rate.clone());
            }
            if let Some(penalty) = &guards.penalty {
                builder = builder.penalty(penalty.clone());
            }
            if let Some(types) = &guards.content_types {
                builder = builder.content_types(types.clone());
            }
            if let Some(events) = &endpoint.events {
                let subscription =
                    Subscription::new(events).map_err(|e| LoadError::new(&at("events"), e))?;
                builder = builder.subscribe(subscription);
            }
            if let Some(store) = &store {
                // Unset, it follows the tolerance: a day, or twice the tolerance if longer.
                let ttl = self
                    .replay_ttl_secs
                    .unwrap_or_else(|| tolerance.saturating_mul(2).max(86_400));
                let ttl = Duration::from_secs(ttl);
                builder = builder.replay(
                    ReplayLayer::builder(store.clone())
                        .namespace(&endpoint.path)
                        .ttl(ttl),
                );
            }
            let layer = builder.build().map_err(|e| {
                let field = match e {
                    ConfigError::InvalidReplay { .. } => "replay_ttl_secs".to_owned(),
                    _ => at("max_body_bytes"),
                };
                LoadError::new(&field, e)
            })?;
            built.push((endpoint.path.clone(), layer));
        }
        Ok(built)
    }

    /// The allowlist every endpoint shares: `allow_cidrs`, and the ranges of `allow_provider`,
    /// whose refresh starts on the current Tokio runtime. `None`: everyone is allowed.
    fn allowlist(&self) -> Result<Option<IpAllowlist>, LoadError> {
        let fixed = self.allow_cidrs.parse("allow_cidrs")?;
        let providers = self.allow_provider.items();
        if providers.is_empty() {
            return Ok((!fixed.is_empty()).then(|| IpAllowlist::new(fixed)));
        }
        #[cfg(feature = "provider-ranges")]
        {
            use crate::allowlist::{Provider, ProviderRanges};
            let mut builder = ProviderRanges::builder().fixed(fixed);
            for name in providers {
                let provider: Provider = name
                    .parse()
                    .map_err(|e| LoadError::new("allow_provider", e))?;
                let url = match provider {
                    Provider::GitHub => self.provider_url_github.as_deref(),
                    Provider::Stripe => self.provider_url_stripe.as_deref(),
                };
                builder = builder.provider_at(provider, url.unwrap_or(provider.default_url()));
            }
            let refresh = Duration::from_secs(self.provider_refresh_secs.unwrap_or(3600));
            let ranges = builder
                .refresh(refresh)
                .build()
                .map_err(|e| LoadError::new("allow_provider", e))?;
            if tokio::runtime::Handle::try_current().is_err() {
                return Err(LoadError::new(
                    "allow_provider",
                    "fetching the providers' lists needs a Tokio runtime: build inside one",
                ));
            }
            ranges.spawn();
            Ok(Some(ranges.allowlist()))
        }
        #[cfg(not(feature = "provider-ranges"))]
        {
            let _ = (
                &self.provider_url_github,
                &self.provider_url_stripe,
                self.provider_refresh_secs,
            );
            Err(LoadError::new(
                "allow_provider",
                "provider ranges need the crate's `provider-ranges` feature",
            ))
        }
    }

    /// The guards every endpoint shares: one penalty box (a forger is boxed on every path),
    /// one memory budget for bodies.
    fn guards(&self) -> Result<Guards, LoadError> {
        let penalty = match self.penalty_failures {
            None => None,
            Some(failures) => {
                let window = Duration::from_secs(self.penalty_window_secs.unwrap_or(60));
                let penalty = PenaltyBox::new(failures, window)
                    .map_err(|e| LoadError::new("penalty_failures", e))?;
                Some(penalty)
            }
        };
        let types = self.allow_content_types.items();
        let content_types = if types.is_empty() {
            None
        } else {
            let types =
                MediaTypes::new(types).map_err(|e| LoadError::new("allow_content_types", e))?;
            Some(types)
        };
        let max_buffered = self
            .max_buffered_bytes
            .unwrap_or(DEFAULT_MAX_BUFFERED_BYTES);
        if max_buffered == 0 {
            return Err(LoadError::new(
                "max_buffered_bytes",
                "the memory budget for bodies must not be zero",
            ));
        }
        Ok(Guards {
            header: match self.forwarded_header {
                HeaderKind::XForwardedFor => ForwardedHeader::XForwardedFor,
                HeaderKind::Forwarded => ForwardedHeader::Forwarded,
            },
            penalty,
            content_types,
            budget: BodyBudget::new(max_buffered),
        })
    }

    /// One limiter for every endpoint: a client's quota counts across all of them.
    fn quota(&self) -> Result<Option<crate::rate_limit::RateLimitLayer>, LoadError> {
        let Some(per_sec) = self.rate_per_sec else {
            return Ok(None);
        };
        let quota = Quota::new(per_sec, Duration::from_secs(1))
            .map_err(|e| LoadError::new("rate_per_sec", e))?
            .burst(self.rate_burst.unwrap_or(per_sec))
            .map_err(|e| LoadError::new("rate_burst", e))?;
        Ok(Some(quota.into()))
    }

    fn store(&self) -> Result<Option<Arc<dyn ReplayStore>>, LoadError> {
        Ok(match self.replay_store {
            StoreKind::Off => None,
            StoreKind::Memory => {
                let max = self
                    .replay_max_entries
                    .unwrap_or(MemoryStore::DEFAULT_MAX_ENTRIES);
                Some(Arc::new(MemoryStore::new(max)))
            }
            #[cfg(feature = "redis")]
            StoreKind::Redis => {
                let url = match &self.redis_url {
                    Some(url) => url.resolve("redis_url", false)?,
                    None => "redis://127.0.0.1:6379/".to_owned(),
                };
                let store = crate::replay::RedisStore::new(&url)
                    .map_err(|e| LoadError::new("redis_url", e))?;
                Some(Arc::new(store))
            }
            #[cfg(not(feature = "redis"))]
            StoreKind::Redis => {
                let _ = &self.redis_url;
                return Err(LoadError::new(
                    "replay_store",
                    "redis needs the crate's `redis` feature",
                ));
            }
        })
    }
}
