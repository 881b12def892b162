//! Sluice over its binary protocol: SendMessageBatch, ReceiveMessage (long polling),
//! DeleteMessageBatch. A send is acknowledged once the message is kept as the daemon's
//! `--fsync` says: with `always` (the default) after an fdatasync of the log that holds it.
//!
//! Fan-out: producers PublishBatch to a topic that `--subscribers` queues subscribe to with
//! raw delivery (so every body keeps its send stamp); consumers are spread over the queues.
//! A publish is acknowledged once every queue holds it, kept as for a send.
//!
//! FIFO (`--fifo-groups N`): a FIFO queue deduplicating per group (with fan-out, a FIFO topic
//! `QUEUE.fifo` and FIFO queues `QUEUE-i.fifo`, raw delivery); each producer sends its
//! messages to groups in turn (message k of producer p to group (p + k) mod N), each with a
//! deduplication id of its own, so every message is stored and each group's order is one
//! producer's send order. Consumers ask for each message's `MessageGroupId` and
//! `SequenceNumber` and check, across every consumer and core, that each group's sequence
//! numbers only grow ([`GroupOrder`]): a message handed out before one sent earlier in its
//! group, or handed out twice, is counted and fails the run.
//!
//! Tenants (`--tenants N`): a standard queue whose messages carry their tenant as
//! `MessageGroupId` (a fair queue); one noisy tenant sends `--noisy-percent` of the messages,
//! the other N - 1 share the rest. A quiet tenant's body has `q` right after its stamp, so
//! consumers measure the quiet tenants' end-to-end latency apart. With `--tenants-ungrouped`
//! the same messages go without a group: the queue is not fair, for comparison.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use sluice_client::{Client, DeleteEntry, PublishEntry, ReceiveMessage, ReceivedMessage, SendEntry};

use crate::run::{stamp_of, subscriber, Broker, Consumer, Error, Producer};

pub const GUARANTEE: &str =
    "acknowledged once written to its log and, with --fsync always, fdatasynced (group commit); with --fsync never, once in memory";

/// Batch entry ids, so a send costs no formatting.
const IDS: [&str; 10] = ["0", "1", "2", "3", "4", "5", "6", "7", "8", "9"];

pub struct Sluice {
    pub endpoint: String,
    /// The key connections prove they hold (`--access-key-id`), for a broker with `--credentials`.
    pub key: Option<sluice_client::AccessKey>,
    pub queue: String,
    /// Fan-out: the number of queues subscribed to the topic `queue` (0: the queue workload).
    pub subscribers: usize,
    /// Message groups of a FIFO queue (0: a standard queue).
    pub fifo_groups: usize,
    /// Shared by every core of a FIFO run: the order each group was received in.
    pub order: Option<Arc<GroupOrder>>,
    pub tenants: Option<Tenants>,
}

/// `--tenants`: how messages are shared among tenants of a fair queue.
#[derive(Debug, Clone, Copy)]
pub struct Tenants {
    /// Tenants in all, the noisy one among them (at least 2).
    pub count: usize,
    /// Percent of the messages from the noisy tenant.
    pub noisy_percent: u64,
    /// Whether messages carry their tenant as `MessageGroupId` (else the queue is not fair).
    pub grouped: bool,
}

/// Fan-out's queue `index` of topic `topic`: `TOPIC-i`, or for a FIFO topic `STEM-i.fifo`.
fn subscriber_queue(topic: &str, subscribers: usize, index: usize) -> String {
    match topic.strip_suffix(".fifo") {
        Some(stem) => format!("{}.fifo", subscriber(stem, subscribers, index)),
        None => subscriber(topic, subscribers, index),
    }
}

/// A FIFO queue's attributes: deduplicated per group, its groups spread over the cores.
fn fifo_queue_attributes() -> Vec<(String, String)> {
    [("FifoQueue", "true"), ("DeduplicationScope", "messageGroup"), ("FifoThroughputLimit", "perMessageGroupId")]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// The byte after the stamp that marks a quiet tenant's message.
const QUIET: u8 = b'q';

/// The last sequence number received of each message group, shared by every consumer: the
/// next message of a group is handed out only after the one before was deleted, and a
/// consumer checks a batch before deleting it, so the check sees a group's messages in the
/// order the queue handed them out. One lock per received batch.
#[derive(Default)]
pub struct GroupOrder {
    /// By queue (fan-out reads several), then group.
    last: Mutex<HashMap<String, HashMap<String, u128>>>,
    /// Messages checked.
    pub checked: AtomicU64,
    /// Messages whose sequence number was not above the last one received of its group
    /// (out of order, or received twice), or that came without a group or sequence number.
    pub out_of_order: AtomicU64,
}

impl GroupOrder {
    fn check(&self, queue: &str, messages: &[ReceivedMessage]) {
        let mut wrong = 0;
        {
            let mut queues = self.last.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            if !queues.contains_key(queue) {
                queues.insert(queue.to_owned(), HashMap::new());
            }
            let last = queues.get_mut(queue).expect("just added");
            for message in messages {
                let attribute = |name: &str| message.attributes.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str());
                let (Some(group), Some(sequence)) =
                    (attribute("MessageGroupId"), attribute("SequenceNumber").and_then(|s| s.parse::<u128>().ok()))
                else {
                    wrong += 1;
                    continue;
                };
                match last.get_mut(group) {
                    Some(previous) if *previous >= sequence => wrong += 1,
                    Some(previous) => *previous = sequence,
                    None => {
                        last.insert(group.to_owned(), sequence);
                    }
                }
            }
        }
        self.checked.fetch_add(messages.len() as u64, Ordering::Relaxed);
        if wrong > 0 {
            self.out_of_order.fetch_add(wrong, Ordering::Relaxed);
        }
    }
}

