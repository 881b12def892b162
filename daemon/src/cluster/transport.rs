//! Between cluster nodes: openraft's messages (append entries, votes, snapshots) and
//! forwarded metadata proposals over TCP, one request at a time per connection.
//!
//! A request is a frame: its length (4 bytes, little-endian, what follows the length), its
//! kind (1 byte), then its body as JSON. An answer is a frame of the same shape whose kind
//! byte is 0 (the body is the answer) or 1 (the body is an error's text). Nothing read is
//! trusted: a frame over `FRAME_MAX` or a body that does not decode ends the connection
//! with an error answer, and a node never panics on it.

use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Duration;

use futures::{AsyncReadExt, AsyncWriteExt};
use glommio::net::{TcpListener, TcpStream};
use openraft::alias::{SnapshotMetaOf, SnapshotOf, VoteOf};
use openraft::error::{RPCError, ReplicationClosed, StreamingError, Unreachable};
use openraft::network::RPCOption;
use openraft::raft::{AppendEntriesRequest, AppendEntriesResponse, SnapshotResponse, VoteRequest, VoteResponse};
use openraft::{BasicNode, RaftNetworkFactory, RaftNetworkV2};
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::{Meta, Node, Proposal};

/// Request kinds.
pub const APPEND: u8 = 1;
pub const VOTE: u8 = 2;
pub const PRE_VOTE: u8 = 3;
pub const SNAPSHOT: u8 = 4;
pub const PROPOSE: u8 = 5;

const ANSWER_OK: u8 = 0;
const ANSWER_ERROR: u8 = 1;

/// The largest frame a node reads (a snapshot of the whole catalog is the largest message).
pub const FRAME_MAX: usize = 256 << 20;

/// How long connecting to a node may take.
const CONNECT_WAIT: Duration = Duration::from_secs(2);

/// Runs `future` for at most `limit`.
pub async fn within<T>(limit: Duration, future: impl Future<Output = T>) -> Result<T, String> {
    use futures::future::{select, Either};
    let future = std::pin::pin!(future);
    let sleep = std::pin::pin!(glommio::timer::sleep(limit));
    match select(future, sleep).await {
        Either::Left((value, _)) => Ok(value),
        Either::Right(_) => Err(format!("no answer within {} ms", limit.as_millis())),
    }
}

async fn write_frame(stream: &mut TcpStream, kind: u8, body: &[u8]) -> std::io::Result<()> {
    let len = u32::try_from(body.len() + 1).map_err(|_| std::io::Error::other("a frame over 4 GiB"))?;
    let mut frame = Vec::with_capacity(5 + body.len());
    frame.extend_from_slice(&len.to_le_bytes());
    frame.push(kind);
    frame.extend_from_slice(body);
    stream.write_all(&frame).await?;
    stream.flush().await
}

/// Reads one frame: its kind and body; `None` when the other side closed between frames. The
/// body's buffer grows with the bytes that arrive, not with the length a peer announces.
async fn read_frame(stream: &mut TcpStream) -> std::io::Result<Option<(u8, Vec<u8>)>> {
    let mut header = [0u8; 5];
    match stream.read_exact(&mut header).await {
        Ok(()) => {}
        Err(error) if error.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(error) => return Err(error),
    }
    let len = u32::from_le_bytes([header[0], header[1], header[2], header[3]]) as usize;
    if len == 0 || len > FRAME_MAX {
        return Err(std::io::Error::new(std::io::ErrorKind::InvalidData, format!("a frame of {len} bytes (1 to {FRAME_MAX})")));
    }
    let mut body = Vec::new();
    (&mut *stream).take(len as u64 - 1).read_to_end(&mut body).await?;
    if body.len() != len - 1 {
        return Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "the connection closed inside a frame"));
    }
    Ok(Some((header[4], body)))
}

/// A connection to one node, made when first needed and again after any failure.
pub struct Peer {
    pub addr: SocketAddr,
    stream: Option<TcpStream>,
}

impl Peer {
    pub fn new(addr: SocketAddr) -> Peer {
        Peer { addr, stream: None }
    }

