//! The AWS-compatible HTTP gateway: SQS (AWS JSON 1.0 and Query), SNS (Query) and Kinesis
//! (AWS JSON 1.1), so AWS SDKs and the AWS CLI work unchanged with `--endpoint-url`.
//!
//! Every core accepts HTTP/1.1 connections on the same port (hyper over glommio sockets)
//! and turns each request into the same `Op` the binary protocol carries, run by
//! `Shard::handle_op`: a message sent one way is received the other. The gateway knows
//! nothing of how engines store things; engines know nothing of HTTP.
//!
//! Dispatch: `X-Amz-Target: AmazonSQS.*` is SQS JSON, `Kinesis_20131202.*` is Kinesis;
//! anything else is the Query protocol, whose service is named by the SigV4 credential
//! scope (`…/sqs/aws4_request`), else by the action, else by a queue-URL path.
//! Signatures are not checked (auth is off). `/health` answers `ok`.
//!
//! Limits: a body larger than its action allows (`body_bytes_max`: what the largest valid
//! request of that action can take, escaping and encoding included) is refused before it
//! is read, so a hostile body costs at most that much to parse; a JSON body holds at most
//! `JSON_VALUES_MAX` values (checked before it is parsed); a form holds at most
//! `FORM_PAIRS_MAX` parameters; headers are
//! bounded by hyper's buffer (`HEADER_BUFFER_BYTES_MAX`); a connection silent for
//! `--http-idle-timeout-seconds` (idle, or stalled mid-request) is closed. Nothing from the
//! wire is trusted: every malformed request gets an AWS-shaped error, never a panic.

mod cloudwatch;
mod console;
mod firehose;
mod guard;
mod io;
mod kinesis;
mod kms;
mod params;
pub mod sigv4;
mod sns;
mod sqs;
mod xml;

use std::convert::Infallible;
use std::rc::Rc;
use std::time::Duration;

use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use glommio::net::TcpListener;
use http::header::{HeaderValue, CONTENT_LENGTH, CONTENT_TYPE};
use http::{Method, Request, Response, StatusCode};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full, Limited, StreamBody};
use hyper::body::{Frame, Incoming};
use serde_json::{Map, Value};
use sluice_protocol::{ErrorCode, Op, OpError, Reply, Response as OpResponse};

use crate::access::Access;
use crate::audit::Caller;
use crate::shard::Shard;
/// The SQS actions the gateway serves (the fuzz targets pick from them).
pub use cloudwatch::ACTIONS as CLOUDWATCH_ACTIONS;
use params::{Params, Reads, KINESIS_FAULTS, SNS_FAULTS, SQS_FAULTS};
pub use sqs::ACTIONS as SQS_ACTIONS;

/// HTTP/2: requests one connection may have open at once.
const H2_STREAMS_MAX: u32 = 100;
/// HTTP/2: streams a client may open and reset before they are served, at once (a client that
/// goes past it, the "rapid reset" attack, is sent GOAWAY).
const H2_PENDING_RESETS_MAX: usize = 20;
/// HTTP/2: streams the server may reset for a client's errors before it closes the connection.
const H2_LOCAL_RESETS_MAX: usize = 64;
/// Largest body of a Kinesis PutRecords: 10 MiB of data is ~13.4 MiB as base64, with 500
/// escaped partition keys beside it.
const PUT_RECORDS_BODY_BYTES_MAX: usize = 15 << 20;
/// Largest body of a Kinesis PutRecord (a 10 MiB record as base64, and its key).
const PUT_RECORD_BODY_BYTES_MAX: usize = 14 << 20;
/// Largest body of a Firehose PutRecordBatch (4 MiB of data is ~5.4 MiB as base64) and
/// PutRecord (1,000 KiB as base64).
const FIREHOSE_BATCH_BODY_BYTES_MAX: usize = 6 << 20;
const FIREHOSE_RECORD_BODY_BYTES_MAX: usize = 2 << 20;
/// Largest body carrying messages: 1 MiB of SQS message data escaped in JSON (`\uXXXX` can
/// triple non-ASCII text) or percent-encoded in a form (three bytes a byte), with attributes.
const MESSAGE_BODY_BYTES_MAX: usize = 4 << 20;
/// Largest body of any other JSON action (attributes, policies, tags, lists of names).
const OTHER_BODY_BYTES_MAX: usize = 256 << 10;
/// Parameters one form may carry (a SendMessageBatch of 10 messages with 10 attributes
/// each needs about 500).
const FORM_PAIRS_MAX: usize = 5_000;

/// The largest body a request of `protocol` and (JSON) `action` may have. Query requests
/// name their action inside the body, so they all get the largest a Query action needs.
fn body_bytes_max(protocol: Protocol, action: &str) -> usize {
    match (protocol, action) {
        (Protocol::KinesisJson, "PutRecords") => PUT_RECORDS_BODY_BYTES_MAX,
        (Protocol::KinesisJson, "PutRecord") => PUT_RECORD_BODY_BYTES_MAX,
        (Protocol::SqsJson, "SendMessage" | "SendMessageBatch") => MESSAGE_BODY_BYTES_MAX,
        (Protocol::FirehoseJson, "PutRecordBatch") => FIREHOSE_BATCH_BODY_BYTES_MAX,
        (Protocol::FirehoseJson, "PutRecord") => FIREHOSE_RECORD_BODY_BYTES_MAX,
        (
            Protocol::SqsJson
            | Protocol::KinesisJson
            | Protocol::FirehoseJson
            | Protocol::KmsJson
            | Protocol::CloudWatchJson
            | Protocol::CloudWatchCbor,
            _,
        ) => OTHER_BODY_BYTES_MAX,
        (Protocol::SqsQuery | Protocol::SnsQuery | Protocol::CloudWatchQuery, _) => MESSAGE_BODY_BYTES_MAX,
    }
}
/// JSON values (counted by their separators and brackets) one request body may hold: a
/// PutRecords of 500 records needs about 3,500, a SendMessageBatch with every attribute
/// about 1,000. Past it (or past `JSON_DEPTH_MAX`) a body is refused before any tree is
/// built: a hostile body of millions of tiny values would otherwise cost some 26 times its
/// size as a `serde_json::Value` and seconds of a core.
const JSON_VALUES_MAX: usize = 20_000;
/// Nesting a request body may have (the deepest valid one, a ShardFilter, is 2).
const JSON_DEPTH_MAX: usize = 16;

