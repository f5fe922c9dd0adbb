//! One content type: a request whose `Content-Type` is not one of the configured media types
//! (or that has none) gets 415 `{"error":"unsupported_media_type"}` before its body is read.
//!
//! Parameters such as `charset` are ignored, and the comparison ignores case, as media types
//! do (RFC 9110 section 8.3.1).
//!
//! ```
//! use tower::ServiceBuilder;
//! use tower_webhook::content_type::ContentTypeLayer;
//!
//! let stack = ServiceBuilder::new().layer(ContentTypeLayer::new(["application/json"])?);
//! # let _ = stack;
//! # Ok::<(), tower_webhook::ConfigError>(())
//! ```

use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::header::CONTENT_TYPE;
use http::{HeaderMap, Request, Response};
use mime::Mime;
use tower_layer::Layer;
use tower_service::Service;

pub mod future {
    //! The response future of [`ContentType`](super::ContentType).
    pub use crate::before_body::ResponseFuture;
}

use crate::before_body::ResponseFuture;
use crate::rejection::ResponseBody;
use crate::{client_ip, ConfigError, Rejection};

/// The media types accepted, without parameters. Clones share them.
#[derive(Clone)]
pub struct MediaTypes {
    essences: Arc<[Box<str>]>,
}

impl MediaTypes {
    /// Accepts `types`, each `type/subtype` (parameters, if given, are dropped).
    ///
    /// # Errors
    ///
    /// [`ConfigError::InvalidStack`] when the list is empty or a type cannot be parsed.
    pub fn new<I>(types: I) -> Result<Self, ConfigError>
    where
        I: IntoIterator,
        I::Item: AsRef<str>,
    {
        let invalid = |reason| ConfigError::InvalidStack { reason };
        let essences = types
            .into_iter()
            .map(|t| {
                let mime: Mime =
                    t.as_ref().trim().parse().map_err(|_| {
                        invalid("a content type is not a media type (type/subtype)")
                    })?;
                Ok(mime.essence_str().into())
            })
            .collect::<Result<Arc<[Box<str>]>, ConfigError>>()?;
        if essences.is_empty() {
            return Err(invalid(
                "no content type is allowed: every request would be refused",
            ));
        }
        Ok(Self { essences })
    }

    /// Whether `headers` name an accepted media type: exactly one `Content-Type`, whose type
    /// and subtype (case aside) are in the list.
    pub fn accepts(&self, headers: &HeaderMap) -> bool {
        let mut values = headers.get_all(CONTENT_TYPE).iter();
        let (Some(value), None) = (values.next(), values.next()) else {
            return false;
        };
        let Some(mime) = value
            .to_str()
            .ok()
            .and_then(|v| v.trim().parse::<Mime>().ok())
        else {
            return false;
        };
        // `mime` lower-cases the type and subtype.
        let essence = mime.essence_str();
        self.essences.iter().any(|accepted| **accepted == *essence)
    }

    /// Refuses a request whose content type is not accepted.
    pub(crate) fn check(&self, headers: &HeaderMap) -> Result<(), Rejection> {
        if self.accepts(headers) {
            Ok(())
        } else {
            Err(Rejection::UnsupportedMediaType)
        }
    }
}

impl fmt::Debug for MediaTypes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.essences.iter()).finish()
    }
}

/// Applies [`ContentType`].
#[derive(Debug, Clone)]
pub struct ContentTypeLayer {
    types: MediaTypes,
}

impl ContentTypeLayer {
    /// Accepts only `types` (see [`MediaTypes::new`]).
    ///
    /// # Errors
    ///
    /// [`ConfigError::InvalidStack`] when the list is empty or a type cannot be parsed.
    pub fn new<I>(types: I) -> Result<Self, ConfigError>
    where
        I: IntoIterator,
        I::Item: AsRef<str>,
    {
        Ok(Self {
            types: MediaTypes::new(types)?,
        })
    }
}

impl From<MediaTypes> for ContentTypeLayer {
    fn from(types: MediaTypes) -> Self {
        Self { types }
    }
}

impl<S> Layer<S> for ContentTypeLayer {
    type Service = ContentType<S>;

    fn layer(&self, inner: S) -> Self::Service {
        ContentType {
            inner,
            types: self.types.clone(),
        }
    }
}

/// Refuses requests of other content types with 415. See the [module docs](self).
#[derive(Debug, Clone)]
pub struct ContentType<S> {
    inner: S,
    types: MediaTypes,
}

impl<S> ContentType<S> {
    inner_accessors!();
}

impl<S, B, ResBody> Service<Request<B>> for ContentType<S>
where
    S: Service<Request<B>, Response = Response<ResBody>>,
{
    type Response = Response<ResponseBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        match self.types.check(req.headers()) {
            Ok(()) => ResponseFuture::inner(self.inner.call(req)),
            Err(rejection) => {
                let client = client_ip::of(req.extensions());
                ResponseFuture::rejected(rejection, req.headers(), client)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(values: &[&str]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for v in values {
            headers.append(CONTENT_TYPE, v.parse().unwrap());
        }
        headers
    }

    #[test]
    fn parameters_and_case_are_ignored() {
        let types =
            MediaTypes::new(["application/json", "Application/X-WWW-Form-Urlencoded"]).unwrap();
        for ok in [
            "application/json",
            "application/json; charset=utf-8",
            "APPLICATION/JSON;charset=UTF-8",
            " application/json ",
            "application/x-www-form-urlencoded",
        ] {
            assert!(types.accepts(&headers(&[ok])), "{ok:?}");
        }
        for bad in [
            "",
            "text/plain",
            "application/json-patch+json",
            "application/jsonx",
            "application",
            "application/",
            "/json",
            "json",
            "application/json/x",
        ] {
            assert!(!types.accepts(&headers(&[bad])), "{bad:?}");
        }
        assert!(!types.accepts(&HeaderMap::new()), "none");
        assert!(
            !types.accepts(&headers(&["application/json", "application/json"])),
            "two"
        );
    }

    #[test]
    fn bad_lists_are_config_errors() {
        assert!(MediaTypes::new(Vec::<&str>::new()).is_err());
        assert!(MediaTypes::new(["json"]).is_err());
        assert!(MediaTypes::new(["application/json; charset=utf-8"]).is_ok());
    }
}
