//! Reading a body into memory within a byte limit and a deadline.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use http::header::CONTENT_LENGTH;
use http::HeaderMap;
use http_body::Body;
use pin_project_lite::pin_project;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
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
        // The share of the memory budget this body holds, when there is a budget.
        reservation: Option<Reservation>,
    }
}

/// A global memory budget for the bodies being read, in bytes: each request reserves its
/// `Content-Length` before its body is read (or grows its reservation as a chunked body
/// streams) and gives it back when its answer is done or its connection is gone. A request the
/// budget cannot cover is refused with 503 `{"error":"overloaded"}` and `Retry-After`.
///
/// Clones share the budget: give one to every stack of a process.
///
/// ```
/// use tower_webhook::body::BodyBudget;
///
/// let budget = BodyBudget::new(64 * 1024 * 1024);
/// assert_eq!(budget.in_use(), 0);
/// ```
#[derive(Clone)]
pub struct BodyBudget {
    bytes: Arc<Semaphore>,
    max: usize,
}

impl BodyBudget {
    /// The `Retry-After` of an `overloaded` answer.
    pub const RETRY_AFTER: Duration = Duration::from_secs(5);

    /// A budget of `max_bytes` for all the bodies being read at once.
    #[must_use]
    pub fn new(max_bytes: usize) -> Self {
        let max = max_bytes.min(Semaphore::MAX_PERMITS);
        Self {
            bytes: Arc::new(Semaphore::new(max)),
            max,
        }
    }

    /// The budget, in bytes.
    #[must_use]
    pub fn max_bytes(&self) -> usize {
        self.max
    }

    /// The bytes reserved now by the bodies being read or handled.
    #[must_use]
    pub fn in_use(&self) -> usize {
        self.max - self.bytes.available_permits()
    }

    fn take(&self, bytes: usize) -> Result<OwnedSemaphorePermit, Rejection> {
        u32::try_from(bytes)
            .ok()
            .and_then(|n| self.bytes.clone().try_acquire_many_owned(n).ok())
            .ok_or(Rejection::Overloaded {
                retry_after: Self::RETRY_AFTER,
            })
    }
}

impl fmt::Debug for BodyBudget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BodyBudget")
            .field("max_bytes", &self.max)
            .field("in_use", &self.in_use())
            .finish()
    }
}

/// The bytes of a budget one request holds, given back when dropped.
pub(crate) struct Reservation {
    budget: BodyBudget,
    held: Option<OwnedSemaphorePermit>,
}

impl Reservation {
    fn bytes(&self) -> usize {
        self.held.as_ref().map_or(0, |p| p.num_permits())
    }

    /// Holds at least `bytes`, or refuses.
    fn grow_to(&mut self, bytes: usize) -> Result<(), Rejection> {
        let more = bytes.saturating_sub(self.bytes());
        if more == 0 {
            return Ok(());
        }
        let permit = self.budget.take(more)?;
        match &mut self.held {
            Some(held) => held.merge(permit),
            None => self.held = Some(permit),
        }
        Ok(())
    }
}

impl fmt::Debug for Reservation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Reservation({} bytes)", self.bytes())
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
        budget: Option<&BodyBudget>,
    ) -> Result<Self, Rejection> {
        let limit = limits.byte_limit();
        let too_large = || Rejection::PayloadTooLarge { limit };
        if announced_len_over(headers, limit) || body.size_hint().lower() > limit as u64 {
            return Err(too_large());
        }
        let reservation = match budget {
            None => None,
            Some(budget) => {
                let mut reservation = Reservation {
                    budget: budget.clone(),
                    held: None,
                };
                // Under the limit, as checked above.
                let announced = body.size_hint().lower().max(announced_len(headers));
                reservation.grow_to(usize::try_from(announced).unwrap_or(usize::MAX))?;
                Some(reservation)
            }
        };
        Ok(Self {
            body,
            deadline: None,
            timeout: limits.time_limit(),
            first: None,
            rest: BytesMut::new(),
            len: 0,
            limit,
            reservation,
        })
    }

    /// The share of the budget the body holds, to keep while the request is handled.
    pub(crate) fn take_reservation(self: Pin<&mut Self>) -> Option<Reservation> {
        self.project().reservation.take()
    }
}