/// Checks a JSON body's shape in one pass over its bytes, before it is parsed: at most
/// `JSON_VALUES_MAX` values, nested at most `JSON_DEPTH_MAX` deep. Strings are skipped.
fn json_shape(body: &[u8]) -> Result<(), String> {
    let (mut values, mut depth, mut at) = (0usize, 0usize, 0usize);
    while at < body.len() {
        match body[at] {
            b'"' => {
                // To the closing quote, past escapes: memchr, as strings are most of a body's bytes.
                at += 1;
                loop {
                    match memchr::memchr2(b'"', b'\\', body.get(at..).unwrap_or_default()) {
                        Some(found) if body[at + found] == b'\\' => at += found + 2,
                        Some(found) => {
                            at += found;
                            break;
                        }
                        // Unterminated: the parser refuses it.
                        None => return Ok(()),
                    }
                }
            }
            b'{' | b'[' => {
                depth += 1;
                values += 1;
                if depth > JSON_DEPTH_MAX {
                    return Err(format!("the request body is nested more than {JSON_DEPTH_MAX} deep"));
                }
            }
            b'}' | b']' => depth = depth.saturating_sub(1),
            b',' | b':' => values += 1,
            _ => {}
        }
        if values > JSON_VALUES_MAX {
            return Err(format!("the request body holds more than {JSON_VALUES_MAX} JSON values"));
        }
        at += 1;
    }
    Ok(())
}

/// hyper's read buffer, which bounds a request's head (line and headers).
const HEADER_BUFFER_BYTES_MAX: usize = 64 * 1024;
/// SubscribeToShard events buffered for a slow HTTP reader before the subscription waits.
const EVENTS_BUFFERED_MAX: usize = 4;

type Body = UnsyncBoxBody<Bytes, Infallible>;

/// Accepts HTTP connections until shutdown is requested.
pub async fn accept_loop(shard: Rc<Shard>, listener: TcpListener) {
    crate::net::accept_connections(shard, listener, crate::tls::Listener::Http, serve, |_| {
        let body = "Too many connections to this shard (--connections-max); try again later.\n";
        format!(
            "HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
        .into_bytes()
    })
    .await
}

/// Accepts connections on `--metrics-listen`: `/metrics` and `/health` only.
pub async fn metrics_accept_loop(shard: Rc<Shard>, listener: TcpListener) {
    crate::net::accept_connections(shard, listener, crate::tls::Listener::Http, serve_metrics, |_| {
        b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".to_vec()
    })
    .await
}

async fn serve_metrics(shard: Rc<Shard>, stream: crate::tls::Conn) -> Result<(), String> {
    stream.tcp().set_read_timeout(Some(Duration::from_secs(shard.config.http_idle_timeout_seconds))).map_err(|e| e.to_string())?;
    let service_shard = shard.clone();
    let service = hyper::service::service_fn(move |request: Request<Incoming>| {
        let shard = service_shard.clone();
        async move {
            let response = match (request.method(), request.uri().path()) {
                (&Method::GET, "/metrics") => metrics(&shard, request.headers()).await,
                (&Method::GET, "/health") => text(StatusCode::OK, "ok\n"),
                _ => text(StatusCode::NOT_FOUND, "this listener serves /metrics and /health\n"),
            };
            Ok::<_, Infallible>(response)
        }
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder.max_buf_size(HEADER_BUFFER_BYTES_MAX).half_close(false);
    let connection = builder.serve_connection(io::HyperIo::new(stream), service);
    until_shutdown(&shard, connection, |connection| connection.graceful_shutdown()).await
}

/// A scrape: every shard's metrics, in the format the `Accept` header asks for.
async fn metrics(shard: &Rc<Shard>, headers: &http::HeaderMap) -> Response<Body> {
    use crate::metrics::render::Format;
    let format = Format::from_accept(headers.get(http::header::ACCEPT).and_then(|value| value.to_str().ok()));
    let body = crate::shard::metrics::scrape(shard, format).await;
    let mut response = Response::new(Full::new(Bytes::from(body)).boxed_unsync());
    response.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static(format.content_type()));
    response
}

async fn serve(shard: Rc<Shard>, stream: crate::tls::Conn) -> Result<(), String> {
    stream.tcp().set_read_timeout(Some(Duration::from_secs(shard.config.http_idle_timeout_seconds))).map_err(|e| e.to_string())?;
    let service_shard = shard.clone();
    let peer = Peer { ip: stream.tcp().peer_addr().ok().map(|addr| addr.ip()), secure: stream.secure() };
    let service = hyper::service::service_fn(move |request| {
        let shard = service_shard.clone();
        async move { Ok::<_, Infallible>(handle(shard, request, peer).await) }
    });
    // HTTP/2 when ALPN chose it, or when a client opens with HTTP/2's preface (prior knowledge,
    // as the AWS SDKs' Kinesis clients do on http://); else HTTP/1.1.
    let (h2, stream) = match stream.alpn() {
        Some(b"h2") => (true, io::Rewind::new(stream)),
        _ => io::Rewind::sniff(stream).await.map_err(|e| e.to_string())?,
    };
    if h2 {
        let mut builder = hyper::server::conn::http2::Builder::new(io::LocalExec);
        builder
            .max_concurrent_streams(H2_STREAMS_MAX)
            .max_header_list_size(HEADER_BUFFER_BYTES_MAX as u32)
            .max_pending_accept_reset_streams(Some(H2_PENDING_RESETS_MAX))
            .max_local_error_reset_streams(Some(H2_LOCAL_RESETS_MAX));
        let connection = builder.serve_connection(io::HyperIo::new(stream), service);
        until_shutdown(&shard, connection, |connection| connection.graceful_shutdown()).await
    } else {
        let mut builder = hyper::server::conn::http1::Builder::new();
        builder.max_buf_size(HEADER_BUFFER_BYTES_MAX).half_close(false);
        let connection = builder.serve_connection(io::HyperIo::new(stream), service);
        until_shutdown(&shard, connection, |connection| connection.graceful_shutdown()).await
    }
}

/// Serves `connection` until it ends, or until shutdown is requested: then the requests in
/// flight finish (`graceful`) and it closes.
async fn until_shutdown<C>(shard: &Shard, connection: C, graceful: impl Fn(std::pin::Pin<&mut C>)) -> Result<(), String>
where
    C: std::future::Future<Output = Result<(), hyper::Error>>,
{
    futures::pin_mut!(connection);
    let shutdown = shard.shutdown.event.listen();
    if shard.shutdown.requested.get() {
        graceful(connection.as_mut());
    }
    futures::pin_mut!(shutdown);
    match futures::future::select(connection.as_mut(), shutdown).await {
        futures::future::Either::Left((result, _)) => result.map_err(|e| e.to_string()),
        futures::future::Either::Right(_) => {
            graceful(connection.as_mut());
            connection.await.map_err(|e| e.to_string())
        }
    }
}

/// Which wire protocol a request speaks.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Protocol {
    SqsJson,
    SqsQuery,
    SnsQuery,
    KinesisJson,
    /// The key service (`TrentService.*`).
    KmsJson,
    /// CloudWatch in Smithy RPC v2 CBOR, AWS JSON 1.0 and Query (`cloudwatch`).
    CloudWatchCbor,
    CloudWatchJson,
    CloudWatchQuery,
    /// Firehose (`Firehose_20150804.*`).
    FirehoseJson,
}

impl Protocol {
    /// The service, for metrics.
    fn service(self) -> &'static str {
        match self {
            Protocol::SqsJson | Protocol::SqsQuery => "sqs",
            Protocol::SnsQuery => "sns",
            Protocol::KinesisJson => "kinesis",
            Protocol::KmsJson => "kms",
            Protocol::CloudWatchCbor | Protocol::CloudWatchJson | Protocol::CloudWatchQuery => "cloudwatch",
            Protocol::FirehoseJson => "firehose",
        }
    }

    /// Whether the action is named outside the body (a header or the path), not in a form.
    fn is_json(self) -> bool {
        matches!(
            self,
            Protocol::SqsJson
                | Protocol::KinesisJson
                | Protocol::KmsJson
                | Protocol::CloudWatchJson
                | Protocol::CloudWatchCbor
                | Protocol::FirehoseJson
        )
    }

    fn is_cloudwatch(self) -> bool {
        matches!(self, Protocol::CloudWatchCbor | Protocol::CloudWatchJson | Protocol::CloudWatchQuery)
    }
}

