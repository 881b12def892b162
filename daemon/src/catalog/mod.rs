//! The metadata catalog: which queues, topics and streams exist, with their attributes,
//! tags, ids and paging — no engine's logic.
//!
//! - `queues`: queue attributes and names; `topics` (with `filter`, the filter-policy
//!   language a subscription is compiled to): topics and subscriptions; `streams`:
//!   streams, their shards, key routing and sequence numbers, resharding.
//!
//! `Registry` lives on shard 0 only and is the single writer. Every change
//! produces a new immutable `Snapshot` that shard 0 publishes to every shard
//! (and waits for) before answering, so a queue created through one connection
//! is usable through any other as soon as the answer arrives.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use sluice_protocol::limits::*;
use sluice_protocol::{ErrorCode, KeyValues, OpError};

pub mod alarms;
pub mod current;
pub mod delivery;
pub mod feeds;
pub mod filter;
pub mod firehose;
pub mod groups;
pub mod jq;
pub mod moves;
pub mod queues;
pub mod streams;
pub mod topics;

pub use feeds::{FeedPlan, FeedRead, FeedReader};
use streams::{StreamChange, StreamOutcome, Streams};
use topics::{SubscriptionMeta, TopicChange, Topics};

use queues::{parse_queue_arn, valid_queue_name, QueueAttributes, READABLE_ATTRIBUTES};

use crate::kms::at_rest::{SealSpec, Sealing};
use crate::kms::keys::{KeyChange, KeyNaming, Keys, KmsKey};
use crate::kms::root::RootKey;

/// Prefix of the hidden queues that hold HTTP subscriptions' deliveries (the catalog keeps
/// them beside client queues, hidden from listings); a client cannot name a queue like this
/// (only `.fifo` may carry a dot).
pub const DELIVERY_QUEUE_PREFIX: &str = "sluice.http-delivery.";

/// Whether a queue name is a hidden delivery queue.
pub fn is_delivery_queue(name: &str) -> bool {
    name.starts_with(DELIVERY_QUEUE_PREFIX)
}

/// Where queue URLs and ARNs point.
#[derive(Debug, Clone, Default)]
pub struct Naming {
    pub region: String,
    pub account_id: String,
    /// Base of queue URLs, e.g. `http://127.0.0.1:4566`.
    pub public_url: String,
    /// Whether access is decided (`--credentials`): then SNS delivers to a queue only when
    /// the queue's policy allows it (`policy::sns_may_deliver`).
    pub authorization: bool,
}

impl Naming {
    pub fn arn(&self, name: &str) -> String {
        format!("arn:aws:sqs:{}:{}:{}", self.region, self.account_id, name)
    }

    pub fn url(&self, name: &str) -> String {
        format!("{}/{}/{}", self.public_url.trim_end_matches('/'), self.account_id, name)
    }
}

/// One queue's metadata, immutable once published.
#[derive(Debug, Clone)]
pub struct QueueMeta {
    /// Unique for this incarnation of the name: a deleted and recreated queue gets a new id,
    /// so receipt handles of the old one never touch the new one.
    pub id: u64,
    pub name: String,
    pub arn: String,
    pub url: String,
    pub attributes: QueueAttributes,
    pub tags: BTreeMap<String, String>,
    pub created_s: u64,
    pub modified_s: u64,
    /// A FIFO queue made for high throughput (`FifoThroughputLimit=perMessageGroupId`, so
    /// deduplicated per group): its message groups are spread over the shards by their id
    /// (`queue::fifo::group_owner`) instead of all living on the queue's owner. Fixed when the
    /// queue is made, since a group must never have messages on two shards at once.
    pub groups_spread: bool,
}

/// Whether a FIFO queue made with `attributes` spreads its groups over the shards.
fn spreads_groups(attributes: &QueueAttributes) -> bool {
    attributes.fifo && attributes.fifo_throughput_limit == queues::FifoThroughputLimit::PerMessageGroupId
}

/// The metadata every shard reads; replaced as a whole on every change.
#[derive(Debug, Default)]
pub struct Snapshot {
    pub version: u64,
    pub naming: Naming,
    pub by_name: BTreeMap<String, Arc<QueueMeta>>,
    pub by_id: HashMap<u64, Arc<QueueMeta>>,
    pub topics: Topics,
    pub streams: Streams,
    /// Firehose delivery streams (every core takes puts for each).
    pub firehose: Arc<firehose::DeliveryStreams>,
    /// For each topic (by name), the queue each of its subscriptions delivers to, in the
    /// order of `TopicMeta::subscriptions` (`None`: not an SQS subscription, or no such
    /// queue): resolved once per snapshot (`Snapshot::new`), not per publish.
    pub subscribed: HashMap<String, Vec<Option<Arc<QueueMeta>>>>,
    /// For each topic (by name) with any, which of its SQS subscriptions' queues do not let
    /// it deliver (their policies do not allow the topic; only with `Naming::authorization`),
    /// in the order of `TopicMeta::subscriptions`; resolved once per snapshot.
    pub denied: HashMap<String, Vec<bool>>,
    /// For each topic (by name), which of its subscriptions read its feed and which are
    /// delivered to one by one (`queue::feed`); resolved once per snapshot.
    pub feeds: HashMap<String, Arc<FeedPlan>>,
    /// For each queue (by id), the feeds it reads.
    pub reads: HashMap<u64, Vec<FeedRead>>,
    /// The key service's keys and aliases.
    pub keys: Arc<Keys>,
    /// How the records of each encrypted queue partition are sealed at rest, by queue id:
    /// client queues (SSE-SQS or SSE-KMS), and a topic's feeds, FIFO archive and HTTP delivery
    /// queues (its `KmsMasterKeyId`). Resolved once per snapshot.
    pub sealed: Arc<HashMap<u64, SealSpec>>,
}

/// Reuse period of a topic's and a stream's data keys (SNS and Kinesis have no setting for it).
const TOPIC_DATA_KEY_REUSE_MS: u64 = 300_000;
const STREAM_DATA_KEY_REUSE_MS: u64 = 300_000;

/// How a resource with this KMS key reference (or SSE-SQS) is sealed.
pub fn seal_spec(keys: &Keys, reference: Option<&str>, sse_sqs: bool, reuse_ms: u64) -> Option<SealSpec> {
    let sealing = match reference {
        Some(reference) => match (keys.resolve(reference), Keys::managed_service(reference)) {
            (Some(key), _) => Sealing::Key(key.clone()),
            (None, Some(service)) => Sealing::Unmade(KeyChange::Managed { service: service.to_owned() }),
            (None, None) => Sealing::Missing(reference.to_owned()),
        },
        None if sse_sqs => match keys.owned("sqs") {
            Some(key) => Sealing::Key(key.clone()),
            None => Sealing::Unmade(KeyChange::Owned { service: "sqs".to_owned() }),
        },
        None => return None,
    };
    Some(SealSpec { sealing, reuse_ms })
}

