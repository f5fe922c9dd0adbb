//! The senders' published webhook ranges (feature `provider-ranges`).

use std::fmt;
use std::str::FromStr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use ipnet::IpNet;

use super::IpAllowlist;
use crate::ConfigError;

/// Largest list accepted: the published ones are a few kilobytes.
const MAX_LIST_BYTES: usize = 1024 * 1024;

/// A sender that publishes the addresses its webhooks come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Provider {
    /// GitHub: the `hooks` list of CIDRs in the JSON of its meta API.
    GitHub,
    /// Stripe: the `WEBHOOKS` list of addresses in `ips_webhooks.json`.
    Stripe,
}

impl Provider {
    /// Where the provider publishes its list.
    #[must_use]
    pub fn default_url(self) -> &'static str {
        match self {
            Self::GitHub => "https://api.github.com/meta",
            Self::Stripe => "https://stripe.com/files/ips/ips_webhooks.json",
        }
    }

    /// The name used in settings: `github`, `stripe`.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::GitHub => "github",
            Self::Stripe => "stripe",
        }
    }

    /// The ranges in a list as the provider publishes it: a JSON object whose field (`hooks`,
    /// `WEBHOOKS`) is a non-empty array of CIDRs or addresses.
    fn ranges(self, json: &[u8]) -> Result<Vec<IpNet>, &'static str> {
        let field = match self {
            Self::GitHub => "hooks",
            Self::Stripe => "WEBHOOKS",
        };
        let value: serde_json::Value =
            serde_json::from_slice(json).map_err(|_| "the list is not JSON")?;
        let items = value
            .get(field)
            .and_then(serde_json::Value::as_array)
            .filter(|items| !items.is_empty())
            .ok_or("the list has no ranges where the provider puts them")?;
        let mut ranges = Vec::with_capacity(items.len());
        for item in items {
            let text = item.as_str().ok_or("a range is not a string")?;
            let parsed = crate::parse_cidrs(text).map_err(|_| "a range is not a CIDR")?;
            if parsed.len() != 1 {
                return Err("a range is not one CIDR");
            }
            ranges.extend(parsed);
        }
        Ok(ranges)
    }
}

impl FromStr for Provider {
    type Err = ConfigError;

    fn from_str(s: &str) -> Result<Self, ConfigError> {
        match s.trim().to_ascii_lowercase().as_str() {
            "github" => Ok(Self::GitHub),
            "stripe" => Ok(Self::Stripe),
            _ => Err(ConfigError::InvalidStack {
                reason: "a provider is github or stripe",
            }),
        }
    }
}

/// Keeps an [`IpAllowlist`] filled with the ranges providers publish, and fixed ones beside
/// them (the union).
///
/// It fetches each list over HTTPS (an overridden URL may be plain `http://`, for a local
/// mirror), refreshes them on an interval, and swaps the union in at once. A fetch that fails
/// or returns something that is not the provider's list keeps that provider's last good list.
/// Until a provider's first list arrives, its senders are refused (403): the allowlist fails
/// closed.
///
/// ```no_run
/// use tower_webhook::allowlist::{Provider, ProviderRanges};
/// use tower_webhook::scheme::Scheme;
/// use tower_webhook::{Verifier, WebhookLayer};
///
/// # async fn run() -> Result<(), tower_webhook::ConfigError> {
/// let ranges = ProviderRanges::builder().provider(Provider::GitHub).build()?;
/// let verifier = Verifier::builder(Scheme::github()).secret("s").build()?;
/// let layer = WebhookLayer::builder(verifier).allow(ranges.allowlist()).build()?;
/// ranges.spawn(); // fetches now, then every hour
/// # let _ = layer;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct ProviderRanges {
    inner: Arc<Inner>,
}

struct Inner {
    list: IpAllowlist,
    fixed: Vec<IpNet>,
    sources: Vec<(Provider, String)>,
    refresh: Duration,
    client: reqwest::Client,
    /// Each source's last good list.
    last: Mutex<Vec<Option<Vec<IpNet>>>>,
}

/// Configures [`ProviderRanges`]; [`ProviderRanges::builder`] starts it.
#[derive(Debug, Default)]
#[must_use]
pub struct ProviderRangesBuilder {
    sources: Vec<(Provider, String)>,
    fixed: Vec<IpNet>,
    refresh: Option<Duration>,
}

impl ProviderRangesBuilder {
    /// Fetches `provider`'s list from where it publishes it.
    pub fn provider(self, provider: Provider) -> Self {
        self.provider_at(provider, provider.default_url())
    }

    /// Fetches `provider`'s list from `url` instead (a mirror; may be plain `http://`).
    pub fn provider_at(mut self, provider: Provider, url: impl Into<String>) -> Self {
        self.sources.push((provider, url.into()));
        self
    }

    /// Allows these ranges too, whatever the providers publish.
    pub fn fixed(mut self, ranges: impl IntoIterator<Item = IpNet>) -> Self {
        self.fixed.extend(ranges);
        self
    }

    /// How often the lists are fetched again (default an hour).
    pub fn refresh(mut self, every: Duration) -> Self {
        self.refresh = Some(every);
        self
    }

