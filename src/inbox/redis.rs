//! The Redis Streams queue (feature `redis`).
//!
//! Keys, under the namespace `ns` (in braces, so that they share one cluster slot):
//!
//! | key | type | holds |
//! |---|---|---|
//! | `{ns}:queue` | stream, consumer group `workers` | events waiting or being handled |
//! | `{ns}:retry` | sorted set | retries by due time (Redis's clock, ms) → their hash |
//! | `{ns}:retry:<entry>` | hash | one retry's fields |
//! | `{ns}:dead` | stream | dead letters |
//! | `{ns}:held:<key>` | string, with a TTL | an event queued and not yet processed (waiting, retrying or dead) |
//! | `{ns}:done:<key>` | string, with a TTL | an event processed successfully |
//!
//! Every move between them is one Lua script, so an event is always in exactly one place. An
//! entry is deleted from the stream once it leaves it, so the stream holds only live events.

use std::collections::HashMap;
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::streams::{StreamAutoClaimOptions, StreamId, StreamReadOptions, StreamReadReply};
use redis::{AsyncCommands, Script, Value};

use super::{Depth, Event, InboxError};
use crate::ConfigError;

const GROUP: &str = "workers";

/// Queues the fields (`ARGV[3..]`) unless the stream holds `ARGV[1]` (> 0) entries already,
/// and marks the event's key held (`KEYS[2]`, for `ARGV[2]` ms); answers 0 without queuing it
/// again when the key is held or done (`KEYS[3]`), so that a write retried after a lost answer
/// queues the event once.
const INGEST: &str = r"
if KEYS[2] and (redis.call('EXISTS', KEYS[2]) == 1 or redis.call('EXISTS', KEYS[3]) == 1) then
  return 0
end
local max = tonumber(ARGV[1])
if max > 0 and redis.call('XLEN', KEYS[1]) >= max then return -1 end
redis.call('XADD', KEYS[1], '*', unpack(ARGV, 3))
if KEYS[2] then redis.call('SET', KEYS[2], '1', 'PX', ARGV[2]) end
return 1
";

/// Processed: marks the key done (`KEYS[2]`, if given) for `ARGV[3]` ms instead of held
/// (`KEYS[3]`), and removes the entry.
const ACK: &str = r"
if KEYS[2] then
  redis.call('SET', KEYS[2], '1', 'PX', ARGV[3])
  redis.call('DEL', KEYS[3])
end
redis.call('XACK', KEYS[1], ARGV[1], ARGV[2])
return redis.call('XDEL', KEYS[1], ARGV[2])
";

/// Moves an entry the consumer `ARGV[3]` holds out of the stream, with its `attempts` and
/// `error` set to `ARGV[4]` and `ARGV[5]`: to the dead stream `KEYS[2]` when `ARGV[6]` is
/// `dead`, otherwise into the hash `KEYS[3]`, due in `ARGV[6]` ms in the retry set `KEYS[2]`.
const MOVE: &str = r"
local p = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[2], ARGV[2], 1)
if #p == 0 or p[1][2] ~= ARGV[3] then return 0 end
local e = redis.call('XRANGE', KEYS[1], ARGV[2], ARGV[2])[1]
redis.call('XACK', KEYS[1], ARGV[1], ARGV[2])
redis.call('XDEL', KEYS[1], ARGV[2])
if not e then return 0 end
local f = e[2]
for i = 1, #f, 2 do
  if f[i] == 'attempts' then f[i + 1] = ARGV[4] elseif f[i] == 'error' then f[i + 1] = ARGV[5] end
end
if ARGV[6] == 'dead' then
  redis.call('XADD', KEYS[2], '*', unpack(f))
else
  local t = redis.call('TIME')
  local due = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) + tonumber(ARGV[6])
  redis.call('DEL', KEYS[3])
  redis.call('HSET', KEYS[3], unpack(f))
  redis.call('ZADD', KEYS[2], due, KEYS[3])
end
return 1
";

