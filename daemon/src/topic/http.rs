//! Delivery to HTTP subscribers, in the background.
//!
//! Every `http` subscription has a hidden delivery queue (created and removed with the
//! subscription, named `sluice.http-delivery.<id>`, invisible to clients). A publish
//! appends the notification to this shard's partition of it, durably, like any queue
//! subscriber, so an acknowledged publish survives a crash on its way to an HTTP endpoint
//! too. Each shard's delivery task takes what is due from its own partitions and POSTs it,
//! as SNS does (headers `x-amz-sns-*`, the JSON document as the body); a 2xx answer deletes
//! it, anything else makes it visible again after the next delay of the delivery policy
//! (the receive count is the attempt number). When the policy's attempts are spent it goes
//! to the subscription's dead-letter queue, or is dropped and logged.
//!
//! The first message in a pending subscription's queue is its SubscriptionConfirmation,
//! with the token that ConfirmSubscription takes.

use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use futures::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use futures_rustls::rustls::{self, ClientConfig};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};
use sluice_protocol::MessageAttribute;

use super::TopicHost;
use crate::catalog::delivery::{effective_policy, target, RetryPolicy, Target};
use crate::catalog::is_delivery_queue;
use crate::catalog::topics::SubscriptionMeta;
use crate::queue::partition::Delivery;
use crate::queue::VisibilityChange;

/// How long a message stays hidden while its POST is under way (longer than the timeout).
const POSTING_VISIBILITY_MS: u64 = 60_000;
/// How long one POST may take, connection included, before it counts as failed.
const POST_TIMEOUT: Duration = Duration::from_secs(15);
/// How often a shard looks for deliveries that became due (retries); new ones wake it at once.
const DELIVERY_TICK: Duration = Duration::from_millis(200);
/// Deliveries one shard has under way at once.
const POSTS_IN_FLIGHT_MAX: usize = 64;
/// How long resolving an endpoint's host may take (on a blocking thread, never the shard's).
const RESOLVE_TIMEOUT: Duration = Duration::from_secs(5);
/// Response bytes read to find the status line and headers.
const RESPONSE_HEAD_BYTES_MAX: usize = 16 * 1024;

/// Message attributes a delivery queue's messages carry for the POST's headers.
pub const MESSAGE_TYPE: &str = "x-amz-sns-message-type";
pub const MESSAGE_ID: &str = "x-amz-sns-message-id";

/// The TLS settings for `https` endpoints: the public (Mozilla) roots and, with
/// `--https-ca-file`, the certificate authorities in that PEM file.
pub fn tls_config(ca_file: Option<&std::path::Path>) -> Result<Arc<ClientConfig>, String> {
    let mut roots = rustls::RootCertStore { roots: webpki_roots::TLS_SERVER_ROOTS.to_vec() };
    if let Some(path) = ca_file {
        let mut added = 0;
        for certificate in CertificateDer::pem_file_iter(path).map_err(|e| format!("--https-ca-file {}: {e}", path.display()))? {
            let certificate = certificate.map_err(|e| format!("--https-ca-file {}: {e}", path.display()))?;
            roots.add(certificate).map_err(|e| format!("--https-ca-file {}: {e}", path.display()))?;
            added += 1;
        }
        if added == 0 {
            return Err(format!("--https-ca-file {} holds no certificate", path.display()));
        }
    }
    let config = ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS settings: {e}"))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// Why an address is not one subscriptions may deliver to without
/// `--http-endpoints-allow-private`: loopback, private, link-local (the cloud metadata
/// service at 169.254.169.254), shared, unspecified, multicast, reserved or documentation.
pub fn non_public(ip: std::net::IpAddr) -> Option<&'static str> {
    use std::net::IpAddr;
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            if v4.is_loopback() {
                Some("a loopback address")
            } else if v4.is_link_local() {
                Some("a link-local address (such as the cloud metadata service)")
            } else if v4.is_private() || (a == 100 && (64..128).contains(&b)) {
                Some("a private address")
            } else if v4.is_unspecified() || a == 0 || v4.is_broadcast() || v4.is_multicast() || a >= 240 {
                Some("not a unicast address")
            } else if v4.is_documentation() || (a == 198 && (18..20).contains(&b)) || (a == 192 && b == 0) {
                Some("a reserved address")
            } else {
                None
            }
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return non_public(IpAddr::V4(v4));
            }
            let first = v6.segments()[0];
            if v6.is_loopback() {
                Some("a loopback address")
            } else if v6.is_unspecified() || v6.is_multicast() {
                Some("not a unicast address")
            } else if first & 0xffc0 == 0xfe80 || first & 0xffc0 == 0xfec0 {
                Some("a link-local address")
            } else if first & 0xfe00 == 0xfc00 {
                Some("a private address")
            } else if first == 0x64 && v6.segments()[1] == 0xff9b {
                non_public(IpAddr::V4(std::net::Ipv4Addr::from((v6.to_bits() as u32).to_be_bytes())))
            } else {
                None
            }
        }
    }
}

