//! Sluice over its binary protocol: SendMessageBatch, ReceiveMessage (long polling),
//! DeleteMessageBatch. A send is acknowledged once the message is kept as the daemon's
//! `--fsync` says: with `always` (the default) after an fdatasync of the log that holds it.
//!
//! Fan-out: producers PublishBatch to a topic that `--subscribers` queues subscribe to with
//! raw delivery (so every body keeps its send stamp); consumers are spread over the queues.
//! A publish is acknowledged once every queue holds it, kept as for a send.
//!
//! FIFO (`--fifo-groups N`): a FIFO queue deduplicating per group; each producer sends its
//! messages to groups in turn (message k of producer p to group (p + k) mod N), each with a
//! deduplication id of its own, so every message is stored and each group's order is one
//! producer's send order.

use bytes::Bytes;
use sluice_client::{Client, DeleteEntry, PublishEntry, ReceiveMessage, SendEntry};

use crate::run::{stamp_of, subscriber, Broker, Consumer, Error, Producer};

pub const GUARANTEE: &str =
    "acknowledged once written to its log and, with --fsync always, fdatasynced (group commit); with --fsync never, once in memory";

/// Batch entry ids, so a send costs no formatting.
const IDS: [&str; 10] = ["0", "1", "2", "3", "4", "5", "6", "7", "8", "9"];

pub struct Sluice {
    pub endpoint: String,
    pub queue: String,
    /// Fan-out: the number of queues subscribed to the topic `queue` (0: the queue workload).
    pub subscribers: usize,
    /// Message groups of a FIFO queue (0: a standard queue).
    pub fifo_groups: usize,
}

