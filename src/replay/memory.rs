//! A bounded in-memory replay store for one process.

use std::cmp::Reverse;
use std::collections::hash_map::RandomState;
use std::collections::{BinaryHeap, VecDeque};
use std::fmt;
use std::hash::BuildHasher;
use std::num::NonZeroU64;
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
    /// The attempt holding the key in flight; `None` once done.
    holder: Option<Lease>,
}

/// An in-flight mark: who holds it, and where the record that would end it is queued, so that
/// completing or releasing it cancels that record (see [`Records::cancel`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Lease {
    token: Halves,
    record: Place,
}

// An entry, with its in-flight mark's token and record place, stays 32 bytes: `Place` is never
// zero, which leaves `Option<Lease>` the room to say `None`.
const _: () = assert!(std::mem::size_of::<Slot>() == 48);

/// Where a record is queued: its queue, the number of its chunk and its index in the chunk,
/// packed in 64 bits. Records never move while queued, so a place stays right until the record
/// is popped; [`Records::cancel`] also checks that it still holds the record meant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Place(NonZeroU64);

impl Place {
    const QUEUE_BITS: u32 = 2;
    const INDEX_BITS: u32 = 10;
    /// Set in every place; its absence means none.
    const SOME: u64 = 1 << 63;
    /// No place: the record went to the heap of further TTLs, where it cannot be reached.
    const NONE: Self = Self(NonZeroU64::MIN);

    fn new(queue: usize, (chunk, index): (u64, usize)) -> Self {
        const {
            assert!(QUEUES <= 1 << Place::QUEUE_BITS);
            assert!(Records::CHUNK <= 1 << Place::INDEX_BITS);
        }
        let shift = Self::QUEUE_BITS + Self::INDEX_BITS;
        // 2^51 chunks of at least eight records: never reached, but if it were, no place.
        if chunk >= 1 << (63 - shift) {
            return Self::NONE;
        }
        let packed =
            Self::SOME | chunk << shift | (index as u64) << Self::QUEUE_BITS | queue as u64;
        NonZeroU64::new(packed).map_or(Self::NONE, Self)
    }

    /// The queue, chunk number and index, unless this is no place.
    fn get(self) -> Option<(usize, u64, usize)> {
        let packed = self.0.get();
        if packed & Self::SOME == 0 {
            return None;
        }
        let mask = |bits: u32| (1u64 << bits) - 1;
        let queue = (packed & mask(Self::QUEUE_BITS)) as usize;
        let index = (packed >> Self::QUEUE_BITS & mask(Self::INDEX_BITS)) as usize;
        let chunk = (packed & !Self::SOME) >> (Self::QUEUE_BITS + Self::INDEX_BITS);
        Some((queue, chunk, index))
    }
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

    fn get_mut(&mut self, key: KeyHash) -> Option<&mut Entry> {
        let same = |slot: &Slot| slot.key == key;
        let slot = match self.table.find_mut(hash(key), same) {
            Some(slot) => slot,
            None => self.old.as_mut()?.table.find_mut(hash(key), same)?,
        };
        Some(&mut slot.entry)
    }

    /// Sets the entry of `key` where it is (a key still in `old` moves with the next steps, as
    /// any other), adding the key if it is new.
    fn insert(&mut self, key: KeyHash, entry: Entry) {
        match self.get_mut(key) {
            Some(found) => *found = entry,
            None => self.add_new(key, entry),
        }
    }

    /// Adds `key`, which neither table holds, without looking for it first.
    fn add_new(&mut self, key: KeyHash, entry: Entry) {
        debug_assert!(self.get(key).is_none());
        if self.table.len() == self.table.capacity() {
            self.resize();
        }
        add(&mut self.table, Slot { key, entry });
        self.step();
    }

    fn remove(&mut self, key: KeyHash) {
        self.remove_where(key, |_| true);
    }

