//! Firehose delivery streams as metadata: each one's source, destination and settings, checked
//! from Firehose's JSON (the API's, and the metadata file's, which is the same shape), held in
//! every snapshot (every core takes puts), and rendered back as `DescribeDeliveryStream` does.
//!
//! The records themselves are the engine's (`crate::firehose`): each core keeps the records it
//! took in a log of its own per delivery stream, until the destination has them.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::{json, Map, Value};
use sluice_protocol::{ErrorCode, KeyValues, OpError};

use super::Naming;

/// Every delivery stream, by name.
pub type DeliveryStreams = BTreeMap<String, Arc<DeliveryStreamMeta>>;

/// Most delivery streams one server keeps (Firehose's default quota per account and region).
pub const DELIVERY_STREAMS_MAX: usize = 5_000;
/// Most tags on a delivery stream.
pub const TAGS_MAX: usize = 50;
/// The id of a delivery stream's one destination.
pub const DESTINATION_ID: &str = "destinationId-000000000001";

fn invalid(message: impl Into<String>) -> OpError {
    OpError::new(ErrorCode::InvalidArgument, message)
}

pub fn not_found(name: &str, naming: &Naming) -> OpError {
    OpError::new(ErrorCode::ResourceNotFound, format!("Firehose {name} under account {} not found.", naming.account_id))
}

/// A delivery stream's server-side encryption (`DeliveryStreamEncryptionConfigurationInput`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Encryption {
    /// `CUSTOMER_MANAGED_CMK` (with `key_arn`), else `AWS_OWNED_CMK`.
    pub key_arn: Option<String>,
}

impl Encryption {
    /// Reads `KeyType` and `KeyARN`, within Firehose's rules.
    pub fn parse(key_type: Option<&str>, key_arn: Option<&str>) -> Result<Encryption, OpError> {
        match (key_type.unwrap_or("AWS_OWNED_CMK"), key_arn) {
            ("AWS_OWNED_CMK", None) => Ok(Encryption { key_arn: None }),
            ("AWS_OWNED_CMK", Some(_)) => Err(invalid("KeyARN is given only with KeyType CUSTOMER_MANAGED_CMK.")),
            ("CUSTOMER_MANAGED_CMK", Some(arn)) if (1..=512).contains(&arn.len()) => Ok(Encryption { key_arn: Some(arn.to_owned()) }),
            ("CUSTOMER_MANAGED_CMK", _) => Err(invalid("KeyType CUSTOMER_MANAGED_CMK needs KeyARN, the key's ARN.")),
            (other, _) => Err(invalid(format!("KeyType {other:?} is not one of AWS_OWNED_CMK, CUSTOMER_MANAGED_CMK."))),
        }
    }

    pub fn key_type(&self) -> &'static str {
        if self.key_arn.is_some() {
            "CUSTOMER_MANAGED_CMK"
        } else {
            "AWS_OWNED_CMK"
        }
    }
}

/// A Kinesis stream of this server that a delivery stream reads (`KinesisStreamSourceConfiguration`):
/// from the records that arrive after its creation on, each shard checkpointed as a consumer
/// group does, following splits and merges.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KinesisSource {
    pub stream_arn: String,
    /// The stream's name (the ARN's last part).
    pub stream: String,
    pub role_arn: String,
}

impl KinesisSource {
    /// The name of the stream consumer whose group reads the stream for delivery stream `name`.
    pub fn consumer_name(name: &str) -> String {
        format!("firehose-{name}")
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceKind {
    DirectPut,
    KinesisStreamAsSource,
}

impl SourceKind {
    pub fn name(self) -> &'static str {
        match self {
            SourceKind::DirectPut => "DirectPut",
            SourceKind::KinesisStreamAsSource => "KinesisStreamAsSource",
        }
    }
}

/// How a batch's bytes are compressed before they are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    Uncompressed,
    Gzip,
    Snappy,
    HadoopSnappy,
    Zip,
}

impl Compression {
    pub fn name(self) -> &'static str {
        match self {
            Compression::Uncompressed => "UNCOMPRESSED",
            Compression::Gzip => "GZIP",
            Compression::Snappy => "Snappy",
            Compression::HadoopSnappy => "HADOOP_SNAPPY",
            Compression::Zip => "ZIP",
        }
    }

    fn parse(text: &str) -> Result<Compression, OpError> {
        Ok(match text {
            "UNCOMPRESSED" => Compression::Uncompressed,
            "GZIP" => Compression::Gzip,
            "Snappy" => Compression::Snappy,
            "HADOOP_SNAPPY" => Compression::HadoopSnappy,
            "ZIP" => Compression::Zip,
            other => {
                return Err(invalid(format!("CompressionFormat {other:?} is not one of UNCOMPRESSED, GZIP, ZIP, Snappy, HADOOP_SNAPPY.")))
            }
        })
    }

    /// The object name's extension Firehose gives this compression.
    pub fn extension(self) -> &'static str {
        match self {
            Compression::Uncompressed => "",
            Compression::Gzip => ".gz",
            Compression::Snappy | Compression::HadoopSnappy => ".snappy",
            Compression::Zip => ".zip",
        }
    }
}

/// When a core's buffered records go to the destination: at `size_bytes`, or once the oldest
/// has waited `interval_ms`, whichever comes first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Buffering {
    pub size_mib: u32,
    pub interval_s: u32,
}

impl Buffering {
    pub fn size_bytes(self) -> u64 {
        u64::from(self.size_mib) << 20
    }

    pub fn interval_ms(self) -> u64 {
        u64::from(self.interval_s) * 1000
    }
}

/// A record-level processor (`ProcessingConfiguration.Processors`). Whatever their order in
/// the configuration, they apply as Firehose applies them: the function first, then the
/// partition keys' query, then the delimiter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Processor {
    /// Appends a delimiter (a newline unless given) to every record.
    AppendDelimiterToRecord { delimiter: Vec<u8> },
    /// A transformation function, called as Firehose calls Lambda.
    Lambda(LambdaProcessor),
    /// Dynamic partitioning's partition keys, from each (JSON) record by a JQ-like query.
    MetadataExtraction { query: super::jq::Query, parameters: Vec<(String, String)> },
}

/// A `Lambda` processor: the function, called with batches of records in Firehose's
/// transformation event, each answered `Ok` (with its new data), `Dropped` or
/// `ProcessingFailed`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LambdaProcessor {
    /// `LambdaArn`: an `http(s)://` URL the event is POSTed to, or a Lambda function's ARN,
    /// invoked through the Lambda API at `--firehose-lambda-endpoint`.
    pub function: String,
    /// Tries after the first of a failed call (`NumberOfRetries`, default 3).
    pub retries: u32,
    /// Most record bytes in one call (`BufferSizeInMBs`, default 1 MiB).
    pub call_bytes: u64,
    /// The parameters as given, described back.
    pub parameters: Vec<(String, String)>,
}

impl LambdaProcessor {
    /// The function's name when `function` is a Lambda ARN (`arn:aws:lambda:…:function:NAME[:QUALIFIER]`).
    pub fn arn_function(&self) -> Option<(&str, Option<&str>)> {
        let rest = self.function.strip_prefix("arn:")?;
        let (_, function) = rest.split_once(":function:")?;
        Some(match function.split_once(':') {
            Some((name, qualifier)) => (name, Some(qualifier)),
            None => (function, None),
        })
    }
}

/// An Extended S3 destination: an S3-compatible object store's bucket (or, on a server without
/// an S3 endpoint, a directory standing for it: `--firehose-local-dir`).
#[derive(Debug, Clone, PartialEq)]
pub struct S3Destination {
    pub bucket_arn: String,
    pub bucket: String,
    pub role_arn: String,
    pub prefix: String,
    pub error_output_prefix: String,
    pub buffering: Buffering,
    pub compression: Compression,
    pub file_extension: String,
    pub processing_enabled: bool,
    pub processors: Vec<Processor>,
    /// Given as `ExtendedS3DestinationConfiguration` (not the older `S3DestinationConfiguration`).
    pub extended: bool,
    /// Dynamic partitioning is on (`DynamicPartitioningConfiguration`), with this retry
    /// duration in seconds: objects are keyed by each record's partition keys.
    pub dynamic_partitioning: Option<u32>,
    /// `S3BackupMode` `Enabled`: the source records (before any transformation) also go to
    /// this bucket (`S3BackupConfiguration`).
    pub backup: Option<Box<S3Destination>>,
    /// JSON records written as Parquet (`DataFormatConversionConfiguration`).
    pub conversion: Option<Conversion>,
    /// What the configuration held that changes nothing here (CloudWatch logging options,
    /// encryption settings), kept to be described back.
    pub kept: Map<String, Value>,
}

/// Parquet's compression of the pages inside a converted object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParquetCompression {
    Snappy,
    Gzip,
    Uncompressed,
}

/// Record format conversion: JSON records (OpenX JSON) to Parquet, with the columns of table
/// `database.table` (from `--firehose-glue-tables`, as Firehose reads them from AWS Glue).
#[derive(Debug, Clone, PartialEq)]
pub struct Conversion {
    pub database: String,
    pub table: String,
    pub compression: ParquetCompression,
    pub case_insensitive: bool,
    pub dots_to_underscores: bool,
    /// `ColumnToJsonKeyMappings`: column → JSON key.
    pub key_mappings: BTreeMap<String, String>,
    /// The configuration as given, described back.
    pub configuration: Value,
}

/// A record's partition keys, by name: those its `MetadataExtraction` query gave and those the
/// transformation function answered in `metadata.partitionKeys`.
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PartitionKeys {
    pub query: BTreeMap<String, String>,
    pub lambda: BTreeMap<String, String>,
}

/// An HTTP endpoint destination, delivered to as Firehose's HTTP endpoint delivery
/// specification says; what it does not take within the retry duration goes to the backup
/// bucket (`s3`), as does everything with `S3BackupMode` `AllData`.
#[derive(Debug, Clone, PartialEq)]
pub struct HttpDestination {
    pub url: String,
    pub name: String,
    /// Sent as `X-Amz-Firehose-Access-Key`; never described back.
    pub access_key: Option<String>,
    pub buffering: Buffering,
    pub gzip: bool,
    pub common_attributes: Vec<(String, String)>,
    pub retry_s: u32,
    pub backup_all: bool,
    pub role_arn: String,
    pub processing_enabled: bool,
    pub processors: Vec<Processor>,
    /// The backup bucket (`S3Configuration`).
    pub s3: S3Destination,
    pub kept: Map<String, Value>,
}

/// Which search service a destination was configured as (the API has one configuration for
/// each; both take the same `_bulk` requests).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SearchService {
    OpenSearch,
    Elasticsearch,
}

impl SearchService {
    /// The configuration's key (`…DestinationConfiguration`, `…DestinationUpdate`,
    /// `…DestinationDescription` after it).
    pub fn key(self) -> &'static str {
        match self {
            SearchService::OpenSearch => "AmazonopensearchserviceDestination",
            SearchService::Elasticsearch => "ElasticsearchDestination",
        }
    }

    /// `!{firehose:error-output-type}` of documents the cluster refused.
    pub fn error_type(self) -> &'static str {
        match self {
            SearchService::OpenSearch => "AmazonOpenSearchService-failed",
            SearchService::Elasticsearch => "elasticsearch-failed",
        }
    }
}

/// How often a search destination starts a new index (a suffix of the arrival time).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rotation {
    NoRotation,
    OneHour,
    OneDay,
    OneWeek,
    OneMonth,
}

impl Rotation {
    pub fn name(self) -> &'static str {
        match self {
            Rotation::NoRotation => "NoRotation",
            Rotation::OneHour => "OneHour",
            Rotation::OneDay => "OneDay",
            Rotation::OneWeek => "OneWeek",
            Rotation::OneMonth => "OneMonth",
        }
    }

    fn parse(text: &str) -> Option<Rotation> {
        [Rotation::NoRotation, Rotation::OneHour, Rotation::OneDay, Rotation::OneWeek, Rotation::OneMonth]
            .into_iter()
            .find(|rotation| rotation.name() == text)
    }
}

/// An OpenSearch or Elasticsearch destination: documents indexed through the cluster's `_bulk`
/// API; those it refuses for the retry duration go to the backup bucket (`s3`), as does
/// everything with `S3BackupMode` `AllDocuments`.
#[derive(Debug, Clone, PartialEq)]
pub struct SearchDestination {
    pub service: SearchService,
    /// The cluster's URL (`ClusterEndpoint`).
    pub endpoint: String,
    pub index: String,
    /// `TypeName` (Elasticsearch 6 and before); empty: none.
    pub type_name: String,
    pub rotation: Rotation,
    pub buffering: Buffering,
    pub retry_s: u32,
    pub backup_all: bool,
    /// `DocumentIdOptions.DefaultDocumentIdFormat` `FIREHOSE_DEFAULT`: each document's id is its
    /// record id (a retry replaces, never duplicates); `NO_DOCUMENT_ID`: the cluster picks.
    pub document_ids: bool,
    pub role_arn: String,
    pub processing_enabled: bool,
    pub processors: Vec<Processor>,
    pub s3: S3Destination,
    pub kept: Map<String, Value>,
}

/// How a table destination's records become COPY rows (from the `CopyOptions` Firehose's
/// Redshift destination gives its COPY command).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CopyFormat {
    /// Delimited text (Redshift's default: `|`).
    Text { delimiter: u8 },
    /// CSV (`CSV`, `DELIMITER`).
    Csv { delimiter: u8 },
    /// `JSON 'auto'`: each record a JSON object, its keys matched to the columns.
    JsonAuto,
}

