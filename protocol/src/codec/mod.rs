//! Encoding `ops` values into frames and decoding verified frames back.
//!
//! A frame is the whole size-prefixed flatbuffer: a little-endian `u32` length
//! and that many bytes. Decoding runs the flatbuffers verifier (bounded depth,
//! table count and size) before reading anything; bodies and binary values of
//! the result are slices of the frame's `Bytes`, not copies.

use bytes::Bytes;
use flatbuffers::{FlatBufferBuilder, ForwardsUOffset, Vector, VerifierOptions, WIPOffset};

use crate::error::{ErrorCode, OpError};
use crate::generated::sluice::wire as fb;
use crate::limits::{VERIFIER_DEPTH_MAX, VERIFIER_TABLES_MAX};
use crate::ops::*;

mod firehose;
mod kinesis;
mod kms;
mod monitor;
mod reply;
mod sns;
mod sqs;

pub use reply::decode_response;
use reply::encode_reply;

/// One table of an operation's union, built with `fbb`.
macro_rules! op_table {
    ($fbb:expr, $variant:ident, $args:expr) => {{
        let args = $args;
        (fb::Op::$variant, fb::$variant::create($fbb, &args).as_union_value())
    }};
}
use op_table;

/// Why a frame could not be decoded.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// Not a valid flatbuffer of the expected root type.
    #[error("frame is not a valid {what}: {source}")]
    Invalid {
        what: &'static str,
        #[source]
        source: flatbuffers::InvalidFlatbuffer,
    },
    /// A valid flatbuffer whose operation this side does not know (or has none).
    /// The request id is known, so the sender can be answered.
    #[error("request {id} carries unknown operation type {op_type}")]
    UnknownOp { id: u64, op_type: u8 },
    /// A valid response that carries neither a reply nor an error.
    #[error("response {id} carries neither a reply nor an error")]
    EmptyResponse { id: u64 },
    /// A list longer than any valid message holds (a flatbuffer may point many entries at
    /// one string, so a short frame could otherwise decode to a huge value).
    #[error("message {id} holds a list of {len} entries; at most {max} are accepted")]
    ListTooLong { id: u64, len: usize, max: usize },
}

/// Entries one list of a request may hold when decoded (the longest valid one, PutRecords,
/// has 500; attribute names, tags and batch entries far fewer).
pub const REQUEST_LIST_ENTRIES_MAX: usize = 10_000;
/// Entries one list of a response may hold (GetRecords answers up to 10,000 records).
pub const RESPONSE_LIST_ENTRIES_MAX: usize = 100_000;

fn verifier_options(frame_len: usize) -> VerifierOptions {
    VerifierOptions {
        max_depth: VERIFIER_DEPTH_MAX,
        max_tables: VERIFIER_TABLES_MAX,
        // A frame whose shared sub-objects would expand past a few times its own size is hostile.
        max_apparent_size: frame_len.saturating_mul(4).max(1 << 16),
        ignore_missing_null_terminator: false,
    }
}

type FbVector<'a, T> = Option<WIPOffset<Vector<'a, ForwardsUOffset<T>>>>;

/// Encodes requests and responses, reusing one builder's memory across calls.
pub struct Encoder {
    fbb: FlatBufferBuilder<'static>,
}

impl Default for Encoder {
    fn default() -> Self {
        Encoder::new()
    }
}

impl Encoder {
    pub fn new() -> Encoder {
        Encoder { fbb: FlatBufferBuilder::with_capacity(4096) }
    }

    /// Encodes one request frame (length prefix included); valid until the next call.
    pub fn request(&mut self, request: &Request) -> &[u8] {
        self.fbb.reset();
        let fbb = &mut self.fbb;
        let (op_type, op) = encode_op(fbb, &request.op);
        let root = fb::Request::create(fbb, &fb::RequestArgs { id: request.id, op_type, op: Some(op) });
        fbb.finish_size_prefixed(root, None);
        self.fbb.finished_data()
    }

