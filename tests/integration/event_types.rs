//! Every sender's documented example delivery yields the right event type, through the
//! one-call stack (which attaches the body the type is read from).

use crate::common;

use std::convert::Infallible;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Request, Response};
use http_body_util::{BodyExt, Full};
use tower::{service_fn, Layer, ServiceExt};
use tower_webhook::scheme::{Scheme, SignedContent, TimestampUnit};
use tower_webhook::{BufferedBody, Verified, Verifier, WebhookLayer};

const SECRET: &str = "whsec_c2VjcmV0LWZvci10ZXN0cw==";

/// What the handler behind the stack sees: the type and whether it is signed.
async fn type_of(
    scheme: Scheme,
    mut headers: HeaderMap,
    extra: &[(&str, &str)],
    body: &str,
) -> String {
    let verifier = Verifier::builder(scheme).secret(SECRET).build().unwrap();
    let stack = WebhookLayer::builder(verifier).build().unwrap();
    let svc = stack.layer(service_fn(|req: Request<BufferedBody>| async move {
        let verified = req.extensions().get::<Verified>().unwrap();
        let answer = format!(
            "{} {}",
            verified.event_type().unwrap_or("-"),
            verified.event_type_is_signed()
        );
        Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(answer))))
    }));
    for (name, value) in extra {
        let name = http::HeaderName::from_bytes(name.as_bytes()).unwrap();
        headers.insert(name, HeaderValue::from_str(value).unwrap());
    }
    let mut req = Request::post("/")
        .body(Full::new(Bytes::copy_from_slice(body.as_bytes())))
        .unwrap();
    *req.headers_mut() = headers;
    req.extensions_mut()
        .insert(std::net::SocketAddr::from(([127, 0, 0, 1], 1)));
    let res = svc.oneshot(req).await.unwrap();
    assert_eq!(res.status(), 200);
    String::from_utf8(res.into_body().collect().await.unwrap().to_bytes().to_vec()).unwrap()
}

async fn delivered(scheme: Scheme, extra: &[(&str, &str)], body: &str) -> String {
    let headers = common::sign(&scheme, SECRET, "msg_1", common::now(), body.as_bytes());
    type_of(scheme, headers, extra, body).await
}

#[tokio::test]
async fn each_sender_names_its_type_where_its_documentation_says() {
    // Stripe's event object: `type` is a top-level field, after the nested `data.object`,
    // which has a `type` of its own (a card's).
    let stripe = r#"{"id":"evt_1NG8Du2eZvKYlo2CUI79vXWy","object":"event","api_version":"2022-11-15","created":1686089970,"data":{"object":{"id":"in_1","object":"invoice","payment_method_details":{"type":"card"}}},"livemode":false,"pending_webhooks":1,"request":{"id":null,"idempotency_key":null},"type":"invoice.paid"}"#;
    assert_eq!(
        delivered(Scheme::stripe(), &[], stripe).await,
        "invoice.paid true"
    );

    // Standard Webhooks' example payload.
    let standard = r#"{"type":"contact.created","timestamp":"2022-11-03T20:26:10.344522Z","data":{"id":"1f81eb52-5198-4599-803e-771906343485","type":"organization"}}"#;
    assert_eq!(
        delivered(Scheme::standard_webhooks(), &[], standard).await,
        "contact.created true"
    );

    // GitHub: the event header, and the body's `action` when it has one.
    let issues = r#"{"action":"opened","issue":{"number":1,"title":"Found a bug"},"repository":{"full_name":"octo/hello"}}"#;
    assert_eq!(
        delivered(Scheme::github(), &[("x-github-event", "issues")], issues).await,
        "issues.opened false"
    );
    let push = r#"{"ref":"refs/heads/main","before":"0000","after":"1111","commits":[]}"#;
    assert_eq!(
        delivered(Scheme::github(), &[("x-github-event", "push")], push).await,
        "push false"
    );
    assert_eq!(delivered(Scheme::github(), &[], push).await, "- false");

    // Slack: inside an event callback, and the URL verification handshake.
    let callback = r#"{"token":"XXYYZZ","team_id":"T123ABC456","api_app_id":"A123ABC456","event":{"type":"app_mention","user":"U123ABC456","text":"hi"},"type":"event_callback","event_id":"Ev123ABC456","event_time":1515449522}"#;
    assert_eq!(
        delivered(Scheme::slack(), &[], callback).await,
        "app_mention true"
    );
    let handshake = r#"{"token":"Jhj5dZrVaK7ZwHHjRyZWjbDl","challenge":"3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P","type":"url_verification"}"#;
    assert_eq!(
        delivered(Scheme::slack(), &[], handshake).await,
        "url_verification true"
    );

    // Shopify: the topic header.
    let order = r#"{"id":820982911946154500,"email":"jon@example.com"}"#;
    assert_eq!(
        delivered(
            Scheme::shopify(),
            &[("x-shopify-topic", "orders/create")],
            order
        )
        .await,
        "orders/create false"
    );
}

#[tokio::test]
async fn the_published_vectors_without_a_type_have_none() {
    // Slack's documented slash command is form-encoded: no type.
    let slash = "token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&command=%2Fwebhook-collect&text=";
    assert_eq!(delivered(Scheme::slack(), &[], slash).await, "- true");
    // The Standard Webhooks vector's body has no `type`.
    let body = r#"{"email":"test@example.com","username":"test_user"}"#;
    assert_eq!(
        delivered(Scheme::standard_webhooks(), &[], body).await,
        "- true"
    );
}

#[tokio::test]
async fn a_custom_scheme_names_a_header_or_a_field() {
    let base = || {
        Scheme::custom("x-signature")
            .signed_content(SignedContent::TimestampBody)
            .timestamp_header("x-timestamp", TimestampUnit::Seconds)
    };
    let by_header = base().type_header("x-event-type").build().unwrap();
    assert_eq!(
        delivered(by_header, &[("x-event-type", "user.deleted")], "{}").await,
        "user.deleted false"
    );
    let by_field = base().type_field("event").build().unwrap();
    assert_eq!(
        delivered(
            by_field,
            &[],
            r#"{"event":"user.created","type":"ignored"}"#
        )
        .await,
        "user.created true"
    );
    let none = base().build().unwrap();
    assert_eq!(delivered(none, &[], r#"{"type":"x"}"#).await, "- false");
    assert!(base().type_field("").build().is_err());
    assert!(base().type_header("bad header").build().is_err());
}