/// The Redshift destination as this server delivers it: each batch written to the
/// intermediate bucket (`s3`), as Firehose does, then loaded with COPY into a PostgreSQL table
/// (a Redshift cluster speaks the same protocol). A load that fails for the retry duration
/// is skipped: a COPY manifest naming its object goes under `errors/manifests/`.
#[derive(Debug, Clone, PartialEq)]
pub struct TableDestination {
    /// `ClusterJDBCURL` as given.
    pub jdbc_url: String,
    pub host: String,
    pub port: u16,
    pub database: String,
    pub username: String,
    /// Never described back.
    pub password: Option<String>,
    pub table: String,
    pub columns: Vec<String>,
    /// `CopyOptions` as given.
    pub copy_options: String,
    pub format: CopyFormat,
    pub retry_s: u32,
    pub role_arn: String,
    pub processing_enabled: bool,
    pub processors: Vec<Processor>,
    /// The intermediate bucket (`S3Configuration`; its buffering hints are the destination's).
    pub s3: S3Destination,
    /// `S3BackupMode` `Enabled`: the source records also go to this bucket.
    pub backup: Option<Box<S3Destination>>,
    pub kept: Map<String, Value>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Destination {
    S3(S3Destination),
    Http(HttpDestination),
    Search(SearchDestination),
    Table(TableDestination),
}

impl Destination {
    pub fn buffering(&self) -> Buffering {
        match self {
            Destination::S3(s3) => s3.buffering,
            Destination::Http(http) => http.buffering,
            Destination::Search(search) => search.buffering,
            Destination::Table(table) => table.s3.buffering,
        }
    }

    /// The bucket objects go to: the destination's, or the backup bucket.
    pub fn bucket(&self) -> &S3Destination {
        match self {
            Destination::S3(s3) => s3,
            Destination::Http(http) => &http.s3,
            Destination::Search(search) => &search.s3,
            Destination::Table(table) => &table.s3,
        }
    }

    /// How long failures are tried again before the records go to the backup bucket (`None`:
    /// for as long as it takes — the destination is the bucket itself — or the delivery
    /// retries them itself: a search cluster refuses documents one by one).
    pub fn retry_ms(&self) -> Option<u64> {
        match self {
            Destination::S3(_) | Destination::Search(_) | Destination::Table(_) => None,
            Destination::Http(http) => Some(u64::from(http.retry_s) * 1000),
        }
    }

    /// The record processors in force (empty when processing is off).
    pub fn processors(&self) -> &[Processor] {
        let (enabled, processors) = match self {
            Destination::S3(s3) => (s3.processing_enabled, &s3.processors),
            Destination::Http(http) => (http.processing_enabled, &http.processors),
            Destination::Search(search) => (search.processing_enabled, &search.processors),
            Destination::Table(table) => (table.processing_enabled, &table.processors),
        };
        if enabled {
            processors
        } else {
            &[]
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct DeliveryStreamMeta {
    pub id: u64,
    pub name: String,
    pub arn: String,
    pub kind: SourceKind,
    /// `KinesisStreamAsSource`: the stream read.
    pub source: Option<KinesisSource>,
    /// Server-side encryption: the buffers' records are sealed at rest under this key.
    pub encryption: Option<Encryption>,
    pub created_ms: u64,
    pub updated_ms: u64,
    /// Firehose's `VersionId`: 1 at creation, one more at each UpdateDestination.
    pub version: u64,
    pub destination: Destination,
    pub tags: BTreeMap<String, String>,
}

impl Naming {
    pub fn firehose_arn(&self, name: &str) -> String {
        format!("arn:aws:firehose:{}:{}:deliverystream/{}", self.region, self.account_id, name)
    }
}

/// Firehose's name rule: 1–64 of letters, digits, `_`, `.` and `-`.
pub fn valid_name(name: &str) -> bool {
    (1..=64).contains(&name.len()) && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.' || b == b'-')
}

/// The name in `name_or_arn` (an ARN's last part).
pub fn name_of(name_or_arn: &str) -> &str {
    name_or_arn.strip_prefix("arn:").and_then(|arn| arn.rsplit_once(":deliverystream/")).map_or(name_or_arn, |(_, name)| name)
}

// ---------------------------------------------------------------- object key prefixes

/// A UTC time's parts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Utc {
    pub year: u32,
    pub month: u32,
    pub day: u32,
    pub hour: u32,
    pub minute: u32,
    pub second: u32,
}

impl Utc {
    pub fn of_ms(ms: u64) -> Utc {
        let time = std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms);
        // "YYYY-MM-DDTHH:MM:SSZ"
        let text = humantime::format_rfc3339_seconds(time).to_string();
        let part = |range: std::ops::Range<usize>| text.get(range).and_then(|digits| digits.parse().ok()).unwrap_or(0);
        Utc { year: part(0..4), month: part(5..7), day: part(8..10), hour: part(11..13), minute: part(14..16), second: part(17..19) }
    }
}

/// A part of an object key prefix: text, or an expression evaluated for each object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PrefixPart {
    Text(String),
    /// `!{timestamp:…}`: the pattern's parts (Java `DateTimeFormatter` letters, as Firehose).
    Timestamp(Vec<TimePart>),
    /// `!{firehose:random-string}`.
    RandomString,
    /// `!{firehose:error-output-type}` (error prefixes only).
    ErrorOutputType,
    /// `!{partitionKeyFromQuery:name}` (`lambda` false) or `!{partitionKeyFromLambda:name}`.
    PartitionKey {
        lambda: bool,
        name: String,
    },
}

/// A part of a timestamp pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TimePart {
    Text(String),
    Year,
    ShortYear,
    Month,
    Day,
    Hour,
    Minute,
    Second,
}

fn time_pattern(pattern: &str) -> Result<Vec<TimePart>, String> {
    let mut parts = Vec::new();
    let chars: Vec<char> = pattern.chars().collect();
    let mut at = 0;
    while at < chars.len() {
        let c = chars[at];
        let run = chars[at..].iter().take_while(|d| **d == c).count();
        if c == '\'' {
            let end = chars[at + 1..].iter().position(|d| *d == '\'').ok_or("an unterminated quote in a timestamp pattern")?;
            parts.push(TimePart::Text(chars[at + 1..at + 1 + end].iter().collect()));
            at += end + 2;
            continue;
        }
        let part = match (c, run) {
            ('y', 4) | ('u', 4) => TimePart::Year,
            ('y', 2) | ('u', 2) => TimePart::ShortYear,
            ('M', 2) => TimePart::Month,
            ('d', 2) => TimePart::Day,
            ('H', 2) => TimePart::Hour,
            ('m', 2) => TimePart::Minute,
            ('s', 2) => TimePart::Second,
            (c, _) if c.is_ascii_alphabetic() => {
                return Err(format!(
                    "the timestamp pattern {pattern:?} uses {:?}; this server knows yyyy, yy, MM, dd, HH, mm, ss and quoted text",
                    chars[at..at + run].iter().collect::<String>()
                ))
            }
            (c, run) => TimePart::Text(std::iter::repeat_n(c, run).collect()),
        };
        parts.push(part);
        at += run;
    }
    Ok(parts)
}

/// Reads a prefix's `!{namespace:value}` expressions, refusing what Firehose (or this server)
/// does not evaluate.
pub fn parse_prefix(prefix: &str) -> Result<Vec<PrefixPart>, String> {
    let mut parts = Vec::new();
    let mut rest = prefix;
    while let Some(at) = rest.find("!{") {
        if at > 0 {
            parts.push(PrefixPart::Text(rest[..at].to_owned()));
        }
        let end = rest[at..].find('}').ok_or("an expression !{ without its closing }")?;
        let expression = &rest[at + 2..at + end];
        let (namespace, value) = expression.split_once(':').ok_or_else(|| format!("the expression !{{{expression}}} has no namespace"))?;
        parts.push(match (namespace.trim(), value.trim()) {
            ("timestamp", pattern) => PrefixPart::Timestamp(time_pattern(pattern)?),
            ("firehose", "random-string") => PrefixPart::RandomString,
            ("firehose", "error-output-type") => PrefixPart::ErrorOutputType,
            (namespace @ ("partitionKeyFromQuery" | "partitionKeyFromLambda"), name) if !name.is_empty() => {
                PrefixPart::PartitionKey { lambda: namespace == "partitionKeyFromLambda", name: name.to_owned() }
            }
            _ => return Err(format!("!{{{expression}}} is not an expression Firehose evaluates")),
        });
        rest = &rest[at + end + 1..];
    }
    if !rest.is_empty() {
        parts.push(PrefixPart::Text(rest.to_owned()));
    }
    Ok(parts)
}

// ---------------------------------------------------------------- reading configurations

/// A JSON object's fields, read with typed errors naming where they are.
struct Fields<'a> {
    map: &'a Map<String, Value>,
    at: String,
}

impl<'a> Fields<'a> {
    fn of(value: &'a Value, at: &str) -> Result<Fields<'a>, OpError> {
        value.as_object().map(|map| Fields { map, at: at.to_owned() }).ok_or_else(|| invalid(format!("{at} must be an object.")))
    }

    fn string(&self, key: &str) -> Result<Option<&'a str>, OpError> {
        match self.map.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(text)) => Ok(Some(text)),
            Some(_) => Err(invalid(format!("{}.{key} must be a string.", self.at))),
        }
    }

    fn required(&self, key: &str) -> Result<&'a str, OpError> {
        self.string(key)?.ok_or_else(|| invalid(format!("{}.{key} is required.", self.at)))
    }

    fn int(&self, key: &str, min: i64, max: i64) -> Result<Option<i64>, OpError> {
        match self.map.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(value) => match value.as_i64() {
                Some(number) if (min..=max).contains(&number) => Ok(Some(number)),
                _ => Err(invalid(format!("{}.{key} must be a whole number from {min} to {max}.", self.at))),
            },
        }
    }

    fn object(&self, key: &str) -> Result<Option<Fields<'a>>, OpError> {
        match self.map.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(value) => Fields::of(value, &format!("{}.{key}", self.at)).map(Some),
        }
    }
}

/// The bucket an S3 bucket ARN names.
fn bucket_of(arn: &str) -> Result<String, OpError> {
    let bucket = arn
        .strip_prefix("arn:aws:s3:::")
        .ok_or_else(|| invalid(format!("BucketARN {arn:?} is not an S3 bucket ARN (arn:aws:s3:::bucket-name).")))?;
    let valid = (3..=63).contains(&bucket.len())
        && bucket.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
        && !bucket.starts_with(['-', '.'])
        && !bucket.ends_with(['-', '.']);
    if !valid {
        return Err(invalid(format!(
            "BucketARN {arn:?}: a bucket name is 3 to 63 lowercase letters, digits, dots and hyphens, starting and ending with a letter or digit."
        )));
    }
    Ok(bucket.to_owned())
}

fn processors(config: Option<Fields<'_>>) -> Result<(bool, Vec<Processor>), OpError> {
    let Some(config) = config else { return Ok((false, Vec::new())) };
    let enabled = match config.map.get("Enabled") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(enabled)) => *enabled,
        Some(_) => return Err(invalid("ProcessingConfiguration.Enabled must be true or false.")),
    };
    let mut out = Vec::new();
    for (index, item) in config.map.get("Processors").and_then(Value::as_array).into_iter().flatten().enumerate() {
        let item = Fields::of(item, &format!("ProcessingConfiguration.Processors[{index}]"))?;
        let kind = item.required("Type")?;
        let mut parameters = BTreeMap::new();
        for parameter in item.map.get("Parameters").and_then(Value::as_array).into_iter().flatten() {
            let parameter = Fields::of(parameter, &format!("{}.Parameters", item.at))?;
            parameters.insert(parameter.required("ParameterName")?, parameter.required("ParameterValue")?);
        }
        match kind {
            "AppendDelimiterToRecord" => {
                let delimiter = match parameters.get("Delimiter") {
                    Some(text) => unescape(text),
                    None => b"\n".to_vec(),
                };
                if let Some(unknown) = parameters.keys().find(|name| **name != "Delimiter") {
                    return Err(invalid(format!("AppendDelimiterToRecord has no parameter {unknown:?} (only Delimiter).")));
                }
                out.push(Processor::AppendDelimiterToRecord { delimiter });
            }
            "Lambda" => out.push(Processor::Lambda(lambda_processor(&parameters, &item.at)?)),
            "MetadataExtraction" => {
                if let Some(unknown) = parameters.keys().find(|name| !["MetadataExtractionQuery", "JsonParsingEngine"].contains(*name)) {
                    return Err(invalid(format!(
                        "MetadataExtraction has no parameter {unknown:?} (MetadataExtractionQuery and JsonParsingEngine)."
                    )));
                }
                match parameters.get("JsonParsingEngine") {
                    Some(&"JQ-1.6") => {}
                    Some(other) => return Err(invalid(format!("MetadataExtraction's JsonParsingEngine {other:?} is not JQ-1.6."))),
                    None => return Err(invalid("MetadataExtraction needs the parameter JsonParsingEngine (JQ-1.6).")),
                }
                let text = parameters
                    .get("MetadataExtractionQuery")
                    .ok_or_else(|| invalid("MetadataExtraction needs the parameter MetadataExtractionQuery."))?;
                let query = super::jq::parse(text).map_err(|why| invalid(format!("MetadataExtractionQuery {text:?}: {why}.")))?;
                out.push(Processor::MetadataExtraction { query, parameters: given(&parameters) });
            }
            "RecordDeAggregation" | "Decompression" | "CloudWatchLogProcessing" => {
                return Err(invalid(format!(
                    "Processor type {kind} is not supported by this server yet; Lambda, MetadataExtraction and AppendDelimiterToRecord are."
                )))
            }
            other => {
                return Err(invalid(format!(
                    "Processor type {other:?} is not one of RecordDeAggregation, Decompression, CloudWatchLogProcessing, Lambda, MetadataExtraction, AppendDelimiterToRecord."
                )))
            }
        }
    }
    for kind in ["Lambda", "MetadataExtraction", "AppendDelimiterToRecord"] {
        if out.iter().filter(|processor| processor.kind() == kind).count() > 1 {
            return Err(invalid(format!("ProcessingConfiguration has more than one {kind} processor.")));
        }
    }
    Ok((enabled, out))
}

impl Processor {
    pub fn kind(&self) -> &'static str {
        match self {
            Processor::AppendDelimiterToRecord { .. } => "AppendDelimiterToRecord",
            Processor::Lambda(_) => "Lambda",
            Processor::MetadataExtraction { .. } => "MetadataExtraction",
        }
    }
}

