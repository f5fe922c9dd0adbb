//! The demo's inbox and workers, shared by the receiver and the worker program: their settings
//! and the demo handler. These names, defaults and output lines are a public interface (see
//! the README): keep them stable.
// Each program uses a part (the receiver does not print the namespace).
#![allow(dead_code)]

use std::sync::Arc;
use std::time::Duration;

use tower::service_fn;
use tower_webhook::inbox::{Event, Inbox, Worker, WorkerHandle};

use crate::support::{take_number, take_text, Error};

/// The inbox's settings that are numbers, by their environment names (the file's are lower
/// case).
pub const NUMBERS: [&str; 7] = [
    "WORKERS",
    "MAX_ATTEMPTS",
    "RETRY_BASE_MS",
    "RETRY_MAX_MS",
    "CLAIM_IDLE_SECS",
    "BREAKER_FAILURES",
    "BREAKER_COOLDOWN_SECS",
];
/// The inbox's settings that are text.
pub const TEXTS: [&str; 3] = ["INBOX", "INBOX_NAMESPACE", "FAIL_ALWAYS_PREFIX"];

/// What the demo handler does, wherever it runs.
#[derive(Clone, Default)]
pub struct Demo {
    /// `HANDLER_DELAY_MS`.
    pub delay: Duration,
    /// `FAIL_ONCE_PREFIX`: with an inbox, the first attempt of these ids fails.
    pub fail_once: Option<Arc<str>>,
    /// `FAIL_ALWAYS_PREFIX`: these ids fail every attempt.
    pub fail_always: Option<Arc<str>>,
}

impl Demo {
    /// Takes its settings out of `table`: `handler_delay_ms`, `fail_once_prefix` and
    /// `fail_always_prefix`.
    pub fn take(table: &mut toml::Table) -> Result<Self, Error> {
        Ok(Self {
            delay: Duration::from_millis(take_number(table, "handler_delay_ms", 0)?),
            fail_once: take_text(table, "fail_once_prefix")?.map(Into::into),
            fail_always: take_text(table, "fail_always_prefix")?.map(Into::into),
        })
    }

    /// Whether the attempt `attempt` (from 1) of the event `id` fails.
    pub fn fails(&self, id: Option<&str>, attempt: u32) -> bool {
        let starts = |prefix: &Option<Arc<str>>| match (prefix, id) {
            (Some(prefix), Some(id)) => id.starts_with(&**prefix),
            _ => false,
        };
        starts(&self.fail_always) || (attempt == 1 && starts(&self.fail_once))
    }
}

/// The inbox settings: where (`INBOX`, `off` by default), and the workers'.
pub struct Settings {
    pub inbox: Option<Inbox>,
    /// `INBOX_NAMESPACE`.
    pub namespace: String,
    pub workers: usize,
    max_attempts: u32,
    retry_base: Duration,
    retry_max: Duration,
    claim_idle: Duration,
    breaker_failures: u32,
    breaker_cooldown: Duration,
}

impl Settings {
    /// Takes the inbox's keys out of `table` (lower case), reading `redis_url` without taking
    /// it (the replay store may use it too).
    pub fn take(table: &mut toml::Table) -> Result<Self, Error> {
        let kind = take_text(table, "inbox")?;
        let namespace = take_text(table, "inbox_namespace")?.unwrap_or_else(|| "webhooks".into());
        let redis_url = match table.get("redis_url") {
            Some(toml::Value::String(url)) => url.clone(),
            _ => "redis://127.0.0.1:6379/".into(),
        };
        let inbox = match kind.as_deref().unwrap_or("off") {
            "off" => None,
            "memory" => Some(Inbox::memory()),
            "redis" => Some(Inbox::redis(&redis_url, &namespace).map_err(|e| e.to_string())?),
            other => return Err(format!("INBOX={other:?}: expected off, memory or redis")),
        };
        let mut number = |key: &str, default: u64| take_number(table, key, default);
        let small = |n: u64| u32::try_from(n).unwrap_or(u32::MAX);
        let workers = usize::try_from(number("workers", 4)?).unwrap_or(usize::MAX);
        if workers == 0 && inbox.as_ref().is_some_and(|i| i.name() == "memory") {
            return Err(
                "INBOX=memory needs WORKERS above 0: only this process sees its events".into(),
            );
        }
        Ok(Self {
            inbox,
            namespace,
            workers,
            max_attempts: small(number("max_attempts", 5)?),
            retry_base: Duration::from_millis(number("retry_base_ms", 1000)?),
            retry_max: Duration::from_millis(number("retry_max_ms", 60_000)?),
            claim_idle: Duration::from_secs(number("claim_idle_secs", 30)?),
            breaker_failures: small(number("breaker_failures", 5)?),
            breaker_cooldown: Duration::from_secs(number("breaker_cooldown_secs", 30)?),
        })
    }

    /// Starts `self.workers` workers (concurrent handlers) on `inbox` running the demo handler:
    /// it waits, fails as told, and prints the accepted line; an event out of attempts prints
    /// `dead id=<id> attempts=<n>`.
    pub fn spawn(&self, inbox: &Inbox, demo: Demo) -> WorkerHandle {
        let handler = service_fn(move |event: Event| {
            let demo = demo.clone();
            async move {
                if !demo.delay.is_zero() {
                    tokio::time::sleep(demo.delay).await;
                }
                if demo.fails(event.id(), event.attempt()) {
                    eprintln!(
                        "simulated failure for id={} attempt={}",
                        event.id().unwrap_or("-"),
                        event.attempt()
                    );
                    return Err("simulated failure");
                }
                println!(
                    "accepted id={} bytes={} type={} path={}",
                    event.id().unwrap_or("-"),
                    event.body().len(),
                    event.event_type().unwrap_or("-"),
                    event.endpoint()
                );
                Ok(())
            }
        });
        Worker::new(inbox.clone(), handler)
            .concurrency(self.workers)
            .max_attempts(self.max_attempts)
            .backoff(self.retry_base, self.retry_max)
            .claim_idle(self.claim_idle)
            .breaker(self.breaker_failures, self.breaker_cooldown)
            .on_dead(|event| {
                println!(
                    "dead id={} attempts={}",
                    event.id().unwrap_or("-"),
                    event.attempts()
                );
            })
            .spawn()
    }
}
