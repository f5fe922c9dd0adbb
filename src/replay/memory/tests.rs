//! The memory store's tests: its answers, expiry, bound and memory.

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
        shard.reclaim(now, usize::MAX);
        assert_eq!(shard.table.len(), 0, "an entry outlived its records");
        assert!(shard.expiry.is_empty());
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
    assert_eq!(shard.table.len(), 1, "everything else reclaimed");
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
    let buckets = || lock(&store.inner.shards[0]).table.capacity();
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
    assert!(buckets() <= Shard::SHRINK_FROM, "{peak} to {}", buckets());
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
    assert_eq!(MemoryStore::new(10_000_000).inner.shards.len(), 611);
}

#[tokio::test(start_paused = true)]
async fn the_records_of_released_keys_are_shed() {
    let store = MemoryStore::with_shards(100, 1);
    // A handler that fails forever: the same key taken and released, over and over.
    for i in 0..100_000u32 {
        let token = Token(u128::from(i));
        assert_eq!(store.begin("k", token, LEASE).await, Ok(Begin::Started));
        assert_eq!(store.release("k", token).await, Ok(true));
    }
    let shard = lock(&store.inner.shards[0]);
    assert!(shard.expiry.len() <= 2 * shard.table.len() + Shard::SHRINK_FROM + 1);
}
