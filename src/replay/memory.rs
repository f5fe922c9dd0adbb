//! A bounded in-memory replay store for one process.

use std::collections::hash_map::RandomState;
use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::hash::{BuildHasher, Hasher};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::time::Instant;

use super::store::{Begin, ReplayStore, StoreError, StoreFuture, Token};

/// Keys are kept as 128-bit keyed hashes (SipHash with per-store random keys), so an entry has
/// a fixed size whatever the event id, and no one can choose ids that collide.
type KeyHash = u128;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    InFlight(Token),
    Done,
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    state: State,
    /// Milliseconds since the store was created.
    expires: u64,
}

/// The map's keys are already keyed SipHash outputs that no one can steer: hashing them again
/// would only cost time. This hasher passes their low 64 bits through.
#[derive(Debug, Clone, Copy, Default)]
struct PreHashed;

impl BuildHasher for PreHashed {
    type Hasher = PassThrough;

    fn build_hasher(&self) -> PassThrough {
        PassThrough(0)
    }
}

#[derive(Debug)]
struct PassThrough(u64);

impl Hasher for PassThrough {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Only `write_u128` is used (the key type is `u128`); fold anything else in anyway.
        for chunk in bytes.chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.0 ^= u64::from_le_bytes(word);
        }
    }

    fn write_u128(&mut self, key: u128) {
        self.0 = key as u64;
    }
}

#[derive(Debug, Default)]
struct Shard {
    entries: HashMap<KeyHash, Entry, PreHashed>,
    /// `(expires, key)` of every entry, oldest first.
    expiry: BTreeSet<(u64, KeyHash)>,
}

impl Shard {
    /// Removes up to `max` entries that have expired by `now`.
    fn reclaim(&mut self, now: u64, max: usize) {
        for _ in 0..max {
            match self.expiry.first() {
                Some(&(expires, key)) if expires <= now => {
                    self.expiry.pop_first();
                    self.entries.remove(&key);
                }
                _ => break,
            }
        }
    }

    fn live(&self, key: KeyHash, now: u64) -> Option<Entry> {
        self.entries.get(&key).copied().filter(|e| e.expires > now)
    }

    fn set(&mut self, key: KeyHash, entry: Entry) {
        if let Some(old) = self.entries.insert(key, entry) {
            self.expiry.remove(&(old.expires, key));
        }
        self.expiry.insert((entry.expires, key));
    }

    fn remove(&mut self, key: KeyHash) {
        if let Some(old) = self.entries.remove(&key) {
            self.expiry.remove(&(old.expires, key));
        }
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
    hash_a: RandomState,
    hash_b: RandomState,
    start: Instant,
}

impl MemoryStore {
    /// The default bound on entries.
    pub const DEFAULT_MAX_ENTRIES: usize = 100_000;

    /// A store holding at most `max_entries` keys (at least 1). Above 1,024 entries the keys
    /// are spread over 16 locks, each holding a sixteenth of the bound.
    #[must_use]
    pub fn new(max_entries: usize) -> Self {
        let max_entries = max_entries.max(1);
        let shards = if max_entries < 1024 { 1 } else { 16 };
        Self {
            inner: Arc::new(Inner {
                shards: (0..shards).map(|_| Mutex::default()).collect(),
                per_shard: max_entries.div_ceil(shards),
                max_entries,
                hash_a: RandomState::new(),
                hash_b: RandomState::new(),
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
        let hash =
            u128::from(inner.hash_a.hash_one(key)) << 64 | u128::from(inner.hash_b.hash_one(key));
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

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

impl ReplayStore for MemoryStore {
    fn begin(&self, key: &str, token: Token, lease: Duration) -> StoreFuture<Begin> {
        let (mut shard, hash, now) = self.locate(key);
        // A little reclaiming on every call keeps pace with expiry without a task.
        shard.reclaim(now, 4);
        let answer = match shard.live(hash, now) {
            Some(Entry {
                state: State::Done, ..
            }) => Ok(Begin::Done),
            Some(Entry {
                state: State::InFlight(_),
                ..
            }) => Ok(Begin::InFlight),
            None => {
                if shard.entries.len() >= self.inner.per_shard {
                    shard.reclaim(now, usize::MAX);
                }
                // An expired entry for this very key is replaced, not counted.
                let replacing = shard.entries.contains_key(&hash);
                if !replacing && shard.entries.len() >= self.inner.per_shard {
                    Err(StoreError::Full)
                } else {
                    let expires = now.saturating_add(millis(lease));
                    shard.set(
                        hash,
                        Entry {
                            state: State::InFlight(token),
                            expires,
                        },
                    );
                    Ok(Begin::Started)
                }
            }
        };
        StoreFuture::ready(answer)
    }

    fn complete(&self, key: &str, token: Token, ttl: Duration) -> StoreFuture<bool> {
        let (mut shard, hash, now) = self.locate(key);
        let held = shard.live(hash, now).map(|e| e.state) == Some(State::InFlight(token));
        if held {
            shard.set(
                hash,
                Entry {
                    state: State::Done,
                    expires: now.saturating_add(millis(ttl)),
                },
            );
        }
        StoreFuture::ready(Ok(held))
    }

    fn release(&self, key: &str, token: Token) -> StoreFuture<bool> {
        let (mut shard, hash, now) = self.locate(key);
        let held = shard.live(hash, now).map(|e| e.state) == Some(State::InFlight(token));
        if held {
            shard.remove(hash);
        }
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
        assert_eq!(store.begin("d", Token(9), LEASE).await, Ok(Begin::Started));
        assert_eq!(
            store.len(),
            1,
            "expired entries reclaimed when room was needed"
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
}