async fn handle(shard: Rc<Shard>, request: Request<Incoming>, peer: Peer) -> Response<Body> {
    let request_id = crate::catalog::topics::random_uuid();
    let (parts, body) = request.into_parts();
    if parts.uri.path() == "/health" && parts.method == Method::GET {
        return text(StatusCode::OK, "ok\n");
    }
    if parts.uri.path() == crate::sns_signing::CERT_PATH && parts.method == Method::GET {
        return signing_certificate(&shard).await;
    }
    let origin = match guard::check(&shard.config, &parts.headers) {
        Ok(origin) => origin,
        Err(refusal) => {
            let text = xml::error(sqs::NAMESPACE, true, "AccessDenied", &refusal.message(), &request_id);
            return xml_response(StatusCode::FORBIDDEN, text);
        }
    };
    if parts.uri.path() == "/metrics" && parts.method == Method::GET {
        return metrics(&shard, &parts.headers).await;
    }
    if console::is_console(parts.uri.path()) && parts.method == Method::GET {
        return console::serve(&shard, parts.uri.path(), &parts.headers, peer.ip, peer.secure).await;
    }
    let mut response = if parts.method == Method::OPTIONS {
        // A CORS preflight; only an allowed origin gets this far with an Origin header.
        let mut response = text(StatusCode::NO_CONTENT, "");
        let headers = response.headers_mut();
        headers.insert("access-control-allow-methods", HeaderValue::from_static("GET, POST"));
        let requested = parts.headers.get("access-control-request-headers").cloned();
        headers.insert("access-control-allow-headers", requested.unwrap_or(HeaderValue::from_static("content-type")));
        headers.insert("access-control-max-age", HeaderValue::from_static("600"));
        response
    } else {
        handle_call(&shard, parts, body, &request_id, peer).await
    };
    if let Some(origin) = origin {
        guard::cors_headers(response.headers_mut(), &origin);
    }
    response
}

/// The certificate that verifies this server's SNS signatures (`SigningCertURL`), read or
/// made off the shard.
async fn signing_certificate(shard: &Shard) -> Response<Body> {
    let Some(signing) = shard.config.sns_signing.clone() else { return text(StatusCode::NOT_FOUND, "no signing certificate\n") };
    match glommio::executor().spawn_blocking(move || signing.signer().map(|signer| signer.cert_pem().to_owned())).await {
        Ok(pem) => {
            let mut response = Response::new(Full::new(Bytes::from(pem)).boxed_unsync());
            response.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("application/x-pem-file"));
            response
        }
        Err(error) => {
            tracing::error!(%error, "cannot serve the SNS signing certificate");
            text(StatusCode::INTERNAL_SERVER_ERROR, "the signing certificate is not available\n")
        }
    }
}

/// The other end of an HTTP connection.
#[derive(Clone, Copy, Debug)]
struct Peer {
    ip: Option<std::net::IpAddr>,
    /// Whether the connection is TLS.
    secure: bool,
}

/// Who made an HTTP call, for the audit log.
fn http_caller(parts: &http::request::Parts, peer: Peer, request_id: &str) -> Caller {
    let agent = parts.headers.get(http::header::USER_AGENT).and_then(|value| value.to_str().ok()).unwrap_or_default();
    Caller {
        ip: peer.ip,
        secure: peer.secure,
        agent: agent.to_owned(),
        via: "http",
        request_id: Some(request_id.to_owned()),
        principal: None,
    }
}

async fn handle_call(shard: &Rc<Shard>, parts: http::request::Parts, body: Incoming, request_id: &str, peer: Peer) -> Response<Body> {
    let path = parts.uri.path().to_owned();
    let target = parts.headers.get("x-amz-target").and_then(|value| value.to_str().ok()).map(str::to_owned);
    let cbor_action = path.strip_prefix(cloudwatch::CBOR_PATH).filter(|_| parts.method == Method::POST).map(str::to_owned);
    let (protocol, json_action) = match (cbor_action, target.as_deref()) {
        (Some(action), _) => (Protocol::CloudWatchCbor, action),
        (None, Some(target)) => match target.split_once('.') {
            Some((cloudwatch::TARGET_PREFIX, action)) => (Protocol::CloudWatchJson, action.to_owned()),
            Some(("AmazonSQS", action)) => (Protocol::SqsJson, action.to_owned()),
            Some(("Kinesis_20131202", action)) => (Protocol::KinesisJson, action.to_owned()),
            Some(("TrentService", action)) => (Protocol::KmsJson, action.to_owned()),
            Some((firehose::TARGET_PREFIX, action)) => (Protocol::FirehoseJson, action.to_owned()),
            _ => {
                let error = OpError::new(ErrorCode::InvalidAction, format!("The target {target} is not served here."));
                return json_error(Protocol::KinesisJson, &error, request_id, "UnknownOperationException");
            }
        },
        (None, None) => (Protocol::SqsQuery, String::new()),
    };
    let declared = parts.headers.get(CONTENT_LENGTH).and_then(|value| value.to_str().ok()).and_then(|value| value.parse::<u64>().ok());
    let limit = body_bytes_max(protocol, &json_action);
    if declared.is_some_and(|length| length > limit as u64) {
        return too_large(protocol, limit, request_id);
    }
    let body = match Limited::new(body, limit).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(error) => {
            if error.downcast_ref::<http_body_util::LengthLimitError>().is_some() {
                return too_large(protocol, limit, request_id);
            }
            let error = OpError::new(ErrorCode::MalformedRequest, format!("the request body could not be read: {error}"));
            return error_response(protocol, &error, request_id);
        }
    };
    // A Query request for CloudWatch: signed for `monitoring`, or naming one of its actions.
    let scope = if protocol == Protocol::SqsQuery { credential_service(&parts) } else { None };
    let protocol = if protocol == Protocol::SqsQuery
        && match scope.as_deref() {
            Some("monitoring") => true,
            Some("sqs" | "sns") => false,
            _ => query_action(&parts, &body).is_some_and(|action| cloudwatch::ACTIONS.contains(&action.as_str())),
        } {
        Protocol::CloudWatchQuery
    } else {
        protocol
    };
    let principal = match &shard.config.credentials {
        None => None,
        Some(store) => {
            let credentials = store.current();
            let signed = sigv4::Signed {
                method: parts.method.as_str(),
                path: &path,
                query: parts.uri.query().unwrap_or(""),
                headers: &parts.headers,
                body: &body,
            };
            let now_s = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
            match sigv4::verify(&credentials, &shard.config.region, &signed, now_s) {
                Ok(verified) => {
                    let expected = match protocol {
                        Protocol::SqsJson => Some("sqs"),
                        Protocol::KinesisJson => Some("kinesis"),
                        Protocol::KmsJson => Some("kms"),
                        Protocol::FirehoseJson => Some("firehose"),
                        Protocol::CloudWatchJson | Protocol::CloudWatchCbor => Some("monitoring"),
                        // A Query request's service is the one its scope names.
                        _ => None,
                    };
                    if let Some(expected) = expected.filter(|expected| *expected != verified.service) {
                        let message = format!("Credential should be scoped to correct service: '{expected}'. ");
                        let asked = Asked { parts: &parts, body: &body, request_id, json_action: &json_action, peer };
                        return refused(shard, protocol, sigv4::Refusal::Mismatch(message), &asked);
                    }
                    Some(verified.principal.clone())
                }
                // The links SNS hands out are followed without a signature, as AWS allows:
                // confirming needs the subscription's token; unsubscribing its ARN.
                Err(sigv4::Refusal::Missing) if !protocol.is_json() && link_action(&parts, &body) => None,
                Err(refusal) => {
                    let asked = Asked { parts: &parts, body: &body, request_id, json_action: &json_action, peer };
                    return refused(shard, protocol, refusal, &asked);
                }
            }
        }
    };
    let access = Access { principal: principal.clone(), ip: peer.ip, secure: peer.secure };
    let caller = || Caller { principal: principal.clone(), ..http_caller(&parts, peer, request_id) };
    if protocol.is_cloudwatch() {
        cloudwatch_call(shard, protocol, &parts, &json_action, &body, request_id, &access, caller).await
    } else if protocol.is_json() {
        json_call(shard, protocol, &json_action, &body, request_id, &access, caller).await
    } else {
        query_call(shard, &parts, &path, &body, request_id, &access, caller).await
    }
}