fn given(parameters: &BTreeMap<&str, &str>) -> Vec<(String, String)> {
    parameters.iter().map(|(name, value)| ((*name).to_owned(), (*value).to_owned())).collect()
}

/// A `Lambda` processor from its parameters, within Firehose's ranges.
fn lambda_processor(parameters: &BTreeMap<&str, &str>, at: &str) -> Result<LambdaProcessor, OpError> {
    const NAMES: &[&str] = &["LambdaArn", "NumberOfRetries", "RoleArn", "BufferSizeInMBs", "BufferIntervalInSeconds"];
    if let Some(unknown) = parameters.keys().find(|name| !NAMES.contains(*name)) {
        return Err(invalid(format!("{at}: Lambda has no parameter {unknown:?} (only {}).", NAMES.join(", "))));
    }
    let function = parameters.get("LambdaArn").ok_or_else(|| invalid(format!("{at}: Lambda needs the parameter LambdaArn.")))?;
    let is_url = function.starts_with("https://") || function.starts_with("http://");
    if is_url {
        let parsed = url::Url::parse(function).map_err(|e| invalid(format!("{at}: LambdaArn {function:?}: {e}")))?;
        if parsed.host_str().is_none() {
            return Err(invalid(format!("{at}: LambdaArn {function:?} has no host.")));
        }
    }
    let processor = LambdaProcessor { function: (*function).to_owned(), retries: 3, call_bytes: 1 << 20, parameters: given(parameters) };
    let arn_ok = processor.arn_function().is_some_and(|(name, qualifier)| {
        let valid =
            |text: &str| (1..=128).contains(&text.len()) && text.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        valid(name)
            && qualifier.is_none_or(|qualifier| qualifier == "$LATEST" || valid(qualifier))
            && function.starts_with("arn:aws:lambda:")
    });
    if function.len() > 512 || !(is_url || arn_ok) {
        return Err(invalid(format!(
            "{at}: LambdaArn {function:?} is neither a Lambda function ARN (arn:aws:lambda:REGION:ACCOUNT:function:NAME) nor an http(s) URL."
        )));
    }
    let number = |name: &str, min: f64, max: f64| -> Result<Option<f64>, OpError> {
        let Some(text) = parameters.get(name) else { return Ok(None) };
        match text.trim().parse::<f64>() {
            Ok(value) if (min..=max).contains(&value) => Ok(Some(value)),
            _ => Err(invalid(format!("{at}: Lambda's {name} {text:?} is not a number from {min} to {max}."))),
        }
    };
    let retries = number("NumberOfRetries", 0.0, 300.0)?.map_or(3, |value| value as u32);
    let call_bytes = number("BufferSizeInMBs", 0.2, 3.0)?.map_or(1 << 20, |value| (value * 1_048_576.0) as u64);
    number("BufferIntervalInSeconds", 60.0, 900.0)?;
    Ok(LambdaProcessor { retries, call_bytes, ..processor })
}

/// A delimiter as the console and CLI write it: `\n`, `\t`, `\r` and `\\` escapes.
fn unescape(text: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        match (c, c == '\\') {
            (_, true) => match chars.next() {
                Some('n') => out.push(b'\n'),
                Some('t') => out.push(b'\t'),
                Some('r') => out.push(b'\r'),
                Some(other) => {
                    let mut buffer = [0u8; 4];
                    out.extend_from_slice(other.encode_utf8(&mut buffer).as_bytes());
                }
                None => out.push(b'\\'),
            },
            (c, false) => {
                let mut buffer = [0u8; 4];
                out.extend_from_slice(c.encode_utf8(&mut buffer).as_bytes());
            }
        }
    }
    out
}

fn escape(delimiter: &[u8]) -> String {
    String::from_utf8_lossy(delimiter).replace('\\', "\\\\").replace('\n', "\\n").replace('\t', "\\t").replace('\r', "\\r")
}

/// Keys kept as given and described back (they change nothing here).
const KEPT: &[&str] = &["CloudWatchLoggingOptions", "EncryptionConfiguration", "CustomTimeZone"];

/// An S3 destination from its configuration (`ExtendedS3DestinationConfiguration` when
/// `extended`, else `S3DestinationConfiguration`); `base` is what an update changes (an
/// UpdateDestination gives only what changes).
fn s3_destination(config: &Value, extended: bool, base: Option<&S3Destination>) -> Result<S3Destination, OpError> {
    let at = if extended { "ExtendedS3DestinationConfiguration" } else { "S3DestinationConfiguration" };
    let fields = Fields::of(config, at)?;
    const KNOWN: &[&str] = &[
        "BucketARN",
        "RoleARN",
        "Prefix",
        "ErrorOutputPrefix",
        "BufferingHints",
        "CompressionFormat",
        "FileExtension",
        "ProcessingConfiguration",
        "S3BackupMode",
    ];
    // Only an Extended S3 destination partitions and backs up; its update names the backup
    // bucket's change `S3BackupUpdate`.
    let backup_key = if base.is_some() { "S3BackupUpdate" } else { "S3BackupConfiguration" };
    let extended_only = |key: &str| {
        extended && (key == "DynamicPartitioningConfiguration" || key == backup_key || key == "DataFormatConversionConfiguration")
    };
    if let Some(unknown) =
        fields.map.keys().find(|key| !KNOWN.contains(&key.as_str()) && !KEPT.contains(&key.as_str()) && !extended_only(key))
    {
        return Err(invalid(format!("{at}.{unknown} is not supported by this server (it would be ignored, so it is refused).")));
    }
    let conversion = match fields.map.get("DataFormatConversionConfiguration").filter(|value| !value.is_null()) {
        Some(config) => conversion(config, &format!("{at}.DataFormatConversionConfiguration"))?,
        None => base.and_then(|base| base.conversion.clone()),
    };
    let backup = source_backup(&fields, at, backup_key, base.and_then(|base| base.backup.as_deref()))?;
    if backup.is_some() && !extended {
        return Err(invalid(format!("{at}.S3BackupMode Enabled needs an Extended S3 destination.")));
    }
    let dynamic_partitioning = match fields.object("DynamicPartitioningConfiguration")? {
        Some(config) => {
            let enabled = match config.map.get("Enabled") {
                None | Some(Value::Null) => false,
                Some(Value::Bool(enabled)) => *enabled,
                Some(_) => return Err(invalid(format!("{at}.DynamicPartitioningConfiguration.Enabled must be true or false."))),
            };
            let retry = match config.object("RetryOptions")? {
                Some(retry) => retry.int("DurationInSeconds", 0, 7200)?,
                None => None,
            };
            enabled.then(|| retry.map_or(base.and_then(|base| base.dynamic_partitioning).unwrap_or(300), |value| value as u32))
        }
        None => base.and_then(|base| base.dynamic_partitioning),
    };
    if let Some(base) = base {
        if base.dynamic_partitioning.is_some() != dynamic_partitioning.is_some() {
            return Err(invalid(format!(
                "{at}.DynamicPartitioningConfiguration: dynamic partitioning cannot be turned on or off for an existing delivery stream."
            )));
        }
    }
    let bucket_arn = match (fields.string("BucketARN")?, base) {
        (Some(arn), _) => arn.to_owned(),
        (None, Some(base)) => base.bucket_arn.clone(),
        (None, None) => return Err(invalid(format!("{at}.BucketARN is required."))),
    };
    let role_arn = match (fields.string("RoleARN")?, base) {
        (Some(arn), _) => arn.to_owned(),
        (None, Some(base)) => base.role_arn.clone(),
        (None, None) => return Err(invalid(format!("{at}.RoleARN is required."))),
    };
    // With dynamic partitioning or format conversion, objects are at least 64 MiB (128 unless
    // given), as Firehose's.
    let large = dynamic_partitioning.is_some() || conversion.is_some();
    let default_size = if large { 128 } else { 5 };
    let default = base.map_or(Buffering { size_mib: default_size, interval_s: 300 }, |base| base.buffering);
    let buffering = match fields.object("BufferingHints")? {
        Some(hints) => Buffering {
            size_mib: hints.int("SizeInMBs", 1, 128)?.map_or(default.size_mib, |v| v as u32),
            interval_s: hints.int("IntervalInSeconds", 0, 900)?.map_or(default.interval_s, |v| v as u32),
        },
        None => default,
    };
    if large && buffering.size_mib < 64 {
        return Err(invalid(format!("{at}.BufferingHints.SizeInMBs must be at least 64 with dynamic partitioning or format conversion.")));
    }
    let compression = match fields.string("CompressionFormat")? {
        Some(text) => Compression::parse(text)?,
        None => base.map_or(Compression::Uncompressed, |base| base.compression),
    };
    if conversion.is_some() && compression != Compression::Uncompressed {
        return Err(invalid(format!(
            "{at}.CompressionFormat must be UNCOMPRESSED with format conversion (the serializer's Compression compresses inside the file)."
        )));
    }
    if !extended && matches!(compression, Compression::HadoopSnappy) {
        return Err(invalid("HADOOP_SNAPPY needs an ExtendedS3DestinationConfiguration."));
    }
    let (processing_enabled, processors) = match fields.object("ProcessingConfiguration")? {
        Some(config) => processors(Some(config))?,
        None => base.map_or((false, Vec::new()), |base| (base.processing_enabled, base.processors.clone())),
    };
    let text = |key: &str, old: Option<&String>| -> Result<String, OpError> {
        Ok(match fields.string(key)? {
            Some(text) => text.to_owned(),
            None => old.cloned().unwrap_or_default(),
        })
    };
    let prefix = text("Prefix", base.map(|b| &b.prefix))?;
    let error_output_prefix = text("ErrorOutputPrefix", base.map(|b| &b.error_output_prefix))?;
    let file_extension = text("FileExtension", base.map(|b| &b.file_extension))?;
    for (name, value) in [("Prefix", &prefix), ("ErrorOutputPrefix", &error_output_prefix)] {
        if value.len() > 1024 {
            return Err(invalid(format!("{at}.{name} is longer than 1024 characters.")));
        }
        parse_prefix(value).map_err(|reason| invalid(format!("{at}.{name}: {reason}")))?;
        if value.starts_with('/') || value.split('/').any(|part| part == "." || part == "..") {
            return Err(invalid(format!("{at}.{name} cannot start with / or hold . or .. between slashes.")));
        }
    }
    if prefix.contains("!{") && error_output_prefix.is_empty() {
        return Err(invalid(format!("{at}: ErrorOutputPrefix cannot be null or empty when Prefix contains expressions.")));
    }
    check_partitioning(at, &prefix, &error_output_prefix, dynamic_partitioning.is_some(), processing_enabled, &processors)?;
    if !file_extension.is_empty()
        && (file_extension.len() > 128 || !file_extension.starts_with('.') || file_extension.contains(['/', '\\']))
    {
        return Err(invalid(format!("{at}.FileExtension must start with a dot and be at most 128 characters, with no slash.")));
    }
    let mut kept = base.map(|base| base.kept.clone()).unwrap_or_default();
    for key in KEPT {
        if let Some(value) = fields.map.get(*key) {
            kept.insert((*key).to_owned(), value.clone());
        }
    }
    Ok(S3Destination {
        bucket: bucket_of(&bucket_arn)?,
        bucket_arn,
        role_arn,
        prefix,
        error_output_prefix,
        buffering,
        compression,
        file_extension,
        processing_enabled,
        processors,
        extended: base.map_or(extended, |base| base.extended || extended),
        dynamic_partitioning,
        backup,
        conversion,
        kept,
    })
}

/// Record format conversion (`DataFormatConversionConfiguration`): JSON in (OpenX JSON), Parquet
/// out, with the schema of a table of `--firehose-glue-tables`; `None` when disabled.
fn conversion(config: &Value, at: &str) -> Result<Option<Conversion>, OpError> {
    let fields = Fields::of(config, at)?;
    const KNOWN: &[&str] = &["Enabled", "SchemaConfiguration", "InputFormatConfiguration", "OutputFormatConfiguration"];
    if let Some(unknown) = fields.map.keys().find(|key| !KNOWN.contains(&key.as_str())) {
        return Err(invalid(format!("{at}.{unknown} is not supported by this server.")));
    }
    match fields.map.get("Enabled") {
        Some(Value::Bool(false)) => return Ok(None),
        None | Some(Value::Null) | Some(Value::Bool(true)) => {}
        Some(_) => return Err(invalid(format!("{at}.Enabled must be true or false."))),
    }
    let schema = fields.object("SchemaConfiguration")?.ok_or_else(|| invalid(format!("{at}.SchemaConfiguration is required.")))?;
    let database = schema.required("DatabaseName")?.to_owned();
    let table = schema.required("TableName")?.to_owned();
    let input = fields.object("InputFormatConfiguration")?.ok_or_else(|| invalid(format!("{at}.InputFormatConfiguration is required.")))?;
    let deserializer =
        input.object("Deserializer")?.ok_or_else(|| invalid(format!("{at}.InputFormatConfiguration.Deserializer is required.")))?;
    let (mut case_insensitive, mut dots_to_underscores, mut key_mappings) = (true, false, BTreeMap::new());
    if let Some(openx) = deserializer.object("OpenXJsonSerDe")? {
        if let Some(flag) = openx.map.get("CaseInsensitive").and_then(Value::as_bool) {
            case_insensitive = flag;
        }
        if let Some(flag) = openx.map.get("ConvertDotsInJsonKeysToUnderscores").and_then(Value::as_bool) {
            dots_to_underscores = flag;
        }
        for (column, key) in openx.map.get("ColumnToJsonKeyMappings").and_then(Value::as_object).into_iter().flatten() {
            let key = key.as_str().ok_or_else(|| invalid(format!("{at}: ColumnToJsonKeyMappings.{column} must be a string.")))?;
            key_mappings.insert(column.clone(), key.to_owned());
        }
    } else if deserializer.map.contains_key("HiveJsonSerDe") {
        return Err(invalid(format!("{at}: HiveJsonSerDe is not supported by this server yet (OpenXJsonSerDe is).")));
    } else {
        return Err(invalid(format!("{at}.InputFormatConfiguration.Deserializer needs OpenXJsonSerDe.")));
    }
    let output =
        fields.object("OutputFormatConfiguration")?.ok_or_else(|| invalid(format!("{at}.OutputFormatConfiguration is required.")))?;
    let serializer =
        output.object("Serializer")?.ok_or_else(|| invalid(format!("{at}.OutputFormatConfiguration.Serializer is required.")))?;
    let Some(parquet) = serializer.object("ParquetSerDe")? else {
        return Err(invalid(format!("{at}: the serializer must be ParquetSerDe (OrcSerDe is not supported by this server yet).")));
    };
    let compression = match parquet.string("Compression")? {
        None | Some("SNAPPY") => ParquetCompression::Snappy,
        Some("GZIP") => ParquetCompression::Gzip,
        Some("UNCOMPRESSED") => ParquetCompression::Uncompressed,
        Some(other) => return Err(invalid(format!("{at}: ParquetSerDe.Compression {other:?} is not one of SNAPPY, GZIP, UNCOMPRESSED."))),
    };
    Ok(Some(Conversion {
        database,
        table,
        compression,
        case_insensitive,
        dots_to_underscores,
        key_mappings,
        configuration: config.clone(),
    }))
}

