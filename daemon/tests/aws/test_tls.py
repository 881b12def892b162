"""boto3 and the AWS CLI over HTTPS against a sluiced started with --tls-cert: requests verify the
server's certificate against a test CA (SLUICE_CA_FILE) and a client that does not trust it is
refused. MutualTls runs against a sluiced started with --tls-client-ca too: a client presenting
a certificate from that CA (SLUICE_CLIENT_CERT / SLUICE_CLIENT_KEY) is served, one without is not.
The harness (aws_clients.rs) makes the certificates and points SLUICE_ENDPOINT at https://."""
import json
import os
import subprocess
import sys
import unittest

import botocore.exceptions
from botocore.config import Config

import common
from common import ENDPOINT, unique

CA = os.environ["SLUICE_CA_FILE"]
AWS = os.path.join(os.path.dirname(sys.executable), "aws")
# What a refused TLS client sees: a failed handshake, or a connection closed under the request.
REFUSED = (botocore.exceptions.SSLError, botocore.exceptions.ConnectionError, botocore.exceptions.HTTPClientError)


def client(service, verify=CA, client_cert=None):
    return common.client(service, verify=verify, config=Config(retries={"max_attempts": 1}, client_cert=client_cert))


def aws(*args):
    env = dict(os.environ, AWS_ACCESS_KEY_ID="test", AWS_SECRET_ACCESS_KEY="test", AWS_DEFAULT_REGION="us-east-1")
    return subprocess.run([AWS, "--endpoint-url", ENDPOINT, "--output", "json", *args], capture_output=True, text=True, env=env, timeout=60)


def exercise(case, **options):
    """A queue, a topic feeding it and a stream, all through HTTPS."""
    sqs, sns, kinesis = client("sqs", **options), client("sns", **options), client("kinesis", **options)
    url = sqs.create_queue(QueueName=unique("tls"))["QueueUrl"]
    case.assertTrue(url.startswith("https://"), url)
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    topic = sns.create_topic(Name=unique("tls"))["TopicArn"]
    sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=arn, Attributes={"RawMessageDelivery": "true"})
    sqs.send_message(QueueUrl=url, MessageBody="sent over https")
    sns.publish(TopicArn=topic, Message="published over https")
    bodies = set()
    for _ in range(10):
        for message in sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=2).get("Messages", []):
            bodies.add(message["Body"])
            sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
        if len(bodies) == 2:
            break
    case.assertEqual(bodies, {"sent over https", "published over https"})
    stream = unique("tls")
    kinesis.create_stream(StreamName=stream, ShardCount=1)
    kinesis.put_record(StreamName=stream, Data=b"record over https", PartitionKey="k")
    shard = kinesis.list_shards(StreamName=stream)["Shards"][0]["ShardId"]
    iterator = kinesis.get_shard_iterator(StreamName=stream, ShardId=shard, ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
    records = kinesis.get_records(ShardIterator=iterator)["Records"]
    case.assertEqual([record["Data"] for record in records], [b"record over https"])


class Tls(unittest.TestCase):
    def test_every_service_over_https_verifying_the_test_ca(self):
        self.assertTrue(ENDPOINT.startswith("https://"), ENDPOINT)
        exercise(self)

    def test_a_client_that_does_not_trust_the_ca_is_refused(self):
        # The default trust store (certifi's public roots) does not know the test CA.
        with self.assertRaises(botocore.exceptions.SSLError):
            client("sqs", verify=True).list_queues()

    def test_the_aws_cli_with_its_ca_bundle(self):
        queue = unique("cli-tls")
        done = aws("--ca-bundle", CA, "sqs", "create-queue", "--queue-name", queue)
        self.assertEqual(done.returncode, 0, done.stderr)
        self.assertTrue(json.loads(done.stdout)["QueueUrl"].startswith("https://"))
        refused = aws("sqs", "list-queues")
        self.assertNotEqual(refused.returncode, 0)
        self.assertIn("SSL", refused.stderr)


class MutualTls(unittest.TestCase):
    def test_a_client_with_a_certificate_from_the_client_ca_is_served(self):
        exercise(self, client_cert=(os.environ["SLUICE_CLIENT_CERT"], os.environ["SLUICE_CLIENT_KEY"]))

    def test_a_client_without_a_certificate_is_refused(self):
        with self.assertRaises(REFUSED):
            client("sqs").list_queues()


if __name__ == "__main__":
    unittest.main()
