//! RabbitMQ: a durable classic queue, persistent messages, publisher confirms on each
//! producer's channel (a batch is published, then its confirms awaited), and consumers on
//! their own channels with a prefetch window and manual acks, one `multiple` ack per batch.
//!
//! RabbitMQ confirms a persistent message on a durable queue once it is written to disk;
//! it fsyncs in batches (a few hundred messages per fsync under load), so a confirm does
//! follow an fsync, later than it would without one.

use bytes::Bytes;
use futures::{FutureExt, StreamExt};
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, BasicQosOptions, ConfirmSelectOptions, QueueDeclareOptions,
    QueueDeleteOptions,
};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties};

use crate::run::{stamp_of, Broker, Consumer, Error, Producer};

pub const QUEUE: &str = "sluice-load";
/// Unacknowledged deliveries each consumer may hold.
const PREFETCH: u16 = 500;

pub const GUARANTEE: &str = "durable classic queue, persistent messages: publisher confirm once written to disk (fsync batched)";

pub struct Rabbitmq {
    pub uri: String,
}

pub fn uri(endpoint: &str) -> String {
    format!("amqp://guest:guest@{endpoint}/%2f")
}

fn error(e: lapin::Error) -> Error {
    e.to_string()
}

/// A fresh durable queue.
pub fn setup(endpoint: &str) -> Result<(), Error> {
    crate::peer_runtime().block_on(async {
        let connection = Connection::connect(&uri(endpoint), ConnectionProperties::default())
            .await
            .map_err(|e| format!("cannot reach RabbitMQ at {endpoint}: {e}"))?;
        let channel = connection.create_channel().await.map_err(error)?;
        channel.queue_delete(QUEUE.into(), QueueDeleteOptions::default()).await.map_err(error)?;
        channel
            .queue_declare(QUEUE.into(), QueueDeclareOptions { durable: true, ..Default::default() }, FieldTable::default())
            .await
            .map_err(error)?;
        connection.close(200, "set up".into()).await.map_err(error)?;
        Ok(())
    })
}

#[derive(Clone)]
pub struct RabbitProducer {
    channel: Channel,
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
        Ok(RabbitProducer { channel })
    }

    async fn consumer(&self, connection: &Connection, name: String) -> Result<RabbitConsumer, Error> {
        let channel = connection.create_channel().await.map_err(error)?;
        channel.basic_qos(PREFETCH, BasicQosOptions::default()).await.map_err(error)?;
        let deliveries =
            channel.basic_consume(QUEUE.into(), name.into(), BasicConsumeOptions::default(), FieldTable::default()).await.map_err(error)?;
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
                .basic_publish("".into(), QUEUE.into(), BasicPublishOptions::default(), body, properties)
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
