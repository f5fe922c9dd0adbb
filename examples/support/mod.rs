//! The demo programs' shared settings, read from the environment. These names and defaults
//! are a public interface (see the README): keep them stable.
#![allow(dead_code)]

use std::env;
use std::str::FromStr;

use std::time::Duration;

use ipnet::IpNet;

use tower_webhook::allowlist::{AllowlistLayer, IpAllowlist};
use tower_webhook::client_ip::ResolveClientIpLayer;
use tower_webhook::rate_limit::{Quota, RateLimitLayer};
use tower_webhook::scheme::Scheme;

/// The development secret used when `WEBHOOK_SECRET` is unset. It is valid for every scheme:
/// base64 after `whsec_` for Standard Webhooks, raw bytes for the others.
pub const DEV_SECRET: &str = "whsec_dG93ZXItd2ViaG9vay1kZXYtc2VjcmV0IQ==";

/// A setting that could not be read; the programs print it and exit with status 2.
pub type Error = String;

/// `WEBHOOK_SCHEME`: `standard` (default), `stripe`, `github`, `slack` or `shopify`.
pub fn scheme() -> Result<Scheme, Error> {
    match var("WEBHOOK_SCHEME").as_deref().unwrap_or("standard") {
        "standard" => Ok(Scheme::standard_webhooks()),
        "stripe" => Ok(Scheme::stripe()),
        "github" => Ok(Scheme::github()),
        "slack" => Ok(Scheme::slack()),
        "shopify" => Ok(Scheme::shopify()),
        other => Err(format!(
            "WEBHOOK_SCHEME={other:?}: expected standard, stripe, github, slack or shopify"
        )),
    }
}

/// `WEBHOOK_SECRET`: one secret, or several separated by commas (rotation). `None` when unset:
/// the caller falls back to [`DEV_SECRET`] and says so.
pub fn secrets() -> Option<Vec<String>> {
    var("WEBHOOK_SECRET").map(|s| s.split(',').map(|p| p.trim().to_owned()).collect())
}

/// A setting parsed as `T`, or `default` when unset.
pub fn parsed<T: FromStr>(name: &str, default: T) -> Result<T, Error> {
    match var(name) {
        None => Ok(default),
        Some(value) => value
            .parse()
            .map_err(|_| format!("{name}={value:?} is not valid")),
    }
}

/// A variable's value; unset and empty are the same.
pub fn var(name: &str) -> Option<String> {
    env::var(name).ok().filter(|v| !v.is_empty())
}

/// Lays the environment's `numbers` (whole numbers, parsed here so that a bad one names its
/// variable) and `texts` over `table`, by their lower-case names.
pub fn overlay(table: &mut toml::Table, numbers: &[&str], texts: &[&str]) -> Result<(), Error> {
    for name in numbers {
        if let Some(value) = var(name) {
            let n: i64 = value
                .parse()
                .map_err(|_| format!("{name}={value:?} is not valid"))?;
            table.insert(name.to_ascii_lowercase(), n.into());
        }
    }
    for name in texts {
        if let Some(value) = var(name) {
            table.insert(name.to_ascii_lowercase(), value.into());
        }
    }
    Ok(())
}

/// Takes the text setting `key` out of `table`.
pub fn take_text(table: &mut toml::Table, key: &str) -> Result<Option<String>, Error> {
    match table.remove(key) {
        None => Ok(None),
        Some(toml::Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(format!("{key}: expected a string")),
    }
}

/// Takes the whole-number setting `key` out of `table`, or `default` when absent.
pub fn take_number(table: &mut toml::Table, key: &str, default: u64) -> Result<u64, Error> {
    match table.remove(key) {
        None => Ok(default),
        Some(toml::Value::Integer(n)) if n >= 0 => Ok(n.unsigned_abs()),
        Some(_) => Err(format!("{key}: expected a whole number")),
    }
}

/// Takes the socket-address setting `key` out of `table`.
pub fn take_address(
    table: &mut toml::Table,
    key: &str,
) -> Result<Option<std::net::SocketAddr>, Error> {
    match take_text(table, key)? {
        None => Ok(None),
        Some(value) => {
            (value.parse().map(Some)).map_err(|_| format!("{key}={value:?} is not valid"))
        }
    }
}

/// Resolves on the first SIGTERM or SIGINT.
pub async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut terminate = signal(SignalKind::terminate()).expect("a SIGTERM handler");
    tokio::select! {
        _ = terminate.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}

/// Prints a settings error and exits with status 2.
pub fn exit_with(error: impl std::fmt::Display) -> ! {
    eprintln!("error: {error}");
    std::process::exit(2);
}

/// The layers that act before any body is read, from `TRUSTED_PROXIES` (comma-separated CIDRs
/// whose `X-Forwarded-For` is believed), `ALLOW_CIDRS` (comma-separated; empty or unset: no
/// allowlist) and `RATE_PER_SEC` / `RATE_BURST` (unset: no rate limit; the burst defaults to
/// the rate). Stack them outermost first: `resolve`, `allow`, `rate`.
pub struct Network {
    pub resolve: ResolveClientIpLayer,
    pub allow: Option<AllowlistLayer>,
    pub rate: Option<RateLimitLayer>,
    /// The settings themselves, for `WebhookLayer::builder`.
    pub trusted: Vec<IpNet>,
    pub allow_cidrs: Vec<IpNet>,
    pub quota: Option<Quota>,
}

pub fn network() -> Result<Network, Error> {
    let cidrs = |name: &str| {
        tower_webhook::parse_cidrs(&var(name).unwrap_or_default())
            .map_err(|e| format!("{name}: {e}"))
    };
    let trusted = cidrs("TRUSTED_PROXIES")?;
    let allow = cidrs("ALLOW_CIDRS")?;
    let quota = match var("RATE_PER_SEC") {
        None => None,
        Some(_) => {
            let per_sec: u32 = parsed("RATE_PER_SEC", 0)?;
            let burst: u32 = parsed("RATE_BURST", per_sec)?;
            let quota = Quota::new(per_sec, Duration::from_secs(1))
                .and_then(|q| q.burst(burst))
                .map_err(|e| format!("RATE_PER_SEC/RATE_BURST: {e}"))?;
            Some(quota)
        }
    };
    Ok(Network {
        resolve: ResolveClientIpLayer::new().trusted_proxies(trusted.clone()),
        allow: (!allow.is_empty()).then(|| AllowlistLayer::new(IpAllowlist::new(allow.clone()))),
        rate: quota.map(RateLimitLayer::new),
        trusted,
        allow_cidrs: allow,
        quota,
    })
}
