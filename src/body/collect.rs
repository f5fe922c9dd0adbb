//! Reading a body into memory within a byte limit and a deadline.

use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use http::header::CONTENT_LENGTH;
use http::HeaderMap;
use http_body::Body;
use pin_project_lite::pin_project;
use tokio::time::Sleep;

use super::BodyLimits;
use crate::Rejection;

pin_project! {
    /// Collects a body into one [`Bytes`].
    ///
    /// A body that arrives as one chunk is kept as it is (no copy); otherwise the chunks are
    /// copied into one buffer. More than the limit is never held: the chunk that would pass it
    /// ends the read with 413. The deadline covers the whole body, from the first time it is
    /// not ready: what was already there when it was first polled took no waiting for the
    /// peer, so a body that is already complete (the common case behind hyper) costs neither a
    /// timer nor a clock read.
    pub(crate) struct Collect<B> {
        #[pin]
        body: B,
        #[pin]
        deadline: Option<Sleep>,
        timeout: Duration,
        first: Option<Bytes>,
        rest: BytesMut,
        len: usize,
        limit: usize,
    }
}

impl<B: Body> Collect<B> {
    /// Starts collecting, or refuses at once when `Content-Length` (or the body's own size
    /// hint) already says the body is over the limit.
    ///
    /// Must be polled within a Tokio runtime (the deadline is a Tokio timer).
    pub(crate) fn start(
        body: B,
        headers: &HeaderMap,
        limits: &BodyLimits,
    ) -> Result<Self, Rejection> {
        let limit = limits.byte_limit();
        let too_large = || Rejection::PayloadTooLarge { limit };
        if announced_len_over(headers, limit) || body.size_hint().lower() > limit as u64 {
            return Err(too_large());
        }
        Ok(Self {
            body,
            deadline: None,
            timeout: limits.time_limit(),
            first: None,
            rest: BytesMut::new(),
            len: 0,
            limit,
        })
    }
}

/// Whether any `Content-Length` value is a number over `limit`. Values that are not numbers are
/// left to the HTTP implementation (hyper refuses them before a service is called); the byte
/// count while reading still holds the limit.
fn announced_len_over(headers: &HeaderMap, limit: usize) -> bool {
    headers.get_all(CONTENT_LENGTH).iter().any(|v| {
        v.to_str()
            .ok()
            .and_then(|s| s.trim().parse::<u64>().ok())
            .is_some_and(|n| n > limit as u64)
    })
}

