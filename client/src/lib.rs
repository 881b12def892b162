//! The Sluice client: pipelined requests over one connection, on any runtime.
//!
//! `Client::connect` takes any `futures-io` byte stream (a glommio `TcpStream`,
//! a tokio stream through `tokio-util`'s compat layer, an `async-io` socket),
//! says `Hello`, and returns the `Client` and a `Driver`: a future the caller
//! spawns on its executor, which writes requests and reads answers. Many
//! requests may be in flight; answers are matched by id. `Client` is cheap to
//! clone and may be shared across tasks and threads.
//!
//! `blocking::BlockingClient` wraps all this for synchronous code.

pub mod blocking;
pub mod envelope;
pub mod group;
pub mod tls;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use futures::channel::{mpsc, oneshot};
use futures::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use futures::{SinkExt, StreamExt};
use sluice_protocol::limits::{FRAME_BYTES_MAX_DEFAULT, PROTOCOL_VERSION};
use sluice_protocol::{check_frame, decode_response, Encoder, FrameCheck, Request};
pub use sluice_protocol::{
    AliasEntry, BatchFailure, ChildShard, ConsumerDescription, ConsumerRef, Datapoint, DeleteEntry, Dimension, DimensionFilter, ErrorCode,
    FirehosePutResult, GetRecordsResult, KeyDescription, KeyValues, ListShards, MessageAttribute, MetricAlarm, MetricDataQuery,
    MetricDataResult, MetricId, MoveTaskDescription, Op, OpError, PublishEntry, PublishResult, PutRecordResult, PutRecordsEntry,
    ReceiveMessage, ReceivedMessage, Reply, SendEntry, SendResult, ShardDescription, ShardEvent, ShardLease, ShardLeases, StartingPosition,
    StreamDescription, StreamRecord, SubscriptionSummary, VisibilityEntry, SHARD_END,
};

/// Requests queued for the driver before `call` waits.
const QUEUED_REQUESTS_MAX: usize = 1024;
/// Bytes read from the socket at a time.
const READ_CHUNK_BYTES: usize = 64 * 1024;
/// Most bytes one read may fill (and so zero first): keeps a large frame's reads linear.
const READ_BYTES_MAX: usize = 256 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("{0}")]
    Server(#[from] OpError),
    #[error("connection error: {0}")]
    Io(#[from] std::io::Error),
    #[error("the connection to the server is closed")]
    Disconnected,
    #[error("protocol error: {0}")]
    Protocol(String),
    #[error("TLS: {0}")]
    Tls(String),
    /// Client-side encryption: content that does not seal or open (`envelope`).
    #[error("envelope: {0}")]
    Envelope(String),
}

impl ClientError {
    /// The server's error code, when the server answered with one.
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            ClientError::Server(error) => Some(error.code),
            _ => None,
        }
    }

    /// The same error again, for each request a broken connection leaves waiting.
    fn duplicate(&self) -> ClientError {
        match self {
            ClientError::Server(error) => ClientError::Server(error.clone()),
            ClientError::Io(error) => ClientError::Io(std::io::Error::new(error.kind(), error.to_string())),
            ClientError::Disconnected => ClientError::Disconnected,
            ClientError::Protocol(message) => ClientError::Protocol(message.clone()),
            ClientError::Tls(message) => ClientError::Tls(message.clone()),
            ClientError::Envelope(message) => ClientError::Envelope(message.clone()),
        }
    }
}

/// A principal's access key: its id and secret (`--credentials` on the server).
#[derive(Clone, PartialEq, Eq)]
pub struct AccessKey {
    pub access_key_id: String,
    pub secret_access_key: String,
}

impl std::fmt::Debug for AccessKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccessKey").field("access_key_id", &self.access_key_id).finish_non_exhaustive()
    }
}

/// What the server said in answer to `Hello`.
#[derive(Debug, Clone)]
pub struct ServerInfo {
    pub server_version: String,
    pub shard_count: u16,
    pub shard_id: u16,
    /// The principal the connection acts as, when the server asked for authentication.
    pub principal_arn: Option<String>,
}

/// Where the answers to one request go.
enum Waiter {
    /// One answer.
    Once(oneshot::Sender<Result<Reply, ClientError>>),
    /// A push subscription: every answer until `Done` or an error.
    Events(mpsc::Sender<Result<Reply, ClientError>>),
}

struct Pending {
    op: Op,
    reply: Waiter,
}

