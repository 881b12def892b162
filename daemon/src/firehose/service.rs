//! The Firehose operations, and each buffer's delivery loop.

use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use sluice_protocol::*;

use super::deliver::{Batch, Failure, ObjectTarget, Targets};
use super::store::{Buffer, Taken};
use super::FirehoseHost;
use crate::catalog::firehose::{description, name_of, not_found, DeliveryStreamMeta, FirehoseChange};
use crate::catalog::{MetaChange, MetaOutcome};

/// Firehose's limits on puts.
pub const RECORD_BYTES_MAX: usize = 1_000 * 1024;
pub const BATCH_RECORDS_MAX: usize = 500;
pub const BATCH_BYTES_MAX: usize = 4 << 20;
/// Longest wait between tries of a failing destination.
const BACKOFF_MAX: Duration = Duration::from_secs(30);
/// ListDeliveryStreams' page size, at most and by default.
const LIST_LIMIT_MAX: i32 = 10_000;
const LIST_LIMIT_DEFAULT: i32 = 10;

fn invalid(message: impl Into<String>) -> OpError {
    OpError::new(ErrorCode::InvalidArgument, message)
}

fn validation(message: impl Into<String>) -> OpError {
    OpError::new(ErrorCode::Validation, message)
}

async fn change<H: FirehoseHost>(host: &Rc<H>, change: FirehoseChange) -> Result<Option<String>, OpError> {
    match host.meta_change(MetaChange::Firehose(change)).await? {
        MetaOutcome::Arn(arn) => Ok(arn),
        _ => Err(OpError::new(ErrorCode::InternalFailure, "unexpected outcome of a delivery stream change")),
    }
}

fn find(host: &impl FirehoseHost, name: &str) -> Result<Arc<DeliveryStreamMeta>, OpError> {
    let snapshot = host.snapshot();
    let name = name_of(name);
    snapshot.firehose.get(name).cloned().ok_or_else(|| not_found(name, &snapshot.naming))
}

/// Where deliveries go and how, from the settings.
pub fn targets(host: &impl FirehoseHost) -> Targets {
    let config = host.config();
    let objects = match &config.firehose_s3_endpoint {
        Some(endpoint) => ObjectTarget::S3 {
            endpoint: endpoint.clone(),
            region: config.region.clone(),
            access_key_id: config.firehose_s3_access_key_id.clone(),
            secret_access_key: config.firehose_s3_secret_access_key.clone(),
        },
        None => ObjectTarget::Local(config.firehose_local_dir()),
    };
    Targets {
        objects,
        allow_private: config.http_endpoints_allow_private,
        ca_file: config.https_ca_file.clone(),
        lambda_endpoint: config.firehose_lambda_endpoint.clone(),
        glue_tables: config.firehose_glue_tables.clone(),
    }
}

