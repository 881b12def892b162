"""Policies through boto3 against a sluiced started with --credentials naming three principals:
OWNER (no policies: its account root's rights), LIMITED (same account; may only send to queues
named limited-*) and OTHER (another account, whose own policy allows sending, publishing and
putting records anywhere). Refusals carry each protocol's code (SQS AccessDenied, SNS
AuthorizationError, Kinesis AccessDeniedException); AddPermission / RemovePermission (SQS and
SNS) and Put/Get/DeleteResourcePolicy (Kinesis) let the other account in and out; SNS delivers
to a queue only when the queue's policy allows the topic."""
import json
import os
import time
import unittest

import boto3
import botocore.exceptions
from botocore.config import Config

from common import ENDPOINT, Expect, unique


def client(service, who):
    return boto3.client(
        service,
        endpoint_url=ENDPOINT,
        region_name="us-east-1",
        aws_access_key_id=os.environ[f"SLUICE_{who}_KEY_ID"],
        aws_secret_access_key=os.environ[f"SLUICE_{who}_SECRET"],
        config=Config(retries={"max_attempts": 1}),
    )


OTHER_ACCOUNT = "222222222222"


def eventually(check, seconds=10):
    """Retries `check` until it stops raising (a new policy is in force once its change is answered;
    this only absorbs SNS's asynchronous delivery)."""
    deadline = time.time() + seconds
    while True:
        try:
            return check()
        except AssertionError:
            if time.time() > deadline:
                raise
            time.sleep(0.2)