/// Why an endpoint is refused from what its URL alone shows (an IP address or `localhost`);
/// names are checked again after resolution, at every delivery.
pub fn literal_endpoint_refusal(endpoint: &str) -> Option<String> {
    let target = target(endpoint).ok()?;
    if let Ok(ip) = target.host.parse::<std::net::IpAddr>() {
        return non_public(ip)
            .map(|why| format!("{} is {why}; start the broker with --http-endpoints-allow-private to allow it", target.host));
    }
    let host = target.host.trim_end_matches('.').to_ascii_lowercase();
    (host == "localhost" || host.ends_with(".localhost"))
        .then(|| format!("{} is a loopback name; start the broker with --http-endpoints-allow-private to allow it", target.host))
}

/// Resolves `target` on a blocking thread (a slow resolver never stalls the shard), within
/// `RESOLVE_TIMEOUT`, and picks the first address, refusing non-public ones unless allowed.
async fn resolve(target: &Target, allow_private: bool) -> Result<std::net::SocketAddr, String> {
    let (host, port) = (target.host.clone(), target.port);
    let lookup = glommio::executor().spawn_blocking(move || {
        use std::net::ToSocketAddrs;
        (host.as_str(), port).to_socket_addrs().map(|addrs| addrs.collect::<Vec<_>>())
    });
    let addrs = match glommio::timer::timeout(RESOLVE_TIMEOUT, async { Ok(lookup.await) }).await {
        Ok(Ok(addrs)) => addrs,
        Ok(Err(error)) => return Err(format!("resolving {}: {error}", target.host)),
        Err(_) => return Err(format!("resolving {} took more than {} s", target.host, RESOLVE_TIMEOUT.as_secs())),
    };
    let addr = addrs.first().copied().ok_or_else(|| format!("{} has no address", target.host))?;
    if !allow_private {
        // Every address is checked: a name must not mix a public address with a private one.
        if let Some((addr, why)) = addrs.iter().find_map(|addr| non_public(addr.ip()).map(|why| (addr, why))) {
            return Err(format!("{} resolves to {}, {why} (allow with --http-endpoints-allow-private)", target.host, addr.ip()));
        }
    }
    Ok(addr)
}