/// Refuses an HTTP endpoint this server would not deliver to: `http://` and loopback or
/// private addresses only with `--http-endpoints-allow-private` (names are checked again when
/// resolved, at every delivery).
fn check_endpoint(host: &impl FirehoseHost, request: &serde_json::Value) -> Result<(), OpError> {
    let endpoints = ["HttpEndpointDestinationConfiguration", "HttpEndpointDestinationUpdate"]
        .iter()
        .filter_map(|key| request.get(key)?.get("EndpointConfiguration")?.get("Url")?.as_str());
    let clusters = [
        "AmazonopensearchserviceDestinationConfiguration",
        "AmazonopensearchserviceDestinationUpdate",
        "ElasticsearchDestinationConfiguration",
        "ElasticsearchDestinationUpdate",
    ]
    .iter()
    .filter_map(|key| request.get(key)?.get("ClusterEndpoint")?.as_str());
    let urls = endpoints.chain(clusters);
    // Transformation functions: URLs are checked as endpoints are; ARNs need a Lambda endpoint.
    let mut functions = Vec::new();
    for destination in request.as_object().into_iter().flat_map(|map| map.values()) {
        let processors = destination.get("ProcessingConfiguration").and_then(|config| config.get("Processors"));
        for processor in processors.and_then(serde_json::Value::as_array).into_iter().flatten() {
            let parameters = processor.get("Parameters").and_then(serde_json::Value::as_array).into_iter().flatten();
            for parameter in
                parameters.filter(|parameter| parameter.get("ParameterName").and_then(|name| name.as_str()) == Some("LambdaArn"))
            {
                if let Some(function) = parameter.get("ParameterValue").and_then(serde_json::Value::as_str) {
                    functions.push(function);
                }
            }
        }
    }
    if let Some(arn) = functions.iter().find(|function| function.starts_with("arn:")) {
        if host.config().firehose_lambda_endpoint.is_none() {
            return Err(invalid(format!(
                "LambdaArn {arn:?}: this server invokes functions by ARN only through a Lambda API endpoint (start sluiced with --firehose-lambda-endpoint), or give the function's http(s) URL as LambdaArn."
            )));
        }
    }
    // A table destination's cluster: its address is checked as an endpoint's.
    let clusters = ["RedshiftDestinationConfiguration", "RedshiftDestinationUpdate"]
        .iter()
        .filter_map(|key| request.get(key)?.get("ClusterJDBCURL")?.as_str())
        .filter_map(|jdbc| jdbc.split_once("://").map(|(_, rest)| rest.split('/').next().unwrap_or_default()));
    for address in clusters {
        if host.config().http_endpoints_allow_private {
            break;
        }
        if let Some(refusal) = crate::topic::http::literal_endpoint_refusal(&format!("https://{address}/")) {
            return Err(invalid(format!("ClusterJDBCURL: {refusal}")));
        }
    }
    let function_urls = functions.into_iter().filter(|function| !function.starts_with("arn:"));
    for url in urls.chain(function_urls) {
        if host.config().http_endpoints_allow_private {
            continue;
        }
        if !url.starts_with("https://") {
            return Err(invalid(format!(
                "The endpoint URL {url:?} must use HTTPS (http:// is taken with --http-endpoints-allow-private, for local tests)."
            )));
        }
        if let Some(refusal) = crate::topic::http::literal_endpoint_refusal(url) {
            return Err(invalid(refusal));
        }
    }
    Ok(())
}

/// Refuses a format conversion whose table this server cannot find.
fn check_conversion(host: &impl FirehoseHost, request: &serde_json::Value) -> Result<(), OpError> {
    for destination in request.as_object().into_iter().flat_map(|map| map.values()) {
        let Some(conversion) = destination.get("DataFormatConversionConfiguration") else { continue };
        if conversion.get("Enabled").and_then(serde_json::Value::as_bool) == Some(false) {
            continue;
        }
        let schema = conversion.get("SchemaConfiguration");
        let name = |key: &str| schema.and_then(|schema| schema.get(key)).and_then(serde_json::Value::as_str).unwrap_or_default().to_owned();
        let Some(file) = host.config().firehose_glue_tables.as_deref() else {
            return Err(invalid(
                "DataFormatConversionConfiguration: this server has no table schemas (start sluiced with --firehose-glue-tables).",
            ));
        };
        super::convert::table_columns(file, &name("DatabaseName"), &name("TableName"))
            .map_err(|why| invalid(format!("DataFormatConversionConfiguration.SchemaConfiguration: {why}.")))?;
    }
    Ok(())
}

/// Refuses server-side encryption on a server without a key service, or with a key it cannot
/// use (Firehose's own is made now).
async fn check_encryption<H: FirehoseHost>(host: &Rc<H>, request: &serde_json::Value) -> Result<(), OpError> {
    let Some(input) = request.get("DeliveryStreamEncryptionConfigurationInput") else { return Ok(()) };
    let text = |key: &str| input.get(key).and_then(serde_json::Value::as_str);
    let encryption = crate::catalog::firehose::Encryption::parse(text("KeyType"), text("KeyARN"))?;
    usable_key(host, encryption).await.map(|_| ())
}

