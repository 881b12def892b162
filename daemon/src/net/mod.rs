//! The binary-protocol front end: listeners and connections.
//!
//! A connection has a reader task and a writer task over one socket. The reader
//! finds frames (`check_frame`), decodes them (`decode_request`, which verifies)
//! and runs each request in a task of its own, so a long poll never holds up the
//! requests behind it. Answers are encoded straight into the connection's
//! outbound buffer, which the writer sends in as few writes as it can.
//!
//! Memory per connection is bounded: requests in flight are capped by a
//! semaphore and the outbound buffer by a byte budget; past either, the reader
//! stops reading and TCP pushes back on the client. A frame that is not valid
//! closes its own connection and nothing else.

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use bytes::{Bytes, BytesMut};
use futures::io::{AsyncReadExt, AsyncWriteExt};
use futures::{AsyncRead, AsyncWrite};
use glommio::net::TcpListener;
use glommio::sync::Semaphore;
use sluice_protocol::limits::PROTOCOL_VERSION;
use sluice_protocol::{check_frame, decode_request, DecodeError, ErrorCode, FrameCheck, Op, OpError, Reply, Request, Response};

use crate::access::Access;
use crate::audit::Caller;
use crate::env::notify::LocalNotify;
use crate::shard::Shard;
use crate::tls::{Conn, Listener};

/// Bytes read from a socket at a time when no larger frame is pending.
const READ_CHUNK_BYTES: usize = 64 * 1024;
/// Most bytes one read may fill. The read target must be initialized memory, so this
/// also bounds the zeroing per read: a large frame arriving in small reads costs
/// linear, not quadratic, zeroing.
const READ_BYTES_MAX: usize = 256 * 1024;
/// In-flight units a ReceiveMessage costs: its answer can be ~10 MiB, other answers are small.
const RECEIVE_INFLIGHT_UNITS: u64 = 16;
/// Most bytes a GetRecords answer can take: 10 MiB of data, plus keys and framing.
const GET_RECORDS_ANSWER_BYTES_MAX: u64 = 11 << 20;
/// Answer bytes counted per received message besides its body and attributes.
const RECEIVED_MESSAGE_OVERHEAD_BYTES: u64 = 512;

/// Read buffer a connection starts with: an idle connection holds little; a busy one grows
/// its buffer as bytes arrive (never to what a length prefix merely promises).
const READ_BUFFER_BYTES_INITIAL: usize = 4 * 1024;

/// Accepts binary-protocol connections until shutdown is requested.
pub async fn accept_loop(shard: Rc<Shard>, listener: TcpListener) {
    accept_connections(shard, listener, Listener::Binary, serve, refusal).await
}

/// What a binary connection past the shard's connection cap is told before it is closed.
fn refusal(shard: &Shard) -> Vec<u8> {
    let error = OpError::new(
        ErrorCode::ServiceUnavailable,
        format!("this shard serves {} connections already (--connections-max); try again later", shard.config.connections_max),
    );
    shard.encoder.borrow_mut().response(0, &Err(error)).to_vec()
}

/// How long a client may take to finish its TLS handshake.
const HANDSHAKE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// How long a refused connection is given to take its refusal before it is closed.
const REFUSAL_WRITE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(1);

