//! NATS JetStream: a stream with file storage on one subject; producers publish a batch
//! asynchronously and then wait for every publish ack (pipelined, as the NATS client
//! recommends); consumers share one durable pull consumer with explicit acks, each pulling
//! through its own message stream, and ack every message (an ack is a fire-and-forget
//! publish, so it has no latency of its own to measure).
//!
//! Fan-out: one durable pull consumer per subscriber on the same stream (each sees every
//! message), consumers spread over them.
//!
//! At acknowledgement a message is in the stream's file, written to the operating system
//! but not fsynced: JetStream syncs its files in the background (`sync_interval`, two
//! minutes by default), so a machine crash may lose what was acknowledged.

use std::time::Duration;

use async_nats::jetstream::{self, consumer::pull, stream};
use bytes::Bytes;
use futures::{FutureExt, StreamExt};

use crate::run::{stamp_of, subscriber, Broker, Consumer, Error, Producer};

pub const STREAM: &str = "SLUICE_LOAD";
pub const SUBJECT: &str = "sluice.load";
pub const CONSUMER: &str = "sluice-load";
/// Messages each pull asks for: NATS's default for `messages()`.
const PULL_BATCH: usize = 200;

pub const GUARANTEE: &str = "JetStream file storage: written to the OS before the publish ack, fsynced in the background (sync_interval)";

pub struct Nats {
    pub endpoint: String,
    /// Fan-out: durable consumers on the stream (0: the queue workload's one).
    pub subscribers: usize,
    /// Each publish carries a Nats-Msg-Id of its own (the FIFO comparison: JetStream checks it
    /// against its deduplication window).
    pub deduplicate: bool,
}

/// JetStream's deduplication window for the FIFO comparison: SQS's five minutes.
const DEDUPLICATION_WINDOW: Duration = Duration::from_secs(300);

fn error(e: impl std::fmt::Display) -> Error {
    e.to_string()
}

/// A fresh stream and durable pull consumer (one per subscriber for fan-out).
pub fn setup(endpoint: &str, subscribers: usize, deduplicate: bool) -> Result<(), Error> {
    crate::peer_runtime().block_on(async {
        let client = async_nats::connect(endpoint).await.map_err(|e| format!("cannot reach NATS at {endpoint}: {e}"))?;
        let js = jetstream::new(client);
        let _ = js.delete_stream(STREAM).await;
        let stream = js
            .create_stream(stream::Config {
                name: STREAM.into(),
                subjects: vec![SUBJECT.into()],
                storage: stream::StorageType::File,
                duplicate_window: if deduplicate { DEDUPLICATION_WINDOW } else { Duration::from_secs(120) },
                ..Default::default()
            })
            .await
            .map_err(error)?;
        for index in 0..subscribers.max(1) {
            stream
                .create_consumer(pull::Config {
                    durable_name: Some(subscriber(CONSUMER, subscribers, index)),
                    ack_policy: jetstream::consumer::AckPolicy::Explicit,
                    max_ack_pending: 1_000_000,
                    ..Default::default()
                })
                .await
                .map_err(error)?;
        }
        Ok(())
    })
}

#[derive(Clone)]
pub struct NatsProducer {
    js: jetstream::Context,
    /// With deduplication: this producer's id and count of messages (for message ids).
    dedup: Option<(u64, std::rc::Rc<std::cell::Cell<u64>>)>,
}

pub struct NatsConsumer {
    messages: pull::Stream,
    received: Vec<jetstream::Message>,
}

impl Broker for Nats {
    type Executor = crate::run::Tokio;
    type Connection = jetstream::Context;
    type Producer = NatsProducer;
    type Consumer = NatsConsumer;

    async fn connect(&self) -> Result<jetstream::Context, Error> {
        let client = async_nats::connect(self.endpoint.as_str()).await.map_err(error)?;
        Ok(jetstream::new(client))
    }

    async fn producer(&self, js: &jetstream::Context) -> Result<NatsProducer, Error> {
        let dedup = self.deduplicate.then(|| (fastrand::u64(..), std::rc::Rc::new(std::cell::Cell::new(0))));
        Ok(NatsProducer { js: js.clone(), dedup })
    }

    async fn consumer(&self, js: &jetstream::Context, index: usize) -> Result<NatsConsumer, Error> {
        let name = subscriber(CONSUMER, self.subscribers, index);
        let consumer: jetstream::consumer::PullConsumer = js.get_consumer_from_stream(&name, STREAM).await.map_err(error)?;
        let messages =
            consumer.stream().max_messages_per_batch(PULL_BATCH).expires(Duration::from_secs(1)).messages().await.map_err(error)?;
        Ok(NatsConsumer { messages, received: Vec::new() })
    }
}

impl Producer for NatsProducer {
    async fn send(&self, bodies: Vec<Bytes>) -> Result<(), Error> {
        let mut acks = Vec::with_capacity(bodies.len());
        for body in bodies {
            let ack = match &self.dedup {
                Some((producer, sent)) => {
                    let k = sent.get();
                    sent.set(k + 1);
                    let publish = jetstream::message::PublishMessage::build().payload(body).message_id(format!("{producer:x}-{k}"));
                    self.js.send_publish(SUBJECT, publish).await
                }
                None => self.js.publish(SUBJECT, body).await,
            };
            acks.push(ack.map_err(error)?);
        }
        for ack in acks {
            ack.await.map_err(error)?;
        }
        Ok(())
    }
}

