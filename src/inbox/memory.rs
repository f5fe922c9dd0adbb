//! The memory queue: for one process, bounded, lost on exit.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

use super::{Depth, Event, InboxError, Limits};

/// A map of queues behind one mutex, as the replay layer's memory store is: every operation
/// is a few map and deque steps.
#[derive(Debug, Default)]
pub(crate) struct Memory {
    state: Mutex<State>,
    /// Woken when an event is queued.
    queued: Notify,
}

#[derive(Debug, Default)]
struct State {
    next_entry: u64,
    ready: VecDeque<Event>,
    /// Retries waiting for their time, in no order: there are few, and each take scans them.
    delayed: Vec<(Instant, Event)>,
    /// Taken by a worker, by entry id.
    taken: HashMap<Box<str>, Event>,
    dead: Vec<Event>,
    /// Keys of the events held (waiting, taken, retrying or dead).
    held: HashSet<Box<str>>,
    /// Keys of the events processed successfully, oldest first, forgotten after their TTL or
    /// when more than the inbox holds.
    done: HashSet<Box<str>>,
    done_order: VecDeque<(Instant, Box<str>)>,
    /// Every event held, dead ones included, and their approximate bytes.
    events: usize,
    bytes: usize,
}

impl Memory {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Queues `event`; `false` when its key is held or done already.
    pub(crate) fn push(&self, mut event: Event, limits: Limits) -> Result<bool, InboxError> {
        let mut state = self.state();
        let keyed = !event.key.is_empty();
        if keyed {
            state.forget_done(Instant::now(), usize::MAX);
            if state.held.contains(&event.key) || state.done.contains(&event.key) {
                return Ok(false);
            }
        }
        let size = event.size();
        if state.events >= limits.max_events || state.bytes + size > limits.max_bytes {
            return Err(InboxError::Full);
        }
        state.next_entry += 1;
        event.entry = state.next_entry.to_string().into();
        if keyed {
            state.held.insert(event.key.clone());
        }
        state.events += 1;
        state.bytes += size;
        state.ready.push_back(event);
        drop(state);
        self.queued.notify_one();
        Ok(true)
    }

    /// Up to `max` events, waiting at most `wait` for the first.
    pub(crate) async fn take(&self, max: usize, wait: Duration) -> Vec<Event> {
        let deadline = Instant::now() + wait;
        loop {
            let queued = self.queued.notified();
            let next_due = {
                let mut state = self.state();
                let now = Instant::now();
                state.promote(now);
                let n = max.min(state.ready.len());
                let taken: Vec<Event> = state.ready.drain(..n).collect();
                if !taken.is_empty() {
                    for event in &taken {
                        state.taken.insert(event.entry.clone(), event.clone());
                    }
                    return taken;
                }
                state.delayed.iter().map(|(due, _)| *due).min()
            };
            let until = next_due.map_or(deadline, |due| due.min(deadline));
            if Instant::now() >= deadline {
                return Vec::new();
            }
            let _ = tokio::time::timeout_at(until, queued).await;
        }
    }

    /// Processed: forgotten, its key remembered for `ttl`.
    pub(crate) fn ack(&self, event: &Event, ttl: Duration, limits: Limits) {
        let mut state = self.state();
        if let Some(event) = state.taken.remove(&event.entry) {
            state.drop_event(&event);
            state.held.remove(&event.key);
        }
        if !event.key.is_empty() && state.done.insert(event.key.clone()) {
            let now = Instant::now();
            state.done_order.push_back((now + ttl, event.key.clone()));
            state.forget_done(now, limits.max_events);
        }
    }

    /// Failed: back after `delay`, as `event` says (attempts and error).
    pub(crate) fn retry(&self, event: &Event, delay: Duration) -> bool {
        let mut state = self.state();
        if state.taken.remove(&event.entry).is_none() {
            return false;
        }
        state.delayed.push((Instant::now() + delay, event.clone()));
        drop(state);
        self.queued.notify_one();
        true
    }

