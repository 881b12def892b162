"""SigV4 through boto3 and the AWS CLI against a sluiced started with --credentials: the right key
works, a wrong secret, an unknown key, a stale or expired request and an unsigned one are refused
with AWS's codes, presigned URLs work until they expire, and the links SNS hands out stay usable.
The harness passes the principal in SLUICE_ACCESS_KEY_ID / SLUICE_SECRET_ACCESS_KEY."""
import datetime
import http.server
import json
import os
import queue
import threading
import subprocess
import sys
import time
import unittest
import urllib.error
import urllib.parse
import urllib.request

import boto3
import botocore.auth
import botocore.exceptions
from botocore.config import Config

from common import ENDPOINT, Expect, unique

KEY_ID = os.environ["SLUICE_ACCESS_KEY_ID"]
SECRET = os.environ["SLUICE_SECRET_ACCESS_KEY"]


def client(service, key_id=KEY_ID, secret=SECRET, **config):
    return boto3.client(
        service,
        endpoint_url=ENDPOINT,
        region_name="us-east-1",
        aws_access_key_id=key_id,
        aws_secret_access_key=secret,
        config=Config(retries={"max_attempts": 1}, **config),
    )


class Auth(unittest.TestCase):
    def test_the_right_key_works_in_every_protocol(self):
        sqs = client("sqs")
        url = sqs.create_queue(QueueName=unique("signed"))["QueueUrl"]
        sqs.send_message(QueueUrl=url, MessageBody="hello")
        self.assertEqual(sqs.receive_message(QueueUrl=url, WaitTimeSeconds=1)["Messages"][0]["Body"], "hello")
        sns = client("sns")
        topic = sns.create_topic(Name=unique("signed"))["TopicArn"]
        self.assertIn(topic, [t["TopicArn"] for t in sns.list_topics()["Topics"]])
        kinesis = client("kinesis")
        kinesis.create_stream(StreamName=unique("signed"), ShardCount=1)

    def test_wrong_keys_and_missing_signatures_are_refused(self):
        with Expect(self, "SignatureDoesNotMatch", 403):
            client("sqs", secret="not-the-secret-at-all").list_queues()
        with Expect(self, "InvalidClientTokenId", 403):
            client("sqs", key_id="AKIANOBODY").list_queues()
        with Expect(self, "SignatureDoesNotMatch", 403):
            client("sns", secret="not-the-secret-at-all").list_topics()
        with Expect(self, "UnrecognizedClientException", 400):
            client("kinesis", key_id="AKIANOBODY").list_streams()
        with Expect(self, "InvalidSignatureException", 400):
            client("kinesis", secret="not-the-secret-at-all").list_streams()
        unsigned = client("sqs", signature_version=botocore.UNSIGNED)
        with Expect(self, "MissingAuthenticationToken", 403):
            unsigned.list_queues()

    def test_a_request_signed_ten_minutes_ago_is_expired(self):
        real = botocore.auth.datetime.datetime

        class TenMinutesAgo(real):
            @classmethod
            def utcnow(cls):
                return real.utcnow() - datetime.timedelta(minutes=10)

            @classmethod
            def now(cls, tz=None):
                return real.now(tz) - datetime.timedelta(minutes=10)

        botocore.auth.datetime.datetime = TenMinutesAgo
        try:
            with Expect(self, "RequestExpired", 400):
                client("sqs").list_queues()
        finally:
            botocore.auth.datetime.datetime = real

    def test_presigned_urls_work_and_are_bound_to_what_they_sign(self):
        # SNS speaks the Query protocol, whose calls a URL can carry (SQS's JSON ones cannot);
        # the URL is signed for the GET that will follow it.
        sns = client("sns")
        name = unique("presigned")
        topic = sns.create_topic(Name=name)["TopicArn"]
        presigned = sns.generate_presigned_url("get_topic_attributes", Params={"TopicArn": topic}, ExpiresIn=60, HttpMethod="GET")
        self.assertIn("X-Amz-Signature=", presigned)
        with urllib.request.urlopen(presigned) as answer:
            self.assertEqual(answer.status, 200)
            self.assertIn(name, answer.read().decode())
        tampered = presigned.replace(name, name + "x")
        with self.assertRaises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(tampered)
        self.assertEqual(refused.exception.code, 403)
        self.assertIn(b"SignatureDoesNotMatch", refused.exception.read())
        gone = client("sns").generate_presigned_url("get_topic_attributes", Params={"TopicArn": topic}, ExpiresIn=1, HttpMethod="GET")
        time.sleep(2.5)
        with self.assertRaises(urllib.error.HTTPError) as expired:
            urllib.request.urlopen(gone)
        self.assertIn(b"RequestExpired", expired.exception.read())

    def test_the_links_sns_hands_out_need_no_signature_and_nothing_else_goes_unsigned(self):
        topic = client("sns").create_topic(Name=unique("links"))["TopicArn"]
        arn = urllib.parse.quote(topic, safe="")
        # A SubscribeURL is followed by whoever got it: the token is the credential.
        with self.assertRaises(urllib.error.HTTPError) as confirm:
            urllib.request.urlopen(f"{ENDPOINT}/?Action=ConfirmSubscription&TopicArn={arn}&Token=not-a-token")
        body = confirm.exception.read()
        self.assertNotIn(b"MissingAuthenticationToken", body)
        self.assertIn(b"<Code>", body)
        with self.assertRaises(urllib.error.HTTPError) as listing:
            urllib.request.urlopen(f"{ENDPOINT}/?Action=GetTopicAttributes&TopicArn={arn}")
        self.assertEqual(listing.exception.code, 403)
        self.assertIn(b"MissingAuthenticationToken", listing.exception.read())

    def test_authenticate_on_unsubscribe_needs_a_signature_to_unsubscribe(self):
        posted = queue.Queue()

        class Hook(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                posted.put(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args):
                pass

        server = http.server.HTTPServer(("127.0.0.1", 0), Hook)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        try:
            sns = client("sns")
            topic = sns.create_topic(Name=unique("guarded"))["TopicArn"]
            arns = []
            for authenticate in ["true", "false"]:
                sns.subscribe(TopicArn=topic, Protocol="http", Endpoint=f"http://127.0.0.1:{server.server_port}/{authenticate}")
                token = posted.get(timeout=20)["Token"]
                arn = sns.confirm_subscription(TopicArn=topic, Token=token, AuthenticateOnUnsubscribe=authenticate)["SubscriptionArn"]
                attributes = sns.get_subscription_attributes(SubscriptionArn=arn)["Attributes"]
                self.assertEqual(attributes["ConfirmationWasAuthenticated"], authenticate)
                arns.append(arn)
            guarded, open_ = arns
            link = lambda arn: f"{ENDPOINT}/?Action=Unsubscribe&SubscriptionArn={urllib.parse.quote(arn, safe='')}"
            with self.assertRaises(urllib.error.HTTPError) as refused:
                urllib.request.urlopen(link(guarded))
            self.assertEqual(refused.exception.code, 403)
            self.assertIn(b"AuthorizationError", refused.exception.read())
            urllib.request.urlopen(link(open_)).read()
            sns.unsubscribe(SubscriptionArn=guarded)
            self.assertEqual(sns.list_subscriptions_by_topic(TopicArn=topic)["Subscriptions"], [])
        finally:
            server.shutdown()
            server.server_close()

    def test_the_aws_cli_signs_with_its_configured_keys(self):
        env = dict(os.environ, AWS_ACCESS_KEY_ID=KEY_ID, AWS_SECRET_ACCESS_KEY=SECRET, AWS_DEFAULT_REGION="us-east-1")
        cli = [os.path.join(os.path.dirname(sys.executable), "aws"), "--endpoint-url", ENDPOINT]
        done = subprocess.run(cli + ["sqs", "create-queue", "--queue-name", unique("cli")], env=env, capture_output=True, text=True, timeout=60)
        self.assertEqual(done.returncode, 0, done.stderr)
        env["AWS_SECRET_ACCESS_KEY"] = "not-the-secret-at-all"
        refused = subprocess.run(cli + ["sqs", "list-queues"], env=env, capture_output=True, text=True, timeout=60)
        self.assertNotEqual(refused.returncode, 0)
        self.assertIn("SignatureDoesNotMatch", refused.stderr)


if __name__ == "__main__":
    unittest.main()