    /// Encodes one response frame (length prefix included); valid until the next call.
    pub fn response(&mut self, id: u64, response: &Response) -> &[u8] {
        self.fbb.reset();
        let fbb = &mut self.fbb;
        let root = match response {
            Ok(reply) => {
                let (reply_type, reply) = encode_reply(fbb, reply);
                fb::Response::create(fbb, &fb::ResponseArgs { id, reply_type, reply: Some(reply), error: None })
            }
            Err(error) => {
                let message = fbb.create_string(&error.message);
                let error = fb::ErrorReply::create(fbb, &fb::ErrorReplyArgs { code: error.code as u16, message: Some(message) });
                fb::Response::create(fbb, &fb::ResponseArgs { id, reply_type: fb::Reply::NONE, reply: None, error: Some(error) })
            }
        };
        fbb.finish_size_prefixed(root, None);
        self.fbb.finished_data()
    }
}

// ------------------------------------------------------------------ encoding helpers

fn opt_str<'a>(fbb: &mut FlatBufferBuilder<'a>, value: &Option<String>) -> Option<WIPOffset<&'a str>> {
    value.as_deref().map(|text| fbb.create_string(text))
}

fn key_values<'a>(fbb: &mut FlatBufferBuilder<'a>, items: &KeyValues) -> FbVector<'a, fb::KeyValue<'a>> {
    if items.is_empty() {
        return None;
    }
    let offsets: Vec<_> = items
        .iter()
        .map(|(key, value)| {
            let key = fbb.create_string(key);
            let value = fbb.create_string(value);
            fb::KeyValue::create(fbb, &fb::KeyValueArgs { key: Some(key), value: Some(value) })
        })
        .collect();
    Some(fbb.create_vector(&offsets))
}

fn strings<'a>(fbb: &mut FlatBufferBuilder<'a>, items: &[String]) -> FbVector<'a, &'a str> {
    if items.is_empty() {
        return None;
    }
    let offsets: Vec<_> = items.iter().map(|item| fbb.create_string(item)).collect();
    Some(fbb.create_vector(&offsets))
}

fn attributes<'a>(fbb: &mut FlatBufferBuilder<'a>, items: &[MessageAttribute]) -> FbVector<'a, fb::MessageAttribute<'a>> {
    if items.is_empty() {
        return None;
    }
    let offsets: Vec<_> = items
        .iter()
        .map(|attribute| {
            let name = fbb.create_string(&attribute.name);
            let data_type = fbb.create_string(&attribute.data_type);
            let string_value = opt_str(fbb, &attribute.string_value);
            let binary_value = attribute.binary_value.as_ref().map(|bytes| fbb.create_vector(bytes));
            fb::MessageAttribute::create(
                fbb,
                &fb::MessageAttributeArgs { name: Some(name), data_type: Some(data_type), string_value, binary_value },
            )
        })
        .collect();
    Some(fbb.create_vector(&offsets))
}

fn failures<'a>(fbb: &mut FlatBufferBuilder<'a>, items: &[BatchFailure]) -> FbVector<'a, fb::BatchFailure<'a>> {
    if items.is_empty() {
        return None;
    }
    let offsets: Vec<_> = items
        .iter()
        .map(|failure| {
            let id = fbb.create_string(&failure.id);
            let message = fbb.create_string(&failure.message);
            fb::BatchFailure::create(
                fbb,
                &fb::BatchFailureArgs {
                    id: Some(id),
                    sender_fault: failure.sender_fault,
                    code: failure.code as u16,
                    message: Some(message),
                },
            )
        })
        .collect();
    Some(fbb.create_vector(&offsets))
}

