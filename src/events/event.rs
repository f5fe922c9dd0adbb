use std::fmt;

use http::Request;
use serde::de::DeserializeOwned;

use crate::observe::About;
use crate::{RawBody, Rejection, Verified};

/// A verified event read as your type `T`: the exact verified bytes deserialized as JSON,
/// beside the event's id, type and timestamp.
///
/// With the `axum` feature it is an extractor; elsewhere, [`from_request`](Self::from_request)
/// reads it from a request that passed verification. Bytes that do not fit `T` are refused with
/// [`Rejection::InvalidPayload`] (422 `{"error":"invalid_payload"}`, never serde's message),
/// logged with the event's id and type.
///
/// ```
/// use serde::Deserialize;
/// use tower_webhook::events::Event;
///
/// #[derive(Deserialize)]
/// struct Push {
///     r#ref: String,
/// }
///
/// async fn on_push(event: Event<Push>) -> String {
///     format!("{} pushed to {}", event.id().unwrap_or("-"), event.data().r#ref)
/// }
/// # let _ = on_push;
/// ```
pub struct Event<T> {
    verified: Verified,
    data: T,
}

impl<T: DeserializeOwned> Event<T> {
    /// Reads the event of a request that passed verification: its [`Verified`] and
    /// [`RawBody`] extensions.
    ///
    /// # Errors
    ///
    /// [`Rejection::InvalidPayload`] when the body does not fit `T`;
    /// [`Rejection::Misconfigured`] when the request did not pass verification.
    pub fn from_request<B>(req: &Request<B>) -> Result<Self, Rejection> {
        Self::from_extensions(req.extensions())
    }

    pub(crate) fn from_extensions(extensions: &http::Extensions) -> Result<Self, Rejection> {
        let (Some(verified), Some(body)) =
            (extensions.get::<Verified>(), extensions.get::<RawBody>())
        else {
            let rejection = Rejection::Misconfigured {
                reason: "Event needs the verification layer in front of it",
            };
            rejection.log(About::extensions(extensions));
            return Err(rejection);
        };
        match serde_json::from_slice(body) {
            Ok(data) => Ok(Self {
                verified: verified.clone(),
                data,
            }),
            Err(error) => {
                #[cfg(feature = "tracing")]
                tracing::warn!(
                    target: "tower_webhook",
                    event_id = verified.id().unwrap_or("-"),
                    event_type = verified.event_type().unwrap_or("-"),
                    scheme = verified.scheme().as_str(),
                    line = error.line(),
                    column = error.column(),
                    category = ?error.classify(),
                    "webhook payload does not fit the handler's type: 422"
                );
                #[cfg(not(feature = "tracing"))]
                let _ = error;
                Err(Rejection::InvalidPayload)
            }
        }
    }
}

impl<T> Event<T> {
    /// The payload, as `T`.
    #[must_use]
    pub fn data(&self) -> &T {
        &self.data
    }

    /// Takes the payload.
    #[must_use]
    pub fn into_data(self) -> T {
        self.data
    }

    /// The event's id, if its scheme names one (see [`Verified::id`]).
    #[must_use]
    pub fn id(&self) -> Option<&str> {
        self.verified.id()
    }

    /// The event's type (see [`Verified::event_type`]).
    #[must_use]
    pub fn event_type(&self) -> Option<&str> {
        self.verified.event_type()
    }

    /// The signed timestamp, for schemes that sign one.
    #[must_use]
    pub fn timestamp(&self) -> Option<u64> {
        self.verified.timestamp()
    }

    /// Everything verification learned.
    #[must_use]
    pub fn verified(&self) -> &Verified {
        &self.verified
    }
}

impl<T> fmt::Debug for Event<T> {
    /// The id and type, never the payload.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Event")
            .field("id", &self.id())
            .field("event_type", &self.event_type())
            .finish_non_exhaustive()
    }
}

#[cfg(feature = "axum")]
impl<T, S> axum_core::extract::FromRequestParts<S> for Event<T>
where
    T: DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = Rejection;

    async fn from_request_parts(
        parts: &mut http::request::Parts,
        _state: &S,
    ) -> Result<Self, Self::Rejection> {
        Self::from_extensions(&parts.extensions)
    }
}