/// What the HTTP endpoint, search and table destinations share: their processors (no
/// dynamic partitioning: it is for S3 only), their bucket (`S3Configuration`, or `S3Update`
/// over `base`; `bucket` says what it is for), the settings kept to be described back, and
/// their role.
struct Shared {
    role_arn: String,
    processing_enabled: bool,
    processors: Vec<Processor>,
    s3: S3Destination,
    kept: Map<String, Value>,
}

/// The shared part of a destination an update changes.
struct SharedBase<'a> {
    role_arn: &'a str,
    processing_enabled: bool,
    processors: &'a [Processor],
    s3: &'a S3Destination,
    kept: &'a Map<String, Value>,
}

/// The `SharedBase` of a destination that has the shared fields (HTTP, search, table).
macro_rules! shared_base {
    ($base:expr) => {
        SharedBase {
            role_arn: &$base.role_arn,
            processing_enabled: $base.processing_enabled,
            processors: &$base.processors,
            s3: &$base.s3,
            kept: &$base.kept,
        }
    };
}

fn shared(fields: &Fields<'_>, at: &str, base: Option<SharedBase<'_>>, bucket: &str) -> Result<Shared, OpError> {
    let (processing_enabled, processors) = match fields.object("ProcessingConfiguration")? {
        Some(config) => processors(Some(config))?,
        None => base.as_ref().map_or((false, Vec::new()), |base| (base.processing_enabled, base.processors.to_vec())),
    };
    if processors.iter().any(|processor| matches!(processor, Processor::MetadataExtraction { .. })) {
        return Err(invalid(format!("{at}: MetadataExtraction (dynamic partitioning) is for S3 destinations only.")));
    }
    let s3_key = if base.is_some() { "S3Update" } else { "S3Configuration" };
    let s3 = match (fields.map.get(s3_key), &base) {
        (Some(s3), base) => s3_destination(s3, false, base.as_ref().map(|base| base.s3))?,
        (None, Some(base)) => base.s3.clone(),
        (None, None) => return Err(invalid(format!("{at}.S3Configuration (the {bucket} bucket) is required."))),
    };
    let mut kept = base.as_ref().map(|base| base.kept.clone()).unwrap_or_default();
    if let Some(value) = fields.map.get("CloudWatchLoggingOptions") {
        kept.insert("CloudWatchLoggingOptions".into(), value.clone());
    }
    let role_arn = match fields.string("RoleARN")? {
        Some(role) => role.to_owned(),
        None => base.map(|base| base.role_arn.to_owned()).unwrap_or_default(),
    };
    Ok(Shared { role_arn, processing_enabled, processors, s3, kept })
}

/// Source record backup (`S3BackupMode` `Disabled`/`Enabled` and its bucket, `backup_key`:
/// `S3BackupConfiguration`, or `S3BackupUpdate` in an update over `base`), as Firehose's S3 and
/// Redshift destinations take it: once enabled it cannot be disabled.
fn source_backup(
    fields: &Fields<'_>,
    at: &str,
    backup_key: &str,
    base: Option<&S3Destination>,
) -> Result<Option<Box<S3Destination>>, OpError> {
    let given = fields.map.get(backup_key).filter(|value| !value.is_null());
    Ok(match (fields.string("S3BackupMode")?, given, base) {
        (Some("Enabled"), Some(config), base) | (None, Some(config), base @ Some(_)) => {
            Some(Box::new(s3_destination(config, false, base).map_err(|e| invalid(format!("{at}.{backup_key}: {}", e.message)))?))
        }
        (Some("Enabled"), None, Some(base)) | (None, None, Some(base)) => Some(Box::new(base.clone())),
        (Some("Enabled"), None, None) => return Err(invalid(format!("{at}.S3BackupMode Enabled needs {at}.{backup_key}."))),
        (Some("Disabled"), _, Some(_)) => {
            return Err(invalid(format!("{at}.S3BackupMode: source record backup cannot be disabled once enabled.")))
        }
        (Some("Disabled") | None, Some(_), None) => {
            return Err(invalid(format!("{at}.{backup_key} is given but S3BackupMode is not Enabled.")))
        }
        (Some("Disabled") | None, None, None) => None,
        (Some(other), _, _) => return Err(invalid(format!("{at}.S3BackupMode {other:?} is not one of Disabled, Enabled."))),
    })
}

/// Dynamic partitioning's rules: a prefix's partition keys need it on, and each key a source
/// (the query naming it, or a transformation function); with it on, the prefix names at least
/// one key and the error prefix none; the query runs only with it on.
fn check_partitioning(
    at: &str,
    prefix: &str,
    error_output_prefix: &str,
    enabled: bool,
    processing_enabled: bool,
    processors: &[Processor],
) -> Result<(), OpError> {
    let keys = |text: &str| -> Vec<(bool, String)> {
        parse_prefix(text)
            .unwrap_or_default()
            .into_iter()
            .filter_map(|part| match part {
                PrefixPart::PartitionKey { lambda, name } => Some((lambda, name)),
                _ => None,
            })
            .collect()
    };
    if !keys(error_output_prefix).is_empty() {
        return Err(invalid(format!("{at}.ErrorOutputPrefix cannot use partitionKeyFromQuery or partitionKeyFromLambda.")));
    }
    let processors = if processing_enabled { processors } else { &[] };
    let query = processors.iter().find_map(|processor| match processor {
        Processor::MetadataExtraction { query, .. } => Some(query),
        _ => None,
    });
    let lambda = processors.iter().any(|processor| matches!(processor, Processor::Lambda(_)));
    let named = keys(prefix);
    if !enabled {
        if let Some((_, name)) = named.first() {
            return Err(invalid(format!(
                "{at}.Prefix uses the partition key {name}: that needs DynamicPartitioningConfiguration with Enabled true."
            )));
        }
        if query.is_some() {
            return Err(invalid(format!("{at}: a MetadataExtraction processor needs DynamicPartitioningConfiguration with Enabled true.")));
        }
        return Ok(());
    }
    if named.is_empty() {
        return Err(invalid(format!(
            "{at}.Prefix must use at least one !{{partitionKeyFromQuery:…}} or !{{partitionKeyFromLambda:…}} with dynamic partitioning."
        )));
    }
    for (from_lambda, name) in &named {
        match (from_lambda, query) {
            (true, _) if !lambda => {
                return Err(invalid(format!("{at}.Prefix uses !{{partitionKeyFromLambda:{name}}} but no Lambda processor is enabled.")))
            }
            (false, None) => {
                return Err(invalid(format!(
                    "{at}.Prefix uses !{{partitionKeyFromQuery:{name}}} but no MetadataExtraction processor is enabled."
                )))
            }
            (false, Some(query)) if !query.keys.iter().any(|(key, _)| key == name) => {
                return Err(invalid(format!(
                    "{at}.Prefix uses !{{partitionKeyFromQuery:{name}}}, which the MetadataExtractionQuery does not name."
                )))
            }
            _ => {}
        }
    }
    Ok(())
}

/// An HTTP endpoint destination from its configuration (`HttpEndpointDestinationConfiguration`,
/// or an `HttpEndpointDestinationUpdate` over `base`).
fn http_destination(config: &Value, base: Option<&HttpDestination>) -> Result<HttpDestination, OpError> {
    let at = if base.is_some() { "HttpEndpointDestinationUpdate" } else { "HttpEndpointDestinationConfiguration" };
    let fields = Fields::of(config, at)?;
    const KNOWN: &[&str] = &[
        "EndpointConfiguration",
        "BufferingHints",
        "CloudWatchLoggingOptions",
        "RequestConfiguration",
        "ProcessingConfiguration",
        "RoleARN",
        "RetryOptions",
        "S3BackupMode",
        "S3Configuration",
        "S3Update",
        "SecretsManagerConfiguration",
    ];
    if let Some(unknown) = fields.map.keys().find(|key| !KNOWN.contains(&key.as_str())) {
        return Err(invalid(format!("{at}.{unknown} is not supported by this server (it would be ignored, so it is refused).")));
    }
    if let Some(secrets) = fields.object("SecretsManagerConfiguration")? {
        if secrets.map.get("Enabled").and_then(Value::as_bool).unwrap_or(false) {
            return Err(invalid(format!(
                "{at}.SecretsManagerConfiguration is not supported by this server; give EndpointConfiguration.AccessKey."
            )));
        }
    }
    let (url, name, access_key) = match (fields.object("EndpointConfiguration")?, base) {
        (Some(endpoint), _) => {
            let url = endpoint.required("Url")?.to_owned();
            let parsed = url::Url::parse(&url).map_err(|e| invalid(format!("{at}.EndpointConfiguration.Url {url:?}: {e}")))?;
            if !matches!(parsed.scheme(), "https" | "http") || parsed.host_str().is_none() || url.len() > 1000 {
                return Err(invalid(format!("{at}.EndpointConfiguration.Url {url:?} must be an https:// URL of at most 1000 characters.")));
            }
            let name = endpoint.string("Name")?.unwrap_or_default().to_owned();
            let access_key = endpoint.string("AccessKey")?.map(str::to_owned);
            if access_key.as_ref().is_some_and(|key| key.len() > 4096) {
                return Err(invalid(format!("{at}.EndpointConfiguration.AccessKey is longer than 4096 characters.")));
            }
            (url, name, access_key)
        }
        (None, Some(base)) => (base.url.clone(), base.name.clone(), base.access_key.clone()),
        (None, None) => return Err(invalid(format!("{at}.EndpointConfiguration is required."))),
    };
    let default = base.map_or(Buffering { size_mib: 5, interval_s: 300 }, |base| base.buffering);
    let buffering = match fields.object("BufferingHints")? {
        Some(hints) => Buffering {
            size_mib: hints.int("SizeInMBs", 1, 64)?.map_or(default.size_mib, |v| v as u32),
            interval_s: hints.int("IntervalInSeconds", 0, 900)?.map_or(default.interval_s, |v| v as u32),
        },
        None => default,
    };
    let (mut gzip, mut common_attributes) = base.map_or((false, Vec::new()), |base| (base.gzip, base.common_attributes.clone()));
    if let Some(request) = fields.object("RequestConfiguration")? {
        gzip = match request.string("ContentEncoding")? {
            None | Some("NONE") => false,
            Some("GZIP") => true,
            Some(other) => return Err(invalid(format!("{at}.RequestConfiguration.ContentEncoding {other:?} is not one of NONE, GZIP."))),
        };
        common_attributes = Vec::new();
        for attribute in request.map.get("CommonAttributes").and_then(Value::as_array).into_iter().flatten() {
            let attribute = Fields::of(attribute, &format!("{at}.RequestConfiguration.CommonAttributes"))?;
            common_attributes.push((attribute.required("AttributeName")?.to_owned(), attribute.required("AttributeValue")?.to_owned()));
        }
        if common_attributes.len() > 50 {
            return Err(invalid(format!("{at}.RequestConfiguration.CommonAttributes holds more than 50 attributes.")));
        }
    }
    let retry_s = match fields.object("RetryOptions")? {
        Some(retry) => retry.int("DurationInSeconds", 0, 7200)?.map_or(300, |v| v as u32),
        None => base.map_or(300, |base| base.retry_s),
    };
    let backup_all = match fields.string("S3BackupMode")? {
        None => base.is_some_and(|base| base.backup_all),
        Some("FailedDataOnly") => false,
        Some("AllData") => true,
        Some(other) => return Err(invalid(format!("{at}.S3BackupMode {other:?} is not one of FailedDataOnly, AllData."))),
    };
    let Shared { role_arn, processing_enabled, processors, s3, kept } = shared(&fields, at, base.map(|base| shared_base!(base)), "backup")?;
    Ok(HttpDestination {
        url,
        name,
        access_key,
        buffering,
        gzip,
        common_attributes,
        retry_s,
        backup_all,
        role_arn,
        processing_enabled,
        processors,
        s3,
        kept,
    })
}

/// A SQL identifier as a table destination takes one: letters, digits, `_` and `$`, not
/// starting with a digit (a table may be `schema.table`).
fn valid_identifier(name: &str) -> bool {
    (1..=127).contains(&name.len())
        && !name.starts_with(|c: char| c.is_ascii_digit() || c == '$')
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'$')
}