/// POSTs one message; returns the HTTP status.
async fn post(tls: &Arc<ClientConfig>, allow_private: bool, endpoint: &str, headers: &[(&str, &str)], body: &[u8]) -> Result<u16, String> {
    let target = target(endpoint)?;
    let attempt = async {
        // Connect to the very address that was checked (no second resolution to rebind).
        let addr = resolve(&target, allow_private).await?;
        let tcp = glommio::net::TcpStream::connect(addr).await.map_err(|e| format!("connecting to {}: {e}", target.addr))?;
        if !target.tls {
            return exchange(tcp, &target, headers, body).await;
        }
        let name = ServerName::try_from(target.host.clone()).map_err(|e| format!("bad host name {}: {e}", target.host))?;
        let stream = futures_rustls::TlsConnector::from(tls.clone())
            .connect(name, tcp)
            .await
            .map_err(|e| format!("TLS with {}: {e}", target.host))?;
        exchange(stream, &target, headers, body).await
    };
    match glommio::timer::timeout(POST_TIMEOUT, async { Ok(attempt.await) }).await {
        Ok(result) => result,
        Err(_) => Err(format!("no answer within {} s", POST_TIMEOUT.as_secs())),
    }
}

/// Writes the request and reads the answer's status line and headers.
async fn exchange<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    target: &Target,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Result<u16, String> {
    let mut head = format!(
        "POST {} HTTP/1.1\r\nHost: {}\r\nContent-Type: text/plain; charset=UTF-8\r\nContent-Length: {}\r\nUser-Agent: Amazon Simple Notification Service Agent\r\nConnection: close\r\n",
        target.path,
        target.host_header,
        body.len()
    );
    for (name, value) in headers {
        head.push_str(name);
        head.push_str(": ");
        head.push_str(value);
        head.push_str("\r\n");
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).await.map_err(|e| format!("sending: {e}"))?;
    stream.write_all(body).await.map_err(|e| format!("sending: {e}"))?;
    stream.flush().await.map_err(|e| format!("sending: {e}"))?;
    let mut response = Vec::with_capacity(1024);
    let mut chunk = [0u8; 2048];
    loop {
        let n = stream.read(&mut chunk).await.map_err(|e| format!("reading the answer: {e}"))?;
        if n == 0 {
            return Err("the endpoint closed the connection without an answer".to_owned());
        }
        response.extend_from_slice(&chunk[..n]);
        let mut headers = [httparse::EMPTY_HEADER; 64];
        let mut parsed = httparse::Response::new(&mut headers);
        match parsed.parse(&response) {
            Ok(httparse::Status::Complete(_)) => return parsed.code.ok_or_else(|| "an answer without a status".to_owned()),
            Ok(httparse::Status::Partial) if response.len() < RESPONSE_HEAD_BYTES_MAX => continue,
            Ok(httparse::Status::Partial) => return Err("the answer's head is too long".to_owned()),
            Err(error) => return Err(format!("not an HTTP answer: {error}")),
        }
    }
}

fn attribute<'a>(delivery: &'a Delivery, name: &str) -> Option<&'a str> {
    delivery.payload.attributes.as_deref()?.iter().find(|a| a.name == name)?.string_value.as_deref()
}

/// This shard's HTTP delivery task: runs for the life of the shard.
pub async fn http_deliveries<H: TopicHost>(host: Rc<H>) {
    release_deliveries_in_flight(&host).await;
    let posts = Rc::new(glommio::sync::Semaphore::new(POSTS_IN_FLIGHT_MAX as u64));
    loop {
        let woken = host.topics().http_wake.listen();
        let tick = host.env().sleep(DELIVERY_TICK);
        let shutdown = host.shutdown().event.listen();
        futures::pin_mut!(woken, tick, shutdown);
        futures::future::select(woken, futures::future::select(tick, shutdown)).await;
        if host.shutdown().requested.get() {
            return;
        }
        let snapshot = host.snapshot();
        for topic in snapshot.topics.values() {
            for subscription in &topic.subscriptions {
                let Some(queue) = subscription.delivery_queue().and_then(|name| snapshot.by_name.get(&name).cloned()) else { continue };
                let free = posts.available() as usize;
                if free == 0 {
                    break;
                }
                let deliveries =
                    match crate::queue::service::receive_local(&host, queue.id, free.min(10), POSTING_VISIBILITY_MS, None).await {
                        Ok(deliveries) => deliveries,
                        Err(error) => {
                            tracing::warn!(shard = host.id(), subscription = %subscription.arn, %error, "cannot take deliveries");
                            continue;
                        }
                    };
                let policy = match subscription.protocol.as_str() {
                    "firehose" => RetryPolicy::aws_managed(),
                    _ => effective_policy(subscription, topic.attributes.get("DeliveryPolicy").map(String::as_str)),
                };
                for delivery in deliveries {
                    let Ok(permit) = posts.clone().acquire_static_permit(1).await else { return };
                    let shard = host.clone();
                    let (subscription, queue_id, policy) = (subscription.clone(), queue.id, policy.clone());
                    host.env().spawn(async move {
                        deliver(&shard, &subscription, queue_id, delivery, &policy).await;
                        drop(permit);
                    });
                }
            }
        }
    }
}

