//! The codec round-trips every operation and refuses hostile bytes without panicking.

use bytes::Bytes;
use proptest::prelude::*;
use sluice_protocol::digest::{hex, md5_of_attributes, md5_of_body};
use sluice_protocol::*;

fn round_trip_request(op: Op) {
    let request = Request { id: 42, op };
    let frame = Bytes::copy_from_slice(Encoder::new().request(&request));
    assert_eq!(check_frame(&frame, 1 << 20), FrameCheck::Complete(frame.len()));
    assert_eq!(decode_request(&frame).unwrap(), request);
}

fn round_trip_response(response: Response) {
    let frame = Bytes::copy_from_slice(Encoder::new().response(7, &response));
    let (id, decoded) = decode_response(&frame).unwrap();
    assert_eq!(id, 7);
    assert_eq!(decoded, response);
}

fn kv(key: &str, value: &str) -> (String, String) {
    (key.into(), value.into())
}

fn entry(id: &str, body: &str) -> SendEntry {
    SendEntry {
        id: id.into(),
        body: Bytes::copy_from_slice(body.as_bytes()),
        delay_seconds: Some(5),
        attributes: vec![MessageAttribute::string("a", "String", "x"), MessageAttribute::binary("b", vec![0u8, 1, 2])],
        system_attributes: vec![MessageAttribute::string("AWSTraceHeader", "String", "Root=1")],
        message_group_id: Some("g".into()),
        deduplication_id: None,
    }
}

fn publish(id: &str, message: &str) -> PublishEntry {
    PublishEntry {
        id: id.into(),
        message: Bytes::copy_from_slice(message.as_bytes()),
        subject: Some("s".into()),
        message_structure: None,
        attributes: vec![MessageAttribute::string("color", "String", "red"), MessageAttribute::binary("b", vec![1u8, 2])],
        message_group_id: None,
        deduplication_id: None,
    }
}