/// Checks that `encryption`'s key can seal on this server (Firehose's own key is made now);
/// refused on a server without a key service, where nothing would be encrypted.
async fn usable_key<H: FirehoseHost>(
    host: &Rc<H>,
    encryption: crate::catalog::firehose::Encryption,
) -> Result<crate::catalog::firehose::Encryption, OpError> {
    if host.config().root_key.is_none() {
        return Err(invalid(
            "This server has no key service, so nothing would be encrypted: start sluiced with --root-key-file \
             (see the README's Encryption section).",
        ));
    }
    let wanted = encryption.clone();
    crate::engine::sealable(host, move |snapshot| crate::catalog::firehose_seal_spec(&snapshot.keys, &wanted, 0)).await?;
    Ok(encryption)
}

/// Refuses a Kinesis source stream that does not exist.
fn check_source(host: &impl FirehoseHost, request: &serde_json::Value) -> Result<(), OpError> {
    let Some(arn) = request.pointer("/KinesisStreamSourceConfiguration/KinesisStreamARN").and_then(serde_json::Value::as_str) else {
        return Ok(());
    };
    let stream = arn.rsplit_once(":stream/").map_or("", |(_, name)| name);
    if !host.snapshot().streams.contains_key(stream) {
        return Err(invalid(format!("KinesisStreamSourceConfiguration.KinesisStreamARN: stream {arn} does not exist.")));
    }
    Ok(())
}