impl<B: Body> Future for Collect<B> {
    type Output = Result<Bytes, Rejection>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            let frame = match this.body.as_mut().poll_frame(cx) {
                Poll::Ready(frame) => frame,
                Poll::Pending => {
                    if this.deadline.is_none() {
                        // Beyond the clock's range, Tokio clamps it to its far future.
                        this.deadline.set(Some(tokio::time::sleep(*this.timeout)));
                    }
                    if let Some(deadline) = this.deadline.as_mut().as_pin_mut() {
                        ready!(deadline.poll(cx));
                    }
                    return Poll::Ready(Err(Rejection::BodyTimeout));
                }
            };
            match frame {
                None => {
                    let bytes = match this.first.take() {
                        Some(first) => first,
                        None => std::mem::take(this.rest).freeze(),
                    };
                    return Poll::Ready(Ok(bytes));
                }
                Some(Err(_)) => return Poll::Ready(Err(Rejection::BodyRead)),
                Some(Ok(frame)) => {
                    // Trailers carry nothing that is signed; they are dropped.
                    let Ok(mut data) = frame.into_data() else {
                        continue;
                    };
                    let n = data.remaining();
                    if n == 0 {
                        continue;
                    }
                    if n > *this.limit - *this.len {
                        return Poll::Ready(Err(Rejection::PayloadTooLarge { limit: *this.limit }));
                    }
                    *this.len += n;
                    if *this.len == n {
                        *this.first = Some(data.copy_to_bytes(n));
                    } else {
                        if let Some(first) = this.first.take() {
                            let hint = this.body.size_hint().lower();
                            let want = (*this.len as u64).max(hint).min(*this.limit as u64);
                            this.rest.reserve(want as usize);
                            this.rest.put(first);
                        }
                        this.rest.put(data);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::channel::Channel;
    use http_body_util::Full;
    use std::convert::Infallible;
    use std::time::Duration;

    fn limits(max: usize) -> BodyLimits {
        BodyLimits::new().max_bytes(max)
    }

    #[tokio::test]
    async fn one_chunk_is_kept_without_copy() {
        let data = Bytes::from_static(b"hello");
        let ptr = data.as_ptr();
        let got = Collect::start(Full::new(data), &HeaderMap::new(), &limits(5))
            .unwrap()
            .await
            .unwrap();
        assert_eq!(got.as_ptr(), ptr);
    }

    #[tokio::test]
    async fn content_length_over_limit_is_refused_before_reading() {
        let mut headers = HeaderMap::new();
        headers.insert(CONTENT_LENGTH, "6".parse().unwrap());
        let (_tx, body) = Channel::<Bytes, Infallible>::new(1);
        assert!(matches!(
            Collect::start(body, &headers, &limits(5)),
            Err(Rejection::PayloadTooLarge { limit: 5 })
        ));
    }

    #[tokio::test]
    async fn size_hint_over_limit_is_refused_before_reading() {
        let body = Full::new(Bytes::from_static(b"123456"));
        assert!(Collect::start(body, &HeaderMap::new(), &limits(5)).is_err());
    }

    #[tokio::test]
    async fn chunks_are_joined_and_the_limit_is_exact() {
        let (mut tx, body) = Channel::<Bytes, Infallible>::new(8);
        for part in [&b"ab"[..], b"", b"cd", b"e"] {
            tx.send_data(Bytes::from_static(part)).await.unwrap();
        }
        drop(tx);
        let got = Collect::start(body, &HeaderMap::new(), &limits(5))
            .unwrap()
            .await;
        assert_eq!(got.unwrap(), Bytes::from_static(b"abcde"));
    }

    #[tokio::test]
    async fn reading_stops_at_the_chunk_that_passes_the_limit() {
        let (mut tx, body) = Channel::<Bytes, Infallible>::new(8);
        tx.send_data(Bytes::from_static(b"abc")).await.unwrap();
        tx.send_data(Bytes::from_static(b"def")).await.unwrap();
        // The sender stays open: an endless body must still be refused.
        let got = Collect::start(body, &HeaderMap::new(), &limits(5))
            .unwrap()
            .await;
        assert_eq!(got, Err(Rejection::PayloadTooLarge { limit: 5 }));
        drop(tx);
    }

    #[tokio::test(start_paused = true)]
    async fn deadline_covers_the_whole_body() {
        let (mut tx, body) = Channel::<Bytes, Infallible>::new(4);
        let limits = BodyLimits::new().timeout(Duration::from_secs(10));
        let start = tokio::time::Instant::now();
        let collect = tokio::spawn(async move {
            let got = Collect::start(body, &HeaderMap::new(), &limits)
                .unwrap()
                .await;
            (got, start.elapsed())
        });
        // One byte every 3 seconds, then the last one: each chunk is prompt, the whole body is
        // not, and it ends when 10 seconds have passed since it was first waited for.
        for _ in 0..5 {
            if tx.send_data(Bytes::from_static(b"x")).await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_secs(3)).await;
        }
        let (got, took) = collect.await.unwrap();
        assert_eq!(got, Err(Rejection::BodyTimeout));
        assert_eq!(took, Duration::from_secs(10));
        drop(tx);
    }

    #[tokio::test(start_paused = true)]
    async fn a_body_already_complete_sets_no_deadline() {
        let (mut tx, body) = Channel::<Bytes, Infallible>::new(4);
        tx.send_data(Bytes::from_static(b"abc")).await.unwrap();
        drop(tx);
        let mut collect =
            std::pin::pin!(Collect::start(body, &HeaderMap::new(), &limits(5)).unwrap());
        let got = std::future::poll_fn(|cx| match collect.as_mut().poll(cx) {
            Poll::Ready(got) => Poll::Ready(got),
            Poll::Pending => panic!("a complete body is read in one poll"),
        });
        assert_eq!(got.await, Ok(Bytes::from_static(b"abc")));
        assert!(collect.deadline.is_none());
    }

    #[tokio::test]
    async fn body_error_is_a_read_rejection() {
        let (tx, body) = Channel::<Bytes, &'static str>::new(1);
        tx.abort("broken");
        let got = Collect::start(body, &HeaderMap::new(), &limits(10))
            .unwrap()
            .await;
        assert_eq!(got, Err(Rejection::BodyRead));
    }
}
