//! Raw-body buffering: collect the body once, within a byte limit and a time limit, and keep
//! the exact bytes.
//!
//! [`BufferBody`] reads the whole body before calling the inner service, which then gets a
//! `Request<`[`BufferedBody`](crate::BufferedBody)`>` holding exactly those bytes, and the same
//! bytes as a [`RawBody`](crate::RawBody) extension for later layers and the handler. A body
//! that arrives in one chunk is not copied.
//!
//! - `Content-Length` over the limit: 413 at once, nothing read.
//! - A body (chunked or not) that passes the limit while streaming: 413 the moment it does; no
//!   more than the limit is ever held.
//! - The whole body not in within the time limit (a hard deadline, not per chunk): 408.
//! - A body that fails mid-stream: 400.
//!
//! The time limit uses Tokio's timer, so the service must run inside a Tokio runtime (as
//! hyper, axum and tonic servers do).
//!
//! # Examples
//!
//! The defaults (1 MiB, 10 s):
//!
//! ```
//! use bytes::Bytes;
//! use http::Request;
//! use http_body_util::Full;
//! use tower::{service_fn, ServiceBuilder, ServiceExt};
//! use tower_webhook::buffer::BufferBodyLayer;
//! use tower_webhook::{BufferedBody, RawBody};
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! let svc = ServiceBuilder::new()
//!     .layer(BufferBodyLayer::new())
//!     .service(service_fn(|req: Request<BufferedBody>| async move {
//!         let raw = req.extensions().get::<RawBody>().unwrap().clone();
//!         Ok::<_, std::convert::Infallible>(http::Response::new(Full::new(raw.into_bytes())))
//!     }));
//!
//! let res = svc.oneshot(Request::new(Full::new(Bytes::from("hello")))).await.unwrap();
//! assert_eq!(res.status(), 200);
//! # }
//! ```
//!
//! Customised limits:
//!
//! ```
//! use std::time::Duration;
//! use bytes::Bytes;
//! use http::{Request, StatusCode};
//! use http_body_util::Full;
//! use tower::{service_fn, ServiceBuilder, ServiceExt};
//! use tower_webhook::buffer::BufferBodyLayer;
//! use tower_webhook::{BodyLimits, BufferedBody};
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! let limits = BodyLimits::new().max_bytes(4).timeout(Duration::from_secs(2));
//! let svc = ServiceBuilder::new()
//!     .layer(BufferBodyLayer::with_limits(limits))
//!     .service(service_fn(|_: Request<BufferedBody>| async {
//!         Ok::<_, std::convert::Infallible>(http::Response::new(Full::new(Bytes::new())))
//!     }));
//!
//! let res = svc.oneshot(Request::new(Full::new(Bytes::from("hello")))).await.unwrap();
//! assert_eq!(res.status(), StatusCode::PAYLOAD_TOO_LARGE);
//! # }
//! ```

mod service;

pub mod future {
    //! The response future of [`BufferBody`](super::BufferBody).
    pub use crate::body::ResponseFuture;
}
pub use service::{BufferBody, BufferBodyLayer};