/// Push events of one SubscribeToShard, in order.
pub struct ShardSubscription {
    events: mpsc::Receiver<Result<Reply, ClientError>>,
}

/// Events a subscription may have waiting in the client before it stops reading the
/// connection (so a slow consumer holds the server back, not the client's memory).
const SUBSCRIPTION_EVENTS_QUEUED: usize = 4;

impl ShardSubscription {
    /// The next event; `None` once the subscription has ended (after five minutes, or at
    /// the end of a closed shard: subscribe again from the last continuation number, or
    /// to the children).
    pub async fn next(&mut self) -> Option<Result<ShardEvent, ClientError>> {
        match self.events.next().await? {
            Ok(Reply::ShardEvent(event)) => Some(Ok(event)),
            Ok(Reply::Done) => None,
            Ok(other) => Some(Err(unexpected(other))),
            Err(error) => Some(Err(error)),
        }
    }
}

/// A handle for making requests; clone it freely.
#[derive(Clone)]
pub struct Client {
    queue: mpsc::Sender<Pending>,
    info: Arc<ServerInfo>,
}

/// Drives one connection: spawn it on your executor. Finishes when every `Client`
/// clone is dropped and all answers are in, or when the connection fails.
pub struct Driver<S> {
    stream: S,
    requests: mpsc::Receiver<Pending>,
    read_buf: BytesMut,
}

async fn read_frame<R: AsyncRead + Unpin>(reader: &mut R, buf: &mut BytesMut) -> Result<Option<Bytes>, ClientError> {
    loop {
        match check_frame(buf, FRAME_BYTES_MAX_DEFAULT) {
            FrameCheck::Complete(len) => return Ok(Some(buf.split_to(len).freeze())),
            FrameCheck::Invalid { announced } => return Err(ClientError::Protocol(format!("server sent a frame of {announced} bytes"))),
            FrameCheck::Incomplete { total } => {
                let missing = total.unwrap_or(0).saturating_sub(buf.len());
                buf.reserve(missing.max(READ_CHUNK_BYTES));
                let want = missing.clamp(READ_CHUNK_BYTES, READ_BYTES_MAX);
                let start = buf.len();
                buf.resize(start + want, 0);
                let n = reader.read(&mut buf[start..]).await?;
                buf.truncate(start + n);
                if n == 0 {
                    return if start == 0 { Ok(None) } else { Err(ClientError::Disconnected) };
                }
            }
        }
    }
}

