"""Firehose through boto3 and the AWS CLI, delivering into a real S3-compatible server (moto's).

The harness (daemon/tests/aws_clients.rs) picks a port for moto_server, starts sluiced with
--firehose-s3-endpoint on it and sets SLUICE_MOTO_SERVER (the moto_server program) and
SLUICE_MOTO_PORT; this module runs moto itself, so it can stop it for an outage and start it
again. Objects are found by listing the bucket and read back with boto3's S3 client.
"""
import base64
import gzip
import http.server
import json
import os
import threading
import signal
import socket
import subprocess
import time
import unittest

import boto3

from common import Expect, aws, client, unique

MOTO = os.environ["SLUICE_MOTO_SERVER"]
MOTO_PORT = int(os.environ["SLUICE_MOTO_PORT"])
MOTO_URL = f"http://127.0.0.1:{MOTO_PORT}"
LAMBDA_PORT = int(os.environ["SLUICE_LAMBDA_PORT"])
DEADLINE_SECONDS = 90
ROLE = "arn:aws:iam::000000000000:role/firehose"


def enrich(event, context):
    """A Firehose transformation function as written for AWS Lambda: marks each record, drops
    those with "drop": true, and gives each record's kind as a partition key."""
    output = []
    for record in event["records"]:
        payload = json.loads(base64.b64decode(record["data"]))
        if payload.get("drop"):
            output.append({"recordId": record["recordId"], "result": "Dropped"})
            continue
        payload["processed"] = True
        output.append({
            "recordId": record["recordId"],
            "result": "Ok",
            "data": base64.b64encode(json.dumps(payload).encode()).decode(),
            "metadata": {"partitionKeys": {"kind": payload["kind"]}},
        })
    return {"records": output}


class LambdaApi(http.server.BaseHTTPRequestHandler):
    """The Lambda API's Invoke, as the Runtime Interface Emulator serves a function's code."""
    protocol_version = "HTTP/1.1"
    invoked = []

    def do_POST(self):
        event = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        LambdaApi.invoked.append(self.path)
        answer = json.dumps(enrich(event, None)).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, *args):
        pass


