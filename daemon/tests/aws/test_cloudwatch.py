"""CloudWatch through boto3 and the AWS CLI: alarms on queue depth that publish to a topic and
come back, the metric history, and CloudWatch's errors. The harness starts sluiced with
--metrics-sample-seconds 1; boto3 of today speaks Smithy RPC v2 CBOR, the older one Query
(SLUICE_CLOUDWATCH_PROTOCOL says which this venv must speak)."""
import datetime
import json
import os
import time
import unittest

from common import AWS, Expect, aws, client, unique

# What this venv's botocore sends: today's picks AWS JSON 1.0 (of CBOR, JSON and Query), the
# older one Query.
CONTENT_TYPE = os.environ.get("SLUICE_CLOUDWATCH_CONTENT_TYPE", "application/x-amz-json-1.0")
# Long enough for a busy machine; the alarms below turn within two 10-second periods.
DEADLINE_SECONDS = 90


def now():
    return datetime.datetime.now(datetime.timezone.utc)


def until(what, check):
    deadline = time.monotonic() + DEADLINE_SECONDS
    while True:
        found = check()
        if found:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {DEADLINE_SECONDS} s")
        time.sleep(0.5)


class CloudWatch(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.cw, cls.sqs, cls.sns = client("cloudwatch"), client("sqs"), client("sns")

    def test_the_protocol_is_the_one_this_sdk_speaks(self):
        sent = []
        self.cw.meta.events.register("before-send.cloudwatch.*", lambda request, **_: sent.append(request.headers.get("Content-Type")))
        self.cw.list_metrics(Namespace="AWS/SQS")
        self.assertEqual(len(sent), 1)
        self.assertTrue(sent[0].decode().startswith(CONTENT_TYPE), sent)

    def queue(self, name):
        return self.sqs.create_queue(QueueName=name)["QueueUrl"]

    def subscribed_queue(self, topic_arn):
        url = self.queue(unique("alarm-inbox"))
        arn = self.sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        self.sns.subscribe(TopicArn=topic_arn, Protocol="sqs", Endpoint=arn, Attributes={"RawMessageDelivery": "true"})
        return url

    def notification(self, inbox):
        def one():
            messages = self.sqs.receive_message(QueueUrl=inbox, WaitTimeSeconds=1).get("Messages", [])
            for message in messages:
                self.sqs.delete_message(QueueUrl=inbox, ReceiptHandle=message["ReceiptHandle"])
            return messages[0] if messages else None

        return json.loads(until("an alarm notification", one)["Body"])

    def state(self, name):
        return self.cw.describe_alarms(AlarmNames=[name])["MetricAlarms"][0]

    def test_an_alarm_on_queue_depth_publishes_alarm_then_ok_to_its_topic(self):
        work = unique("work")
        url = self.queue(work)
        topic = self.sns.create_topic(Name=unique("alarms"))["TopicArn"]
        inbox = self.subscribed_queue(topic)
        name = unique("deep")
        if os.path.exists(AWS):
            # The command an autoscaler's operator types.
            aws("cloudwatch", "put-metric-alarm", "--alarm-name", name, "--namespace", "AWS/SQS",
                "--metric-name", "ApproximateNumberOfMessagesVisible", "--dimensions", f"Name=QueueName,Value={work}",
                "--statistic", "Maximum", "--period", "10", "--evaluation-periods", "1", "--threshold", "5",
                "--comparison-operator", "GreaterThanThreshold", "--alarm-actions", topic, "--ok-actions", topic,
                "--alarm-description", "scale out")
        else:  # the older venv has boto3 only
            self.cw.put_metric_alarm(AlarmName=name, Namespace="AWS/SQS", MetricName="ApproximateNumberOfMessagesVisible",
                                     Dimensions=[{"Name": "QueueName", "Value": work}], Statistic="Maximum", Period=10,
                                     EvaluationPeriods=1, Threshold=5, ComparisonOperator="GreaterThanThreshold",
                                     AlarmActions=[topic], OKActions=[topic], AlarmDescription="scale out")
        alarm = self.state(name)
        self.assertEqual(alarm["StateValue"], "INSUFFICIENT_DATA")
        self.assertEqual(alarm["AlarmArn"], f"arn:aws:cloudwatch:us-east-1:000000000000:alarm:{name}")
        self.assertEqual(alarm["Dimensions"], [{"Name": "QueueName", "Value": work}])
        for i in range(10):
            self.sqs.send_message(QueueUrl=url, MessageBody=f"job {i}")
        until("ALARM", lambda: self.state(name)["StateValue"] == "ALARM")
        message = self.notification(inbox)
        self.assertEqual((message["AlarmName"], message["NewStateValue"]), (name, "ALARM"))
        self.assertIn(message["OldStateValue"], ("INSUFFICIENT_DATA", "OK"))
        self.assertEqual(message["AlarmDescription"], "scale out")
        self.assertEqual(message["Trigger"]["MetricName"], "ApproximateNumberOfMessagesVisible")
        self.assertEqual(message["Trigger"]["Dimensions"], [{"value": work, "name": "QueueName"}])
        self.assertEqual(message["Trigger"]["Threshold"], 5.0)
        self.assertIn("greater than the threshold (5.0)", message["NewStateReason"])
        reason = json.loads(self.state(name)["StateReasonData"])
        self.assertGreater(reason["recentDatapoints"][0], 5)
        # The consumers catch up: back to OK, and that is published too.
        self.sqs.purge_queue(QueueUrl=url)
        until("OK", lambda: self.state(name)["StateValue"] == "OK")
        message = self.notification(inbox)
        self.assertEqual((message["NewStateValue"], message["OldStateValue"]), ("OK", "ALARM"))

    def test_set_alarm_state_runs_the_actions_unless_they_are_disabled(self):
        topic = self.sns.create_topic(Name=unique("manual"))["TopicArn"]
        inbox = self.subscribed_queue(topic)
        name = unique("manual")
        self.cw.put_metric_alarm(AlarmName=name, Namespace="Custom/App", MetricName="Nothing", Statistic="Sum", Period=60,
                                 EvaluationPeriods=5, Threshold=1, ComparisonOperator="GreaterThanOrEqualToThreshold",
                                 TreatMissingData="ignore", AlarmActions=[topic])
        self.cw.set_alarm_state(AlarmName=name, StateValue="ALARM", StateReason="testing the pager")
        message = self.notification(inbox)
        self.assertEqual((message["NewStateValue"], message["NewStateReason"]), ("ALARM", "testing the pager"))
        self.cw.disable_alarm_actions(AlarmNames=[name])
        self.assertFalse(self.state(name)["ActionsEnabled"])
        self.cw.set_alarm_state(AlarmName=name, StateValue="OK", StateReason="quiet")
        self.cw.set_alarm_state(AlarmName=name, StateValue="ALARM", StateReason="still quiet")
        self.assertEqual(self.sqs.receive_message(QueueUrl=inbox, WaitTimeSeconds=2).get("Messages", []), [])
        self.cw.enable_alarm_actions(AlarmNames=[name])
        self.assertTrue(self.state(name)["ActionsEnabled"])
        self.cw.delete_alarms(AlarmNames=[name])
        self.assertEqual(self.cw.describe_alarms(AlarmNames=[name])["MetricAlarms"], [])

    def test_the_history_answers_statistics_data_and_lists(self):
        queue = unique("counted")
        url = self.queue(queue)
        for i in range(3):
            self.sqs.send_message(QueueUrl=url, MessageBody=str(i))
        dims = [{"Name": "QueueName", "Value": queue}]

        def sent():
            points = self.cw.get_metric_statistics(Namespace="AWS/SQS", MetricName="NumberOfMessagesSent", Dimensions=dims,
                                                   StartTime=now() - datetime.timedelta(minutes=10), EndTime=now() + datetime.timedelta(minutes=1),
                                                   Period=600, Statistics=["Sum", "Maximum"])["Datapoints"]
            return points if points and sum(p["Sum"] for p in points) == 3 else None

        points = until("NumberOfMessagesSent to add up to 3", sent)
        self.assertEqual(points[0]["Unit"], "Count")
        self.assertNotIn("Average", points[0], "only the statistics asked for")
        def depth(**options):
            return self.cw.get_metric_data(MetricDataQueries=[query], StartTime=now() - datetime.timedelta(minutes=10), EndTime=now(),
                                           **options)

        query = {"Id": "depth", "MetricStat": {"Metric": {"Namespace": "AWS/SQS", "MetricName": "ApproximateNumberOfMessagesVisible",
                                                          "Dimensions": dims}, "Period": 1, "Stat": "Maximum"}}
        def two_samples():
            found = depth()["MetricDataResults"][0]
            return found if len(found["Values"]) >= 2 else None

        result = until("two samples", two_samples)
        self.assertEqual((result["Id"], result["StatusCode"]), ("depth", "Complete"))
        self.assertEqual(result["Values"][0], 3.0, "newest first: the depth now")
        self.assertEqual(result["Timestamps"], sorted(result["Timestamps"], reverse=True))
        page = depth(MaxDatapoints=1, ScanBy="TimestampAscending")
        self.assertEqual(len(page["MetricDataResults"][0]["Values"]), 1)
        self.assertEqual(page["MetricDataResults"][0]["StatusCode"], "PartialData")
        following = depth(MaxDatapoints=1, ScanBy="TimestampAscending", NextToken=page["NextToken"])
        self.assertGreater(following["MetricDataResults"][0]["Timestamps"][0], page["MetricDataResults"][0]["Timestamps"][0])
        listed = self.cw.list_metrics(Namespace="AWS/SQS", Dimensions=[{"Name": "QueueName", "Value": queue}])["Metrics"]
        self.assertIn("ApproximateAgeOfOldestMessage", {m["MetricName"] for m in listed})
        self.assertTrue(all(m["Dimensions"] == dims for m in listed))

    def test_describe_alarms_pages_and_filters(self):
        prefix = unique("page")
        for i in range(3):
            self.cw.put_metric_alarm(AlarmName=f"{prefix}-{i}", Namespace="AWS/SQS", MetricName="NumberOfMessagesSent",
                                     Statistic="Sum", Period=60, EvaluationPeriods=1, Threshold=100,
                                     ComparisonOperator="GreaterThanThreshold")
        first = self.cw.describe_alarms(AlarmNamePrefix=prefix, MaxRecords=2)
        self.assertEqual([a["AlarmName"] for a in first["MetricAlarms"]], [f"{prefix}-0", f"{prefix}-1"])
        rest = self.cw.describe_alarms(AlarmNamePrefix=prefix, MaxRecords=2, NextToken=first["NextToken"])
        self.assertEqual([a["AlarmName"] for a in rest["MetricAlarms"]], [f"{prefix}-2"])
        self.assertNotIn("NextToken", rest)
        self.cw.delete_alarms(AlarmNames=[f"{prefix}-{i}" for i in range(3)])

    def test_errors_are_cloudwatchs(self):
        with Expect(self, "ResourceNotFound", 404):
            self.cw.set_alarm_state(AlarmName=unique("absent"), StateValue="OK", StateReason="x")
        with Expect(self, "ResourceNotFound"):
            self.cw.delete_alarms(AlarmNames=[unique("absent")])
        with Expect(self, "InvalidParameterValue", 400):
            self.cw.put_metric_alarm(AlarmName=unique("odd"), Namespace="AWS/SQS", MetricName="X", Statistic="Sum", Period=45,
                                     EvaluationPeriods=1, Threshold=1, ComparisonOperator="GreaterThanThreshold")
        with Expect(self, "InvalidParameterValue") as refused:
            self.cw.put_metric_alarm(AlarmName=unique("scale"), Namespace="AWS/SQS", MetricName="X", Statistic="Sum", Period=60,
                                     EvaluationPeriods=1, Threshold=1, ComparisonOperator="GreaterThanThreshold",
                                     AlarmActions=["arn:aws:autoscaling:us-east-1:000000000000:scalingPolicy:x"])
        self.assertIn("SNS topics", refused.error.response["Error"]["Message"])
        with Expect(self, "InvalidParameterCombination"):
            self.cw.get_metric_statistics(Namespace="AWS/SQS", MetricName="X", StartTime=now() - datetime.timedelta(days=2),
                                          EndTime=now(), Period=60, Statistics=["Sum"])
        with Expect(self, "InvalidParameterCombination"):
            self.cw.describe_alarms(AlarmNames=["a"], AlarmNamePrefix="a")


if __name__ == "__main__":
    unittest.main()