/// Moves up to `ARGV[1]` retries that are due from the set `KEYS[1]` back to the stream.
const PROMOTE: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, ARGV[1])
for _, k in ipairs(due) do
  local f = redis.call('HGETALL', k)
  if #f > 0 then redis.call('XADD', KEYS[2], '*', unpack(f)) end
  redis.call('DEL', k)
  redis.call('ZREM', KEYS[1], k)
end
return #due
";

/// Resets the idle time of an entry the consumer `ARGV[3]` still holds.
const TOUCH: &str = r"
local p = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[2], ARGV[2], 1)
if #p == 0 or p[1][2] ~= ARGV[3] then return 0 end
redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[3], 0, ARGV[2], 'JUSTID')
return 1
";

/// Moves the dead letters `ARGV` back to the stream with fresh attempts.
const REVIVE: &str = r"
local n = 0
for _, id in ipairs(ARGV) do
  local e = redis.call('XRANGE', KEYS[1], id, id)[1]
  if e then
    local f = e[2]
    for i = 1, #f, 2 do if f[i] == 'attempts' then f[i + 1] = '0' end end
    redis.call('XADD', KEYS[2], '*', unpack(f))
    redis.call('XDEL', KEYS[1], id)
    n = n + 1
  end
end
return n
";

/// The queue's Redis: one multiplexed connection for short calls, and the key names.
pub(crate) struct Redis {
    client: redis::Client,
    connection: ConnectionManager,
    queue: String,
    retry: String,
    dead: String,
    prefix: String,
    ingest: Script,
    ack: Script,
    moves: Script,
    promote: Script,
    touch: Script,
    revive: Script,
}

/// A worker's own connection for blocking reads, which would hold up a shared one.
#[derive(Clone)]
pub(crate) struct Reader(ConnectionManager);

type Result<T> = std::result::Result<T, InboxError>;

fn failed(error: redis::RedisError) -> InboxError {
    InboxError::unavailable(error)
}

fn config(response: Duration) -> ConnectionManagerConfig {
    ConnectionManagerConfig::new()
        .set_connection_timeout(Some(Duration::from_secs(1)))
        .set_response_timeout(Some(response))
        .set_number_of_retries(1)
        .set_max_delay(Duration::from_secs(1))
}

impl Redis {
    pub(crate) fn new(url: &str, namespace: &str) -> std::result::Result<Self, ConfigError> {
        // The URL may hold a password: never echo it.
        let invalid = |_| ConfigError::InvalidStore {
            reason: "the Redis URL cannot be used",
        };
        let client = redis::Client::open(url).map_err(invalid)?;
        let connection = client
            .get_connection_manager_lazy(config(Duration::from_secs(5)))
            .map_err(invalid)?;
        let ns = format!("{{{namespace}}}");
        Ok(Self {
            client,
            connection,
            queue: format!("{ns}:queue"),
            retry: format!("{ns}:retry"),
            dead: format!("{ns}:dead"),
            prefix: ns,
            ingest: Script::new(INGEST),
            ack: Script::new(ACK),
            moves: Script::new(MOVE),
            promote: Script::new(PROMOTE),
            touch: Script::new(TOUCH),
            revive: Script::new(REVIVE),
        })
    }

    fn connection(&self) -> ConnectionManager {
        self.connection.clone()
    }

    /// Queues `event`; `false` when its key is held or done already.
    pub(crate) async fn push(&self, event: &Event, max_len: usize, ttl: Duration) -> Result<bool> {
        let mut call = self.ingest.key(&self.queue);
        if !event.key.is_empty() {
            call.key(self.held_key(&event.key))
                .key(self.done_key(&event.key));
        }
        call.arg(max_len).arg(ttl.as_millis().max(1));
        event.write_fields(|name, value| {
            call.arg(name).arg(value);
        });
        let queued: i64 = call
            .invoke_async(&mut self.connection())
            .await
            .map_err(failed)?;
        match queued {
            -1 => Err(InboxError::Full),
            n => Ok(n == 1),
        }
    }

