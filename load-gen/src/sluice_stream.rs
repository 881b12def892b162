//! Sluice streams over the binary protocol: producers PutRecords with random partition keys
//! over the stream's shards; each consumer holds a push subscription (SubscribeToShard, on a
//! connection of its own) to one shard, so `--consumers` a multiple of `--shards` reads every
//! shard that many times over. A put is acknowledged once kept as the daemon's `--fsync`
//! says, as for a queue send.

use std::rc::Rc;

use bytes::Bytes;
use sluice_client::{Client, PutRecordResult, PutRecordsEntry, ShardSubscription, StartingPosition};

use crate::run::{stamp_of, Broker, Consumer, Error, Producer};
use crate::sluice::connect;

/// Distinct partition keys producers pick from at random.
const PARTITION_KEYS: usize = 4096;

pub struct SluiceStream {
    pub endpoint: String,
    /// The key connections prove they hold, for a broker with `--credentials`.
    pub key: Option<sluice_client::AccessKey>,
    pub stream: String,
    pub shards: usize,
}

fn consumer_name(index: usize) -> String {
    format!("sluice-load-{index}")
}

/// Recreates the stream (empty) with `shards` shards and registers one consumer per
/// `shards` subscriptions.
pub fn setup(
    endpoint: &str,
    stream: &str,
    shards: usize,
    consumers: usize,
    encryption: Option<&str>,
    key: Option<&sluice_client::AccessKey>,
) -> Result<(), Error> {
    let connection = sluice_client::blocking::BlockingClient::connect_as(endpoint, "sluice-load-setup", key)
        .map_err(|e| format!("cannot reach Sluice at {endpoint}: {e}"))?;
    let client = connection.client();
    match connection.block_on(client.delete_stream(stream)) {
        Ok(()) => {}
        Err(error) if error.code() == Some(sluice_client::ErrorCode::ResourceNotFound) => {}
        Err(error) => return Err(error.to_string()),
    }
    connection.block_on(client.create_stream(stream, shards as i32)).map_err(|e| e.to_string())?;
    if let Some(key) = encryption {
        let start =
            sluice_client::Op::SetStreamEncryption { stream: stream.into(), encryption_type: "KMS".into(), key: key.into(), start: true };
        connection.block_on(client.call(start)).map_err(|e| format!("StartStreamEncryption: {e}"))?;
    }
    let arn = connection.block_on(client.describe_stream(stream)).map_err(|e| e.to_string())?.arn;
    for index in 0..consumers.div_ceil(shards.max(1)) {
        connection.block_on(client.register_stream_consumer(&arn, &consumer_name(index))).map_err(|e| e.to_string())?;
    }
    Ok(())
}

#[derive(Clone)]
pub struct StreamProducer {
    client: Client,
    stream: Rc<str>,
    keys: Rc<[String]>,
}

pub struct StreamConsumer {
    client: Client,
    consumer_arn: String,
    shard_id: String,
    subscription: Option<ShardSubscription>,
    /// Where to subscribe again when a subscription ends (after five minutes).
    continuation: Option<String>,
}

impl Broker for SluiceStream {
    type Executor = crate::run::Glommio;
    type Connection = Client;
    type Producer = StreamProducer;
    type Consumer = StreamConsumer;

    async fn connect(&self) -> Result<Client, Error> {
        connect(&self.endpoint, self.key.as_ref()).await
    }

    async fn producer(&self, connection: &Client) -> Result<StreamProducer, Error> {
        let keys: Vec<String> = (0..PARTITION_KEYS).map(|i| format!("key-{i:x}")).collect();
        Ok(StreamProducer { client: connection.clone(), stream: self.stream.as_str().into(), keys: keys.into() })
    }

    async fn consumer(&self, _connection: &Client, index: usize) -> Result<StreamConsumer, Error> {
        // Events of a subscription hold up their connection's other answers: one each.
        let client = connect(&self.endpoint, self.key.as_ref()).await?;
        let description = client.describe_stream(&self.stream).await.map_err(|e| e.to_string())?;
        let consumer_arn = format!("{}/consumer/{}:", description.arn, consumer_name(index / self.shards.max(1)));
        let listed = client
            .call(sluice_client::Op::ListStreamConsumers { stream: description.arn.clone(), next_token: None, max_results: None })
            .await
            .map_err(|e| e.to_string())?;
        let sluice_client::Reply::StreamConsumers { consumers, .. } = listed else {
            return Err("unexpected ListStreamConsumers answer".into());
        };
        let consumer_arn = consumers.into_iter().find(|c| c.arn.starts_with(&consumer_arn)).ok_or("the consumer is not registered")?.arn;
        let shard_id = description.shards.get(index % self.shards.max(1)).ok_or("the stream has fewer shards than asked")?.shard_id.clone();
        Ok(StreamConsumer { client, consumer_arn, shard_id, subscription: None, continuation: None })
    }
}

impl Producer for StreamProducer {
    async fn send(&self, bodies: Vec<Bytes>) -> Result<(), Error> {
        let records = bodies
            .into_iter()
            .map(|data| PutRecordsEntry {
                data,
                partition_key: self.keys[fastrand::usize(..self.keys.len())].clone(),
                explicit_hash_key: None,
            })
            .collect();
        let results = self.client.put_records(&self.stream, records).await.map_err(|e| e.to_string())?;
        let failed: Vec<&PutRecordResult> = results.iter().filter(|r| matches!(r, PutRecordResult::Failed(_))).collect();
        match failed.first() {
            None => Ok(()),
            Some(first) => Err(format!("{} records of the batch failed, first: {first:?}", failed.len())),
        }
    }
}

impl Consumer for StreamConsumer {
    const RECEIVE_IS_A_REQUEST: bool = false;
    const ACKNOWLEDGES: bool = false;

    async fn receive(&mut self, _max: usize, stamps: &mut Vec<u64>) -> Result<(), Error> {
        loop {
            if self.subscription.is_none() {
                let position = match &self.continuation {
                    Some(seq) => StartingPosition { sequence_number: Some(seq.clone()), ..StartingPosition::new("AFTER_SEQUENCE_NUMBER") },
                    None => StartingPosition::new("TRIM_HORIZON"),
                };
                let subscription =
                    self.client.subscribe_to_shard(&self.consumer_arn, &self.shard_id, position).await.map_err(|e| e.to_string())?;
                self.subscription = Some(subscription);
            }
            let Some(subscription) = self.subscription.as_mut() else { continue };
            match subscription.next().await {
                Some(Ok(event)) => {
                    self.continuation = Some(event.continuation_sequence_number);
                    stamps.extend(event.records.iter().filter_map(|record| stamp_of(&record.data)));
                    return Ok(());
                }
                Some(Err(error)) => return Err(error.to_string()),
                // Ended (five minutes are up): subscribe again where it stopped.
                None => self.subscription = None,
            }
        }
    }

    async fn acknowledge(&mut self) -> Result<(), Error> {
        Ok(())
    }
}
