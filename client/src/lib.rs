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
    BatchFailure, DeleteEntry, ErrorCode, KeyValues, MessageAttribute, Op, OpError, PublishEntry, PublishResult, ReceiveMessage,
    ReceivedMessage, Reply, SendEntry, SendResult, SubscriptionSummary, VisibilityEntry,
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
}

impl ClientError {
    /// The server's error code, when the server answered with one.
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            ClientError::Server(error) => Some(error.code),
            _ => None,
        }
    }
}

/// What the server said in answer to `Hello`.
#[derive(Debug, Clone)]
pub struct ServerInfo {
    pub server_version: String,
    pub shard_count: u16,
    pub shard_id: u16,
}

struct Pending {
    op: Op,
    reply: oneshot::Sender<Result<Reply, ClientError>>,
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
    /// Says `Hello` over `stream`; returns the client and the driver to spawn.
    pub async fn connect<S>(mut stream: S, client_name: &str) -> Result<(Client, Driver<S>), ClientError>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let hello = Request { id: 0, op: Op::Hello { protocol_version: PROTOCOL_VERSION, client_name: client_name.to_owned() } };
        stream.write_all(Encoder::new().request(&hello)).await?;
        stream.flush().await?;
        let mut read_buf = BytesMut::with_capacity(READ_CHUNK_BYTES);
        let frame = read_frame(&mut stream, &mut read_buf).await?.ok_or(ClientError::Disconnected)?;
        let (_, response) = decode_response(&frame).map_err(|e| ClientError::Protocol(e.to_string()))?;
        let info = match response? {
            Reply::Hello { server_version, shard_count, shard_id, .. } => ServerInfo { server_version, shard_count, shard_id },
            other => return Err(ClientError::Protocol(format!("expected a Hello answer, got {other:?}"))),
        };
        let (queue, requests) = mpsc::channel(QUEUED_REQUESTS_MAX);
        Ok((Client { queue, info: Arc::new(info) }, Driver { stream, requests, read_buf }))
    }

    pub fn server(&self) -> &ServerInfo {
        &self.info
    }

    /// Sends one operation and waits for its answer.
    pub async fn call(&self, op: Op) -> Result<Reply, ClientError> {
        let (reply, answer) = oneshot::channel();
        self.queue.clone().send(Pending { op, reply }).await.map_err(|_| ClientError::Disconnected)?;
        answer.await.map_err(|_| ClientError::Disconnected)?
    }

    pub async fn create_queue(&self, name: &str, attributes: KeyValues, tags: KeyValues) -> Result<String, ClientError> {
        expect_url(self.call(Op::CreateQueue { name: name.into(), attributes, tags }).await?)
    }

    pub async fn get_queue_url(&self, name: &str) -> Result<String, ClientError> {
        expect_url(self.call(Op::GetQueueUrl { name: name.into() }).await?)
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

type Waiting = (u64, oneshot::Sender<Result<Reply, ClientError>>);

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
            let mut waiting: HashMap<u64, oneshot::Sender<Result<Reply, ClientError>>> = HashMap::new();
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
                if let Some(reply) = waiting.remove(&id) {
                    let _ = reply.send(response.map_err(ClientError::Server));
                } else if let Err(error) = response {
                    // An error for no request of ours (id 0): the server is closing this connection.
                    return Err(ClientError::Server(error));
                }
            }
        };
        let (written, read) = futures::join!(write, read);
        read.and(written)
    }
}