/// The Query action of a request (from its query string, else its form body).
fn query_action(parts: &http::request::Parts, body: &[u8]) -> Option<String> {
    let find = |bytes: &[u8]| form_urlencoded::parse(bytes).find(|(name, _)| name == "Action").map(|(_, value)| value.into_owned());
    find(parts.uri.query().unwrap_or("").as_bytes()).or_else(|| find(body))
}

/// Whether this is one of the links SNS hands out (ConfirmSubscription, Unsubscribe).
fn link_action(parts: &http::request::Parts, body: &[u8]) -> bool {
    matches!(query_action(parts, body).as_deref(), Some("ConfirmSubscription" | "Unsubscribe"))
}

/// A request as it came, before it is served.
struct Asked<'a> {
    parts: &'a http::request::Parts,
    body: &'a [u8],
    request_id: &'a str,
    /// The JSON protocols' action (from `X-Amz-Target`); empty for the Query protocol.
    json_action: &'a str,
    peer: Peer,
}

/// The answer to a request whose signature was refused, in its protocol's error shape; the
/// refusal goes to the audit log (if there is one) under the action the request named.
fn refused(shard: &Rc<Shard>, protocol: Protocol, refusal: sigv4::Refusal, asked: &Asked<'_>) -> Response<Body> {
    let Asked { parts, body, request_id, json_action, peer } = *asked;
    let (code, message) = match refusal {
        sigv4::Refusal::Missing => (ErrorCode::MissingAuthenticationToken, "Request is missing Authentication Token".to_owned()),
        sigv4::Refusal::UnknownKey => {
            (ErrorCode::InvalidClientTokenId, "The security token included in the request is invalid.".to_owned())
        }
        sigv4::Refusal::Incomplete(message) => (ErrorCode::IncompleteSignature, message),
        sigv4::Refusal::Mismatch(message) => (ErrorCode::SignatureDoesNotMatch, message),
        sigv4::Refusal::Expired(message) => (ErrorCode::RequestExpired, message),
    };
    let error = OpError::new(code, message);
    let action = if protocol.is_json() { Some(json_action.to_owned()) } else { query_action(parts, body) };
    let sns =
        !protocol.is_json() && action.as_deref().is_some_and(|action| sns::ACTIONS.contains(&action) && !sqs::ACTIONS.contains(&action));
    if let Some(sink) = &shard.config.audit {
        let source = match protocol {
            Protocol::KinesisJson => "kinesis.amazonaws.com",
            Protocol::KmsJson => "kms.amazonaws.com",
            Protocol::FirehoseJson => "firehose.amazonaws.com",
            Protocol::CloudWatchCbor | Protocol::CloudWatchJson | Protocol::CloudWatchQuery => "monitoring.amazonaws.com",
            _ if sns => "sns.amazonaws.com",
            _ => "sqs.amazonaws.com",
        };
        let caller = http_caller(parts, peer, request_id);
        sink.record_refused(source, action.as_deref().unwrap_or(""), &caller, &error, &shard.config.region, &shard.config.account_id);
    }
    if protocol.is_json() || protocol.is_cloudwatch() {
        return error_response(protocol, &error, request_id);
    }
    query_error(if sns { Protocol::SnsQuery } else { Protocol::SqsQuery }, &error, request_id)
}

/// An error in `protocol`'s shape.
fn error_response(protocol: Protocol, error: &OpError, request_id: &str) -> Response<Body> {
    if protocol.is_cloudwatch() {
        cloudwatch_error(protocol, error, request_id)
    } else if protocol.is_json() {
        json_error(protocol, error, request_id, "")
    } else {
        query_error(protocol, error, request_id)
    }
}

fn too_large(protocol: Protocol, limit: usize, request_id: &str) -> Response<Body> {
    let error = OpError::new(
        ErrorCode::InvalidParameterValue,
        format!("the request body is larger than {limit} bytes, the most this action takes"),
    );
    let mut response = error_response(protocol, &error, request_id);
    *response.status_mut() = StatusCode::PAYLOAD_TOO_LARGE;
    // The unread body stays on the socket: the connection cannot be reused.
    response.headers_mut().insert(http::header::CONNECTION, HeaderValue::from_static("close"));
    response
}

