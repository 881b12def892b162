//! Redis Streams, the closest Redis comes to SQS: producers XADD (a batch is one pipelined
//! round trip of XADDs), consumers in one consumer group XREADGROUP with BLOCK (a long poll)
//! and XACK their batch in one command. Each consumer has its own connection, because a
//! blocked XREADGROUP holds its connection; producers share `--connections` multiplexed
//! connections per core.
//!
//! Fan-out: one consumer group per subscriber on the same stream (every group reads every
//! entry), consumers spread over the groups.
//!
//! What an acknowledgement means depends on the server's configuration, read at setup:
//! `appendonly no` keeps the entry in memory only; `appendfsync always` fsyncs the
//! append-only file before replying (the one peer setting that matches Sluice's
//! `--fsync always`); `everysec` fsyncs once a second, after the reply.

use std::time::Duration;

use bytes::Bytes;
use redis::aio::MultiplexedConnection;
use redis::streams::StreamReadReply;
use redis::AsyncConnectionConfig;

use crate::run::{stamp_of, subscriber, Broker, Consumer, Error, Producer};

pub const STREAM_KEY: &str = "sluice-load";
pub const GROUP: &str = "sluice-load";
/// XREADGROUP BLOCK, like Sluice's one-second long poll.
const BLOCK_MS: u64 = 1000;

pub struct Redis {
    pub url: String,
    /// Fan-out: consumer groups on the stream (0: the queue workload's one group).
    pub subscribers: usize,
}

pub fn url(endpoint: &str) -> String {
    format!("redis://{endpoint}/")
}

fn error(e: redis::RedisError) -> Error {
    e.to_string()
}

async fn connection(url: &str) -> Result<MultiplexedConnection, Error> {
    let client = redis::Client::open(url).map_err(error)?;
    let config = AsyncConnectionConfig::new().set_connection_timeout(Duration::from_secs(5)).set_response_timeout(Duration::from_secs(60));
    client.get_multiplexed_async_connection_with_config(&config).await.map_err(error)
}

/// Starts from an empty stream with fresh consumer groups (one, or one per subscriber);
/// returns what an acknowledgement means with the server's persistence settings.
pub fn setup(endpoint: &str, subscribers: usize) -> Result<String, Error> {
    crate::peer_runtime().block_on(async {
        let mut redis = connection(&url(endpoint)).await.map_err(|e| format!("cannot reach Redis at {endpoint}: {e}"))?;
        redis::cmd("DEL").arg(STREAM_KEY).query_async::<()>(&mut redis).await.map_err(error)?;
        for index in 0..subscribers.max(1) {
            redis::cmd("XGROUP")
                .arg("CREATE")
                .arg(STREAM_KEY)
                .arg(subscriber(GROUP, subscribers, index))
                .arg("$")
                .arg("MKSTREAM")
                .query_async::<()>(&mut redis)
                .await
                .map_err(error)?;
        }
        let config = |name: &'static str| {
            let mut redis = redis.clone();
            async move {
                let pair: Vec<String> = redis::cmd("CONFIG").arg("GET").arg(name).query_async(&mut redis).await.map_err(error)?;
                Ok::<_, Error>(pair.get(1).cloned().unwrap_or_default())
            }
        };
        let (appendonly, appendfsync) = (config("appendonly").await?, config("appendfsync").await?);
        Ok(match (appendonly.as_str(), appendfsync.as_str()) {
            ("yes", "always") => "appendonly yes, appendfsync always: fsync of the append-only file before the reply".to_owned(),
            ("yes", other) => format!("appendonly yes, appendfsync {other}: in memory at the reply, fsynced later"),
            _ => "appendonly no: in memory only at the reply".to_owned(),
        })
    })
}

#[derive(Clone)]
pub struct RedisProducer {
    connection: MultiplexedConnection,
}

pub struct RedisConsumer {
    connection: MultiplexedConnection,
    group: String,
    name: String,
    ids: Vec<String>,
}

impl Broker for Redis {
    type Executor = crate::run::Tokio;
    type Connection = MultiplexedConnection;
    type Producer = RedisProducer;
    type Consumer = RedisConsumer;

    async fn connect(&self) -> Result<MultiplexedConnection, Error> {
        connection(&self.url).await
    }

    async fn producer(&self, connection: &MultiplexedConnection) -> Result<RedisProducer, Error> {
        Ok(RedisProducer { connection: connection.clone() })
    }

    async fn consumer(&self, _shared: &MultiplexedConnection, index: usize) -> Result<RedisConsumer, Error> {
        let (group, name) = (subscriber(GROUP, self.subscribers, index), format!("c{index}"));
        Ok(RedisConsumer { connection: connection(&self.url).await?, group, name, ids: Vec::new() })
    }
}

impl Producer for RedisProducer {
    async fn send(&self, bodies: Vec<Bytes>) -> Result<(), Error> {
        let mut pipe = redis::pipe();
        for body in &bodies {
            pipe.cmd("XADD").arg(STREAM_KEY).arg("*").arg("b").arg(&body[..]);
        }
        pipe.query_async::<()>(&mut self.connection.clone()).await.map_err(error)
    }
}