fn encode_op(fbb: &mut FlatBufferBuilder<'static>, op: &Op) -> (fb::Op, WIPOffset<flatbuffers::UnionWIPOffset>) {
    match op {
        Op::Hello { protocol_version, client_name } => {
            let client_name = Some(fbb.create_string(client_name));
            op_table!(fbb, Hello, fb::HelloArgs { protocol_version: *protocol_version, client_name })
        }
        Op::Authenticate { access_key_id, proof } => {
            let access_key_id = Some(fbb.create_string(access_key_id));
            let proof = Some(fbb.create_string(proof));
            op_table!(fbb, Authenticate, fb::AuthenticateArgs { access_key_id, proof })
        }
        op => sqs::encode_op(fbb, op)
            .or_else(|| sns::encode_op(fbb, op))
            .or_else(|| kinesis::encode_op(fbb, op))
            .or_else(|| kms::encode_op(fbb, op))
            .or_else(|| monitor::encode_op(fbb, op))
            .or_else(|| firehose::encode_op(fbb, op))
            .expect("every operation belongs to a service"),
    }
}

type ConsumerRefArgs<'a> = (Option<WIPOffset<&'a str>>, Option<WIPOffset<&'a str>>, Option<WIPOffset<&'a str>>);

fn consumer_ref<'a>(fbb: &mut FlatBufferBuilder<'a>, consumer: &ConsumerRef) -> ConsumerRefArgs<'a> {
    (opt_str(fbb, &consumer.stream), opt_str(fbb, &consumer.name), opt_str(fbb, &consumer.consumer_arn))
}

fn put_entry<'a>(fbb: &mut FlatBufferBuilder<'a>, entry: &PutRecordsEntry) -> WIPOffset<fb::PutRecordsEntry<'a>> {
    let data = Some(fbb.create_vector(&entry.data));
    let partition_key = Some(fbb.create_string(&entry.partition_key));
    let explicit_hash_key = opt_str(fbb, &entry.explicit_hash_key);
    fb::PutRecordsEntry::create(fbb, &fb::PutRecordsEntryArgs { data, partition_key, explicit_hash_key })
}

fn stream_shards<'a>(fbb: &mut FlatBufferBuilder<'a>, shards: &[ShardDescription]) -> FbVector<'a, fb::StreamShard<'a>> {
    if shards.is_empty() {
        return None;
    }
    let offsets: Vec<_> = shards
        .iter()
        .map(|shard| {
            let shard_id = Some(fbb.create_string(&shard.shard_id));
            let parent_shard_id = opt_str(fbb, &shard.parent_shard_id);
            let adjacent_parent_shard_id = opt_str(fbb, &shard.adjacent_parent_shard_id);
            let starting_hash_key = Some(fbb.create_string(&shard.starting_hash_key));
            let ending_hash_key = Some(fbb.create_string(&shard.ending_hash_key));
            let starting_sequence_number = Some(fbb.create_string(&shard.starting_sequence_number));
            let ending_sequence_number = opt_str(fbb, &shard.ending_sequence_number);
            fb::StreamShard::create(
                fbb,
                &fb::StreamShardArgs {
                    shard_id,
                    parent_shard_id,
                    adjacent_parent_shard_id,
                    starting_hash_key,
                    ending_hash_key,
                    starting_sequence_number,
                    ending_sequence_number,
                },
            )
        })
        .collect();
    Some(fbb.create_vector(&offsets))
}

fn stream_description<'a>(fbb: &mut FlatBufferBuilder<'a>, stream: &StreamDescription) -> WIPOffset<fb::StreamDescription<'a>> {
    let name = Some(fbb.create_string(&stream.name));
    let arn = Some(fbb.create_string(&stream.arn));
    let status = Some(fbb.create_string(&stream.status));
    let mode = Some(fbb.create_string(&stream.mode));
    let shards = stream_shards(fbb, &stream.shards);
    let encryption_key = opt_str(fbb, &stream.encryption_key);
    let shard_level_metrics = strings(fbb, &stream.shard_level_metrics);
    fb::StreamDescription::create(
        fbb,
        &fb::StreamDescriptionArgs {
            name,
            arn,
            status,
            mode,
            retention_hours: stream.retention_hours,
            created_ms: stream.created_ms,
            shards,
            has_more_shards: stream.has_more_shards,
            open_shard_count: stream.open_shard_count,
            consumer_count: stream.consumer_count,
            max_record_size_kib: stream.max_record_size_kib,
            encryption_key,
            shard_level_metrics,
        },
    )
}