/// Accepts connections until shutdown is requested, serving each in a task of its own that
/// the shard counts (so shutdown can wait for them). The HTTP gateway accepts through it too.
/// Past `--connections-max` on this shard, a new connection is sent `refusal` and closed.
/// With `--tls-cert` every connection shakes hands first (in its own task, within
/// `HANDSHAKE_TIMEOUT`), the refused ones too.
pub async fn accept_connections<F, Fut>(shard: Rc<Shard>, listener: TcpListener, kind: Listener, serve: F, refusal: fn(&Shard) -> Vec<u8>)
where
    F: Fn(Rc<Shard>, Conn) -> Fut + Copy + 'static,
    Fut: std::future::Future<Output = Result<(), String>> + 'static,
{
    let mut last_refusal_logged: Option<std::time::Instant> = None;
    loop {
        let shutdown = shard.shutdown.event.listen();
        if shard.shutdown.requested.get() {
            break;
        }
        let accept = listener.accept();
        futures::pin_mut!(accept, shutdown);
        match futures::future::select(accept, shutdown).await {
            futures::future::Either::Left((Ok(stream), _)) => {
                let peer = stream.peer_addr().ok();
                if let Err(error) = stream.set_nodelay(true) {
                    tracing::debug!(shard = shard.id, ?kind, ?peer, %error, "cannot set TCP_NODELAY");
                }
                if shard.shutdown.connections.get() as u64 >= shard.config.connections_max {
                    if last_refusal_logged.is_none_or(|at| at.elapsed() >= std::time::Duration::from_secs(10)) {
                        tracing::warn!(
                            shard = shard.id,
                            ?kind,
                            max = shard.config.connections_max,
                            "refusing connections: this shard serves as many as --connections-max allows"
                        );
                        last_refusal_logged = Some(std::time::Instant::now());
                    }
                    let bytes = refusal(&shard);
                    let tls = shard.config.tls.clone();
                    glommio::spawn_local(async move {
                        let refuse = async {
                            let mut conn = Conn::accept(stream, tls.as_deref(), kind, REFUSAL_WRITE_TIMEOUT).await?;
                            let _ = conn.write_all(&bytes).await;
                            let _ = conn.flush().await;
                            let _ = conn.close().await;
                            Ok::<_, String>(())
                        };
                        let _ = futures::future::select(Box::pin(refuse), Box::pin(glommio::timer::sleep(REFUSAL_WRITE_TIMEOUT))).await;
                    })
                    .detach();
                    continue;
                }
                shard.shutdown.connections.set(shard.shutdown.connections.get() + 1);
                let shard = shard.clone();
                glommio::spawn_local(async move {
                    let tls = shard.config.tls.clone();
                    let served = match Conn::accept(stream, tls.as_deref(), kind, HANDSHAKE_TIMEOUT).await {
                        Ok(conn) => serve(shard.clone(), conn).await,
                        Err(error) => Err(error),
                    };
                    if let Err(error) = served {
                        tracing::debug!(shard = shard.id, ?kind, ?peer, %error, "connection closed");
                    }
                    shard.shutdown.connections.set(shard.shutdown.connections.get() - 1);
                    shard.shutdown.connection_closed.notify_all();
                })
                .detach();
            }
            futures::future::Either::Left((Err(error), _)) => {
                tracing::warn!(shard = shard.id, ?kind, %error, "accept failed");
                glommio::timer::sleep(std::time::Duration::from_millis(10)).await;
            }
            futures::future::Either::Right(_) => break,
        }
    }
    tracing::debug!(shard = shard.id, ?kind, "stopped accepting");
}

/// Answers waiting to be written on one connection.
struct Outbound {
    buf: RefCell<Vec<u8>>,
    /// Notified when `buf` gains bytes or the connection is closing.
    ready: LocalNotify,
    /// Notified when the writer has emptied `buf`.
    drained: LocalNotify,
    closing: Cell<bool>,
    broken: Cell<bool>,
    /// Answer bytes this connection may hold before they are written
    /// (`--connection-outbound-bytes-max`). A request whose answer can be large is charged
    /// its largest answer before it runs (GetRecords) or its actual answer before that is
    /// buffered (ReceiveMessage), and the charge is kept until the bytes are written: a
    /// client that pipelines reads and never reads the answers holds one budget, not gigabytes.
    budget: Semaphore,
    /// Charged bytes in `buf`, released once the writer has written them.
    charged: Cell<u64>,
}

impl Outbound {
    fn push(&self, shard: &Shard, id: u64, response: &Response) {
        let mut encoder = shard.encoder.borrow_mut();
        self.buf.borrow_mut().extend_from_slice(encoder.response(id, response));
        self.ready.notify_all();
    }

    /// `push` for an answer that was charged `charge` bytes of the budget: what the answer
    /// does not use is given back now, the rest once it is written.
    fn push_charged(&self, shard: &Shard, id: u64, response: &Response, charge: u64) {
        let len = {
            let mut encoder = shard.encoder.borrow_mut();
            let bytes = encoder.response(id, response);
            self.buf.borrow_mut().extend_from_slice(bytes);
            bytes.len() as u64
        };
        let kept = len.min(charge);
        self.budget.signal(charge - kept);
        self.charged.set(self.charged.get() + kept);
        self.ready.notify_all();
    }