impl Client {
    /// Says `Hello` over `stream`; returns the client and the driver to spawn. A server that
    /// requires authentication refuses this (`MissingAuthenticationToken`): use `connect_as`.
    pub async fn connect<S>(stream: S, client_name: &str) -> Result<(Client, Driver<S>), ClientError>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        Client::connect_as(stream, client_name, None).await
    }

    /// Says `Hello` over `stream` and, if the server asks, proves to hold `key`'s secret
    /// (the secret itself never crosses the wire); returns the client and the driver to spawn.
    pub async fn connect_as<S>(mut stream: S, client_name: &str, key: Option<&AccessKey>) -> Result<(Client, Driver<S>), ClientError>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let hello = Request { id: 0, op: Op::Hello { protocol_version: PROTOCOL_VERSION, client_name: client_name.to_owned() } };
        stream.write_all(Encoder::new().request(&hello)).await?;
        stream.flush().await?;
        let mut read_buf = BytesMut::with_capacity(READ_CHUNK_BYTES);
        let frame = read_frame(&mut stream, &mut read_buf).await?.ok_or(ClientError::Disconnected)?;
        let (_, response) = decode_response(&frame).map_err(|e| ClientError::Protocol(e.to_string()))?;
        let (mut info, nonce) = match response? {
            Reply::Hello { server_version, shard_count, shard_id, auth_nonce, .. } => {
                (ServerInfo { server_version, shard_count, shard_id, principal_arn: None }, auth_nonce)
            }
            other => return Err(ClientError::Protocol(format!("expected a Hello answer, got {other:?}"))),
        };
        if let Some(nonce) = nonce {
            let Some(key) = key else {
                return Err(ClientError::Server(OpError::new(
                    ErrorCode::MissingAuthenticationToken,
                    "the server requires credentials: give an access key id and secret",
                )));
            };
            let proof = sluice_protocol::auth::proof(&key.secret_access_key, &nonce, &key.access_key_id);
            let authenticate = Request { id: 1, op: Op::Authenticate { access_key_id: key.access_key_id.clone(), proof } };
            stream.write_all(Encoder::new().request(&authenticate)).await?;
            stream.flush().await?;
            let frame = read_frame(&mut stream, &mut read_buf).await?.ok_or(ClientError::Disconnected)?;
            let (_, response) = decode_response(&frame).map_err(|e| ClientError::Protocol(e.to_string()))?;
            match response? {
                Reply::Authenticated { principal_arn, .. } => info.principal_arn = Some(principal_arn),
                other => return Err(ClientError::Protocol(format!("expected an Authenticated answer, got {other:?}"))),
            }
        }
        let (queue, requests) = mpsc::channel(QUEUED_REQUESTS_MAX);
        Ok((Client { queue, info: Arc::new(info) }, Driver { stream, requests, read_buf }))
    }

    pub fn server(&self) -> &ServerInfo {
        &self.info
    }

    /// Sends one operation and waits for its answer.
    pub async fn call(&self, op: Op) -> Result<Reply, ClientError> {
        let (reply, answer) = oneshot::channel();
        self.queue.clone().send(Pending { op, reply: Waiter::Once(reply) }).await.map_err(|_| ClientError::Disconnected)?;
        answer.await.map_err(|_| ClientError::Disconnected)?
    }

    /// Starts a push subscription (SubscribeToShard). Its events share this connection:
    /// an unread subscription stops this connection's other answers too, so give
    /// subscriptions a connection of their own.
    pub async fn subscribe_to_shard(
        &self,
        consumer_arn: &str,
        shard_id: &str,
        position: StartingPosition,
    ) -> Result<ShardSubscription, ClientError> {
        let (reply, events) = mpsc::channel(SUBSCRIPTION_EVENTS_QUEUED);
        let op = Op::SubscribeToShard { consumer_arn: consumer_arn.into(), shard_id: shard_id.into(), position };
        self.queue.clone().send(Pending { op, reply: Waiter::Events(reply) }).await.map_err(|_| ClientError::Disconnected)?;
        Ok(ShardSubscription { events })
    }

    pub async fn create_stream(&self, name: &str, shard_count: i32) -> Result<(), ClientError> {
        expect_done(
            self.call(Op::CreateStream {
                name: name.into(),
                shard_count: Some(shard_count),
                mode: None,
                tags: vec![],
                max_record_size_kib: None,
            })
            .await?,
        )
    }

    pub async fn delete_stream(&self, stream: &str) -> Result<(), ClientError> {
        expect_done(self.call(Op::DeleteStream { stream: stream.into(), enforce_consumer_deletion: true }).await?)
    }

    /// DescribeStream, following its pages until every shard is listed.
    pub async fn describe_stream(&self, stream: &str) -> Result<StreamDescription, ClientError> {
        let mut description: Option<StreamDescription> = None;
        loop {
            let after = description.as_ref().and_then(|d| d.shards.last()).map(|shard| shard.shard_id.clone());
            let page = match self.call(Op::DescribeStream { stream: stream.into(), limit: None, exclusive_start_shard_id: after }).await? {
                Reply::StreamDescription(page) => page,
                other => return Err(unexpected(other)),
            };
            let more = page.has_more_shards && !page.shards.is_empty();
            match &mut description {
                Some(description) => description.shards.extend(page.shards),
                None => description = Some(page),
            }
            if !more {
                let mut description = description.unwrap_or_default();
                description.has_more_shards = false;
                return Ok(description);
            }
        }
    }

    /// Every stream's name (ListStreams, every page).
    pub async fn list_streams(&self) -> Result<Vec<String>, ClientError> {
        let mut names = Vec::new();
        let mut next_token = None;
        loop {
            match self.call(Op::ListStreams { limit: None, exclusive_start_stream_name: None, next_token }).await? {
                Reply::Streams { streams, next_token: token, .. } => {
                    names.extend(streams.into_iter().map(|stream| stream.name));
                    match token {
                        Some(token) => next_token = Some(token),
                        None => return Ok(names),
                    }
                }
                other => return Err(unexpected(other)),
            }
        }
    }

    /// ListShards (one page) with the given parameters.
    pub async fn list_shards(&self, list: ListShards) -> Result<(Vec<ShardDescription>, Option<String>), ClientError> {
        match self.call(Op::ListShards(list)).await? {
            Reply::Shards { shards, next_token } => Ok((shards, next_token)),
            other => Err(unexpected(other)),
        }
    }

    /// Puts one record; returns its shard id and sequence number.
    pub async fn put_record(&self, stream: &str, partition_key: &str, data: impl Into<Bytes>) -> Result<(String, String), ClientError> {
        let record = PutRecordsEntry { data: data.into(), partition_key: partition_key.into(), explicit_hash_key: None };
        match self.call(Op::PutRecord { stream: stream.into(), record, sequence_number_for_ordering: None }).await? {
            Reply::PutRecord(PutRecordResult::Put { shard_id, sequence_number }) => Ok((shard_id, sequence_number)),
            Reply::PutRecord(PutRecordResult::Failed(error)) => Err(ClientError::Server(error)),
            other => Err(unexpected(other)),
        }
    }

    /// PutRecords: one result per record, in order.
    pub async fn put_records(&self, stream: &str, records: Vec<PutRecordsEntry>) -> Result<Vec<PutRecordResult>, ClientError> {
        match self.call(Op::PutRecords { stream: stream.into(), records }).await? {
            Reply::PutRecords { records, .. } => Ok(records),
            other => Err(unexpected(other)),
        }
    }

    pub async fn get_shard_iterator(&self, stream: &str, shard_id: &str, position: StartingPosition) -> Result<String, ClientError> {
        match self.call(Op::GetShardIterator { stream: stream.into(), shard_id: shard_id.into(), position }).await? {
            Reply::ShardIterator(iterator) => Ok(iterator),
            other => Err(unexpected(other)),
        }
    }

    pub async fn get_records(&self, iterator: &str, limit: Option<i32>) -> Result<GetRecordsResult, ClientError> {
        match self.call(Op::GetRecords { iterator: iterator.into(), limit, stream_arn: None }).await? {
            Reply::Records(result) => Ok(result),
            other => Err(unexpected(other)),
        }
    }

    pub async fn split_shard(&self, stream: &str, shard_id: &str, new_starting_hash_key: &str) -> Result<(), ClientError> {
        let op =
            Op::SplitShard { stream: stream.into(), shard_to_split: shard_id.into(), new_starting_hash_key: new_starting_hash_key.into() };
        expect_done(self.call(op).await?)
    }

    pub async fn merge_shards(&self, stream: &str, shard_id: &str, adjacent_shard_id: &str) -> Result<(), ClientError> {
        let op =
            Op::MergeShards { stream: stream.into(), shard_to_merge: shard_id.into(), adjacent_shard_to_merge: adjacent_shard_id.into() };
        expect_done(self.call(op).await?)
    }

    pub async fn register_stream_consumer(&self, stream_arn: &str, name: &str) -> Result<ConsumerDescription, ClientError> {
        match self.call(Op::RegisterStreamConsumer { stream: stream_arn.into(), name: name.into() }).await? {
            Reply::StreamConsumer(consumer) => Ok(consumer),
            other => Err(unexpected(other)),
        }
    }

    pub async fn create_queue(&self, name: &str, attributes: KeyValues, tags: KeyValues) -> Result<String, ClientError> {
        expect_url(self.call(Op::CreateQueue { name: name.into(), attributes, tags }).await?)
    }

    pub async fn get_queue_url(&self, name: &str) -> Result<String, ClientError> {
        expect_url(self.call(Op::GetQueueUrl { name: name.into(), owner: None }).await?)
    }

    /// One page of queue URLs and the token for the next page, if any.
    pub async fn list_queues(
        &self,
        prefix: Option<&str>,
        max_results: Option<i32>,
        next_token: Option<String>,
    ) -> Result<(Vec<String>, Option<String>), ClientError> {
        match self.call(Op::ListQueues { prefix: prefix.map(str::to_owned), max_results, next_token }).await? {
            Reply::QueueUrls { queue_urls, next_token } => Ok((queue_urls, next_token)),
            other => Err(unexpected(other)),
        }
    }

    pub async fn delete_queue(&self, queue: &str) -> Result<(), ClientError> {
        expect_done(self.call(Op::DeleteQueue { queue: queue.into() }).await?)
    }

    pub async fn purge_queue(&self, queue: &str) -> Result<(), ClientError> {
        expect_done(self.call(Op::PurgeQueue { queue: queue.into() }).await?)
    }

    pub async fn get_queue_attributes(&self, queue: &str, names: &[&str]) -> Result<KeyValues, ClientError> {
        let names = names.iter().map(|n| (*n).to_owned()).collect();
        expect_attributes(self.call(Op::GetQueueAttributes { queue: queue.into(), names }).await?)
    }

    pub async fn set_queue_attributes(&self, queue: &str, attributes: KeyValues) -> Result<(), ClientError> {
        expect_done(self.call(Op::SetQueueAttributes { queue: queue.into(), attributes }).await?)
    }

    pub async fn tag_queue(&self, queue: &str, tags: KeyValues) -> Result<(), ClientError> {
        expect_done(self.call(Op::TagQueue { queue: queue.into(), tags }).await?)
    }

    pub async fn untag_queue(&self, queue: &str, keys: Vec<String>) -> Result<(), ClientError> {
        expect_done(self.call(Op::UntagQueue { queue: queue.into(), keys }).await?)
    }

    pub async fn list_queue_tags(&self, queue: &str) -> Result<KeyValues, ClientError> {
        expect_attributes(self.call(Op::ListQueueTags { queue: queue.into() }).await?)
    }

    pub async fn list_dead_letter_source_queues(
        &self,
        queue: &str,
        max_results: Option<i32>,
        next_token: Option<String>,
    ) -> Result<(Vec<String>, Option<String>), ClientError> {
        match self.call(Op::ListDeadLetterSourceQueues { queue: queue.into(), max_results, next_token }).await? {
            Reply::QueueUrls { queue_urls, next_token } => Ok((queue_urls, next_token)),
            other => Err(unexpected(other)),
        }
    }

    /// Sends one message with a plain body.
    pub async fn send_message(&self, queue: &str, body: impl Into<Bytes>) -> Result<SendResult, ClientError> {
        self.send_entry(queue, SendEntry { body: body.into(), ..SendEntry::default() }).await
    }

    /// Sends one message with every option of SendMessage.
    pub async fn send_entry(&self, queue: &str, entry: SendEntry) -> Result<SendResult, ClientError> {
        match self.call(Op::SendMessage { queue: queue.into(), entry }).await? {
            Reply::SendMessage(result) => Ok(result),
            other => Err(unexpected(other)),
        }
    }

    /// SendMessageBatch: per-entry successes and failures.
    pub async fn send_message_batch(
        &self,
        queue: &str,
        entries: Vec<SendEntry>,
    ) -> Result<(Vec<SendResult>, Vec<BatchFailure>), ClientError> {
        match self.call(Op::SendMessageBatch { queue: queue.into(), entries }).await? {
            Reply::SendMessageBatch { successful, failed } => Ok((successful, failed)),
            other => Err(unexpected(other)),
        }
    }

    pub async fn receive_message(&self, receive: ReceiveMessage) -> Result<Vec<ReceivedMessage>, ClientError> {
        match self.call(Op::ReceiveMessage(receive)).await? {
            Reply::ReceiveMessage(messages) => Ok(messages),
            other => Err(unexpected(other)),
        }
    }

    pub async fn delete_message(&self, queue: &str, receipt_handle: &str) -> Result<(), ClientError> {
        expect_done(self.call(Op::DeleteMessage { queue: queue.into(), receipt_handle: receipt_handle.into() }).await?)
    }

    pub async fn delete_message_batch(
        &self,
        queue: &str,
        entries: Vec<DeleteEntry>,
    ) -> Result<(Vec<String>, Vec<BatchFailure>), ClientError> {
        expect_batch(self.call(Op::DeleteMessageBatch { queue: queue.into(), entries }).await?)
    }

    pub async fn change_message_visibility(&self, queue: &str, receipt_handle: &str, visibility_timeout: i32) -> Result<(), ClientError> {
        let op = Op::ChangeMessageVisibility { queue: queue.into(), receipt_handle: receipt_handle.into(), visibility_timeout };
        expect_done(self.call(op).await?)
    }

    pub async fn change_message_visibility_batch(
        &self,
        queue: &str,
        entries: Vec<VisibilityEntry>,
    ) -> Result<(Vec<String>, Vec<BatchFailure>), ClientError> {
        expect_batch(self.call(Op::ChangeMessageVisibilityBatch { queue: queue.into(), entries }).await?)
    }
}

