//! RabbitMQ: a durable classic queue, persistent messages, publisher confirms on each
//! producer's channel (a batch is published, then its confirms awaited), and consumers on
//! their own channels with a prefetch window and manual acks, one `multiple` ack per batch.
//!
//! Fan-out: a durable fanout exchange bound to one durable queue per subscriber; producers
//! publish to the exchange (a confirm then means every queue has the message), consumers are
//! spread over the queues.
//!
//! RabbitMQ confirms a persistent message on a durable queue once it is written to disk;
//! it fsyncs in batches (a few hundred messages per fsync under load), so a confirm does
//! follow an fsync, later than it would without one.

use bytes::Bytes;
use futures::{FutureExt, StreamExt};
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, BasicQosOptions, ConfirmSelectOptions, ExchangeDeclareOptions,
    QueueBindOptions, QueueDeclareOptions, QueueDeleteOptions,
};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties, ExchangeKind};

use crate::run::{stamp_of, subscriber, Broker, Consumer, Error, Producer};

pub const QUEUE: &str = "sluice-load";
/// The fan-out workload's exchange.
pub const EXCHANGE: &str = "sluice-load-fanout";
/// Unacknowledged deliveries each consumer may hold.
const PREFETCH: u16 = 500;

pub const GUARANTEE: &str = "durable classic queue, persistent messages: publisher confirm once written to disk (fsync batched)";

pub const STREAM_GUARANTEE: &str = "stream queues, persistent messages: publisher confirm once written to the stream's log (fsync batched)";

pub struct Rabbitmq {
    pub uri: String,
    /// Fan-out: queues bound to the fanout exchange (0: the queue workload's one queue).
    pub subscribers: usize,
}

pub fn uri(endpoint: &str) -> String {
    format!("amqp://guest:guest@{endpoint}/%2f")
}

fn error(e: lapin::Error) -> Error {
    e.to_string()
}

/// A fresh durable queue, or for fan-out a fanout exchange and a fresh queue per subscriber.
pub fn setup(endpoint: &str, subscribers: usize) -> Result<(), Error> {
    crate::peer_runtime().block_on(async {
        let connection = Connection::connect(&uri(endpoint), ConnectionProperties::default())
            .await
            .map_err(|e| format!("cannot reach RabbitMQ at {endpoint}: {e}"))?;
        let channel = connection.create_channel().await.map_err(error)?;
        if subscribers > 0 {
            let options = ExchangeDeclareOptions { durable: true, ..Default::default() };
            channel.exchange_declare(EXCHANGE.into(), ExchangeKind::Fanout, options, FieldTable::default()).await.map_err(error)?;
        }
        for index in 0..subscribers.max(1) {
            let name = subscriber(QUEUE, subscribers, index);
            channel.queue_delete(name.as_str().into(), QueueDeleteOptions::default()).await.map_err(error)?;
            channel
                .queue_declare(name.as_str().into(), QueueDeclareOptions { durable: true, ..Default::default() }, FieldTable::default())
                .await
                .map_err(error)?;
            if subscribers > 0 {
                channel
                    .queue_bind(name.as_str().into(), EXCHANGE.into(), "".into(), QueueBindOptions::default(), FieldTable::default())
                    .await
                    .map_err(error)?;
            }
        }
        connection.close(200, "set up".into()).await.map_err(error)?;
        Ok(())
    })
}

#[derive(Clone)]
pub struct RabbitProducer {
    channel: Channel,
    /// Where to publish: the default exchange with the queue's name, or the fanout exchange.
    exchange: &'static str,
    routing_key: &'static str,
}

pub struct RabbitConsumer {
    channel: Channel,
    deliveries: lapin::Consumer,
    last_tag: Option<u64>,
}

impl Broker for Rabbitmq {
    type Executor = crate::run::Tokio;
    type Connection = Connection;
    type Producer = RabbitProducer;
    type Consumer = RabbitConsumer;

