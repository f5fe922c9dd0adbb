//! A bounded in-memory replay store for one process.

use std::cmp::Reverse;
use std::collections::hash_map::RandomState;
use std::collections::BinaryHeap;
use std::fmt;
use std::hash::{BuildHasher, Hasher};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use hashbrown::HashTable;
use siphasher::sip128::{Hasher128, SipHasher13};
use tokio::time::Instant;

use super::store::{Begin, ReplayStore, StoreError, StoreFuture, Token};

/// A key as the store holds it: a keyed 128-bit SipHash of the key text (random key per
/// store), so an entry has a fixed size whatever the event id and no one can choose ids that
/// collide. Two halves rather than a `u128`, so that slots pack at 8-byte alignment.
type KeyHash = [u64; 2];

/// A key and what it holds.
#[derive(Debug, Clone, Copy)]
struct Slot {
    key: KeyHash,
    /// Milliseconds since the store was created.
    expires: u64,
    /// The token of the attempt holding the key in flight; `None` once done.
    holder: Option<[u64; 2]>,
}

/// The table's hash of a key: its first half, already a keyed hash no one can steer.
fn hash(key: &KeyHash) -> u64 {
    key[0]
}

fn halves(token: Token) -> [u64; 2] {
    [(token.0 >> 64) as u64, token.0 as u64]
}

/// One lock's share of the keys.
///
/// `expiry` is a min-heap of `(expires, key)` records. Every key in `table` has a record due
/// no later than the key first could expire; a record that comes due finds its key expired
/// (and removes it), renewed (and is pushed again for the new time), or gone (and is dropped).
/// So changing a key's time pushes nothing, and a key has one record, give or take those of
/// released keys, which the heap sheds when it grows past twice the table.
#[derive(Debug, Default)]
struct Shard {
    table: HashTable<Slot>,
    expiry: BinaryHeap<Reverse<(u64, KeyHash)>>,
}

impl Shard {
    /// Records reclaimed per call at most, on top of those needed to make room.
    const STEP: usize = 8;
    /// Tables this small are never shrunk.
    const SHRINK_FROM: usize = 1024;

    fn find_mut(&mut self, key: &KeyHash) -> Option<&mut Slot> {
        self.table.find_mut(hash(key), |s| s.key == *key)
    }

    /// Pops up to `most` records that are due, ending the keys they find expired.
    fn reclaim(&mut self, now: u64, most: usize) {
        for _ in 0..most {
            match self.expiry.peek() {
                Some(Reverse((at, _))) if *at <= now => {}
                _ => break,
            }
            let Some(Reverse((_, key))) = self.expiry.pop() else {
                break;
            };
            if let Ok(found) = self.table.find_entry(hash(&key), |s| s.key == key) {
                let expires = found.get().expires;
                if expires <= now {
                    found.remove();
                } else {
                    self.expiry.push(Reverse((expires, key)));
                }
            }
        }
        self.tidy();
    }

    /// Sheds the records of released keys once they outnumber the keys, and gives memory
    /// back once most keys have gone. Each walks one shard, which [`MemoryStore::new`] keeps
    /// small enough that no call waits long.
    fn tidy(&mut self) {
        if self.expiry.len() > 2 * self.table.len() + Self::SHRINK_FROM {
            self.expiry = self
                .table
                .iter()
                .map(|s| Reverse((s.expires, s.key)))
                .collect();
        }
        if self.table.capacity() > Self::SHRINK_FROM && self.table.len() < self.table.capacity() / 4
        {
            self.table.shrink_to(self.table.len() * 2, |s| hash(&s.key));
            self.expiry.shrink_to(self.table.len() * 2);
        }
    }

    fn begin(
        &mut self,
        key: KeyHash,
        token: Token,
        expires: u64,
        now: u64,
        bound: usize,
    ) -> Result<Begin, StoreError> {
        self.reclaim(now, Self::STEP);
        if let Some(slot) = self.find_mut(&key) {
            if slot.expires > now {
                return Ok(if slot.holder.is_some() {
                    Begin::InFlight
                } else {
                    Begin::Done
                });
            }
            // Expired but not yet reclaimed: taken again where it is; its record is due.
            slot.expires = expires;
            slot.holder = Some(halves(token));
            return Ok(Begin::Started);
        }
        while self.table.len() >= bound {
            // Make room from what is due, one record at a time; live keys are never dropped.
            let due = matches!(self.expiry.peek(), Some(Reverse((at, _))) if *at <= now);
            if !due {
                return Err(StoreError::Full);
            }
            self.reclaim(now, 1);
        }
        let slot = Slot {
            key,
            expires,
            holder: Some(halves(token)),
        };
        self.table.insert_unique(hash(&key), slot, |s| hash(&s.key));
        self.expiry.push(Reverse((expires, key)));
        Ok(Begin::Started)
    }

    /// The caller's live in-flight mark on `key`, if it holds one.
    fn held(&mut self, key: &KeyHash, token: Token, now: u64) -> Option<&mut Slot> {
        self.find_mut(key)
            .filter(|s| s.expires > now && s.holder == Some(halves(token)))
    }
}