fn stream_records<'a>(fbb: &mut FlatBufferBuilder<'a>, records: &[StreamRecord]) -> FbVector<'a, fb::StreamRecord<'a>> {
    if records.is_empty() {
        return None;
    }
    let offsets: Vec<_> = records
        .iter()
        .map(|record| {
            let sequence_number = Some(fbb.create_string(&record.sequence_number));
            let data = Some(fbb.create_vector(&record.data));
            let partition_key = Some(fbb.create_string(&record.partition_key));
            let args =
                fb::StreamRecordArgs { sequence_number, arrival_ms: record.arrival_ms, data, partition_key, encrypted: record.encrypted };
            fb::StreamRecord::create(fbb, &args)
        })
        .collect();
    Some(fbb.create_vector(&offsets))
}

fn child_shards<'a>(fbb: &mut FlatBufferBuilder<'a>, children: &[ChildShard]) -> FbVector<'a, fb::ChildShard<'a>> {
    if children.is_empty() {
        return None;
    }
    let offsets: Vec<_> = children
        .iter()
        .map(|child| {
            let shard_id = Some(fbb.create_string(&child.shard_id));
            let parent_shards = strings(fbb, &child.parent_shards);
            let starting_hash_key = Some(fbb.create_string(&child.starting_hash_key));
            let ending_hash_key = Some(fbb.create_string(&child.ending_hash_key));
            fb::ChildShard::create(fbb, &fb::ChildShardArgs { shard_id, parent_shards, starting_hash_key, ending_hash_key })
        })
        .collect();
    Some(fbb.create_vector(&offsets))
}

fn put_result<'a>(fbb: &mut FlatBufferBuilder<'a>, result: &PutRecordResult) -> WIPOffset<fb::PutRecordResult<'a>> {
    let args = match result {
        PutRecordResult::Put { shard_id, sequence_number } => fb::PutRecordResultArgs {
            shard_id: Some(fbb.create_string(shard_id)),
            sequence_number: Some(fbb.create_string(sequence_number)),
            error_code: 0,
            error_message: None,
        },
        PutRecordResult::Failed(error) => fb::PutRecordResultArgs {
            shard_id: None,
            sequence_number: None,
            error_code: error.code as u16,
            error_message: Some(fbb.create_string(&error.message)),
        },
    };
    fb::PutRecordResult::create(fbb, &args)
}

fn consumer_description<'a>(fbb: &mut FlatBufferBuilder<'a>, consumer: &ConsumerDescription) -> WIPOffset<fb::StreamConsumer<'a>> {
    let name = Some(fbb.create_string(&consumer.name));
    let arn = Some(fbb.create_string(&consumer.arn));
    let status = Some(fbb.create_string(&consumer.status));
    let stream_arn = Some(fbb.create_string(&consumer.stream_arn));
    fb::StreamConsumer::create(fbb, &fb::StreamConsumerArgs { name, arn, status, created_ms: consumer.created_ms, stream_arn })
}

fn publish_entry<'a>(fbb: &mut FlatBufferBuilder<'a>, entry: &PublishEntry) -> WIPOffset<fb::PublishEntry<'a>> {
    let id = (!entry.id.is_empty()).then(|| fbb.create_string(&entry.id));
    let message = Some(fbb.create_vector(&entry.message));
    let subject = opt_str(fbb, &entry.subject);
    let message_structure = opt_str(fbb, &entry.message_structure);
    let attributes = attributes(fbb, &entry.attributes);
    let message_group_id = opt_str(fbb, &entry.message_group_id);
    let deduplication_id = opt_str(fbb, &entry.deduplication_id);
    fb::PublishEntry::create(
        fbb,
        &fb::PublishEntryArgs { id, message, subject, message_structure, attributes, message_group_id, deduplication_id },
    )
}

