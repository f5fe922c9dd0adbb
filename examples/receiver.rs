//! The demo receiver: an axum server that accepts signed webhooks, built on the one-call stack.
//!
//! ```sh
//! cargo run --example receiver
//! ```
//!
//! Settings come from the environment, and optionally from a TOML file named by
//! `WEBHOOK_CONFIG` that serves several endpoints (see the README for both):
//!
//! | variable | default | meaning |
//! |---|---|---|
//! | `WEBHOOK_CONFIG` | unset | a TOML file: shared settings and `[[endpoints]]`; unset: one endpoint, `/webhook` |
//! | `BIND_ADDR` | `127.0.0.1:3000` | address to listen on (port 0 picks a free port) |
//! | `WEBHOOK_SCHEME` | `standard` | `standard`, `stripe`, `github`, `slack` or `shopify` (without a file) |
//! | `WEBHOOK_SECRET_FILE` | unset | a file of secrets (or `whpk_` keys), one per line, `#` comments, instead of `WEBHOOK_SECRET`; reloaded on SIGHUP and when it changes |
//! | `SECRET_RELOAD_SECS` | `5` | how often `WEBHOOK_SECRET_FILE` is checked for changes |
//! | `WEBHOOK_SECRET` | a development secret, printed at start | one secret, or several separated by commas (without a file); for `standard`, `whpk_` Ed25519 public keys too |
//! | `MAX_BODY_BYTES` | `1048576` | largest body accepted (413 above) |
//! | `TOLERANCE_SECS` | `300` | how far the signed timestamp may be from now |
//! | `REPLAY_STORE` | `memory` | `memory`, `redis` or `off`: where handled event ids are kept |
//! | `REDIS_URL` | `redis://127.0.0.1:6379/` | the Redis of `REPLAY_STORE=redis` |
//! | `REPLAY_TTL_SECS` | a day, or twice `TOLERANCE_SECS` if longer | how long a handled event id is remembered |
//! | `REPLAY_MAX_ENTRIES` | `100000` | most event ids the memory store holds (503 when full of live ones) |
//! | `ALLOW_CIDRS` | unset | comma-separated CIDRs allowed to deliver (403 otherwise); unset or empty: everyone |
//! | `TRUSTED_PROXIES` | unset | comma-separated CIDRs of proxies whose `X-Forwarded-For` is believed |
//! | `RATE_PER_SEC` | unset | requests per second per client IP (429 above); unset: no limit |
//! | `RATE_BURST` | `RATE_PER_SEC` | requests per client IP at once |
//! | `FAIL_ONCE_PREFIX` | unset | events whose id starts with this fail (500) on their first delivery, to show retries; with an inbox, their first attempt fails, whichever worker makes it |
//! | `FAIL_ALWAYS_PREFIX` | unset | events whose id starts with this fail every time (every attempt, with an inbox) |
//! | `WEBHOOK_EVENTS` | unset: every event | comma-separated event-type patterns (`invoice.paid`, `invoice.*`, `*`); other types answer 200 `{"status":"ignored"}` |
//! | `METRICS_ADDR` | unset: off | serves `GET /metrics` (Prometheus text) and `GET /healthz` on this address |
//! | `HANDLER_DELAY_MS` | `0` | the demo handler waits this long before it prints and answers (with an inbox: the workers' handler, to show crash recovery) |
//! | `SHUTDOWN_GRACE_SECS` | `10` | on SIGTERM or SIGINT, how long deliveries in progress may take to finish |
//! | `FORWARDED_HEADER` | `x-forwarded-for` | which header the trusted proxies write: `x-forwarded-for` (with `X-Forwarded-Proto`) or `forwarded` |
//! | `REQUIRE_HTTPS` | `0` | `1`: refuse (403) requests a trusted proxy does not say came over HTTPS |
//! | `PENALTY_FAILURES` | unset: off | box a client (429) after this many failed verifications within `PENALTY_WINDOW_SECS` |
//! | `PENALTY_WINDOW_SECS` | `60` | the penalty box's window, and how long a box lasts |
//! | `ALLOW_CONTENT_TYPES` | unset: any | comma-separated media types accepted; others get 415 |
//! | `ALLOW_PROVIDER` | unset | `github`, `stripe` (comma-separated): their published webhook ranges are allowed too, with `ALLOW_CIDRS` |
//! | `PROVIDER_URL_GITHUB`, `PROVIDER_URL_STRIPE` | the providers' own | where each list is fetched from instead (may be `http://`) |
//! | `PROVIDER_REFRESH_SECS` | `3600` | how often the lists are fetched again |
//! | `MAX_BUFFERED_BYTES` | `67108864` | memory budget for all bodies being read at once; over it, 503 |
//! | `INBOX` | `off` | `memory` or `redis` (on `REDIS_URL`): answer 202 `{"status":"queued"}` once the event is stored, and handle it in workers |
//! | `INBOX_NAMESPACE` | `webhooks` | the Redis inbox's key prefix; receivers and workers of one inbox share it |
//! | `WORKERS` | `4` | how many events the in-process workers handle at once; `0` (Redis only): ingest only (run `cargo run --example worker`) |
//! | `MAX_ATTEMPTS` | `5` | attempts per event, the first included; then it is a dead letter |
//! | `RETRY_BASE_MS`, `RETRY_MAX_MS` | `1000`, `60000` | the backoff before the first retry, doubling up to the maximum (less a random part of up to half) |
//! | `CLAIM_IDLE_SECS` | `30` | an event held this long by a worker that stopped is taken over by another |
//! | `BREAKER_FAILURES`, `BREAKER_COOLDOWN_SECS` | `5`, `30` | after this many consecutive failures the workers take no events for the cool-down, then try one (`0`: never) |
//!
//! Standard output carries `listening on <addr>` once bound (followed by ` metrics=<addr>` when
//! `METRICS_ADDR` is set), then exactly one line per accepted
//! event: `accepted id=<event id or -> bytes=<body length> type=<event type or -> path=<endpoint
//! path>`. With an inbox that line is printed by the worker when the handler succeeds, and an
//! event out of attempts prints `dead id=<event id or -> attempts=<n>`. Rejected
//! requests and duplicates never reach the handler and print nothing there; each is a
//! `tracing` event on standard error.