/// Topics (SNS).
impl Client {
    /// Creates a topic (idempotent when the attributes are the same); returns its ARN.
    pub async fn create_topic(&self, name: &str, attributes: KeyValues, tags: KeyValues) -> Result<String, ClientError> {
        expect_arn(self.call(Op::CreateTopic { name: name.into(), attributes, tags }).await?)
    }

    /// Deletes a topic (by ARN or name) and its subscriptions.
    pub async fn delete_topic(&self, topic: &str) -> Result<(), ClientError> {
        expect_done(self.call(Op::DeleteTopic { topic: topic.into() }).await?)
    }

    /// One page of topic ARNs and the token for the next page, if any.
    pub async fn list_topics(&self, next_token: Option<String>) -> Result<(Vec<String>, Option<String>), ClientError> {
        match self.call(Op::ListTopics { next_token }).await? {
            Reply::Arns { arns, next_token } => Ok((arns, next_token)),
            other => Err(unexpected(other)),
        }
    }

    pub async fn get_topic_attributes(&self, topic: &str) -> Result<KeyValues, ClientError> {
        expect_attributes(self.call(Op::GetTopicAttributes { topic: topic.into() }).await?)
    }

    /// Sets one topic attribute; `None` or an empty value removes it.
    pub async fn set_topic_attribute(&self, topic: &str, name: &str, value: Option<&str>) -> Result<(), ClientError> {
        let op = Op::SetTopicAttributes { topic: topic.into(), name: name.into(), value: value.map(str::to_owned) };
        expect_done(self.call(op).await?)
    }

