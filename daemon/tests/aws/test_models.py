"""No silent no-ops, walked from the SDK's own models: for every operation the gateway serves
(SQS over JSON, SNS over Query, Kinesis, KMS, CloudWatch, Firehose), and every member botocore lets a caller set on
it, one request carries that member (with the required ones) to sluiced. The gateway must either
take the member (whatever the call then answers) or refuse it by name — never accept and drop
it. The members refused are listed in REFUSED below (and in the README); a member newly refused,
or newly taken, makes this test fail until the list says so."""
import datetime
import unittest

import botocore.exceptions

from common import client

# Members refused wherever an operation has them, by service.
REFUSED_EVERYWHERE = {
    "kinesis": {"StreamId", "DryRun"},  # stream ids (the ARN or name names a stream here); dry runs
    "kms": {"GrantTokens", "DryRun"},  # grants are not kept; dry runs
}
# (service, operation) -> further members refused by name: what this server does not do.
REFUSED = {
    ("kms", "CreateKey"): {"Policy", "CustomKeyStoreId", "XksKeyId", "MultiRegion", "BypassPolicyLockoutSafetyCheck"},
    ("kms", "Decrypt"): {"Recipient"},
    ("kms", "GenerateDataKey"): {"Recipient"},
    ("kms", "ListKeys"): {"ResourceOwners"},
    ("kinesis", "CreateStream"): {"RecordDistributionStrategy", "WarmThroughputMiBps"},
    ("kinesis", "ListShards"): {"StreamCreationTimestamp"},
    ("kinesis", "UpdateStreamMode"): {"WarmThroughputMiBps"},
    ("kinesis", "ListStreamConsumers"): {"StreamCreationTimestamp"},
    ("sns", "CreateTopic"): {"DataProtectionPolicy"},
    # Metric math, percentiles, anomaly detection, tags, composite and cross-account alarms
    # (EvaluationWindow and EvaluationCriteria too: unions this walk cannot fill in).
    ("cloudwatch", "PutMetricAlarm"): {
        "Metrics", "ExtendedStatistic", "EvaluateLowSampleCountPercentile", "Tags", "ThresholdMetricId", "WarmUpConfiguration",
        "EvaluationInterval", "ActionConfiguration",
    },
    ("cloudwatch", "DescribeAlarms"): {"AlarmTypes", "ChildrenOfAlarmName", "ParentsOfAlarmName"},
    ("cloudwatch", "GetMetricStatistics"): {"ExtendedStatistics"},
    ("cloudwatch", "GetMetricData"): {"LabelOptions"},
    ("cloudwatch", "ListMetrics"): {"IncludeLinkedAccounts", "OwningAccount", "RecentlyActive"},
    # Destinations and sources not built yet (Splunk, Snowflake, Iceberg, OpenSearch Serverless, MSK, databases),
    # throughput hints.
    ("firehose", "CreateDeliveryStream"): {
        "AmazonOpenSearchServerlessDestinationConfiguration",
        "DatabaseSourceConfiguration", "DirectPutSourceConfiguration",
        "IcebergDestinationConfiguration",
        "MSKSourceConfiguration", "SnowflakeDestinationConfiguration",
        "SplunkDestinationConfiguration",
    },
}


# Members the gateway needs that the model leaves optional, and ARNs it checks the form of.
EXTRA = {
    ("kinesis", "PutRecord"): {"PartitionKey": "x"},
    ("kinesis", "PutRecords"): {"Records": [{"Data": b"x", "PartitionKey": "x"}]},
    ("kinesis", "UpdateMaxRecordSize"): {"StreamARN": "arn:aws:kinesis:us-east-1:000000000000:stream/x"},
    ("cloudwatch", "PutMetricAlarm"): {
        "MetricName": "x", "Namespace": "x", "Statistic": "Sum", "Period": 60, "Threshold": 1.0, "EvaluationPeriods": 1,
        "ComparisonOperator": "GreaterThanThreshold",
    },
    ("cloudwatch", "GetMetricData"): {
        "MetricDataQueries": [{"Id": "x", "MetricStat": {"Metric": {"Namespace": "x", "MetricName": "x"}, "Period": 60, "Stat": "Sum"}}],
    },
}
ARNS = {
    "kinesis": "arn:aws:kinesis:us-east-1:000000000000:stream/x",
    "sns": "arn:aws:sns:us-east-1:000000000000:x",
    "sqs": "arn:aws:sqs:us-east-1:000000000000:x",
    "kms": "arn:aws:kms:us-east-1:000000000000:key/00000000-0000-4000-8000-000000000000",
}

NOT_SERVED = ("InvalidAction", "UnknownOperationException", "AWS.SimpleQueueService.UnsupportedOperation")


def value(shape, depth=0):
    """A value botocore accepts for `shape`."""
    kind = shape.type_name
    if kind == "structure":
        return {name: value(member, depth + 1) for name, member in shape.members.items() if name in shape.required_members} if depth < 4 else {}
    if kind == "list":
        return [value(shape.member, depth + 1)]
    if kind == "map":
        return {"k": value(shape.value, depth + 1)}
    if kind == "string":
        if shape.enum:
            return shape.enum[0]
        return "x" * max(1, shape.metadata.get("min", 1))
    if kind in ("integer", "long"):
        return max(1, shape.metadata.get("min", 1))
    if kind == "boolean":
        return True
    if kind == "blob":
        return b"x"
    if kind == "timestamp":
        return datetime.datetime.now(datetime.timezone.utc)
    if kind in ("double", "float"):
        return 1.0
    raise AssertionError(f"no value for a {kind}")