    /// Takes `bytes` of the answer budget (at most all of it, so any one answer can go);
    /// `None` once the connection is closing (the answer is then pushed uncharged).
    async fn charge(&self, bytes: u64, budget_max: u64) -> Option<u64> {
        let bytes = bytes.min(budget_max);
        self.budget.acquire(bytes).await.ok().map(|_| bytes)
    }
}

/// Bytes to charge a request before it runs: the largest answer it can have, when that is large.
fn charge_before(op: &Op) -> u64 {
    match op {
        Op::GetRecords { .. } => GET_RECORDS_ANSWER_BYTES_MAX,
        _ => 0,
    }
}

/// Bytes to charge an answer before it is buffered, when it can be large and was not charged before.
fn charge_after(response: &Response) -> u64 {
    match response {
        Ok(Reply::ReceiveMessage(messages)) => messages
            .iter()
            .map(|message| {
                let attributes: usize = message.attributes.iter().map(|(k, v)| k.len() + v.len()).sum::<usize>()
                    + message
                        .message_attributes
                        .iter()
                        .map(|a| {
                            a.name.len()
                                + a.data_type.len()
                                + a.string_value.as_ref().map_or(0, String::len)
                                + a.binary_value.as_ref().map_or(0, Bytes::len)
                        })
                        .sum::<usize>();
                (message.body.len() + attributes) as u64 + RECEIVED_MESSAGE_OVERHEAD_BYTES
            })
            .sum(),
        _ => 0,
    }
}

async fn serve(shard: Rc<Shard>, stream: Conn) -> Result<(), String> {
    let peer = stream.tcp().peer_addr().ok().map(|addr| addr.ip());
    let secure = stream.secure();
    let (reader, writer) = stream.split();
    let outbound = Rc::new(Outbound {
        buf: RefCell::new(Vec::new()),
        ready: LocalNotify::new(),
        drained: LocalNotify::new(),
        closing: Cell::new(false),
        broken: Cell::new(false),
        budget: Semaphore::new(shard.config.connection_outbound_bytes_max as u64),
        charged: Cell::new(0),
    });
    let inflight = Rc::new(Semaphore::new(shard.config.connection_inflight_max));
    let stall = std::time::Duration::from_secs(shard.config.idle_timeout_seconds);
    let writer_task = glommio::spawn_local(write_loop(writer, outbound.clone(), stall));
    let result = read_loop(&shard, reader, &outbound, &inflight, Caller { ip: peer, secure, via: "binary", ..Caller::default() }).await;
    // Let requests in flight answer (they hold permits), then let the writer flush and stop.
    let _ = inflight.acquire(shard.config.connection_inflight_max).await;
    outbound.closing.set(true);
    outbound.ready.notify_all();
    writer_task.await;
    result
}

/// Writes answers as they come. A write that makes no progress for `stall` (the idle
/// timeout; never when zero) breaks the connection: a client that stops reading does not
/// hold its answers, and the requests waiting behind them, for ever.
async fn write_loop(mut writer: impl AsyncWrite + Unpin, outbound: Rc<Outbound>, stall: std::time::Duration) {
    let mut sending = Vec::new();
    loop {
        let ready = outbound.ready.listen();
        if outbound.buf.borrow().is_empty() {
            if outbound.closing.get() {
                break;
            }
            ready.await;
            continue;
        }
        std::mem::swap(&mut sending, &mut *outbound.buf.borrow_mut());
        let charged = outbound.charged.replace(0);
        // The flush matters under TLS: a write may leave records in the session's buffer.
        let write = async {
            writer.write_all(&sending).await?;
            writer.flush().await
        };
        let written = if stall.is_zero() {
            write.await.is_ok()
        } else {
            matches!(glommio::timer::timeout(stall, async { Ok(write.await) }).await, Ok(Ok(())))
        };
        sending.clear();
        outbound.budget.signal(charged);
        outbound.drained.notify_all();
        if !written {
            outbound.broken.set(true);
            break;
        }
    }
    // Requests still waiting for the budget go on uncharged (their answers go nowhere).
    outbound.budget.close();
    // Under TLS closing writes a close_notify: a peer that no longer reads does not hold it.
    let _ = glommio::timer::timeout(REFUSAL_WRITE_TIMEOUT, async { Ok(writer.close().await) }).await;
}