/// Creates the queue before the run (it is kept if it exists); for fan-out, the topic named
/// `queue` and its `subscribers` raw-delivery queues.
pub fn setup(endpoint: &str, queue: &str, subscribers: usize, fifo_groups: usize) -> Result<(), Error> {
    let connection = sluice_client::blocking::BlockingClient::connect(endpoint, "sluice-load-setup")
        .map_err(|e| format!("cannot reach Sluice at {endpoint}: {e}"))?;
    let client = connection.client();
    if subscribers == 0 {
        let attributes = if fifo_groups > 0 {
            ["FifoQueue=true", "DeduplicationScope=messageGroup", "FifoThroughputLimit=perMessageGroupId"]
                .iter()
                .filter_map(|pair| pair.split_once('=').map(|(k, v)| (k.to_owned(), v.to_owned())))
                .collect()
        } else {
            vec![]
        };
        connection.block_on(client.create_queue(queue, attributes, vec![])).map_err(|e| e.to_string())?;
        return Ok(());
    }
    let topic = connection.block_on(client.create_topic(queue, vec![], vec![])).map_err(|e| e.to_string())?;
    for index in 0..subscribers {
        let name = subscriber(queue, subscribers, index);
        connection.block_on(client.create_queue(&name, vec![], vec![])).map_err(|e| e.to_string())?;
        let attributes = connection.block_on(client.get_queue_attributes(&name, &["QueueArn"])).map_err(|e| e.to_string())?;
        let arn = attributes.into_iter().find(|(k, _)| k == "QueueArn").map(|(_, v)| v).ok_or("a queue without an ARN")?;
        let raw = vec![("RawMessageDelivery".to_owned(), "true".to_owned())];
        connection.block_on(client.subscribe(&topic, "sqs", &arn, raw)).map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// One connection to Sluice, its driver running on this executor.
pub async fn connect(endpoint: &str) -> Result<Client, Error> {
    let stream = glommio::net::TcpStream::connect(endpoint).await.map_err(|e| format!("connecting to {endpoint}: {e}"))?;
    stream.set_nodelay(true).ok();
    let (client, driver) = Client::connect(stream, "sluice-load").await.map_err(|e| e.to_string())?;
    glommio::spawn_local(async move {
        if let Err(error) = driver.run().await {
            eprintln!("sluice-load: connection ended: {error}");
        }
    })
    .detach();
    Ok(client)
}

#[derive(Clone)]
pub struct SluiceProducer {
    client: Client,
    queue: std::rc::Rc<str>,
    fanout: bool,
    fifo: Option<std::rc::Rc<FifoSender>>,
}

/// A FIFO producer's groups and its count of messages (for deduplication ids).
pub struct FifoSender {
    groups: Vec<String>,
    producer: u64,
    sent: std::cell::Cell<u64>,
}

pub struct SluiceConsumer {
    client: Client,
    queue: String,
    receipts: Vec<String>,
}

impl Broker for Sluice {
    type Executor = crate::run::Glommio;
    type Connection = Client;
    type Producer = SluiceProducer;
    type Consumer = SluiceConsumer;

    async fn connect(&self) -> Result<Client, Error> {
        connect(&self.endpoint).await
    }

    async fn producer(&self, connection: &Client) -> Result<SluiceProducer, Error> {
        let fifo = (self.fifo_groups > 0).then(|| {
            std::rc::Rc::new(FifoSender {
                groups: (0..self.fifo_groups).map(|g| format!("g{g}")).collect(),
                producer: fastrand::u64(..),
                sent: std::cell::Cell::new(0),
            })
        });
        Ok(SluiceProducer { client: connection.clone(), queue: self.queue.as_str().into(), fanout: self.subscribers > 0, fifo })
    }

    async fn consumer(&self, connection: &Client, index: usize) -> Result<SluiceConsumer, Error> {
        let queue = subscriber(&self.queue, self.subscribers, index);
        Ok(SluiceConsumer { client: connection.clone(), queue, receipts: Vec::new() })
    }
}

impl Producer for SluiceProducer {
    async fn send(&self, bodies: Vec<Bytes>) -> Result<(), Error> {
        if self.fanout {
            let entries = bodies
                .into_iter()
                .zip(IDS)
                .map(|(message, id)| PublishEntry { id: id.to_owned(), message, ..PublishEntry::default() })
                .collect();
            let (_, failed) = self.client.publish_batch(&self.queue, entries).await.map_err(|e| e.to_string())?;
            return match failed.first() {
                None => Ok(()),
                Some(entry) => Err(format!("{} of the batch failed, first: {entry:?}", failed.len())),
            };
        }
        let entries = bodies
            .into_iter()
            .zip(IDS)
            .map(|(body, id)| {
                let mut entry = SendEntry { id: id.to_owned(), body, ..SendEntry::default() };
                if let Some(fifo) = &self.fifo {
                    let k = fifo.sent.get();
                    fifo.sent.set(k + 1);
                    let group = &fifo.groups[((fifo.producer % fifo.groups.len() as u64 + k) % fifo.groups.len() as u64) as usize];
                    entry.message_group_id = Some(group.clone());
                    entry.deduplication_id = Some(format!("{:x}-{k}", fifo.producer));
                }
                entry
            })
            .collect();
        let (_, failed) = self.client.send_message_batch(&self.queue, entries).await.map_err(|e| e.to_string())?;
        match failed.first() {
            None => Ok(()),
            Some(entry) => Err(format!("{} of the batch failed, first: {entry:?}", failed.len())),
        }
    }
}

impl Consumer for SluiceConsumer {
    const RECEIVE_IS_A_REQUEST: bool = true;

    async fn receive(&mut self, max: usize, stamps: &mut Vec<u64>) -> Result<(), Error> {
        let request =
            ReceiveMessage { queue: self.queue.clone(), max_messages: Some(max as i32), wait_time_seconds: Some(1), ..Default::default() };
        let messages = self.client.receive_message(request).await.map_err(|e| e.to_string())?;
        self.receipts.clear();
        for message in messages {
            stamps.extend(stamp_of(&message.body));
            self.receipts.push(message.receipt_handle);
        }
        Ok(())
    }

    async fn acknowledge(&mut self) -> Result<(), Error> {
        let entries =
            self.receipts.drain(..).zip(IDS).map(|(receipt_handle, id)| DeleteEntry { id: id.to_owned(), receipt_handle }).collect();
        let (_, failed) = self.client.delete_message_batch(&self.queue, entries).await.map_err(|e| e.to_string())?;
        match failed.first() {
            None => Ok(()),
            Some(entry) => Err(format!("{} deletes of the batch failed, first: {entry:?}", failed.len())),
        }
    }
}