/// At start: deliveries that were being POSTed when the daemon stopped are due again now
/// (otherwise they would wait out the posting visibility).
async fn release_deliveries_in_flight<H: TopicHost>(host: &Rc<H>) {
    let snapshot = host.snapshot();
    let now = host.env().now_ms();
    let mut last = None;
    for queue in snapshot.by_name.values().filter(|meta| is_delivery_queue(&meta.name)) {
        let mut partitions = host.queues().partitions.borrow_mut();
        let Some(partition) = partitions.get_mut(&queue.id) else { continue };
        if partition.release_inflight(now) > 0 {
            match host.queues().storage.commit(partition) {
                Ok(ticket) => last = last.max(ticket),
                Err(error) => tracing::warn!(shard = host.id(), %error, "cannot release HTTP deliveries in flight"),
            }
        }
    }
    if let Some(ticket) = last {
        if let Err(error) = host.queues().storage.durable(ticket).await {
            tracing::warn!(shard = host.id(), %error, "cannot release HTTP deliveries in flight");
        }
    }
}

/// One attempt at one delivery, and what follows from its outcome.
async fn deliver<H: TopicHost>(host: &Rc<H>, subscription: &SubscriptionMeta, queue_id: u64, delivery: Delivery, policy: &RetryPolicy) {
    let message_type = attribute(&delivery, MESSAGE_TYPE).unwrap_or("Notification");
    let message_id = attribute(&delivery, MESSAGE_ID).unwrap_or_default();
    let mut headers =
        vec![(MESSAGE_TYPE, message_type), (MESSAGE_ID, message_id), ("x-amz-sns-topic-arn", subscription.topic_arn.as_str())];
    if message_type == "Notification" {
        headers.push(("x-amz-sns-subscription-arn", subscription.arn.as_str()));
        if subscription.raw {
            headers.push(("x-amz-sns-rawdelivery", "true"));
        }
    }
    let allow_private = host.config().http_endpoints_allow_private;
    let body = signed(host.config(), subscription.raw && message_type == "Notification", &delivery.payload.body).await;
    let outcome = match subscription.protocol.as_str() {
        // A delivery stream of this server: the notification is one record, put on this shard.
        "firehose" => {
            let name = crate::catalog::firehose::name_of(&subscription.endpoint);
            host.put_firehose(name, body).await.map_err(|error| format!("the delivery stream refused it: {}", error.message))
        }
        _ => match post(&host.topics().tls, allow_private, &subscription.endpoint, &headers, &body).await {
            Ok(status) if (200..300).contains(&status) => Ok(()),
            Ok(status) => Err(format!("the endpoint answered HTTP {status}")),
            Err(error) => Err(error),
        },
    };
    let message = (delivery.seq, delivery.message_id as u64);
    let attempt = delivery.receive_count;
    // Notifications only (a subscription confirmation is no delivery of a message).
    if message_type == "Notification" {
        let topic = subscription.topic_arn.rsplit(':').next().unwrap_or_default();
        let protocol = match subscription.protocol.as_str() {
            "https" => "https",
            "firehose" => "firehose",
            _ => "http",
        };
        host.metrics().delivery(topic, protocol, |counted| match &outcome {
            Ok(()) => counted.delivered += 1,
            Err(_) if attempt < policy.attempts() => counted.retried += 1,
            Err(_) => counted.failed += 1,
        });
    }
    match outcome {
        Ok(()) => {
            // Not kept: the notification is delivered again after the restart (at least once).
            let _ = crate::queue::service::delete_local(host, queue_id, vec![message]).await;
        }
        Err(reason) if attempt < policy.attempts() => {
            let timeout_ms = policy.delay_ms(attempt);
            tracing::debug!(subscription = %subscription.arn, attempt, %reason, retry_in_ms = timeout_ms, "HTTP delivery failed; will retry");
            let entries = vec![VisibilityChange { message, receive_count: attempt, timeout_ms }];
            crate::queue::service::change_visibility_local(host, queue_id, entries).await;
            if timeout_ms == 0 {
                host.topics().http_wake.notify_all();
            }
        }
        Err(reason) => {
            if message_type == "Notification" {
                let snapshot = host.snapshot();
                let now = host.env().now_ms();
                let mut sends = crate::queue::service::Sends::default();
                let undeliverable = super::service::Undeliverable {
                    code: "DeliveryFailed",
                    reason: format!("{} attempts failed; the last: {reason}", attempt),
                };
                match super::service::dead_letter(
                    host,
                    &snapshot,
                    subscription,
                    delivery.payload.body.clone(),
                    undeliverable,
                    now,
                    &mut sends,
                ) {
                    Ok(()) => {
                        // Deleted only once the dead-letter copy is kept: a crash between
                        // the two can duplicate the message, never lose it.
                        if let Err(error) = crate::queue::service::sends_durable(host, sends).await {
                            tracing::error!(%error, "cannot keep a dead-lettered notification; will retry it");
                            return;
                        }
                    }
                    Err(error) => {
                        tracing::error!(%error, "cannot dead-letter a notification; will retry it");
                        return;
                    }
                }
            } else {
                tracing::warn!(subscription = %subscription.arn, %reason, "the subscription confirmation could not be delivered");
            }
            let _ = crate::queue::service::delete_local(host, queue_id, vec![message]).await;
        }
    }
}