/// The operation a JSON-protocol request (SQS JSON or Kinesis) asks for, or why it is refused
/// with the `__type` to answer (empty: the error's own). Nothing is served: the gateway's own
/// parsing, which the fuzz targets drive too (`daemon/fuzz`).
pub fn json_op(sqs: bool, action: &str, body: &[u8]) -> Result<Op, (OpError, &'static str)> {
    let tree = json_tree(body)?;
    let reads = Reads::default();
    let faults = if sqs { SQS_FAULTS } else { KINESIS_FAULTS };
    let params = Params::tracked(&tree, faults, &reads);
    let op = if sqs { sqs::op_from(action, params) } else { kinesis::op_from(action, params) };
    let op = op.map_err(|error| (error, ""))?;
    all_read(&tree, &reads, faults, |_| false).map_err(|error| (error, ""))?;
    Ok(op)
}

/// `json_op` for Firehose.
pub fn firehose_json_op(action: &str, body: &[u8]) -> Result<Op, (OpError, &'static str)> {
    let tree = json_tree(body)?;
    let reads = Reads::default();
    let op = firehose::op_from(action, Params::tracked(&tree, firehose::FAULTS, &reads)).map_err(|error| (error, ""))?;
    all_read(&tree, &reads, firehose::FAULTS, |_| false).map_err(|error| (error, ""))?;
    Ok(op)
}

/// `json_op` for the key service.
pub fn kms_json_op(action: &str, body: &[u8]) -> Result<Op, (OpError, &'static str)> {
    let tree = json_tree(body)?;
    let reads = Reads::default();
    let op = kms::op_from(action, Params::tracked(&tree, kms::FAULTS, &reads)).map_err(|error| (error, ""))?;
    all_read(&tree, &reads, kms::FAULTS, |_| false).map_err(|error| (error, ""))?;
    Ok(op)
}

/// No silent no-ops: a member the action did not read is refused, named, with the service's
/// error for a bad parameter — never accepted and dropped.
fn all_read(tree: &Map<String, Value>, reads: &Reads, faults: params::Faults, skip: impl Fn(&str) -> bool) -> Result<(), OpError> {
    match reads.unread(tree, skip) {
        None => Ok(()),
        Some(member) => Err(OpError::new(
            faults.invalid,
            format!("The parameter {member} is not supported by this server for this action (it would be ignored, so it is refused)."),
        )),
    }
}

/// What a Query request carries for its protocol, not its action: authentication in the query
/// string (SigV4 presigned, SigV2).
fn protocol_parameter(name: &str) -> bool {
    name.starts_with("X-Amz-")
        || matches!(
            name,
            "AWSAccessKeyId" | "Signature" | "SignatureMethod" | "SignatureVersion" | "Timestamp" | "Expires" | "SecurityToken"
        )
}

/// A JSON request body as a tree of parameters (an empty body: none), checked for its shape
/// before it is parsed.
fn json_tree(body: &[u8]) -> Result<Map<String, Value>, (OpError, &'static str)> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Map::new());
    }
    if let Err(reason) = json_shape(body) {
        return Err((OpError::new(ErrorCode::MalformedRequest, reason), "SerializationException"));
    }
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) | Err(_) => {
            Err((OpError::new(ErrorCode::MalformedRequest, "the request body is not a JSON object"), "SerializationException"))
        }
    }
}

/// The operation a Query request's parameters (`Action` and `Version` taken out) ask for, in
/// `protocol` (SQS or SNS); `queue_url` fills in a missing `QueueUrl` (the request's path).
fn query_op(protocol: Protocol, action: &str, pairs: &[(String, String)], queue_url: Option<String>) -> Result<Op, OpError> {
    let renames = if protocol == Protocol::SqsQuery { sqs::QUERY_RENAMES } else { &[] };
    let mut tree = params::query_tree(pairs, renames)?;
    let reads = Reads::default();
    let (op, faults) = if protocol == Protocol::SqsQuery {
        if let Some(url) = queue_url.filter(|_| !tree.contains_key("QueueUrl")) {
            tree.insert("QueueUrl".into(), Value::String(url));
        }
        (sqs::op_from(action, Params::tracked(&tree, SQS_FAULTS, &reads))?, SQS_FAULTS)
    } else {
        (sns::op_from(action, Params::tracked(&tree, SNS_FAULTS, &reads))?, SNS_FAULTS)
    };
    all_read(&tree, &reads, faults, protocol_parameter)?;
    Ok(op)
}

/// The operation a Query form asks for, as SQS (`sqs`) or SNS would read it, or why it is
/// refused. For the fuzz targets: the gateway's own form parsing and operation building.
pub fn form_op(sqs: bool, form: &[u8]) -> Result<Op, OpError> {
    let mut pairs = Vec::new();
    add_form_pairs(&mut pairs, form);
    if pairs.len() > FORM_PAIRS_MAX {
        return Err(OpError::new(ErrorCode::MalformedRequest, "too many parameters"));
    }
    let action = pairs.iter().find(|(name, _)| name == "Action").map(|(_, value)| value.clone()).unwrap_or_default();
    pairs.retain(|(name, _)| name != "Action" && name != "Version");
    let protocol = if sqs { Protocol::SqsQuery } else { Protocol::SnsQuery };
    query_op(protocol, &action, &pairs, Some("http://127.0.0.1:4566/000000000000/q".into()))
}

async fn json_call(
    shard: &Rc<Shard>,
    protocol: Protocol,
    action: &str,
    body: &[u8],
    request_id: &str,
    access: &Access,
    caller: impl Fn() -> Caller,
) -> Response<Body> {
    let parsed = match protocol {
        Protocol::KmsJson => kms_json_op(action, body),
        Protocol::FirehoseJson => firehose_json_op(action, body),
        _ => json_op(protocol == Protocol::SqsJson, action, body),
    };
    let op = match parsed {
        Ok(op) => op,
        Err((error, type_name)) => return json_error(protocol, &error, request_id, type_name),
    };
    // PutRecord and PutRecords answer whether the stream they wrote to is encrypted.
    let encrypted = match &op {
        Op::PutRecord { stream, .. } | Op::PutRecords { stream, .. } => {
            let snapshot = shard.catalog.get();
            crate::catalog::streams::resolve(&snapshot.streams, &snapshot.naming, stream).is_ok_and(|meta| meta.encryption_key.is_some())
        }
        _ => false,
    };
    if matches!(op, Op::SubscribeToShard { .. }) {
        if let Err(error) = shard.authorize(&op, access) {
            return json_error(protocol, &error, request_id, "");
        }
        shard.audit_start(&op, &caller);
    }
    if let Op::SubscribeToShard { consumer_arn, shard_id, position } = op {
        return subscribe_to_shard(shard, consumer_arn, shard_id, position, request_id).await;
    }
    match served(shard, protocol, op, access, caller).await {
        Ok(reply) => {
            let value = match protocol {
                Protocol::SqsJson => sqs::json_reply(action, reply),
                Protocol::KmsJson => kms::json_reply(action, reply, &shard.config.account_id),
                Protocol::FirehoseJson => firehose::json_reply(action, reply),
                _ => kinesis::json_reply(action, reply, encrypted),
            };
            // Straight to bytes: `to_string` would go through `fmt` and cost a tenth of a request.
            json_response(protocol, StatusCode::OK, serde_json::to_vec(&value).unwrap_or_default(), request_id)
        }
        Err(error) => json_error(protocol, &error, request_id, ""),
    }
}