    /// Sends a request and reads its answer, within `limit`. Any failure drops the connection.
    pub async fn call<Q: Serialize, A: DeserializeOwned>(&mut self, kind: u8, request: &Q, limit: Duration) -> Result<A, String> {
        let body = serde_json::to_vec(request).map_err(|e| format!("cannot encode the request: {e}"))?;
        let addr = self.addr;
        let mut stream = match self.stream.take() {
            Some(stream) => stream,
            None => {
                within(CONNECT_WAIT.min(limit), TcpStream::connect(addr)).await?.map_err(|e| format!("cannot connect to {addr}: {e}"))?
            }
        };
        let exchange = async {
            write_frame(&mut stream, kind, &body).await?;
            read_frame(&mut stream).await
        };
        let answer = within(limit, exchange).await?.map_err(|e| format!("{addr}: {e}"))?;
        let Some((status, body)) = answer else { return Err(format!("{addr} closed the connection")) };
        self.stream = Some(stream);
        match status {
            ANSWER_OK => serde_json::from_slice(&body).map_err(|e| format!("{addr} answered what does not decode: {e}")),
            ANSWER_ERROR => Err(String::from_utf8_lossy(&body).into_owned()),
            other => {
                self.stream = None;
                Err(format!("{addr} answered with an unknown status {other}"))
            }
        }
    }
}

/// openraft's view of the network: a connection per peer it talks to.
pub struct Network {
    pub peers: BTreeMap<u64, SocketAddr>,
    /// Which nodes were reached since the start and which are unreachable now, so that a node
    /// going away and coming back is logged once each way (openraft retries many times a second
    /// meanwhile), and nodes not started yet at a cluster's start only at `info`.
    pub reachability: Rc<std::cell::RefCell<Reachability>>,
}

#[derive(Default)]
pub struct Reachability {
    reached: std::collections::BTreeSet<u64>,
    unreachable: std::collections::BTreeSet<u64>,
}

impl Reachability {
    fn answered(&mut self, node: u64, answer: Result<(), &str>) {
        match answer {
            Ok(()) => {
                let first = self.reached.insert(node);
                if self.unreachable.remove(&node) {
                    if first {
                        tracing::info!(node, "cluster node reached");
                    } else {
                        tracing::info!(node, "cluster node reachable again");
                    }
                }
            }
            Err(error) if self.unreachable.insert(node) => {
                if self.reached.contains(&node) {
                    tracing::warn!(node, %error, "cluster node unreachable; retrying");
                } else {
                    tracing::info!(node, %error, "cluster node not reachable yet; retrying");
                }
            }
            Err(_) => {}
        }
    }
}

impl RaftNetworkFactory<Meta> for Network {
    type Network = Connection;

    async fn new_client(&mut self, target: u64, node: &BasicNode) -> Connection {
        // The peers given at start win over an address in the membership.
        let addr = self.peers.get(&target).copied().or_else(|| node.addr.parse().ok());
        Connection { target, peer: addr.map(Peer::new), reachability: self.reachability.clone() }
    }
}

pub struct Connection {
    target: u64,
    peer: Option<Peer>,
    reachability: Rc<std::cell::RefCell<Reachability>>,
}

impl Connection {
    async fn call<Q: Serialize, A: DeserializeOwned>(&mut self, kind: u8, request: &Q, option: &RPCOption) -> Result<A, Unreachable<Meta>> {
        let target = self.target;
        let peer = self.peer.as_mut().ok_or_else(|| Unreachable::from_string(format!("node {target} has no address")))?;
        let answer = peer.call(kind, request, option.soft_ttl()).await;
        self.reachability.borrow_mut().answered(target, answer.as_ref().map(|_| ()).map_err(String::as_str));
        answer.map_err(|e| Unreachable::from_string(format!("node {target}: {e}")))
    }
}

/// What a snapshot message carries.
#[derive(serde::Serialize, serde::Deserialize)]
struct SnapshotMessage {
    vote: VoteOf<Meta>,
    meta: SnapshotMetaOf<Meta>,
    document: String,
}