fn publish_result<'a>(fbb: &mut FlatBufferBuilder<'a>, result: &PublishResult) -> WIPOffset<fb::PublishResult<'a>> {
    let id = (!result.id.is_empty()).then(|| fbb.create_string(&result.id));
    let message_id = Some(fbb.create_string(&result.message_id));
    let sequence_number = opt_str(fbb, &result.sequence_number);
    fb::PublishResult::create(fbb, &fb::PublishResultArgs { id, message_id, sequence_number })
}

fn send_success<'a>(fbb: &mut FlatBufferBuilder<'a>, result: &SendResult) -> WIPOffset<fb::SendMessageBatchSuccess<'a>> {
    let id = Some(fbb.create_string(&result.id));
    let message_id = Some(fbb.create_string(&result.message_id));
    let md5_of_body = Some(fbb.create_string(&result.md5_of_body));
    let md5_of_attributes = opt_str(fbb, &result.md5_of_attributes);
    let md5_of_system_attributes = opt_str(fbb, &result.md5_of_system_attributes);
    let sequence_number = opt_str(fbb, &result.sequence_number);
    fb::SendMessageBatchSuccess::create(
        fbb,
        &fb::SendMessageBatchSuccessArgs { id, message_id, md5_of_body, md5_of_attributes, md5_of_system_attributes, sequence_number },
    )
}

// ------------------------------------------------------------------ decoding helpers

/// The length of a decoded list, for `Reader::bounded`.
trait ListLen {
    fn list_len(&self) -> usize;
}

impl<T> ListLen for Vector<'_, T> {
    fn list_len(&self) -> usize {
        self.len()
    }
}

/// Reads verified tables into owned values; binary data is sliced out of `frame`.
struct Reader<'f> {
    frame: &'f Bytes,
    list_max: usize,
    /// The longest list found over `list_max` (decoded as empty; the caller then refuses).
    too_long: std::cell::Cell<usize>,
}

impl<'f> Reader<'f> {
    fn new(frame: &'f Bytes, list_max: usize) -> Self {
        Reader { frame, list_max, too_long: std::cell::Cell::new(0) }
    }

    /// The list itself when its length is within bounds; `None` (and remembered) when not.
    fn bounded<V: ListLen>(&self, vector: Option<V>) -> Option<V> {
        let vector = vector?;
        if vector.list_len() > self.list_max {
            self.too_long.set(self.too_long.get().max(vector.list_len()));
            return None;
        }
        Some(vector)
    }

    /// Refuses what was decoded if a list was over bounds.
    fn check(&self, id: u64) -> Result<(), DecodeError> {
        match self.too_long.get() {
            0 => Ok(()),
            len => Err(DecodeError::ListTooLong { id, len, max: self.list_max }),
        }
    }

    fn bytes(&self, vector: Option<Vector<'_, u8>>) -> Bytes {
        match vector {
            Some(vector) if !vector.is_empty() => self.frame.slice_ref(vector.bytes()),
            _ => Bytes::new(),
        }
    }

    fn key_values(&self, vector: Option<Vector<'_, ForwardsUOffset<fb::KeyValue<'_>>>>) -> KeyValues {
        self.bounded(vector).map(|items| items.iter().map(|kv| (kv.key().to_owned(), kv.value().to_owned())).collect()).unwrap_or_default()
    }

    fn strings(&self, vector: Option<Vector<'_, ForwardsUOffset<&str>>>) -> Vec<String> {
        self.bounded(vector).map(|items| items.iter().map(str::to_owned).collect()).unwrap_or_default()
    }