    async fn connect(&self) -> Result<Connection, Error> {
        Connection::connect(&self.uri, ConnectionProperties::default()).await.map_err(error)
    }

    async fn producer(&self, connection: &Connection) -> Result<RabbitProducer, Error> {
        let channel = connection.create_channel().await.map_err(error)?;
        channel.confirm_select(ConfirmSelectOptions::default()).await.map_err(error)?;
        let (exchange, routing_key) = if self.subscribers == 0 { ("", QUEUE) } else { (EXCHANGE, "") };
        Ok(RabbitProducer { channel, exchange, routing_key })
    }

    async fn consumer(&self, connection: &Connection, index: usize) -> Result<RabbitConsumer, Error> {
        let channel = connection.create_channel().await.map_err(error)?;
        channel.basic_qos(PREFETCH, BasicQosOptions::default()).await.map_err(error)?;
        let (queue, tag) = (subscriber(QUEUE, self.subscribers, index), format!("c{index}"));
        let deliveries = channel
            .basic_consume(queue.as_str().into(), tag.as_str().into(), BasicConsumeOptions::default(), FieldTable::default())
            .await
            .map_err(error)?;
        Ok(RabbitConsumer { channel, deliveries, last_tag: None })
    }
}

impl Producer for RabbitProducer {
    async fn send(&self, bodies: Vec<Bytes>) -> Result<(), Error> {
        let mut confirms = Vec::with_capacity(bodies.len());
        for body in &bodies {
            let properties = BasicProperties::default().with_delivery_mode(2);
            let confirm = self
                .channel
                .basic_publish(self.exchange.into(), self.routing_key.into(), BasicPublishOptions::default(), body, properties)
                .await
                .map_err(error)?;
            confirms.push(confirm);
        }
        for confirm in confirms {
            let confirmation = confirm.await.map_err(error)?;
            if confirmation.is_nack() {
                return Err("the broker refused (nacked) a message".into());
            }
        }
        Ok(())
    }
}

impl Consumer for RabbitConsumer {
    const RECEIVE_IS_A_REQUEST: bool = false;

    async fn receive(&mut self, max: usize, stamps: &mut Vec<u64>) -> Result<(), Error> {
        let Some(first) = self.deliveries.next().await else { return Err("the consumer was cancelled".into()) };
        let mut next = Some(first);
        let mut taken = 0;
        while let Some(delivery) = next {
            let delivery = delivery.map_err(error)?;
            stamps.extend(stamp_of(&delivery.data));
            self.last_tag = Some(delivery.delivery_tag);
            taken += 1;
            if taken >= max {
                break;
            }
            next = self.deliveries.next().now_or_never().flatten();
        }
        Ok(())
    }

    async fn acknowledge(&mut self) -> Result<(), Error> {
        if let Some(tag) = self.last_tag.take() {
            self.channel.basic_ack(tag, BasicAckOptions { multiple: true }).await.map_err(error)?;
        }
        Ok(())
    }
}

/// The stream workload on RabbitMQ: a stream queue (`x-queue-type: stream`) per shard,
/// persistent messages published with confirms to a random shard, and each consumer reading
/// one shard from its start (`x-stream-offset: first`) with a prefetch window; its acks only
/// return credit (a stream keeps its messages), so they are sent as each batch arrives.
pub struct RabbitShards {
    pub uri: String,
    pub shards: usize,
}

fn shard_queue(shard: usize) -> String {
    format!("{QUEUE}-shard-{shard}")
}

fn stream_arguments() -> FieldTable {
    let mut arguments = FieldTable::default();
    arguments.insert("x-queue-type".into(), lapin::types::AMQPValue::LongString("stream".into()));
    arguments
}