pub async fn handle_op<H: FirehoseHost>(host: &Rc<H>, op: Op) -> Response {
    match op {
        Op::CreateDeliveryStream { name, configuration, tags } => {
            // Bad JSON is the catalog's to refuse, with its reason.
            if let Ok(request) = serde_json::from_str::<serde_json::Value>(&configuration) {
                check_endpoint(&**host, &request)?;
                check_source(&**host, &request)?;
                check_conversion(&**host, &request)?;
                check_encryption(host, &request).await?;
            }
            let arn = change(host, FirehoseChange::Create { name, configuration, tags }).await?;
            Ok(Reply::Arn(arn.unwrap_or_default()))
        }
        Op::DeleteDeliveryStream { name, .. } => {
            let source = find(&**host, &name).ok().and_then(|meta| Some((meta.name.clone(), meta.source.clone()?)));
            change(host, FirehoseChange::Delete { name }).await?;
            // The stream consumer it read as goes with it (its checkpoints too).
            if let Some((name, source)) = source {
                let consumer = ConsumerRef {
                    stream: Some(source.stream_arn.clone()),
                    name: Some(crate::catalog::firehose::KinesisSource::consumer_name(&name)),
                    consumer_arn: None,
                };
                if let Err(error) = host.stream_op(Op::DeregisterStreamConsumer(consumer)).await {
                    tracing::debug!(delivery_stream = %name, %error, "no stream consumer to deregister");
                }
            }
            Ok(Reply::Done)
        }
        Op::DescribeDeliveryStream { name, limit, exclusive_start_destination_id } => {
            if limit.is_some_and(|limit| !(1..=10_000).contains(&limit)) {
                return Err(validation("Limit must be from 1 to 10000."));
            }
            let meta = find(&**host, &name)?;
            let mut described = description(&meta);
            // A delivery stream has one destination: past it, none.
            if exclusive_start_destination_id.is_some_and(|after| after.as_str() >= crate::catalog::firehose::DESTINATION_ID) {
                described["Destinations"] = serde_json::json!([]);
            }
            Ok(Reply::DeliveryStream(described.to_string()))
        }
        Op::ListDeliveryStreams { limit, stream_type, exclusive_start_name } => {
            let limit = limit.unwrap_or(LIST_LIMIT_DEFAULT);
            if !(1..=LIST_LIMIT_MAX).contains(&limit) {
                return Err(validation(format!("Limit must be from 1 to {LIST_LIMIT_MAX}.")));
            }
            if let Some(kind) = stream_type.as_deref() {
                if !["DirectPut", "KinesisStreamAsSource", "MSKAsSource", "DatabaseAsSource"].contains(&kind) {
                    return Err(validation(format!(
                        "DeliveryStreamType {kind:?} is not one of DirectPut, KinesisStreamAsSource, MSKAsSource, DatabaseAsSource."
                    )));
                }
            }
            let snapshot = host.snapshot();
            let mut names = snapshot
                .firehose
                .values()
                .filter(|meta| exclusive_start_name.as_ref().is_none_or(|after| &meta.name > after))
                .filter(|meta| stream_type.as_deref().is_none_or(|kind| kind == meta.kind.name()))
                .map(|meta| meta.name.clone());
            let page: Vec<String> = names.by_ref().take(limit as usize).collect();
            Ok(Reply::DeliveryStreams { names: page, has_more: names.next().is_some() })
        }
        Op::PutFirehoseRecords { name, records, batch } => put(host, &name, records, batch).await,
        Op::UpdateDestination { name, current_version_id, destination_id, configuration } => {
            if let Ok(request) = serde_json::from_str::<serde_json::Value>(&configuration) {
                check_endpoint(&**host, &request)?;
                check_conversion(&**host, &request)?;
            }
            change(host, FirehoseChange::Update { name, current_version_id, destination_id, configuration }).await.map(|_| Reply::Done)
        }
        Op::SetDeliveryStreamEncryption { name, key_type, key_arn, start } => {
            let encryption = match start {
                false => None,
                true => {
                    Some(usable_key(host, crate::catalog::firehose::Encryption::parse(key_type.as_deref(), key_arn.as_deref())?).await?)
                }
            };
            change(host, FirehoseChange::Encryption { name: name_of(&name).to_owned(), encryption }).await.map(|_| Reply::Done)
        }
        Op::TagDeliveryStream { name, tags } => {
            if tags.is_empty() {
                return Err(invalid("Tags must hold at least one tag."));
            }
            change(host, FirehoseChange::Tag { name, tags }).await.map(|_| Reply::Done)
        }
        Op::UntagDeliveryStream { name, keys } => change(host, FirehoseChange::Untag { name, keys }).await.map(|_| Reply::Done),
        Op::ListTagsForDeliveryStream { name, limit, exclusive_start_tag_key } => {
            let limit = limit.unwrap_or(50);
            if !(1..=50).contains(&limit) {
                return Err(validation("Limit must be from 1 to 50."));
            }
            let meta = find(&**host, &name)?;
            let mut rows = meta.tags.iter().filter(|(key, _)| exclusive_start_tag_key.as_ref().is_none_or(|after| *key > after));
            let tags: KeyValues = rows.by_ref().take(limit as usize).map(|(k, v)| (k.clone(), v.clone())).collect();
            Ok(Reply::StreamTags { tags, has_more: rows.next().is_some() })
        }
        other => Err(OpError::new(ErrorCode::InternalFailure, format!("{} is not a Firehose operation", other.name()))),
    }
}

/// A record's id: which core and lane took it and where (unique for the delivery stream's life).
/// Made for every record a put answers: the prefix once per put, then 16 hex digits each (no
/// formatting machinery per record — it showed in profiles of PutRecordBatch).
pub(super) fn record_id(prefix: &str, seq: u64) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut id = String::with_capacity(prefix.len() + 16);
    id.push_str(prefix);
    for shift in (0..16).rev() {
        id.push(HEX[((seq >> (shift * 4)) & 0xf) as usize] as char);
    }
    id
}

/// What the ids of the records one buffer took begin with.
fn record_id_prefix(id: u64, core: usize, lane: u8) -> String {
    format!("{id:016x}{core:04x}{lane:02x}")
}

