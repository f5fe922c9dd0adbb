//! The demo programs' operations port (`METRICS_ADDR`): `GET /metrics` in the Prometheus text
//! format and `GET /healthz`. Its routes and answers are a public interface (see the README).

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use axum::routing::get;
use axum::Router;
use http::StatusCode;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use crate::support::Error;

/// The Prometheus recorder, installed before any stack or worker is built (each registers its
/// series when built), with buckets for the handlers' time.
pub fn install_prometheus() -> Result<PrometheusHandle, Error> {
    let buckets = [
        0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
    ];
    let handler = |name: &str| Matcher::Full(name.to_owned());
    let handle = PrometheusBuilder::new()
        .set_buckets_for_metric(handler("webhook_handler_duration_seconds"), &buckets)
        .and_then(|b| {
            b.set_buckets_for_metric(handler("webhook_inbox_handler_duration_seconds"), &buckets)
        })
        .and_then(PrometheusBuilder::install_recorder)
        .map_err(|e| format!("metrics: {e}"))?;
    // Histograms are summed up when rendered or by this upkeep, whichever comes first.
    let upkeep = handle.clone();
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(Duration::from_secs(5)).await;
            upkeep.run_upkeep();
        }
    });
    Ok(handle)
}

/// Serves `/metrics` and `/healthz` on `addr` until the process ends, and answers the address
/// bound. `/healthz` answers 200 `{"status":"ok"}` when `check` succeeds, and 503
/// `{"status":"unavailable"}` (the reason on standard error) when it fails.
pub async fn serve<F, Fut>(addr: SocketAddr, prometheus: PrometheusHandle, check: F) -> SocketAddr
where
    F: Fn() -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Result<(), String>> + Send + 'static,
{
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .unwrap_or_else(|e| crate::support::exit_with(format!("cannot listen on {addr}: {e}")));
    let addr = listener.local_addr().expect("bound socket has an address");
    let metrics = move || std::future::ready(prometheus.render());
    let health = move || {
        let check = check();
        async move {
            match check.await {
                Ok(()) => (StatusCode::OK, "{\"status\":\"ok\"}"),
                Err(error) => {
                    eprintln!("health check failed: {error}");
                    (
                        StatusCode::SERVICE_UNAVAILABLE,
                        "{\"status\":\"unavailable\"}",
                    )
                }
            }
        }
    };
    let router = Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(health));
    tokio::spawn(async move { axum::serve(listener, router).await });
    addr
}