/// How a delivery stream with `encryption` seals: under the customer's key (`KeyARN`), or
/// under the key Firehose owns (AWS_OWNED_CMK: a key of this server's key service owned by
/// the service, made on first use and not listed, as SQS's SSE-SQS key).
pub fn firehose_seal_spec(keys: &Keys, encryption: &firehose::Encryption, reuse_ms: u64) -> Option<SealSpec> {
    match &encryption.key_arn {
        Some(arn) => seal_spec(keys, Some(arn), false, reuse_ms),
        None => {
            let sealing = match keys.owned("firehose") {
                Some(key) => Sealing::Key(key.clone()),
                None => Sealing::Unmade(KeyChange::Owned { service: "firehose".to_owned() }),
            };
            Some(SealSpec { sealing, reuse_ms })
        }
    }
}

impl Snapshot {
    /// A snapshot of these queues, topics and streams, with what is derived from them: queues
    /// by id, and every SQS subscription's queue.
    fn new(
        version: u64,
        naming: Naming,
        by_name: BTreeMap<String, Arc<QueueMeta>>,
        topics: Topics,
        streams: Streams,
        firehose: Arc<firehose::DeliveryStreams>,
        keys: Arc<Keys>,
    ) -> Snapshot {
        let by_id = by_name.values().map(|meta| (meta.id, meta.clone())).collect();
        let mut snapshot = Snapshot {
            keys,
            sealed: Arc::default(),
            version,
            naming,
            by_name,
            by_id,
            topics,
            streams,
            firehose,
            subscribed: HashMap::new(),
            denied: HashMap::new(),
            feeds: HashMap::new(),
            reads: HashMap::new(),
        };
        let subscribed = snapshot
            .topics
            .iter()
            .map(|(name, topic)| {
                let queue = |subscription: &Arc<SubscriptionMeta>| {
                    (subscription.protocol == "sqs").then(|| snapshot.queue_by_arn(&subscription.endpoint).cloned()).flatten()
                };
                (name.clone(), topic.subscriptions.iter().map(queue).collect())
            })
            .collect();
        snapshot.subscribed = subscribed;
        if snapshot.naming.authorization {
            let mut denied = HashMap::new();
            for (name, topic) in snapshot.topics.iter() {
                let refused: Vec<bool> = (0..topic.subscriptions.len())
                    .map(|index| {
                        snapshot.subscribed_queue(name, index).is_some_and(|queue| {
                            let policy = queue.attributes.policy.as_ref().map(|policy| &*policy.compiled);
                            !crate::policy::sns_may_deliver(&queue.arn, policy, &topic.arn, &snapshot.naming.account_id)
                        })
                    })
                    .collect();
                if refused.contains(&true) {
                    denied.insert(name.clone(), refused);
                }
            }
            snapshot.denied = denied;
        }
        for (name, topic) in snapshot.topics.iter() {
            let mut plan = FeedPlan {
                feed_id: feeds::feed_id(&topic.arn),
                envelope_feed_id: feeds::envelope_feed_id(&topic.arn),
                max_size_min: usize::MAX,
                envelope_room_min: usize::MAX,
                ..FeedPlan::default()
            };
            for (index, subscription) in topic.subscriptions.iter().enumerate() {
                plan.body_filters |= subscription.filter.is_some() && subscription.scope == filter::Scope::MessageBody;
                match snapshot.subscribed_queue(name, index) {
                    Some(queue) if feeds::reads_feed(subscription) && !snapshot.delivery_denied(name, index) => {
                        let max_size = queue.attributes.maximum_message_size as usize;
                        let envelope = !subscription.raw;
                        if envelope {
                            plan.envelope_room_min = plan.envelope_room_min.min(max_size.saturating_sub(subscription.arn.len()));
                            plan.envelope_readers += 1;
                        } else {
                            plan.max_size_min = plan.max_size_min.min(max_size);
                            plan.raw_readers += 1;
                        }
                        let reader = FeedReader {
                            index,
                            key: feeds::cursor_key(&subscription.arn),
                            queue: queue.clone(),
                            envelope,
                            arn: Arc::from(subscription.arn.as_str()),
                        };
                        let arn = envelope.then(|| reader.arn.clone());
                        snapshot.reads.entry(queue.id).or_default().push(FeedRead { key: reader.key, feed_id: reader.feed_id(&plan), arn });
                        plan.readers.push(reader);
                    }
                    _ => plan.others.push(index),
                }
            }
            snapshot.feeds.insert(name.clone(), Arc::new(plan));
        }
        let mut sealed = HashMap::new();
        for queue in snapshot.by_name.values() {
            let attributes = &queue.attributes;
            let reuse_ms = attributes.kms_data_key_reuse_seconds as u64 * 1000;
            if let Some(spec) =
                seal_spec(&snapshot.keys, attributes.kms_master_key_id.as_deref(), attributes.sqs_managed_sse_enabled, reuse_ms)
            {
                sealed.insert(queue.id, spec);
            }
        }
        for topic in snapshot.topics.values() {
            let Some(spec) = seal_spec(&snapshot.keys, topic.kms_master_key_id(), false, TOPIC_DATA_KEY_REUSE_MS) else { continue };
            let deliveries = topic.subscriptions.iter().filter_map(|subscription| subscription.delivery_queue());
            let delivery_ids: Vec<u64> = deliveries.filter_map(|name| snapshot.by_name.get(&name).map(|meta| meta.id)).collect();
            let ids = [feeds::feed_id(&topic.arn), feeds::envelope_feed_id(&topic.arn), feeds::topic_window_id(&topic.arn)];
            for id in ids.into_iter().chain(delivery_ids) {
                sealed.insert(id, spec.clone());
            }
        }
        snapshot.sealed = Arc::new(sealed);
        snapshot
    }

    /// How a stream's records are sealed at rest (`None`: in clear).
    /// How a delivery stream's buffered records are sealed at rest; `None`: in clear.
    pub fn firehose_sealing(&self, meta: &firehose::DeliveryStreamMeta) -> Option<SealSpec> {
        meta.encryption.as_ref().and_then(|encryption| firehose_seal_spec(&self.keys, encryption, STREAM_DATA_KEY_REUSE_MS))
    }

    pub fn stream_sealing(&self, meta: &streams::StreamMeta) -> Option<SealSpec> {
        seal_spec(&self.keys, meta.encryption_key.as_deref(), false, STREAM_DATA_KEY_REUSE_MS)
    }

    /// How the records of queue partition `queue_id` (a queue, feed or archive) are sealed at
    /// rest; `None`: in clear.
    pub fn sealing(&self, queue_id: u64) -> Option<&SealSpec> {
        self.sealed.get(&queue_id)
    }