async fn put<H: FirehoseHost>(host: &Rc<H>, name: &str, records: Vec<Bytes>, batch: bool) -> Response {
    match (batch, records.len()) {
        (false, 1) => {}
        (false, _) => return Err(validation("PutRecord takes exactly one record.")),
        (true, 0) => return Err(validation("Records must hold at least 1 record.")),
        (true, count) if count > BATCH_RECORDS_MAX => {
            return Err(validation(format!("Records holds {count} records; a batch holds at most {BATCH_RECORDS_MAX}.")))
        }
        _ => {}
    }
    if let Some(at) = records.iter().position(|record| record.len() > RECORD_BYTES_MAX) {
        return Err(validation(format!(
            "Record {at} is {} bytes; a record's data is at most {RECORD_BYTES_MAX} bytes (1,000 KiB).",
            records[at].len()
        )));
    }
    let total: usize = records.iter().map(Bytes::len).sum();
    if total > BATCH_BYTES_MAX {
        return Err(invalid(format!("The records are {total} bytes together; a batch is at most {BATCH_BYTES_MAX} bytes (4 MiB).")));
    }
    let meta = find(&**host, name)?;
    if meta.source.is_some() {
        return Err(invalid(format!(
            "This operation is not permitted on KinesisStreamAsSource delivery stream type: {} reads its stream.",
            meta.name
        )));
    }
    let (lane, seqs) = append(host, &meta, &records).await?;
    let prefix = record_id_prefix(meta.id, host.id(), lane);
    let results = seqs
        .iter()
        .map(|seq| FirehosePutResult { record_id: Some(record_id(&prefix, *seq)), error_code: None, error_message: None })
        .collect();
    Ok(Reply::FirehosePut { failed: 0, encrypted: false, records: results })
}

/// Appends `records` to one of this core's buffers of `meta` and waits until they are durable
/// there; answers the lane and their sequence numbers. Refused past the core's buffer budget.
pub async fn append<H: FirehoseHost>(host: &Rc<H>, meta: &DeliveryStreamMeta, records: &[Bytes]) -> Result<(u8, Vec<u64>), OpError> {
    let total: usize = records.iter().map(Bytes::len).sum();
    let lane = host.firehose().pick_lane(meta.id);
    let buffer = host.firehose().open(meta.id, host.id(), lane).await?;
    // The budget is the core's, over its lanes.
    let held: u64 = (0..super::store::LANES).filter_map(|lane| host.firehose().get(meta.id, lane)).map(|b| b.pending_bytes.get()).sum();
    if held + total as u64 > host.config().firehose_buffer_bytes {
        return Err(OpError::new(
            ErrorCode::ServiceUnavailable,
            format!("Slow down. Delivery stream {} holds {} bytes its destination has not taken yet.", meta.name, held),
        ));
    }
    let now_ms = host.env().now_ms();
    // With server-side encryption, records are sealed at rest under this core's data key for
    // the delivery stream's KMS key (Firehose's own is made on first use); a key that cannot be
    // used refuses the put, never writes in clear.
    let seal = match meta.encryption.is_some() {
        false => None,
        true => {
            let id = meta.id;
            let spec = move |snapshot: &crate::catalog::Snapshot| {
                snapshot.firehose.values().find(|meta| meta.id == id).and_then(|meta| snapshot.firehose_sealing(meta))
            };
            crate::engine::sealable(host, spec).await?;
            let snapshot = host.snapshot();
            let spec = snapshot
                .firehose_sealing(meta)
                .ok_or_else(|| OpError::new(ErrorCode::KmsNotFound, "The delivery stream's key is not held."))?;
            match &spec.sealing {
                crate::kms::at_rest::Sealing::Key(key) => Some(host.keyring().write_key(key, spec.reuse_ms, now_ms)),
                _ => {
                    return Err(spec
                        .writable()
                        .err()
                        .unwrap_or_else(|| OpError::new(ErrorCode::KmsNotFound, "The delivery stream's key is not held.")))
                }
            }
        }
    };
    let seqs = buffer.append(records, now_ms, seal.as_deref())?;
    if let Some(last) = seqs.last() {
        buffer.puts.set(buffer.puts.get() + 1);
        let durable = buffer.log.durable(*last).await;
        buffer.puts.set(buffer.puts.get() - 1);
        durable.map_err(crate::storage::storage_error)?;
    }
    buffer.appended.notify_all();
    host.metrics().firehose(meta.id, |counted| {
        counted.incoming_records += records.len() as u64;
        counted.incoming_bytes += total as u64;
    });
    start(host, &buffer);
    Ok((lane, seqs))
}