/// Runs an operation for a gateway request, counting it (by service, action and outcome) with
/// its latency.
async fn served(shard: &Rc<Shard>, protocol: Protocol, op: Op, access: &Access, caller: impl FnOnce() -> Caller) -> OpResponse {
    let action = op.name();
    let started = std::time::Instant::now();
    let _in_flight = shard.metrics.in_flight();
    let result = shard.handle_op_for(op, access, caller).await;
    let code = result.as_ref().err().map_or("ok", |error| error.code.aws_name());
    shard.metrics.request((protocol.service(), action, code), started.elapsed().as_micros() as u64);
    result
}

fn json_content_type(protocol: Protocol) -> &'static str {
    if matches!(protocol, Protocol::SqsJson | Protocol::CloudWatchJson) {
        "application/x-amz-json-1.0"
    } else {
        "application/x-amz-json-1.1"
    }
}

fn json_response(protocol: Protocol, status: StatusCode, body: Vec<u8>, request_id: &str) -> Response<Body> {
    let mut response = Response::new(Full::new(Bytes::from(body)).boxed_unsync());
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(json_content_type(protocol)));
    if let Ok(value) = HeaderValue::from_str(request_id) {
        headers.insert("x-amzn-requestid", value);
    }
    response
}

/// An error's `__type` in the AWS JSON 1.1 services that name errors as Kinesis does
/// (Kinesis, and Firehose but for its own few).
pub(crate) fn json_11_error_name(code: ErrorCode) -> &'static str {
    match code {
        ErrorCode::InternalFailure => "InternalFailureException",
        ErrorCode::MalformedRequest => "SerializationException",
        ErrorCode::InvalidAction => "UnknownOperationException",
        ErrorCode::InvalidParameterValue => "InvalidArgumentException",
        ErrorCode::AccessDenied => "AccessDeniedException",
        ErrorCode::InvalidClientTokenId => "UnrecognizedClientException",
        ErrorCode::SignatureDoesNotMatch | ErrorCode::RequestExpired => "InvalidSignatureException",
        ErrorCode::IncompleteSignature => "IncompleteSignatureException",
        ErrorCode::MissingAuthenticationToken => "MissingAuthenticationTokenException",
        other => other.aws_name(),
    }
}

/// An error as the JSON protocols carry it; `type_name` overrides the code's own name.
fn json_error(protocol: Protocol, error: &OpError, request_id: &str, type_name: &str) -> Response<Body> {
    let name = if !type_name.is_empty() {
        type_name
    } else if protocol == Protocol::KinesisJson {
        json_11_error_name(error.code)
    } else if protocol == Protocol::KmsJson {
        kms::error_name(error.code)
    } else if protocol == Protocol::FirehoseJson {
        firehose::error_name(error.code)
    } else {
        sqs::error_name(error.code)
    };
    let (type_field, status) = if protocol == Protocol::SqsJson {
        // A body that does not parse is a 400 in the JSON protocols (404 is the Query code's).
        let status = if error.code == ErrorCode::MalformedRequest { 400 } else { error.code.http_status() };
        (format!("com.amazonaws.sqs#{name}"), status)
    } else {
        let status = match error.code {
            ErrorCode::InternalFailure => 500,
            ErrorCode::ServiceUnavailable => 503,
            _ => 400,
        };
        (name.to_owned(), status)
    };
    let body = serde_json::to_vec(&serde_json::json!({ "__type": type_field, "message": error.message })).unwrap_or_default();
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST);
    let mut response = json_response(protocol, status, body, request_id);
    if protocol == Protocol::SqsJson {
        let fault = if error.code.sender_fault() { "Sender" } else { "Receiver" };
        if let Ok(value) = HeaderValue::from_str(&format!("{};{fault}", error.code.query_code())) {
            response.headers_mut().insert("x-amzn-query-error", value);
        }
    }
    response
}

/// The operation a CloudWatch request asks for (its parameters read from CBOR, JSON or a
/// form), every member read. The fuzz targets drive it too.
pub fn cloudwatch_op(protocol_cbor: bool, action: &str, body: &[u8]) -> Result<Op, OpError> {
    let tree = if protocol_cbor { cloudwatch::cbor_tree(body)? } else { json_tree(body).map_err(|(error, _)| error)? };
    let reads = Reads::default();
    let op = cloudwatch::op_from(action, Params::tracked(&tree, cloudwatch::FAULTS, &reads))?;
    all_read(&tree, &reads, cloudwatch::FAULTS, |_| false)?;
    Ok(op)
}

#[allow(clippy::too_many_arguments)]
async fn cloudwatch_call(
    shard: &Rc<Shard>,
    protocol: Protocol,
    parts: &http::request::Parts,
    action: &str,
    body: &[u8],
    request_id: &str,
    access: &Access,
    caller: impl FnOnce() -> Caller,
) -> Response<Body> {
    let parsed = if protocol == Protocol::CloudWatchQuery {
        let mut pairs = match form_pairs(parts, body) {
            Ok(pairs) => pairs,
            Err(error) => return cloudwatch_error(protocol, &error, request_id),
        };
        let action = pairs.iter().find(|(name, _)| name == "Action").map(|(_, value)| value.clone()).unwrap_or_default();
        if parts.method != Method::POST && !guard::get_allowed(&action) {
            let error = OpError::new(ErrorCode::InvalidAction, format!("{action} changes state: send it with POST."));
            return cloudwatch_error(protocol, &error, request_id);
        }
        pairs.retain(|(name, _)| name != "Action" && name != "Version");
        params::query_tree(&pairs, &[]).and_then(|tree| {
            let reads = Reads::default();
            let op = cloudwatch::op_from(&action, Params::tracked(&tree, cloudwatch::FAULTS, &reads))?;
            all_read(&tree, &reads, cloudwatch::FAULTS, protocol_parameter)?;
            Ok((op, action))
        })
    } else {
        cloudwatch_op(protocol == Protocol::CloudWatchCbor, action, body).map(|op| (op, action.to_owned()))
    };
    let (op, action) = match parsed {
        Ok(parsed) => parsed,
        Err(error) => return cloudwatch_error(protocol, &error, request_id),
    };
    let statistics = match &op {
        Op::GetMetricStatistics { statistics, .. } => statistics.clone(),
        _ => Vec::new(),
    };
    match served(shard, protocol, op, access, caller).await {
        Ok(reply) => {
            let out = cloudwatch::reply_out(reply, &statistics);
            match protocol {
                Protocol::CloudWatchQuery => xml_response(StatusCode::OK, cloudwatch::to_xml(&action, &out, request_id)),
                Protocol::CloudWatchCbor => cbor_response(StatusCode::OK, cloudwatch::to_cbor(&out), request_id),
                _ => {
                    json_response(protocol, StatusCode::OK, serde_json::to_vec(&cloudwatch::to_json(&out)).unwrap_or_default(), request_id)
                }
            }
        }
        Err(error) => cloudwatch_error(protocol, &error, request_id),
    }
}