#[path = "support/inbox.rs"]
mod inbox;
#[path = "support/operations.rs"]
mod operations;
#[path = "support/secret_file.rs"]
mod secret_file;
#[path = "support/mod.rs"]
mod support;

use std::collections::HashSet;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::routing::post_service;
use axum::Router;
use futures_util::future::BoxFuture;
use http::{header, Request, Response, StatusCode};
use tower::{service_fn, Layer};
use tower_webhook::inbox::Inbox;
use tower_webhook::stack::config::{self, Config};
use tower_webhook::{BufferedBody, Verified, WebhookLayer};

/// The failure demonstrations without an inbox: `FAIL_ALWAYS_PREFIX`, and `FAIL_ONCE_PREFIX`
/// by the ids seen failing once by this process.
#[derive(Clone, Default)]
struct Failures {
    demo: inbox::Demo,
    failed: Arc<Mutex<HashSet<String>>>,
}

impl Failures {
    fn fail(&self, id: Option<&str>) -> bool {
        // Failing on a first attempt: always, or the first time this process sees the id.
        if !self.demo.fails(id, 1) {
            return false;
        }
        self.demo.fails(id, 2)
            || self
                .failed
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .insert(id.unwrap_or_default().to_owned())
    }
}

/// The demo handler of the endpoint at `path`: waits `HANDLER_DELAY_MS`, then prints the
/// accepted line and answers 200.
fn handler(
    path: Arc<str>,
    failures: Failures,
) -> impl tower::Service<
    Request<BufferedBody>,
    Response = Response<String>,
    Error = Infallible,
    Future: Send,