/// Starts `buffer`'s delivery loop unless it runs.
pub fn start<H: FirehoseHost>(host: &Rc<H>, buffer: &Rc<Buffer>) {
    if buffer.running.replace(true) {
        return;
    }
    let (host, buffer) = (host.clone(), buffer.clone());
    host.env().clone().spawn(async move {
        deliveries(&host, &buffer).await;
        buffer.running.set(false);
    });
}

/// On each new snapshot: closes and deletes the buffers of delivery streams that are gone, and
/// wakes the others' delivery loops (a changed destination — a shorter interval, say — applies
/// now, not after the current wait).
pub async fn installed<H: FirehoseHost>(host: &Rc<H>) {
    let snapshot = host.snapshot();
    host.firehose().forget_gone(host.id(), |id| snapshot.firehose.values().any(|meta| meta.id == id)).await;
    for buffer in host.firehose().all() {
        buffer.appended.notify_all();
    }
    super::source::start(host);
}

/// At start: deletes the buffers of delivery streams that are gone, opens those this core
/// holds records in for delivery streams that exist, and starts their delivery loops.
pub async fn resume<H: FirehoseHost>(host: &Rc<H>) {
    let snapshot = host.snapshot();
    host.firehose().remove_orphans(host.id(), |id| snapshot.firehose.values().any(|meta| meta.id == id)).await;
    let places = snapshot.firehose.values().flat_map(|meta| (0..super::store::LANES).map(move |lane| (meta.id, lane)));
    for (id, lane) in places {
        let store = host.firehose();
        if store.get(id, lane).is_some() || !store.on_disk(id, host.id(), lane) {
            continue;
        }
        match host.firehose().open(id, host.id(), lane).await {
            Ok(buffer) => start(host, &buffer),
            Err(error) => tracing::error!(shard = host.id(), id, %error, "cannot open a delivery stream's buffer"),
        }
    }
    super::source::start(host);
}

/// Deliveries one buffer keeps in flight at once (each object is processed, compressed and
/// written on the delivery thread; marks still advance in order).
const IN_FLIGHT_MAX: usize = 8;

