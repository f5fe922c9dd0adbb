//! A bounded in-memory replay store for one process.

use std::cmp::Reverse;
use std::collections::hash_map::RandomState;
use std::collections::{BinaryHeap, VecDeque};
use std::fmt;
use std::hash::BuildHasher;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use hashbrown::HashTable;
use tokio::time::Instant;

use super::siphash::sip128;
use super::store::{Begin, ReplayStore, StoreError, StoreFuture, Token};

/// Keys are kept as 128-bit keyed hashes (SipHash-1-3 with a per-store random key), so an entry
/// has a fixed size whatever the event id, and no one can choose ids that collide.
type KeyHash = u128;

/// A key hash or a token as two halves: 8-byte aligned, so entries and records pack tightly.
type Halves = [u64; 2];

fn halves(value: u128) -> Halves {
    [(value >> 64) as u64, value as u64]
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Entry {
    /// Milliseconds since the store was created.
    expires: u64,
    /// The token of the attempt holding the key in flight; `None` once done.
    holder: Option<Halves>,
}

/// A key and its entry, as the table holds them.
#[derive(Debug, Clone, Copy)]
struct Slot {
    key: KeyHash,
    entry: Entry,
}

/// The table's hash of a key: its low 64 bits. Keys are already keyed SipHash outputs that no
/// one can steer, so hashing them again would only cost time.
fn hash(key: KeyHash) -> u64 {
    key as u64
}

/// Adds a slot whose key `table` does not hold.
fn add(table: &mut HashTable<Slot>, slot: Slot) {
    table.insert_unique(hash(slot.key), slot, |s| hash(s.key));
}

/// A shard's entries, in a hash table that grows and shrinks a few entries at a time.
///
/// A table that grows in one go makes the call that finds it full wait, under the shard's
/// lock, while every entry moves: milliseconds once a shard holds tens of thousands of keys
/// (see `BENCHMARKS.md`), and again, more rarely, once removed entries use up its free slots.
/// Here the full table becomes `old`, an empty one takes its place, and each key added from
/// then on also moves up to [`STEP`](Self::STEP) entries of `old`, in bucket order. The new
/// table is sized so that `old` is empty before it fills, so no call moves more than `STEP`
/// entries and neither table ever grows in place.
///
/// A table left mostly empty as keys expire is replaced the same way, by one a quarter of its
/// size or less (see [`sparse`](Self::sparse)), so a shard's memory follows its keys down after
/// a peak. Keys may then stop arriving, so a `begin` that adds no key takes a step too.
///
/// A key is in one table or the other, never both; lookups try `table` first.
#[derive(Debug, Default)]
struct Entries {
    table: HashTable<Slot>,
    /// The table being emptied into `table`, if any.
    old: Option<Old>,
    /// The last `old`, once empty, for the caller to free after unlocking the shard: giving a
    /// large table's memory back takes hundreds of microseconds.
    drained: Option<HashTable<Slot>>,
}

#[derive(Debug)]
struct Old {
    table: HashTable<Slot>,
    /// Every bucket below this one is empty: a removal never moves another entry, and
    /// nothing is added to this table.
    cursor: usize,
}

impl Entries {
    /// Entries of `old` moved per key added (or per `begin` that adds none), at most. Larger
    /// steps end a move sooner, so fewer lookups of absent keys try both tables. Filling a
    /// store of 10M to 2M keys took 4 to 6% longer in all than with tables that grow in one go
    /// at steps of 8 buckets, and 2 to 3% at 16 or 32. `MemoryStore`'s documentation gives
    /// this number.
    const STEP: usize = 16;

    /// Buckets of `old` one step may scan for its `STEP` entries. After a shrink `old`
    /// is at most an eighth full, so scanning only `STEP` buckets would move about two
    /// entries per key and keep the large table for a long time at a low rate.
    const SCAN: usize = 128;

    /// Tables with fewer buckets are never shrunk: they take under 48 KiB.
    const SHRINK_FROM: usize = 1024;

    fn get(&self, key: KeyHash) -> Option<Entry> {
        let same = |slot: &Slot| slot.key == key;
        self.table
            .find(hash(key), same)
            .or_else(|| self.old.as_ref()?.table.find(hash(key), same))
            .map(|slot| slot.entry)
    }

    /// Sets the entry of `key`, adding the key if it is new.
    fn insert(&mut self, key: KeyHash, entry: Entry) {
        let same = |slot: &Slot| slot.key == key;
        if let Some(old) = &mut self.old {
            // A key still in `old` moves now, with its new entry.
            if let Ok(found) = old.table.find_entry(hash(key), same) {
                found.remove();
            }
        }
        match self.table.find_entry(hash(key), same) {
            Ok(mut found) => found.get_mut().entry = entry,
            Err(_) => {
                if self.table.len() == self.table.capacity() {
                    self.resize();
                }
                add(&mut self.table, Slot { key, entry });
                self.step();
            }
        }
    }

    fn remove(&mut self, key: KeyHash) {
        let same = |slot: &Slot| slot.key == key;
        if let Ok(found) = self.table.find_entry(hash(key), same) {
            found.remove();
            if self.sparse() {
                self.resize();
            }
        } else if let Some(old) = &mut self.old {
            if let Ok(found) = old.table.find_entry(hash(key), same) {
                found.remove();
                if old.table.is_empty() {
                    self.drop_old();
                }
            }
        }
    }

    fn len(&self) -> usize {
        self.table.len() + self.old.as_ref().map_or(0, |old| old.table.len())
    }

    /// Whether `table` has room for eight times its entries, is large enough to be worth
    /// shrinking, and no move is on. [`resize`](Self::resize) then gives it a quarter of its
    /// buckets or less, at most half full: it neither grows back nor shrinks again soon.
    fn sparse(&self) -> bool {
        let buckets = self.table.num_buckets();
        self.old.is_none() && buckets >= Self::SHRINK_FROM && self.table.len() * 8 <= buckets
    }

    /// Replaces `table` (full, or [`sparse`](Self::sparse)) with an empty one that can take
    /// all its entries plus every key added while they move, and starts moving them.
    fn resize(&mut self) {
        // The sizing below empties `old` before `table` fills; were it not so, finish it now.
        if let Some(old) = self.old.take() {
            for slot in old.table {
                add(&mut self.table, slot);
            }
        }
        // Every key added while the entries move steps at least `STEP` buckets, so at most this
        // many are added. For a table full of entries, that is twice its buckets (hashbrown
        // keeps 1 in 8 free); for one full of removed entries, or sparse, fewer, so it shrinks.
        let added_while_moving = self.table.num_buckets().div_ceil(Self::STEP);
        let capacity = self.table.len() + added_while_moving + 1;
        let full = std::mem::replace(&mut self.table, HashTable::with_capacity(capacity));
        if full.is_empty() {
            // Full of removed entries only: nothing to move, and freed after unlocking too.
            self.drained = Some(full);
        } else {
            self.old = Some(Old {
                table: full,
                cursor: 0,
            });
        }
    }

    fn drop_old(&mut self) {
        self.drained = self.old.take().map(|old| old.table);
    }

    /// Moves the next `STEP` entries of `old`, looking at no more than `SCAN` buckets, and
    /// lets it go once it is empty. A bucket holds at most one entry, so the cursor advances
    /// at least `STEP` buckets, as [`resize`](Self::resize) counts on.
    fn step(&mut self) {
        let Some(old) = &mut self.old else {
            return;
        };
        let end = (old.cursor + Self::SCAN).min(old.table.num_buckets());
        let mut moved = 0;
        while old.cursor < end && moved < Self::STEP {
            if let Ok(found) = old.table.get_bucket_entry(old.cursor) {
                let (slot, _) = found.remove();
                add(&mut self.table, slot);
                moved += 1;
            }
            old.cursor += 1;
        }
        if old.table.is_empty() {
            self.drop_old();
        }
    }
}

/// When the entry of `key` expires, as it was set. An entry changed since (completed, released,
/// set again) has another expiry, so its old records are skipped when they come due.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Record {
    expires: u64,
    key: Halves,
}

