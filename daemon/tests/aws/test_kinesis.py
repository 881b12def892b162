"""Every Kinesis action through boto3 (AWS JSON 1.1), SubscribeToShard as an event stream."""
import unittest

from common import Expect, client, unique


class Kinesis(unittest.TestCase):
    def setUp(self):
        self.kinesis = client("kinesis")

    def shards(self, name, **filters):
        return self.kinesis.list_shards(StreamName=name, **filters)["Shards"]

    def read_all(self, name, shard_id):
        iterator = self.kinesis.get_shard_iterator(StreamName=name, ShardId=shard_id, ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
        records = []
        while iterator:
            page = self.kinesis.get_records(ShardIterator=iterator, Limit=1000)
            records.extend(page["Records"])
            if not page["Records"]:
                break
            iterator = page.get("NextShardIterator")
        return records

    def test_streams_records_resharding_tags_and_retention(self):
        name = unique("clicks")
        self.kinesis.create_stream(StreamName=name, ShardCount=2, StreamModeDetails={"StreamMode": "PROVISIONED"})
        described = self.kinesis.describe_stream(StreamName=name)["StreamDescription"]
        self.assertEqual((described["StreamStatus"], len(described["Shards"]), described["RetentionPeriodHours"]), ("ACTIVE", 2, 24))
        arn = described["StreamARN"]
        self.assertEqual(arn, "arn:aws:kinesis:us-east-1:000000000000:stream/" + name)
        summary = self.kinesis.describe_stream_summary(StreamARN=arn)["StreamDescriptionSummary"]
        self.assertEqual(summary["OpenShardCount"], 2)
        self.assertIn(name, self.kinesis.list_streams()["StreamNames"])

        one = self.kinesis.put_record(StreamName=name, Data=b"first", PartitionKey="key-0")
        self.assertTrue(one["ShardId"].startswith("shardId-"))
        put = self.kinesis.put_records(StreamName=name, Records=[{"Data": f"record {i}".encode(), "PartitionKey": f"key-{i}"} for i in range(20)])
        self.assertEqual(put["FailedRecordCount"], 0)
        self.assertEqual(len(put["Records"]), 20)
        records = [r for shard in self.shards(name) for r in self.read_all(name, shard["ShardId"])]
        self.assertEqual(sorted(r["Data"] for r in records), sorted([b"first"] + [f"record {i}".encode() for i in range(20)]))
        first = next(r for r in records if r["Data"] == b"first")
        self.assertEqual((first["SequenceNumber"], first["PartitionKey"]), (one["SequenceNumber"], "key-0"))

        self.kinesis.add_tags_to_stream(StreamName=name, Tags={"team": "a", "env": "test"})
        tags = self.kinesis.list_tags_for_stream(StreamName=name)["Tags"]
        self.assertEqual(sorted((t["Key"], t["Value"]) for t in tags), [("env", "test"), ("team", "a")])
        self.kinesis.remove_tags_from_stream(StreamName=name, TagKeys=["team"])
        self.assertEqual(self.kinesis.list_tags_for_stream(StreamName=name)["Tags"], [{"Key": "env", "Value": "test"}])

        self.kinesis.increase_stream_retention_period(StreamName=name, RetentionPeriodHours=48)
        self.kinesis.decrease_stream_retention_period(StreamName=name, RetentionPeriodHours=36)
        self.assertEqual(self.kinesis.describe_stream_summary(StreamName=name)["StreamDescriptionSummary"]["RetentionPeriodHours"], 36)

        first_shard = self.shards(name)[0]
        low, high = int(first_shard["HashKeyRange"]["StartingHashKey"]), int(first_shard["HashKeyRange"]["EndingHashKey"])
        self.kinesis.split_shard(StreamName=name, ShardToSplit=first_shard["ShardId"], NewStartingHashKey=str((low + high) // 2))
        children = [s for s in self.shards(name) if s.get("ParentShardId") == first_shard["ShardId"]]
        self.assertEqual(len(children), 2)
        self.kinesis.merge_shards(StreamName=name, ShardToMerge=children[0]["ShardId"], AdjacentShardToMerge=children[1]["ShardId"])
        self.assertEqual(len(self.shards(name, ShardFilter={"Type": "AT_LATEST"})), 2)
        scaled = self.kinesis.update_shard_count(StreamName=name, TargetShardCount=4, ScalingType="UNIFORM_SCALING")
        self.assertEqual((scaled["CurrentShardCount"], scaled["TargetShardCount"]), (2, 4))
        self.assertEqual(len(self.shards(name, ShardFilter={"Type": "AT_LATEST"})), 4)
        # Every record is still readable from the closed parents.
        records = [r for shard in self.shards(name) for r in self.read_all(name, shard["ShardId"])]
        self.assertEqual(len(records), 21)

        self.kinesis.delete_stream(StreamName=name)
        with Expect(self, "ResourceNotFoundException", 400):
            self.kinesis.describe_stream(StreamName=name)

    def test_consumers_and_subscribe_to_shard_event_stream(self):
        name = unique("push")
        self.kinesis.create_stream(StreamName=name, ShardCount=1)
        arn = self.kinesis.describe_stream_summary(StreamName=name)["StreamDescriptionSummary"]["StreamARN"]
        shard = self.shards(name)[0]["ShardId"]
        self.kinesis.put_records(StreamName=name, Records=[{"Data": f"event {i}".encode(), "PartitionKey": "k"} for i in range(5)])

        consumer = self.kinesis.register_stream_consumer(StreamARN=arn, ConsumerName="reader")["Consumer"]
        self.assertEqual(consumer["ConsumerName"], "reader")
        described = self.kinesis.describe_stream_consumer(StreamARN=arn, ConsumerName="reader")["ConsumerDescription"]
        self.assertEqual((described["ConsumerARN"], described["StreamARN"]), (consumer["ConsumerARN"], arn))
        listed = self.kinesis.list_stream_consumers(StreamARN=arn)["Consumers"]
        self.assertEqual([c["ConsumerName"] for c in listed], ["reader"])

        response = self.kinesis.subscribe_to_shard(ConsumerARN=consumer["ConsumerARN"], ShardId=shard, StartingPosition={"Type": "TRIM_HORIZON"})
        received = []
        stream = response["EventStream"]
        for event in stream:
            received.extend(record["Data"] for record in event["SubscribeToShardEvent"]["Records"])
            if len(received) >= 5:
                break
        stream.close()
        self.assertEqual(received, [f"event {i}".encode() for i in range(5)])

        self.kinesis.deregister_stream_consumer(ConsumerARN=consumer["ConsumerARN"])
        self.assertEqual(self.kinesis.list_stream_consumers(StreamARN=arn).get("Consumers", []), [])
        with Expect(self, "ResourceNotFoundException", 400):
            self.kinesis.subscribe_to_shard(ConsumerARN=consumer["ConsumerARN"], ShardId=shard, StartingPosition={"Type": "LATEST"})

    def test_max_record_size_is_the_streams_own(self):
        name = unique("large")
        self.kinesis.create_stream(StreamName=name, ShardCount=1, MaxRecordSizeInKiB=2048)
        summary = self.kinesis.describe_stream_summary(StreamName=name)["StreamDescriptionSummary"]
        self.assertEqual(summary["MaxRecordSizeInKiB"], 2048)
        big = b"b" * (1536 * 1024)
        self.kinesis.put_record(StreamName=name, Data=big, PartitionKey="k")
        with Expect(self, "InvalidArgumentException"):
            self.kinesis.put_record(StreamName=name, Data=b"b" * (2100 * 1024), PartitionKey="k")
        self.kinesis.update_max_record_size(StreamARN=summary["StreamARN"], MaxRecordSizeInKiB=1024)
        with Expect(self, "InvalidArgumentException"):
            self.kinesis.put_record(StreamName=name, Data=big, PartitionKey="k")
        with Expect(self, "ValidationException"):
            self.kinesis.update_max_record_size(StreamARN=summary["StreamARN"], MaxRecordSizeInKiB=20000)
        [record] = self.read_all(name, self.shards(name)[0]["ShardId"])
        self.assertEqual(record["Data"], big)

    def test_update_stream_mode_keeps_the_shards_and_counts_switches(self):
        name = unique("modes")
        self.kinesis.create_stream(StreamName=name, StreamModeDetails={"StreamMode": "ON_DEMAND"})
        summary = self.kinesis.describe_stream_summary(StreamName=name)["StreamDescriptionSummary"]
        self.assertEqual((summary["StreamModeDetails"]["StreamMode"], summary["OpenShardCount"]), ("ON_DEMAND", 4))
        with Expect(self, "ValidationException"):
            self.kinesis.update_shard_count(StreamName=name, TargetShardCount=8, ScalingType="UNIFORM_SCALING")
        arn = summary["StreamARN"]
        self.kinesis.update_stream_mode(StreamARN=arn, StreamModeDetails={"StreamMode": "PROVISIONED"})
        summary = self.kinesis.describe_stream_summary(StreamARN=arn)["StreamDescriptionSummary"]
        self.assertEqual((summary["StreamModeDetails"]["StreamMode"], summary["OpenShardCount"]), ("PROVISIONED", 4))
        self.kinesis.update_shard_count(StreamName=name, TargetShardCount=8, ScalingType="UNIFORM_SCALING")
        with Expect(self, "ResourceInUseException"):
            self.kinesis.update_stream_mode(StreamARN=arn, StreamModeDetails={"StreamMode": "PROVISIONED"})
        self.kinesis.update_stream_mode(StreamARN=arn, StreamModeDetails={"StreamMode": "ON_DEMAND"})
        self.assertEqual(self.kinesis.describe_stream_summary(StreamARN=arn)["StreamDescriptionSummary"]["OpenShardCount"], 8)
        with Expect(self, "LimitExceededException"):
            self.kinesis.update_stream_mode(StreamARN=arn, StreamModeDetails={"StreamMode": "PROVISIONED"})
        with Expect(self, "ValidationException"):
            self.kinesis.update_stream_mode(StreamARN=arn, StreamModeDetails={"StreamMode": "SOMETIMES"})
        with Expect(self, "ResourceNotFoundException"):
            self.kinesis.update_stream_mode(StreamARN=arn + "-gone", StreamModeDetails={"StreamMode": "PROVISIONED"})

    def test_enhanced_monitoring_turns_shard_level_metrics_on_and_off(self):
        name = unique("watched")
        self.kinesis.create_stream(StreamName=name, ShardCount=2)
        enabled = self.kinesis.enable_enhanced_monitoring(StreamName=name, ShardLevelMetrics=["IncomingBytes", "IteratorAgeMilliseconds"])
        self.assertEqual((enabled["CurrentShardLevelMetrics"], enabled["DesiredShardLevelMetrics"]), ([], ["IncomingBytes", "IteratorAgeMilliseconds"]))
        described = self.kinesis.describe_stream(StreamName=name)["StreamDescription"]
        self.assertEqual(described["EnhancedMonitoring"], [{"ShardLevelMetrics": ["IncomingBytes", "IteratorAgeMilliseconds"]}])
        disabled = self.kinesis.disable_enhanced_monitoring(StreamARN=described["StreamARN"], ShardLevelMetrics=["ALL"])
        self.assertEqual(disabled["DesiredShardLevelMetrics"], [])
        summary = self.kinesis.describe_stream_summary(StreamName=name)["StreamDescriptionSummary"]
        self.assertEqual(summary["EnhancedMonitoring"], [{"ShardLevelMetrics": []}])
        with Expect(self, "ValidationException"):
            self.kinesis.enable_enhanced_monitoring(StreamName=name, ShardLevelMetrics=["Everything"])

    def test_tags_by_arn_are_the_streams_tags(self):
        name = unique("tagged")
        self.kinesis.create_stream(StreamName=name, ShardCount=1)
        arn = self.kinesis.describe_stream_summary(StreamName=name)["StreamDescriptionSummary"]["StreamARN"]
        self.kinesis.tag_resource(ResourceARN=arn, Tags={"team": "data", "tier": "gold"})
        self.assertEqual(self.kinesis.list_tags_for_stream(StreamName=name)["Tags"], [{"Key": "team", "Value": "data"}, {"Key": "tier", "Value": "gold"}])
        self.kinesis.untag_resource(ResourceARN=arn, TagKeys=["tier"])
        self.assertEqual(self.kinesis.list_tags_for_resource(ResourceARN=arn)["Tags"], [{"Key": "team", "Value": "data"}])
        with Expect(self, "InvalidArgumentException", 400):
            self.kinesis.tag_resource(ResourceARN=arn + "/consumer/c:1", Tags={"a": "b"})

    def test_limits_count_open_shards_against_the_quota(self):
        before = self.kinesis.describe_limits()
        self.kinesis.create_stream(StreamName=unique("counted"), ShardCount=3)
        self.kinesis.create_stream(StreamName=unique("on-demand"), StreamModeDetails={"StreamMode": "ON_DEMAND"})
        after = self.kinesis.describe_limits()
        self.assertEqual(after["ShardLimit"], 1000)
        self.assertEqual(after["OpenShardCount"], before["OpenShardCount"] + 3 + 4)
        self.assertEqual(after["OnDemandStreamCount"], before["OnDemandStreamCount"] + 1)
        self.assertEqual(after["OnDemandStreamCountLimit"], 250)
        settings = self.kinesis.describe_account_settings()
        self.assertEqual(settings["MinimumThroughputBillingCommitment"]["Status"], "DISABLED")

    def test_errors_arrive_as_the_sdk_models_them(self):
        name = unique("errors")
        self.kinesis.create_stream(StreamName=name, ShardCount=1)
        with Expect(self, "ResourceInUseException", 400) as expect:
            self.kinesis.create_stream(StreamName=name, ShardCount=1)
        self.assertIsInstance(expect.error, self.kinesis.exceptions.ResourceInUseException)
        with Expect(self, "ResourceNotFoundException", 400):
            self.kinesis.put_record(StreamName=name + "-missing", Data=b"x", PartitionKey="k")
        with Expect(self, "InvalidArgumentException", 400):
            self.kinesis.get_records(ShardIterator="not-an-iterator")
        with Expect(self, "InvalidArgumentException", 400):
            self.kinesis.put_record(StreamName=name, Data=b"x", PartitionKey="k", ExplicitHashKey=str(2**128))
        # What would be dropped without a word is refused.
        with Expect(self, "InvalidArgumentException", 400):
            self.kinesis.create_stream(StreamName=unique("big"), ShardCount=1, MaxRecordSizeInKiB=10240)
        self.kinesis.create_stream(StreamName=unique("default-size"), ShardCount=1, MaxRecordSizeInKiB=1024)
        arn = self.kinesis.describe_stream_summary(StreamName=name)["StreamDescriptionSummary"]["StreamARN"]
        with Expect(self, "InvalidArgumentException", 400):
            self.kinesis.register_stream_consumer(StreamARN=arn, ConsumerName="tagged", Tags={"a": "b"})


if __name__ == "__main__":
    unittest.main()