impl RaftNetworkV2<Meta> for Connection {
    type SnapshotData = String;

    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<Meta>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<Meta>, RPCError<Meta>> {
        Ok(self.call(APPEND, &rpc, &option).await?)
    }

    async fn vote(&mut self, rpc: VoteRequest<Meta>, option: RPCOption) -> Result<VoteResponse<Meta>, RPCError<Meta>> {
        Ok(self.call(VOTE, &rpc, &option).await?)
    }

    async fn pre_vote(&mut self, rpc: VoteRequest<Meta>, option: RPCOption) -> Result<VoteResponse<Meta>, RPCError<Meta>> {
        Ok(self.call(PRE_VOTE, &rpc, &option).await?)
    }

    async fn full_snapshot(
        &mut self,
        vote: VoteOf<Meta>,
        snapshot: SnapshotOf<Meta, String>,
        _cancel: impl Future<Output = ReplicationClosed> + 'static,
        option: RPCOption,
    ) -> Result<SnapshotResponse<Meta>, StreamingError<Meta>> {
        let message = SnapshotMessage { vote, meta: snapshot.meta, document: snapshot.snapshot };
        self.call(SNAPSHOT, &message, &option).await.map_err(StreamingError::Unreachable)
    }
}

/// Shard 0 of a cluster node: answers the other nodes.
pub async fn serve(node: Rc<Node>, listener: TcpListener) {
    loop {
        match listener.accept().await {
            Ok(stream) => {
                let _ = stream.set_nodelay(true);
                glommio::spawn_local(answer_connection(node.clone(), stream)).detach();
            }
            Err(error) => {
                tracing::warn!(%error, "cluster listener: accept failed");
                glommio::timer::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

async fn answer_connection(node: Rc<Node>, mut stream: TcpStream) {
    loop {
        let (kind, body) = match read_frame(&mut stream).await {
            Ok(Some(frame)) => frame,
            Ok(None) => return,
            Err(error) => {
                tracing::debug!(%error, "cluster connection ended");
                let _ = write_frame(&mut stream, ANSWER_ERROR, error.to_string().as_bytes()).await;
                return;
            }
        };
        let (status, answer) = match answer(&node, kind, &body).await {
            Ok(answer) => (ANSWER_OK, answer),
            Err(error) => (ANSWER_ERROR, error.into_bytes()),
        };
        if write_frame(&mut stream, status, &answer).await.is_err() {
            return;
        }
    }
}

fn decode<T: DeserializeOwned>(body: &[u8]) -> Result<T, String> {
    serde_json::from_slice(body).map_err(|e| format!("a request that does not decode: {e}"))
}

fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, String> {
    serde_json::to_vec(value).map_err(|e| format!("cannot encode the answer: {e}"))
}

async fn answer(node: &Node, kind: u8, body: &[u8]) -> Result<Vec<u8>, String> {
    let raft = &node.raft;
    match kind {
        APPEND => encode(&raft.append_entries(decode(body)?).await.map_err(|e| e.to_string())?),
        VOTE => encode(&raft.vote(decode(body)?).await.map_err(|e| e.to_string())?),
        PRE_VOTE => encode(&raft.pre_vote(decode(body)?).await.map_err(|e| e.to_string())?),
        SNAPSHOT => {
            let message: SnapshotMessage = decode(body)?;
            let snapshot = SnapshotOf::<Meta, String> { meta: message.meta, snapshot: message.document };
            encode(&raft.install_full_snapshot(message.vote, snapshot).await.map_err(|e| e.to_string())?)
        }
        PROPOSE => {
            let proposal: Proposal = decode(body)?;
            if !node.leads() {
                return Err(format!("node {} does not lead the metadata group", node.id));
            }
            let written = within(super::CHANGE_WAIT, raft.client_write(proposal)).await?.map_err(|e| e.to_string())?;
            encode(&(written.log_id.index, written.data))
        }
        other => Err(format!("an unknown request kind {other}")),
    }
}