impl Record {
    fn key(&self) -> KeyHash {
        u128::from(self.key[0]) << 64 | u128::from(self.key[1])
    }
}

/// How many TTLs get a queue of their own; the replay layer uses two (lease and done).
const QUEUES: usize = 4;

/// Expiry records of one TTL, oldest first.
#[derive(Debug)]
struct Queue {
    ttl: u64,
    records: Records,
}

/// A queue of records kept in chunks of at most [`CHUNK`](Self::CHUNK). Growing it allocates
/// one chunk and never moves the records already queued: a `VecDeque` doubles and copies
/// them, which held a shard's lock for a millisecond or more once a queue held tens of
/// thousands of records (see `BENCHMARKS.md`). A chunk is freed as soon as it is drained, so
/// memory follows the queue's length down as well as up.
#[derive(Debug, Default)]
struct Records {
    chunks: VecDeque<VecDeque<Record>>,
    len: usize,
}

impl Records {
    /// Records per full chunk (24 KiB). A new chunk is as large as the queue already is, within
    /// 8 and this, so a short queue takes little memory.
    const CHUNK: usize = 1024;

    fn front(&self) -> Option<&Record> {
        self.chunks.front().and_then(VecDeque::front)
    }

    fn back(&self) -> Option<&Record> {
        self.chunks.back().and_then(VecDeque::back)
    }