/// `body` with its SNS signature (`topic::signing`), made on glommio's blocking pool; as it
/// is when the delivery is raw or no signature can be made (logged).
async fn signed(config: &crate::config::Config, raw: bool, body: &bytes::Bytes) -> bytes::Bytes {
    let Some(signing) = config.sns_signing.clone().filter(|_| !raw) else { return body.clone() };
    let unsigned = body.clone();
    let signed = glommio::executor()
        .spawn_blocking(move || match signing.signer() {
            Ok(signer) => Ok(signer.sign_message(&unsigned)),
            Err(error) => Err(error),
        })
        .await;
    match signed {
        Ok(Some(signed)) => bytes::Bytes::from(signed),
        Ok(None) => body.clone(),
        Err(error) => {
            tracing::error!(%error, "cannot sign an SNS message; delivering it unsigned");
            body.clone()
        }
    }
}

/// POSTs the UnsubscribeConfirmation SNS sends an HTTP/S endpoint when its subscription is
/// deleted: signed, once, in the background (not kept: a failed one is logged). Its
/// `SubscribeURL` restores the subscription (ConfirmSubscription with `token`, for
/// `catalog::topics::RESTORE_MS`).
pub fn send_unsubscribe_confirmation<H: TopicHost>(host: &Rc<H>, subscription: &SubscriptionMeta, token: &str) {
    let public_url = host.config().public_url.trim_end_matches('/').to_owned();
    let message_id = crate::catalog::topics::random_uuid();
    let now = host.env().now_ms();
    let timestamp = humantime::format_rfc3339_millis(std::time::UNIX_EPOCH + std::time::Duration::from_millis(now)).to_string();
    let topic = &subscription.topic_arn;
    let body = serde_json::json!({
        "Type": "UnsubscribeConfirmation",
        "MessageId": message_id,
        "Token": token,
        "TopicArn": topic,
        "Message": format!(
            "You have chosen to deactivate subscription {}.\nTo cancel this operation and restore the subscription, visit the SubscribeURL included in this message.",
            subscription.arn
        ),
        "SubscribeURL": format!("{public_url}/?Action=ConfirmSubscription&TopicArn={topic}&Token={token}"),
        "Timestamp": timestamp,
        "SignatureVersion": "1",
        "Signature": "",
        "SigningCertURL": format!("{public_url}{}", crate::sns_signing::CERT_PATH),
    });
    let host = host.clone();
    let (endpoint, subscription_arn, topic) = (subscription.endpoint.clone(), subscription.arn.clone(), topic.clone());
    glommio::spawn_local(async move {
        let body = signed(host.config(), false, &bytes::Bytes::from(body.to_string())).await;
        let headers =
            [(MESSAGE_TYPE, "UnsubscribeConfirmation"), (MESSAGE_ID, message_id.as_str()), ("x-amz-sns-topic-arn", topic.as_str())];
        let allow_private = host.config().http_endpoints_allow_private;
        match post(&host.topics().tls, allow_private, &endpoint, &headers, &body).await {
            Ok(status) if (200..300).contains(&status) => {}
            Ok(status) => tracing::info!(subscription = %subscription_arn, status, "the endpoint refused its UnsubscribeConfirmation"),
            Err(error) => tracing::info!(subscription = %subscription_arn, %error, "the UnsubscribeConfirmation was not delivered"),
        }
    })
    .detach();
}