fn cbor_response(status: StatusCode, body: Vec<u8>, request_id: &str) -> Response<Body> {
    let mut response = Response::new(Full::new(Bytes::from(body)).boxed_unsync());
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/cbor"));
    headers.insert("smithy-protocol", HeaderValue::from_static("rpc-v2-cbor"));
    if let Ok(value) = HeaderValue::from_str(request_id) {
        headers.insert("x-amzn-requestid", value);
    }
    response
}

/// A CloudWatch error: the Smithy shape in `__type` (CBOR, JSON) with the Query code in
/// `x-amzn-query-error`, or the Query protocol's XML.
fn cloudwatch_error(protocol: Protocol, error: &OpError, request_id: &str) -> Response<Body> {
    let (shape, code) = cloudwatch::error_names(error.code);
    let status = match error.code {
        ErrorCode::ResourceNotFound => StatusCode::NOT_FOUND,
        ErrorCode::MalformedRequest | ErrorCode::InvalidAction => StatusCode::BAD_REQUEST,
        other => StatusCode::from_u16(other.http_status()).unwrap_or(StatusCode::BAD_REQUEST),
    };
    if protocol == Protocol::CloudWatchQuery {
        let code = if error.code == ErrorCode::MalformedRequest { "MalformedQueryString" } else { code };
        let text = xml::error(cloudwatch::NAMESPACE, error.code.sender_fault(), code, &error.message, request_id);
        return xml_response(status, text);
    }
    let body = cloudwatch::Out::Map(vec![
        ("__type", Some(cloudwatch::Out::Str(format!("com.amazonaws.cloudwatch#{shape}")))),
        ("message", Some(cloudwatch::Out::Str(error.message.clone()))),
    ]);
    let mut response = if protocol == Protocol::CloudWatchCbor {
        cbor_response(status, cloudwatch::to_cbor(&body), request_id)
    } else {
        json_response(protocol, status, serde_json::to_vec(&cloudwatch::to_json(&body)).unwrap_or_default(), request_id)
    };
    let fault = if error.code.sender_fault() { "Sender" } else { "Receiver" };
    if let Ok(value) = HeaderValue::from_str(&format!("{code};{fault}")) {
        response.headers_mut().insert("x-amzn-query-error", value);
    }
    response
}

/// A Query request's parameters: its query string's, then (a POST) its form body's; refused
/// when the body is not a form or there are more than `FORM_PAIRS_MAX`.
fn form_pairs(parts: &http::request::Parts, body: &[u8]) -> Result<Vec<(String, String)>, OpError> {
    let mut pairs: Vec<(String, String)> = Vec::new();
    if let Some(query) = parts.uri.query() {
        add_form_pairs(&mut pairs, query.as_bytes());
    }
    if parts.method == Method::POST && !body.is_empty() {
        let content_type = parts.headers.get(CONTENT_TYPE).and_then(|value| value.to_str().ok()).unwrap_or("");
        if !content_type.is_empty() && !content_type.starts_with("application/x-www-form-urlencoded") {
            return Err(OpError::new(
                ErrorCode::MalformedRequest,
                format!("a request without X-Amz-Target must be a form, not {content_type}"),
            ));
        }
        add_form_pairs(&mut pairs, body);
    }
    if pairs.len() > FORM_PAIRS_MAX {
        return Err(OpError::new(ErrorCode::MalformedRequest, format!("a request may carry at most {FORM_PAIRS_MAX} parameters")));
    }
    Ok(pairs)
}

/// Adds the pairs of a form to `pairs`, one past `FORM_PAIRS_MAX` at most (the caller refuses that).
fn add_form_pairs(pairs: &mut Vec<(String, String)>, form: &[u8]) {
    pairs.extend(form_urlencoded::parse(form).take(FORM_PAIRS_MAX + 1).map(|(name, value)| (name.into_owned(), value.into_owned())));
}

async fn query_call(
    shard: &Rc<Shard>,
    parts: &http::request::Parts,
    path: &str,
    body: &[u8],
    request_id: &str,
    access: &Access,
    caller: impl FnOnce() -> Caller,
) -> Response<Body> {
    let mut pairs = match form_pairs(parts, body) {
        Ok(pairs) => pairs,
        Err(error) => return query_error(Protocol::SqsQuery, &error, request_id),
    };
    let action = pairs.iter().find(|(name, _)| name == "Action").map(|(_, value)| value.clone());
    let scope = credential_service(parts);
    let Some(action) = action else {
        let protocol = if scope.as_deref() == Some("sns") { Protocol::SnsQuery } else { Protocol::SqsQuery };
        let namespace = if protocol == Protocol::SnsQuery { sns::NAMESPACE } else { sqs::NAMESPACE };
        let text = xml::error(namespace, true, "MissingAction", "The request must contain the parameter Action.", request_id);
        return xml_response(StatusCode::BAD_REQUEST, text);
    };
    if parts.method != Method::POST && !guard::get_allowed(&action) {
        let message = format!("{action} changes state: send it with POST (a GET may only read, confirm or unsubscribe).");
        let text = xml::error(sqs::NAMESPACE, true, "InvalidHttpMethod", &message, request_id);
        return xml_response(StatusCode::METHOD_NOT_ALLOWED, text);
    }
    let queue_path = queue_url_path(path);
    let protocol = match scope.as_deref() {
        Some("sns") => Protocol::SnsQuery,
        Some("sqs") => Protocol::SqsQuery,
        _ if sqs::ACTIONS.contains(&action.as_str()) => Protocol::SqsQuery,
        _ if sns::ACTIONS.contains(&action.as_str()) => Protocol::SnsQuery,
        _ => Protocol::SqsQuery,
    };
    pairs.retain(|(name, _)| name != "Action" && name != "Version");
    let queue_url = queue_path.then(|| format!("{}{}", shard.config.public_url.trim_end_matches('/'), path));
    let op = query_op(protocol, &action, &pairs, queue_url);
    let op = match op {
        Ok(op) => op,
        Err(error) => return query_error(protocol, &error, request_id),
    };
    match served(shard, protocol, op, access, caller).await {
        Ok(reply) => {
            let text = if protocol == Protocol::SqsQuery {
                sqs::xml_reply(&action, reply, request_id)
            } else {
                sns::xml_reply(&action, reply, request_id)
            };
            xml_response(StatusCode::OK, text)
        }
        Err(error) => query_error(protocol, &error, request_id),
    }
}

/// The service named in a SigV4 `Authorization` header's credential scope.
fn credential_service(parts: &http::request::Parts) -> Option<String> {
    let header = parts.headers.get(http::header::AUTHORIZATION)?.to_str().ok()?;
    let credential = header.split("Credential=").nth(1)?.split([',', ' ']).next()?;
    // AKID/DATE/REGION/SERVICE/aws4_request
    credential.split('/').nth(3).map(str::to_owned)
}

