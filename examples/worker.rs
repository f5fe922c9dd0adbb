//! The demo worker: handles the events that receivers with `INBOX=redis` queued, in a process
//! of its own (start as many as you like), and manages the dead letters.
//!
//! ```sh
//! cargo run --example worker                  # handle events until SIGTERM or SIGINT
//! cargo run --example worker -- dead          # list the dead letters
//! cargo run --example worker -- retry ID      # put the dead letters of event ID back in the queue
//! cargo run --example worker -- retry-all     # put every dead letter back in the queue
//! ```
//!
//! Settings come from the environment, with the receiver's names and defaults: `REDIS_URL`,
//! `INBOX_NAMESPACE`, `WORKERS`, `MAX_ATTEMPTS`, `RETRY_BASE_MS`, `RETRY_MAX_MS`,
//! `CLAIM_IDLE_SECS`, `BREAKER_FAILURES`, `BREAKER_COOLDOWN_SECS`, `HANDLER_DELAY_MS`,
//! `FAIL_ONCE_PREFIX`, `FAIL_ALWAYS_PREFIX`, `SHUTDOWN_GRACE_SECS` and `METRICS_ADDR` (see the
//! receiver: `/metrics` has the workers' series, `/healthz` pings the inbox).
//!
//! Standard output carries `working namespace=<namespace> workers=<n>` once started (followed
//! by ` metrics=<addr>` when `METRICS_ADDR` is set), then the
//! receiver's lines: `accepted id=<id> bytes=<n> type=<type> path=<endpoint>` for each event
//! handled, `dead id=<id> attempts=<n>` for each event out of attempts. `dead` prints one
//! `dead id=<id> attempts=<n>` line per dead letter, oldest first; `retry` and `retry-all`
//! print `retried <n>`, and exit with status 1 when `retry ID` finds no such dead letter.

#[path = "support/inbox.rs"]
mod inbox;
#[path = "support/operations.rs"]
mod operations;
#[path = "support/mod.rs"]
mod support;

use std::time::Duration;

/// What the command line asks for.
enum Command {
    Work,
    Dead,
    Retry(String),
    RetryAll,
}

fn command() -> Result<Command, support::Error> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    match args[..] {
        [] => Ok(Command::Work),
        ["dead"] => Ok(Command::Dead),
        ["retry", id] => Ok(Command::Retry(id.to_owned())),
        ["retry-all"] => Ok(Command::RetryAll),
        _ => Err("usage: worker [dead | retry ID | retry-all]".into()),
    }
}

#[tokio::main]
async fn main() {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_target(false)
        .init();
    let command = command().unwrap_or_else(|e| support::exit_with(e));
    let mut table = toml::Table::new();
    support::overlay(
        &mut table,
        &["HANDLER_DELAY_MS", "SHUTDOWN_GRACE_SECS"],
        &["REDIS_URL", "FAIL_ONCE_PREFIX", "METRICS_ADDR"],
    )
    .and_then(|()| support::overlay(&mut table, &inbox::NUMBERS, &inbox::TEXTS))
    .unwrap_or_else(|e| support::exit_with(e));
    table.insert("inbox".into(), "redis".into());
    let demo = inbox::Demo::take(&mut table).unwrap_or_else(|e| support::exit_with(e));
    let grace = support::take_number(&mut table, "shutdown_grace_secs", 10)
        .unwrap_or_else(|e| support::exit_with(e));
    let grace = Duration::from_secs(grace);
    let metrics =
        support::take_address(&mut table, "metrics_addr").unwrap_or_else(|e| support::exit_with(e));
    let settings = inbox::Settings::take(&mut table).unwrap_or_else(|e| support::exit_with(e));
    let inbox = settings.inbox.clone().expect("INBOX is redis");

    match command {
        Command::Work => {
            // The recorder comes first: the workers record into it from their start.
            let prometheus = metrics.map(|_| {
                operations::install_prometheus().unwrap_or_else(|e| support::exit_with(e))
            });
            let workers = settings.spawn(&inbox, demo);
            let metrics_field = match (metrics, prometheus) {
                (Some(addr), Some(prometheus)) => {
                    let inbox = inbox.clone();
                    let check = move || {
                        let inbox = inbox.clone();
                        async move { inbox.ping().await.map_err(|e| e.to_string()) }
                    };
                    format!(
                        " metrics={}",
                        operations::serve(addr, prometheus, check).await
                    )
                }
                _ => String::new(),
            };
            println!(
                "working namespace={} workers={}{metrics_field}",
                settings.namespace, settings.workers
            );
            support::shutdown_signal().await;
            eprintln!("shutting down: finishing the events in progress");
            let handed_back = workers.shutdown(grace).await;
            if handed_back > 0 {
                eprintln!("events in progress handed back to the inbox: {handed_back}");
            }
        }
        Command::Dead => {
            let dead = inbox.dead_letters().await;
            for event in dead.unwrap_or_else(|e| support::exit_with(e)) {
                println!(
                    "dead id={} attempts={}",
                    event.id().unwrap_or("-"),
                    event.attempts()
                );
            }
        }
        Command::Retry(id) => {
            let retried = inbox.retry_dead(&id).await;
            let retried = retried.unwrap_or_else(|e| support::exit_with(e));
            println!("retried {retried}");
            if retried == 0 {
                eprintln!("no dead letter with id {id}");
                std::process::exit(1);
            }
        }
        Command::RetryAll => {
            let retried = inbox.retry_all_dead().await;
            println!(
                "retried {}",
                retried.unwrap_or_else(|e| support::exit_with(e))
            );
        }
    }
}