    /// Creates the consumer group, reading the stream from its start, unless it exists.
    pub(crate) async fn create_group(&self) -> Result<()> {
        let created: redis::RedisResult<()> = self
            .connection()
            .xgroup_create_mkstream(&self.queue, GROUP, "0")
            .await;
        match created {
            Err(e) if e.code() != Some("BUSYGROUP") => Err(failed(e)),
            _ => Ok(()),
        }
    }

    pub(crate) fn reader(&self, wait: Duration) -> Result<Reader> {
        let config = config(wait + Duration::from_secs(5));
        let connection = self.client.get_connection_manager_lazy(config);
        connection.map(Reader).map_err(failed)
    }

    /// Due retries back into the stream, then up to `max` new events for `consumer`, waiting
    /// at most `wait` for the first.
    pub(crate) async fn take(
        &self,
        reader: &Reader,
        consumer: &str,
        max: usize,
        wait: Duration,
    ) -> Result<Vec<Event>> {
        let promoted: redis::RedisResult<usize> = self
            .promote
            .key(&self.retry)
            .key(&self.queue)
            .arg(max.max(100))
            .invoke_async(&mut self.connection())
            .await;
        promoted.map_err(failed)?;
        let options = StreamReadOptions::default()
            .group(GROUP, consumer)
            .count(max)
            .block(usize::try_from(wait.as_millis()).unwrap_or(usize::MAX));
        let read: redis::RedisResult<Option<StreamReadReply>> = reader
            .0
            .clone()
            .xread_options(&[&self.queue], &[">"], &options)
            .await;
        let read = match read {
            Err(e) if e.code() == Some("NOGROUP") => {
                // Redis lost its data (restarted without persistence): start again.
                self.create_group().await?;
                return Ok(Vec::new());
            }
            read => read.map_err(failed)?,
        };
        let entries = read.into_iter().flat_map(|r| r.keys).flat_map(|k| k.ids);
        self.readable(consumer, entries.collect()).await
    }

    /// Takes over up to `max` entries idle for `idle` (their worker stopped), from the cursor
    /// `start`; answers the next cursor.
    pub(crate) async fn reclaim(
        &self,
        consumer: &str,
        idle: Duration,
        start: &str,
        max: usize,
    ) -> Result<(String, Vec<Event>)> {
        let idle = u64::try_from(idle.as_millis()).unwrap_or(u64::MAX);
        let options = StreamAutoClaimOptions::default().count(max);
        let reply: redis::streams::StreamAutoClaimReply = self
            .connection()
            .xautoclaim_options(&self.queue, GROUP, consumer, idle, start, options)
            .await
            .map_err(failed)?;
        let events = self.readable(consumer, reply.claimed).await?;
        Ok((reply.next_stream_id, events))
    }

    /// The events of `entries`; an entry that cannot be read goes to the dead letters.
    async fn readable(&self, consumer: &str, entries: Vec<StreamId>) -> Result<Vec<Event>> {
        let mut events = Vec::with_capacity(entries.len());
        for entry in entries {
            match read(&entry.id, &entry.map) {
                Some(event) => events.push(event),
                None => {
                    #[cfg(feature = "tracing")]
                    tracing::error!(target: "tower_webhook", entry = %entry.id, "inbox entry unreadable: dead-lettered");
                    self.move_entry(&entry.id, consumer, "0", "unreadable entry", None)
                        .await?;
                }
            }
        }
        Ok(events)
    }

    fn done_key(&self, key: &str) -> String {
        format!("{}:done:{key}", self.prefix)
    }

    fn held_key(&self, key: &str) -> String {
        format!("{}:held:{key}", self.prefix)
    }

    pub(crate) async fn ack(&self, event: &Event, ttl: Duration) -> Result<()> {
        let mut call = self.ack.key(&self.queue);
        if !event.key.is_empty() {
            call.key(self.done_key(&event.key))
                .key(self.held_key(&event.key));
        }
        call.arg(GROUP)
            .arg(&*event.entry)
            .arg(ttl.as_millis().max(1));
        let _: i64 = call
            .invoke_async(&mut self.connection())
            .await
            .map_err(failed)?;
        Ok(())
    }