/// Fresh stream queues, one per shard.
pub fn setup_shards(endpoint: &str, shards: usize) -> Result<(), Error> {
    crate::peer_runtime().block_on(async {
        let connection = Connection::connect(&uri(endpoint), ConnectionProperties::default())
            .await
            .map_err(|e| format!("cannot reach RabbitMQ at {endpoint}: {e}"))?;
        let channel = connection.create_channel().await.map_err(error)?;
        for shard in 0..shards {
            let name = shard_queue(shard);
            channel.queue_delete(name.as_str().into(), QueueDeleteOptions::default()).await.map_err(error)?;
            let options = QueueDeclareOptions { durable: true, ..Default::default() };
            channel.queue_declare(name.as_str().into(), options, stream_arguments()).await.map_err(error)?;
        }
        connection.close(200, "set up".into()).await.map_err(error)?;
        Ok(())
    })
}

#[derive(Clone)]
pub struct ShardsProducer {
    channel: Channel,
    queues: std::rc::Rc<[String]>,
}

pub struct ShardReader {
    channel: Channel,
    deliveries: lapin::Consumer,
}

impl Broker for RabbitShards {
    type Executor = crate::run::Tokio;
    type Connection = Connection;
    type Producer = ShardsProducer;
    type Consumer = ShardReader;

    async fn connect(&self) -> Result<Connection, Error> {
        Connection::connect(&self.uri, ConnectionProperties::default()).await.map_err(error)
    }

    async fn producer(&self, connection: &Connection) -> Result<ShardsProducer, Error> {
        let channel = connection.create_channel().await.map_err(error)?;
        channel.confirm_select(ConfirmSelectOptions::default()).await.map_err(error)?;
        let queues: Vec<String> = (0..self.shards).map(shard_queue).collect();
        Ok(ShardsProducer { channel, queues: queues.into() })
    }

    async fn consumer(&self, connection: &Connection, index: usize) -> Result<ShardReader, Error> {
        let channel = connection.create_channel().await.map_err(error)?;
        channel.basic_qos(PREFETCH, BasicQosOptions::default()).await.map_err(error)?;
        let mut arguments = FieldTable::default();
        arguments.insert("x-stream-offset".into(), lapin::types::AMQPValue::LongString("first".into()));
        let (queue, tag) = (shard_queue(index % self.shards.max(1)), format!("s{index}"));
        let deliveries = channel
            .basic_consume(queue.as_str().into(), tag.as_str().into(), BasicConsumeOptions::default(), arguments)
            .await
            .map_err(error)?;
        Ok(ShardReader { channel, deliveries })
    }
}

impl Producer for ShardsProducer {
    async fn send(&self, bodies: Vec<Bytes>) -> Result<(), Error> {
        let mut confirms = Vec::with_capacity(bodies.len());
        for body in &bodies {
            let queue = self.queues[fastrand::usize(..self.queues.len())].as_str();
            let properties = BasicProperties::default().with_delivery_mode(2);
            let confirm = self
                .channel
                .basic_publish("".into(), queue.into(), BasicPublishOptions::default(), body, properties)
                .await
                .map_err(error)?;
            confirms.push(confirm);
        }
        for confirm in confirms {
            if confirm.await.map_err(error)?.is_nack() {
                return Err("the broker refused (nacked) a message".into());
            }
        }
        Ok(())
    }
}

impl Consumer for ShardReader {
    const RECEIVE_IS_A_REQUEST: bool = false;
    const ACKNOWLEDGES: bool = false;

    async fn receive(&mut self, _max: usize, stamps: &mut Vec<u64>) -> Result<(), Error> {
        let Some(first) = self.deliveries.next().await else { return Err("the consumer was cancelled".into()) };
        let mut next = Some(first);
        let mut last_tag = 0;
        while let Some(delivery) = next {
            let delivery = delivery.map_err(error)?;
            stamps.extend(stamp_of(&delivery.data));
            last_tag = delivery.delivery_tag;
            next = self.deliveries.next().now_or_never().flatten();
        }
        // Credit for the next deliveries (a stream keeps the messages).
        self.channel.basic_ack(last_tag, BasicAckOptions { multiple: true }).await.map_err(error)
    }

    async fn acknowledge(&mut self) -> Result<(), Error> {
        Ok(())
    }
}