    /// The queue subscription `index` of topic `topic` delivers to, if it is an SQS
    /// subscription whose queue exists.
    pub fn subscribed_queue(&self, topic: &str, index: usize) -> Option<&Arc<QueueMeta>> {
        self.subscribed.get(topic)?.get(index)?.as_ref()
    }

    /// Whether the queue of subscription `index` of topic `topic` refuses the topic's
    /// deliveries (its policy does not allow them).
    pub fn delivery_denied(&self, topic: &str, index: usize) -> bool {
        self.denied.get(topic).and_then(|denied| denied.get(index)).copied().unwrap_or(false)
    }

    /// Finds a client's queue by name or URL (the URL's last path segment names the queue).
    /// Hidden delivery queues are not found.
    pub fn resolve(&self, queue: &str) -> Result<&Arc<QueueMeta>, OpError> {
        let name = queue.trim_end_matches('/').rsplit('/').next().unwrap_or(queue);
        self.by_name.get(name).filter(|meta| !is_delivery_queue(&meta.name)).ok_or_else(queue_does_not_exist)
    }

    /// A client's queue an SQS ARN names, if it exists.
    pub fn queue_by_arn(&self, arn: &str) -> Option<&Arc<QueueMeta>> {
        self.by_name.get(parse_queue_arn(arn)?).filter(|meta| meta.arn == arn && !is_delivery_queue(&meta.name))
    }

    /// The queues clients see (every queue but the hidden delivery queues), by name.
    pub fn client_queues(&self) -> impl Iterator<Item = &Arc<QueueMeta>> {
        self.by_name.values().filter(|meta| !is_delivery_queue(&meta.name))
    }

    /// The dead-letter queue a queue's RedrivePolicy names, if it exists.
    pub fn dead_letter_queue(&self, queue: &QueueMeta) -> Option<&Arc<QueueMeta>> {
        let policy = queue.attributes.redrive_policy.as_ref()?;
        self.by_name.get(parse_queue_arn(&policy.dead_letter_target_arn)?)
    }
}

pub fn queue_does_not_exist() -> OpError {
    OpError::new(ErrorCode::QueueDoesNotExist, "The specified queue does not exist.")
}

/// A change to metadata; runs on shard 0.
#[derive(Debug, Clone)]
pub enum MetaChange {
    Create {
        name: String,
        attributes: KeyValues,
        tags: KeyValues,
    },
    Delete {
        queue: String,
    },
    SetAttributes {
        queue: String,
        attributes: KeyValues,
    },
    Tag {
        queue: String,
        tags: KeyValues,
    },
    Untag {
        queue: String,
        keys: Vec<String>,
    },
    /// AddPermission / RemovePermission on the queue's policy.
    Permission {
        queue: String,
        edit: crate::policy::PermissionEdit,
    },
    /// Records a purge (SQS allows one per minute); the caller then purges every shard.
    Purge {
        queue: String,
    },
    Topic(TopicChange),
    /// A stream change. Shard 0 fills `sealed` (the last log sequence numbers of the shards
    /// a reshard closes, from their owners) and `cores` before applying it.
    Stream {
        change: StreamChange,
        sealed: HashMap<(u64, u32), u64>,
        cores: usize,
    },
    /// A change to the key service's keys and aliases.
    Key(KeyChange),
    /// A change to a message move task.
    Move(moves::MoveChange),
    /// Not a change: the move tasks of one queue (by id), or every active task (`None`).
    Moves(Option<u64>),
    /// A stream consumer group's leases or checkpoints (`groups`).
    Group(groups::GroupChange),
    /// A CloudWatch alarm change (`alarms`).
    Alarm(alarms::AlarmChange),
    /// A Firehose delivery stream change (`firehose`).
    Firehose(firehose::FirehoseChange),
}

/// What a successful change answers.
#[derive(Debug, Clone)]
pub enum MetaOutcome {
    Url(String),
    Done,
    /// A purge was recorded for this queue id.
    Purge(u64),
    /// A topic or subscription change; the ARN it answers with, if any.
    Arn(Option<String>),
    Stream(StreamOutcome),
    /// A key change; the key it is about, if any.
    Key(Option<Arc<KmsKey>>),
    /// A move task as a change left it (kept in the metadata file; snapshots do not hold tasks).
    Move(Arc<moves::MoveTask>),
    /// Move tasks, the most recent first.
    Moves(Vec<Arc<moves::MoveTask>>),
    /// A consumer group's leases.
    Leases(sluice_protocol::ShardLeases),
    /// An alarm change.
    Alarm(alarms::AlarmOutcome),
}

/// How much metadata one server keeps: every entity is held in memory on every shard and
/// written to the metadata file. Set from the command line (`--queues-max`, …).
#[derive(Debug, Clone, Copy)]
pub struct MetaLimits {
    /// Queues clients create (hidden delivery queues not counted).
    pub queues_max: usize,
    /// Subscriptions over all topics.
    pub subscriptions_max: usize,
    /// Stream shards over all streams, open and closed (a closed shard keeps its log until
    /// its records expire).
    pub stream_shards_max: usize,
}

impl Default for MetaLimits {
    fn default() -> Self {
        MetaLimits {
            queues_max: QUEUES_MAX_DEFAULT,
            subscriptions_max: SUBSCRIPTIONS_MAX_DEFAULT,
            stream_shards_max: STREAM_SHARDS_TOTAL_MAX_DEFAULT,
        }
    }
}

/// One queue as the metadata file keeps it: its settable attributes only (the computed
/// ones — counts, ARN, times — are not kept).
fn queue_json(meta: &QueueMeta) -> serde_json::Value {
    let attributes: serde_json::Map<String, serde_json::Value> = READABLE_ATTRIBUTES
        .iter()
        .filter_map(|name| Some((name.to_string(), serde_json::Value::String(meta.attributes.render(name)?))))
        .collect();
    serde_json::json!({
        "id": meta.id,
        "name": meta.name,
        "created_s": meta.created_s,
        "modified_s": meta.modified_s,
        "groups_spread": meta.groups_spread,
        "attributes": attributes,
        "tags": meta.tags,
    })
}

/// Shard 0's writable metadata.
#[derive(Clone)]
pub struct Registry {
    pub limits: MetaLimits,
    naming: Naming,
    snapshot: Arc<Snapshot>,
    next_id: u64,
    deleted_at_ms: HashMap<String, u64>,
    purged_at_ms: HashMap<u64, u64>,
    /// What key material is sealed under in the metadata file; without it there is no
    /// encryption at all (`SqsManagedSseEnabled` reads `false`, and keys cannot be made).
    root: Option<Arc<RootKey>>,
    /// Whether the metadata file holds the keys as they are (keys made at load — the SSE-SQS
    /// key, AWS-managed keys something names — are written with the next change, before any
    /// data could be sealed under them, and with them the root key's fingerprint).
    keys_saved: std::cell::Cell<bool>,
    /// Message move tasks (shard 0 answers for them; `queue::redrive` moves).
    moves: Arc<moves::Moves>,
    /// Stream consumer groups' checkpoints (in the metadata file, not in snapshots).
    checkpoints: Arc<groups::Checkpoints>,
    /// Stream consumer groups' leases (memory only).
    leases: Arc<groups::Leases>,
    /// CloudWatch metric alarms (in the metadata file, not in snapshots).
    alarms: Arc<alarms::Alarms>,
    /// In a cluster: where this registry stands in the metadata group's log (`cluster::machine`
    /// keeps it; it is saved with the metadata so a restart knows what it has applied). Null
    /// on a single node.
    cluster: serde_json::Value,
}