#[test]
fn every_request_round_trips() {
    let q = || "orders".to_string();
    let ops = vec![
        Op::Hello { protocol_version: 1, client_name: "test".into() },
        Op::Authenticate { access_key_id: "AKIAALICE".into(), proof: "00ff".into() },
        Op::CreateQueue { name: q(), attributes: vec![kv("DelaySeconds", "5")], tags: vec![kv("team", "a")] },
        Op::GetQueueUrl { name: q(), owner: None },
        Op::GetQueueUrl { name: q(), owner: Some("111122223333".into()) },
        Op::ListQueues { prefix: Some("o".into()), max_results: Some(3), next_token: Some("t".into()) },
        Op::ListQueues { prefix: None, max_results: None, next_token: None },
        Op::DeleteQueue { queue: q() },
        Op::PurgeQueue { queue: q() },
        Op::GetQueueAttributes { queue: q(), names: vec!["All".into()] },
        Op::SetQueueAttributes { queue: q(), attributes: vec![kv("VisibilityTimeout", "10")] },
        Op::TagQueue { queue: q(), tags: vec![kv("k", "v")] },
        Op::UntagQueue { queue: q(), keys: vec!["k".into()] },
        Op::ListQueueTags { queue: q() },
        Op::AddPermission { queue: q(), label: "l".into(), account_ids: vec!["111122223333".into()], actions: vec!["SendMessage".into()] },
        Op::RemovePermission { queue: q(), label: "l".into() },
        Op::AddTopicPermission {
            topic: "t".into(),
            label: "l".into(),
            account_ids: vec!["111122223333".into()],
            actions: vec!["Publish".into()],
        },
        Op::RemoveTopicPermission { topic: "t".into(), label: "l".into() },
        Op::TagTopic { topic: "t".into(), tags: vec![kv("k", "v")] },
        Op::UntagTopic { topic: "t".into(), keys: vec!["k".into()] },
        Op::ListTopicTags { topic: "t".into() },
        Op::DescribeLimits,
        Op::DescribeAccountSettings,
        Op::StartMessageMoveTask { source_arn: "arn:dlq".into(), destination_arn: Some("arn:q".into()), max_per_second: Some(50) },
        Op::StartMessageMoveTask { source_arn: "arn:dlq".into(), destination_arn: None, max_per_second: None },
        Op::StartMessageMoveTask { source_arn: "arn:dlq".into(), destination_arn: None, max_per_second: Some(0) },
        Op::CancelMessageMoveTask { task_handle: "h".into() },
        Op::ListMessageMoveTasks { source_arn: "arn:dlq".into(), max_results: Some(10) },
        Op::CreateKey {
            description: Some("d".into()),
            key_usage: None,
            key_spec: Some("SYMMETRIC_DEFAULT".into()),
            tags: vec![kv("k", "v")],
        },
        Op::DescribeKey { key: "alias/app".into() },
        Op::ListKeys { limit: 10, marker: Some("m".into()) },
        Op::CreateAlias { alias: "alias/app".into(), key: "k".into(), update: true },
        Op::DeleteAlias { alias: "alias/app".into() },
        Op::ListAliases { key: Some("k".into()), limit: 0, marker: None },
        Op::SetKeyEnabled { key: "k".into(), enabled: false },
        Op::ScheduleKeyDeletion { key: "k".into(), pending_window_days: 7 },
        Op::CancelKeyDeletion { key: "k".into() },
        Op::SetKeyRotation { key: "k".into(), enabled: true, period_days: 90 },
        Op::GetKeyRotationStatus { key: "k".into() },
        Op::RotateKeyOnDemand { key: "k".into() },
        Op::Encrypt { key: "k".into(), plaintext: Bytes::from_static(b"p"), context: vec![kv("a", "b")] },
        Op::Decrypt { ciphertext: Bytes::from_static(b"c"), key: None, context: vec![] },
        Op::GenerateDataKey { key: "k".into(), bytes: 32, context: vec![], without_plaintext: true },
        Op::SetStreamEncryption { stream: "s".into(), encryption_type: "KMS".into(), key: "alias/aws/kinesis".into(), start: true },
        Op::PutResourcePolicy { resource_arn: "arn:aws:kinesis:us-east-1:0:stream/s".into(), policy: "{}".into() },
        Op::GetResourcePolicy { resource_arn: "arn".into() },
        Op::DeleteResourcePolicy { resource_arn: "arn".into() },
        Op::ListDeadLetterSourceQueues { queue: q(), max_results: Some(10), next_token: None },
        Op::SendMessage { queue: q(), entry: entry("", "hello") },
        Op::SendMessageBatch { queue: q(), entries: vec![entry("1", "a"), entry("2", "b")] },
        Op::ReceiveMessage(ReceiveMessage {
            queue: q(),
            max_messages: Some(10),
            wait_time_seconds: Some(0),
            visibility_timeout: None,
            system_attribute_names: vec!["All".into()],
            message_attribute_names: vec!["a.*".into()],
            receive_request_attempt_id: None,
        }),
        Op::DeleteMessage { queue: q(), receipt_handle: "h".into() },
        Op::DeleteMessageBatch { queue: q(), entries: vec![DeleteEntry { id: "1".into(), receipt_handle: "h".into() }] },
        Op::ChangeMessageVisibility { queue: q(), receipt_handle: "h".into(), visibility_timeout: 0 },
        Op::ChangeMessageVisibilityBatch {
            queue: q(),
            entries: vec![VisibilityEntry { id: "1".into(), receipt_handle: "h".into(), visibility_timeout: 30 }],
        },
        Op::CreateTopic { name: "t".into(), attributes: vec![kv("DisplayName", "T")], tags: vec![kv("k", "v")] },
        Op::DeleteTopic { topic: "t".into() },
        Op::ListTopics { next_token: Some("n".into()) },
        Op::ListTopics { next_token: None },
        Op::GetTopicAttributes { topic: "t".into() },
        Op::SetTopicAttributes { topic: "t".into(), name: "DisplayName".into(), value: Some("x".into()) },
        Op::SetTopicAttributes { topic: "t".into(), name: "DeliveryPolicy".into(), value: None },
        Op::Subscribe {
            topic: "t".into(),
            protocol: "sqs".into(),
            endpoint: Some("arn:aws:sqs:r:a:q".into()),
            attributes: vec![kv("RawMessageDelivery", "true")],
            return_subscription_arn: true,
        },
        Op::ConfirmSubscription { topic: "t".into(), token: "tok".into(), authenticate_on_unsubscribe: false },
        Op::Unsubscribe { subscription: "arn:s".into() },
        Op::ListSubscriptions { topic: Some("t".into()), next_token: None },
        Op::ListSubscriptions { topic: None, next_token: Some("n".into()) },
        Op::GetSubscriptionAttributes { subscription: "arn:s".into() },
        Op::SetSubscriptionAttributes { subscription: "arn:s".into(), name: "FilterPolicy".into(), value: Some("{}".into()) },
        Op::Publish { topic: "t".into(), entry: publish("", "hello") },
        Op::PublishBatch { topic: "t".into(), entries: vec![publish("1", "a"), publish("2", "b")] },
        Op::CreateStream {
            name: "s".into(),
            shard_count: Some(4),
            mode: Some("PROVISIONED".into()),
            tags: vec![kv("k", "v")],
            max_record_size_kib: Some(10240),
        },
        Op::UpdateMaxRecordSize { stream: "s".into(), max_record_size_kib: 2048 },
        Op::UpdateStreamMode { stream: "s".into(), mode: "ON_DEMAND".into() },
        Op::LeaseShards { consumer_arn: "arn:c".into(), worker: "w".into(), max_leases: Some(3) },
        Op::LeaseShards { consumer_arn: "arn:c".into(), worker: "w".into(), max_leases: None },
        Op::CheckpointShard {
            consumer_arn: "arn:c".into(),
            worker: "w".into(),
            shard_id: "shardId-000000000001".into(),
            token: 9,
            sequence_number: SHARD_END.into(),
        },
        Op::ReleaseShards { consumer_arn: "arn:c".into(), worker: "w".into(), shard_ids: vec!["shardId-000000000001".into()] },
        Op::DescribeConsumerGroup { consumer_arn: "arn:c".into() },
        Op::SetEnhancedMonitoring { stream: "s".into(), metrics: vec!["IncomingBytes".into()], enable: true },
        Op::SetEnhancedMonitoring { stream: "s".into(), metrics: vec!["ALL".into()], enable: false },
        Op::PutMetricAlarm(Box::new(sample_alarm())),
        Op::DescribeAlarms {
            names: vec!["a".into()],
            name_prefix: Some("d".into()),
            state: Some("ALARM".into()),
            action_prefix: Some("arn:aws:sns".into()),
            max_records: Some(10),
            next_token: Some("t".into()),
        },
        Op::DescribeAlarms { names: vec![], name_prefix: None, state: None, action_prefix: None, max_records: None, next_token: None },
        Op::DeleteAlarms { names: vec!["a".into(), "b".into()] },
        Op::SetAlarmState { name: "a".into(), state: "OK".into(), reason: "test".into(), reason_data: Some("{}".into()) },
        Op::SetAlarmActions { names: vec!["a".into()], enable: false },
        Op::GetMetricStatistics {
            metric: sample_metric(),
            start_ms: 1_000,
            end_ms: 61_000,
            period_seconds: 60,
            statistics: vec!["Sum".into(), "Maximum".into()],
            unit: Some("Count".into()),
        },
        Op::GetMetricData {
            queries: vec![MetricDataQuery {
                id: "q1".into(),
                metric: sample_metric(),
                period_seconds: 60,
                stat: "Average".into(),
                label: Some("depth".into()),
                return_data: false,
                unit: None,
            }],
            start_ms: 0,
            end_ms: 3_600_000,
            descending: false,
            max_datapoints: Some(100),
            next_token: None,
        },
        Op::ListMetrics {
            namespace: Some("AWS/SQS".into()),
            metric_name: None,
            dimensions: vec![DimensionFilter { name: "QueueName".into(), value: None }],
            next_token: Some("n".into()),
        },
        Op::CreateDeliveryStream {
            name: "d".into(),
            configuration: r#"{"DeliveryStreamType":"DirectPut"}"#.into(),
            tags: vec![("k".into(), "v".into())],
        },
        Op::DeleteDeliveryStream { name: "d".into(), allow_force_delete: true },
        Op::DescribeDeliveryStream { name: "d".into(), limit: Some(1), exclusive_start_destination_id: None },
        Op::ListDeliveryStreams { limit: None, stream_type: Some("DirectPut".into()), exclusive_start_name: Some("c".into()) },
        Op::PutFirehoseRecords { name: "d".into(), records: vec![Bytes::from_static(b"one\n"), Bytes::new()], batch: true },
        Op::UpdateDestination {
            name: "d".into(),
            current_version_id: "1".into(),
            destination_id: "destinationId-000000000001".into(),
            configuration: "{}".into(),
        },
        Op::TagDeliveryStream { name: "d".into(), tags: vec![("a".into(), "b".into())] },
        Op::UntagDeliveryStream { name: "d".into(), keys: vec!["a".into()] },
        Op::ListTagsForDeliveryStream { name: "d".into(), limit: Some(5), exclusive_start_tag_key: Some("a".into()) },
        Op::SetDeliveryStreamEncryption {
            name: "d".into(),
            key_type: Some("CUSTOMER_MANAGED_CMK".into()),
            key_arn: Some("arn:k".into()),
            start: true,
        },
        Op::SetDeliveryStreamEncryption { name: "d".into(), key_type: None, key_arn: None, start: false },
        Op::DeleteStream { stream: "s".into(), enforce_consumer_deletion: true },
        Op::DescribeStream { stream: "s".into(), limit: Some(10), exclusive_start_shard_id: Some("shardId-000000000001".into()) },
        Op::DescribeStreamSummary { stream: "s".into() },
        Op::ListStreams { limit: Some(5), exclusive_start_stream_name: Some("a".into()), next_token: None },
        Op::ListShards(ListShards {
            stream: Some("s".into()),
            next_token: None,
            exclusive_start_shard_id: None,
            max_results: Some(3),
            filter_type: Some("AT_TIMESTAMP".into()),
            filter_shard_id: None,
            filter_timestamp_ms: Some(1_700_000_000_000),
        }),
        Op::PutRecord {
            stream: "s".into(),
            record: PutRecordsEntry { data: Bytes::from_static(b"d"), partition_key: "pk".into(), explicit_hash_key: Some("7".into()) },
            sequence_number_for_ordering: Some("1".into()),
        },
        Op::PutRecords {
            stream: "s".into(),
            records: vec![PutRecordsEntry { data: Bytes::from_static(b"d"), partition_key: "pk".into(), explicit_hash_key: None }],
        },
        Op::GetShardIterator {
            stream: "s".into(),
            shard_id: "shardId-000000000000".into(),
            position: StartingPosition { kind: "AT_SEQUENCE_NUMBER".into(), sequence_number: Some("12".into()), timestamp_ms: None },
        },
        Op::GetRecords { iterator: "it".into(), limit: Some(100), stream_arn: None },
        Op::GetRecords { iterator: "it".into(), limit: None, stream_arn: Some("arn:aws:kinesis:us-east-1:0:stream/s".into()) },
        Op::IncreaseStreamRetentionPeriod { stream: "s".into(), hours: 48 },
        Op::DecreaseStreamRetentionPeriod { stream: "s".into(), hours: 24 },
        Op::SplitShard { stream: "s".into(), shard_to_split: "a".into(), new_starting_hash_key: "5".into() },
        Op::MergeShards { stream: "s".into(), shard_to_merge: "a".into(), adjacent_shard_to_merge: "b".into() },
        Op::UpdateShardCount { stream: "s".into(), target_shard_count: 8, scaling_type: Some("UNIFORM_SCALING".into()) },
        Op::AddTagsToStream { stream: "s".into(), tags: vec![kv("k", "v")] },
        Op::RemoveTagsFromStream { stream: "s".into(), keys: vec!["k".into()] },
        Op::ListTagsForStream { stream: "s".into(), exclusive_start_tag_key: Some("a".into()), limit: Some(2) },
        Op::RegisterStreamConsumer { stream: "arn:s".into(), name: "c".into() },
        Op::DeregisterStreamConsumer(ConsumerRef { stream: None, name: None, consumer_arn: Some("arn:c".into()) }),
        Op::DescribeStreamConsumer(ConsumerRef { stream: Some("arn:s".into()), name: Some("c".into()), consumer_arn: None }),
        Op::ListStreamConsumers { stream: "arn:s".into(), next_token: None, max_results: Some(5) },
        Op::SubscribeToShard {
            consumer_arn: "arn:c".into(),
            shard_id: "shardId-000000000000".into(),
            position: StartingPosition { kind: "AT_TIMESTAMP".into(), sequence_number: None, timestamp_ms: Some(5) },
        },
    ];
    for op in ops {
        round_trip_request(op);
    }
}

