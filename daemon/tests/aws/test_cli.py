"""The AWS CLI (v1) against sluiced with --endpoint-url: the commands a new user tries first."""
import json
import unittest

from common import aws, unique


class Cli(unittest.TestCase):
    def test_sqs_create_send_receive_delete(self):
        url = aws("sqs", "create-queue", "--queue-name", unique("cli"))["QueueUrl"]
        sent = aws("sqs", "send-message", "--queue-url", url, "--message-body", "hello from the cli")
        [message] = aws("sqs", "receive-message", "--queue-url", url, "--wait-time-seconds", "2")["Messages"]
        self.assertEqual((message["Body"], message["MessageId"]), ("hello from the cli", sent["MessageId"]))
        aws("sqs", "delete-message", "--queue-url", url, "--receipt-handle", message["ReceiptHandle"])
        self.assertNotIn("Messages", aws("sqs", "receive-message", "--queue-url", url, "--wait-time-seconds", "1"))

    def test_sqs_fifo_queue_in_order_once(self):
        url = aws("sqs", "create-queue", "--queue-name", unique("cli") + ".fifo", "--attributes", "FifoQueue=true,ContentBasedDeduplication=true")["QueueUrl"]
        sent = [aws("sqs", "send-message", "--queue-url", url, "--message-body", f"step {i}", "--message-group-id", "job") for i in range(3)]
        again = aws("sqs", "send-message", "--queue-url", url, "--message-body", "step 0", "--message-group-id", "job")
        self.assertEqual(again["MessageId"], sent[0]["MessageId"])
        self.assertEqual([int(s["SequenceNumber"]) for s in sent], sorted(int(s["SequenceNumber"]) for s in sent))
        messages = aws("sqs", "receive-message", "--queue-url", url, "--max-number-of-messages", "10", "--attribute-names", "All")["Messages"]
        self.assertEqual([m["Body"] for m in messages], ["step 0", "step 1", "step 2"])
        self.assertEqual(messages[2]["Attributes"]["SequenceNumber"], sent[2]["SequenceNumber"])

    def test_sns_publish_reaches_a_subscribed_queue(self):
        url = aws("sqs", "create-queue", "--queue-name", unique("cli-sub"))["QueueUrl"]
        arn = aws("sqs", "get-queue-attributes", "--queue-url", url, "--attribute-names", "QueueArn")["Attributes"]["QueueArn"]
        topic = aws("sns", "create-topic", "--name", unique("cli-topic"))["TopicArn"]
        aws("sns", "subscribe", "--topic-arn", topic, "--protocol", "sqs", "--notification-endpoint", arn)
        published = aws("sns", "publish", "--topic-arn", topic, "--message", "hello subscribers")
        [message] = aws("sqs", "receive-message", "--queue-url", url, "--wait-time-seconds", "2")["Messages"]
        envelope = json.loads(message["Body"])
        self.assertEqual((envelope["Type"], envelope["Message"], envelope["MessageId"]), ("Notification", "hello subscribers", published["MessageId"]))

    def test_sns_fifo_topic_delivers_in_order_once(self):
        url = aws("sqs", "create-queue", "--queue-name", unique("cli-sub") + ".fifo", "--attributes", "FifoQueue=true")["QueueUrl"]
        arn = aws("sqs", "get-queue-attributes", "--queue-url", url, "--attribute-names", "QueueArn")["Attributes"]["QueueArn"]
        topic = aws("sns", "create-topic", "--name", unique("cli-topic") + ".fifo", "--attributes", "FifoTopic=true")["TopicArn"]
        aws("sns", "subscribe", "--topic-arn", topic, "--protocol", "sqs", "--notification-endpoint", arn, "--attributes", "RawMessageDelivery=true")
        sent = [aws("sns", "publish", "--topic-arn", topic, "--message", f"step {i}", "--message-group-id", "job", "--message-deduplication-id", f"d{i}") for i in range(3)]
        again = aws("sns", "publish", "--topic-arn", topic, "--message", "repeat", "--message-group-id", "job", "--message-deduplication-id", "d1")
        self.assertEqual((again["MessageId"], again["SequenceNumber"]), (sent[1]["MessageId"], sent[1]["SequenceNumber"]))
        messages = aws("sqs", "receive-message", "--queue-url", url, "--max-number-of-messages", "10", "--attribute-names", "All")["Messages"]
        self.assertEqual([m["Body"] for m in messages], ["step 0", "step 1", "step 2"])
        self.assertEqual(messages[1]["Attributes"]["MessageDeduplicationId"], "d1")

    def test_kinesis_put_record_and_get_records(self):
        stream = unique("cli-stream")
        aws("kinesis", "create-stream", "--stream-name", stream, "--shard-count", "1")
        put = aws("kinesis", "put-record", "--stream-name", stream, "--partition-key", "k", "--data", "hello stream")
        iterator = aws("kinesis", "get-shard-iterator", "--stream-name", stream, "--shard-id", put["ShardId"], "--shard-iterator-type", "TRIM_HORIZON")["ShardIterator"]
        [record] = aws("kinesis", "get-records", "--shard-iterator", iterator)["Records"]
        # The CLI prints blobs as base64.
        self.assertEqual((record["Data"], record["SequenceNumber"]), ("aGVsbG8gc3RyZWFt", put["SequenceNumber"]))


if __name__ == "__main__":
    unittest.main()