    fn attributes(&self, vector: Option<Vector<'_, ForwardsUOffset<fb::MessageAttribute<'_>>>>) -> Vec<MessageAttribute> {
        self.bounded(vector)
            .map(|items| {
                items
                    .iter()
                    .map(|attribute| MessageAttribute {
                        name: attribute.name().to_owned(),
                        data_type: attribute.data_type().to_owned(),
                        string_value: attribute.string_value().map(str::to_owned),
                        binary_value: attribute.binary_value().map(|bytes| self.bytes(Some(bytes))),
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    fn publish_entry(&self, entry: fb::PublishEntry<'_>) -> PublishEntry {
        PublishEntry {
            id: entry.id().unwrap_or_default().to_owned(),
            message: self.bytes(entry.message()),
            subject: owned(entry.subject()),
            message_structure: owned(entry.message_structure()),
            attributes: self.attributes(entry.attributes()),
            message_group_id: owned(entry.message_group_id()),
            deduplication_id: owned(entry.deduplication_id()),
        }
    }

    fn put_entry(&self, entry: fb::PutRecordsEntry<'_>) -> PutRecordsEntry {
        PutRecordsEntry {
            data: self.bytes(entry.data()),
            partition_key: entry.partition_key().to_owned(),
            explicit_hash_key: owned(entry.explicit_hash_key()),
        }
    }

    fn shards(&self, vector: Option<Vector<'_, ForwardsUOffset<fb::StreamShard<'_>>>>) -> Vec<ShardDescription> {
        self.bounded(vector)
            .map(|items| {
                items
                    .iter()
                    .map(|shard| ShardDescription {
                        shard_id: shard.shard_id().to_owned(),
                        parent_shard_id: owned(shard.parent_shard_id()),
                        adjacent_parent_shard_id: owned(shard.adjacent_parent_shard_id()),
                        starting_hash_key: shard.starting_hash_key().to_owned(),
                        ending_hash_key: shard.ending_hash_key().to_owned(),
                        starting_sequence_number: shard.starting_sequence_number().to_owned(),
                        ending_sequence_number: owned(shard.ending_sequence_number()),
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    fn stream_description(&self, stream: fb::StreamDescription<'_>) -> StreamDescription {
        StreamDescription {
            name: stream.name().to_owned(),
            arn: stream.arn().to_owned(),
            status: stream.status().unwrap_or_default().to_owned(),
            mode: stream.mode().unwrap_or_default().to_owned(),
            retention_hours: stream.retention_hours(),
            created_ms: stream.created_ms(),
            shards: self.shards(stream.shards()),
            has_more_shards: stream.has_more_shards(),
            open_shard_count: stream.open_shard_count(),
            consumer_count: stream.consumer_count(),
            max_record_size_kib: stream.max_record_size_kib(),
            encryption_key: owned(stream.encryption_key()),
            shard_level_metrics: self.strings(stream.shard_level_metrics()),
        }
    }

    fn stream_records(&self, vector: Option<Vector<'_, ForwardsUOffset<fb::StreamRecord<'_>>>>) -> Vec<StreamRecord> {
        self.bounded(vector)
            .map(|items| {
                items
                    .iter()
                    .map(|record| StreamRecord {
                        sequence_number: record.sequence_number().to_owned(),
                        arrival_ms: record.arrival_ms(),
                        data: self.bytes(record.data()),
                        partition_key: record.partition_key().to_owned(),
                        encrypted: record.encrypted(),
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    fn child_shards(&self, vector: Option<Vector<'_, ForwardsUOffset<fb::ChildShard<'_>>>>) -> Vec<ChildShard> {
        self.bounded(vector)
            .map(|items| {
                items
                    .iter()
                    .map(|child| ChildShard {
                        shard_id: child.shard_id().to_owned(),
                        parent_shards: self.strings(child.parent_shards()),
                        starting_hash_key: child.starting_hash_key().to_owned(),
                        ending_hash_key: child.ending_hash_key().to_owned(),
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    fn failures(&self, vector: Option<Vector<'_, ForwardsUOffset<fb::BatchFailure<'_>>>>) -> Vec<BatchFailure> {
        self.bounded(vector)
            .map(|items| {
                items
                    .iter()
                    .map(|failure| BatchFailure {
                        id: failure.id().to_owned(),
                        sender_fault: failure.sender_fault(),
                        code: ErrorCode::from_u16(failure.code()).unwrap_or(ErrorCode::InternalFailure),
                        message: failure.message().unwrap_or_default().to_owned(),
                    })
                    .collect()
            })
            .unwrap_or_default()
    }
}

fn read_publish_result(result: fb::PublishResult<'_>) -> PublishResult {
    PublishResult {
        id: result.id().unwrap_or_default().to_owned(),
        message_id: result.message_id().to_owned(),
        sequence_number: owned(result.sequence_number()),
    }
}

fn read_put_result(result: fb::PutRecordResult<'_>) -> PutRecordResult {
    match (result.error_code(), result.shard_id(), result.sequence_number()) {
        (0, Some(shard_id), Some(sequence_number)) => {
            PutRecordResult::Put { shard_id: shard_id.to_owned(), sequence_number: sequence_number.to_owned() }
        }
        (code, _, _) => PutRecordResult::Failed(OpError::new(
            ErrorCode::from_u16(code).unwrap_or(ErrorCode::InternalFailure),
            result.error_message().unwrap_or_default(),
        )),
    }
}

fn read_consumer(consumer: fb::StreamConsumer<'_>) -> ConsumerDescription {
    ConsumerDescription {
        name: consumer.name().to_owned(),
        arn: consumer.arn().to_owned(),
        status: consumer.status().unwrap_or_default().to_owned(),
        created_ms: consumer.created_ms(),
        stream_arn: consumer.stream_arn().unwrap_or_default().to_owned(),
    }
}

fn owned(value: Option<&str>) -> Option<String> {
    value.map(str::to_owned)
}

/// Decodes a whole request frame (length prefix included).
pub fn decode_request(frame: &Bytes) -> Result<Request, DecodeError> {
    let request = flatbuffers::size_prefixed_root_with_opts::<fb::Request>(&verifier_options(frame.len()), frame)
        .map_err(|source| DecodeError::Invalid { what: "Request", source })?;
    let id = request.id();
    let read = Reader::new(frame, REQUEST_LIST_ENTRIES_MAX);
    let unknown = || DecodeError::UnknownOp { id, op_type: request.op_type().0 };
    let op = match request.op_type() {
        fb::Op::Hello => {
            let hello = request.op_as_hello().ok_or_else(unknown)?;
            Op::Hello { protocol_version: hello.protocol_version(), client_name: hello.client_name().unwrap_or_default().to_owned() }
        }
        fb::Op::Authenticate => {
            let auth = request.op_as_authenticate().ok_or_else(unknown)?;
            Op::Authenticate { access_key_id: auth.access_key_id().to_owned(), proof: auth.proof().to_owned() }
        }
        _ => match sqs::decode_op(&request, &read, &unknown)? {
            Some(op) => op,
            None => match sns::decode_op(&request, &read, &unknown)? {
                Some(op) => op,
                None => match kinesis::decode_op(&request, &read, &unknown)? {
                    Some(op) => op,
                    None => match kms::decode_op(&request, &read, &unknown)? {
                        Some(op) => op,
                        None => match monitor::decode_op(&request, &read, &unknown)? {
                            Some(op) => op,
                            None => firehose::decode_op(&request, &read, &unknown)?.ok_or_else(unknown)?,
                        },
                    },
                },
            },
        },
    };
    read.check(id)?;
    Ok(Request { id, op })
}