    /// Builds it; nothing is fetched until [`spawn`](ProviderRanges::spawn) or
    /// [`refresh_now`](ProviderRanges::refresh_now).
    ///
    /// # Errors
    ///
    /// [`ConfigError::InvalidStack`] without a provider, with a URL that is not `http://` or
    /// `https://`, or a refresh interval under a second.
    pub fn build(self) -> Result<ProviderRanges, ConfigError> {
        let invalid = |reason| ConfigError::InvalidStack { reason };
        if self.sources.is_empty() {
            return Err(invalid("provider ranges need a provider"));
        }
        if self
            .sources
            .iter()
            .any(|(_, url)| !(url.starts_with("https://") || url.starts_with("http://")))
        {
            return Err(invalid("a provider list's URL is http:// or https://"));
        }
        let refresh = self.refresh.unwrap_or(Duration::from_secs(3600));
        if refresh < Duration::from_secs(1) {
            return Err(invalid("provider lists are refreshed at most every second"));
        }
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .user_agent("tower-webhook")
            .build()
            .map_err(|_| invalid("no HTTP client could be made"))?;
        Ok(ProviderRanges {
            inner: Arc::new(Inner {
                list: IpAllowlist::filled_later(self.fixed.clone()),
                last: Mutex::new(vec![None; self.sources.len()]),
                fixed: self.fixed,
                sources: self.sources,
                refresh,
                client,
            }),
        })
    }
}

impl ProviderRanges {
    /// Starts configuring.
    pub fn builder() -> ProviderRangesBuilder {
        ProviderRangesBuilder::default()
    }

    /// The allowlist it keeps filled: give it to the stack's
    /// [`allow`](crate::WebhookBuilder::allow) or an [`AllowlistLayer`](super::AllowlistLayer).
    #[must_use]
    pub fn allowlist(&self) -> IpAllowlist {
        self.inner.list.clone()
    }

    /// Fetches every list now and swaps the union in. Says how many providers' lists came;
    /// the others keep their last good list, and each failure is logged.
    pub async fn refresh_now(&self) -> usize {
        let inner = &*self.inner;
        let mut fetched = 0;
        for (i, (provider, url)) in inner.sources.iter().enumerate() {
            match fetch(&inner.client, *provider, url).await {
                Ok(ranges) => {
                    #[cfg(feature = "tracing")]
                    tracing::info!(
                        target: "tower_webhook",
                        provider = provider.as_str(),
                        ranges = ranges.len(),
                        "webhook provider ranges fetched"
                    );
                    lock(&inner.last)[i] = Some(ranges);
                    fetched += 1;
                }
                Err(error) => {
                    #[cfg(feature = "tracing")]
                    tracing::warn!(
                        target: "tower_webhook",
                        provider = provider.as_str(),
                        %error,
                        "webhook provider ranges not fetched; the last good list stays"
                    );
                    #[cfg(not(feature = "tracing"))]
                    let _ = error;
                }
            }
        }
        let last = lock(&inner.last);
        let union = inner.fixed.iter().copied();
        let union = union.chain(last.iter().flatten().flatten().copied());
        inner.list.replace(union.collect::<Vec<_>>());
        fetched
    }

    /// Fetches the lists now, then again at every refresh interval, on the current Tokio
    /// runtime, for as long as it runs.
    ///
    /// # Panics
    ///
    /// Outside a Tokio runtime.
    pub fn spawn(&self) -> tokio::task::JoinHandle<()> {
        let ranges = self.clone();
        tokio::spawn(async move {
            loop {
                ranges.refresh_now().await;
                tokio::time::sleep(ranges.inner.refresh).await;
            }
        })
    }
}

impl fmt::Debug for ProviderRanges {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProviderRanges")
            .field("sources", &self.inner.sources)
            .field("fixed", &self.inner.fixed.len())
            .field("refresh", &self.inner.refresh)
            .field("list", &self.inner.list)
            .finish()
    }
}

/// Why a list was not taken.
#[derive(Debug)]
enum FetchError {
    Http(reqwest::Error),
    Status(u16),
    TooLarge,
    Garbage(&'static str),
}

impl fmt::Display for FetchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Http(e) => write!(f, "request failed: {e}"),
            Self::Status(s) => write!(f, "answered {s}"),
            Self::TooLarge => write!(f, "the list is over {MAX_LIST_BYTES} bytes"),
            Self::Garbage(reason) => f.write_str(reason),
        }
    }
}

async fn fetch(
    client: &reqwest::Client,
    provider: Provider,
    url: &str,
) -> Result<Vec<IpNet>, FetchError> {
    let mut response = client.get(url).send().await.map_err(FetchError::Http)?;
    if !response.status().is_success() {
        return Err(FetchError::Status(response.status().as_u16()));
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(FetchError::Http)? {
        if body.len() + chunk.len() > MAX_LIST_BYTES {
            return Err(FetchError::TooLarge);
        }
        body.extend_from_slice(&chunk);
    }
    provider.ranges(&body).map_err(FetchError::Garbage)
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_shapes_parse_and_garbage_does_not() {
        let github = br#"{"verifiable_password_authentication":false,"hooks":["192.30.252.0/22","2a0a:a440::/29"],"web":["1.2.3.4/32"]}"#;
        assert_eq!(Provider::GitHub.ranges(github).unwrap().len(), 2);
        let stripe = br#"{"WEBHOOKS":["3.18.12.63","2600:1f16::1"]}"#;
        let ranges = Provider::Stripe.ranges(stripe).unwrap();
        assert_eq!(ranges[0].to_string(), "3.18.12.63/32");
        for bad in [
            &b"not json"[..],
            br#"{"hooks":[]}"#,
            br#"{"hooks":"192.30.252.0/22"}"#,
            br#"{"hooks":["nope"]}"#,
            br#"{"hooks":[1]}"#,
            br#"{"hooks":["1.2.3.0/24, 5.6.7.0/24"]}"#,
            br#"{"WEBHOOKS":["3.18.12.63"]}"#,
        ] {
            assert!(
                Provider::GitHub.ranges(bad).is_err(),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
        assert_eq!("GitHub".parse::<Provider>().unwrap(), Provider::GitHub);
        assert!("gitlab".parse::<Provider>().is_err());
    }
}