    /// The event back in the queue after `delay` (its attempts and error as it says), or to
    /// the dead letters for `None`; `false` when `consumer` no longer holds it.
    pub(crate) async fn settle(
        &self,
        event: &Event,
        consumer: &str,
        delay: Option<Duration>,
    ) -> Result<bool> {
        let attempts = event.attempts.to_string();
        let error = event.last_error().unwrap_or("");
        self.move_entry(&event.entry, consumer, &attempts, error, delay)
            .await
    }

    async fn move_entry(
        &self,
        entry: &str,
        consumer: &str,
        attempts: &str,
        error: &str,
        delay: Option<Duration>,
    ) -> Result<bool> {
        let (target, due) = match delay {
            None => (&self.dead, "dead".to_owned()),
            Some(delay) => (&self.retry, delay.as_millis().to_string()),
        };
        let moved: i64 = self
            .moves
            .key(&self.queue)
            .key(target)
            .key(format!("{}:retry:{entry}", self.prefix))
            .arg(GROUP)
            .arg(entry)
            .arg(consumer)
            .arg(attempts)
            .arg(error)
            .arg(due)
            .invoke_async(&mut self.connection())
            .await
            .map_err(failed)?;
        Ok(moved == 1)
    }

    /// Keeps the worker's hold on the event: another worker reclaims only idle entries.
    pub(crate) async fn touch(&self, event: &Event, consumer: &str) -> Result<bool> {
        let held: i64 = self
            .touch
            .key(&self.queue)
            .arg(GROUP)
            .arg(&*event.entry)
            .arg(consumer)
            .invoke_async(&mut self.connection())
            .await
            .map_err(failed)?;
        Ok(held == 1)
    }

    pub(crate) async fn dead_letters(&self) -> Result<Vec<Event>> {
        let mut connection = self.connection();
        let mut events = Vec::new();
        let mut start = "-".to_owned();
        loop {
            let page: redis::streams::StreamRangeReply = connection
                .xrange_count(&self.dead, &start, "+", 500)
                .await
                .map_err(failed)?;
            let Some(last) = page.ids.last() else {
                return Ok(events);
            };
            start = format!("({}", last.id);
            events.extend(page.ids.iter().filter_map(|e| read(&e.id, &e.map)));
        }
    }

    /// The dead letters `entries` back in the queue with fresh attempts; how many.
    pub(crate) async fn revive(&self, entries: &[&str]) -> Result<usize> {
        let mut revived = 0;
        for chunk in entries.chunks(500) {
            let n: usize = self
                .revive
                .key(&self.dead)
                .key(&self.queue)
                .arg(chunk)
                .invoke_async(&mut self.connection())
                .await
                .map_err(failed)?;
            revived += n;
        }
        Ok(revived)
    }

    pub(crate) async fn depth(&self) -> Result<Depth> {
        let (queued, retrying, dead): (usize, usize, usize) = redis::pipe()
            .xlen(&self.queue)
            .zcard(&self.retry)
            .xlen(&self.dead)
            .query_async(&mut self.connection())
            .await
            .map_err(failed)?;
        Ok(Depth {
            queued,
            retrying,
            dead,
        })
    }

    pub(crate) async fn ping(&self) -> Result<()> {
        let _: String = redis::cmd("PING")
            .query_async(&mut self.connection())
            .await
            .map_err(failed)?;
        Ok(())
    }
}

/// The event in a stream entry's fields.
fn read(entry: &str, map: &HashMap<String, Value>) -> Option<Event> {
    Event::from_fields(entry, |name| match map.get(name)? {
        Value::BulkString(bytes) => Some(bytes.clone()),
        _ => None,
    })
}

impl std::fmt::Debug for Redis {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Redis")
            .field("queue", &self.queue)
            .finish_non_exhaustive()
    }
}

impl std::fmt::Debug for Reader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Reader")
    }
}