#[test]
fn every_response_round_trips() {
    let failure = BatchFailure { id: "2".into(), sender_fault: true, code: ErrorCode::InvalidParameterValue, message: "no".into() };
    let sent = SendResult {
        id: "1".into(),
        message_id: "m".into(),
        md5_of_body: "x".into(),
        md5_of_attributes: Some("y".into()),
        md5_of_system_attributes: None,
        sequence_number: None,
    };
    let shard = ShardDescription {
        shard_id: "shardId-000000000002".into(),
        parent_shard_id: Some("shardId-000000000000".into()),
        adjacent_parent_shard_id: Some("shardId-000000000001".into()),
        starting_hash_key: "0".into(),
        ending_hash_key: "340282366920938463463374607431768211455".into(),
        starting_sequence_number: "1".into(),
        ending_sequence_number: None,
    };
    let stream = StreamDescription {
        name: "s".into(),
        arn: "arn:aws:kinesis:r:a:stream/s".into(),
        status: "ACTIVE".into(),
        mode: "PROVISIONED".into(),
        retention_hours: 24,
        created_ms: 5,
        shards: vec![shard.clone()],
        has_more_shards: false,
        open_shard_count: 1,
        consumer_count: 0,
        max_record_size_kib: 1024,
        encryption_key: Some("alias/aws/kinesis".into()),
        shard_level_metrics: vec!["IncomingBytes".into()],
    };
    let key = KeyDescription {
        key_id: "k".into(),
        arn: "arn:aws:kms:us-east-1:0:key/k".into(),
        description: "d".into(),
        state: "Enabled".into(),
        created_ms: 1,
        deletion_ms: None,
        manager: "CUSTOMER".into(),
        key_usage: "ENCRYPT_DECRYPT".into(),
        key_spec: "SYMMETRIC_DEFAULT".into(),
        rotation_enabled: true,
        rotation_period_days: 365,
        next_rotation_ms: Some(2),
    };
    let record = StreamRecord {
        sequence_number: "1".into(),
        arrival_ms: 7,
        data: Bytes::from_static(b"x"),
        partition_key: "pk".into(),
        encrypted: true,
    };
    let child = ChildShard {
        shard_id: "shardId-000000000003".into(),
        parent_shards: vec!["shardId-000000000002".into()],
        starting_hash_key: "0".into(),
        ending_hash_key: "9".into(),
    };
    let consumer =
        ConsumerDescription { name: "c".into(), arn: "arn:c".into(), status: "ACTIVE".into(), created_ms: 1, stream_arn: "arn:s".into() };
    let responses: Vec<Response> = vec![
        Ok(Reply::Hello { protocol_version: 1, server_version: "0.1".into(), shard_count: 2, shard_id: 1, auth_nonce: None }),
        Ok(Reply::Hello {
            protocol_version: 1,
            server_version: "0.1".into(),
            shard_count: 2,
            shard_id: 1,
            auth_nonce: Some("9f2c".into()),
        }),
        Ok(Reply::Authenticated { principal_arn: "arn:aws:iam::000000000000:user/alice".into(), account_id: "000000000000".into() }),
        Ok(Reply::Done),
        Ok(Reply::QueueUrl("http://x/q".into())),
        Ok(Reply::QueueUrls { queue_urls: vec!["a".into(), "b".into()], next_token: Some("n".into()) }),
        Ok(Reply::Attributes(vec![kv("QueueArn", "arn")])),
        Ok(Reply::SendMessage(SendResult { id: String::new(), ..sent.clone() })),
        Ok(Reply::SendMessageBatch { successful: vec![sent], failed: vec![failure.clone()] }),
        Ok(Reply::ReceiveMessage(vec![ReceivedMessage {
            message_id: "m".into(),
            receipt_handle: "h".into(),
            md5_of_body: "d".into(),
            body: Bytes::from_static(b"hello"),
            attributes: vec![kv("SentTimestamp", "1")],
            md5_of_attributes: Some("e".into()),
            message_attributes: vec![MessageAttribute::binary("b", vec![9u8])],
        }])),
        Ok(Reply::Batch { successful: vec!["1".into()], failed: vec![failure.clone()] }),
        Ok(Reply::Arn("arn:aws:sns:r:a:t".into())),
        Ok(Reply::Arns { arns: vec!["a".into()], next_token: Some("n".into()) }),
        Ok(Reply::Subscriptions {
            subscriptions: vec![SubscriptionSummary {
                subscription_arn: "s".into(),
                owner: "o".into(),
                protocol: "sqs".into(),
                endpoint: "e".into(),
                topic_arn: "t".into(),
            }],
            next_token: None,
        }),
        Ok(Reply::Publish(PublishResult { id: String::new(), message_id: "m".into(), sequence_number: None })),
        Ok(Reply::PublishBatch {
            successful: vec![PublishResult { id: "1".into(), message_id: "m".into(), sequence_number: Some("1".into()) }],
            failed: vec![failure],
        }),
        Ok(Reply::StreamDescription(stream.clone())),
        Ok(Reply::Streams { streams: vec![StreamDescription { shards: vec![], ..stream }], has_more: true, next_token: Some("n".into()) }),
        Ok(Reply::Shards { shards: vec![shard], next_token: Some("n".into()) }),
        Ok(Reply::PutRecord(PutRecordResult::Put { shard_id: "shardId-000000000000".into(), sequence_number: "1".into() })),
        Ok(Reply::PutRecords {
            failed_record_count: 1,
            records: vec![
                PutRecordResult::Put { shard_id: "shardId-000000000000".into(), sequence_number: "1".into() },
                PutRecordResult::Failed(OpError::new(ErrorCode::ProvisionedThroughputExceeded, "slow down")),
            ],
        }),
        Ok(Reply::ShardIterator("it".into())),
        Ok(Reply::Records(GetRecordsResult {
            records: vec![record.clone()],
            next_iterator: None,
            millis_behind_latest: 3,
            child_shards: vec![child.clone()],
        })),
        Ok(Reply::ShardCount { stream_name: "s".into(), stream_arn: "arn".into(), current_shard_count: 2, target_shard_count: 4 }),
        Ok(Reply::StreamTags { tags: vec![kv("k", "v")], has_more: true }),
        Ok(Reply::StreamConsumer(consumer.clone())),
        Ok(Reply::StreamConsumers { consumers: vec![consumer], next_token: Some("n".into()) }),
        Ok(Reply::ShardEvent(ShardEvent {
            records: vec![record],
            continuation_sequence_number: "9".into(),
            millis_behind_latest: 0,
            child_shards: vec![child],
        })),
        Ok(Reply::ShardLeases(ShardLeases {
            lease_ms: 10_000,
            leases: vec![
                ShardLease {
                    shard_id: "shardId-000000000001".into(),
                    worker: Some("w1".into()),
                    token: 77,
                    checkpoint: Some("123".into()),
                    expires_in_ms: 9_000,
                },
                ShardLease { shard_id: "shardId-000000000002".into(), ..ShardLease::default() },
            ],
            workers: vec!["w1".into(), "w2".into()],
        })),
        Ok(Reply::MetricAlarms { alarms: vec![sample_alarm()], next_token: Some("n".into()) }),
        Ok(Reply::MetricStatistics {
            label: "NumberOfMessagesSent".into(),
            datapoints: vec![Datapoint {
                timestamp_ms: 60_000,
                sample_count: 2.0,
                sum: 10.0,
                minimum: 4.0,
                maximum: 6.0,
                unit: Some("Count".into()),
            }],
        }),
        Ok(Reply::MetricData {
            results: vec![MetricDataResult { id: "q1".into(), label: "l".into(), timestamps_ms: vec![60_000, 0], values: vec![1.5, 2.5] }],
            next_token: None,
        }),
        Ok(Reply::MetricList { metrics: vec![sample_metric()], next_token: None }),
        Ok(Reply::DeliveryStream(r#"{"DeliveryStreamName":"d"}"#.into())),
        Ok(Reply::DeliveryStreams { names: vec!["a".into(), "b".into()], has_more: true }),
        Ok(Reply::DeliveryStreams { names: vec![], has_more: false }),
        Ok(Reply::FirehosePut {
            failed: 1,
            encrypted: false,
            records: vec![
                FirehosePutResult { record_id: Some("r1".into()), error_code: None, error_message: None },
                FirehosePutResult {
                    record_id: None,
                    error_code: Some("ServiceUnavailableException".into()),
                    error_message: Some("slow down".into()),
                },
            ],
        }),
        Ok(Reply::EnhancedMonitoring {
            stream_name: "s".into(),
            stream_arn: "arn:s".into(),
            current: vec![],
            desired: vec!["IncomingBytes".into(), "IteratorAgeMilliseconds".into()],
        }),
        Ok(Reply::MoveTasks(vec![
            MoveTaskDescription {
                task_handle: Some("h".into()),
                status: "RUNNING".into(),
                source_arn: "arn:dlq".into(),
                destination_arn: None,
                max_per_second: Some(10),
                moved: 3,
                to_move: 9,
                failure_reason: None,
                started_ms: 5,
            },
            MoveTaskDescription { status: "FAILED".into(), failure_reason: Some("gone".into()), ..MoveTaskDescription::default() },
        ])),
        Ok(Reply::Key(key.clone())),
        Ok(Reply::Keys { keys: vec![key.clone(), KeyDescription { deletion_ms: Some(9), ..key }], next_marker: Some("m".into()) }),
        Ok(Reply::Aliases {
            aliases: vec![
                AliasEntry { name: "alias/a".into(), arn: "arn:a".into(), target_key_id: Some("k".into()), created_ms: 3 },
                AliasEntry { name: "alias/aws/sqs".into(), arn: "arn:b".into(), target_key_id: None, created_ms: 0 },
            ],
            next_marker: None,
        }),
        Ok(Reply::KeyData { key_arn: "arn:k".into(), ciphertext: Some(Bytes::from_static(b"c")), plaintext: None }),
        Ok(Reply::KeyData { key_arn: "arn:k".into(), ciphertext: None, plaintext: Some(Bytes::from_static(b"p")) }),
        Err(OpError::new(ErrorCode::QueueDoesNotExist, "The specified queue does not exist.")),
    ];
    for response in responses {
        round_trip_response(response);
    }
}

#[test]
fn decoded_bodies_share_the_frame_buffer() {
    let request = Request { id: 1, op: Op::SendMessage { queue: "q".into(), entry: entry("", "a body of some length") } };
    let frame = Bytes::copy_from_slice(Encoder::new().request(&request));
    let Op::SendMessage { entry, .. } = decode_request(&frame).unwrap().op else { panic!("wrong op") };
    let frame_range = frame.as_ptr() as usize..frame.as_ptr() as usize + frame.len();
    assert!(frame_range.contains(&(entry.body.as_ptr() as usize)), "body was copied out of the frame");
}

#[test]
fn md5_digests_match_aws_test_vectors() {
    assert_eq!(hex(&md5_of_body(b"hello")), "5d41402abc4b2a76b9719d911017c592");
    let one = MessageAttribute::string("attribName1", "String", "attribValue 1");
    let two = MessageAttribute::string("customNumberTypeAttrib", "Number.float", "4563442423554324324264524243.32543234");
    let three = MessageAttribute::binary("binaryAttribute", Bytes::from_static(b"Hello binary world!"));
    assert_eq!(hex(&md5_of_attributes(std::slice::from_ref(&one)).unwrap()), "19e27d4e946b072f3f58da80d94fd778");
    assert_eq!(hex(&md5_of_attributes(std::slice::from_ref(&two)).unwrap()), "9fe1b90bbd9965bdf77bac517c7d2495");
    assert_eq!(hex(&md5_of_attributes(std::slice::from_ref(&three)).unwrap()), "31a92b15d92f8db860eda32aceb656c3");
    assert_eq!(hex(&md5_of_attributes(&[three, one, two]).unwrap()), "c932db14a896c663f83c260297d594ff");
    assert_eq!(md5_of_attributes::<MessageAttribute>(&[]), None);
}

#[test]
fn a_response_is_not_accepted_as_a_request() {
    let frame = Bytes::copy_from_slice(Encoder::new().response(3, &Ok(Reply::Done)));
    // Either rejected by the verifier or decoded as an unknown operation: never trusted as one.
    assert!(decode_request(&frame).is_err());
}

proptest! {
    #[test]
    fn garbage_never_panics(body in proptest::collection::vec(any::<u8>(), 0..512)) {
        let mut frame = (body.len() as u32).to_le_bytes().to_vec();
        frame.extend_from_slice(&body);
        let frame = Bytes::from(frame);
        let _ = decode_request(&frame);
        let _ = decode_response(&frame);
    }

    #[test]
    fn corrupted_valid_frames_never_panic(flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..8)) {
        let request = Request { id: 9, op: Op::SendMessageBatch { queue: "q".into(), entries: vec![entry("1", "abc"), entry("2", "def")] } };
        let mut frame = Encoder::new().request(&request).to_vec();
        for (position, value) in flips {
            let position = 4 + position % (frame.len() - 4);
            frame[position] ^= value;
        }
        let frame = Bytes::from(frame);
        let _ = decode_request(&frame);
    }

    #[test]
    fn truncated_frames_are_rejected_unless_only_padding_was_cut(cut in 1usize..200) {
        let request = Request { id: 9, op: Op::SendMessage { queue: "q".into(), entry: entry("", "abc") } };
        let full = Encoder::new().request(&request).to_vec();
        let cut = cut.min(full.len() - 5);
        let mut frame = full[..full.len() - cut].to_vec();
        let len = (frame.len() - 4) as u32;
        frame[..4].copy_from_slice(&len.to_le_bytes());
        match decode_request(&Bytes::from(frame)) {
            Err(_) => {}
            Ok(decoded) => prop_assert_eq!(decoded, request),
        }
    }
}

/// A ReceiveMessage whose attribute-name list holds `count` offsets, all to one string: a
/// small frame that would decode into `count` owned strings.
fn shared_string_list(count: usize) -> Bytes {
    use sluice_protocol::generated::sluice::wire as fb;
    let mut fbb = flatbuffers::FlatBufferBuilder::new();
    let name = fbb.create_string("All");
    let names = fbb.create_vector(&vec![name; count]);
    let queue = fbb.create_string("q");
    let op = fb::ReceiveMessage::create(
        &mut fbb,
        &fb::ReceiveMessageArgs { queue: Some(queue), message_attribute_names: Some(names), ..Default::default() },
    );
    let root = fb::Request::create(&mut fbb, &fb::RequestArgs { id: 7, op_type: fb::Op::ReceiveMessage, op: Some(op.as_union_value()) });
    fbb.finish_size_prefixed(root, None);
    Bytes::copy_from_slice(fbb.finished_data())
}

#[test]
fn a_list_longer_than_any_valid_request_is_refused_not_decoded() {
    let frame = shared_string_list(1_000_000);
    assert!(frame.len() < 5 << 20, "the hostile frame is small: {} bytes", frame.len());
    match decode_request(&frame) {
        Err(DecodeError::ListTooLong { id: 7, len: 1_000_000, max }) => assert_eq!(max, codec::REQUEST_LIST_ENTRIES_MAX),
        other => panic!("expected ListTooLong, got {other:?}"),
    }
    // Within bounds it decodes as before.
    let Ok(request) = decode_request(&shared_string_list(3)) else { panic!("a short list decodes") };
    match request.op {
        Op::ReceiveMessage(receive) => assert_eq!(receive.message_attribute_names, vec!["All"; 3]),
        other => panic!("{other:?}"),
    }
}

fn sample_metric() -> MetricId {
    MetricId {
        namespace: "AWS/SQS".into(),
        metric_name: "ApproximateNumberOfMessagesVisible".into(),
        dimensions: vec![Dimension { name: "QueueName".into(), value: "q".into() }],
    }
}

fn sample_alarm() -> MetricAlarm {
    MetricAlarm {
        name: "depth".into(),
        description: Some("too deep".into()),
        metric: sample_metric(),
        statistic: "Maximum".into(),
        period_seconds: 60,
        evaluation_periods: 3,
        datapoints_to_alarm: 2,
        threshold: 100.5,
        comparison: "GreaterThanThreshold".into(),
        treat_missing_data: Some("notBreaching".into()),
        unit: None,
        actions_enabled: false,
        alarm_actions: vec!["arn:aws:sns:us-east-1:000000000000:t".into()],
        ok_actions: vec![],
        insufficient_data_actions: vec!["arn:x".into()],
        arn: "arn:aws:cloudwatch:us-east-1:000000000000:alarm:depth".into(),
        state: "OK".into(),
        state_reason: "fine".into(),
        state_reason_data: None,
        state_updated_ms: 5,
        configuration_updated_ms: 4,
    }
}