impl Consumer for NatsConsumer {
    const RECEIVE_IS_A_REQUEST: bool = false;

    async fn receive(&mut self, max: usize, stamps: &mut Vec<u64>) -> Result<(), Error> {
        self.received.clear();
        let Some(first) = self.messages.next().await else { return Err("the pull subscription ended".into()) };
        let mut next = Some(first);
        while let Some(message) = next {
            let message = message.map_err(error)?;
            stamps.extend(stamp_of(&message.payload));
            self.received.push(message);
            if self.received.len() >= max {
                break;
            }
            next = self.messages.next().now_or_never().flatten();
        }
        Ok(())
    }

    async fn acknowledge(&mut self) -> Result<(), Error> {
        for message in self.received.drain(..) {
            message.ack().await.map_err(error)?;
        }
        Ok(())
    }
}

/// The stream workload on JetStream: one stream (file storage) with a subject per shard
/// (`sluice.load.shard.N`), records published to a random shard's subject with publish acks,
/// and each consumer an ordered push consumer of one shard's subject from the start (no acks:
/// a stream reader keeps its own position, as a Kinesis reader does).
pub struct NatsShards {
    pub endpoint: String,
    pub shards: usize,
}

pub const SHARDS_STREAM: &str = "SLUICE_LOAD_SHARDS";

fn shard_subject(shard: usize) -> String {
    format!("{SUBJECT}.shard.{shard}")
}

/// A fresh stream with a subject per shard.
pub fn setup_shards(endpoint: &str) -> Result<(), Error> {
    crate::peer_runtime().block_on(async {
        let client = async_nats::connect(endpoint).await.map_err(|e| format!("cannot reach NATS at {endpoint}: {e}"))?;
        let js = jetstream::new(client);
        let _ = js.delete_stream(SHARDS_STREAM).await;
        js.create_stream(stream::Config {
            name: SHARDS_STREAM.into(),
            subjects: vec![format!("{SUBJECT}.shard.*")],
            storage: stream::StorageType::File,
            ..Default::default()
        })
        .await
        .map_err(error)?;
        Ok(())
    })
}

#[derive(Clone)]
pub struct ShardsProducer {
    js: jetstream::Context,
    subjects: std::rc::Rc<[String]>,
}

pub struct ShardReader {
    messages: jetstream::consumer::push::Ordered,
}

impl Broker for NatsShards {
    type Executor = crate::run::Tokio;
    type Connection = jetstream::Context;
    type Producer = ShardsProducer;
    type Consumer = ShardReader;

    async fn connect(&self) -> Result<jetstream::Context, Error> {
        let client = async_nats::connect(self.endpoint.as_str()).await.map_err(error)?;
        Ok(jetstream::new(client))
    }

    async fn producer(&self, js: &jetstream::Context) -> Result<ShardsProducer, Error> {
        let subjects: Vec<String> = (0..self.shards).map(shard_subject).collect();
        Ok(ShardsProducer { js: js.clone(), subjects: subjects.into() })
    }

    async fn consumer(&self, js: &jetstream::Context, index: usize) -> Result<ShardReader, Error> {
        let stream = js.get_stream(SHARDS_STREAM).await.map_err(error)?;
        let consumer = stream
            .create_consumer(jetstream::consumer::push::OrderedConfig {
                filter_subject: shard_subject(index % self.shards.max(1)),
                deliver_subject: format!("_INBOX.sluice-load.{index}.{}", std::process::id()),
                ..Default::default()
            })
            .await
            .map_err(error)?;
        Ok(ShardReader { messages: consumer.messages().await.map_err(error)? })
    }
}

impl Producer for ShardsProducer {
    async fn send(&self, bodies: Vec<Bytes>) -> Result<(), Error> {
        let mut acks = Vec::with_capacity(bodies.len());
        for body in bodies {
            let subject = self.subjects[fastrand::usize(..self.subjects.len())].clone();
            acks.push(self.js.publish(subject, body).await.map_err(error)?);
        }
        for ack in acks {
            ack.await.map_err(error)?;
        }
        Ok(())
    }
}

impl Consumer for ShardReader {
    const RECEIVE_IS_A_REQUEST: bool = false;
    const ACKNOWLEDGES: bool = false;

    async fn receive(&mut self, max: usize, stamps: &mut Vec<u64>) -> Result<(), Error> {
        let Some(first) = self.messages.next().await else { return Err("the ordered consumer ended".into()) };
        let mut next = Some(first);
        let mut taken = 0;
        while let Some(message) = next {
            let message = message.map_err(error)?;
            stamps.extend(stamp_of(&message.payload));
            taken += 1;
            if taken >= max.max(PULL_BATCH) {
                break;
            }
            next = self.messages.next().now_or_never().flatten();
        }
        Ok(())
    }

    async fn acknowledge(&mut self) -> Result<(), Error> {
        Ok(())
    }
}