class Policies(unittest.TestCase):
    def test_identity_policies_decide_and_refusals_carry_each_protocols_code(self):
        owner_sqs, limited_sqs = client("sqs", "OWNER"), client("sqs", "LIMITED")
        allowed = owner_sqs.create_queue(QueueName=unique("limited"))["QueueUrl"]
        other = owner_sqs.create_queue(QueueName=unique("private"))["QueueUrl"]
        limited_sqs.send_message(QueueUrl=allowed, MessageBody="mine to send")
        with Expect(self, "AccessDenied", 403):
            limited_sqs.receive_message(QueueUrl=allowed)
        with Expect(self, "AccessDenied", 403):
            limited_sqs.send_message(QueueUrl=other, MessageBody="not mine")
        topic = client("sns", "OWNER").create_topic(Name=unique("limited"))["TopicArn"]
        with Expect(self, "AuthorizationError", 403):
            client("sns", "LIMITED").publish(TopicArn=topic, Message="x")
        with self.assertRaises(botocore.exceptions.ClientError) as caught:
            client("kinesis", "LIMITED").list_streams()
        self.assertEqual(caught.exception.response["Error"]["Code"], "AccessDeniedException")

    def test_sqs_add_and_remove_permission_let_another_account_in_and_out(self):
        owner, other = client("sqs", "OWNER"), client("sqs", "OTHER")
        url = owner.create_queue(QueueName=unique("shared"))["QueueUrl"]
        with Expect(self, "AccessDenied", 403):
            other.send_message(QueueUrl=url, MessageBody="before")
        owner.add_permission(QueueUrl=url, Label="other-sends", AWSAccountIds=[OTHER_ACCOUNT], Actions=["SendMessage"])
        policy = json.loads(owner.get_queue_attributes(QueueUrl=url, AttributeNames=["Policy"])["Attributes"]["Policy"])
        self.assertEqual([s["Sid"] for s in policy["Statement"]], ["other-sends"])
        other.send_message(QueueUrl=url, MessageBody="let in")
        with Expect(self, "InvalidParameterValue", 400):
            owner.add_permission(QueueUrl=url, Label="other-sends", AWSAccountIds=[OTHER_ACCOUNT], Actions=["*"])
        owner.remove_permission(QueueUrl=url, Label="other-sends")
        with Expect(self, "AccessDenied", 403):
            other.send_message(QueueUrl=url, MessageBody="after")

    def test_sns_add_and_remove_permission(self):
        owner, other = client("sns", "OWNER"), client("sns", "OTHER")
        topic = owner.create_topic(Name=unique("shared"))["TopicArn"]
        with Expect(self, "AuthorizationError", 403):
            other.publish(TopicArn=topic, Message="before")
        owner.add_permission(TopicArn=topic, Label="other-publishes", AWSAccountId=[OTHER_ACCOUNT], ActionName=["Publish"])
        statements = json.loads(owner.get_topic_attributes(TopicArn=topic)["Attributes"]["Policy"])["Statement"]
        self.assertIn("other-publishes", [s["Sid"] for s in statements])
        other.publish(TopicArn=topic, Message="let in")
        owner.remove_permission(TopicArn=topic, Label="other-publishes")
        with Expect(self, "AuthorizationError", 403):
            other.publish(TopicArn=topic, Message="after")

    def test_kinesis_resource_policies(self):
        owner, other = client("kinesis", "OWNER"), client("kinesis", "OTHER")
        name = unique("shared")
        owner.create_stream(StreamName=name, ShardCount=1)
        arn = owner.describe_stream_summary(StreamName=name)["StreamDescriptionSummary"]["StreamARN"]
        self.assertEqual(owner.get_resource_policy(ResourceARN=arn)["Policy"], "{}")
        with self.assertRaises(botocore.exceptions.ClientError) as caught:
            other.put_record(StreamARN=arn, Data=b"before", PartitionKey="k")
        self.assertEqual(caught.exception.response["Error"]["Code"], "AccessDeniedException")
        policy = json.dumps({
            "Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{OTHER_ACCOUNT}:root"},
                           "Action": ["kinesis:PutRecord", "kinesis:DescribeStreamSummary"], "Resource": arn}],
        })
        owner.put_resource_policy(ResourceARN=arn, Policy=policy)
        self.assertEqual(json.loads(owner.get_resource_policy(ResourceARN=arn)["Policy"]), json.loads(policy))
        other.put_record(StreamARN=arn, Data=b"let in", PartitionKey="k")
        with self.assertRaises(botocore.exceptions.ClientError) as caught:
            owner.put_resource_policy(ResourceARN=arn, Policy='{"Statement": {"Effect": "Allow"}}')
        self.assertEqual(caught.exception.response["Error"]["Code"], "InvalidArgumentException")
        owner.delete_resource_policy(ResourceARN=arn)
        with self.assertRaises(botocore.exceptions.ClientError):
            other.put_record(StreamARN=arn, Data=b"after", PartitionKey="k")

    def test_sns_delivers_to_a_queue_only_with_its_policys_leave(self):
        sqs, sns = client("sqs", "OWNER"), client("sns", "OWNER")
        url = sqs.create_queue(QueueName=unique("inbox"))["QueueUrl"]
        queue_arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        topic = sns.create_topic(Name=unique("events"))["TopicArn"]
        sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=queue_arn, Attributes={"RawMessageDelivery": "true"})
        sns.publish(TopicArn=topic, Message="refused")
        self.assertEqual(sqs.receive_message(QueueUrl=url, WaitTimeSeconds=1).get("Messages", []), [])
        policy = {
            "Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "Principal": {"Service": "sns.amazonaws.com"}, "Action": "sqs:SendMessage",
                           "Resource": queue_arn, "Condition": {"ArnEquals": {"aws:SourceArn": topic}}}],
        }
        sqs.set_queue_attributes(QueueUrl=url, Attributes={"Policy": json.dumps(policy)})
        sns.publish(TopicArn=topic, Message="allowed")

        def delivered():
            messages = sqs.receive_message(QueueUrl=url, WaitTimeSeconds=1).get("Messages", [])
            self.assertEqual([m["Body"] for m in messages], ["allowed"])

        eventually(delivered)


if __name__ == "__main__":
    unittest.main()