impl Consumer for RedisConsumer {
    const RECEIVE_IS_A_REQUEST: bool = true;

    async fn receive(&mut self, max: usize, stamps: &mut Vec<u64>) -> Result<(), Error> {
        let reply: Option<StreamReadReply> = redis::cmd("XREADGROUP")
            .arg("GROUP")
            .arg(&self.group)
            .arg(&self.name)
            .arg("COUNT")
            .arg(max)
            .arg("BLOCK")
            .arg(BLOCK_MS)
            .arg("STREAMS")
            .arg(STREAM_KEY)
            .arg(">")
            .query_async(&mut self.connection)
            .await
            .map_err(error)?;
        self.ids.clear();
        for key in reply.into_iter().flat_map(|reply| reply.keys) {
            for entry in key.ids {
                if let Some(redis::Value::BulkString(body)) = entry.map.get("b") {
                    stamps.extend(stamp_of(body));
                }
                self.ids.push(entry.id);
            }
        }
        Ok(())
    }

    async fn acknowledge(&mut self) -> Result<(), Error> {
        let mut xack = redis::cmd("XACK");
        xack.arg(STREAM_KEY).arg(&self.group).arg(&self.ids);
        xack.query_async::<u64>(&mut self.connection).await.map_err(error)?;
        Ok(())
    }
}

/// The stream workload on Redis: one Redis stream per shard (`sluice-load-shard-N`), records
/// XADDed to a random shard (as random partition keys spread them), and each consumer
/// XREADs one shard from its start (no group: a stream reader keeps its own position, as a
/// Kinesis reader does).
pub struct RedisShards {
    pub url: String,
    pub shards: usize,
}

fn shard_key(shard: usize) -> String {
    format!("{STREAM_KEY}-shard-{shard}")
}

/// Empties the shard streams; returns what an acknowledgement means (see `setup`).
pub fn setup_shards(endpoint: &str, shards: usize) -> Result<String, Error> {
    let guarantee = setup(endpoint, 0)?;
    crate::peer_runtime().block_on(async {
        let mut redis = connection(&url(endpoint)).await?;
        for shard in 0..shards {
            redis::cmd("DEL").arg(shard_key(shard)).query_async::<()>(&mut redis).await.map_err(error)?;
        }
        Ok::<_, Error>(())
    })?;
    Ok(guarantee)
}

#[derive(Clone)]
pub struct ShardsProducer {
    connection: MultiplexedConnection,
    keys: std::rc::Rc<[String]>,
}

pub struct ShardReader {
    connection: MultiplexedConnection,
    key: String,
    last_id: String,
}

impl Broker for RedisShards {
    type Executor = crate::run::Tokio;
    type Connection = MultiplexedConnection;
    type Producer = ShardsProducer;
    type Consumer = ShardReader;

    async fn connect(&self) -> Result<MultiplexedConnection, Error> {
        connection(&self.url).await
    }

    async fn producer(&self, connection: &MultiplexedConnection) -> Result<ShardsProducer, Error> {
        let keys: Vec<String> = (0..self.shards).map(shard_key).collect();
        Ok(ShardsProducer { connection: connection.clone(), keys: keys.into() })
    }

    async fn consumer(&self, _shared: &MultiplexedConnection, index: usize) -> Result<ShardReader, Error> {
        Ok(ShardReader { connection: connection(&self.url).await?, key: shard_key(index % self.shards.max(1)), last_id: "0".into() })
    }
}

impl Producer for ShardsProducer {
    async fn send(&self, bodies: Vec<Bytes>) -> Result<(), Error> {
        let mut pipe = redis::pipe();
        for body in &bodies {
            pipe.cmd("XADD").arg(&self.keys[fastrand::usize(..self.keys.len())]).arg("*").arg("b").arg(&body[..]);
        }
        pipe.query_async::<()>(&mut self.connection.clone()).await.map_err(error)
    }
}

impl Consumer for ShardReader {
    const RECEIVE_IS_A_REQUEST: bool = false;
    const ACKNOWLEDGES: bool = false;

    async fn receive(&mut self, _max: usize, stamps: &mut Vec<u64>) -> Result<(), Error> {
        let reply: Option<StreamReadReply> = redis::cmd("XREAD")
            .arg("COUNT")
            .arg(10_000)
            .arg("BLOCK")
            .arg(BLOCK_MS)
            .arg("STREAMS")
            .arg(&self.key)
            .arg(&self.last_id)
            .query_async(&mut self.connection)
            .await
            .map_err(error)?;
        for key in reply.into_iter().flat_map(|reply| reply.keys) {
            for entry in key.ids {
                if let Some(redis::Value::BulkString(body)) = entry.map.get("b") {
                    stamps.extend(stamp_of(body));
                }
                self.last_id = entry.id;
            }
        }
        Ok(())
    }

    async fn acknowledge(&mut self) -> Result<(), Error> {
        Ok(())
    }
}