/// A buffer's delivery loop: once the records not yet handed out reach the buffering size, or
/// the oldest of them has waited the buffering interval, gathers them into a batch and hands it
/// to the destination, up to `IN_FLIGHT_MAX` batches at once; as batches complete, in order,
/// marks them delivered. A failed batch is tried again (backing off up to `BACKOFF_MAX`) until
/// it succeeds — its records stay in the buffer meanwhile and puts are refused once it is
/// full. Ends when the delivery stream is deleted or the shard stops (batches in flight are
/// let go: delivered again after the next start).
async fn deliveries<H: FirehoseHost>(host: &Rc<H>, buffer: &Rc<Buffer>) {
    let mut in_flight = futures::stream::FuturesOrdered::new();
    // Where the next batch starts, and what the batches in flight hold.
    let mut gathered = buffer.delivered.get();
    let (mut flying_records, mut flying_bytes) = (0u64, 0u64);
    // Batches in flight that went out short of the buffering size (their interval was up). At
    // most one at a time: meanwhile records gather into the next, so a busy destination gets
    // fewer, larger objects — not one per put — as a group commit gathers writes.
    let mut partial_flying = 0usize;
    loop {
        if buffer.gone.get() || host.shutdown().requested.get() {
            return;
        }
        let Some(meta) = host.snapshot().firehose.values().find(|meta| meta.id == buffer.id).cloned() else { return };
        let buffering = meta.destination.buffering();
        let appended = buffer.appended.listen();
        let stopping = host.shutdown().event.listen();
        let mut unreadable = false;
        let mut wait = Duration::from_secs(3600);
        while in_flight.len() < IN_FLIGHT_MAX {
            let fresh_records = buffer.pending_records.get().saturating_sub(flying_records);
            let fresh_bytes = buffer.pending_bytes.get().saturating_sub(flying_bytes);
            let now_ms = host.env().now_ms();
            let due_ms = buffer.fresh_since.get().map_or(now_ms, |since| since + buffering.interval_ms());
            if fresh_records == 0 {
                break;
            }
            let short = fresh_bytes < buffering.size_bytes();
            if short && now_ms < due_ms {
                wait = Duration::from_millis(due_ms - now_ms);
                break;
            }
            if short && partial_flying > 0 {
                break;
            }
            let taking = host.env().monotonic();
            let batch = match buffer.take(gathered, buffering.size_bytes(), host.keyring()).await {
                Ok(Some(batch)) => batch,
                // Taken but not yet durable: readable once its put's sync is done.
                Ok(None) => {
                    unreadable = true;
                    break;
                }
                Err(error) => {
                    tracing::error!(delivery_stream = %meta.name, %error, "cannot read a delivery stream's buffer");
                    unreadable = true;
                    break;
                }
            };
            gathered = batch.to;
            let count = batch.records.len() as u64;
            flying_records += count;
            flying_bytes += batch.bytes;
            // The oldest record not handed out now is the first one after this batch.
            let left = buffer.pending_records.get() > flying_records;
            let next_arrival = match left {
                true => buffer.arrival_from(gathered).await,
                false => None,
            };
            buffer.fresh_since.set(next_arrival.or(left.then_some(now_ms)));
            tracing::trace!(
                delivery_stream = %meta.name,
                lane = buffer.lane,
                in_flight = in_flight.len() + 1,
                records = count,
                take_us = host.env().monotonic().saturating_sub(taking).as_micros() as u64,
                "a batch goes"
            );
            let partial = batch.bytes < buffering.size_bytes();
            partial_flying += usize::from(partial);
            // Its own task, started now: a delivery proceeds while this loop reads the next
            // batch or marks one done (a future only pushed here would not start until the
            // loop next waits, and the deliveries would go out in bursts, one after another).
            let (done, outcome) = futures::channel::oneshot::channel();
            let (host, buffer) = (host.clone(), buffer.clone());
            host.env().clone().spawn(async move {
                let _ = done.send(deliver_until_done(host, buffer, batch, count).await);
            });
            // A task dropped unfinished (the shard stops) lets its batch go, as `None` does.
            in_flight.push_back(async move { (partial, outcome.await.ok().flatten()) });
        }
        if unreadable {
            wait = Duration::from_millis(50);
        }
        let timer = host.env().sleep(wait);
        let done = async {
            if in_flight.is_empty() {
                futures::future::pending::<Option<(bool, Option<(u64, u64, u64)>)>>().await
            } else {
                futures::StreamExt::next(&mut in_flight).await
            }
        };
        futures::pin_mut!(appended, stopping, timer, done);
        let woke = futures::future::select(done, futures::future::select(futures::future::select(appended, stopping), timer)).await;
        if let futures::future::Either::Left((Some((partial, finished)), _)) = woke {
            partial_flying -= usize::from(partial);
            // `None`: the batch was let go (the stream is gone or the shard stops).
            let Some((to, count, bytes)) = finished else { return };
            flying_records -= count;
            flying_bytes -= bytes;
            if let Err(error) = buffer.mark_delivered(to, count, bytes, host.env().now_ms()) {
                tracing::error!(delivery_stream = %meta.name, %error, "cannot mark records delivered (they will be delivered again after a restart)");
            }
            trim(host, buffer);
            // The oldest record not delivered is the first one after this batch.
            let oldest = match buffer.pending_records.get() {
                0 => None,
                _ => buffer.arrival_from(to).await,
            };
            buffer.oldest_ms.set(oldest.or(buffer.fresh_since.get()));
        }
    }
}