    fn push_back(&mut self, record: Record) {
        match self.chunks.back_mut() {
            Some(chunk) if chunk.len() < chunk.capacity() => chunk.push_back(record),
            _ => {
                let mut chunk = VecDeque::with_capacity(self.len.clamp(8, Self::CHUNK));
                chunk.push_back(record);
                self.chunks.push_back(chunk);
            }
        }
        self.len += 1;
    }

    fn pop_front(&mut self) -> Option<Record> {
        let chunk = self.chunks.front_mut()?;
        let record = chunk.pop_front();
        // No chunk is kept empty, so the first chunk's front is the queue's front.
        if chunk.is_empty() {
            self.chunks.pop_front();
        }
        self.len -= 1;
        record
    }
}

#[derive(Debug, Default)]
struct Shard {
    entries: Entries,
    /// One queue per TTL: every record of a queue expires `ttl` after it was written, so
    /// appending keeps it in expiry order and reclaiming reads only its front. Both are O(1).
    queues: Vec<Queue>,
    /// Records of TTLs beyond the first [`QUEUES`], earliest first.
    others: BinaryHeap<Reverse<Record>>,
}

impl Shard {
    /// Removes up to `max` records that have come due by `now`, with their entries.
    fn reclaim(&mut self, now: u64, max: usize) {
        for _ in 0..max {
            let Some(record) = self.pop_due(now) else {
                break;
            };
            if self.entries.get(record.key()).map(|e| e.expires) == Some(record.expires) {
                self.entries.remove(record.key());
            }
        }
    }

    fn pop_due(&mut self, now: u64) -> Option<Record> {
        for queue in &mut self.queues {
            if queue.records.front().is_some_and(|r| r.expires <= now) {
                return queue.records.pop_front();
            }
        }
        match self.others.peek() {
            Some(Reverse(r)) if r.expires <= now => self.others.pop().map(|Reverse(r)| r),
            _ => None,
        }
    }

    fn live(&self, key: KeyHash, now: u64) -> Option<Entry> {
        self.entries.get(key).filter(|e| e.expires > now)
    }

    /// Sets the entry of `key` to expire `ttl` milliseconds after `now`.
    fn set(&mut self, key: KeyHash, holder: Option<Halves>, ttl: u64, now: u64) {
        let mut expires = now.saturating_add(ttl);
        let record = |expires| Record {
            expires,
            key: halves(key),
        };
        if let Some(queue) = self.queues.iter_mut().find(|q| q.ttl == ttl) {
            // Callers on other threads may read the clock in another order than they take the
            // lock: never let a record expire before the one in front of it.
            if let Some(last) = queue.records.back() {
                expires = expires.max(last.expires);
            }
            queue.records.push_back(record(expires));
        } else if self.queues.len() < QUEUES {
            let mut records = Records::default();
            records.push_back(record(expires));
            self.queues.push(Queue { ttl, records });
        } else {
            self.others.push(Reverse(record(expires)));
        }
        self.entries.insert(key, Entry { expires, holder });
    }
}