/// Reads `CopyOptions`: `CSV`, `DELIMITER [AS] 'c'`, `JSON 'auto'`, `FORMAT [AS] CSV|JSON 'auto'`;
/// what else Redshift's COPY takes is refused by name.
fn copy_format(options: &str) -> Result<CopyFormat, String> {
    let mut tokens: Vec<String> = Vec::new();
    let mut rest = options.trim();
    while !rest.is_empty() {
        if let Some(quoted) = rest.strip_prefix('\'') {
            let end = quoted.find('\'').ok_or("an unterminated quote")?;
            tokens.push(format!("'{}'", &quoted[..end]));
            rest = quoted[end + 1..].trim_start();
        } else {
            let end = rest.find(|c: char| c.is_whitespace() || c == '\'').unwrap_or(rest.len());
            tokens.push(rest[..end].to_ascii_uppercase());
            rest = rest[end..].trim_start();
        }
    }
    let (mut csv, mut json, mut delimiter) = (false, false, None);
    let mut at = 0;
    let quoted = |token: Option<&String>| -> Option<String> { token?.strip_prefix('\'')?.strip_suffix('\'').map(str::to_owned) };
    while at < tokens.len() {
        match tokens[at].as_str() {
            "FORMAT" | "AS" => {}
            "CSV" => csv = true,
            "JSON" => {
                json = true;
                match quoted(tokens.get(at + 1)) {
                    Some(mode) if mode.eq_ignore_ascii_case("auto") => at += 1,
                    _ => return Err("JSON takes 'auto' here (a JSONPaths file is not supported by this server)".into()),
                }
            }
            "DELIMITER" => {
                if tokens.get(at + 1).map(String::as_str) == Some("AS") {
                    at += 1;
                }
                let text = quoted(tokens.get(at + 1)).ok_or("DELIMITER takes a quoted character")?;
                let text = match text.as_str() {
                    "\\t" => "\t".to_owned(),
                    _ => text,
                };
                if text.len() != 1 || text == "\n" || text == "\r" {
                    return Err(format!("DELIMITER {text:?} must be one character"));
                }
                delimiter = Some(text.as_bytes()[0]);
                at += 1;
            }
            "GZIP" => return Err("GZIP: records are loaded as they are; compress the intermediate objects with CompressionFormat".into()),
            other => return Err(format!("{other} is not supported by this server (CSV, DELIMITER 'c' and JSON 'auto' are)")),
        }
        at += 1;
    }
    match (json, csv) {
        (true, true) => Err("CSV and JSON cannot both be given".into()),
        (true, false) if delimiter.is_some() => Err("DELIMITER does not go with JSON".into()),
        (true, false) => Ok(CopyFormat::JsonAuto),
        (false, true) => Ok(CopyFormat::Csv { delimiter: delimiter.unwrap_or(b',') }),
        (false, false) => Ok(CopyFormat::Text { delimiter: delimiter.unwrap_or(b'|') }),
    }
}

/// The Redshift destination (delivered into a PostgreSQL table) from its configuration, or
/// its update over `base`.
fn table_destination(config: &Value, base: Option<&TableDestination>) -> Result<TableDestination, OpError> {
    let at = if base.is_some() { "RedshiftDestinationUpdate" } else { "RedshiftDestinationConfiguration" };
    let fields = Fields::of(config, at)?;
    const KNOWN: &[&str] = &[
        "RoleARN",
        "ClusterJDBCURL",
        "CopyCommand",
        "Username",
        "Password",
        "RetryOptions",
        "S3Configuration",
        "S3Update",
        "ProcessingConfiguration",
        "S3BackupMode",
        "S3BackupConfiguration",
        "S3BackupUpdate",
        "CloudWatchLoggingOptions",
    ];
    if let Some(unknown) = fields.map.keys().find(|key| !KNOWN.contains(&key.as_str())) {
        return Err(invalid(format!("{at}.{unknown} is not supported by this server (it would be ignored, so it is refused).")));
    }
    let backup_key = if base.is_some() { "S3BackupUpdate" } else { "S3BackupConfiguration" };
    let backup = source_backup(&fields, at, backup_key, base.and_then(|base| base.backup.as_deref()))?;
    let jdbc_url = match (fields.string("ClusterJDBCURL")?, base) {
        (Some(url), _) => url.to_owned(),
        (None, Some(base)) => base.jdbc_url.clone(),
        (None, None) => return Err(invalid(format!("{at}.ClusterJDBCURL is required."))),
    };
    let (default_port, rest) = match (jdbc_url.strip_prefix("jdbc:postgresql://"), jdbc_url.strip_prefix("jdbc:redshift://")) {
        (Some(rest), _) => (5432, rest),
        (_, Some(rest)) => (5439, rest),
        _ => {
            return Err(invalid(format!(
                "{at}.ClusterJDBCURL {jdbc_url:?} must be jdbc:postgresql://HOST[:PORT]/DATABASE (or jdbc:redshift://…)."
            )))
        }
    };
    let (address, database) =
        rest.split_once('/').ok_or_else(|| invalid(format!("{at}.ClusterJDBCURL {jdbc_url:?} names no database.")))?;
    let database = database.split('?').next().unwrap_or_default().to_owned();
    let (host, port) = match address.rsplit_once(':') {
        Some((host, port)) => {
            (host.to_owned(), port.parse::<u16>().map_err(|_| invalid(format!("{at}.ClusterJDBCURL: bad port {port:?}.")))?)
        }
        None => (address.to_owned(), default_port),
    };
    if host.is_empty() || database.is_empty() || jdbc_url.len() > 512 {
        return Err(invalid(format!("{at}.ClusterJDBCURL {jdbc_url:?} needs a host and a database (and at most 512 characters).")));
    }
    let copy = fields.object("CopyCommand")?;
    let (table, columns, copy_options) = match (copy, base) {
        (Some(copy), base) => {
            let table = match (copy.string("DataTableName")?, base) {
                (Some(table), _) => table.to_owned(),
                (None, Some(base)) => base.table.clone(),
                (None, None) => return Err(invalid(format!("{at}.CopyCommand.DataTableName is required."))),
            };
            let columns = match copy.string("DataTableColumns")? {
                Some(text) => text.split(',').map(|column| column.trim().to_owned()).filter(|column| !column.is_empty()).collect(),
                None => base.map(|base| base.columns.clone()).unwrap_or_default(),
            };
            let options = match copy.string("CopyOptions")? {
                Some(text) => text.to_owned(),
                None => base.map(|base| base.copy_options.clone()).unwrap_or_default(),
            };
            (table, columns, options)
        }
        (None, Some(base)) => (base.table.clone(), base.columns.clone(), base.copy_options.clone()),
        (None, None) => return Err(invalid(format!("{at}.CopyCommand is required."))),
    };
    if table.split('.').count() > 2 || !table.split('.').all(valid_identifier) {
        return Err(invalid(format!(
            "{at}.CopyCommand.DataTableName {table:?} must be TABLE or SCHEMA.TABLE, each of letters, digits, _ and $."
        )));
    }
    if let Some(bad) = columns.iter().find(|column| !valid_identifier(column)) {
        return Err(invalid(format!("{at}.CopyCommand.DataTableColumns: {bad:?} is not a column name (letters, digits, _ and $).")));
    }
    let format = copy_format(&copy_options).map_err(|why| invalid(format!("{at}.CopyCommand.CopyOptions {copy_options:?}: {why}.")))?;
    if format == CopyFormat::JsonAuto && columns.is_empty() {
        return Err(invalid(format!("{at}.CopyCommand: JSON 'auto' needs DataTableColumns (the keys taken from each record).")));
    }
    let username = match (fields.string("Username")?, base) {
        (Some(name), _) => name.to_owned(),
        (None, Some(base)) => base.username.clone(),
        (None, None) => return Err(invalid(format!("{at}.Username is required."))),
    };
    let password = fields.string("Password")?.map(str::to_owned).or_else(|| base.and_then(|base| base.password.clone()));
    let retry_s = match fields.object("RetryOptions")? {
        Some(retry) => retry.int("DurationInSeconds", 0, 7200)?.map_or(3600, |v| v as u32),
        None => base.map_or(3600, |base| base.retry_s),
    };
    let Shared { role_arn, processing_enabled, processors, s3, kept } =
        shared(&fields, at, base.map(|base| shared_base!(base)), "intermediate")?;
    Ok(TableDestination {
        jdbc_url,
        host,
        port,
        database,
        username,
        password,
        table,
        columns,
        copy_options,
        format,
        retry_s,
        role_arn,
        processing_enabled,
        processors,
        s3,
        backup,
        kept,
    })
}

/// A table destination's fields as its configuration and description hold them (its password
/// only in the configuration the metadata file keeps: `with_password`).
fn table_fields(table: &TableDestination, with_password: bool) -> Value {
    let mut fields = json!({
        "RoleARN": table.role_arn,
        "ClusterJDBCURL": table.jdbc_url,
        "CopyCommand": {
            "DataTableName": table.table,
            "DataTableColumns": table.columns.join(","),
            "CopyOptions": table.copy_options,
        },
        "Username": table.username,
        "RetryOptions": { "DurationInSeconds": table.retry_s },
        "ProcessingConfiguration": processing(table.processing_enabled, &table.processors),
        "S3BackupMode": if table.backup.is_some() { "Enabled" } else { "Disabled" },
    });
    if let (true, Some(password)) = (with_password, &table.password) {
        fields["Password"] = json!(password);
    }
    for (key, value) in &table.kept {
        fields[key] = value.clone();
    }
    fields
}

/// An OpenSearch or Elasticsearch destination from its configuration (or its update over `base`).
fn search_destination(config: &Value, service: SearchService, base: Option<&SearchDestination>) -> Result<SearchDestination, OpError> {
    let at = format!("{}{}", service.key(), if base.is_some() { "Update" } else { "Configuration" });
    let at = at.as_str();
    let fields = Fields::of(config, at)?;
    const KNOWN: &[&str] = &[
        "RoleARN",
        "DomainARN",
        "ClusterEndpoint",
        "IndexName",
        "TypeName",
        "IndexRotationPeriod",
        "BufferingHints",
        "RetryOptions",
        "S3BackupMode",
        "S3Configuration",
        "S3Update",
        "ProcessingConfiguration",
        "CloudWatchLoggingOptions",
        "DocumentIdOptions",
    ];
    if let Some(unknown) = fields.map.keys().find(|key| !KNOWN.contains(&key.as_str())) {
        return Err(invalid(format!("{at}.{unknown} is not supported by this server (it would be ignored, so it is refused).")));
    }
    if fields.string("DomainARN")?.is_some() {
        return Err(invalid(format!(
            "{at}.DomainARN names an AWS domain, which this server cannot reach: give ClusterEndpoint, the cluster's http(s) URL."
        )));
    }
    let endpoint = match (fields.string("ClusterEndpoint")?, base) {
        (Some(url), _) => {
            let parsed = url::Url::parse(url).map_err(|e| invalid(format!("{at}.ClusterEndpoint {url:?}: {e}")))?;
            if !matches!(parsed.scheme(), "https" | "http") || parsed.host_str().is_none() || url.len() > 512 {
                return Err(invalid(format!("{at}.ClusterEndpoint {url:?} must be an https:// URL of at most 512 characters.")));
            }
            url.trim_end_matches('/').to_owned()
        }
        (None, Some(base)) => base.endpoint.clone(),
        (None, None) => return Err(invalid(format!("{at}.ClusterEndpoint is required."))),
    };
    let index = match (fields.string("IndexName")?, base) {
        (Some(index), _) => index.to_owned(),
        (None, Some(base)) => base.index.clone(),
        (None, None) => return Err(invalid(format!("{at}.IndexName is required."))),
    };
    // An index name as the clusters take it: lowercase, no path or query characters.
    let index_ok = (1..=80).contains(&index.len())
        && !index.starts_with(['-', '_', '+', '.'])
        && index.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-_.+".contains(&b));
    if !index_ok {
        return Err(invalid(format!(
            "{at}.IndexName {index:?} must be 1 to 80 lowercase letters, digits, -, _, + and ., not starting with -, _, + or ."
        )));
    }
    let type_name = match fields.string("TypeName")? {
        Some(name) => name.to_owned(),
        None => base.map(|base| base.type_name.clone()).unwrap_or_default(),
    };
    if type_name.len() > 100 || type_name.contains(['"', '\\', '/']) {
        return Err(invalid(format!("{at}.TypeName must be at most 100 characters, with no quote, slash or backslash.")));
    }
    let rotation = match fields.string("IndexRotationPeriod")? {
        Some(text) => Rotation::parse(text).ok_or_else(|| {
            invalid(format!("{at}.IndexRotationPeriod {text:?} is not one of NoRotation, OneHour, OneDay, OneWeek, OneMonth."))
        })?,
        None => base.map_or(Rotation::OneDay, |base| base.rotation),
    };
    let default = base.map_or(Buffering { size_mib: 5, interval_s: 300 }, |base| base.buffering);
    let buffering = match fields.object("BufferingHints")? {
        Some(hints) => Buffering {
            size_mib: hints.int("SizeInMBs", 1, 100)?.map_or(default.size_mib, |v| v as u32),
            interval_s: hints.int("IntervalInSeconds", 0, 900)?.map_or(default.interval_s, |v| v as u32),
        },
        None => default,
    };
    let retry_s = match fields.object("RetryOptions")? {
        Some(retry) => retry.int("DurationInSeconds", 0, 7200)?.map_or(300, |v| v as u32),
        None => base.map_or(300, |base| base.retry_s),
    };
    let backup_all = match fields.string("S3BackupMode")? {
        None => base.is_some_and(|base| base.backup_all),
        Some("FailedDocumentsOnly") => false,
        Some("AllDocuments") => true,
        Some(other) => return Err(invalid(format!("{at}.S3BackupMode {other:?} is not one of FailedDocumentsOnly, AllDocuments."))),
    };
    let document_ids = match fields.object("DocumentIdOptions")? {
        Some(options) => match options.required("DefaultDocumentIdFormat")? {
            "FIREHOSE_DEFAULT" => true,
            "NO_DOCUMENT_ID" => false,
            other => {
                return Err(invalid(format!(
                    "{at}.DocumentIdOptions.DefaultDocumentIdFormat {other:?} is not one of FIREHOSE_DEFAULT, NO_DOCUMENT_ID."
                )))
            }
        },
        None => base.is_none_or(|base| base.document_ids),
    };
    let Shared { role_arn, processing_enabled, processors, s3, kept } = shared(&fields, at, base.map(|base| shared_base!(base)), "backup")?;
    Ok(SearchDestination {
        service,
        endpoint,
        index,
        type_name,
        rotation,
        buffering,
        retry_s,
        backup_all,
        document_ids,
        role_arn,
        processing_enabled,
        processors,
        s3,
        kept,
    })
}