/// Removes `buffer`'s delivered segments in a task of its own (one at a time), so that the
/// delivery loop goes on meanwhile: a removal waits for the disk (unlink, directory sync).
fn trim<H: FirehoseHost>(host: &Rc<H>, buffer: &Rc<Buffer>) {
    let buffer = buffer.clone();
    host.env().spawn(async move {
        if let Err(error) = buffer.trim().await {
            tracing::warn!(id = buffer.id, %error, "cannot remove a delivery stream's delivered buffer segments (tried again at the next delivery)");
        }
    });
}

/// Delivers one batch, trying again until it succeeds; answers (the first sequence number after
/// it, its records, its bytes), or `None` when the delivery stream is gone or the shard stops.
async fn deliver_until_done<H: FirehoseHost>(host: Rc<H>, buffer: Rc<Buffer>, batch: Taken, count: u64) -> Option<(u64, u64, u64)> {
    let mut failures = 0u32;
    // When the destination first refused the batch, and why it last did.
    let mut failing: Option<(u64, String)> = None;
    loop {
        // The destination as it is now (an UpdateDestination applies to batches not yet written).
        let meta = host.snapshot().firehose.values().find(|meta| meta.id == buffer.id).cloned()?;
        if count == 0 {
            return Some((batch.to, 0, 0));
        }
        // Refused for its whole retry duration: the batch goes to the backup bucket instead.
        let failure = match (&failing, meta.destination.retry_ms()) {
            (Some((since, reason)), Some(retry_ms)) if host.env().now_ms().saturating_sub(*since) >= retry_ms => {
                Some(Failure { reason: reason.clone(), attempts: failures })
            }
            _ => None,
        };
        let backup = failure.is_some();
        let started_ms = host.env().now_ms();
        let sent = Batch {
            meta: meta.clone(),
            targets: targets(&*host),
            records: batch.records.clone(),
            record_ids: (record_id_prefix(meta.id, host.id(), buffer.lane), batch.seqs.clone()),
            arrival_ms: batch.arrival_ms,
            failure,
        };
        match host.deliver(sent).await {
            Ok(key) => {
                if backup {
                    tracing::warn!(delivery_stream = %meta.name, key, records = count, "records the destination refused for its retry duration went to the backup bucket");
                    host.metrics().firehose(meta.id, |counted| counted.backed_up_records += count);
                } else {
                    let ms = host.env().now_ms().saturating_sub(started_ms);
                    tracing::debug!(delivery_stream = %meta.name, key, records = count, bytes = batch.bytes, ms, "delivered");
                    host.metrics().firehose(meta.id, |counted| {
                        counted.delivered_records += count;
                        counted.delivered_bytes += batch.bytes;
                        counted.deliveries += 1;
                    });
                }
                return Some((batch.to, count, batch.bytes));
            }
            Err(reason) => {
                if !backup {
                    let since = failing.as_ref().map_or(host.env().now_ms(), |(since, _)| *since);
                    failing = Some((since, reason.clone()));
                }
                host.metrics().firehose(buffer.id, |counted| counted.failures += 1);
                failures += 1;
                if failures == 1 || failures.is_multiple_of(20) {
                    tracing::warn!(delivery_stream = %meta.name, failures, %reason, "a delivery failed; trying again (the records stay buffered)");
                }
                let backoff = Duration::from_millis(500u64 << failures.min(6)).min(BACKOFF_MAX);
                let timer = host.env().sleep(backoff);
                let stopping = host.shutdown().event.listen();
                futures::pin_mut!(stopping, timer);
                futures::future::select(stopping, timer).await;
                if buffer.gone.get() || host.shutdown().requested.get() {
                    return None;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_ids_are_the_buffer_and_the_sequence_number_in_hex() {
        let prefix = record_id_prefix(0x2a, 1, 3);
        assert_eq!(record_id(&prefix, 0xdead_beef), format!("{:016x}{:04x}{:02x}{:016x}", 0x2a, 1, 3, 0xdead_beef_u64));
        assert_eq!(record_id(&prefix, u64::MAX).len(), 38);
    }
}