/// An in-memory [`ReplayStore`] for a single process, bounded in entries and in time.
///
/// - Entries expire with their TTL (or in-flight lease) and are reclaimed as new keys arrive:
///   no cleanup task to run.
/// - At most `max_entries` are held, so a flood of unique ids cannot grow memory past the
///   bound. When the store is full of entries that are all still live, `begin` fails with
///   [`StoreError::Full`] and the layer answers **503** with `Retry-After`: a *done* id inside
///   its TTL is never forgotten to make room, since forgetting it would let a replay through.
///   Size it for your peak rate times the TTL.
/// - Growing never stops a call for long: a full table is replaced by a larger one and its
///   entries move a few at a time with the calls after it, so no call moves more than 16
///   entries. Tables shrink the same way once most of their keys have expired, so memory
///   follows the keys held down after a peak, not only up.
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
    /// SipHash key of this store, random.
    sip_key: [u64; 2],
    start: Instant,
}

impl MemoryStore {
    /// The default bound on entries.
    pub const DEFAULT_MAX_ENTRIES: usize = 100_000;

    /// A store holding at most `max_entries` keys (at least 1). Above 1,024 entries the keys
    /// are spread over 16 locks, each holding a sixteenth of the bound.
    #[must_use]
    pub fn new(max_entries: usize) -> Self {
        let shards = if max_entries < 1024 { 1 } else { 16 };
        Self::with_shards(max_entries, shards)
    }

    /// Like [`new`](Self::new), with the keys spread over `shards` locks (at least 1, at most
    /// `max_entries`), each holding its share of the bound, rounded up.
    ///
    /// More shards let more threads use the store at the same moment; fewer keep each call's
    /// shard warmer in the CPU's caches. Filling a store with a bound of 10M to 2M keys from
    /// one thread, 256 shards made each call about 150 ns slower than 16 (`BENCHMARKS.md`).
    /// No shard count makes a call wait for its shard's table to grow: tables grow a few
    /// entries at a time.
    ///
    /// ```
    /// use tower_webhook::replay::MemoryStore;
    ///
    /// let store = MemoryStore::with_shards(10_000_000, 256);
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
        self.inner
            .shards
            .iter()
            .map(|s| lock(s).entries.len())
            .sum()
    }

    /// Whether no entry is held.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn locate(&self, key: &str) -> (MutexGuard<'_, Shard>, KeyHash, u64) {
        let inner = &*self.inner;
        let hash = sip128::<1, 3>(inner.sip_key, key.as_bytes());
        // The low bits, which the table's hash also starts from: taking the shard from other
        // bits measured 50 to 90 ns slower per begin + complete in a store of 2M keys.
        let shard = &inner.shards[(hash as usize) % inner.shards.len()];
        let now = millis(inner.start.elapsed());
        (lock(shard), hash, now)
    }
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self::new(Self::DEFAULT_MAX_ENTRIES)
    }
}