fn key_naming(naming: &Naming) -> KeyNaming {
    KeyNaming { region: naming.region.clone(), account_id: naming.account_id.clone() }
}

/// The refusal of encryption by a server started without a root key.
fn no_root_key(what: &str) -> OpError {
    OpError::new(
        ErrorCode::InvalidAttributeValue,
        format!(
            "{what}: this server has no key service, so nothing would be encrypted. Start sluiced with \
             --root-key-file (see the README's Encryption section)."
        ),
    )
}

impl Registry {
    pub fn new(naming: Naming) -> Registry {
        let keys = Arc::new(Keys::new(key_naming(&naming)));
        Registry {
            limits: MetaLimits::default(),
            snapshot: Arc::new(Snapshot { naming: naming.clone(), keys, ..Snapshot::default() }),
            naming,
            next_id: 1,
            deleted_at_ms: HashMap::new(),
            purged_at_ms: HashMap::new(),
            root: None,
            keys_saved: std::cell::Cell::new(true),
            moves: Arc::default(),
            checkpoints: Arc::default(),
            leases: Arc::default(),
            alarms: Arc::default(),
            cluster: serde_json::Value::Null,
        }
    }

    /// Starts consumer groups' leases afresh (at a start: leases are not kept): leases of
    /// `lease_ms`; the groups there are now get none before one lease time from `now_ms`.
    pub fn start_leases(&mut self, lease_ms: u64, now_ms: u64) {
        self.leases = Arc::new(groups::Leases::new(lease_ms, now_ms, &self.snapshot.streams));
    }

    /// Whether a change from `before` changed what the metadata file holds outside snapshots:
    /// consumer groups' checkpoints, alarms.
    pub fn unsnapshotted_changed(&self, before: &Registry) -> bool {
        !Arc::ptr_eq(&self.checkpoints, &before.checkpoints) || !Arc::ptr_eq(&self.alarms, &before.alarms)
    }

    /// The alarms, as they are now.
    pub fn alarms(&self) -> Arc<alarms::Alarms> {
        self.alarms.clone()
    }

    /// The registry of a server with (or without) a root key.
    pub fn with_root(mut self, root: Option<Arc<RootKey>>) -> Registry {
        self.root = root;
        let snapshot = &self.snapshot;
        let keys = self.keys_for(&snapshot.by_name, &snapshot.topics, &snapshot.streams, 0);
        if !Arc::ptr_eq(&keys, &self.snapshot.keys) {
            self.keys_saved.set(false);
            self.snapshot = Arc::new(Snapshot::new(
                snapshot.version,
                self.naming.clone(),
                snapshot.by_name.clone(),
                snapshot.topics.clone(),
                snapshot.streams.clone(),
                snapshot.firehose.clone(),
                keys,
            ));
        }
        self
    }

    /// The root key, if the server has one.
    pub fn root(&self) -> Option<Arc<RootKey>> {
        self.root.clone()
    }

    /// Whether this server encrypts (it has a root key).
    pub fn encrypts(&self) -> bool {
        self.root.is_some()
    }

    /// The keys a snapshot of these queues, topics and streams needs: with a root key, the key
    /// SSE-SQS uses and every AWS-managed key something names are made (from the root key, so
    /// every shard that makes one makes the same) — nothing ever waits to be sealed for a key
    /// not made yet. Unchanged keys stay the same `Arc`.
    fn keys_for(&self, queues: &BTreeMap<String, Arc<QueueMeta>>, topics: &Topics, streams: &Streams, now_ms: u64) -> Arc<Keys> {
        let current = &self.snapshot.keys;
        let Some(root) = self.root.as_deref() else { return current.clone() };
        let owned_missing = current.owned("sqs").is_none();
        // The AWS-managed keys named and not made yet, by service.
        let managed: std::collections::BTreeSet<&str> = queues
            .values()
            .filter_map(|meta| meta.attributes.kms_master_key_id.as_deref())
            .chain(topics.values().filter_map(|meta| meta.kms_master_key_id()))
            .chain(streams.values().filter_map(|meta| meta.encryption_key.as_deref()))
            .filter(|reference| current.resolve(reference).is_none())
            .filter_map(Keys::managed_service)
            .collect();
        if !owned_missing && managed.is_empty() {
            return current.clone();
        }
        let mut keys = (**current).clone();
        let owned = owned_missing.then(|| KeyChange::Owned { service: "sqs".into() });
        for change in owned.into_iter().chain(managed.into_iter().map(|service| KeyChange::Managed { service: service.to_owned() })) {
            // Making a key of a service or of AWS cannot fail.
            let _ = keys.apply(change, now_ms, Some(root));
        }
        Arc::new(keys)
    }

    /// In a cluster: where this registry stands in the metadata group's log (null on a single node).
    pub fn cluster_state(&self) -> &serde_json::Value {
        &self.cluster
    }

    /// Sets where this registry stands in the metadata group's log (`cluster::machine`).
    pub fn set_cluster_state(&mut self, state: serde_json::Value) {
        self.cluster = state;
    }

    /// Whether the registry holds anything a client made (queues, topics, streams, delivery
    /// streams): a data directory of a single node that cannot join a cluster as it is.
    pub fn holds_resources(&self) -> bool {
        let snapshot = &self.snapshot;
        !(snapshot.by_name.is_empty() && snapshot.topics.is_empty() && snapshot.streams.is_empty() && snapshot.firehose.is_empty())
    }