/// An in-memory [`ReplayStore`] for a single process, bounded in entries and in time.
///
/// - Entries expire with their TTL (or in-flight lease) and are reclaimed as calls arrive: no
///   cleanup task to run.
/// - At most `max_entries` are held, so a flood of unique ids cannot grow memory past the
///   bound. When the store is full of entries that are all still live, `begin` fails with
///   [`StoreError::Full`] and the layer answers **503** with `Retry-After`: a *done* id inside
///   its TTL is never forgotten to make room, since forgetting it would let a replay through.
///   Size it for your peak rate times the TTL.
/// - Keys are spread over locks of at most 16,384 entries each, so that no call waits long
///   for its lock's table to grow or shrink; memory follows the keys held, up and down.
/// - Clones share the same entries.
///
/// ```
/// use tower_webhook::replay::MemoryStore;
///
/// let store = MemoryStore::new(100_000);
/// assert_eq!(store.max_entries(), 100_000);
/// ```
#[derive(Clone)]
pub struct MemoryStore {
    inner: Arc<Inner>,
}

struct Inner {
    shards: Box<[Mutex<Shard>]>,
    per_shard: usize,
    max_entries: usize,
    sip_key: [u64; 2],
    start: Instant,
}

impl MemoryStore {
    /// The default bound on entries.
    pub const DEFAULT_MAX_ENTRIES: usize = 100_000;
    /// The most entries one lock holds, when [`new`](Self::new) picks the lock count.
    const SHARD_ENTRIES: usize = 16_384;

    /// A store holding at most `max_entries` keys (at least 1). Below 1,024 entries they sit
    /// behind one lock; above, behind 16 locks or as many as keep each to 16,384 entries.
    #[must_use]
    pub fn new(max_entries: usize) -> Self {
        let shards = if max_entries < 1024 {
            1
        } else {
            max_entries.div_ceil(Self::SHARD_ENTRIES).max(16)
        };
        Self::with_shards(max_entries, shards)
    }

    /// Like [`new`](Self::new), with the keys spread over `shards` locks (at least 1, at most
    /// `max_entries`), each holding its share of the bound, rounded up. More shards let more
    /// threads use the store at once, and make each lock's table smaller to grow or shrink.
    ///
    /// ```
    /// use tower_webhook::replay::MemoryStore;
    ///
    /// let store = MemoryStore::with_shards(10_000_000, 1024);
    /// assert_eq!(store.max_entries(), 10_000_000);
    /// ```
    #[must_use]
    pub fn with_shards(max_entries: usize, shards: usize) -> Self {
        let max_entries = max_entries.max(1);
        let shards = shards.clamp(1, max_entries);
        Self {
            inner: Arc::new(Inner {
                shards: (0..shards).map(|_| Mutex::default()).collect(),
                per_shard: max_entries.div_ceil(shards),
                max_entries,
                sip_key: [
                    RandomState::new().hash_one(0u8),
                    RandomState::new().hash_one(1u8),
                ],
                start: Instant::now(),
            }),
        }
    }

    /// The bound on entries.
    #[must_use]
    pub fn max_entries(&self) -> usize {
        self.inner.max_entries
    }

    /// How many entries are held now, live or expired but not yet reclaimed.
    #[must_use]
    pub fn len(&self) -> usize {
        self.inner.shards.iter().map(|s| lock(s).table.len()).sum()
    }

    /// Whether no entry is held.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The shard of `key`, locked, with the key's hash and the time now in milliseconds.
    fn locate(&self, key: &str) -> (MutexGuard<'_, Shard>, KeyHash, u64) {
        let inner = &*self.inner;
        let mut hasher = SipHasher13::new_with_keys(inner.sip_key[0], inner.sip_key[1]);
        hasher.write(key.as_bytes());
        let h = hasher.finish128();
        let shard = &inner.shards[(h.h2 % inner.shards.len() as u64) as usize];
        let now = millis(inner.start.elapsed());
        (lock(shard), [h.h1, h.h2], now)
    }
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self::new(Self::DEFAULT_MAX_ENTRIES)
    }
}

/// A poisoned lock only means another thread panicked mid-update of plain data; the shard is
/// still consistent enough to use (at worst one entry is stale until it expires).
fn lock(shard: &Mutex<Shard>) -> MutexGuard<'_, Shard> {
    shard
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

impl ReplayStore for MemoryStore {
    fn begin(&self, key: &str, token: Token, lease: Duration) -> StoreFuture<Begin> {
        let (mut shard, key, now) = self.locate(key);
        let expires = now.saturating_add(millis(lease));
        StoreFuture::ready(shard.begin(key, token, expires, now, self.inner.per_shard))
    }

    fn complete(&self, key: &str, token: Token, ttl: Duration) -> StoreFuture<bool> {
        let (mut shard, key, now) = self.locate(key);
        let held = shard.held(&key, token, now).map(|slot| {
            slot.holder = None;
            slot.expires = now.saturating_add(millis(ttl));
        });
        StoreFuture::ready(Ok(held.is_some()))
    }

    fn release(&self, key: &str, token: Token) -> StoreFuture<bool> {
        let (mut shard, key, now) = self.locate(key);
        let held = shard.held(&key, token, now).is_some();
        if held {
            if let Ok(found) = shard.table.find_entry(hash(&key), |s| s.key == key) {
                found.remove();
            }
        }
        StoreFuture::ready(Ok(held))
    }

    fn name(&self) -> &'static str {
        "memory"
    }
}

impl fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryStore")
            .field("max_entries", &self.inner.max_entries)
            .field("shards", &self.inner.shards.len())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests;