> + Clone
       + Send {
    let delay = failures.demo.delay;
    service_fn(move |req: Request<BufferedBody>| {
        let (path, failures) = (path.clone(), failures.clone());
        async move {
            // A timer, even of zero, waits for the timer's next millisecond tick.
            if !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }
            Ok::<_, Infallible>(handle(&req, &path, &failures))
        }
    })
}

/// What the demo handler answers to `req`, printing the accepted line when it accepts.
fn handle(req: &Request<BufferedBody>, path: &str, failures: &Failures) -> Response<String> {
    let verified = req.extensions().get::<Verified>();
    let id = verified.and_then(Verified::id);
    let (status, body) = if failures.fail(id) {
        eprintln!("simulated failure for id={}", id.unwrap_or("-"));
        (
            StatusCode::INTERNAL_SERVER_ERROR,
            "{\"error\":\"simulated_failure\"}",
        )
    } else {
        let event_type = verified.and_then(Verified::event_type).unwrap_or("-");
        let (id, bytes) = (id.unwrap_or("-"), req.body().bytes().len());
        println!("accepted id={id} bytes={bytes} type={event_type} path={path}");
        (StatusCode::OK, "{\"status\":\"accepted\"}")
    };
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "application/json")
        .body(body.to_owned())
        .expect("a valid response")
}

/// The environment settings laid over the file's, by the file's names (lower case). Numbers
/// are parsed here, so a bad one names its variable.
const NUMBERS: [&str; 13] = [
    "RATE_PER_SEC",
    "RATE_BURST",
    "REPLAY_TTL_SECS",
    "REPLAY_MAX_ENTRIES",
    "MAX_BODY_BYTES",
    "TOLERANCE_SECS",
    "HANDLER_DELAY_MS",
    "SHUTDOWN_GRACE_SECS",
    "PENALTY_FAILURES",
    "PENALTY_WINDOW_SECS",
    "MAX_BUFFERED_BYTES",
    "SECRET_RELOAD_SECS",
    "PROVIDER_REFRESH_SECS",
];
const FLAGS: [&str; 1] = ["REQUIRE_HTTPS"];
const TEXTS: [&str; 12] = [
    "BIND_ADDR",
    "TRUSTED_PROXIES",
    "ALLOW_CIDRS",
    "REPLAY_STORE",
    "REDIS_URL",
    "FAIL_ONCE_PREFIX",
    "METRICS_ADDR",
    "ALLOW_CONTENT_TYPES",
    "FORWARDED_HEADER",
    "ALLOW_PROVIDER",
    "PROVIDER_URL_GITHUB",
    "PROVIDER_URL_STRIPE",
];

/// The file of `WEBHOOK_SECRET_FILE`, and what it held when loaded.
type SecretFile = Option<(PathBuf, String)>;