async fn read_loop(
    shard: &Rc<Shard>,
    mut reader: impl AsyncRead + Unpin,
    outbound: &Rc<Outbound>,
    inflight: &Rc<Semaphore>,
    peer_caller: Caller,
) -> Result<(), String> {
    let frame_bytes_max = shard.config.frame_bytes_max;
    let mut buf = BytesMut::with_capacity(READ_BUFFER_BYTES_INITIAL);
    // Where the connection is in its greeting, and then who is on the other end.
    let mut greeted = Session::Fresh;
    let idle_timeout = std::time::Duration::from_secs(shard.config.idle_timeout_seconds);
    // One timer per connection, not one per read: it first fires at the Hello deadline, then
    // is armed again for whatever is left of the idle timeout since bytes last arrived.
    let mut last_bytes = std::time::Instant::now();
    let mut tick = Box::pin(glommio::timer::sleep(std::time::Duration::from_secs(shard.config.hello_timeout_seconds)));
    loop {
        // Handle every complete frame already buffered.
        loop {
            match check_frame(&buf, frame_bytes_max) {
                FrameCheck::Complete(len) => {
                    let frame = buf.split_to(len).freeze();
                    if !dispatch(shard, frame, outbound, inflight, &mut greeted, &peer_caller).await? {
                        return Ok(());
                    }
                }
                FrameCheck::Incomplete { total } => {
                    // Room for the pending frame grows with what has arrived (at most doubling
                    // per read), not with what its length prefix promises: a client that
                    // announces 16 MiB and sends nothing more holds a few KiB.
                    if let Some(total) = total.filter(|total| *total > buf.capacity()) {
                        buf.reserve((total - buf.len()).min(buf.len().max(READ_BUFFER_BYTES_INITIAL)));
                    }
                    break;
                }
                FrameCheck::Invalid { announced } => {
                    let error = OpError::new(
                        ErrorCode::MalformedRequest,
                        format!("frame of {announced} bytes is empty or larger than the limit of {frame_bytes_max} bytes"),
                    );
                    outbound.push(shard, 0, &Err(error));
                    return Err(format!("invalid frame length {announced}"));
                }
            }
        }
        // Back-pressure: do not read more while too many answers wait to be written.
        while outbound.buf.borrow().len() > shard.config.connection_outbound_bytes_max && !outbound.broken.get() {
            let drained = outbound.drained.listen();
            if outbound.buf.borrow().len() <= shard.config.connection_outbound_bytes_max {
                break;
            }
            drained.await;
        }
        if outbound.broken.get() {
            return Err("write failed".into());
        }
        if buf.capacity() == buf.len() {
            buf.reserve(READ_CHUNK_BYTES);
        }
        let start = buf.len();
        let spare = (buf.capacity() - start).min(READ_BYTES_MAX);
        buf.resize(start + spare, 0);
        let read = {
            let read = reader.read(&mut buf[start..]);
            futures::pin_mut!(read);
            loop {
                let shutdown = shard.shutdown.event.listen();
                if shard.shutdown.requested.get() {
                    return Ok(());
                }
                futures::pin_mut!(shutdown);
                match futures::future::select(read.as_mut(), futures::future::select(shutdown, tick.as_mut())).await {
                    futures::future::Either::Left((result, _)) => break result,
                    futures::future::Either::Right((futures::future::Either::Left(_), _)) => return Ok(()),
                    futures::future::Either::Right((futures::future::Either::Right(_), _)) => {
                        if !matches!(greeted, Session::Ready(..)) {
                            return Err(format!("no Hello (and Authenticate) within {} s", shard.config.hello_timeout_seconds));
                        }
                        let quiet = last_bytes.elapsed();
                        // Idle only with nothing in flight (a long poll or subscription is not idle).
                        let busy = inflight.available() < shard.config.connection_inflight_max || !outbound.buf.borrow().is_empty();
                        if !idle_timeout.is_zero() && quiet >= idle_timeout && !busy {
                            return Err(format!("idle for {} s", shard.config.idle_timeout_seconds));
                        }
                        let wait = match idle_timeout.checked_sub(quiet) {
                            _ if idle_timeout.is_zero() => std::time::Duration::from_secs(u32::MAX as u64),
                            Some(left) if !left.is_zero() => left,
                            _ => idle_timeout,
                        };
                        tick = Box::pin(glommio::timer::sleep(wait));
                    }
                }
            }
        };
        match read {
            Ok(0) => {
                buf.truncate(start);
                return Ok(());
            }
            Ok(n) => {
                buf.truncate(start + n);
                last_bytes = std::time::Instant::now();
            }
            Err(error) => return Err(error.to_string()),
        }
    }
}

