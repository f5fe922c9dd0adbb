//! A Redis replay store, shared by every replica of a service (feature `redis`).

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::Script;

use super::store::{Begin, ReplayStore, StoreError, StoreFuture, Token};
use crate::ConfigError;

/// `SET key in-flight NX PX lease`; if taken, say by whom.
const BEGIN: &str = r"
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then return 1 end
if redis.call('GET', KEYS[1]) == 'done' then return 2 end
return 3
";

/// In flight with our token -> done for the TTL.
const COMPLETE: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('SET', KEYS[1], 'done', 'PX', ARGV[2])
  return 1
end
return 0
";

/// In flight with our token -> removed.
const RELEASE: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('DEL', KEYS[1])
  return 1
end
return 0
";

/// A [`ReplayStore`] in Redis, for several replicas of a service: they see each other's events.
///
/// Keys hold `done` or `inflight:<token>` with a millisecond expiry. Beginning is one atomic
/// `SET NX PX`; completing and releasing are Lua scripts that act only while the caller's own
/// in-flight mark is there. One multiplexed connection (redis-rs `ConnectionManager`,
/// reconnecting by itself) serves all requests and all clones; every call has a time limit
/// (default 250 ms). When Redis is unreachable or slow, calls fail with a [`StoreError`] and the
/// layer fails closed (503) unless told to fail open.
///
/// ```no_run
/// use tower_webhook::replay::RedisStore;
///
/// let store = RedisStore::new("redis://127.0.0.1:6379/")?;
/// # Ok::<(), tower_webhook::ConfigError>(())
/// ```
#[derive(Clone)]
pub struct RedisStore {
    inner: Arc<Inner>,
}

struct Inner {
    connection: ConnectionManager,
    timeout: Duration,
    begin: Script,
    complete: Script,
    release: Script,
}

impl RedisStore {
    /// The default time limit of one store call.
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_millis(250);

    /// A store at `url` (`redis://[:password@]host:port/db`), with the default time limit. The
    /// connection is made on first use, so Redis need not be up yet.
    ///
    /// # Errors
    ///
    /// [`ConfigError::InvalidStore`] when the URL cannot be used.
    pub fn new(url: &str) -> Result<Self, ConfigError> {
        Self::with_timeout(url, Self::DEFAULT_TIMEOUT)
    }

    /// A store at `url` whose calls each fail after `timeout`.
    ///
    /// # Errors
    ///
    /// [`ConfigError::InvalidStore`] when the URL cannot be used.
    pub fn with_timeout(url: &str, timeout: Duration) -> Result<Self, ConfigError> {
        // The URL may hold a password: never echo it.
        let invalid = |_| ConfigError::InvalidStore {
            reason: "the Redis URL cannot be used",
        };
        let client = redis::Client::open(url).map_err(invalid)?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(timeout))
            .set_response_timeout(Some(timeout))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_secs(1));
        let connection = client
            .get_connection_manager_lazy(config)
            .map_err(invalid)?;
        Ok(Self {
            inner: Arc::new(Inner {
                connection,
                timeout,
                begin: Script::new(BEGIN),
                complete: Script::new(COMPLETE),
                release: Script::new(RELEASE),
            }),
        })
    }

    fn call<T>(
        &self,
        script: fn(&Inner) -> &Script,
        key: &str,
        args: Vec<String>,
        read: fn(i64) -> T,
    ) -> StoreFuture<T>
    where
        T: Send + 'static,
    {
        let inner = self.inner.clone();
        let key = key.to_owned();
        StoreFuture::new(async move {
            let mut connection = inner.connection.clone();
            let mut invocation = script(&inner).key(key);
            for arg in args {
                invocation.arg(arg);
            }
            match tokio::time::timeout(
                inner.timeout,
                invocation.invoke_async::<i64>(&mut connection),
            )
            .await
            {
                Ok(Ok(n)) => Ok(read(n)),
                Ok(Err(error)) => Err(StoreError::unavailable(error)),
                Err(_) => Err(StoreError::Timeout),
            }
        })
    }
}

fn in_flight(token: Token) -> String {
    format!("inflight:{}", token.to_hex())
}

fn millis(d: Duration) -> String {
    d.as_millis().max(1).to_string()
}

impl ReplayStore for RedisStore {
    fn begin(&self, key: &str, token: Token, lease: Duration) -> StoreFuture<Begin> {
        self.call(
            |i| &i.begin,
            key,
            vec![in_flight(token), millis(lease)],
            |n| match n {
                1 => Begin::Started,
                2 => Begin::Done,
                _ => Begin::InFlight,
            },
        )
    }

    fn complete(&self, key: &str, token: Token, ttl: Duration) -> StoreFuture<bool> {
        self.call(
            |i| &i.complete,
            key,
            vec![in_flight(token), millis(ttl)],
            |n| n == 1,
        )
    }

    fn release(&self, key: &str, token: Token) -> StoreFuture<bool> {
        self.call(|i| &i.release, key, vec![in_flight(token)], |n| n == 1)
    }

    fn name(&self) -> &'static str {
        "redis"
    }

    /// `PING`, within the store's time limit.
    fn ping(&self) -> StoreFuture<()> {
        let inner = self.inner.clone();
        StoreFuture::new(async move {
            let mut connection = inner.connection.clone();
            let ping = redis::cmd("PING");
            let ping = ping.query_async::<String>(&mut connection);
            match tokio::time::timeout(inner.timeout, ping).await {
                Ok(Ok(_)) => Ok(()),
                Ok(Err(error)) => Err(StoreError::unavailable(error)),
                Err(_) => Err(StoreError::Timeout),
            }
        })
    }
}

impl fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisStore")
            .field("timeout", &self.inner.timeout)
            .finish_non_exhaustive()
    }
}