    /// Subscribes an endpoint (for `sqs`, a queue ARN); returns the subscription ARN.
    pub async fn subscribe(&self, topic: &str, protocol: &str, endpoint: &str, attributes: KeyValues) -> Result<String, ClientError> {
        let op = Op::Subscribe {
            topic: topic.into(),
            protocol: protocol.into(),
            endpoint: Some(endpoint.into()),
            attributes,
            return_subscription_arn: true,
        };
        expect_arn(self.call(op).await?)
    }

    pub async fn confirm_subscription(&self, topic: &str, token: &str) -> Result<String, ClientError> {
        let op = Op::ConfirmSubscription { topic: topic.into(), token: token.into(), authenticate_on_unsubscribe: false };
        expect_arn(self.call(op).await?)
    }

    pub async fn unsubscribe(&self, subscription_arn: &str) -> Result<(), ClientError> {
        expect_done(self.call(Op::Unsubscribe { subscription: subscription_arn.into() }).await?)
    }

    /// One page of every subscription, or of one topic's.
    pub async fn list_subscriptions(
        &self,
        topic: Option<&str>,
        next_token: Option<String>,
    ) -> Result<(Vec<SubscriptionSummary>, Option<String>), ClientError> {
        match self.call(Op::ListSubscriptions { topic: topic.map(str::to_owned), next_token }).await? {
            Reply::Subscriptions { subscriptions, next_token } => Ok((subscriptions, next_token)),
            other => Err(unexpected(other)),
        }
    }