/// A poisoned lock only means another thread panicked mid-update of plain data; the shard
/// is still consistent enough to use (at worst one entry is stale until it expires).
fn lock(shard: &Mutex<Shard>) -> MutexGuard<'_, Shard> {
    shard
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Unlocks a shard, then frees the table it finished emptying, if any.
fn unlock(mut shard: MutexGuard<'_, Shard>) {
    let drained = shard.entries.drained.take();
    drop(shard);
    drop(drained);
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

impl ReplayStore for MemoryStore {
    fn begin(&self, key: &str, token: Token, lease: Duration) -> StoreFuture<Begin> {
        let (mut shard, hash, now) = self.locate(key);
        // A little reclaiming on every call keeps pace with expiry without a task.
        shard.reclaim(now, 4);
        let found = shard.entries.get(hash);
        let answer = match found.filter(|e| e.expires > now) {
            Some(Entry { holder: None, .. }) => Ok(Begin::Done),
            Some(Entry {
                holder: Some(_), ..
            }) => Ok(Begin::InFlight),
            None => {
                // An expired entry for this very key is replaced, not counted.
                let replacing = found.is_some();
                if !replacing && shard.entries.len() >= self.inner.per_shard {
                    shard.reclaim(now, usize::MAX);
                }
                if !replacing && shard.entries.len() >= self.inner.per_shard {
                    Err(StoreError::Full)
                } else {
                    shard.set(hash, Some(halves(token.0)), millis(lease), now);
                    Ok(Begin::Started)
                }
            }
        };
        if answer != Ok(Begin::Started) {
            // No key added, so no move stepped: a call that only asks steps too, so that a
            // table being emptied is let go even once keys stop arriving.
            shard.entries.step();
        }
        unlock(shard);
        StoreFuture::ready(answer)
    }

    fn complete(&self, key: &str, token: Token, ttl: Duration) -> StoreFuture<bool> {
        let (mut shard, hash, now) = self.locate(key);
        let held = shard.live(hash, now).and_then(|e| e.holder) == Some(halves(token.0));
        if held {
            shard.set(hash, None, millis(ttl), now);
        }
        unlock(shard);
        StoreFuture::ready(Ok(held))
    }

    fn release(&self, key: &str, token: Token) -> StoreFuture<bool> {
        let (mut shard, hash, now) = self.locate(key);
        let held = shard.live(hash, now).and_then(|e| e.holder) == Some(halves(token.0));
        if held {
            // Its expiry records are skipped when they come due.
            shard.entries.remove(hash);
        }
        unlock(shard);
        StoreFuture::ready(Ok(held))
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
mod tests {
    use super::*;

    const LEASE: Duration = Duration::from_secs(60);
    const TTL: Duration = Duration::from_secs(3600);

    #[tokio::test(start_paused = true)]
    async fn begin_complete_release_are_guarded_by_the_token() {
        let store = MemoryStore::new(10);
        let (a, b) = (Token(1), Token(2));
        assert_eq!(store.begin("k", a, LEASE).await, Ok(Begin::Started));
        assert_eq!(store.begin("k", b, LEASE).await, Ok(Begin::InFlight));
        // Only the holder may release or complete.
        assert_eq!(store.release("k", b).await, Ok(false));
        assert_eq!(store.complete("k", b, TTL).await, Ok(false));
        assert_eq!(store.release("k", a).await, Ok(true));
        assert_eq!(store.begin("k", b, LEASE).await, Ok(Begin::Started));
        assert_eq!(store.complete("k", b, TTL).await, Ok(true));
        assert_eq!(store.begin("k", a, LEASE).await, Ok(Begin::Done));
        // Done cannot be released.
        assert_eq!(store.release("k", b).await, Ok(false));
        assert_eq!(store.begin("k", a, LEASE).await, Ok(Begin::Done));
    }

    #[tokio::test(start_paused = true)]
    async fn entries_expire_and_are_reclaimed() {
        let store = MemoryStore::new(10);
        store.begin("k", Token(1), LEASE).await.unwrap();
        store.complete("k", Token(1), TTL).await.unwrap();
        tokio::time::advance(TTL - Duration::from_millis(1)).await;
        assert_eq!(store.begin("k", Token(2), LEASE).await, Ok(Begin::Done));
        tokio::time::advance(Duration::from_millis(1)).await;
        assert_eq!(store.begin("k", Token(2), LEASE).await, Ok(Begin::Started));
        // An expired lease frees the key (a crashed handler does not block it forever).
        tokio::time::advance(LEASE).await;
        assert_eq!(store.begin("k", Token(3), LEASE).await, Ok(Begin::Started));
        assert_eq!(store.len(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_changed_entry_outlives_its_old_expiry_records() {
        let store = MemoryStore::new(10);
        // Released, then taken again later: the first lease's record must not end the second.
        store.begin("k", Token(1), LEASE).await.unwrap();
        store.release("k", Token(1)).await.unwrap();
        tokio::time::advance(Duration::from_secs(30)).await;
        store.begin("k", Token(2), LEASE).await.unwrap();
        tokio::time::advance(Duration::from_secs(31)).await;
        assert_eq!(store.begin("k", Token(3), LEASE).await, Ok(Begin::InFlight));
        // Done: the lease record comes due long before the TTL and is skipped.
        store.complete("k", Token(2), TTL).await.unwrap();
        tokio::time::advance(LEASE * 2).await;
        assert_eq!(store.begin("k", Token(4), LEASE).await, Ok(Begin::Done));
        assert_eq!(store.len(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn any_number_of_ttls_expire_in_time() {
        let store = MemoryStore::new(100);
        // More TTLs than queues: the rest go to the heap, in any order.
        for i in (1..=10u64).rev() {
            let key = format!("k{i}");
            store.begin(&key, Token(1), LEASE).await.unwrap();
            store
                .complete(&key, Token(1), Duration::from_secs(100 * i))
                .await
                .unwrap();
        }
        for i in 1..=10u64 {
            tokio::time::advance(Duration::from_secs(100)).await;
            // Reclaiming happens on `begin`: one per step is plenty.
            store.begin("probe", Token(9), LEASE).await.unwrap();
            store.release("probe", Token(9)).await.unwrap();
            for j in 1..=10u64 {
                let want = if j > i { Begin::Done } else { Begin::Started };
                let key = format!("k{j}");
                assert_eq!(store.begin(&key, Token(2), LEASE).await, Ok(want), "{key}");
                if want == Begin::Started {
                    store.release(&key, Token(2)).await.unwrap();
                }
            }
        }
        tokio::time::advance(LEASE).await;
        store.begin("last", Token(9), LEASE).await.unwrap();
        let shard = lock(&store.inner.shards[0]);
        assert_eq!(shard.entries.len(), 1, "everything else reclaimed");
        assert!(shard.others.is_empty());
    }

    #[test]
    fn records_of_one_ttl_stay_in_expiry_order() {
        let mut shard = Shard::default();
        // A caller that read the clock earlier but took the lock later.
        shard.set(1, None, 1000, 500);
        shard.set(2, None, 1000, 400);
        let records: Vec<_> = shard.queues[0]
            .records
            .chunks
            .iter()
            .flatten()
            .map(|r| r.expires)
            .collect();
        assert_eq!(records, [1500, 1500]);
        assert_eq!(
            shard.entries.get(2).unwrap().expires,
            1500,
            "entry and record agree"
        );
        shard.reclaim(1499, usize::MAX);
        assert_eq!(shard.entries.len(), 2);
        shard.reclaim(1500, usize::MAX);
        assert_eq!(shard.entries.len(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn full_of_live_entries_refuses_and_forgets_nothing() {
        let store = MemoryStore::new(3);
        for (i, k) in ["a", "b", "c"].into_iter().enumerate() {
            store.begin(k, Token(i as u128), LEASE).await.unwrap();
            store.complete(k, Token(i as u128), TTL).await.unwrap();
        }
        assert_eq!(
            store.begin("d", Token(9), LEASE).await,
            Err(StoreError::Full)
        );
        for k in ["a", "b", "c"] {
            assert_eq!(store.begin(k, Token(9), LEASE).await, Ok(Begin::Done));
        }
        tokio::time::advance(TTL).await;
        // Expired entries make room as it is needed.
        for k in ["d", "e", "f"] {
            assert_eq!(store.begin(k, Token(9), LEASE).await, Ok(Begin::Started));
        }
        assert_eq!(store.len(), 3);
        assert_eq!(
            store.begin("g", Token(9), LEASE).await,
            Err(StoreError::Full)
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_flood_of_unique_ids_stays_within_the_bound() {
        let store = MemoryStore::new(2048);
        let mut refused = 0;
        for i in 0..10_000u32 {
            match store
                .begin(&format!("evt_{i}"), Token(u128::from(i)), LEASE)
                .await
            {
                Ok(Begin::Started) => {}
                Err(StoreError::Full) => refused += 1,
                other => panic!("{other:?}"),
            }
            assert!(store.len() <= 2048);
        }
        assert!(refused >= 10_000 - 2048);
        // Once the leases pass, new ids are taken again.
        tokio::time::advance(LEASE).await;
        assert_eq!(
            store.begin("late", Token(1), LEASE).await,
            Ok(Begin::Started)
        );
    }

    #[test]
    fn chunked_records_are_a_fifo_that_never_moves_a_record() {
        let mut records = Records::default();
        let mut model = VecDeque::new();
        let mut seed = 0x2545_f491_4f6c_dd1d_u64;
        let mut next = 0u64;
        for step in 0..200_000 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            // Mostly pushes for the first half, mostly pops for the second.
            let push = (seed % 10) < if step < 100_000 { 7 } else { 3 };
            if push {
                let record = Record {
                    expires: next,
                    key: [next, !next],
                };
                next += 1;
                let chunks_before: Vec<_> = records.chunks.iter().map(VecDeque::capacity).collect();
                records.push_back(record);
                model.push_back(record);
                // Existing chunks keep their size: none grew, so no record was copied.
                let chunks_after: Vec<_> = records.chunks.iter().map(VecDeque::capacity).collect();
                assert_eq!(chunks_before[..], chunks_after[..chunks_before.len()]);
            } else {
                assert_eq!(records.pop_front(), model.pop_front());
            }
            assert_eq!(records.len, model.len());
            assert_eq!(records.front(), model.front());
            assert_eq!(records.back(), model.back());
            assert!(records.chunks.iter().all(|c| !c.is_empty()));
        }
        assert!(records
            .chunks
            .iter()
            .all(|c| c.capacity() <= Records::CHUNK));
        while let Some(record) = model.pop_front() {
            assert_eq!(records.pop_front(), Some(record));
        }
        assert_eq!(records.pop_front(), None);
        assert!(records.chunks.is_empty());
    }

    /// A random walk over a key space that fills, churns, drains in two steps and fills again,
    /// against a `HashMap`.
    #[test]
    fn the_table_agrees_with_a_map_and_resizes_a_few_entries_at_a_time() {
        let mut entries = Entries::default();
        let mut model = std::collections::HashMap::new();
        let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
        // Distinct keys whose low bits (the table's hash) vary: an odd multiplier is a bijection.
        let key = |k: u64| u128::from(k).wrapping_mul(0x2545_f491_4f6c_dd1d_0000_0000_0000_0001);
        let (mut grows, mut shrinks) = (0, 0);
        for step in 0..500_000u64 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let k = key(seed % 40_000);
            // Percent of inserts: fill, churn, drain to about a tenth of the keys, then to a
            // few hundred, fill again.
            let inserts = [85, 50, 10, 0, 85][(step / 100_000) as usize];
            let buckets = entries.table.num_buckets();
            let full = entries.table.len() == entries.table.capacity();
            let new_key = entries.get(k).is_none();
            let in_table = entries.table.find(hash(k), |s| s.key == k).is_some();
            let moving = entries.old.as_ref().map_or(0, |old| old.table.len());
            let adds = (seed >> 32) % 100 < inserts;
            if adds {
                let entry = Entry {
                    expires: step,
                    holder: None,
                };
                entries.insert(k, entry);
                model.insert(k, entry);
            } else {
                // As a `begin` that reclaims an entry and adds no key.
                entries.remove(k);
                entries.step();
                model.remove(&k);
            }
            assert_eq!(entries.get(k), model.get(&k).copied());
            assert_eq!(entries.len(), model.len());
            // `table` is replaced only when a new key finds it full, or a removal leaves it an
            // eighth full while no move is on, and never grows in place, so no call moves more
            // than a step's entries (plus the key itself).
            let sparse = moving == 0
                && in_table
                && buckets >= Entries::SHRINK_FROM
                && entries.table.len() * 8 <= buckets;
            if adds && new_key && full {
                grows += 1;
            } else if !adds && sparse {
                shrinks += 1;
                assert!(entries.table.num_buckets() <= buckets / 4, "step {step}");
            } else {
                assert_eq!(entries.table.num_buckets(), buckets, "step {step}");
            }
            let still_moving = entries.old.as_ref().map_or(0, |old| old.table.len());
            assert!(moving.saturating_sub(still_moving) <= Entries::STEP + 1);
            if let Some(old) = &entries.old {
                assert!(!old.table.is_empty(), "an empty old table is let go");
            }
            entries.drained = None;
            if step % 10_000 == 0 {
                for k in (0..40_000).map(key) {
                    assert_eq!(entries.get(k), model.get(&k).copied());
                }
            }
        }
        assert!(grows > 10, "{grows}");
        assert!(shrinks >= 3, "{shrinks}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_growing_store_keeps_every_key() {
        let store = MemoryStore::with_shards(100_000, 1);
        for i in 0..60_000u32 {
            let (key, token) = (format!("evt_{i}"), Token(u128::from(i)));
            assert_eq!(store.begin(&key, token, LEASE).await, Ok(Begin::Started));
            if i % 2 == 0 {
                assert!(store.complete(&key, token, TTL).await.unwrap());
            }
        }
        assert_eq!(store.len(), 60_000);
        for i in 0..60_000u32 {
            let want = if i % 2 == 0 {
                Begin::Done
            } else {
                Begin::InFlight
            };
            assert_eq!(
                store.begin(&format!("evt_{i}"), Token(0), LEASE).await,
                Ok(want)
            );
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_store_gives_its_tables_back_as_its_keys_expire() {
        let store = MemoryStore::with_shards(100_000, 1);
        for i in 0..50_000u32 {
            let (key, token) = (format!("evt_{i}"), Token(u128::from(i)));
            store.begin(&key, token, LEASE).await.unwrap();
            store.complete(&key, token, TTL).await.unwrap();
        }
        let buckets = || lock(&store.inner.shards[0]).entries.table.num_buckets();
        let peak = buckets();
        assert!(peak >= 50_000, "{peak}");
        // Expired keys are reclaimed as calls arrive, four records per call, even when the
        // calls add no key: here all ask about one key, done for longer.
        store.begin("probe", Token(1), LEASE).await.unwrap();
        store.complete("probe", Token(1), TTL * 2).await.unwrap();
        tokio::time::advance(TTL).await;
        for _ in 0..30_000 {
            assert_eq!(store.begin("probe", Token(2), LEASE).await, Ok(Begin::Done));
        }
        assert_eq!(store.len(), 1);
        assert!(buckets() < Entries::SHRINK_FROM, "{peak} to {}", buckets());
        {
            let shard = lock(&store.inner.shards[0]);
            assert!(shard.entries.old.is_none() && shard.entries.drained.is_none());
        }
        // And it grows again.
        for i in 0..20_000u32 {
            let key = format!("new_{i}");
            assert_eq!(store.begin(&key, Token(2), LEASE).await, Ok(Begin::Started));
        }
        for i in 0..20_000u32 {
            let key = format!("new_{i}");
            assert_eq!(
                store.begin(&key, Token(3), LEASE).await,
                Ok(Begin::InFlight)
            );
        }
        assert_eq!(store.len(), 20_001);
    }

    #[tokio::test(start_paused = true)]
    async fn a_store_on_many_shards_keeps_its_bound() {
        let store = MemoryStore::with_shards(4096, 256);
        assert_eq!(store.inner.shards.len(), 256);
        let mut refused = 0;
        for i in 0..8_000u32 {
            let (key, token) = (format!("evt_{i}"), Token(u128::from(i)));
            match store.begin(&key, token, LEASE).await {
                Ok(Begin::Started) => assert!(store.complete(&key, token, TTL).await.unwrap()),
                Err(StoreError::Full) => refused += 1,
                other => panic!("{other:?}"),
            }
            assert!(store.len() <= 4096);
        }
        assert_eq!(refused, 8_000 - store.len());
        assert_eq!(store.begin("evt_0", Token(1), LEASE).await, Ok(Begin::Done));
    }

    #[test]
    fn the_shard_count_is_kept_within_one_and_the_bound() {
        assert_eq!(MemoryStore::with_shards(10, 0).inner.shards.len(), 1);
        assert_eq!(MemoryStore::with_shards(10, 100).inner.shards.len(), 10);
        assert_eq!(MemoryStore::with_shards(0, 16).inner.shards.len(), 1);
        assert_eq!(MemoryStore::new(1023).inner.shards.len(), 1);
        assert_eq!(MemoryStore::new(100_000).inner.shards.len(), 16);
    }
}