    /// Out of attempts: a dead letter, as `event` says.
    pub(crate) fn bury(&self, event: &Event) -> bool {
        let mut state = self.state();
        if state.taken.remove(&event.entry).is_none() {
            return false;
        }
        state.dead.push(event.clone());
        true
    }

    pub(crate) fn dead_letters(&self) -> Vec<Event> {
        self.state().dead.clone()
    }

    /// Dead letters whose entry id or event id is `id` (all of them for `None`) back in the
    /// queue with fresh attempts; how many.
    pub(crate) fn revive(&self, id: Option<&str>) -> usize {
        let mut state = self.state();
        let dead = std::mem::take(&mut state.dead);
        let (mut revived, kept): (Vec<Event>, Vec<Event>) = dead
            .into_iter()
            .partition(|e| id.is_none_or(|id| &*e.entry == id || e.id() == Some(id)));
        state.dead = kept;
        for event in &mut revived {
            event.attempts = 0;
        }
        let n = revived.len();
        state.ready.extend(revived);
        drop(state);
        self.queued.notify_one();
        n
    }

    pub(crate) fn depth(&self) -> Depth {
        let state = self.state();
        Depth {
            queued: state.ready.len() + state.taken.len(),
            retrying: state.delayed.len(),
            dead: state.dead.len(),
        }
    }
}

impl State {
    /// Moves the retries that are due to the back of the queue.
    fn promote(&mut self, now: Instant) {
        let mut i = 0;
        while i < self.delayed.len() {
            if self.delayed[i].0 <= now {
                let (_, event) = self.delayed.swap_remove(i);
                self.ready.push_back(event);
            } else {
                i += 1;
            }
        }
    }

    fn drop_event(&mut self, event: &Event) {
        self.events -= 1;
        self.bytes -= event.size();
    }

    /// Forgets the done keys past their TTL, and the oldest beyond `max`.
    fn forget_done(&mut self, now: Instant, max: usize) {
        while let Some((expires, key)) = self.done_order.front() {
            if *expires > now && self.done_order.len() <= max {
                break;
            }
            self.done.remove(key);
            self.done_order.pop_front();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(id: &str, body: usize) -> Event {
        Event::builder(vec![b'x'; body]).id(id).build()
    }

    #[tokio::test]
    async fn bounded_in_events_and_bytes_and_remembers_done_keys_within_both() {
        let memory = Memory::default();
        let limits = Limits {
            max_events: 3,
            max_bytes: 10_000,
        };
        memory.push(event("a", 100), limits).unwrap();
        assert_eq!(
            memory.push(event("big", 10_000), limits),
            Err(InboxError::Full)
        );
        memory.push(event("b", 100), limits).unwrap();
        memory.push(event("c", 100), limits).unwrap();
        assert_eq!(memory.push(event("d", 1), limits), Err(InboxError::Full));
        // Taking frees nothing; finishing does.
        let taken = memory.take(10, Duration::ZERO).await;
        assert_eq!(taken.len(), 3);
        assert_eq!(memory.push(event("d", 1), limits), Err(InboxError::Full));
        for e in &taken {
            memory.ack(e, Duration::from_secs(60), limits);
        }
        // Processed, their keys are not queued again.
        assert_eq!(memory.push(event("a", 1), limits), Ok(false));
        assert_eq!(memory.push(event("d", 1), limits), Ok(true));
        // Nor a key held.
        assert_eq!(memory.push(event("d", 1), limits), Ok(false));
        // At most as many done keys as events.
        let d = memory.take(1, Duration::ZERO).await;
        memory.ack(&d[0], Duration::from_secs(60), limits);
        assert_eq!(memory.push(event("d", 1), limits), Ok(false));
        assert_eq!(memory.push(event("a", 1), limits), Ok(true));
        // And only for their TTL.
        let a = memory.take(1, Duration::ZERO).await;
        memory.ack(&a[0], Duration::from_secs(60), limits);
        tokio::time::pause();
        tokio::time::advance(Duration::from_secs(61)).await;
        assert_eq!(memory.push(event("d", 1), limits), Ok(true));
    }
}