/// The first `Content-Length` that is a number, or 0.
fn announced_len(headers: &HeaderMap) -> u64 {
    headers
        .get_all(CONTENT_LENGTH)
        .iter()
        .find_map(|v| v.to_str().ok()?.trim().parse().ok())
        .unwrap_or(0)
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
                    if let Some(reservation) = this.reservation.as_mut() {
                        if let Err(rejection) = reservation.grow_to(*this.len) {
                            return Poll::Ready(Err(rejection));
                        }
                    }
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
        let got = Collect::start(Full::new(data), &HeaderMap::new(), &limits(5), None)
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
            Collect::start(body, &headers, &limits(5), None),
            Err(Rejection::PayloadTooLarge { limit: 5 })
        ));
    }

    #[tokio::test]
    async fn size_hint_over_limit_is_refused_before_reading() {
        let body = Full::new(Bytes::from_static(b"123456"));
        assert!(Collect::start(body, &HeaderMap::new(), &limits(5), None).is_err());
    }

    #[tokio::test]
    async fn chunks_are_joined_and_the_limit_is_exact() {
        let (mut tx, body) = Channel::<Bytes, Infallible>::new(8);
        for part in [&b"ab"[..], b"", b"cd", b"e"] {
            tx.send_data(Bytes::from_static(part)).await.unwrap();
        }
        drop(tx);
        let got = Collect::start(body, &HeaderMap::new(), &limits(5), None)
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
        let got = Collect::start(body, &HeaderMap::new(), &limits(5), None)
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
            let got = Collect::start(body, &HeaderMap::new(), &limits, None)
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
            std::pin::pin!(Collect::start(body, &HeaderMap::new(), &limits(5), None).unwrap());
        let got = std::future::poll_fn(|cx| match collect.as_mut().poll(cx) {
            Poll::Ready(got) => Poll::Ready(got),
            Poll::Pending => panic!("a complete body is read in one poll"),
        });
        assert_eq!(got.await, Ok(Bytes::from_static(b"abc")));
        assert!(collect.deadline.is_none());
    }

    #[tokio::test]
    async fn a_budget_is_reserved_up_front_or_as_chunks_come_and_given_back() {
        let budget = BodyBudget::new(10);
        let mut headers = HeaderMap::new();
        headers.insert(CONTENT_LENGTH, "6".parse().unwrap());
        let (_held_tx, held_body) = Channel::<Bytes, Infallible>::new(1);
        let held = Collect::start(held_body, &headers, &limits(100), Some(&budget)).unwrap();
        assert_eq!(budget.in_use(), 6);
        // 6 more would pass the budget: refused before reading.
        let (_tx, body) = Channel::<Bytes, Infallible>::new(1);
        assert!(matches!(
            Collect::start(body, &headers, &limits(100), Some(&budget)),
            Err(Rejection::Overloaded { .. })
        ));
        // A chunked body grows its share chunk by chunk, and is refused at the chunk that
        // passes the budget.
        let (mut tx, body) = Channel::<Bytes, Infallible>::new(4);
        tx.send_data(Bytes::from_static(b"abc")).await.unwrap();
        tx.send_data(Bytes::from_static(b"de")).await.unwrap();
        let got = Collect::start(body, &HeaderMap::new(), &limits(100), Some(&budget))
            .unwrap()
            .await;
        assert!(matches!(got, Err(Rejection::Overloaded { .. })));
        assert_eq!(budget.in_use(), 6, "the refused body gave its share back");
        drop(held);
        assert_eq!(budget.in_use(), 0);
        // A complete body keeps its share until the reservation is dropped.
        let mut collect = std::pin::pin!(Collect::start(
            Full::new(Bytes::from_static(b"12345678")),
            &HeaderMap::new(),
            &limits(100),
            Some(&budget),
        )
        .unwrap());
        assert_eq!(collect.as_mut().await.unwrap().len(), 8);
        let reservation = collect.as_mut().take_reservation();
        assert_eq!(budget.in_use(), 8);
        drop(reservation);
        assert_eq!(budget.in_use(), 0);
    }

    #[tokio::test]
    async fn body_error_is_a_read_rejection() {
        let (tx, body) = Channel::<Bytes, &'static str>::new(1);
        tx.abort("broken");
        let got = Collect::start(body, &HeaderMap::new(), &limits(10), None)
            .unwrap()
            .await;
        assert_eq!(got, Err(Rejection::BodyRead));
    }
}
