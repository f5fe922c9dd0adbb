//! axum extractors for what the layers put into the request (feature `axum`).
//!
//! [`Verified`], [`RawBody`] and [`ClientIp`] are extractors; both read the request's extensions, so they
//! need [`Verify`](crate::verify::Verify) (or [`BufferBody`](crate::body::BufferBody) for
//! `RawBody`) in front of the handler. Without it they answer 500 with
//! `{"error":"internal_error"}`: a wiring mistake, never the client's fault. Their `Option<_>`
//! forms never fail.

use axum_core::extract::{FromRequestParts, OptionalFromRequestParts};
use http::request::Parts;

use crate::client_ip::ClientIp;
use crate::{RawBody, Rejection, Verified};

macro_rules! extension_extractor {
    ($ty:ty, $missing:literal) => {
        impl<S: Send + Sync> FromRequestParts<S> for $ty {
            type Rejection = Rejection;

            async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Rejection> {
                parts
                    .extensions
                    .get::<$ty>()
                    .cloned()
                    .ok_or(Rejection::Misconfigured { reason: $missing })
            }
        }

        impl<S: Send + Sync> OptionalFromRequestParts<S> for $ty {
            type Rejection = std::convert::Infallible;

            async fn from_request_parts(
                parts: &mut Parts,
                _: &S,
            ) -> Result<Option<Self>, Self::Rejection> {
                Ok(parts.extensions.get::<$ty>().cloned())
            }
        }
    };
}

extension_extractor!(Verified, "Verified extracted without the Verify layer");
extension_extractor!(
    RawBody,
    "RawBody extracted without the BufferBody or Verify layer"
);
extension_extractor!(
    ClientIp,
    "ClientIp extracted without the ResolveClientIp layer"
);