/// Attributes a delivery-queue message carries: its type and SNS message id.
pub fn delivery_attributes(message_type: &str, message_id: &str) -> Vec<MessageAttribute> {
    vec![MessageAttribute::string(MESSAGE_TYPE, "String", message_type), MessageAttribute::string(MESSAGE_ID, "String", message_id)]
}

#[cfg(test)]
mod address_tests {
    use super::*;

    fn refused(text: &str) -> bool {
        non_public(text.parse().unwrap()).is_some()
    }

    #[test]
    fn addresses_behind_the_broker_are_not_public() {
        for address in [
            "127.0.0.1",
            "127.9.9.9",
            "10.0.0.1",
            "172.16.5.4",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "255.255.255.255",
            "224.0.0.1",
            "::1",
            "::",
            "fe80::1",
            "fd00::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "64:ff9b::a9fe:a9fe",
        ] {
            assert!(refused(address), "{address} counts as public");
        }
        for address in ["93.184.216.34", "8.8.8.8", "2606:4700::1111", "::ffff:8.8.8.8"] {
            assert!(!refused(address), "{address} counts as not public");
        }
    }

    #[test]
    fn literal_endpoints_are_refused_by_their_url() {
        for endpoint in [
            "http://127.0.0.1:9/",
            "http://169.254.169.254/latest/meta-data/",
            "http://[::1]:80/",
            "http://localhost/",
            "https://LOCALHOST./x",
        ] {
            assert!(literal_endpoint_refusal(endpoint).is_some(), "{endpoint} was let through");
        }
        assert!(literal_endpoint_refusal("https://example.com/hook").is_none());
    }

    #[test]
    fn a_name_is_checked_after_it_is_resolved() {
        let outcome = glommio::LocalExecutorBuilder::default()
            .spawn(|| async {
                let target = target("http://localhost:9/hook").unwrap();
                let refused = resolve(&target, false).await;
                let allowed = resolve(&target, true).await;
                (refused, allowed)
            })
            .unwrap()
            .join()
            .unwrap();
        let refused = outcome.0.expect_err("localhost resolves to a loopback address, which is refused");
        assert!(refused.contains("loopback"), "{refused}");
        assert!(outcome.1.expect("allowed with the flag").ip().is_loopback());
    }
}