/// The settings as one table: the file of `WEBHOOK_CONFIG`, or one endpoint on `/webhook`
/// from `WEBHOOK_SCHEME` and `WEBHOOK_SECRET` (or `WEBHOOK_SECRET_FILE`); then every
/// environment setting over it.
fn settings() -> Result<(toml::Table, SecretFile), support::Error> {
    let secret_file = support::var("WEBHOOK_SECRET_FILE").map(PathBuf::from);
    let mut loaded = None;
    let mut table = match support::var("WEBHOOK_CONFIG") {
        Some(_) if secret_file.is_some() => {
            return Err(
                "WEBHOOK_SECRET_FILE serves the one endpoint without WEBHOOK_CONFIG: \
                 give the file's endpoints their secrets (file:PATH)"
                    .into(),
            )
        }
        Some(path) => {
            let text = std::fs::read_to_string(&path)
                .map_err(|e| format!("WEBHOOK_CONFIG: cannot read {path}: {}", e.kind()))?;
            config::parse_toml(&text).map_err(|e| format!("WEBHOOK_CONFIG: {e}"))?
        }
        None => {
            let scheme = support::var("WEBHOOK_SCHEME").unwrap_or_else(|| "standard".into());
            let secrets = match (&secret_file, support::secrets()) {
                (Some(_), Some(_)) => {
                    return Err("set WEBHOOK_SECRET or WEBHOOK_SECRET_FILE, not both".into())
                }
                (Some(path), None) => {
                    let text = secret_file::load(path, &support::scheme()?)
                        .map_err(|e| format!("WEBHOOK_SECRET_FILE: {e}"))?;
                    let secrets = secret_file::parse(&text).into_iter().map(|(_, s)| s);
                    let secrets = secrets.collect();
                    loaded = Some((path.clone(), text));
                    secrets
                }
                (None, Some(secrets)) => secrets,
                (None, None) => {
                    eprintln!(
                        "WEBHOOK_SECRET unset: using the development secret {}",
                        support::DEV_SECRET
                    );
                    vec![support::DEV_SECRET.to_owned()]
                }
            };
            let mut endpoint = toml::Table::new();
            endpoint.insert("path".into(), "/webhook".into());
            endpoint.insert("scheme".into(), scheme.into());
            endpoint.insert("secrets".into(), secrets.into());
            let mut table = toml::Table::new();
            table.insert("endpoints".into(), vec![endpoint].into());
            table
        }
    };
    // Event types: every endpoint's, when given in the environment.
    if let Some(events) = support::var("WEBHOOK_EVENTS") {
        let events: Vec<String> = events.split(',').map(|e| e.trim().to_owned()).collect();
        if let Some(toml::Value::Array(endpoints)) = table.get_mut("endpoints") {
            for endpoint in endpoints.iter_mut().filter_map(toml::Value::as_table_mut) {
                endpoint.insert("events".into(), events.clone().into());
            }
        }
    }
    support::overlay(&mut table, &NUMBERS, &TEXTS)?;
    support::overlay(&mut table, &inbox::NUMBERS, &inbox::TEXTS)?;
    for name in FLAGS {
        if let Some(value) = support::var(name) {
            let on = match value.as_str() {
                "1" | "true" => true,
                "0" | "false" => false,
                _ => return Err(format!("{name}={value:?} is not valid: 1 or 0")),
            };
            table.insert(name.to_ascii_lowercase(), on.into());
        }
    }
    Ok((table, loaded))
}

/// The receiver's own settings, beside its endpoints'.
struct Receiver {
    bind: SocketAddr,
    metrics: Option<SocketAddr>,
    failures: Failures,
    grace: Duration,
    reload: Duration,
    inbox: inbox::Settings,
}

impl Receiver {
    /// Takes the receiver's own keys out of `settings`, leaving the stacks' config.
    fn take(settings: &mut toml::Table) -> Result<Self, support::Error> {
        let bind = support::take_address(settings, "bind_addr")?;
        let number = support::take_number;
        Ok(Self {
            bind: bind.unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 3000))),
            metrics: support::take_address(settings, "metrics_addr")?,
            failures: Failures {
                demo: inbox::Demo::take(settings)?,
                ..Failures::default()
            },
            grace: Duration::from_secs(number(settings, "shutdown_grace_secs", 10)?),
            reload: Duration::from_secs(number(settings, "secret_reload_secs", 5)?.max(1)),
            inbox: inbox::Settings::take(settings)?,
        })
    }
}

/// The receiver: one route per endpoint, each behind its own stack; 404 elsewhere. Also the
/// stacks, for the health check.
fn app(
    settings: toml::Table,
    receiver: &Receiver,
) -> Result<(Router, Vec<WebhookLayer>), support::Error> {
    let config = Config::from_table(settings).map_err(|e| e.to_string())?;
    let endpoints: Vec<(String, WebhookLayer)> = config.build().map_err(|e| e.to_string())?;
    let mut router = Router::new();
    let mut layers = Vec::new();
    for (path, layer) in endpoints {
        router = match &receiver.inbox.inbox {
            Some(inbox) => {
                router.route_service(&path, post_service(layer.layer(inbox.ingest(&path))))
            }
            None => {
                let handler = handler(path.as_str().into(), receiver.failures.clone());
                router.route_service(&path, post_service(layer.layer(handler)))
            }
        };
        layers.push(layer);
    }
    Ok((router, layers))
}