/// `/ACCOUNT_ID/QUEUE_NAME`: a Query request posted to a queue's URL.
fn queue_url_path(path: &str) -> bool {
    let mut segments = path.trim_matches('/').split('/');
    matches!((segments.next(), segments.next(), segments.next()), (Some(account), Some(name), None) if !account.is_empty() && !name.is_empty())
}

fn query_error(protocol: Protocol, error: &OpError, request_id: &str) -> Response<Body> {
    let (namespace, code) = if protocol == Protocol::SnsQuery {
        (sns::NAMESPACE, sns::error_code(error.code))
    } else {
        (sqs::NAMESPACE, error.code.query_code())
    };
    let text = xml::error(namespace, error.code.sender_fault(), code, &error.message, request_id);
    xml_response(StatusCode::from_u16(error.code.http_status()).unwrap_or(StatusCode::BAD_REQUEST), text)
}

fn xml_response(status: StatusCode, text: String) -> Response<Body> {
    let mut response = Response::new(Full::new(Bytes::from(text)).boxed_unsync());
    *response.status_mut() = status;
    response.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("text/xml"));
    response
}

fn text(status: StatusCode, body: &'static str) -> Response<Body> {
    let mut response = Response::new(Full::new(Bytes::from_static(body.as_bytes())).boxed_unsync());
    *response.status_mut() = status;
    response.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    response
}

/// SubscribeToShard as an event stream. A failure before the first event (unknown consumer,
/// the 5-second lease) is a plain JSON error; after it, an exception event ends the stream.
async fn subscribe_to_shard(
    shard: &Rc<Shard>,
    consumer_arn: String,
    shard_id: String,
    position: sluice_protocol::StartingPosition,
    request_id: &str,
) -> Response<Body> {
    let (events, receiver) = futures::channel::mpsc::channel::<Bytes>(EVENTS_BUFFERED_MAX);
    let (first_tx, first_rx) = futures::channel::oneshot::channel::<Result<(), OpError>>();
    let sink = HttpEventSink { events: std::cell::RefCell::new(Some(events)), first: std::cell::RefCell::new(Some(first_tx)) };
    let subscription_shard = shard.clone();
    glommio::spawn_local(async move {
        crate::stream::service::subscribe_to_shard(&subscription_shard, consumer_arn, shard_id, position, &sink).await;
        sink.finish();
    })
    .detach();
    match first_rx.await {
        Ok(Err(error)) => json_error(Protocol::KinesisJson, &error, request_id, ""),
        Ok(Ok(())) | Err(_) => {
            let body = StreamBody::new(receiver.map(|chunk| Ok::<_, Infallible>(Frame::data(chunk))));
            let mut response = Response::new(body.boxed_unsync());
            let headers = response.headers_mut();
            headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/vnd.amazon.eventstream"));
            if let Ok(value) = HeaderValue::from_str(request_id) {
                headers.insert("x-amzn-requestid", value);
            }
            response
        }
    }
}

/// A push subscription's way out over HTTP: event-stream messages on a bounded channel
/// that the response body drains; a closed connection drops the receiver and ends it.
struct HttpEventSink {
    events: std::cell::RefCell<Option<futures::channel::mpsc::Sender<Bytes>>>,
    /// Told whether the subscription started, before the first event.
    first: std::cell::RefCell<Option<futures::channel::oneshot::Sender<Result<(), OpError>>>>,
}

impl HttpEventSink {
    fn finish(&self) {
        if let Some(first) = self.first.borrow_mut().take() {
            let _ = first.send(Ok(()));
        }
        self.events.borrow_mut().take();
    }

    async fn push(&self, message: Vec<u8>) -> bool {
        let Some(mut events) = self.events.borrow_mut().take() else { return false };
        let sent = events.send(Bytes::from(message)).await.is_ok();
        if sent {
            *self.events.borrow_mut() = Some(events);
        }
        sent
    }
}

impl crate::stream::service::EventSink for HttpEventSink {
    async fn send(&self, response: &OpResponse) -> bool {
        let starting = self.first.borrow_mut().take();
        if let Some(first) = starting {
            if let Err(error) = response {
                let _ = first.send(Err(error.clone()));
                self.events.borrow_mut().take();
                return false;
            }
            let _ = first.send(Ok(()));
            if !self.push(kinesis::event("initial-response", &serde_json::json!({}))).await {
                return false;
            }
        }
        match response {
            Ok(Reply::ShardEvent(event)) => self.push(kinesis::event("SubscribeToShardEvent", &kinesis::event_json(event))).await,
            Ok(_) => {
                self.events.borrow_mut().take();
                false
            }
            Err(error) => {
                self.push(kinesis::exception(error)).await;
                self.events.borrow_mut().take();
                false
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shape_check_counts_values_and_depth_outside_strings_only() {
        assert!(json_shape(br#"{"a":[1,2,3],"b":{"c":"x"}}"#).is_ok());
        // Commas, brackets and escaped quotes inside strings are text, not structure.
        let text = format!(r#"{{"s":"{}\"[{{,:"}}"#, ",[{".repeat(30_000));
        assert!(json_shape(text.as_bytes()).is_ok());
        let many = format!("[{}]", vec!["1"; JSON_VALUES_MAX + 1].join(","));
        assert!(json_shape(many.as_bytes()).unwrap_err().contains("JSON values"));
        let deep = format!("{}{}", "[".repeat(JSON_DEPTH_MAX + 1), "]".repeat(JSON_DEPTH_MAX + 1));
        assert!(json_shape(deep.as_bytes()).unwrap_err().contains("nested"));
        // Cut short (inside a string, or after an escape at the very end): no panic.
        assert!(json_shape(br#"{"a":"unterminated"#).is_ok());
        assert!(json_shape(br#"{"a":"\"#).is_ok());
    }

    #[test]
    fn add_permission_reads_both_query_shapes() {
        let sqs =
            form_op(true, b"Action=AddPermission&Label=l&AWSAccountId.1=111122223333&AWSAccountId.2=444455556666&ActionName.1=SendMessage");
        assert_eq!(
            sqs.unwrap(),
            Op::AddPermission {
                queue: "http://127.0.0.1:4566/000000000000/q".into(),
                label: "l".into(),
                account_ids: vec!["111122223333".into(), "444455556666".into()],
                actions: vec!["SendMessage".into()],
            }
        );
        let sns = form_op(false, b"Action=AddPermission&TopicArn=t&Label=l&AWSAccountId.member.1=111122223333&ActionName.member.1=Publish");
        assert_eq!(
            sns.unwrap(),
            Op::AddTopicPermission {
                topic: "t".into(),
                label: "l".into(),
                account_ids: vec!["111122223333".into()],
                actions: vec!["Publish".into()],
            }
        );
    }
}