    /// The registry `document` (a `to_json` output) describes, with what this one keeps in
    /// memory only (limits, consumer groups' leases) carried over: a cluster node's registry
    /// after a change the metadata group committed.
    pub fn rebuilt(&self, document: &serde_json::Value) -> Result<Registry, String> {
        let mut registry = Registry::from_json(self.naming.clone(), document, self.root.clone())?;
        registry.limits = self.limits;
        registry.leases = self.leases.clone();
        Ok(registry)
    }

    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.snapshot.clone()
    }

    /// Everything needed to rebuild this registry, as JSON (the metadata file's content).
    pub fn to_json(&self) -> serde_json::Value {
        let queues: Vec<serde_json::Value> = self.snapshot.by_name.values().map(|meta| queue_json(meta)).collect();
        let mut document = self.scalars_json();
        document["queues"] = queues.into();
        document["topics"] = topics::to_json(&self.snapshot.topics);
        document["streams"] = streams::to_json(&self.snapshot.streams);
        document["delivery_streams"] = firehose::to_json(&self.snapshot.firehose);
        if let Some(root) = &self.root {
            document["kms"] = self.snapshot.keys.to_json(root);
            self.keys_saved.set(true);
        }
        document["moves"] = moves::to_json(&self.moves);
        document["checkpoints"] = groups::to_json(&self.checkpoints);
        document["alarms"] = alarms::to_json(&self.alarms);
        document
    }

    /// What the metadata file keeps besides queues, topics and streams.
    fn scalars_json(&self) -> serde_json::Value {
        use serde_json::{json, Map, Value};
        let purged: Map<String, Value> = self.purged_at_ms.iter().map(|(id, ms)| (id.to_string(), json!(ms))).collect();
        let mut scalars = json!({
            "version": self.snapshot.version,
            "next_id": self.next_id,
            "deleted_at_ms": self.deleted_at_ms,
            "purged_at_ms": purged,
        });
        if !self.cluster.is_null() {
            scalars["cluster"] = self.cluster.clone();
        }
        scalars
    }

    /// What changed from `before` to `self`, for the metadata journal (`storage::meta`): the
    /// scalars, and the queues, topics and streams that were added, changed (each whole) or
    /// removed. Unchanged entities are the very same `Arc`s in both snapshots, so finding the
    /// changed ones costs a pointer comparison each and writing them costs what they hold.
    pub fn delta_json(&self, before: &Registry) -> serde_json::Value {
        fn diff<T>(
            before: &BTreeMap<String, Arc<T>>,
            after: &BTreeMap<String, Arc<T>>,
            render: impl Fn(&T) -> serde_json::Value,
        ) -> serde_json::Value {
            let put: Vec<serde_json::Value> = after
                .iter()
                .filter(|(name, meta)| !before.get(*name).is_some_and(|old| Arc::ptr_eq(old, meta)))
                .map(|(_, meta)| render(meta))
                .collect();
            let removed: Vec<&String> = before.keys().filter(|name| !after.contains_key(*name)).collect();
            serde_json::json!({ "put": put, "removed": removed })
        }
        let (old, new) = (&before.snapshot, &self.snapshot);
        let mut delta = self.scalars_json();
        if !Arc::ptr_eq(old, new) {
            delta["queues"] = diff(&old.by_name, &new.by_name, queue_json);
            delta["topics"] = diff(&old.topics, &new.topics, topics::topic_json);
            delta["streams"] = diff(&old.streams, &new.streams, streams::stream_json);
            delta["delivery_streams"] = diff(&old.firehose, &new.firehose, firehose::delivery_stream_json);
        }
        if let (true, Some(root)) = (!Arc::ptr_eq(&old.keys, &new.keys) || !self.keys_saved.get(), &self.root) {
            // Keys are few and small: a change writes them all (`storage::meta` keeps the last).
            delta["kms"] = new.keys.to_json(root);
            self.keys_saved.set(true);
        }
        if !Arc::ptr_eq(&before.checkpoints, &self.checkpoints) {
            delta["checkpoints"] = diff(&before.checkpoints, &self.checkpoints, groups::checkpoint_json);
        }
        if !Arc::ptr_eq(&before.alarms, &self.alarms) {
            delta["alarms"] = diff(&before.alarms, &self.alarms, alarms::alarm_json);
        }
        if !Arc::ptr_eq(&before.moves, &self.moves) {
            // Like the keys: a change to a task writes them all (at most ten a queue).
            delta["moves"] = moves::to_json(&self.moves);
        }
        delta
    }

    /// Rebuilds a registry from `to_json`'s output, checking everything (it comes from disk).
    pub fn from_json(naming: Naming, value: &serde_json::Value, root: Option<Arc<RootKey>>) -> Result<Registry, String> {
        use serde_json::Value;
        let u64_of = |value: &Value, what: &str| value.as_u64().ok_or_else(|| format!("{what} is not a number"));
        let object = |value: &'_ Value, what: &str| -> Result<serde_json::Map<String, Value>, String> {
            value.as_object().cloned().ok_or_else(|| format!("{what} is not an object"))
        };
        let strings = |value: &'_ Value, what: &str| -> Result<Vec<(String, String)>, String> {
            object(value, what)?
                .into_iter()
                .map(|(key, value)| Ok((key, value.as_str().ok_or_else(|| format!("a value of {what} is not a string"))?.to_owned())))
                .collect()
        };
        let mut registry = Registry::new(naming).with_root(root);
        let keys = Keys::from_json(key_naming(&registry.naming), &value["kms"], registry.root.as_deref())?;
        let mut unencrypted = Vec::new();
        registry.next_id = u64_of(&value["next_id"], "next_id")?;
        let version = u64_of(&value["version"], "version")?;
        let mut by_name = BTreeMap::new();
        for queue in value["queues"].as_array().ok_or("queues is not a list")? {
            let name = queue["name"].as_str().ok_or("a queue has no name")?.to_owned();
            if !valid_queue_name(&name) && !is_delivery_queue(&name) {
                return Err(format!("invalid queue name {name:?}"));
            }
            let mut settings: KeyValues = strings(&queue["attributes"], "attributes")?;
            // A policy is kept even if it no longer compiles (`ResourcePolicy::stored`).
            let policy = settings.iter().position(|(key, _)| key == "Policy").map(|at| settings.remove(at).1);
            let mut attributes = QueueAttributes::default().with_changes(&settings).map_err(|e| format!("queue {name}: {}", e.message))?;
            if registry.root.is_none() && (attributes.sqs_managed_sse_enabled || attributes.kms_master_key_id.is_some()) {
                // Kept by a version that stored these settings and encrypted nothing: without a
                // key service they are not true, so they are not reported.
                attributes.sqs_managed_sse_enabled = false;
                attributes.kms_master_key_id = None;
                unencrypted.push(name.clone());
            }
            attributes.policy = policy.filter(|text| !text.is_empty()).map(|text| crate::policy::ResourcePolicy::stored(&text, &name));
            let tags = strings(&queue["tags"], "tags")?.into_iter().collect();
            let meta = QueueMeta {
                id: u64_of(&queue["id"], "queue id")?,
                url: registry.naming.url(&name),
                arn: registry.naming.arn(&name),
                name: name.clone(),
                attributes,
                tags,
                created_s: u64_of(&queue["created_s"], "created_s")?,
                modified_s: u64_of(&queue["modified_s"], "modified_s")?,
                // Absent in files written before groups could spread: those stay on one shard.
                groups_spread: queue["groups_spread"].as_bool().unwrap_or(false),
            };
            if meta.id >= registry.next_id {
                return Err(format!("queue {name} has id {} at or past next_id", meta.id));
            }
            by_name.insert(name, Arc::new(meta));
        }
        for (name, ms) in object(&value["deleted_at_ms"], "deleted_at_ms")? {
            registry.deleted_at_ms.insert(name, u64_of(&ms, "a deletion time")?);
        }
        for (id, ms) in object(&value["purged_at_ms"], "purged_at_ms")? {
            registry.purged_at_ms.insert(id.parse().map_err(|_| "a purged queue id is not a number")?, u64_of(&ms, "a purge time")?);
        }
        registry.moves = Arc::new(moves::from_json(&value["moves"], |id| by_name.values().any(|meta: &Arc<QueueMeta>| meta.id == id))?);
        let mut topics = topics::from_json(&registry.naming, &value["topics"])?;
        if registry.root.is_none() {
            for meta in topics.values_mut().filter(|meta| meta.kms_master_key_id().is_some()) {
                let mut plain = (**meta).clone();
                plain.attributes.remove("KmsMasterKeyId");
                unencrypted.push(plain.name.clone());
                *meta = Arc::new(plain);
            }
        }
        let streams = streams::from_json(&registry.naming, &value["streams"], registry.next_id)?;
        let delivery = Arc::new(firehose::from_json(&registry.naming, &value["delivery_streams"], registry.next_id)?);
        registry.checkpoints = Arc::new(groups::from_json(&value["checkpoints"])?);
        registry.alarms = Arc::new(alarms::from_json(&value["alarms"])?);
        registry.cluster = value.get("cluster").cloned().unwrap_or_default();
        if !unencrypted.is_empty() {
            tracing::warn!(
                resources = ?unencrypted,
                "these queues' and topics' encryption settings were dropped: without a root key (--root-key-file) nothing is encrypted"
            );
        }
        registry.snapshot = Arc::new(Snapshot { keys: Arc::new(keys), ..Snapshot::default() });
        let now_ms = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64);
        let keys = registry.keys_for(&by_name, &topics, &streams, now_ms);
        registry.keys_saved.set(Arc::ptr_eq(&keys, &registry.snapshot.keys));
        registry.snapshot = Arc::new(Snapshot::new(version, registry.naming.clone(), by_name, topics, streams, delivery, keys));
        Ok(registry)
    }

    /// Applies a change; on success returns the outcome and, when metadata changed, the new snapshot.
    pub fn apply(&mut self, change: MetaChange, now_ms: u64) -> Result<(MetaOutcome, Option<Arc<Snapshot>>), OpError> {
        let now_s = now_ms / 1000;
        let mut queues = self.snapshot.by_name.clone();
        let outcome = match change {
            MetaChange::Create { name, attributes, tags } => {
                if !valid_queue_name(&name) {
                    return Err(OpError::new(
                        ErrorCode::InvalidParameterValue,
                        "Can only include alphanumeric characters, hyphens, or underscores. 1 to 80 in length",
                    ));
                }
                let fifo_named = name.ends_with(".fifo");
                let fifo_asked = attributes.iter().any(|(k, v)| k == "FifoQueue" && v.eq_ignore_ascii_case("true"));
                if fifo_named != fifo_asked {
                    return Err(OpError::new(
                        ErrorCode::InvalidParameterValue,
                        if fifo_named {
                            "A queue name ending in .fifo needs the attribute FifoQueue=true."
                        } else {
                            "The name of a FIFO queue can only include alphanumeric characters, hyphens, or underscores, must end with .fifo suffix and be 1 to 80 in length."
                        },
                    ));
                }
                if !queues.contains_key(&name) && self.snapshot.client_queues().count() >= self.limits.queues_max {
                    return Err(OpError::new(
                        ErrorCode::OverLimit,
                        format!("This server holds its limit of {} queues (--queues-max); delete one first.", self.limits.queues_max),
                    ));
                }
                if let Some(existing) = queues.get(&name) {
                    return if existing.attributes.matches_supplied(&attributes)? {
                        Ok((MetaOutcome::Url(existing.url.clone()), None))
                    } else {
                        Err(OpError::new(
                            ErrorCode::QueueNameExists,
                            format!("A queue already exists with the same name and a different value for attribute(s) of {name}."),
                        ))
                    };
                }
                if let Some(deleted) = self.deleted_at_ms.get(&name) {
                    if now_ms < deleted + QUEUE_RECREATE_DELAY_SECONDS * 1000 {
                        return Err(OpError::new(
                            ErrorCode::QueueDeletedRecently,
                            "You must wait 60 seconds after deleting a queue before you can create another with the same name.",
                        ));
                    }
                }
                // New queues are SSE-SQS unless asked otherwise, as on AWS — when there is a key service.
                let initial = QueueAttributes { sqs_managed_sse_enabled: self.encrypts(), ..QueueAttributes::default() };
                let attributes = initial.with_changes(&attributes)?;
                self.check_encryption(&attributes)?;
                let arn = self.naming.arn(&name);
                self.check_redrive(&queues, &arn, &attributes)?;
                let tags = checked_tags(BTreeMap::new(), &tags)?;
                let meta = QueueMeta {
                    id: self.next_id,
                    url: self.naming.url(&name),
                    arn,
                    name: name.clone(),
                    groups_spread: spreads_groups(&attributes),
                    attributes,
                    tags,
                    created_s: now_s,
                    modified_s: now_s,
                };
                self.next_id += 1;
                let url = meta.url.clone();
                queues.insert(name, Arc::new(meta));
                MetaOutcome::Url(url)
            }
            MetaChange::Delete { queue } => {
                let meta = self.snapshot.resolve(&queue)?.clone();
                queues.remove(&meta.name);
                if self.moves.contains_key(&meta.id) {
                    let mut moves = (*self.moves).clone();
                    moves.remove(&meta.id);
                    self.moves = Arc::new(moves);
                }
                // Only deletions within the re-create delay matter: older ones are forgotten,
                // so the metadata does not grow with every queue ever deleted.
                self.deleted_at_ms.retain(|_, at| now_ms < *at + QUEUE_RECREATE_DELAY_SECONDS * 1000);
                self.deleted_at_ms.insert(meta.name.clone(), now_ms);
                self.purged_at_ms.remove(&meta.id);
                MetaOutcome::Done
            }
            MetaChange::SetAttributes { queue, attributes } => {
                let meta = self.snapshot.resolve(&queue)?;
                meta.attributes.check_unchanged_type(&attributes)?;
                let next = meta.attributes.with_changes(&attributes)?;
                self.check_encryption(&next)?;
                self.check_redrive(&queues, &meta.arn, &next)?;
                let updated = QueueMeta { attributes: next, modified_s: now_s, ..(**meta).clone() };
                queues.insert(updated.name.clone(), Arc::new(updated));
                MetaOutcome::Done
            }
            MetaChange::Permission { queue, edit } => {
                let meta = self.snapshot.resolve(&queue)?;
                let current = meta.attributes.policy.as_ref().map(|policy| policy.text.as_str());
                let invalid = |message: String| OpError::new(ErrorCode::InvalidParameterValue, message);
                let policy = crate::policy::edit_permissions(current, None, &edit, "sqs", &meta.arn).map_err(invalid)?;
                if policy.as_ref().is_some_and(|policy| policy.text.len() > QUEUE_POLICY_BYTES_MAX) {
                    return Err(invalid(format!(
                        "The policy would be longer than {QUEUE_POLICY_BYTES_MAX} bytes: remove a permission first."
                    )));
                }
                let mut next = meta.attributes.clone();
                next.policy = policy;
                let updated = QueueMeta { attributes: next, modified_s: now_s, ..(**meta).clone() };
                queues.insert(updated.name.clone(), Arc::new(updated));
                MetaOutcome::Done
            }
            MetaChange::Tag { queue, tags } => {
                let meta = self.snapshot.resolve(&queue)?;
                let updated = QueueMeta { tags: checked_tags(meta.tags.clone(), &tags)?, ..(**meta).clone() };
                queues.insert(updated.name.clone(), Arc::new(updated));
                MetaOutcome::Done
            }
            MetaChange::Untag { queue, keys } => {
                let meta = self.snapshot.resolve(&queue)?;
                let mut tags = meta.tags.clone();
                for key in &keys {
                    tags.remove(key);
                }
                let updated = QueueMeta { tags, ..(**meta).clone() };
                queues.insert(updated.name.clone(), Arc::new(updated));
                MetaOutcome::Done
            }
            MetaChange::Purge { queue } => {
                let meta = self.snapshot.resolve(&queue)?;
                if let Some(last) = self.purged_at_ms.get(&meta.id) {
                    if now_ms < last + PURGE_INTERVAL_SECONDS * 1000 {
                        return Err(OpError::new(
                            ErrorCode::PurgeQueueInProgress,
                            format!("Only one PurgeQueue operation on {} is allowed every 60 seconds.", meta.name),
                        ));
                    }
                }
                self.purged_at_ms.retain(|_, at| now_ms < *at + PURGE_INTERVAL_SECONDS * 1000);
                self.purged_at_ms.insert(meta.id, now_ms);
                return Ok((MetaOutcome::Purge(meta.id), None));
            }
            MetaChange::Topic(change) => return self.apply_topic(change, now_s),
            MetaChange::Move(change) => {
                let mut moves = (*self.moves).clone();
                let task = moves::apply(&mut moves, change)?;
                self.moves = Arc::new(moves);
                return Ok((MetaOutcome::Move(task), None));
            }
            MetaChange::Group(change) => {
                let leases = Arc::make_mut(&mut self.leases);
                // Only a checkpoint changes them (then they are another `Arc`).
                let outcome = groups::apply(&mut self.checkpoints, leases, &self.snapshot.streams, &self.naming, change, now_ms)?;
                return Ok((
                    match outcome {
                        groups::GroupOutcome::Leases(leases) => MetaOutcome::Leases(leases),
                        groups::GroupOutcome::Done => MetaOutcome::Done,
                    },
                    None,
                ));
            }
            MetaChange::Firehose(change) => {
                let mut delivery = (*self.snapshot.firehose).clone();
                let arn = firehose::apply(&mut delivery, &mut self.next_id, &self.naming, change, now_ms)?;
                let snapshot = &self.snapshot;
                let next = Snapshot::new(
                    snapshot.version + 1,
                    self.naming.clone(),
                    snapshot.by_name.clone(),
                    snapshot.topics.clone(),
                    snapshot.streams.clone(),
                    Arc::new(delivery),
                    snapshot.keys.clone(),
                );
                self.snapshot = Arc::new(next);
                return Ok((MetaOutcome::Arn(arn), Some(self.snapshot.clone())));
            }
            MetaChange::Alarm(change) => {
                let outcome = alarms::apply(&mut self.alarms, change, now_ms)?;
                return Ok((MetaOutcome::Alarm(outcome), None));
            }
            MetaChange::Moves(queue_id) => {
                let tasks: Vec<Arc<moves::MoveTask>> = match queue_id {
                    Some(id) => self.moves.get(&id).map(|tasks| tasks.iter().rev().cloned().collect()).unwrap_or_default(),
                    None => self.moves.values().flatten().filter(|task| task.status.active()).cloned().collect(),
                };
                return Ok((MetaOutcome::Moves(tasks), None));
            }
            MetaChange::Key(change) => {
                if !self.encrypts() {
                    return Err(OpError::new(
                        ErrorCode::UnsupportedOperation,
                        "This server has no key service: start sluiced with --root-key-file (see the README's Encryption section).",
                    ));
                }
                let mut keys = (*self.snapshot.keys).clone();
                let key = keys.apply(change, now_ms, self.root.as_deref())?;
                self.snapshot = Arc::new(Snapshot::new(
                    self.snapshot.version + 1,
                    self.naming.clone(),
                    self.snapshot.by_name.clone(),
                    self.snapshot.topics.clone(),
                    self.snapshot.streams.clone(),
                    self.snapshot.firehose.clone(),
                    Arc::new(keys),
                ));
                return Ok((MetaOutcome::Key(key), Some(self.snapshot.clone())));
            }
            MetaChange::Stream { change, sealed, cores } => {
                let mut streams = self.snapshot.streams.clone();
                let cx = streams::ApplyContext { naming: &self.naming, cores, now_ms, sealed: &sealed };
                let outcome = streams::apply(&mut streams, &mut self.next_id, change, &cx)?;
                let shards = |streams: &Streams| streams.values().map(|meta| meta.shards.len()).sum::<usize>();
                let (before, after) = (shards(&self.snapshot.streams), shards(&streams));
                if after > self.limits.stream_shards_max && after > before {
                    return Err(OpError::new(
                        ErrorCode::LimitExceeded,
                        format!(
                            "This request would exceed the shard limit for the account {} in {}. Current shard count for the account: {before}. \
                             Limit: {}. Number of additional shards that would have resulted from this request: {}. \
                             (Closed shards count until their records expire; the limit is --stream-shards-max.)",
                            self.naming.account_id,
                            self.naming.region,
                            self.limits.stream_shards_max,
                            after - before
                        ),
                    ));
                }
                let keys = self.keys_for(&self.snapshot.by_name, &self.snapshot.topics, &streams, now_ms);
                // Consumer groups go with their consumers, shards and streams.
                groups::forget_gone(&mut self.checkpoints, &mut self.leases, &streams);
                self.snapshot = Arc::new(Snapshot::new(
                    self.snapshot.version + 1,
                    self.naming.clone(),
                    self.snapshot.by_name.clone(),
                    self.snapshot.topics.clone(),
                    streams,
                    self.snapshot.firehose.clone(),
                    keys,
                ));
                return Ok((MetaOutcome::Stream(outcome), Some(self.snapshot.clone())));
            }
        };
        let keys = self.keys_for(&queues, &self.snapshot.topics, &self.snapshot.streams, now_ms);
        let snapshot = Snapshot::new(
            self.snapshot.version + 1,
            self.naming.clone(),
            queues,
            self.snapshot.topics.clone(),
            self.snapshot.streams.clone(),
            self.snapshot.firehose.clone(),
            keys,
        );
        self.snapshot = Arc::new(snapshot);
        Ok((outcome, Some(self.snapshot.clone())))
    }

    fn apply_topic(&mut self, change: TopicChange, now_s: u64) -> Result<(MetaOutcome, Option<Arc<Snapshot>>), OpError> {
        let mut topics = self.snapshot.topics.clone();
        let arn = topics::apply(&mut topics, &self.naming, change, now_s * 1000)?;
        if !self.encrypts() {
            let newly_keyed = topics.iter().any(|(name, meta)| {
                meta.kms_master_key_id().is_some()
                    && self.snapshot.topics.get(name).is_none_or(|old| old.kms_master_key_id() != meta.kms_master_key_id())
            });
            if newly_keyed {
                let mut refusal = no_root_key("KmsMasterKeyId cannot be set");
                refusal.code = ErrorCode::InvalidParameter;
                return Err(refusal);
            }
        }
        let subscriptions = |topics: &Topics| topics.values().map(|topic| topic.subscriptions.len()).sum::<usize>();
        let count = subscriptions(&topics);
        if count > self.limits.subscriptions_max && count > subscriptions(&self.snapshot.topics) {
            return Err(OpError::new(
                ErrorCode::SubscriptionLimitExceeded,
                format!(
                    "Subscription limit exceeded: this server holds at most {} subscriptions (--subscriptions-max).",
                    self.limits.subscriptions_max
                ),
            ));
        }
        // Every HTTP subscription has its hidden delivery queue, and no other delivery queue stays.
        let wanted: std::collections::BTreeSet<String> =
            topics.values().flat_map(|t| t.subscriptions.iter()).filter_map(|s| s.delivery_queue()).collect();
        let mut queues = self.snapshot.by_name.clone();
        queues.retain(|name, _| !is_delivery_queue(name) || wanted.contains(name));
        for name in wanted {
            if queues.contains_key(&name) {
                continue;
            }
            let meta = QueueMeta {
                id: self.next_id,
                url: self.naming.url(&name),
                arn: self.naming.arn(&name),
                name: name.clone(),
                attributes: QueueAttributes::default(),
                tags: BTreeMap::new(),
                created_s: now_s,
                modified_s: now_s,
                groups_spread: false,
            };
            self.next_id += 1;
            queues.insert(name, Arc::new(meta));
        }
        let keys = self.keys_for(&queues, &topics, &self.snapshot.streams, now_s * 1000);
        self.snapshot = Arc::new(Snapshot::new(
            self.snapshot.version + 1,
            self.naming.clone(),
            queues,
            topics,
            self.snapshot.streams.clone(),
            self.snapshot.firehose.clone(),
            keys,
        ));
        Ok((MetaOutcome::Arn(arn), Some(self.snapshot.clone())))
    }

    /// Without a key service a queue cannot be encrypted: asking for it is refused, not ignored.
    fn check_encryption(&self, attributes: &QueueAttributes) -> Result<(), OpError> {
        if self.encrypts() {
            return Ok(());
        }
        if attributes.kms_master_key_id.is_some() {
            return Err(no_root_key("KmsMasterKeyId cannot be set"));
        }
        if attributes.sqs_managed_sse_enabled {
            return Err(no_root_key("SqsManagedSseEnabled cannot be true"));
        }
        Ok(())
    }

    /// A RedrivePolicy must name an existing queue of the same type (not the queue itself)
    /// whose RedriveAllowPolicy lets this queue use it.
    fn check_redrive(
        &self,
        queues: &BTreeMap<String, Arc<QueueMeta>>,
        source_arn: &str,
        attributes: &QueueAttributes,
    ) -> Result<(), OpError> {
        let Some(policy) = &attributes.redrive_policy else { return Ok(()) };
        let invalid = |reason: &str| {
            OpError::new(
                ErrorCode::InvalidParameterValue,
                format!("Value {} for parameter RedrivePolicy is invalid. Reason: {reason}", policy.raw),
            )
        };
        if policy.dead_letter_target_arn == source_arn {
            return Err(invalid("A queue cannot be its own dead-letter queue."));
        }
        let target = parse_queue_arn(&policy.dead_letter_target_arn)
            .and_then(|name| queues.get(name))
            .filter(|target| target.arn == policy.dead_letter_target_arn)
            .ok_or_else(|| invalid("Dead letter target does not exist."))?;
        if target.attributes.fifo != attributes.fifo {
            return Err(invalid("The dead-letter queue of a FIFO queue must be FIFO, and of a standard queue standard."));
        }
        if let Some(allow) = &target.attributes.redrive_allow_policy {
            if !allow.allows(source_arn) {
                return Err(invalid("The dead-letter queue's RedriveAllowPolicy does not allow this source queue."));
            }
        }
        Ok(())
    }
}