/// The destination configured by a CreateDeliveryStream request (or a stored stream), from
/// the fields that name one.
fn destination(request: &Fields<'_>) -> Result<Destination, OpError> {
    const OTHERS: &[&str] = &[
        "AmazonOpenSearchServerlessDestinationConfiguration",
        "SplunkDestinationConfiguration",
        "SnowflakeDestinationConfiguration",
        "IcebergDestinationConfiguration",
        "DatabaseSourceConfiguration",
        "MSKSourceConfiguration",
    ];
    let given: Vec<&str> = request
        .map
        .iter()
        .filter(|(key, value)| key.ends_with("DestinationConfiguration") && !value.is_null())
        .map(|(key, _)| key.as_str())
        .collect();
    match given.as_slice() {
        [] => Err(invalid(
            "A delivery stream needs a destination: ExtendedS3DestinationConfiguration or HttpEndpointDestinationConfiguration.",
        )),
        [one] => match *one {
            "ExtendedS3DestinationConfiguration" => Ok(Destination::S3(s3_destination(&request.map[*one], true, None)?)),
            "S3DestinationConfiguration" => Ok(Destination::S3(s3_destination(&request.map[*one], false, None)?)),
            "HttpEndpointDestinationConfiguration" => Ok(Destination::Http(http_destination(&request.map[*one], None)?)),
            "AmazonopensearchserviceDestinationConfiguration" => {
                Ok(Destination::Search(search_destination(&request.map[*one], SearchService::OpenSearch, None)?))
            }
            "ElasticsearchDestinationConfiguration" => {
                Ok(Destination::Search(search_destination(&request.map[*one], SearchService::Elasticsearch, None)?))
            }
            "RedshiftDestinationConfiguration" => Ok(Destination::Table(table_destination(&request.map[*one], None)?)),
            other if OTHERS.contains(&other) => Err(invalid(format!(
                "{other} is not supported by this server yet; ExtendedS3DestinationConfiguration, HttpEndpointDestinationConfiguration, AmazonopensearchserviceDestinationConfiguration, ElasticsearchDestinationConfiguration and RedshiftDestinationConfiguration (into PostgreSQL) are."
            ))),
            other => Err(invalid(format!("Unknown destination {other}."))),
        },
        _ => Err(invalid(format!("Only one destination configuration can be given; got {}.", given.join(", ")))),
    }
}

/// Checks a CreateDeliveryStream request's configuration (the JSON request without its name
/// and tags) and makes the stream's metadata.
pub fn create(
    naming: &Naming,
    id: u64,
    name: &str,
    configuration: &str,
    tags: &KeyValues,
    now_ms: u64,
) -> Result<DeliveryStreamMeta, OpError> {
    if !valid_name(name) {
        return Err(invalid(format!("DeliveryStreamName {name:?} must be 1 to 64 letters, digits, underscores, periods and hyphens.")));
    }
    let request: Value = if configuration.trim().is_empty() {
        json!({})
    } else {
        serde_json::from_str(configuration).map_err(|e| invalid(format!("The configuration is not valid JSON: {e}")))?
    };
    let fields = Fields::of(&request, "the request")?;
    let kind = match fields.string("DeliveryStreamType")? {
        None | Some("DirectPut") => SourceKind::DirectPut,
        Some("KinesisStreamAsSource") => SourceKind::KinesisStreamAsSource,
        Some(other) => {
            return Err(invalid(format!(
                "DeliveryStreamType {other:?} is not one of DirectPut, KinesisStreamAsSource, MSKAsSource, DatabaseAsSource."
            )))
        }
    };
    // What a request may carry besides destinations: the rest is refused by name, never ignored.
    for key in fields.map.keys().filter(|key| !key.ends_with("DestinationConfiguration") && !fields.map[*key].is_null()) {
        match key.as_str() {
            "DeliveryStreamType" | "KinesisStreamSourceConfiguration" => {}
            "DeliveryStreamEncryptionConfigurationInput" => {}
            other => return Err(invalid(format!("{other} is not supported by this server yet."))),
        }
    }
    let source = match (kind, fields.object("KinesisStreamSourceConfiguration")?) {
        (SourceKind::DirectPut, None) => None,
        (SourceKind::DirectPut, Some(_)) => {
            return Err(invalid("KinesisStreamSourceConfiguration is given but DeliveryStreamType is not KinesisStreamAsSource."))
        }
        (SourceKind::KinesisStreamAsSource, None) => {
            return Err(invalid("DeliveryStreamType KinesisStreamAsSource needs KinesisStreamSourceConfiguration."))
        }
        (SourceKind::KinesisStreamAsSource, Some(config)) => {
            if let Some(unknown) = config.map.keys().find(|key| !["KinesisStreamARN", "RoleARN"].contains(&key.as_str())) {
                return Err(invalid(format!("KinesisStreamSourceConfiguration.{unknown} is not supported by this server.")));
            }
            let stream_arn = config.required("KinesisStreamARN")?.to_owned();
            let prefix = format!("arn:aws:kinesis:{}:{}:stream/", naming.region, naming.account_id);
            let stream = match stream_arn.strip_prefix(&prefix) {
                Some(stream) if !stream.is_empty() && !stream.contains('/') => stream.to_owned(),
                _ => {
                    return Err(invalid(format!(
                        "KinesisStreamSourceConfiguration.KinesisStreamARN {stream_arn:?} is not the ARN of a stream of this server ({prefix}NAME)."
                    )))
                }
            };
            Some(KinesisSource { stream_arn, stream, role_arn: config.required("RoleARN")?.to_owned() })
        }
    };
    let encryption = match fields.object("DeliveryStreamEncryptionConfigurationInput")? {
        Some(input) => {
            if let Some(unknown) = input.map.keys().find(|key| !["KeyType", "KeyARN"].contains(&key.as_str())) {
                return Err(invalid(format!("DeliveryStreamEncryptionConfigurationInput.{unknown} is not supported by this server.")));
            }
            if source.is_some() {
                return Err(invalid("A KinesisStreamAsSource delivery stream takes no encryption of its own: encrypt its stream."));
            }
            Some(Encryption::parse(input.string("KeyType")?, input.string("KeyARN")?)?)
        }
        None => None,
    };
    let tags = check_tags(BTreeMap::new(), tags)?;
    Ok(DeliveryStreamMeta {
        id,
        name: name.to_owned(),
        arn: naming.firehose_arn(name),
        kind,
        source,
        encryption,
        created_ms: now_ms,
        updated_ms: now_ms,
        version: 1,
        destination: destination(&fields)?,
        tags,
    })
}

/// Adds `tags` to `existing`, within Firehose's rules.
pub fn check_tags(mut existing: BTreeMap<String, String>, tags: &KeyValues) -> Result<BTreeMap<String, String>, OpError> {
    for (key, value) in tags {
        if key.is_empty() || key.len() > 128 || key.starts_with("aws:") {
            return Err(invalid(format!("Tag key {key:?} must be 1 to 128 characters and not start with aws:.")));
        }
        if value.len() > 256 {
            return Err(invalid(format!("The value of tag {key:?} is longer than 256 characters.")));
        }
        existing.insert(key.clone(), value.clone());
    }
    if existing.len() > TAGS_MAX {
        return Err(OpError::new(ErrorCode::LimitExceeded, format!("A delivery stream has at most {TAGS_MAX} tags.")));
    }
    Ok(existing)
}

/// The stream after UpdateDestination's `configuration` (`ExtendedS3DestinationUpdate` or
/// `S3DestinationUpdate`: only what changes).
pub fn updated(meta: &DeliveryStreamMeta, configuration: &str, now_ms: u64) -> Result<DeliveryStreamMeta, OpError> {
    let request: Value =
        serde_json::from_str(configuration).map_err(|e| invalid(format!("The destination update is not valid JSON: {e}")))?;
    let fields = Fields::of(&request, "the request")?;
    let given: Vec<&String> = fields.map.keys().collect();
    if given.len() != 1 {
        return Err(invalid(
            "UpdateDestination takes one destination update (ExtendedS3DestinationUpdate, HttpEndpointDestinationUpdate, …).",
        ));
    }
    let update = &fields.map[given[0]];
    let destination = match (given[0].as_str(), &meta.destination) {
        ("ExtendedS3DestinationUpdate", Destination::S3(current)) => Destination::S3(s3_destination(update, true, Some(current))?),
        ("S3DestinationUpdate", Destination::S3(current)) => Destination::S3(s3_destination(update, false, Some(current))?),
        ("HttpEndpointDestinationUpdate", Destination::Http(current)) => Destination::Http(http_destination(update, Some(current))?),
        ("AmazonopensearchserviceDestinationUpdate", Destination::Search(current)) if current.service == SearchService::OpenSearch => {
            Destination::Search(search_destination(update, SearchService::OpenSearch, Some(current))?)
        }
        ("ElasticsearchDestinationUpdate", Destination::Search(current)) if current.service == SearchService::Elasticsearch => {
            Destination::Search(search_destination(update, SearchService::Elasticsearch, Some(current))?)
        }
        ("RedshiftDestinationUpdate", Destination::Table(current)) => Destination::Table(table_destination(update, Some(current))?),
        (other, _) => {
            return Err(invalid(format!(
            "{other} does not update this delivery stream's destination (changing a destination's type is not supported by this server)."
        )))
        }
    };
    Ok(DeliveryStreamMeta { destination, version: meta.version + 1, updated_ms: now_ms, ..meta.clone() })
}

// ---------------------------------------------------------------- describing

fn processing_json(s3: &S3Destination) -> Value {
    processing(s3.processing_enabled, &s3.processors)
}

fn processing(enabled: bool, processors: &[Processor]) -> Value {
    let processors: Vec<Value> = processors
        .iter()
        .map(|processor| match processor {
            Processor::AppendDelimiterToRecord { delimiter } => json!({
                "Type": "AppendDelimiterToRecord",
                "Parameters": [{"ParameterName": "Delimiter", "ParameterValue": escape(delimiter)}],
            }),
            Processor::Lambda(LambdaProcessor { parameters, .. }) | Processor::MetadataExtraction { parameters, .. } => {
                let parameters: Vec<Value> =
                    parameters.iter().map(|(name, value)| json!({"ParameterName": name, "ParameterValue": value})).collect();
                json!({ "Type": processor.kind(), "Parameters": parameters })
            }
        })
        .collect();
    json!({ "Enabled": enabled, "Processors": processors })
}

/// The S3 destination as the metadata file keeps it: its configuration, in the API's shape.
fn s3_configuration(s3: &S3Destination) -> Value {
    let mut config = s3.kept.clone();
    let fields = json!({
        "BucketARN": s3.bucket_arn,
        "RoleARN": s3.role_arn,
        "Prefix": s3.prefix,
        "ErrorOutputPrefix": s3.error_output_prefix,
        "BufferingHints": { "SizeInMBs": s3.buffering.size_mib, "IntervalInSeconds": s3.buffering.interval_s },
        "CompressionFormat": s3.compression.name(),
        "FileExtension": s3.file_extension,
        "ProcessingConfiguration": processing_json(s3),
    });
    for (key, value) in fields.as_object().into_iter().flatten() {
        config.insert(key.clone(), value.clone());
    }
    if let Some(retry_s) = s3.dynamic_partitioning {
        config.insert("DynamicPartitioningConfiguration".into(), json!({"Enabled": true, "RetryOptions": {"DurationInSeconds": retry_s}}));
    }
    if let Some(conversion) = &s3.conversion {
        config.insert("DataFormatConversionConfiguration".into(), conversion.configuration.clone());
    }
    if let Some(backup) = &s3.backup {
        config.insert("S3BackupMode".into(), json!("Enabled"));
        config.insert("S3BackupConfiguration".into(), s3_configuration(backup));
    }
    Value::Object(config)
}

/// An S3 destination's `S3DestinationDescription`.
fn s3_description(s3: &S3Destination) -> Value {
    json!({
        "RoleARN": s3.role_arn,
        "BucketARN": s3.bucket_arn,
        "Prefix": s3.prefix,
        "ErrorOutputPrefix": s3.error_output_prefix,
        "BufferingHints": { "SizeInMBs": s3.buffering.size_mib, "IntervalInSeconds": s3.buffering.interval_s },
        "CompressionFormat": s3.compression.name(),
        "EncryptionConfiguration": s3.kept.get("EncryptionConfiguration").cloned().unwrap_or(json!({"NoEncryptionConfig": "NoEncryption"})),
        "CloudWatchLoggingOptions": s3.kept.get("CloudWatchLoggingOptions").cloned().unwrap_or(json!({"Enabled": false})),
    })
}

fn http_description(http: &HttpDestination) -> Value {
    let attributes: Vec<Value> =
        http.common_attributes.iter().map(|(name, value)| json!({ "AttributeName": name, "AttributeValue": value })).collect();
    json!({
        "EndpointConfiguration": { "Url": http.url, "Name": http.name },
        "BufferingHints": { "SizeInMBs": http.buffering.size_mib, "IntervalInSeconds": http.buffering.interval_s },
        "CloudWatchLoggingOptions": http.kept.get("CloudWatchLoggingOptions").cloned().unwrap_or(json!({"Enabled": false})),
        "RequestConfiguration": { "ContentEncoding": if http.gzip { "GZIP" } else { "NONE" }, "CommonAttributes": attributes },
        "ProcessingConfiguration": processing(http.processing_enabled, &http.processors),
        "RoleARN": http.role_arn,
        "RetryOptions": { "DurationInSeconds": http.retry_s },
        "S3BackupMode": if http.backup_all { "AllData" } else { "FailedDataOnly" },
        "S3DestinationDescription": s3_description(&http.s3),
    })
}