class Models(unittest.TestCase):
    maxDiff = None

    def walk(self, service, served):
        sdk = client(service)
        model = sdk.meta.service_model
        refused_here = {}
        for name in model.operation_names:
            operation = model.operation_model(name)
            shape = operation.input_shape
            if shape is None or name not in served:
                continue
            required = {
                member: ARNS[service] if member.upper().endswith("ARN") else value(shape.members[member]) for member in shape.required_members
            }
            required.update(EXTRA.get((service, name), {}))
            # Kinesis names a stream by StreamName or StreamARN, neither required by the model.
            if service == "kinesis" and "StreamName" in shape.members and not {"StreamName", "StreamARN"} & set(required):
                required["StreamName"] = "x"
            method = getattr(sdk, botocore.xform_name(name))
            for member, member_shape in shape.members.items():
                if member in required:
                    continue
                params = {k: v for k, v in required.items() if not (member == "StreamARN" and k == "StreamName")}
                params[member] = value(member_shape)
                try:
                    method(**params)
                    continue
                except botocore.exceptions.ParamValidationError:
                    continue
                except botocore.exceptions.ClientError as error:
                    code, message = error.response["Error"]["Code"], error.response["Error"].get("Message", "")
                    self.assertNotIn(code, NOT_SERVED, f"{service} {name} is listed as served: {message}")
                    if "is not supported by this server" in message:
                        self.assertIn(member, message, f"{service} {name}: the refusal names another member: {message}")
                        refused_here.setdefault(name, set()).add(member)
        def expected(name):
            members = set(model.operation_model(name).input_shape.members) if model.operation_model(name).input_shape else set()
            return (REFUSED_EVERYWHERE.get(service, set()) & members) | REFUSED.get((service, name), set())

        differ = {
            name: {"refused": sorted(refused_here.get(name, set())), "listed": sorted(expected(name))}
            for name in served
            if refused_here.get(name, set()) != expected(name)
        }
        self.assertEqual(differ, {}, f"{service}: members refused differ from REFUSED")

    def test_sqs(self):
        self.walk("sqs", [
            "CreateQueue", "GetQueueUrl", "ListQueues", "DeleteQueue", "PurgeQueue", "GetQueueAttributes", "SetQueueAttributes",
            "TagQueue", "UntagQueue", "ListQueueTags", "AddPermission", "RemovePermission", "ListDeadLetterSourceQueues",
            "SendMessage", "SendMessageBatch", "ReceiveMessage", "DeleteMessage", "DeleteMessageBatch", "ChangeMessageVisibility",
            "ChangeMessageVisibilityBatch", "StartMessageMoveTask", "CancelMessageMoveTask", "ListMessageMoveTasks",
        ])

    def test_kinesis(self):
        self.walk("kinesis", [
            "CreateStream", "DeleteStream", "DescribeStream", "DescribeStreamSummary", "ListStreams", "ListShards", "PutRecord",
            "PutRecords", "GetShardIterator", "GetRecords", "IncreaseStreamRetentionPeriod", "DecreaseStreamRetentionPeriod",
            "SplitShard", "MergeShards", "UpdateShardCount", "AddTagsToStream", "RemoveTagsFromStream", "ListTagsForStream",
            "RegisterStreamConsumer", "DeregisterStreamConsumer", "DescribeStreamConsumer", "ListStreamConsumers",
            "PutResourcePolicy", "GetResourcePolicy", "DeleteResourcePolicy", "TagResource", "UntagResource",
            "ListTagsForResource", "DescribeLimits", "DescribeAccountSettings", "StartStreamEncryption", "StopStreamEncryption",
            "UpdateMaxRecordSize", "UpdateStreamMode", "EnableEnhancedMonitoring", "DisableEnhancedMonitoring",
        ])

    def test_sns(self):
        self.walk("sns", [
            "CreateTopic", "DeleteTopic", "ListTopics", "GetTopicAttributes", "SetTopicAttributes", "Subscribe",
            "ConfirmSubscription", "Unsubscribe", "ListSubscriptions", "ListSubscriptionsByTopic", "GetSubscriptionAttributes",
            "SetSubscriptionAttributes", "Publish", "PublishBatch", "AddPermission", "RemovePermission", "TagResource",
            "UntagResource", "ListTagsForResource",
        ])

    def test_cloudwatch(self):
        self.walk("cloudwatch", [
            "PutMetricAlarm", "DescribeAlarms", "DeleteAlarms", "SetAlarmState", "EnableAlarmActions", "DisableAlarmActions",
            "GetMetricStatistics", "GetMetricData", "ListMetrics",
        ])

    def test_firehose(self):
        self.walk("firehose", [
            "CreateDeliveryStream", "DeleteDeliveryStream", "DescribeDeliveryStream", "ListDeliveryStreams", "PutRecord",
            "PutRecordBatch", "UpdateDestination", "TagDeliveryStream", "UntagDeliveryStream", "ListTagsForDeliveryStream",
            "StartDeliveryStreamEncryption", "StopDeliveryStreamEncryption",
        ])

    def test_kms(self):
        self.walk("kms", [
            "CreateKey", "DescribeKey", "ListKeys", "CreateAlias", "UpdateAlias", "DeleteAlias", "ListAliases", "EnableKey",
            "DisableKey", "ScheduleKeyDeletion", "CancelKeyDeletion", "EnableKeyRotation", "DisableKeyRotation",
            "GetKeyRotationStatus", "RotateKeyOnDemand", "Encrypt", "Decrypt", "GenerateDataKey", "GenerateDataKeyWithoutPlaintext",
        ])


if __name__ == "__main__":
    unittest.main()