fn checked_tags(mut tags: BTreeMap<String, String>, changes: &KeyValues) -> Result<BTreeMap<String, String>, OpError> {
    for (key, value) in changes {
        if key.is_empty() || key.chars().count() > 128 || value.chars().count() > 256 {
            return Err(OpError::new(
                ErrorCode::InvalidParameterValue,
                format!("Tag key '{key}' must be 1 to 128 characters and its value at most 256."),
            ));
        }
        tags.insert(key.clone(), value.clone());
    }
    if tags.len() > QUEUE_TAGS_MAX {
        return Err(OpError::new(ErrorCode::InvalidParameterValue, format!("Too many tags: a queue may carry at most {QUEUE_TAGS_MAX}.")));
    }
    Ok(tags)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deletions_older_than_the_recreate_delay_are_forgotten() {
        let mut registry = Registry::new(Naming::default());
        let create = |name: &str| MetaChange::Create { name: name.into(), attributes: vec![], tags: vec![] };
        let delete = |name: &str| MetaChange::Delete { queue: name.into() };
        let mut now = 1_000_000;
        for round in 0..50 {
            let name = format!("q{round}");
            registry.apply(create(&name), now).unwrap();
            registry.apply(delete(&name), now).unwrap();
            now += 61_000;
        }
        assert_eq!(registry.deleted_at_ms.len(), 1, "only the last deletion is within the delay");
        // Re-creating within the delay is still refused; after it, allowed.
        assert!(registry.apply(create("q49"), now - 61_000 + 1_000).is_err());
        assert!(registry.apply(create("q49"), now).is_ok());
    }
}