    pub async fn get_subscription_attributes(&self, subscription_arn: &str) -> Result<KeyValues, ClientError> {
        expect_attributes(self.call(Op::GetSubscriptionAttributes { subscription: subscription_arn.into() }).await?)
    }

    /// Sets one subscription attribute; `None` or an empty value removes it.
    pub async fn set_subscription_attribute(&self, subscription_arn: &str, name: &str, value: Option<&str>) -> Result<(), ClientError> {
        let op =
            Op::SetSubscriptionAttributes { subscription: subscription_arn.into(), name: name.into(), value: value.map(str::to_owned) };
        expect_done(self.call(op).await?)
    }

    /// Publishes a plain message; returns its message id.
    pub async fn publish(&self, topic: &str, message: impl Into<Bytes>) -> Result<String, ClientError> {
        Ok(self.publish_entry(topic, PublishEntry { message: message.into(), ..PublishEntry::default() }).await?.message_id)
    }

    /// Publishes one message with every option of Publish.
    pub async fn publish_entry(&self, topic: &str, entry: PublishEntry) -> Result<PublishResult, ClientError> {
        match self.call(Op::Publish { topic: topic.into(), entry }).await? {
            Reply::Publish(result) => Ok(result),
            other => Err(unexpected(other)),
        }
    }

    /// PublishBatch: per-entry successes and failures.
    pub async fn publish_batch(
        &self,
        topic: &str,
        entries: Vec<PublishEntry>,
    ) -> Result<(Vec<PublishResult>, Vec<BatchFailure>), ClientError> {
        match self.call(Op::PublishBatch { topic: topic.into(), entries }).await? {
            Reply::PublishBatch { successful, failed } => Ok((successful, failed)),
            other => Err(unexpected(other)),
        }
    }

