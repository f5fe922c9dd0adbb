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
//! | `WEBHOOK_SECRET` | a development secret, printed at start | one secret, or several separated by commas (without a file) |
//! | `MAX_BODY_BYTES` | `1048576` | largest body accepted (413 above) |
//! | `TOLERANCE_SECS` | `300` | how far the signed timestamp may be from now |
//! | `REPLAY_STORE` | `memory` | `memory`, `redis` or `off`: where handled event ids are kept |
//! | `REDIS_URL` | `redis://127.0.0.1:6379/` | the Redis of `REPLAY_STORE=redis` |
//! | `REPLAY_TTL_SECS` | `86400` | how long a handled event id is remembered |
//! | `REPLAY_MAX_ENTRIES` | `100000` | most event ids the memory store holds (503 when full of live ones) |
//! | `ALLOW_CIDRS` | unset | comma-separated CIDRs allowed to deliver (403 otherwise); unset or empty: everyone |
//! | `TRUSTED_PROXIES` | unset | comma-separated CIDRs of proxies whose `X-Forwarded-For` is believed |
//! | `RATE_PER_SEC` | unset | requests per second per client IP (429 above); unset: no limit |
//! | `RATE_BURST` | `RATE_PER_SEC` | requests per client IP at once |
//! | `FAIL_ONCE_PREFIX` | unset | events whose id starts with this fail (500) on their first delivery, to show retries |
//! | `WEBHOOK_EVENTS` | unset: every event | comma-separated event-type patterns (`invoice.paid`, `invoice.*`, `*`); other types answer 200 `{"status":"ignored"}` |
//!
//! Standard output carries `listening on <addr>` once bound, then exactly one line per accepted
//! event: `accepted id=<event id or -> bytes=<body length> type=<event type or -> path=<endpoint
//! path>`. Rejected
//! requests and duplicates never reach the handler and print nothing there; each is a
//! `tracing` event on standard error.

#[path = "support/mod.rs"]
mod support;

use std::collections::HashSet;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::routing::post_service;
use axum::Router;
use http::{header, Request, Response, StatusCode};
use tower::{service_fn, Layer};
use tower_webhook::stack::config::{self, Config};
use tower_webhook::{BufferedBody, Verified, WebhookLayer};

/// The `FAIL_ONCE_PREFIX` demonstration: ids seen failing once by this process.
#[derive(Clone, Default)]
struct Failures {
    prefix: Option<Arc<str>>,
    failed: Arc<Mutex<HashSet<String>>>,
}

impl Failures {
    fn fail_first_time(&self, id: Option<&str>) -> bool {
        match (&self.prefix, id) {
            (Some(prefix), Some(id)) if id.starts_with(&**prefix) => self
                .failed
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .insert(id.to_owned()),
            _ => false,
        }
    }
}

/// The demo handler of the endpoint at `path`: prints the accepted line and answers 200.
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
    service_fn(move |req: Request<BufferedBody>| {
        let id = req
            .extensions()
            .get::<Verified>()
            .and_then(Verified::id)
            .map(str::to_owned);
        let event_type = req
            .extensions()
            .get::<Verified>()
            .and_then(Verified::event_type)
            .unwrap_or("-")
            .to_owned();
        let answer = if failures.fail_first_time(id.as_deref()) {
            eprintln!("simulated failure for id={}", id.as_deref().unwrap_or("-"));
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "{\"error\":\"simulated_failure\"}",
            )
        } else {
            let (id, bytes) = (id.as_deref().unwrap_or("-"), req.body().bytes().len());
            println!("accepted id={id} bytes={bytes} type={event_type} path={path}");
            (StatusCode::OK, "{\"status\":\"accepted\"}")
        };
        let response = Response::builder()
            .status(answer.0)
            .header(header::CONTENT_TYPE, "application/json")
            .body(answer.1.to_owned())
            .expect("a valid response");
        std::future::ready(Ok::<_, Infallible>(response))
    })
}