/// Creates the queue before the run (it is kept if it exists); for fan-out, the topic named
/// `queue` and its `subscribers` raw-delivery queues.
pub fn setup(
    endpoint: &str,
    queue: &str,
    subscribers: usize,
    fifo_groups: usize,
    key: Option<&sluice_client::AccessKey>,
) -> Result<(), Error> {
    let connection = sluice_client::blocking::BlockingClient::connect_as(endpoint, "sluice-load-setup", key)
        .map_err(|e| format!("cannot reach Sluice at {endpoint}: {e}"))?;
    let client = connection.client();
    let queue_attributes = if fifo_groups > 0 { fifo_queue_attributes() } else { vec![] };
    if subscribers == 0 {
        connection.block_on(client.create_queue(queue, queue_attributes, vec![])).map_err(|e| e.to_string())?;
        return Ok(());
    }
    let topic_attributes = if fifo_groups > 0 { vec![("FifoTopic".to_owned(), "true".to_owned())] } else { vec![] };
    let topic = connection.block_on(client.create_topic(queue, topic_attributes, vec![])).map_err(|e| e.to_string())?;
    for index in 0..subscribers {
        let name = subscriber_queue(queue, subscribers, index);
        connection.block_on(client.create_queue(&name, queue_attributes.clone(), vec![])).map_err(|e| e.to_string())?;
        let attributes = connection.block_on(client.get_queue_attributes(&name, &["QueueArn"])).map_err(|e| e.to_string())?;
        let arn = attributes.into_iter().find(|(k, _)| k == "QueueArn").map(|(_, v)| v).ok_or("a queue without an ARN")?;
        let raw = vec![("RawMessageDelivery".to_owned(), "true".to_owned())];
        connection.block_on(client.subscribe(&topic, "sqs", &arn, raw)).map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// One connection to Sluice, its driver running on this executor; it authenticates with
/// `key` when the broker asks.
pub async fn connect(endpoint: &str, key: Option<&sluice_client::AccessKey>) -> Result<Client, Error> {
    let stream = glommio::net::TcpStream::connect(endpoint).await.map_err(|e| format!("connecting to {endpoint}: {e}"))?;
    stream.set_nodelay(true).ok();
    let (client, driver) = Client::connect_as(stream, "sluice-load", key).await.map_err(|e| e.to_string())?;
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
    tenants: Option<std::rc::Rc<TenantSender>>,
}

/// A producer's tenants and its count of messages (which tenant each goes to).
pub struct TenantSender {
    tenants: Tenants,
    names: Vec<String>,
    sent: std::cell::Cell<u64>,
}

impl TenantSender {
    /// Message `k` of a producer: the noisy tenant `t0` for `noisy_percent` of every 100, the
    /// quiet tenants `t1`.. in turn for the rest.
    fn tenant(&self, k: u64) -> usize {
        let (hundred, within) = (k / 100, k % 100);
        if within < self.tenants.noisy_percent {
            return 0;
        }
        let quiet_per_hundred = 100 - self.tenants.noisy_percent;
        let quiet = hundred * quiet_per_hundred + within - self.tenants.noisy_percent;
        1 + (quiet % (self.tenants.count as u64 - 1)) as usize
    }
}

/// A FIFO producer's groups and its count of messages (for deduplication ids).
pub struct FifoSender {
    groups: Vec<String>,
    producer: u64,
    sent: std::cell::Cell<u64>,
}

impl FifoSender {
    /// The next message's group and deduplication id: message k of producer p goes to group
    /// (p + k) mod N, with an id of its own.
    fn next(&self) -> (String, String) {
        let k = self.sent.get();
        self.sent.set(k + 1);
        let groups = self.groups.len() as u64;
        let group = &self.groups[((self.producer % groups + k) % groups) as usize];
        (group.clone(), format!("{:x}-{k}", self.producer))
    }
}

pub struct SluiceConsumer {
    client: Client,
    queue: String,
    receipts: Vec<String>,
    order: Option<Arc<GroupOrder>>,
    /// Stamps of the last receive's quiet-tenant messages (`--tenants`).
    quiet: Option<Vec<u64>>,
}

impl Broker for Sluice {
    type Executor = crate::run::Glommio;
    type Connection = Client;
    type Producer = SluiceProducer;
    type Consumer = SluiceConsumer;

    async fn connect(&self) -> Result<Client, Error> {
        connect(&self.endpoint, self.key.as_ref()).await
    }

    async fn producer(&self, connection: &Client) -> Result<SluiceProducer, Error> {
        let fifo = (self.fifo_groups > 0).then(|| {
            std::rc::Rc::new(FifoSender {
                groups: (0..self.fifo_groups).map(|g| format!("g{g}")).collect(),
                producer: fastrand::u64(..),
                sent: std::cell::Cell::new(0),
            })
        });
        let tenants = self.tenants.map(|tenants| {
            std::rc::Rc::new(TenantSender {
                tenants,
                names: (0..tenants.count).map(|t| format!("t{t}")).collect(),
                sent: std::cell::Cell::new(fastrand::u64(..100)),
            })
        });
        Ok(SluiceProducer { client: connection.clone(), queue: self.queue.as_str().into(), fanout: self.subscribers > 0, fifo, tenants })
    }

    async fn consumer(&self, connection: &Client, index: usize) -> Result<SluiceConsumer, Error> {
        let queue = subscriber_queue(&self.queue, self.subscribers, index);
        let quiet = self.tenants.map(|_| Vec::new());
        Ok(SluiceConsumer { client: connection.clone(), queue, receipts: Vec::new(), order: self.order.clone(), quiet })
    }
}

impl Producer for SluiceProducer {
    async fn send(&self, bodies: Vec<Bytes>) -> Result<(), Error> {
        if self.fanout {
            let entries = bodies
                .into_iter()
                .zip(IDS)
                .map(|(message, id)| {
                    let mut entry = PublishEntry { id: id.to_owned(), message, ..PublishEntry::default() };
                    if let Some(fifo) = &self.fifo {
                        let (group, deduplication_id) = fifo.next();
                        entry.message_group_id = Some(group);
                        entry.deduplication_id = Some(deduplication_id);
                    }
                    entry
                })
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
                    let (group, deduplication_id) = fifo.next();
                    entry.message_group_id = Some(group);
                    entry.deduplication_id = Some(deduplication_id);
                }
                if let Some(tenants) = &self.tenants {
                    let k = tenants.sent.get();
                    tenants.sent.set(k + 1);
                    let tenant = tenants.tenant(k);
                    if tenant > 0 {
                        // Marked for the consumers; a copy, in this mode only.
                        let mut body = entry.body.to_vec();
                        if let Some(mark) = body.get_mut(crate::run::STAMP_BYTES) {
                            *mark = QUIET;
                        }
                        entry.body = body.into();
                    }
                    if tenants.tenants.grouped {
                        entry.message_group_id = Some(tenants.names[tenant].clone());
                    }
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
        let system_attribute_names =
            if self.order.is_some() { vec!["MessageGroupId".to_owned(), "SequenceNumber".to_owned()] } else { vec![] };
        let request = ReceiveMessage {
            queue: self.queue.clone(),
            max_messages: Some(max as i32),
            wait_time_seconds: Some(1),
            system_attribute_names,
            ..Default::default()
        };
        let messages = self.client.receive_message(request).await.map_err(|e| e.to_string())?;
        if let Some(order) = &self.order {
            order.check(&self.queue, &messages);
        }
        self.receipts.clear();
        for message in messages {
            if let Some(quiet) = &mut self.quiet {
                if message.body.get(crate::run::STAMP_BYTES) == Some(&QUIET) {
                    quiet.extend(stamp_of(&message.body));
                }
            }
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

    fn take_quiet(&mut self, stamps: &mut Vec<u64>) {
        if let Some(quiet) = &mut self.quiet {
            stamps.append(quiet);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(group: &str, sequence: u128) -> ReceivedMessage {
        ReceivedMessage {
            attributes: vec![("MessageGroupId".to_owned(), group.to_owned()), ("SequenceNumber".to_owned(), sequence.to_string())],
            ..ReceivedMessage::default()
        }
    }

    #[test]
    fn group_order_counts_what_comes_out_of_order_or_twice() {
        let order = GroupOrder::default();
        order.check("q", &[message("a", 10), message("b", 5), message("a", 11)]);
        order.check("q", &[message("b", 7), message("a", 12)]);
        order.check("other", &[message("a", 1)]);
        assert_eq!(order.out_of_order.load(Ordering::Relaxed), 0, "growing sequence numbers per group are in order");
        assert_eq!(order.out_of_order.load(Ordering::Relaxed), 0, "another queue's groups are its own");
        order.check("q", &[message("a", 12), message("b", 6), message("c", 1), ReceivedMessage::default()]);
        assert_eq!(order.out_of_order.load(Ordering::Relaxed), 3, "a repeat, a step back and a message without its group");
        assert_eq!(order.checked.load(Ordering::Relaxed), 10);
    }

    #[test]
    fn the_noisy_tenant_sends_its_share_and_the_quiet_ones_share_the_rest() {
        let sender =
            TenantSender { tenants: Tenants { count: 5, noisy_percent: 90, grouped: true }, names: vec![], sent: std::cell::Cell::new(0) };
        let mut counts = [0; 5];
        for k in 37..37 + 1000 {
            counts[sender.tenant(k)] += 1;
        }
        assert_eq!(counts, [900, 25, 25, 25, 25]);
    }
}