    /// CreateDeliveryStream: `configuration` is the rest of the request as Firehose's JSON API
    /// spells it (`{"ExtendedS3DestinationConfiguration": {...}}`); returns the ARN.
    pub async fn create_delivery_stream(&self, name: &str, configuration: &str, tags: KeyValues) -> Result<String, ClientError> {
        expect_arn(self.call(Op::CreateDeliveryStream { name: name.into(), configuration: configuration.into(), tags }).await?)
    }

    pub async fn delete_delivery_stream(&self, name: &str) -> Result<(), ClientError> {
        expect_done(self.call(Op::DeleteDeliveryStream { name: name.into(), allow_force_delete: false }).await?)
    }

    /// StartDeliveryStreamEncryption: records are sealed at rest under `key_arn` (a key of the
    /// broker's key service), or under Firehose's own key when `None`.
    pub async fn start_delivery_stream_encryption(&self, name: &str, key_arn: Option<&str>) -> Result<(), ClientError> {
        let key_type = if key_arn.is_some() { "CUSTOMER_MANAGED_CMK" } else { "AWS_OWNED_CMK" };
        let op = Op::SetDeliveryStreamEncryption {
            name: name.into(),
            key_type: Some(key_type.into()),
            key_arn: key_arn.map(str::to_owned),
            start: true,
        };
        expect_done(self.call(op).await?)
    }

    /// StopDeliveryStreamEncryption.
    pub async fn stop_delivery_stream_encryption(&self, name: &str) -> Result<(), ClientError> {
        expect_done(self.call(Op::SetDeliveryStreamEncryption { name: name.into(), key_type: None, key_arn: None, start: false }).await?)
    }

    /// DescribeDeliveryStream: the `DeliveryStreamDescription`, as Firehose's JSON.
    pub async fn describe_delivery_stream(&self, name: &str) -> Result<String, ClientError> {
        match self.call(Op::DescribeDeliveryStream { name: name.into(), limit: None, exclusive_start_destination_id: None }).await? {
            Reply::DeliveryStream(description) => Ok(description),
            other => Err(unexpected(other)),
        }
    }

    /// Every delivery stream's name (ListDeliveryStreams, every page).
    pub async fn list_delivery_streams(&self) -> Result<Vec<String>, ClientError> {
        let mut names: Vec<String> = Vec::new();
        loop {
            let after = names.last().cloned();
            match self.call(Op::ListDeliveryStreams { limit: Some(10_000), stream_type: None, exclusive_start_name: after }).await? {
                Reply::DeliveryStreams { names: page, has_more } => {
                    let done = !has_more || page.is_empty();
                    names.extend(page);
                    if done {
                        return Ok(names);
                    }
                }
                other => return Err(unexpected(other)),
            }
        }
    }

    /// PutRecordBatch (PutRecord when `records` holds one and `batch` is false): each record's
    /// id or error, in order.
    pub async fn put_firehose_records(&self, name: &str, records: Vec<Bytes>, batch: bool) -> Result<Vec<FirehosePutResult>, ClientError> {
        match self.call(Op::PutFirehoseRecords { name: name.into(), records, batch }).await? {
            Reply::FirehosePut { records, .. } => Ok(records),
            other => Err(unexpected(other)),
        }
    }

    /// UpdateDestination of the delivery stream's one destination at `version`.
    pub async fn update_destination(&self, name: &str, version: &str, configuration: &str) -> Result<(), ClientError> {
        let op = Op::UpdateDestination {
            name: name.into(),
            current_version_id: version.into(),
            destination_id: "destinationId-000000000001".into(),
            configuration: configuration.into(),
        };
        expect_done(self.call(op).await?)
    }
}

fn expect_arn(reply: Reply) -> Result<String, ClientError> {
    match reply {
        Reply::Arn(arn) => Ok(arn),
        other => Err(unexpected(other)),
    }
}

fn unexpected(reply: Reply) -> ClientError {
    ClientError::Protocol(format!("unexpected answer: {reply:?}"))
}

fn expect_done(reply: Reply) -> Result<(), ClientError> {
    match reply {
        Reply::Done => Ok(()),
        other => Err(unexpected(other)),
    }
}