/// `DescribeDeliveryStream`'s `DeliveryStreamDescription`.
pub fn description(meta: &DeliveryStreamMeta) -> Value {
    let s3 = match &meta.destination {
        Destination::S3(s3) => s3,
        Destination::Http(http) => {
            let destination = json!({ "DestinationId": DESTINATION_ID, "HttpEndpointDestinationDescription": http_description(http) });
            return stream_description(meta, destination);
        }
        Destination::Table(table) => {
            let mut described = table_fields(table, false);
            described["S3DestinationDescription"] = s3_description(&table.s3);
            if let Some(backup) = &table.backup {
                described["S3BackupDescription"] = s3_description(backup);
            }
            if described.get("CloudWatchLoggingOptions").is_none() {
                described["CloudWatchLoggingOptions"] = json!({"Enabled": false});
            }
            let destination = json!({ "DestinationId": DESTINATION_ID, "RedshiftDestinationDescription": described });
            return stream_description(meta, destination);
        }
        Destination::Search(search) => {
            let mut described = search_fields(search);
            described["S3DestinationDescription"] = s3_description(&search.s3);
            if described.get("CloudWatchLoggingOptions").is_none() {
                described["CloudWatchLoggingOptions"] = json!({"Enabled": false});
            }
            let destination = json!({ "DestinationId": DESTINATION_ID, format!("{}Description", search.service.key()): described });
            return stream_description(meta, destination);
        }
    };
    let base = s3_description(s3);
    let mut destination = json!({ "DestinationId": DESTINATION_ID, "S3DestinationDescription": base.clone() });
    if s3.extended {
        let mut extended = base;
        extended["ProcessingConfiguration"] = processing_json(s3);
        extended["S3BackupMode"] = json!(if s3.backup.is_some() { "Enabled" } else { "Disabled" });
        if let Some(backup) = &s3.backup {
            extended["S3BackupDescription"] = s3_description(backup);
        }
        if let Some(conversion) = &s3.conversion {
            extended["DataFormatConversionConfiguration"] = conversion.configuration.clone();
        }
        extended["DynamicPartitioningConfiguration"] = match s3.dynamic_partitioning {
            Some(retry_s) => json!({"Enabled": true, "RetryOptions": {"DurationInSeconds": retry_s}}),
            None => json!({"Enabled": false}),
        };
        if !s3.file_extension.is_empty() {
            extended["FileExtension"] = json!(s3.file_extension);
        }
        if let Some(zone) = s3.kept.get("CustomTimeZone") {
            extended["CustomTimeZone"] = zone.clone();
        }
        destination["ExtendedS3DestinationDescription"] = extended;
    }
    stream_description(meta, destination)
}

fn stream_description(meta: &DeliveryStreamMeta, destination: Value) -> Value {
    let mut described = json!({
        "DeliveryStreamName": meta.name,
        "DeliveryStreamARN": meta.arn,
        "DeliveryStreamStatus": "ACTIVE",
        "DeliveryStreamEncryptionConfiguration": match &meta.encryption {
            None => json!({ "Status": "DISABLED" }),
            Some(Encryption { key_arn: Some(arn) }) => json!({ "Status": "ENABLED", "KeyType": "CUSTOMER_MANAGED_CMK", "KeyARN": arn }),
            Some(_) => json!({ "Status": "ENABLED", "KeyType": "AWS_OWNED_CMK" }),
        },
        "DeliveryStreamType": meta.kind.name(),
        "VersionId": meta.version.to_string(),
        "CreateTimestamp": meta.created_ms as f64 / 1000.0,
        "LastUpdateTimestamp": meta.updated_ms as f64 / 1000.0,
        "Destinations": [destination],
        "HasMoreDestinations": false,
    });
    if let Some(source) = &meta.source {
        described["Source"] = json!({ "KinesisStreamSourceDescription": {
            "KinesisStreamARN": source.stream_arn,
            "RoleARN": source.role_arn,
            "DeliveryStartTimestamp": meta.created_ms as f64 / 1000.0,
        }});
    }
    described
}

// ---------------------------------------------------------------- the metadata file

/// One delivery stream as the metadata file keeps it.
pub fn delivery_stream_json(meta: &DeliveryStreamMeta) -> Value {
    let (key, configuration) = match &meta.destination {
        Destination::S3(s3) if s3.extended => ("ExtendedS3DestinationConfiguration", s3_configuration(s3)),
        Destination::S3(s3) => ("S3DestinationConfiguration", s3_configuration(s3)),
        Destination::Http(http) => ("HttpEndpointDestinationConfiguration", http_configuration(http)),
        Destination::Table(table) => {
            let mut config = table_fields(table, true);
            config["S3Configuration"] = s3_configuration(&table.s3);
            if let Some(backup) = &table.backup {
                config["S3BackupConfiguration"] = s3_configuration(backup);
            }
            ("RedshiftDestinationConfiguration", config)
        }
        Destination::Search(search) => {
            let mut config = search_fields(search);
            config["S3Configuration"] = s3_configuration(&search.s3);
            let key: &'static str = match search.service {
                SearchService::OpenSearch => "AmazonopensearchserviceDestinationConfiguration",
                SearchService::Elasticsearch => "ElasticsearchDestinationConfiguration",
            };
            (key, config)
        }
    };
    json!({
        "id": meta.id,
        "name": meta.name,
        "type": meta.kind.name(),
        "created_ms": meta.created_ms,
        "updated_ms": meta.updated_ms,
        "version": meta.version,
        "tags": meta.tags,
        "configuration": stored_configuration(meta, key, configuration),
    })
}

/// What the metadata file keeps of a delivery stream's request: its destination, and its
/// source and encryption when it has them.
fn stored_configuration(meta: &DeliveryStreamMeta, key: &str, destination: Value) -> Value {
    let mut configuration = json!({ key: destination });
    if let Some(source) = &meta.source {
        configuration["KinesisStreamSourceConfiguration"] = json!({ "KinesisStreamARN": source.stream_arn, "RoleARN": source.role_arn });
    }
    if let Some(encryption) = &meta.encryption {
        let mut input = json!({ "KeyType": encryption.key_type() });
        if let Some(arn) = &encryption.key_arn {
            input["KeyARN"] = json!(arn);
        }
        configuration["DeliveryStreamEncryptionConfigurationInput"] = input;
    }
    configuration
}

/// A search destination's fields, as its configuration and its description both hold them.
fn search_fields(search: &SearchDestination) -> Value {
    let mut fields = json!({
        "RoleARN": search.role_arn,
        "ClusterEndpoint": search.endpoint,
        "IndexName": search.index,
        "IndexRotationPeriod": search.rotation.name(),
        "BufferingHints": { "SizeInMBs": search.buffering.size_mib, "IntervalInSeconds": search.buffering.interval_s },
        "RetryOptions": { "DurationInSeconds": search.retry_s },
        "S3BackupMode": if search.backup_all { "AllDocuments" } else { "FailedDocumentsOnly" },
        "ProcessingConfiguration": processing(search.processing_enabled, &search.processors),
        "DocumentIdOptions": { "DefaultDocumentIdFormat": if search.document_ids { "FIREHOSE_DEFAULT" } else { "NO_DOCUMENT_ID" } },
    });
    if !search.type_name.is_empty() {
        fields["TypeName"] = json!(search.type_name);
    }
    for (key, value) in &search.kept {
        fields[key] = value.clone();
    }
    fields
}

/// An HTTP endpoint destination as the metadata file keeps it (the access key included: the
/// file is the server's own, mode 0600 like the rest of its data).
fn http_configuration(http: &HttpDestination) -> Value {
    let mut endpoint = json!({ "Url": http.url, "Name": http.name });
    if let Some(key) = &http.access_key {
        endpoint["AccessKey"] = json!(key);
    }
    let attributes: Vec<Value> =
        http.common_attributes.iter().map(|(name, value)| json!({ "AttributeName": name, "AttributeValue": value })).collect();
    let mut config = json!({
        "EndpointConfiguration": endpoint,
        "BufferingHints": { "SizeInMBs": http.buffering.size_mib, "IntervalInSeconds": http.buffering.interval_s },
        "RequestConfiguration": { "ContentEncoding": if http.gzip { "GZIP" } else { "NONE" }, "CommonAttributes": attributes },
        "ProcessingConfiguration": processing(http.processing_enabled, &http.processors),
        "RoleARN": http.role_arn,
        "RetryOptions": { "DurationInSeconds": http.retry_s },
        "S3BackupMode": if http.backup_all { "AllData" } else { "FailedDataOnly" },
        "S3Configuration": s3_configuration(&http.s3),
    });
    for (key, value) in &http.kept {
        config[key] = value.clone();
    }
    config
}

pub fn to_json(streams: &DeliveryStreams) -> Value {
    Value::Array(streams.values().map(|meta| delivery_stream_json(meta)).collect())
}

/// Reads the delivery streams back, checking everything (it comes from disk).
pub fn from_json(naming: &Naming, value: &Value, next_id: u64) -> Result<DeliveryStreams, String> {
    let mut out = DeliveryStreams::new();
    for item in value.as_array().into_iter().flatten() {
        let name = item["name"].as_str().ok_or("a delivery stream has no name")?;
        let number = |key: &str| item[key].as_u64().ok_or_else(|| format!("delivery stream {name}: {key} is not a number"));
        let id = number("id")?;
        if id >= next_id {
            return Err(format!("delivery stream {name} has id {id} at or past next_id"));
        }
        let tags: KeyValues = item["tags"]
            .as_object()
            .into_iter()
            .flatten()
            .map(|(key, value)| Ok((key.clone(), value.as_str().ok_or("a tag value is not a string")?.to_owned())))
            .collect::<Result<_, String>>()?;
        let mut configuration = item["configuration"].clone();
        configuration["DeliveryStreamType"] = item["type"].clone();
        let mut meta = create(naming, id, name, &configuration.to_string(), &tags, number("created_ms")?)
            .map_err(|e| format!("delivery stream {name}: {}", e.message))?;
        meta.updated_ms = number("updated_ms")?;
        meta.version = number("version")?;
        out.insert(name.to_owned(), Arc::new(meta));
    }
    Ok(out)
}

// ---------------------------------------------------------------- changes

#[derive(Debug, Clone)]
pub enum FirehoseChange {
    Create {
        name: String,
        configuration: String,
        tags: KeyValues,
    },
    Delete {
        name: String,
    },
    Update {
        name: String,
        current_version_id: String,
        destination_id: String,
        configuration: String,
    },
    Tag {
        name: String,
        tags: KeyValues,
    },
    Untag {
        name: String,
        keys: Vec<String>,
    },
    /// Start (`Some`) or stop (`None`) server-side encryption.
    Encryption {
        name: String,
        encryption: Option<Encryption>,
    },
}

