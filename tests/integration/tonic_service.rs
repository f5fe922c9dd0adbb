//! The tonic example (gRPC health service behind client IP, allowlist and rate limit), called
//! over 127.0.0.1 from an allowed address, from a refused one (127.0.0.2), and over the limit.

use crate::common;

use std::net::SocketAddr;

use hyper_util::rt::TokioIo;
use tonic::transport::{Channel, Endpoint};
use tonic::Code;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;
use tower::service_fn;

/// A channel whose connections leave from `source` (any 127.0.0.0/8 address is local).
async fn channel_from(source: [u8; 4], server: SocketAddr) -> Channel {
    Endpoint::from_shared(format!("http://{server}"))
        .unwrap()
        .connect_with_connector(service_fn(move |_| async move {
            let socket = tokio::net::TcpSocket::new_v4()?;
            socket.bind(SocketAddr::from((source, 0)))?;
            let stream = socket.connect(server).await?;
            Ok::<_, std::io::Error>(TokioIo::new(stream))
        }))
        .await
        .unwrap()
}

async fn check(channel: &Channel) -> Result<i32, Code> {
    HealthClient::new(channel.clone())
        .check(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .map(|r| r.into_inner().status)
        .map_err(|status| status.code())
}

#[tokio::test]
async fn allowed_refused_and_over_the_limit() {
    let server = common::Example::start(
        "tonic",
        &[
            ("ALLOW_CIDRS", "127.0.0.1/32"),
            ("RATE_PER_SEC", "1"),
            ("RATE_BURST", "3"),
        ],
    );
    let addr: SocketAddr = server.addr.parse().unwrap();

    let allowed = channel_from([127, 0, 0, 1], addr).await;
    for _ in 0..3 {
        assert_eq!(check(&allowed).await, Ok(ServingStatus::Serving as i32));
    }
    // The fourth within the same second: answered as gRPC RESOURCE_EXHAUSTED.
    assert_eq!(check(&allowed).await, Err(Code::ResourceExhausted));

    // 127.0.0.2 is outside the allowlist: PERMISSION_DENIED, whatever its quota.
    let refused = channel_from([127, 0, 0, 2], addr).await;
    assert_eq!(check(&refused).await, Err(Code::PermissionDenied));
}

#[tokio::test]
async fn without_settings_everyone_is_served() {
    let server = common::Example::start("tonic", &[]);
    let addr: SocketAddr = server.addr.parse().unwrap();
    for source in [[127, 0, 0, 1], [127, 0, 0, 2]] {
        let channel = channel_from(source, addr).await;
        for _ in 0..5 {
            assert_eq!(check(&channel).await, Ok(ServingStatus::Serving as i32));
        }
    }
}
