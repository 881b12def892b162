"""One step of the cross-protocol round trip that daemon/tests/aws_clients.rs drives: the SDK
receives the message the binary client sent (SLUICE_CROSS_EXPECT, id SLUICE_CROSS_ID),
deletes it, and sends SLUICE_CROSS_REPLY for the binary client to receive."""
import os
import unittest

from common import client


class Cross(unittest.TestCase):
    def test_receive_what_the_binary_client_sent_and_answer(self):
        sqs = client("sqs")
        url = sqs.get_queue_url(QueueName=os.environ["SLUICE_CROSS_QUEUE"])["QueueUrl"]
        [message] = sqs.receive_message(QueueUrl=url, WaitTimeSeconds=5, MessageAttributeNames=["All"])["Messages"]
        self.assertEqual(message["Body"], os.environ["SLUICE_CROSS_EXPECT"])
        self.assertEqual(message["MessageId"], os.environ["SLUICE_CROSS_ID"])
        sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
        sqs.send_message(QueueUrl=url, MessageBody=os.environ["SLUICE_CROSS_REPLY"], MessageAttributes={"via": {"DataType": "String", "StringValue": sqs.meta.service_model.protocol}})


if __name__ == "__main__":
    unittest.main()