/// Applies a change; returns the ARN a create answers with.
pub fn apply(
    streams: &mut DeliveryStreams,
    next_id: &mut u64,
    naming: &Naming,
    change: FirehoseChange,
    now_ms: u64,
) -> Result<Option<String>, OpError> {
    let found = |streams: &DeliveryStreams, name: &str| streams.get(name_of(name)).cloned().ok_or_else(|| not_found(name_of(name), naming));
    match change {
        FirehoseChange::Create { name, configuration, tags } => {
            if streams.contains_key(&name) {
                return Err(OpError::new(
                    ErrorCode::ResourceInUse,
                    format!("Firehose {name} under accountId {} already exists", naming.account_id),
                ));
            }
            if streams.len() >= DELIVERY_STREAMS_MAX {
                return Err(OpError::new(
                    ErrorCode::LimitExceeded,
                    format!("This server keeps at most {DELIVERY_STREAMS_MAX} delivery streams."),
                ));
            }
            let meta = create(naming, *next_id, &name, &configuration, &tags, now_ms)?;
            *next_id += 1;
            let arn = meta.arn.clone();
            streams.insert(name, Arc::new(meta));
            Ok(Some(arn))
        }
        FirehoseChange::Delete { name } => {
            found(streams, &name)?;
            streams.remove(name_of(&name));
            Ok(None)
        }
        FirehoseChange::Update { name, current_version_id, destination_id, configuration } => {
            let meta = found(streams, &name)?;
            if current_version_id != meta.version.to_string() {
                return Err(OpError::new(
                    ErrorCode::ConcurrentModification,
                    format!("Version id {current_version_id} does not match the current version id {}.", meta.version),
                ));
            }
            if destination_id != DESTINATION_ID {
                return Err(invalid(format!("Destination {destination_id} not found; the destination is {DESTINATION_ID}.")));
            }
            let after = updated(&meta, &configuration, now_ms)?;
            streams.insert(meta.name.clone(), Arc::new(after));
            Ok(None)
        }
        FirehoseChange::Encryption { name, encryption } => {
            let meta = found(streams, &name)?;
            if meta.source.is_some() {
                return Err(invalid(format!(
                    "Delivery stream {name} reads a Kinesis stream: encrypt the stream (StartStreamEncryption) instead, as Firehose requires."
                )));
            }
            streams.insert(meta.name.clone(), Arc::new(DeliveryStreamMeta { encryption, updated_ms: now_ms, ..(*meta).clone() }));
            Ok(None)
        }
        FirehoseChange::Tag { name, tags } => {
            let meta = found(streams, &name)?;
            let tags = check_tags(meta.tags.clone(), &tags)?;
            streams.insert(meta.name.clone(), Arc::new(DeliveryStreamMeta { tags, ..(*meta).clone() }));
            Ok(None)
        }
        FirehoseChange::Untag { name, keys } => {
            let meta = found(streams, &name)?;
            if keys.is_empty() || keys.len() > TAGS_MAX {
                return Err(invalid(format!("TagKeys must hold 1 to {TAGS_MAX} keys.")));
            }
            let mut tags = meta.tags.clone();
            for key in &keys {
                tags.remove(key);
            }
            streams.insert(meta.name.clone(), Arc::new(DeliveryStreamMeta { tags, ..(*meta).clone() }));
            Ok(None)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naming() -> Naming {
        Naming { region: "us-east-1".into(), account_id: "000000000000".into(), public_url: String::new(), authorization: false }
    }

    const S3: &str = r#"{"DeliveryStreamType":"DirectPut","ExtendedS3DestinationConfiguration":{
        "RoleARN":"arn:aws:iam::000000000000:role/firehose","BucketARN":"arn:aws:s3:::logs",
        "Prefix":"app/","BufferingHints":{"SizeInMBs":1,"IntervalInSeconds":60},"CompressionFormat":"GZIP",
        "ProcessingConfiguration":{"Enabled":true,"Processors":[{"Type":"AppendDelimiterToRecord","Parameters":[]}]}}}"#;

    #[test]
    fn a_configuration_is_read_checked_and_kept_the_same_through_the_metadata_file() {
        let meta = create(&naming(), 7, "d", S3, &vec![("team".into(), "a".into())], 1_000).unwrap();
        let Destination::S3(s3) = &meta.destination else { panic!("an S3 destination") };
        assert_eq!(s3.bucket, "logs");
        assert_eq!(s3.compression, Compression::Gzip);
        assert_eq!(s3.buffering, Buffering { size_mib: 1, interval_s: 60 });
        assert_eq!(s3.processors, vec![Processor::AppendDelimiterToRecord { delimiter: b"\n".to_vec() }]);
        let streams: DeliveryStreams = [("d".to_owned(), Arc::new(meta.clone()))].into();
        let back = from_json(&naming(), &to_json(&streams), 8).unwrap();
        assert_eq!(*back["d"], meta);
        let described = description(&meta);
        assert_eq!(described["Destinations"][0]["ExtendedS3DestinationDescription"]["CompressionFormat"], "GZIP");
        assert_eq!(described["VersionId"], "1");
    }

    #[test]
    fn bad_configurations_are_refused_by_name() {
        let refused = |config: &str| create(&naming(), 1, "d", config, &Vec::new(), 0).unwrap_err().message;
        assert!(refused("{}").contains("needs a destination"));
        assert!(refused(r#"{"ExtendedS3DestinationConfiguration":{"RoleARN":"r","BucketARN":"arn:aws:s3:::B"}}"#).contains("bucket name"));
        let size =
            r#"{"ExtendedS3DestinationConfiguration":{"RoleARN":"r","BucketARN":"arn:aws:s3:::b-1","BufferingHints":{"SizeInMBs":129}}}"#;
        assert!(refused(size).contains("SizeInMBs"));
        let lambda = r#"{"ExtendedS3DestinationConfiguration":{"RoleARN":"r","BucketARN":"arn:aws:s3:::b-1","ProcessingConfiguration":{"Enabled":true,"Processors":[{"Type":"Lambda"}]}}}"#;
        assert!(refused(lambda).contains("needs the parameter LambdaArn"));
        let function = |arn: &str| {
            format!(
                r#"{{"ExtendedS3DestinationConfiguration":{{"RoleARN":"r","BucketARN":"arn:aws:s3:::b-1","ProcessingConfiguration":{{"Enabled":true,"Processors":[{{"Type":"Lambda","Parameters":[{{"ParameterName":"LambdaArn","ParameterValue":"{arn}"}}]}}]}}}}}}"#
            )
        };
        assert!(refused(&function("lambda-name")).contains("neither a Lambda function ARN"));
        assert!(create(&naming(), 1, "d", &function("arn:aws:lambda:us-east-1:1:function:f:live"), &Vec::new(), 0).is_ok());
        assert!(create(&naming(), 1, "d", &function("http://127.0.0.1:9/f"), &Vec::new(), 0).is_ok());
        assert!(refused(r#"{"HttpEndpointDestinationConfiguration":{}}"#).contains("EndpointConfiguration is required"));
        assert!(refused(r#"{"SplunkDestinationConfiguration":{}}"#).contains("not supported"));
        let no_backup = r#"{"HttpEndpointDestinationConfiguration":{"EndpointConfiguration":{"Url":"https://example.com/"}}}"#;
        assert!(refused(no_backup).contains("S3Configuration"));
        assert!(create(&naming(), 1, "bad name", S3, &Vec::new(), 0).is_err());
    }

    const PARTITIONED: &str = r#"{"ExtendedS3DestinationConfiguration":{"RoleARN":"r","BucketARN":"arn:aws:s3:::logs",
        "Prefix":"c=!{partitionKeyFromQuery:customer}/!{timestamp:yyyy}/","ErrorOutputPrefix":"errors/!{firehose:error-output-type}/",
        "BufferingHints":{"SizeInMBs":64,"IntervalInSeconds":1},"DynamicPartitioningConfiguration":{"Enabled":true},
        "S3BackupMode":"Enabled","S3BackupConfiguration":{"RoleARN":"r","BucketARN":"arn:aws:s3:::source","Prefix":"raw/"},
        "ProcessingConfiguration":{"Enabled":true,"Processors":[{"Type":"MetadataExtraction","Parameters":[
            {"ParameterName":"MetadataExtractionQuery","ParameterValue":"{customer: .customer.id}"},
            {"ParameterName":"JsonParsingEngine","ParameterValue":"JQ-1.6"}]}]}}}"#;

    #[test]
    fn dynamic_partitioning_and_source_backup_are_checked_and_kept() {
        let meta = create(&naming(), 3, "p", PARTITIONED, &Vec::new(), 0).unwrap();
        let Destination::S3(s3) = &meta.destination else { panic!("an S3 destination") };
        assert_eq!(s3.dynamic_partitioning, Some(300));
        assert_eq!(s3.backup.as_ref().map(|backup| backup.bucket.as_str()), Some("source"));
        let streams: DeliveryStreams = [("p".to_owned(), Arc::new(meta.clone()))].into();
        assert_eq!(*from_json(&naming(), &to_json(&streams), 4).unwrap()["p"], meta);
        let described = &description(&meta)["Destinations"][0]["ExtendedS3DestinationDescription"];
        assert_eq!(described["S3BackupMode"], "Enabled");
        assert_eq!(described["S3BackupDescription"]["BucketARN"], "arn:aws:s3:::source");
        assert_eq!(described["DynamicPartitioningConfiguration"]["Enabled"], true);
        assert_eq!(described["ProcessingConfiguration"]["Processors"][0]["Type"], "MetadataExtraction");

        let refused = |from: &str, to: &str| create(&naming(), 1, "d", &PARTITIONED.replace(from, to), &Vec::new(), 0).unwrap_err().message;
        assert!(refused(r#""SizeInMBs":64"#, r#""SizeInMBs":5"#).contains("at least 64"));
        assert!(refused("partitionKeyFromQuery:customer", "partitionKeyFromQuery:region").contains("does not name"));
        assert!(refused("partitionKeyFromQuery:customer", "partitionKeyFromLambda:customer").contains("no Lambda processor"));
        assert!(refused(r#"Configuration":{"Enabled":true}"#, r#"Configuration":{"Enabled":false}"#)
            .contains("needs DynamicPartitioningConfiguration"));
        assert!(
            refused("errors/!{firehose:error-output-type}/", "e/!{partitionKeyFromQuery:customer}/").contains("ErrorOutputPrefix cannot")
        );
        assert!(refused("{customer: .customer.id}", "{customer: .customer | keys}").contains("keys is not supported"));
        assert!(refused(r#""S3BackupMode":"Enabled","#, "").contains("S3BackupMode is not Enabled"));

        // Neither partitioning nor the backup can be switched off later.
        let update = |configuration: &str| updated(&meta, configuration, 1).map(|_| ()).unwrap_err().message;
        assert!(update(r#"{"ExtendedS3DestinationUpdate":{"DynamicPartitioningConfiguration":{"Enabled":false}}}"#)
            .contains("cannot be turned"));
        assert!(update(r#"{"ExtendedS3DestinationUpdate":{"S3BackupMode":"Disabled"}}"#).contains("cannot be disabled"));
        let renamed = updated(&meta, r#"{"ExtendedS3DestinationUpdate":{"S3BackupUpdate":{"Prefix":"raw2/"}}}"#, 1).unwrap();
        let Destination::S3(s3) = &renamed.destination else { panic!("an S3 destination") };
        assert_eq!(s3.backup.as_ref().map(|backup| (backup.prefix.as_str(), backup.bucket.as_str())), Some(("raw2/", "source")));
    }

    #[test]
    fn a_search_destination_is_read_kept_and_updated() {
        let config = r#"{"ElasticsearchDestinationConfiguration":{"RoleARN":"r","ClusterEndpoint":"https://search.example.com/",
            "IndexName":"logs","TypeName":"_doc","IndexRotationPeriod":"OneWeek","S3BackupMode":"AllDocuments",
            "DocumentIdOptions":{"DefaultDocumentIdFormat":"NO_DOCUMENT_ID"},"S3Configuration":{"RoleARN":"r","BucketARN":"arn:aws:s3:::backup"}}}"#;
        let meta = create(&naming(), 5, "s", config, &Vec::new(), 0).unwrap();
        let Destination::Search(search) = &meta.destination else { panic!("a search destination") };
        assert_eq!(
            (search.endpoint.as_str(), search.rotation, search.backup_all, search.document_ids),
            ("https://search.example.com", Rotation::OneWeek, true, false)
        );
        assert_eq!((search.buffering, search.retry_s), (Buffering { size_mib: 5, interval_s: 300 }, 300));
        let streams: DeliveryStreams = [("s".to_owned(), Arc::new(meta.clone()))].into();
        assert_eq!(*from_json(&naming(), &to_json(&streams), 6).unwrap()["s"], meta);
        assert_eq!(description(&meta)["Destinations"][0]["ElasticsearchDestinationDescription"]["TypeName"], "_doc");
        let renamed = updated(&meta, r#"{"ElasticsearchDestinationUpdate":{"IndexName":"logs2"}}"#, 1).unwrap();
        let Destination::Search(search) = &renamed.destination else { panic!("a search destination") };
        assert_eq!((search.index.as_str(), search.rotation), ("logs2", Rotation::OneWeek));
        assert!(updated(&meta, r#"{"AmazonopensearchserviceDestinationUpdate":{"IndexName":"x"}}"#, 1).is_err());
        let refused = |from: &str, to: &str| create(&naming(), 1, "d", &config.replace(from, to), &Vec::new(), 0).unwrap_err().message;
        assert!(refused(r#""IndexName":"logs""#, r#""IndexName":"Logs""#).contains("lowercase"));
        assert!(refused("OneWeek", "OneYear").contains("IndexRotationPeriod"));
        assert!(refused(r#""ClusterEndpoint":"https://search.example.com/""#, r#""VpcConfiguration":{}"#).contains("VpcConfiguration"));
    }

    #[test]
    fn a_table_destination_reads_its_jdbc_url_and_copy_options() {
        assert_eq!(copy_format(""), Ok(CopyFormat::Text { delimiter: b'|' }));
        assert_eq!(copy_format("csv delimiter as ';'"), Ok(CopyFormat::Csv { delimiter: b';' }));
        assert_eq!(copy_format("FORMAT AS JSON 'auto'"), Ok(CopyFormat::JsonAuto));
        assert_eq!(copy_format("DELIMITER '\\t'"), Ok(CopyFormat::Text { delimiter: b'\t' }));
        assert!(copy_format("JSON 's3://bucket/paths.json'").unwrap_err().contains("JSONPaths"));
        assert!(copy_format("MAXERROR 5").unwrap_err().contains("MAXERROR is not supported"));
        let config = r#"{"RedshiftDestinationConfiguration":{"RoleARN":"r","ClusterJDBCURL":"jdbc:redshift://db.example.com/dev",
            "CopyCommand":{"DataTableName":"public.events","DataTableColumns":"id, name"},"Username":"u","Password":"p",
            "S3Configuration":{"RoleARN":"r","BucketARN":"arn:aws:s3:::staging"}}}"#;
        let meta = create(&naming(), 9, "t", config, &Vec::new(), 0).unwrap();
        let Destination::Table(table) = &meta.destination else { panic!("a table destination") };
        assert_eq!((table.host.as_str(), table.port, table.database.as_str()), ("db.example.com", 5439, "dev"));
        assert_eq!(table.columns, ["id", "name"]);
        let streams: DeliveryStreams = [("t".to_owned(), Arc::new(meta.clone()))].into();
        assert_eq!(*from_json(&naming(), &to_json(&streams), 10).unwrap()["t"], meta, "the password is kept in the metadata file");
        assert!(description(&meta)["Destinations"][0]["RedshiftDestinationDescription"].get("Password").is_none());
        let refused = |from: &str, to: &str| create(&naming(), 1, "d", &config.replace(from, to), &Vec::new(), 0).unwrap_err().message;
        assert!(refused("public.events", "events; drop table x").contains("DataTableName"));
        assert!(refused("jdbc:redshift://", "mysql://").contains("ClusterJDBCURL"));
    }

    #[test]
    fn an_update_changes_what_it_names_and_checks_the_version() {
        let mut streams = DeliveryStreams::new();
        let mut next_id = 1;
        let create = FirehoseChange::Create { name: "d".into(), configuration: S3.into(), tags: Vec::new() };
        apply(&mut streams, &mut next_id, &naming(), create, 0).unwrap();
        let update = |version: &str| FirehoseChange::Update {
            name: "d".into(),
            current_version_id: version.into(),
            destination_id: DESTINATION_ID.into(),
            configuration: r#"{"ExtendedS3DestinationUpdate":{"CompressionFormat":"Snappy"}}"#.into(),
        };
        let stale = apply(&mut streams, &mut next_id, &naming(), update("2"), 5).unwrap_err();
        assert_eq!(stale.code, ErrorCode::ConcurrentModification);
        apply(&mut streams, &mut next_id, &naming(), update("1"), 5).unwrap();
        let Destination::S3(s3) = &streams["d"].destination else { panic!("an S3 destination") };
        assert_eq!((s3.compression, s3.bucket.as_str(), streams["d"].version), (Compression::Snappy, "logs", 2));
        assert_eq!(s3.buffering.size_mib, 1, "what the update did not name stays");
    }
}