fn expect_url(reply: Reply) -> Result<String, ClientError> {
    match reply {
        Reply::QueueUrl(url) => Ok(url),
        other => Err(unexpected(other)),
    }
}

fn expect_attributes(reply: Reply) -> Result<KeyValues, ClientError> {
    match reply {
        Reply::Attributes(attributes) => Ok(attributes),
        other => Err(unexpected(other)),
    }
}

fn expect_batch(reply: Reply) -> Result<(Vec<String>, Vec<BatchFailure>), ClientError> {
    match reply {
        Reply::Batch { successful, failed } => Ok((successful, failed)),
        other => Err(unexpected(other)),
    }
}

type Waiting = (u64, Waiter);

impl<S> Driver<S>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    /// Runs the connection until the clients are gone and every answer is in.
    pub async fn run(self) -> Result<(), ClientError> {
        let Driver { stream, mut requests, mut read_buf } = self;
        let (mut reader, mut writer) = stream.split();
        // The writer registers each id with the reader before sending it, so an
        // answer always finds its waiter: no map is shared between the two.
        let (register, mut registered) = mpsc::unbounded::<Waiting>();
        let ids = AtomicU64::new(1);
        let write = async move {
            let mut encoder = Encoder::new();
            let mut out: Vec<u8> = Vec::with_capacity(READ_CHUNK_BYTES);
            while let Some(first) = requests.next().await {
                let mut next = Some(first);
                // Batch every request already queued into one write.
                while let Some(Pending { op, reply }) = next.take() {
                    let id = ids.fetch_add(1, Ordering::Relaxed);
                    out.extend_from_slice(encoder.request(&Request { id, op }));
                    if register.unbounded_send((id, reply)).is_err() {
                        return Err(ClientError::Disconnected);
                    }
                    if out.len() < READ_CHUNK_BYTES {
                        next = requests.try_recv().ok();
                    }
                }
                writer.write_all(&out).await?;
                writer.flush().await?;
                out.clear();
            }
            drop(register);
            writer.close().await?;
            Ok::<(), ClientError>(())
        };
        let read = async move {
            let mut waiting: HashMap<u64, Waiter> = HashMap::new();
            let ended = async {
                loop {
                    while let Ok((id, reply)) = registered.try_recv() {
                        waiting.insert(id, reply);
                    }
                    if waiting.is_empty() {
                        // Nothing is owed to us, so there is nothing to read: wait for the
                        // next request, or end once every client is gone (dropping the socket).
                        match registered.next().await {
                            Some((id, reply)) => {
                                waiting.insert(id, reply);
                            }
                            None => return Ok(()),
                        }
                    }
                    let Some(frame) = read_frame(&mut reader, &mut read_buf).await? else {
                        return Err(ClientError::Disconnected);
                    };
                    while let Ok((id, reply)) = registered.try_recv() {
                        waiting.insert(id, reply);
                    }
                    let (id, response) = decode_response(&frame).map_err(|e| ClientError::Protocol(e.to_string()))?;
                    match waiting.remove(&id) {
                        Some(Waiter::Once(reply)) => {
                            let _ = reply.send(response.map_err(ClientError::Server));
                        }
                        Some(Waiter::Events(mut events)) => {
                            let last = !matches!(response, Ok(Reply::ShardEvent(_)));
                            // Waits while the subscriber is behind: back-pressure to the server.
                            let delivered = events.send(response.map_err(ClientError::Server)).await.is_ok();
                            if delivered && !last {
                                waiting.insert(id, Waiter::Events(events));
                            }
                        }
                        // A dropped subscription's later events.
                        None if id != 0 => {}
                        None => {
                            if let Err(error) = response {
                                // An error for no request of ours (id 0): the server is closing this connection.
                                return Err(ClientError::Server(error));
                            }
                        }
                    }
                }
            }
            .await;
            if let Err(error) = &ended {
                // Whoever still waits learns why the connection ended, not only that it did.
                while let Ok((id, reply)) = registered.try_recv() {
                    waiting.insert(id, reply);
                }
                for (_, waiter) in waiting.drain() {
                    match waiter {
                        Waiter::Once(reply) => {
                            let _ = reply.send(Err(error.duplicate()));
                        }
                        Waiter::Events(mut events) => {
                            let _ = events.try_send(Err(error.duplicate()));
                        }
                    }
                }
            }
            ended
        };
        let (written, read) = futures::join!(write, read);
        read.and(written)
    }
}
