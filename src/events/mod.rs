//! Event types: handle only the events you subscribe to, route each type to its own handler,
//! and read the verified bytes as your own type.
//!
//! Every sender's guide says to check an event's type before processing it and to answer 2xx
//! to the types you do not handle, so the sender stops retrying them.
//! [`Verified::event_type`](crate::Verified::event_type) says where each sender puts the
//! type; this module acts on it:
//!
//! - [`Subscription`]: the types a receiver handles, as patterns (`invoice.paid`,
//!   `invoice.*`, `*`). As a stage of the one-call stack
//!   ([`WebhookBuilder::subscribe`](crate::WebhookBuilder::subscribe)) or as its own layer
//!   ([`SubscribeLayer`], after verification, before replay), it answers every other verified
//!   event 200 `{"status":"ignored"}` without calling the handler and without touching the
//!   replay store.
//! - [`EventRouter`]: a service that sends each event to the service of the most specific
//!   pattern that takes its type, or to a fallback.
//! - [`Event<T>`]: the verified bytes deserialized into your type, beside the event's id,
//!   type and timestamp; an axum extractor with the `axum` feature, [`Event::from_request`]
//!   otherwise. Bytes that do not fit `T` answer 422 `{"error":"invalid_payload"}`.
//!
//! # Examples
//!
//! A Stripe receiver that handles invoices only:
//!
//! ```
//! use tower_webhook::events::Subscription;
//! use tower_webhook::scheme::Scheme;
//! use tower_webhook::{Verifier, WebhookLayer};
//!
//! let verifier = Verifier::builder(Scheme::stripe()).secret("whsec_test").build()?;
//! let layer = WebhookLayer::builder(verifier)
//!     .subscribe(Subscription::new(["invoice.*"])?)
//!     .build()?;
//! # let _ = layer;
//! # Ok::<(), tower_webhook::ConfigError>(())
//! ```
//!
//! Typed handlers per type, with a router (see [`EventRouter`] for one under axum):
//!
//! ```
//! use std::convert::Infallible;
//! use http::{Request, Response};
//! use serde::Deserialize;
//! use tower::service_fn;
//! use tower_webhook::events::{Event, EventRouter};
//! use tower_webhook::BufferedBody;
//!
//! #[derive(Deserialize)]
//! struct Invoice {
//!     data: InvoiceData,
//! }
//! #[derive(Deserialize)]
//! struct InvoiceData {
//!     object: serde_json::Value,
//! }
//! #[derive(Deserialize)]
//! struct Cancelled {
//!     data: CancelledData,
//! }
//! #[derive(Deserialize)]
//! struct CancelledData {
//!     object: StripeSubscription,
//! }
//! #[derive(Deserialize)]
//! struct StripeSubscription {
//!     customer: String,
//! }
//!
//! let router = EventRouter::builder()
//!     .route("invoice.paid", service_fn(|req: Request<BufferedBody>| async move {
//!         let response = match Event::<Invoice>::from_request(&req) {
//!             Ok(event) => Response::new(format!("paid: {}", event.data().data.object["id"])),
//!             // A body that does not fit: 422 and its code, as the axum extractor answers.
//!             Err(rejection) => {
//!                 let mut response = Response::new(rejection.code().to_owned());
//!                 *response.status_mut() = rejection.status();
//!                 response
//!             }
//!         };
//!         Ok::<_, Infallible>(response)
//!     }))
//!     .route("customer.subscription.deleted", service_fn(|req: Request<BufferedBody>| async move {
//!         let answer = match Event::<Cancelled>::from_request(&req) {
//!             Ok(event) => format!("cancelled: {}", event.data().data.object.customer),
//!             Err(rejection) => rejection.code().to_owned(),
//!         };
//!         Ok::<_, Infallible>(Response::new(answer))
//!     }))
//!     .build()?;
//! # let _ = router;
//! # Ok::<(), tower_webhook::ConfigError>(())
//! ```

mod event;
mod pattern;
mod router;
mod subscribe;

pub use event::Event;
pub use router::{EventRouter, EventRouterBuilder};
pub use subscribe::{Subscribe, SubscribeLayer, Subscription};

pub(crate) use pattern::Pattern;
