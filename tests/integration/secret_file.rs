//! Secrets that change without a restart: the demo receiver's `WEBHOOK_SECRET_FILE`, edited
//! while it runs, reloaded when it changes and on SIGHUP; a broken edit keeps the keys in force
//! and is reported by line, never by content.

use crate::common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::{now, post, Example};
use http::StatusCode;
use tower_webhook::scheme::Scheme;

const A: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const B: &str = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";
const SEED: &str = "whsk_VEVTVFNJR05JTkdLRVlET05PVFVTRVRISVNGT1JBTlk=";
const PUBLIC: &str = "whpk_ZlN4eg7dSSqi0moX9hQUk3orrOouK3QVQSlJa248c/g=";

/// The status of a delivery signed with `secret`.
async fn deliver(addr: SocketAddr, secret: &str, id: &str) -> StatusCode {
    let body = br#"{"type":"ping"}"#;
    let headers = common::sign(&Scheme::standard_webhooks(), secret, id, now(), body);
    post(addr, "/webhook", &headers, &body[..]).await.status
}

/// Waits until a delivery signed with `secret` gets `status`, for at most 10 s.
async fn until(addr: SocketAddr, secret: &str, status: StatusCode) {
    let deadline = Instant::now() + Duration::from_secs(10);
    for n in 0.. {
        if deliver(addr, secret, &format!("evt_wait_{n}")).await == status {
            return;
        }
        assert!(Instant::now() < deadline, "never {status}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn file(name: &str) -> std::path::PathBuf {
    std::env::temp_dir().join(format!(
        "tower-webhook-secrets-{}-{name}",
        std::process::id()
    ))
}

#[tokio::test]
async fn an_edited_file_takes_effect_and_a_broken_edit_changes_nothing() {
    let path = file("edit");
    std::fs::write(&path, format!("# the current secret\n\n{A}\n")).unwrap();
    let receiver = Example::start(
        "receiver",
        &[
            ("WEBHOOK_SECRET_FILE", path.to_str().unwrap()),
            ("SECRET_RELOAD_SECS", "1"),
        ],
    );
    let addr: SocketAddr = receiver.addr.parse().unwrap();
    assert_eq!(deliver(addr, A, "evt_1").await, StatusCode::OK);
    assert_eq!(deliver(addr, B, "evt_2").await, StatusCode::UNAUTHORIZED);

    // Rotation: B, and the Ed25519 key beside it; A is gone.
    std::fs::write(&path, format!("{B}\n# and the asymmetric key\n{PUBLIC}\n")).unwrap();
    until(addr, B, StatusCode::OK).await;
    assert_eq!(deliver(addr, A, "evt_3").await, StatusCode::UNAUTHORIZED);
    assert_eq!(deliver(addr, SEED, "evt_4").await, StatusCode::OK);

    // A broken edit: the keys in force stay, and the log names the line, not its content.
    std::fs::write(&path, format!("{B}\n\nwhsec_!!not-base64!!\n")).unwrap();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(deliver(addr, B, "evt_5").await, StatusCode::OK);
    assert_eq!(deliver(addr, SEED, "evt_6").await, StatusCode::OK);
    let log = receiver.stderr();
    assert!(log.contains("WEBHOOK_SECRET_FILE: line 3:"), "{log}");
    assert!(!log.contains("not-base64") && !log.contains(B), "{log}");
    // An unreadable file keeps them too.
    std::fs::remove_file(&path).unwrap();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(deliver(addr, B, "evt_7").await, StatusCode::OK);
    assert!(receiver.stderr().contains("cannot read"));
}

#[tokio::test]
async fn sighup_reloads_at_once() {
    let path = file("hup");
    std::fs::write(&path, format!("{A}\n")).unwrap();
    let receiver = Example::start(
        "receiver",
        &[
            ("WEBHOOK_SECRET_FILE", path.to_str().unwrap()),
            ("SECRET_RELOAD_SECS", "3600"),
        ],
    );
    let addr: SocketAddr = receiver.addr.parse().unwrap();
    std::fs::write(&path, format!("{B}\n")).unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(deliver(addr, B, "evt_1").await, StatusCode::UNAUTHORIZED);
    receiver.signal("HUP");
    until(addr, B, StatusCode::OK).await;
    assert_eq!(deliver(addr, A, "evt_2").await, StatusCode::UNAUTHORIZED);
    let _ = std::fs::remove_file(&path);
}

#[test]
fn a_bad_file_at_start_exits_with_status_2_naming_the_line() {
    let path = file("bad");
    std::fs::write(&path, format!("# ok\n{A}\nwhpk_AAAA\n")).unwrap();
    let out = std::process::Command::new(common::example("receiver"))
        .env_clear()
        .env("BIND_ADDR", "127.0.0.1:0")
        .env("WEBHOOK_SECRET_FILE", &path)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("WEBHOOK_SECRET_FILE: line 3:"), "{err}");
    assert!(!err.contains("AAAA"), "{err}");
    let _ = std::fs::remove_file(&path);
}