def start_moto():
    process = subprocess.Popen([MOTO, "-H", "127.0.0.1", "-p", str(MOTO_PORT)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    while True:
        try:
            socket.create_connection(("127.0.0.1", MOTO_PORT), timeout=1).close()
            return process
        except OSError:
            if time.monotonic() > deadline or process.poll() is not None:
                raise AssertionError("moto_server did not start")
            time.sleep(0.1)


def stop_moto(process):
    process.send_signal(signal.SIGTERM)
    process.wait(timeout=30)


def s3():
    return boto3.client("s3", endpoint_url=MOTO_URL, region_name="us-east-1", aws_access_key_id="test", aws_secret_access_key="test")


def records_in(bucket, prefix=""):
    """Every record delivered to `bucket` (GZIP objects of newline-delimited records), and the keys."""
    store, lines, keys = s3(), [], []
    for page in store.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for item in page.get("Contents", []):
            keys.append(item["Key"])
            body = store.get_object(Bucket=bucket, Key=item["Key"])["Body"].read()
            lines.extend(gzip.decompress(body).decode().splitlines())
    return lines, keys


def lines_by_key(bucket, prefix):
    """Each record delivered under `prefix` in `bucket` (GZIP objects), with its object's key."""
    store, found = s3(), []
    for page in store.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for item in page.get("Contents", []):
            body = store.get_object(Bucket=bucket, Key=item["Key"])["Body"].read()
            found.extend((line, item["Key"]) for line in gzip.decompress(body).decode().splitlines())
    return found


def until_delivered(bucket, expected):
    deadline = time.monotonic() + DEADLINE_SECONDS
    while True:
        try:
            lines, keys = records_in(bucket)
        except Exception:  # the bucket may be gone for a moment (an outage test)
            lines, keys = [], []
        if set(expected) <= set(lines):
            return lines, keys
        if time.monotonic() > deadline:
            missing = set(expected) - set(lines)
            raise AssertionError(f"{len(missing)} of {len(expected)} acknowledged records never reached S3, e.g. {sorted(missing)[:5]}")
        time.sleep(0.3)


def configuration(bucket, interval=0, prefix="app/"):
    return {
        "RoleARN": ROLE,
        "BucketARN": f"arn:aws:s3:::{bucket}",
        "Prefix": prefix,
        "ErrorOutputPrefix": "errors/",
        "BufferingHints": {"SizeInMBs": 1, "IntervalInSeconds": interval},
        "CompressionFormat": "GZIP",
        "ProcessingConfiguration": {
            "Enabled": True,
            "Processors": [{"Type": "AppendDelimiterToRecord", "Parameters": [{"ParameterName": "Delimiter", "ParameterValue": "\\n"}]}],
        },
    }


class Firehose(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.moto = start_moto()
        cls.firehose = client("firehose")

    @classmethod
    def tearDownClass(cls):
        stop_moto(cls.moto)

    def bucket(self):
        name = unique("firehose")
        s3().create_bucket(Bucket=name)
        return name

    def test_boto3_puts_reach_s3_as_gzip_objects_in_firehoses_layout(self):
        bucket, name = self.bucket(), unique("boto3")
        arn = self.firehose.create_delivery_stream(
            DeliveryStreamName=name,
            DeliveryStreamType="DirectPut",
            ExtendedS3DestinationConfiguration=configuration(bucket),
            Tags=[{"Key": "team", "Value": "data"}],
        )["DeliveryStreamARN"]
        self.assertEqual(arn, f"arn:aws:firehose:us-east-1:000000000000:deliverystream/{name}")
        description = self.firehose.describe_delivery_stream(DeliveryStreamName=name)["DeliveryStreamDescription"]
        self.assertEqual(description["DeliveryStreamStatus"], "ACTIVE")
        self.assertEqual(description["VersionId"], "1")
        destination = description["Destinations"][0]
        self.assertEqual(destination["ExtendedS3DestinationDescription"]["CompressionFormat"], "GZIP")
        self.assertEqual(destination["S3DestinationDescription"]["BucketARN"], f"arn:aws:s3:::{bucket}")
        self.assertIn(name, self.firehose.list_delivery_streams(Limit=10000)["DeliveryStreamNames"])
        self.assertEqual(self.firehose.list_tags_for_delivery_stream(DeliveryStreamName=name)["Tags"], [{"Key": "team", "Value": "data"}])

        expected = []
        one = self.firehose.put_record(DeliveryStreamName=name, Record={"Data": b"first"})
        self.assertTrue(one["RecordId"])
        expected.append("first")
        for batch in range(4):
            records = [f"b{batch}-{i:03}" for i in range(500)]
            answer = self.firehose.put_record_batch(DeliveryStreamName=name, Records=[{"Data": r.encode()} for r in records])
            self.assertEqual(answer["FailedPutCount"], 0)
            self.assertEqual(len(answer["RequestResponses"]), 500)
            self.assertTrue(all("RecordId" in response for response in answer["RequestResponses"]))
            expected.extend(records)
        lines, keys = until_delivered(bucket, expected)
        self.assertEqual(sorted(lines), sorted(expected), "each record once, nothing else")
        for key in keys:
            # app/YYYY/MM/DD/HH/<name>-1-YYYY-MM-DD-HH-MM-SS-<uuid>.gz
            parts = key.split("/")
            self.assertEqual(len(parts), 6, key)
            self.assertEqual(parts[0], "app")
            self.assertTrue(parts[5].startswith(f"{name}-1-{parts[1]}-{parts[2]}-{parts[3]}-{parts[4]}-"), key)
            self.assertTrue(parts[5].endswith(".gz"), key)
        self.firehose.delete_delivery_stream(DeliveryStreamName=name)
        with Expect(self, "ResourceNotFoundException", 400):
            self.firehose.describe_delivery_stream(DeliveryStreamName=name)

    def test_the_aws_cli_creates_describes_puts_and_lists(self):
        bucket, name = self.bucket(), unique("cli")
        import json

        aws("firehose", "create-delivery-stream", "--delivery-stream-name", name,
            "--extended-s3-destination-configuration", json.dumps(configuration(bucket)))
        described = aws("firehose", "describe-delivery-stream", "--delivery-stream-name", name)
        self.assertEqual(described["DeliveryStreamDescription"]["DeliveryStreamName"], name)
        self.assertIn(name, aws("firehose", "list-delivery-streams")["DeliveryStreamNames"])
        put = aws("firehose", "put-record", "--delivery-stream-name", name, "--record", "Data=from-the-cli")
        self.assertTrue(put["RecordId"])
        until_delivered(bucket, ["from-the-cli"])
        aws("firehose", "update-destination", "--delivery-stream-name", name, "--current-delivery-stream-version-id", "1",
            "--destination-id", "destinationId-000000000001",
            "--extended-s3-destination-update", json.dumps({"Prefix": "updated/"}))
        self.assertEqual(aws("firehose", "describe-delivery-stream", "--delivery-stream-name", name)["DeliveryStreamDescription"]["VersionId"], "2")
        aws("firehose", "put-record", "--delivery-stream-name", name, "--record", "Data=after-the-update")
        deadline = time.monotonic() + DEADLINE_SECONDS
        while "after-the-update" not in records_in(bucket, "updated/")[0]:
            self.assertLess(time.monotonic(), deadline, "a record put after UpdateDestination goes under the new prefix")
            time.sleep(0.3)
        aws("firehose", "delete-delivery-stream", "--delivery-stream-name", name)

    def test_an_s3_outage_loses_nothing(self):
        bucket, name = self.bucket(), unique("outage")
        self.firehose.create_delivery_stream(DeliveryStreamName=name, ExtendedS3DestinationConfiguration=configuration(bucket))
        expected = [f"before-{i}" for i in range(100)]
        self.firehose.put_record_batch(DeliveryStreamName=name, Records=[{"Data": r.encode()} for r in expected])
        until_delivered(bucket, expected)
        # S3 goes away: puts are still taken (buffered), and delivered once it is back. moto keeps
        # nothing across a restart, so the bucket is made again.
        stop_moto(type(self).moto)
        during = [f"during-{i}" for i in range(300)]
        answer = self.firehose.put_record_batch(DeliveryStreamName=name, Records=[{"Data": r.encode()} for r in during])
        self.assertEqual(answer["FailedPutCount"], 0)
        time.sleep(2)
        type(self).moto = start_moto()
        s3().create_bucket(Bucket=bucket)
        lines, _ = until_delivered(bucket, during)
        self.assertEqual(sorted(set(lines) & set(during)), sorted(during))

    def test_a_lambda_function_and_dynamic_partitioning_through_boto3(self):
        server = http.server.ThreadingHTTPServer(("127.0.0.1", LAMBDA_PORT), LambdaApi)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        try:
            bucket, backup, name = self.bucket(), self.bucket(), unique("partitioned")
            destination = configuration(bucket, interval=1, prefix="customer=!{partitionKeyFromQuery:customer}/kind=!{partitionKeyFromLambda:kind}/")
            destination.update({
                "ErrorOutputPrefix": "errors/!{firehose:error-output-type}/",
                "BufferingHints": {"SizeInMBs": 64, "IntervalInSeconds": 1},
                "DynamicPartitioningConfiguration": {"Enabled": True, "RetryOptions": {"DurationInSeconds": 60}},
                "S3BackupMode": "Enabled",
                "S3BackupConfiguration": {"RoleARN": ROLE, "BucketARN": f"arn:aws:s3:::{backup}", "CompressionFormat": "GZIP"},
            })
            destination["ProcessingConfiguration"]["Processors"] = [
                {"Type": "Lambda", "Parameters": [
                    {"ParameterName": "LambdaArn", "ParameterValue": "arn:aws:lambda:us-east-1:000000000000:function:enrich:$LATEST"}]},
                {"Type": "MetadataExtraction", "Parameters": [
                    {"ParameterName": "MetadataExtractionQuery", "ParameterValue": "{customer:.customer.id}"},
                    {"ParameterName": "JsonParsingEngine", "ParameterValue": "JQ-1.6"}]},
                {"Type": "AppendDelimiterToRecord", "Parameters": []},
            ]
            self.firehose.create_delivery_stream(DeliveryStreamName=name, ExtendedS3DestinationConfiguration=destination)
            described = self.firehose.describe_delivery_stream(DeliveryStreamName=name)["DeliveryStreamDescription"]
            extended = described["Destinations"][0]["ExtendedS3DestinationDescription"]
            self.assertEqual(extended["DynamicPartitioningConfiguration"], {"Enabled": True, "RetryOptions": {"DurationInSeconds": 60}})
            self.assertEqual(extended["S3BackupMode"], "Enabled")
            self.assertEqual(extended["S3BackupDescription"]["BucketARN"], f"arn:aws:s3:::{backup}")

            sent = [{"i": i, "customer": {"id": f"c{i % 2}"}, "kind": f"k{i % 3}", "drop": i % 7 == 0} for i in range(200)]
            texts = [json.dumps(record) for record in sent]
            answer = self.firehose.put_record_batch(DeliveryStreamName=name, Records=[{"Data": text.encode()} for text in texts])
            self.assertEqual(answer["FailedPutCount"], 0)
            # Every source record in the backup bucket, as it was sent.
            until_delivered(backup, texts)
            kept = [record for record in sent if not record["drop"]]
            deadline = time.monotonic() + DEADLINE_SECONDS
            while True:
                delivered = {json.loads(line)["i"]: (line, key) for line, key in lines_by_key(bucket, "customer=")}
                if len(delivered) >= len(kept):
                    break
                self.assertLess(time.monotonic(), deadline, f"{len(delivered)} of {len(kept)} transformed records delivered")
                time.sleep(0.3)
            for record in sent:
                if record["drop"]:
                    self.assertNotIn(record["i"], delivered, "the function dropped it")
                    continue
                line, key = delivered[record["i"]]
                self.assertTrue(json.loads(line)["processed"], line)
                self.assertTrue(key.startswith(f"customer={record['customer']['id']}/kind={record['kind']}/{name}-1-"), key)
            self.assertTrue(LambdaApi.invoked)
            self.assertTrue(all(path == "/2015-03-31/functions/enrich/invocations?Qualifier=$LATEST" for path in LambdaApi.invoked), LambdaApi.invoked)
            self.firehose.delete_delivery_stream(DeliveryStreamName=name)
        finally:
            server.shutdown()

    def test_an_sns_topic_delivers_into_a_delivery_stream(self):
        bucket, name = self.bucket(), unique("from-sns")
        arn = self.firehose.create_delivery_stream(DeliveryStreamName=name, ExtendedS3DestinationConfiguration=configuration(bucket))["DeliveryStreamARN"]
        sns = client("sns")
        topic = sns.create_topic(Name=unique("to-firehose"))["TopicArn"]
        with Expect(self, "InvalidParameter", 400):
            sns.subscribe(TopicArn=topic, Protocol="firehose", Endpoint=arn)  # no SubscriptionRoleArn
        subscription = sns.subscribe(TopicArn=topic, Protocol="firehose", Endpoint=arn, ReturnSubscriptionArn=True, Attributes={
            "SubscriptionRoleArn": "arn:aws:iam::000000000000:role/sns-firehose", "RawMessageDelivery": "true"})["SubscriptionArn"]
        attributes = sns.get_subscription_attributes(SubscriptionArn=subscription)["Attributes"]
        self.assertEqual((attributes["Protocol"], attributes["Endpoint"], attributes["PendingConfirmation"]), ("firehose", arn, "false"))
        messages = [f"notice-{i}" for i in range(30)]
        for message in messages:
            sns.publish(TopicArn=topic, Message=message)
        lines, _ = until_delivered(bucket, messages)
        self.assertEqual(sorted(lines), sorted(messages))
        sns.delete_topic(TopicArn=topic)
        self.firehose.delete_delivery_stream(DeliveryStreamName=name)

    def test_a_kinesis_stream_as_source_through_boto3(self):
        kinesis = client("kinesis")
        stream = unique("source")
        kinesis.create_stream(StreamName=stream, ShardCount=2)
        stream_arn = kinesis.describe_stream_summary(StreamName=stream)["StreamDescriptionSummary"]["StreamARN"]
        bucket, name = self.bucket(), unique("from-kinesis")
        self.firehose.create_delivery_stream(
            DeliveryStreamName=name,
            DeliveryStreamType="KinesisStreamAsSource",
            KinesisStreamSourceConfiguration={"KinesisStreamARN": stream_arn, "RoleARN": ROLE},
            ExtendedS3DestinationConfiguration=configuration(bucket),
        )
        source = self.firehose.describe_delivery_stream(DeliveryStreamName=name)["DeliveryStreamDescription"]["Source"]
        self.assertEqual(source["KinesisStreamSourceDescription"]["KinesisStreamARN"], stream_arn)
        with Expect(self, "InvalidArgumentException", 400):
            self.firehose.put_record(DeliveryStreamName=name, Record={"Data": b"not for this one"})
        records = [f"k-{i}" for i in range(200)]
        answer = kinesis.put_records(StreamName=stream, Records=[{"Data": r.encode(), "PartitionKey": r} for r in records])
        self.assertEqual(answer["FailedRecordCount"], 0)
        lines, _ = until_delivered(bucket, records)
        self.assertEqual(sorted(set(lines)), sorted(records))
        self.firehose.delete_delivery_stream(DeliveryStreamName=name)
        self.assertEqual(kinesis.list_stream_consumers(StreamARN=stream_arn)["Consumers"], [])
        kinesis.delete_stream(StreamName=stream)

    def test_firehoses_errors(self):
        name = unique("errors")
        with Expect(self, "ResourceNotFoundException", 400):
            self.firehose.put_record(DeliveryStreamName=name, Record={"Data": b"x"})
        # A destination this server does not deliver to yet is refused by name, not ignored.
        with Expect(self, "InvalidArgumentException", 400) as refused:
            self.firehose.create_delivery_stream(DeliveryStreamName=name, SplunkDestinationConfiguration={
                "HECEndpoint": "https://splunk.example.com", "HECEndpointType": "Raw", "HECToken": "t",
                "S3Configuration": {"RoleARN": ROLE, "BucketARN": "arn:aws:s3:::b-1"}})
        self.assertIn("SplunkDestinationConfiguration", refused.error.response["Error"]["Message"])
        # An HTTP endpoint on a loopback address (this server runs without --http-endpoints-allow-private).
        with Expect(self, "InvalidArgumentException", 400):
            self.firehose.create_delivery_stream(DeliveryStreamName=name, HttpEndpointDestinationConfiguration={
                "EndpointConfiguration": {"Url": "https://127.0.0.1:8443/"}, "S3Configuration": {"RoleARN": ROLE, "BucketARN": "arn:aws:s3:::b-1"}})
        with Expect(self, "InvalidArgumentException", 400):
            self.firehose.create_delivery_stream(DeliveryStreamName=name, ExtendedS3DestinationConfiguration={
                "RoleARN": ROLE, "BucketARN": "arn:aws:s3:::not_a_bucket"})
        self.firehose.create_delivery_stream(DeliveryStreamName=name, ExtendedS3DestinationConfiguration=configuration(self.bucket()))
        with Expect(self, "ResourceInUseException", 400):
            self.firehose.create_delivery_stream(DeliveryStreamName=name, ExtendedS3DestinationConfiguration=configuration("b-1"))
        with Expect(self, "ConcurrentModificationException", 400):
            self.firehose.update_destination(DeliveryStreamName=name, CurrentDeliveryStreamVersionId="9",
                                             DestinationId="destinationId-000000000001", ExtendedS3DestinationUpdate={"Prefix": "x/"})
        with Expect(self, "InvalidArgumentException", 400):
            # 4.3 MB of records: past Firehose's 4 MiB a batch.
            records = [{"Data": b"x" * 1_000_000}] * 4 + [{"Data": b"x" * 300_000}]
            self.firehose.put_record_batch(DeliveryStreamName=name, Records=records)
        self.firehose.delete_delivery_stream(DeliveryStreamName=name)


if __name__ == "__main__":
    unittest.main()