/// Where a connection is in its greeting.
enum Session {
    /// Waiting for `Hello`.
    Fresh,
    /// `--credentials` is set: waiting for the `Authenticate` that signs `nonce`.
    Challenged { nonce: String, caller: Caller },
    /// Serving requests for this caller, with what access decisions need of it.
    Ready(Rc<Caller>, Rc<Access>),
}

/// Answers the first request, which must be `Hello`; returns whether the connection goes on.
fn greet(shard: &Rc<Shard>, request: Request, outbound: &Rc<Outbound>, session: &mut Session, peer: &Caller) -> bool {
    let Op::Hello { protocol_version, client_name } = request.op else {
        let error = OpError::new(ErrorCode::MalformedRequest, "the first request on a connection must be Hello");
        outbound.push(shard, request.id, &Err(error));
        return false;
    };
    if protocol_version != PROTOCOL_VERSION {
        let error = OpError::new(
            ErrorCode::MalformedRequest,
            format!("protocol version {protocol_version} is not supported; this server speaks {PROTOCOL_VERSION}"),
        );
        outbound.push(shard, request.id, &Err(error));
        return false;
    }
    let caller = Caller { agent: client_name, ..peer.clone() };
    let auth_nonce = match shard.config.credentials.is_some() {
        false => {
            *session = Session::Ready(Rc::new(caller), Rc::new(Access::default()));
            None
        }
        true => {
            let mut bytes = [0u8; 16];
            if getrandom::fill(&mut bytes).is_err() {
                outbound.push(shard, request.id, &Err(OpError::new(ErrorCode::InternalFailure, "no randomness for a challenge")));
                return false;
            }
            let nonce: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
            *session = Session::Challenged { nonce: nonce.clone(), caller };
            Some(nonce)
        }
    };
    let reply = Reply::Hello {
        protocol_version: PROTOCOL_VERSION,
        server_version: env!("CARGO_PKG_VERSION").to_owned(),
        shard_count: shard.count as u16,
        shard_id: shard.id as u16,
        auth_nonce,
    };
    outbound.push(shard, request.id, &Ok(reply));
    true
}

/// Checks the `Authenticate` a challenged connection owes; anything else, or a wrong proof,
/// is answered with why and closes the connection. Returns whether it goes on.
fn authenticate(shard: &Rc<Shard>, request: Request, outbound: &Rc<Outbound>, session: &mut Session) -> bool {
    let Session::Challenged { nonce, caller } = std::mem::replace(session, Session::Fresh) else { return false };
    let Op::Authenticate { access_key_id, proof } = &request.op else {
        let error = OpError::new(ErrorCode::MissingAuthenticationToken, "this server requires Authenticate after Hello");
        outbound.push(shard, request.id, &Err(error));
        return false;
    };
    let credentials = shard.config.credentials.as_ref().map(|store| store.current());
    let principal = credentials.as_ref().and_then(|credentials| credentials.get(access_key_id));
    let outcome = match principal {
        None => Err(OpError::new(ErrorCode::InvalidClientTokenId, "The security token included in the request is invalid.")),
        Some(principal) if !sluice_protocol::auth::verify(&principal.secret_access_key, &nonce, access_key_id, proof) => {
            Err(OpError::new(ErrorCode::SignatureDoesNotMatch, "The proof does not match the access key's secret for this challenge."))
        }
        Some(principal) => Ok(principal.clone()),
    };
    let caller = Caller { principal: outcome.as_ref().ok().cloned(), ..caller };
    let reply =
        outcome.map(|principal| Reply::Authenticated { principal_arn: principal.arn.clone(), account_id: principal.account_id.clone() });
    if let Some(sink) = &shard.config.audit {
        if let Some(described) = sink.describe(&request.op) {
            sink.record(described, &caller, &reply, &shard.config.region, &shard.config.account_id);
        }
    }
    let authenticated = reply.is_ok();
    outbound.push(shard, request.id, &reply);
    if authenticated {
        *session = Session::Ready(Rc::new(caller.clone()), Rc::new(caller.access()));
    } else {
        tracing::info!(shard = shard.id, peer = ?caller.ip, client = %caller.agent, "refused a connection's authentication");
    }
    authenticated
}