/// The health check of `/healthz`: every endpoint's replay store and the inbox answer.
fn health(
    layers: Vec<WebhookLayer>,
    inbox: Option<Inbox>,
) -> impl Fn() -> BoxFuture<'static, Result<(), String>> + Clone + Send + Sync {
    move || {
        let checks: Vec<_> = layers.iter().map(WebhookLayer::health).collect();
        let inbox = inbox.clone();
        Box::pin(async move {
            for check in checks {
                check.await.map_err(|e| e.to_string())?;
            }
            match inbox {
                Some(inbox) => inbox.ping().await.map_err(|e| e.to_string()),
                None => Ok(()),
            }
        })
    }
}

#[tokio::main]
async fn main() {
    tracing_subscriber_init();
    let (mut settings, secret_file) = settings().unwrap_or_else(|e| support::exit_with(e));
    let receiver = Receiver::take(&mut settings).unwrap_or_else(|e| support::exit_with(e));
    let prometheus = receiver
        .metrics
        .map(|_| operations::install_prometheus().unwrap_or_else(|e| support::exit_with(e)));
    let (app, layers) = app(settings, &receiver).unwrap_or_else(|e| support::exit_with(e));
    if let (Some((path, loaded)), Some(layer)) = (secret_file, layers.first()) {
        let live = layer.verifier().clone();
        secret_file::watch(path, receiver.reload, live, loaded);
    }
    let listener = tokio::net::TcpListener::bind(receiver.bind)
        .await
        .unwrap_or_else(|e| support::exit_with(format!("cannot listen on {}: {e}", receiver.bind)));
    let bound = listener.local_addr().expect("bound socket has an address");
    let metrics_field = match (receiver.metrics, prometheus) {
        (Some(addr), Some(prometheus)) => {
            let check = health(layers, receiver.inbox.inbox.clone());
            format!(
                " metrics={}",
                operations::serve(addr, prometheus, check).await
            )
        }
        _ => String::new(),
    };
    // With an inbox, the workers of this process (unless `WORKERS=0`).
    let workers = match &receiver.inbox.inbox {
        Some(inbox) if receiver.inbox.workers > 0 => {
            Some(receiver.inbox.spawn(inbox, receiver.failures.demo.clone()))
        }
        _ => None,
    };
    println!("listening on {bound}{metrics_field}");

    // On SIGTERM or SIGINT: stop accepting, let the deliveries in progress finish within
    // the grace period, then exit.
    let (signalled, on_signal) = tokio::sync::oneshot::channel();
    let server = axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(async move {
        support::shutdown_signal().await;
        eprintln!("shutting down: finishing deliveries in progress");
        let _ = signalled.send(());
    });
    let mut server = std::pin::pin!(std::future::IntoFuture::into_future(server));
    let deadline = tokio::select! {
        // Nothing was in progress when the signal came (or the server failed).
        served = &mut server => {
            served.unwrap_or_else(|e| support::exit_with(e));
            tokio::time::Instant::now() + receiver.grace
        }
        Ok(()) = on_signal => {
            let deadline = tokio::time::Instant::now() + receiver.grace;
            match tokio::time::timeout_at(deadline, server).await {
                Ok(served) => served.unwrap_or_else(|e| support::exit_with(e)),
                Err(_) => {
                    eprintln!("shutdown grace period over with deliveries still in progress");
                    std::process::exit(1);
                }
            }
            deadline
        }
    };
    // The workers finish their events within what is left of the grace period, and hand
    // back the rest.
    if let Some(workers) = workers {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let handed_back = workers.shutdown(left).await;
        if handed_back > 0 {
            eprintln!("events in progress handed back to the inbox: {handed_back}");
        }
    }
}

/// Rejections are `tracing` events; show them on standard error.
fn tracing_subscriber_init() {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_target(false)
        .init();
}