/// The environment settings laid over the file's, by the file's names (lower case). Numbers
/// are parsed here, so a bad one names its variable.
const NUMBERS: [&str; 6] = [
    "RATE_PER_SEC",
    "RATE_BURST",
    "REPLAY_TTL_SECS",
    "REPLAY_MAX_ENTRIES",
    "MAX_BODY_BYTES",
    "TOLERANCE_SECS",
];
const TEXTS: [&str; 6] = [
    "BIND_ADDR",
    "TRUSTED_PROXIES",
    "ALLOW_CIDRS",
    "REPLAY_STORE",
    "REDIS_URL",
    "FAIL_ONCE_PREFIX",
];

/// The settings as one table: the file of `WEBHOOK_CONFIG`, or one endpoint on `/webhook`
/// from `WEBHOOK_SCHEME` and `WEBHOOK_SECRET`; then every environment setting over it.
fn settings() -> Result<toml::Table, support::Error> {
    let mut table = match support::var("WEBHOOK_CONFIG") {
        Some(path) => {
            let text = std::fs::read_to_string(&path)
                .map_err(|e| format!("WEBHOOK_CONFIG: cannot read {path}: {}", e.kind()))?;
            config::parse_toml(&text).map_err(|e| format!("WEBHOOK_CONFIG: {e}"))?
        }
        None => {
            let scheme = support::var("WEBHOOK_SCHEME").unwrap_or_else(|| "standard".into());
            let secrets = support::secrets().unwrap_or_else(|| {
                eprintln!(
                    "WEBHOOK_SECRET unset: using the development secret {}",
                    support::DEV_SECRET
                );
                vec![support::DEV_SECRET.to_owned()]
            });
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
    for name in NUMBERS {
        if let Some(value) = support::var(name) {
            let n: i64 = value
                .parse()
                .map_err(|_| format!("{name}={value:?} is not valid"))?;
            table.insert(name.to_ascii_lowercase(), n.into());
        }
    }
    for name in TEXTS {
        if let Some(value) = support::var(name) {
            table.insert(name.to_ascii_lowercase(), value.into());
        }
    }
    Ok(table)
}

/// The receiver: one route per endpoint, each behind its own stack; 404 elsewhere.
fn app(mut settings: toml::Table) -> Result<(Router, Option<String>), support::Error> {
    let text = |table: &mut toml::Table, key: &str| -> Result<Option<String>, support::Error> {
        match table.remove(key) {
            None => Ok(None),
            Some(toml::Value::String(s)) => Ok(Some(s)),
            Some(_) => Err(format!("{key}: expected a string")),
        }
    };
    // The receiver's own settings, taken out before the rest is the stack's config.
    let bind = text(&mut settings, "bind_addr")?;
    let failures = Failures {
        prefix: text(&mut settings, "fail_once_prefix")?.map(Into::into),
        ..Failures::default()
    };
    let config = Config::from_table(settings).map_err(|e| e.to_string())?;
    let endpoints: Vec<(String, WebhookLayer)> = config.build().map_err(|e| e.to_string())?;
    let mut router = Router::new();
    for (path, layer) in endpoints {
        let service = layer.layer(handler(path.as_str().into(), failures.clone()));
        router = router.route_service(&path, post_service(service));
    }
    Ok((router, bind))
}

#[tokio::main]
async fn main() {
    tracing_subscriber_init();
    let (app, bind) = settings()
        .and_then(app)
        .unwrap_or_else(|e| support::exit_with(e));
    let addr: SocketAddr = match bind {
        None => SocketAddr::from(([127, 0, 0, 1], 3000)),
        Some(bind) => bind
            .parse()
            .unwrap_or_else(|_| support::exit_with(format!("bind_addr={bind:?} is not valid"))),
    };
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .unwrap_or_else(|e| support::exit_with(format!("cannot listen on {addr}: {e}")));
    let bound = listener.local_addr().expect("bound socket has an address");
    println!("listening on {bound}");
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .await
    .unwrap_or_else(|e| support::exit_with(e));
}

/// Rejections are `tracing` events; show them on standard error.
fn tracing_subscriber_init() {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_target(false)
        .init();
}
