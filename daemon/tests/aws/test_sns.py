"""Every SNS action through boto3 (the Query protocol), with SQS and HTTP subscribers."""
import http.server
import json
import queue
import threading
import unittest
import urllib.request

from common import Expect, client, unique


class Endpoint(http.server.BaseHTTPRequestHandler):
    """An HTTP subscriber: every POST body goes on the server's queue."""

    def do_POST(self):
        length = int(self.headers.get("Content-Length", 0))
        self.server.received.put((dict(self.headers), json.loads(self.rfile.read(length))))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args):
        pass


class Sns(unittest.TestCase):
    def setUp(self):
        self.sns = client("sns")
        self.sqs = client("sqs")

    def queue_arn(self):
        url = self.sqs.create_queue(QueueName=unique("sub"))["QueueUrl"]
        arn = self.sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        return url, arn

    def drain(self, url, want):
        bodies = []
        for _ in range(20):
            for message in self.sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=1).get("Messages", []):
                bodies.append(message["Body"])
                self.sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
            if len(bodies) >= want:
                break
        return bodies

    def test_topic_tags_by_resource_arn(self):
        topic = self.sns.create_topic(Name=unique("tagged"), Tags=[{"Key": "team", "Value": "data"}])["TopicArn"]
        self.sns.tag_resource(ResourceArn=topic, Tags=[{"Key": "tier", "Value": "gold"}])
        tags = self.sns.list_tags_for_resource(ResourceArn=topic)["Tags"]
        self.assertEqual(sorted((t["Key"], t["Value"]) for t in tags), [("team", "data"), ("tier", "gold")])
        self.sns.untag_resource(ResourceArn=topic, TagKeys=["team"])
        self.assertEqual(self.sns.list_tags_for_resource(ResourceArn=topic)["Tags"], [{"Key": "tier", "Value": "gold"}])
        with Expect(self, "NotFound", 404):
            self.sns.list_tags_for_resource(ResourceArn=topic + "-missing")

    def test_topics_subscriptions_filters_and_publishing_to_queues(self):
        name = unique("orders")
        topic = self.sns.create_topic(Name=name, Attributes={"DisplayName": "Orders"}, Tags=[{"Key": "team", "Value": "a"}])["TopicArn"]
        self.assertEqual(topic, "arn:aws:sns:us-east-1:000000000000:" + name)
        listed = [t["TopicArn"] for page in self.sns.get_paginator("list_topics").paginate() for t in page["Topics"]]
        self.assertIn(topic, listed)
        self.assertEqual(self.sns.get_topic_attributes(TopicArn=topic)["Attributes"]["DisplayName"], "Orders")
        self.sns.set_topic_attributes(TopicArn=topic, AttributeName="DisplayName", AttributeValue="Shop orders")
        self.assertEqual(self.sns.get_topic_attributes(TopicArn=topic)["Attributes"]["DisplayName"], "Shop orders")

        url, arn = self.queue_arn()
        subscription = self.sns.subscribe(
            TopicArn=topic, Protocol="sqs", Endpoint=arn, Attributes={"RawMessageDelivery": "true"}, ReturnSubscriptionArn=True
        )["SubscriptionArn"]
        self.assertTrue(subscription.startswith(topic + ":"), subscription)
        self.sns.set_subscription_attributes(SubscriptionArn=subscription, AttributeName="FilterPolicy", AttributeValue=json.dumps({"color": ["red"]}))
        attributes = self.sns.get_subscription_attributes(SubscriptionArn=subscription)["Attributes"]
        self.assertEqual((attributes["RawMessageDelivery"], json.loads(attributes["FilterPolicy"])), ("true", {"color": ["red"]}))
        everywhere = [s["SubscriptionArn"] for page in self.sns.get_paginator("list_subscriptions").paginate() for s in page["Subscriptions"]]
        self.assertIn(subscription, everywhere)
        [row] = self.sns.list_subscriptions_by_topic(TopicArn=topic)["Subscriptions"]
        self.assertEqual((row["SubscriptionArn"], row["Protocol"], row["Endpoint"], row["TopicArn"]), (subscription, "sqs", arn, topic))

        red = {"color": {"DataType": "String", "StringValue": "red"}}
        blue = {"color": {"DataType": "String", "StringValue": "blue"}}
        self.assertTrue(self.sns.publish(TopicArn=topic, Message="red one", MessageAttributes=red)["MessageId"])
        self.sns.publish(TargetArn=topic, Message="blue one", MessageAttributes=blue)
        batch = self.sns.publish_batch(
            TopicArn=topic,
            PublishBatchRequestEntries=[
                {"Id": "a", "Message": "red two", "MessageAttributes": red},
                {"Id": "b", "Message": "blue two", "MessageAttributes": blue},
            ],
        )
        self.assertEqual(sorted(entry["Id"] for entry in batch["Successful"]), ["a", "b"])
        self.assertEqual(batch.get("Failed", []), [])
        self.assertEqual(sorted(self.drain(url, 2)), ["red one", "red two"])

        self.sns.unsubscribe(SubscriptionArn=subscription)
        self.assertEqual(self.sns.list_subscriptions_by_topic(TopicArn=topic)["Subscriptions"], [])
        self.sns.delete_topic(TopicArn=topic)
        with Expect(self, "NotFound", 404) as expect:
            self.sns.get_topic_attributes(TopicArn=topic)
        self.assertIsInstance(expect.error, self.sns.exceptions.NotFoundException)

    def test_http_subscribers_confirm_by_subscribe_url_and_by_token(self):
        server = http.server.HTTPServer(("127.0.0.1", 0), Endpoint)
        server.received = queue.Queue()
        threading.Thread(target=server.serve_forever, daemon=True).start()
        endpoint = f"http://127.0.0.1:{server.server_port}/hook"
        try:
            topic = self.sns.create_topic(Name=unique("hooks"))["TopicArn"]
            self.assertEqual(self.sns.subscribe(TopicArn=topic, Protocol="http", Endpoint=endpoint)["SubscriptionArn"], "pending confirmation")
            headers, confirmation = server.received.get(timeout=20)
            self.assertEqual(confirmation["Type"], "SubscriptionConfirmation")
            self.assertEqual(headers["x-amz-sns-message-type"], "SubscriptionConfirmation")
            # The SubscribeURL is a GET of ConfirmSubscription on the gateway.
            with urllib.request.urlopen(confirmation["SubscribeURL"], timeout=10) as answer:
                self.assertIn(b"<SubscriptionArn>", answer.read())
            [row] = self.sns.list_subscriptions_by_topic(TopicArn=topic)["Subscriptions"]
            self.assertTrue(row["SubscriptionArn"].startswith(topic + ":"), row)

            self.sns.publish(TopicArn=topic, Message="to the hook", Subject="hi")
            _, notification = server.received.get(timeout=20)
            self.assertEqual((notification["Type"], notification["Message"], notification["Subject"]), ("Notification", "to the hook", "hi"))
            # The UnsubscribeURL is a GET of Unsubscribe on the gateway.
            with urllib.request.urlopen(notification["UnsubscribeURL"], timeout=10) as answer:
                answer.read()
            self.assertEqual(self.sns.list_subscriptions_by_topic(TopicArn=topic)["Subscriptions"], [])

            # A second endpoint confirmed through the API with the token.
            self.sns.subscribe(TopicArn=topic, Protocol="http", Endpoint=endpoint + "/2")
            _, confirmation = server.received.get(timeout=20)
            confirmed = self.sns.confirm_subscription(TopicArn=topic, Token=confirmation["Token"])["SubscriptionArn"]
            self.assertTrue(confirmed.startswith(topic + ":"), confirmed)
        finally:
            server.shutdown()

    def test_fifo_topics_deliver_in_order_once_to_fifo_and_standard_queues(self):
        name = unique("orders") + ".fifo"
        with Expect(self, "InvalidParameter", 400):
            self.sns.create_topic(Name=name)
        topic = self.sns.create_topic(Name=name, Attributes={"FifoTopic": "true", "ContentBasedDeduplication": "true"})["TopicArn"]
        attributes = self.sns.get_topic_attributes(TopicArn=topic)["Attributes"]
        self.assertEqual((attributes["FifoTopic"], attributes["ContentBasedDeduplication"], attributes["FifoThroughputScope"]), ("true", "true", "Topic"))
        fifo_url = self.sqs.create_queue(QueueName=unique("sub") + ".fifo", Attributes={"FifoQueue": "true"})["QueueUrl"]
        fifo_arn = self.sqs.get_queue_attributes(QueueUrl=fifo_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        plain_url, plain_arn = self.queue_arn()
        self.sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=fifo_arn, Attributes={"RawMessageDelivery": "true"})
        self.sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=plain_arn)
        with Expect(self, "InvalidParameter", 400):
            self.sns.subscribe(TopicArn=topic, Protocol="https", Endpoint="https://example.com/hook")
        # A standard topic takes no FIFO queue.
        standard = self.sns.create_topic(Name=unique("plain"))["TopicArn"]
        with Expect(self, "InvalidParameter", 400):
            self.sns.subscribe(TopicArn=standard, Protocol="sqs", Endpoint=fifo_arn)
        with Expect(self, "InvalidParameter", 400):
            self.sns.publish(TopicArn=topic, Message="no group")

        published = [self.sns.publish(TopicArn=topic, Message=f"step {i}", MessageGroupId="job") for i in range(3)]
        sequences = [int(p["SequenceNumber"]) for p in published]
        self.assertEqual(sequences, sorted(sequences))
        again = self.sns.publish(TopicArn=topic, Message="step 0", MessageGroupId="job")
        self.assertEqual((again["MessageId"], again["SequenceNumber"]), (published[0]["MessageId"], published[0]["SequenceNumber"]))
        batch = self.sns.publish_batch(
            TopicArn=topic,
            PublishBatchRequestEntries=[
                {"Id": "a", "Message": "step 3", "MessageGroupId": "job", "MessageDeduplicationId": "s3"},
                {"Id": "b", "Message": "other", "MessageGroupId": "other"},
            ],
        )
        self.assertEqual([entry["Id"] for entry in batch["Successful"]], ["a", "b"])
        self.assertTrue(all(entry["SequenceNumber"] for entry in batch["Successful"]))

        messages = self.sqs.receive_message(QueueUrl=fifo_url, MaxNumberOfMessages=10, AttributeNames=["All"])["Messages"]
        jobs = [m for m in messages if m["Attributes"]["MessageGroupId"] == "job"]
        self.assertEqual([m["Body"] for m in jobs], ["step 0", "step 1", "step 2", "step 3"])
        self.assertEqual(jobs[3]["Attributes"]["MessageDeduplicationId"], "s3")
        envelopes = [json.loads(body) for body in self.drain(plain_url, 5)]
        self.assertEqual(sorted(e["Message"] for e in envelopes), ["other", "step 0", "step 1", "step 2", "step 3"])
        first = next(e for e in envelopes if e["Message"] == "step 0")
        self.assertEqual((first["MessageId"], first["SequenceNumber"]), (published[0]["MessageId"], published[0]["SequenceNumber"]))

    def test_errors_arrive_as_the_sdk_models_them(self):
        with Expect(self, "NotFound", 404):
            self.sns.publish(TopicArn="arn:aws:sns:us-east-1:000000000000:" + unique("missing"), Message="x")
        with Expect(self, "InvalidParameter", 400) as expect:
            self.sns.create_topic(Name="not a valid name!")
        self.assertIsInstance(expect.error, self.sns.exceptions.InvalidParameterException)
        topic = self.sns.create_topic(Name=unique("errors"))["TopicArn"]
        with Expect(self, "InvalidParameter", 400):
            self.sns.subscribe(TopicArn=topic, Protocol="carrier-pigeon", Endpoint="x")


if __name__ == "__main__":
    unittest.main()