    /// Removes `key` if its entry passes `check`.
    fn remove_where(&mut self, key: KeyHash, check: impl Fn(&Entry) -> bool) {
        let this = |slot: &Slot| slot.key == key && check(&slot.entry);
        if let Ok(found) = self.table.find_entry(hash(key), this) {
            found.remove();
            if self.sparse() {
                self.resize();
            }
        } else if let Some(old) = &mut self.old {
            if let Ok(found) = old.table.find_entry(hash(key), this) {
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
/// set again) has another expiry, so its old records are skipped when they come due; an
/// in-flight mark that is completed or released cancels its record at once, so that skipping
/// it costs no lookup.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Record {
    /// Milliseconds since the store was created, and [`CANCELLED`](Self::CANCELLED).
    expires: u64,
    key: Halves,
}

impl Record {
    /// Set in `expires` once the record's entry was completed or released. Queues stay in
    /// order of [`due`](Self::due), which ignores it.
    const CANCELLED: u64 = 1 << 63;
    /// The latest expiry an entry is given: 292 million years after the store was created.
    const LATEST: u64 = Self::CANCELLED - 1;

    fn key(&self) -> KeyHash {
        u128::from(self.key[0]) << 64 | u128::from(self.key[1])
    }

    fn due(&self) -> u64 {
        self.expires & !Self::CANCELLED
    }

    fn is_cancelled(&self) -> bool {
        self.expires & Self::CANCELLED != 0
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
///
/// Since no record moves, each has a fixed place until it is popped: the number of its chunk
/// (chunks are numbered in the order they are added) and its index in the chunk.
#[derive(Debug, Default)]
struct Records {
    chunks: VecDeque<Chunk>,
    /// The number of the first chunk in `chunks`.
    first: u64,
    len: usize,
}

#[derive(Debug)]
struct Chunk {
    /// Filled up to its first capacity, never past it.
    records: Vec<Record>,
    /// Records before this index have been popped.
    head: usize,
}

impl Chunk {
    fn is_drained(&self) -> bool {
        self.head == self.records.len()
    }
}

impl Records {
    /// Records per full chunk (24 KiB). A new chunk is as large as the queue already is, within
    /// 8 and this, so a short queue takes little memory.
    const CHUNK: usize = 1024;

    fn front(&self) -> Option<&Record> {
        let chunk = self.chunks.front()?;
        chunk.records.get(chunk.head)
    }

    fn back(&self) -> Option<&Record> {
        self.chunks.back()?.records.last()
    }

    /// Queues `record`, and answers its chunk's number and its index there.
    fn push_back(&mut self, record: Record) -> (u64, usize) {
        let chunk = match self.chunks.back_mut() {
            Some(chunk) if chunk.records.len() < chunk.records.capacity() => chunk,
            _ => {
                let records = Vec::with_capacity(self.len.clamp(8, Self::CHUNK));
                self.chunks.push_back(Chunk { records, head: 0 });
                self.chunks.back_mut().expect("just pushed")
            }
        };
        chunk.records.push(record);
        let index = chunk.records.len() - 1;
        self.len += 1;
        (self.first + self.chunks.len() as u64 - 1, index)
    }

    fn pop_front(&mut self) -> Option<Record> {
        let chunk = self.chunks.front_mut()?;
        let record = *chunk.records.get(chunk.head)?;
        chunk.head += 1;
        // No chunk is kept drained, so the first chunk's head is the queue's front.
        if chunk.is_drained() {
            self.chunks.pop_front();
            self.first += 1;
        }
        self.len -= 1;
        Some(record)
    }

    /// Cancels the record at `index` of chunk number `chunk`, if it is still queued and is
    /// `record`; answers whether it did.
    fn cancel(&mut self, chunk: u64, index: usize, record: Record) -> bool {
        let Some(chunk) = chunk
            .checked_sub(self.first)
            .and_then(|i| self.chunks.get_mut(usize::try_from(i).ok()?))
        else {
            return false;
        };
        match chunk.records.get_mut(index) {
            Some(queued) if index >= chunk.head && *queued == record => {
                queued.expires |= Record::CANCELLED;
                true
            }
            _ => false,
        }
    }

    #[cfg(test)]
    fn iter(&self) -> impl Iterator<Item = &Record> {
        self.chunks.iter().flat_map(|c| &c.records[c.head..])
    }
}

/// A shard: its entries, and the records that say when each expires.
#[derive(Debug, Default)]
struct Shard {
    entries: Entries,
    expiry: Expiry,
}

/// Expiry records, read in the order they come due.
#[derive(Debug, Default)]
struct Expiry {
    /// One queue per TTL: every record of a queue expires `ttl` after it was written, so
    /// appending keeps it in expiry order and reclaiming reads only its front. Both are O(1).
    queues: Vec<Queue>,
    /// Records of TTLs beyond the first [`QUEUES`], earliest first.
    others: BinaryHeap<Reverse<Record>>,
}

impl Expiry {
    /// Records that `key` expires `ttl` milliseconds after `now`, and answers when that is, as
    /// entry and record agree, and where the record went.
    fn push(&mut self, key: KeyHash, ttl: u64, now: u64) -> (u64, Place) {
        let mut expires = now.saturating_add(ttl).min(Record::LATEST);
        let record = |expires| Record {
            expires,
            key: halves(key),
        };
        let queue = self
            .queues
            .iter_mut()
            .enumerate()
            .find(|(_, q)| q.ttl == ttl);
        let place = if let Some((i, queue)) = queue {
            // Callers on other threads may read the clock in another order than they take the
            // lock: never let a record expire before the one in front of it.
            if let Some(last) = queue.records.back() {
                expires = expires.max(last.due());
            }
            Place::new(i, queue.records.push_back(record(expires)))
        } else if self.queues.len() < QUEUES {
            let mut records = Records::default();
            let place = Place::new(self.queues.len(), records.push_back(record(expires)));
            self.queues.push(Queue { ttl, records });
            place
        } else {
            self.others.push(Reverse(record(expires)));
            Place::NONE
        };
        (expires, place)
    }

    /// Cancels the record that [`push`](Self::push) put at `place` for `key` to expire at
    /// `expires`, if it is still queued.
    fn cancel(&mut self, key: KeyHash, expires: u64, place: Place) {
        let Some((queue, chunk, index)) = place.get() else {
            return;
        };
        if let Some(queue) = self.queues.get_mut(queue) {
            let record = Record {
                expires,
                key: halves(key),
            };
            queue.records.cancel(chunk, index, record);
        }
    }

    /// The next record due by `now`, if any.
    fn pop_due(&mut self, now: u64) -> Option<Record> {
        for queue in &mut self.queues {
            if queue.records.front().is_some_and(|r| r.due() <= now) {
                return queue.records.pop_front();
            }
        }
        match self.others.peek() {
            Some(Reverse(r)) if r.due() <= now => self.others.pop().map(|Reverse(r)| r),
            _ => None,
        }
    }
}

impl Shard {
    /// Removes up to `max` records that have come due by `now`, with their entries. A
    /// cancelled record counts towards `max` but costs no lookup.
    fn reclaim(&mut self, now: u64, max: usize) {
        for _ in 0..max {
            let Some(record) = self.expiry.pop_due(now) else {
                break;
            };
            if record.is_cancelled() {
                continue;
            }
            // Unless the entry changed since the record was written.
            let written = |entry: &Entry| entry.expires == record.expires;
            self.entries.remove_where(record.key(), written);
        }
    }

    /// Marks `key` in flight for `token` until `lease` milliseconds after `now`. Unless
    /// `replacing` (an expired entry of `key`), the key is new to both tables.
    fn start(&mut self, key: KeyHash, token: Token, lease: u64, now: u64, replacing: bool) {
        let (expires, record) = self.expiry.push(key, lease, now);
        let holder = Some(Lease {
            token: halves(token.0),
            record,
        });
        let entry = Entry { expires, holder };
        if replacing {
            self.entries.insert(key, entry);
        } else {
            self.entries.add_new(key, entry);
        }
    }

    /// The in-flight mark of `entry`, if it is live and `token` holds it.
    fn lease(entry: &Entry, token: Token, now: u64) -> Option<Lease> {
        let held = |lease: &Lease| entry.expires > now && lease.token == halves(token.0);
        entry.holder.filter(held)
    }

    /// Turns `token`'s in-flight mark of `key` into *done* for `ttl` milliseconds after `now`;
    /// answers whether `token` held it.
    fn complete(&mut self, key: KeyHash, token: Token, ttl: u64, now: u64) -> bool {
        let Some(entry) = self.entries.get_mut(key) else {
            return false;
        };
        let Some(lease) = Self::lease(entry, token, now) else {
            return false;
        };
        // The lease's record would only be skipped when it came due, after a lookup.
        self.expiry.cancel(key, entry.expires, lease.record);
        let (expires, _) = self.expiry.push(key, ttl, now);
        *entry = Entry {
            expires,
            holder: None,
        };
        true
    }

    /// Removes `token`'s in-flight mark of `key`; answers whether `token` held it.
    fn release(&mut self, key: KeyHash, token: Token, now: u64) -> bool {
        let Some(entry) = self.entries.get(key) else {
            return false;
        };
        let Some(lease) = Self::lease(&entry, token, now) else {
            return false;
        };
        self.expiry.cancel(key, entry.expires, lease.record);
        self.entries.remove(key);
        true
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
                    shard.start(hash, token, millis(lease), now, replacing);
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
        let held = shard.complete(hash, token, millis(ttl), now);
        unlock(shard);
        StoreFuture::ready(Ok(held))
    }

    fn release(&self, key: &str, token: Token) -> StoreFuture<bool> {
        let (mut shard, hash, now) = self.locate(key);
        let held = shard.release(hash, token, now);
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
    async fn completing_or_releasing_cancels_the_lease_record() {
        let store = MemoryStore::new(10);
        let state = || {
            let shard = lock(&store.inner.shards[0]);
            let cancelled = |q: usize| -> Vec<bool> {
                shard.expiry.queues[q]
                    .records
                    .iter()
                    .map(Record::is_cancelled)
                    .collect()
            };
            (cancelled(0), cancelled(1))
        };
        store.begin("a", Token(1), LEASE).await.unwrap();
        store.begin("b", Token(2), LEASE).await.unwrap();
        store.begin("c", Token(3), LEASE).await.unwrap();
        // Another token completes and releases nothing, and cancels nothing.
        assert_eq!(store.complete("a", Token(9), TTL).await, Ok(false));
        assert_eq!(store.release("b", Token(9)).await, Ok(false));
        assert_eq!(store.complete("a", Token(1), TTL).await, Ok(true));
        assert_eq!(store.release("b", Token(2)).await, Ok(true));
        // Leases, then the done mark: only the lease of `c` is left to end an entry.
        assert_eq!(state(), (vec![true, true, false], vec![false]));

        // Cancelled records are popped when they come due, and ended nothing: `a` is still
        // done. The live one ends `c`, whose holder never came back.
        tokio::time::advance(LEASE).await;
        assert_eq!(store.begin("a", Token(4), LEASE).await, Ok(Begin::Done));
        assert_eq!(store.len(), 1, "only a is left");
        assert_eq!(state(), (vec![], vec![false]));
        assert_eq!(store.begin("c", Token(5), LEASE).await, Ok(Begin::Started));
        // The lease of `c` that ran out can no longer be completed or cancel anything.
        assert_eq!(store.complete("c", Token(3), TTL).await, Ok(false));
        assert_eq!(state(), (vec![false], vec![false]));
    }

    /// Random begins, completes and releases over a few hundred keys, with two leases and
    /// four TTLs (so that some records go to the heap) and time moving on, against a model of
    /// what each key holds: every answer agrees, and once everything has expired no entry or
    /// record is left behind.
    #[tokio::test(start_paused = true)]
    async fn the_store_agrees_with_a_model_of_leases_and_done_marks() {
        #[derive(Clone, Copy)]
        enum Held {
            InFlight(Token),
            Done,
        }
        let store = MemoryStore::with_shards(100_000, 2);
        let mut model: std::collections::HashMap<u64, (Held, u64)> = Default::default();
        let secs = Duration::from_secs;
        let leases = [secs(60), secs(61)];
        let ttls = [secs(30), secs(90), secs(120), secs(150)];
        let mut seed = 0x51_7cc1_b727_220a_u64;
        let (mut now, mut tokens) = (0u64, 0u128);
        let mut answers = [0usize; 4];
        for _ in 0..200_000 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let k = seed % 300;
            let key = format!("k{k}");
            let live = model.get(&k).copied().filter(|&(_, expires)| expires > now);
            let holder = match live {
                Some((Held::InFlight(token), _)) if (seed >> 20) % 4 != 0 => token,
                _ => Token(u128::MAX),
            };
            match (seed >> 10) % 8 {
                0..=3 => {
                    let lease = leases[(seed >> 30) as usize % 2];
                    tokens += 1;
                    let want = match live {
                        Some((Held::Done, _)) => Begin::Done,
                        Some((Held::InFlight(_), _)) => Begin::InFlight,
                        None => {
                            let expires = now + lease.as_millis() as u64;
                            model.insert(k, (Held::InFlight(Token(tokens)), expires));
                            Begin::Started
                        }
                    };
                    answers[want as usize] += 1;
                    assert_eq!(store.begin(&key, Token(tokens), lease).await, Ok(want));
                }
                4..=5 => {
                    let ttl = ttls[(seed >> 30) as usize % 4];
                    let held = holder != Token(u128::MAX);
                    if held {
                        model.insert(k, (Held::Done, now + ttl.as_millis() as u64));
                        answers[3] += 1;
                    }
                    assert_eq!(store.complete(&key, holder, ttl).await, Ok(held));
                }
                6 => {
                    let held = holder != Token(u128::MAX);
                    if held {
                        model.remove(&k);
                    }
                    assert_eq!(store.release(&key, holder).await, Ok(held));
                }
                _ => {
                    let by = (seed >> 40) % 3_000;
                    tokio::time::advance(Duration::from_millis(by)).await;
                    now += by;
                }
            }
        }
        // Every kind of answer came up often.
        assert!(answers.iter().all(|&n| n > 5_000), "{answers:?}");
        tokio::time::advance(ttls[3]).await;
        now += ttls[3].as_millis() as u64;
        for shard in store.inner.shards.iter() {
            let mut shard = lock(shard);
            assert!(shard.expiry.queues.len() == QUEUES && !shard.expiry.others.is_empty());
            shard.reclaim(now, usize::MAX);
            assert_eq!(shard.entries.len(), 0, "an entry outlived its records");
            assert!(shard.expiry.queues.iter().all(|q| q.records.len == 0));
            assert!(shard.expiry.others.is_empty());
        }
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
        assert!(shard.expiry.others.is_empty());
    }

    #[test]
    fn records_of_one_ttl_stay_in_expiry_order() {
        let mut shard = Shard::default();
        let records = |shard: &Shard, q: usize| -> Vec<u64> {
            shard.expiry.queues[q]
                .records
                .iter()
                .map(|r| r.expires)
                .collect()
        };
        // A caller that read the clock earlier but took the lock later.
        shard.start(1, Token(1), 1000, 500, false);
        shard.start(2, Token(2), 1000, 400, false);
        assert_eq!(records(&shard, 0), [1500, 1500]);
        assert_eq!(
            shard.entries.get(2).unwrap().expires,
            1500,
            "entry and record agree"
        );
        // The same for the done marks; the leases' records are cancelled.
        assert!(shard.complete(1, Token(1), 2000, 600));
        assert!(shard.complete(2, Token(2), 2000, 550));
        assert_eq!(records(&shard, 1), [2600, 2600]);
        assert_eq!(shard.entries.get(2).unwrap().expires, 2600);
        let cancelled = Record::CANCELLED | 1500;
        assert_eq!(records(&shard, 0), [cancelled, cancelled]);
        shard.reclaim(2599, usize::MAX);
        assert_eq!(shard.entries.len(), 2);
        shard.reclaim(2600, usize::MAX);
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
        // Every queued record, as it should be, with its place.
        let mut model = VecDeque::new();
        let mut popped = None;
        let mut seed = 0x2545_f491_4f6c_dd1d_u64;
        let mut next = 0u64;
        let mut cancelled = 0;
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
                let chunks = |records: &Records| -> Vec<_> {
                    (records.chunks.iter())
                        .map(|c| (c.records.as_ptr(), c.records.capacity()))
                        .collect()
                };
                let before = chunks(&records);
                let place = records.push_back(record);
                model.push_back((record, place));
                // Existing chunks stay where they were, at their size: no record moved.
                assert_eq!(before[..], chunks(&records)[..before.len()]);
            } else {
                let want = model.pop_front();
                assert_eq!(records.pop_front(), want.map(|(record, _)| record));
                popped = want.or(popped);
            }
            // Now and then a queued record is cancelled at its place, which must hold it and
            // no other.
            if (seed >> 40) % 4 == 0 && !model.is_empty() {
                let i = (seed >> 20) as usize % model.len();
                let (record, (chunk, index)) = &mut model[i];
                let other = Record {
                    key: [0, 0],
                    ..*record
                };
                assert!(!records.cancel(*chunk, *index, other));
                assert!(records.cancel(*chunk, *index, *record), "step {step}");
                record.expires |= Record::CANCELLED;
                assert!(record.is_cancelled() && record.due() == record.key[0]);
                cancelled += 1;
            }
            // A popped record's place holds nothing any more, whether its chunk is gone or not.
            if let Some((record, (chunk, index))) = popped {
                assert!(!records.cancel(chunk, index, record), "step {step}");
            }
            assert_eq!(records.len, model.len());
            assert_eq!(records.front(), model.front().map(|(record, _)| record));
            assert_eq!(records.back(), model.back().map(|(record, _)| record));
            assert!(records.chunks.iter().all(|c| !c.is_drained()));
        }
        assert!(cancelled > 10_000, "{cancelled}");
        assert!(records
            .chunks
            .iter()
            .all(|c| c.records.capacity() <= Records::CHUNK));
        while let Some((record, _)) = model.pop_front() {
            assert_eq!(records.pop_front(), Some(record));
        }
        assert_eq!(records.pop_front(), None);
        assert!(records.chunks.is_empty());
    }

    #[test]
    fn a_place_packs_its_queue_chunk_and_index() {
        for (queue, chunk, index) in [(0, 0, 0), (3, 1 << 50, 1023), (1, 12_345, 7)] {
            let place = Place::new(queue, (chunk, index));
            assert_eq!(place.get(), Some((queue, chunk, index)));
        }
        assert_eq!(Place::new(0, (1 << 51, 0)), Place::NONE);
        assert_eq!(Place::NONE.get(), None);
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
