//! Provider IP ranges: lists of both published shapes (GitHub's meta API `hooks`, Stripe's
//! `ips_webhooks.json` `WEBHOOKS`; recorded in `tests/data/provider_*.json` from the
//! providers' published lists) served by a local server on 127.0.0.1, fetched, refreshed, kept
//! when a fetch fails or returns garbage, and failing closed until the first list arrives.
#![cfg(all(feature = "provider-ranges", feature = "axum"))]

use crate::common;

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::get;
use axum::Router;
use common::serve;
use tower_webhook::allowlist::{IpAllowlist, Provider, ProviderRanges};

const GITHUB: &str = include_str!("../data/provider_github_meta.json");
const STRIPE: &str = include_str!("../data/provider_stripe_ips_webhooks.json");

/// What the mirror answers for each list.
#[derive(Clone, Copy)]
enum Answer {
    List,
    Garbage,
    Failure,
}

/// A mirror of both lists on 127.0.0.1, answering what `answer` says.
async fn mirror(answer: Arc<Mutex<Answer>>) -> SocketAddr {
    serve(
        Router::new()
            .route(
                "/{list}",
                get(|State(answer): State<Arc<Mutex<Answer>>>, Path(list): Path<String>| async move {
                    let answer = *answer.lock().unwrap();
                    match (answer, list.as_str()) {
                        (Answer::List, "github") => (StatusCode::OK, GITHUB.to_owned()),
                        (Answer::List, _) => (StatusCode::OK, STRIPE.to_owned()),
                        (Answer::Garbage, _) => (StatusCode::OK, r#"{"hooks":["nope"]}"#.to_owned()),
                        (Answer::Failure, _) => (StatusCode::BAD_GATEWAY, String::new()),
                    }
                }),
            )
            .with_state(answer),
    )
    .await
}

fn allows(list: &IpAllowlist, ip: &str) -> bool {
    list.contains(ip.parse::<IpAddr>().unwrap())
}

#[tokio::test]
async fn both_lists_are_fetched_kept_through_failures_and_refreshed() {
    let answer = Arc::new(Mutex::new(Answer::List));
    let addr = mirror(answer.clone()).await;
    let ranges = ProviderRanges::builder()
        .provider_at(Provider::GitHub, format!("http://{addr}/github"))
        .provider_at(Provider::Stripe, format!("http://{addr}/stripe"))
        .fixed(tower_webhook::parse_cidrs("203.0.113.0/24").unwrap())
        .build()
        .unwrap();
    let list = ranges.allowlist();
    // Before the first list: only the fixed ranges.
    assert!(!allows(&list, "140.82.115.9"));
    assert!(allows(&list, "203.0.113.5"));

    assert_eq!(ranges.refresh_now().await, 2);
    for ip in [
        "140.82.115.9",
        "192.30.252.1",
        "2606:50c0::1",
        "3.18.12.63",
        "54.187.216.72",
    ] {
        assert!(allows(&list, ip), "{ip}");
    }
    for ip in ["8.8.8.8", "3.18.12.64", "2001:db8::1"] {
        assert!(!allows(&list, ip), "{ip}");
    }
    assert!(allows(&list, "203.0.113.5"), "the fixed ranges stay");

    // Garbage, then a failure: the last good lists stay.
    for bad in [Answer::Garbage, Answer::Failure] {
        *answer.lock().unwrap() = bad;
        assert_eq!(ranges.refresh_now().await, 0);
        assert!(allows(&list, "140.82.115.9") && allows(&list, "3.18.12.63"));
    }
}

#[tokio::test]
async fn a_provider_never_reached_keeps_its_senders_out() {
    // Nothing listens there.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let ranges = ProviderRanges::builder()
        .provider_at(Provider::GitHub, format!("http://127.0.0.1:{port}/meta"))
        .refresh(Duration::from_secs(1))
        .build()
        .unwrap();
    let list = ranges.allowlist();
    let task = ranges.spawn();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(list.ranges(), 0);
    assert!(!allows(&list, "140.82.115.9"));
    task.abort();
}

#[tokio::test]
async fn spawned_refreshes_pick_up_a_list_that_arrives_later() {
    let answer = Arc::new(Mutex::new(Answer::Failure));
    let addr = mirror(answer.clone()).await;
    let ranges = ProviderRanges::builder()
        .provider_at(Provider::GitHub, format!("http://{addr}/github"))
        .refresh(Duration::from_secs(1))
        .build()
        .unwrap();
    let list = ranges.allowlist();
    let task = ranges.spawn();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!allows(&list, "140.82.115.9"));
    *answer.lock().unwrap() = Answer::List;
    let deadline = Instant::now() + Duration::from_secs(5);
    while !allows(&list, "140.82.115.9") {
        assert!(Instant::now() < deadline, "the list never arrived");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    task.abort();
}

#[test]
fn bad_settings_are_config_errors() {
    assert!(ProviderRanges::builder().build().is_err());
    assert!(ProviderRanges::builder()
        .provider_at(Provider::Stripe, "ftp://mirror/list")
        .build()
        .is_err());
    assert!(ProviderRanges::builder()
        .provider(Provider::GitHub)
        .refresh(Duration::from_millis(10))
        .build()
        .is_err());
}

#[tokio::test]
async fn the_demo_receiver_admits_the_published_hook_ranges_and_refuses_others() {
    let addr = mirror(Arc::new(Mutex::new(Answer::List))).await;
    let github = format!("http://{addr}/github");
    let receiver = common::Example::start(
        "receiver",
        &[
            ("WEBHOOK_SCHEME", "github"),
            ("WEBHOOK_SECRET", "It's a Secret to Everybody"),
            ("TRUSTED_PROXIES", "127.0.0.1/32"),
            ("ALLOW_PROVIDER", "github"),
            ("PROVIDER_URL_GITHUB", &github),
            ("ALLOW_CIDRS", "203.0.113.0/24"),
        ],
    );
    let hooks: SocketAddr = receiver.addr.parse().unwrap();
    let body = br#"{"zen":"Keep it logically awesome."}"#;
    let from = |client: &str, id: &str| {
        let mut headers = common::sign(
            &tower_webhook::scheme::Scheme::github(),
            "It's a Secret to Everybody",
            id,
            0,
            body,
        );
        headers.insert("x-forwarded-for", client.parse().unwrap());
        headers
    };
    // GitHub's range, once its list has come.
    let deadline = Instant::now() + Duration::from_secs(10);
    for n in 0.. {
        let reply = common::post(
            hooks,
            "/webhook",
            &from("140.82.115.9", &format!("d{n}")),
            &body[..],
        )
        .await;
        if reply.status == StatusCode::OK {
            break;
        }
        assert_eq!(reply.status, StatusCode::FORBIDDEN);
        assert!(Instant::now() < deadline, "GitHub's ranges never came");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // ALLOW_CIDRS beside it; everyone else refused.
    let fixed = common::post(hooks, "/webhook", &from("203.0.113.7", "f1"), &body[..]).await;
    assert_eq!(fixed.status, StatusCode::OK);
    let other = common::post(hooks, "/webhook", &from("8.8.8.8", "o1"), &body[..]).await;
    assert_eq!(
        (other.status, other.body.as_str()),
        (StatusCode::FORBIDDEN, r#"{"error":"forbidden"}"#)
    );
}