/// Decodes and starts one request. Returns false when the connection must close.
async fn dispatch(
    shard: &Rc<Shard>,
    frame: Bytes,
    outbound: &Rc<Outbound>,
    inflight: &Rc<Semaphore>,
    greeted: &mut Session,
    peer: &Caller,
) -> Result<bool, String> {
    let request = match decode_request(&frame) {
        Ok(request) => request,
        Err(DecodeError::UnknownOp { id, op_type }) => {
            let error = OpError::new(ErrorCode::InvalidAction, format!("operation type {op_type} is not known to this server"));
            outbound.push(shard, id, &Err(error));
            return Ok(true);
        }
        Err(error @ DecodeError::ListTooLong { id, .. }) => {
            // Valid, only too long: answered under its id, and the connection goes on.
            outbound.push(shard, id, &Err(OpError::new(ErrorCode::MalformedRequest, error.to_string())));
            return Ok(true);
        }
        Err(error) => {
            outbound.push(shard, 0, &Err(OpError::new(ErrorCode::MalformedRequest, error.to_string())));
            return Err(error.to_string());
        }
    };
    let (caller, access) = match greeted {
        Session::Ready(caller, access) => (caller.clone(), access.clone()),
        Session::Fresh => return Ok(greet(shard, request, outbound, greeted, peer)),
        Session::Challenged { .. } => return Ok(authenticate(shard, request, outbound, greeted)),
    };
    // Never more than the whole budget, or a small --connection-inflight-max would block receives forever.
    let units =
        if matches!(request.op, Op::ReceiveMessage(_)) { RECEIVE_INFLIGHT_UNITS } else { 1 }.min(shard.config.connection_inflight_max);
    let permit = inflight.clone().acquire_static_permit(units).await.map_err(|e| e.to_string())?;
    let shard = shard.clone();
    let outbound = outbound.clone();
    if matches!(request.op, Op::SubscribeToShard { .. }) {
        if let Err(error) = shard.authorize(&request.op, &access) {
            outbound.push(&shard, request.id, &Err(error));
            return Ok(true);
        }
        shard.audit_start(&request.op, || Caller::clone(&caller));
    }
    if let Op::SubscribeToShard { consumer_arn, shard_id, position } = request.op {
        glommio::spawn_local(async move {
            let sink = PushSink { shard: shard.clone(), outbound, id: request.id };
            crate::stream::service::subscribe_to_shard(&shard, consumer_arn, shard_id, position, &sink).await;
            drop(permit);
        })
        .detach();
        return Ok(true);
    }
    let budget_max = shard.config.connection_outbound_bytes_max as u64;
    glommio::spawn_local(async move {
        let _in_flight = shard.metrics.in_flight();
        let before = charge_before(&request.op);
        let charged = if before > 0 { outbound.charge(before, budget_max).await } else { None };
        let action = request.op.name();
        let response = shard.handle_op_for(request.op, &access, || Caller::clone(&caller)).await;
        shard.metrics.binary_request(action, response.as_ref().err().map(|error| error.code));
        let charged = match charged {
            Some(charged) => Some(charged),
            None => match charge_after(&response) {
                0 => None,
                after => outbound.charge(after, budget_max).await,
            },
        };
        match charged {
            Some(charge) => outbound.push_charged(&shard, request.id, &response, charge),
            None => outbound.push(&shard, request.id, &response),
        }
        drop(permit);
    })
    .detach();
    Ok(true)
}

/// A push subscription's way out: answers under one request id, paced by the client.
struct PushSink {
    shard: Rc<Shard>,
    outbound: Rc<Outbound>,
    id: u64,
}

impl crate::stream::service::EventSink for PushSink {
    async fn send(&self, response: &Response) -> bool {
        if self.outbound.broken.get() || self.outbound.closing.get() {
            return false;
        }
        self.outbound.push(&self.shard, self.id, response);
        // Back-pressure: a consumer that reads slowly holds its subscription here, not in memory.
        while self.outbound.buf.borrow().len() > self.shard.config.connection_outbound_bytes_max && !self.outbound.broken.get() {
            let drained = self.outbound.drained.listen();
            if self.outbound.buf.borrow().len() <= self.shard.config.connection_outbound_bytes_max {
                break;
            }
            drained.await;
        }
        !self.outbound.broken.get()
    }
}
