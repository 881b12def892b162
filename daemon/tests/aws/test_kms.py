"""The key service and encryption at rest through boto3 and the AWS CLI (sluiced started with a
root key by daemon/tests/aws_clients.rs), and the client-side envelope format read and written
by a second implementation: this file, from the format's description in
client/src/envelope.rs, with boto3's KMS client and the `cryptography` package."""
import base64
import os
import unittest

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from common import Expect, aws, client, unique


class Keys(unittest.TestCase):
    def setUp(self):
        self.kms = client("kms")

    def test_keys_aliases_and_their_states(self):
        key = self.kms.create_key(Description="orders", Tags=[{"TagKey": "team", "TagValue": "a"}])["KeyMetadata"]
        self.assertEqual((key["KeyState"], key["KeyManager"], key["KeySpec"], key["Enabled"]), ("Enabled", "CUSTOMER", "SYMMETRIC_DEFAULT", True))
        self.assertTrue(key["Arn"].endswith(":key/" + key["KeyId"]))
        alias = "alias/" + unique("orders")
        self.kms.create_alias(AliasName=alias, TargetKeyId=key["KeyId"])
        self.assertEqual(self.kms.describe_key(KeyId=alias)["KeyMetadata"]["KeyId"], key["KeyId"])
        self.assertIn(key["KeyId"], [k["KeyId"] for k in self.kms.list_keys(Limit=1000)["Keys"]])
        aliases = self.kms.list_aliases(KeyId=key["KeyId"])["Aliases"]
        self.assertEqual([a["AliasName"] for a in aliases], [alias])
        names = [a["AliasName"] for a in self.kms.list_aliases()["Aliases"]]
        self.assertIn("alias/aws/sqs", names)
        with Expect(self, "AlreadyExistsException", 400):
            self.kms.create_alias(AliasName=alias, TargetKeyId=key["KeyId"])
        with Expect(self, "NotFoundException", 400):
            self.kms.describe_key(KeyId="alias/nothing-here")

        self.kms.disable_key(KeyId=alias)
        with Expect(self, "DisabledException"):
            self.kms.encrypt(KeyId=alias, Plaintext=b"x")
        self.kms.enable_key(KeyId=alias)
        self.assertFalse(self.kms.get_key_rotation_status(KeyId=key["KeyId"])["KeyRotationEnabled"])
        self.kms.enable_key_rotation(KeyId=key["KeyId"], RotationPeriodInDays=180)
        status = self.kms.get_key_rotation_status(KeyId=key["KeyId"])
        self.assertEqual((status["KeyRotationEnabled"], status["RotationPeriodInDays"]), (True, 180))
        self.assertIn("NextRotationDate", status)
        self.kms.rotate_key_on_demand(KeyId=key["KeyId"])
        deletion = self.kms.schedule_key_deletion(KeyId=key["KeyId"], PendingWindowInDays=7)
        self.assertEqual((deletion["KeyState"], deletion["PendingWindowInDays"]), ("PendingDeletion", 7))
        with Expect(self, "KMSInvalidStateException"):
            self.kms.encrypt(KeyId=key["KeyId"], Plaintext=b"x")
        self.kms.cancel_key_deletion(KeyId=key["KeyId"])
        self.assertEqual(self.kms.describe_key(KeyId=key["KeyId"])["KeyMetadata"]["KeyState"], "Disabled")

    def test_encrypt_decrypt_and_data_keys(self):
        key = self.kms.create_key()["KeyMetadata"]
        context = {"purpose": "test"}
        sealed = self.kms.encrypt(KeyId=key["KeyId"], Plaintext=b"secret", EncryptionContext=context)
        self.assertEqual(sealed["KeyId"], key["Arn"])
        opened = self.kms.decrypt(CiphertextBlob=sealed["CiphertextBlob"], EncryptionContext=context)
        self.assertEqual((opened["Plaintext"], opened["KeyId"]), (b"secret", key["Arn"]))
        with Expect(self, "InvalidCiphertextException"):
            self.kms.decrypt(CiphertextBlob=sealed["CiphertextBlob"], EncryptionContext={"purpose": "other"})
        data_key = self.kms.generate_data_key(KeyId=key["KeyId"], KeySpec="AES_256")
        self.assertEqual(len(data_key["Plaintext"]), 32)
        self.assertEqual(self.kms.decrypt(CiphertextBlob=data_key["CiphertextBlob"])["Plaintext"], data_key["Plaintext"])
        without = self.kms.generate_data_key_without_plaintext(KeyId=key["KeyId"], NumberOfBytes=16)
        self.assertNotIn("Plaintext", without)
        self.assertEqual(len(self.kms.decrypt(CiphertextBlob=without["CiphertextBlob"])["Plaintext"]), 16)
        with Expect(self, "ValidationException"):
            self.kms.generate_data_key(KeyId=key["KeyId"], KeySpec="AES_256", NumberOfBytes=32)
        with Expect(self, "UnsupportedOperationException"):
            self.kms.create_key(KeySpec="RSA_2048", KeyUsage="SIGN_VERIFY")

    def test_the_aws_cli_drives_the_key_api(self):
        key = aws("kms", "create-key", "--description", "from the cli")["KeyMetadata"]
        alias = "alias/" + unique("cli")
        aws("kms", "create-alias", "--alias-name", alias, "--target-key-id", key["KeyId"])
        sealed = aws("kms", "encrypt", "--key-id", alias, "--plaintext", "hello from the cli")["CiphertextBlob"]
        path = os.path.join(os.environ.get("TMPDIR", "/tmp"), unique("ciphertext"))
        with open(path, "wb") as out:
            out.write(base64.b64decode(sealed))
        opened = aws("kms", "decrypt", "--ciphertext-blob", "fileb://" + path)
        self.assertEqual(base64.b64decode(opened["Plaintext"]), b"hello from the cli")
        self.assertEqual(aws("kms", "describe-key", "--key-id", alias)["KeyMetadata"]["KeyId"], key["KeyId"])


class AtRest(unittest.TestCase):
    def test_queues_report_and_use_their_encryption(self):
        sqs, kms = client("sqs"), client("kms")
        default = sqs.create_queue(QueueName=unique("sse"))["QueueUrl"]
        self.assertEqual(sqs.get_queue_attributes(QueueUrl=default, AttributeNames=["All"])["Attributes"]["SqsManagedSseEnabled"], "true")
        key = kms.create_key()["KeyMetadata"]
        url = sqs.create_queue(QueueName=unique("kms"), Attributes={"KmsMasterKeyId": key["Arn"], "KmsDataKeyReusePeriodSeconds": "60"})["QueueUrl"]
        attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
        self.assertEqual((attributes["KmsMasterKeyId"], attributes["SqsManagedSseEnabled"]), (key["Arn"], "false"))
        sqs.send_message(QueueUrl=url, MessageBody="sealed at rest")
        [message] = sqs.receive_message(QueueUrl=url, WaitTimeSeconds=1)["Messages"]
        self.assertEqual(message["Body"], "sealed at rest")
        kms.disable_key(KeyId=key["KeyId"])
        with Expect(self, "KMS.DisabledException", 400):
            sqs.send_message(QueueUrl=url, MessageBody="refused")
        kms.enable_key(KeyId=key["KeyId"])
        with Expect(self, "InvalidAttributeValue"):
            sqs.create_queue(QueueName=unique("both"), Attributes={"KmsMasterKeyId": key["Arn"], "SqsManagedSseEnabled": "true"})

    def test_streams_start_and_stop_encryption(self):
        kinesis = client("kinesis")
        name = unique("stream")
        kinesis.create_stream(StreamName=name, ShardCount=1)
        kinesis.start_stream_encryption(StreamName=name, EncryptionType="KMS", KeyId="alias/aws/kinesis")
        summary = kinesis.describe_stream_summary(StreamName=name)["StreamDescriptionSummary"]
        self.assertEqual((summary["EncryptionType"], summary["KeyId"]), ("KMS", "alias/aws/kinesis"))
        put = kinesis.put_record(StreamName=name, Data=b"sealed record", PartitionKey="k")
        self.assertEqual(put["EncryptionType"], "KMS")
        kinesis.stop_stream_encryption(StreamName=name, EncryptionType="KMS", KeyId="alias/aws/kinesis")
        self.assertEqual(kinesis.describe_stream(StreamName=name)["StreamDescription"]["EncryptionType"], "NONE")
        self.assertEqual(kinesis.put_record(StreamName=name, Data=b"clear record", PartitionKey="k")["EncryptionType"], "NONE")
        shard = kinesis.list_shards(StreamName=name)["Shards"][0]["ShardId"]
        iterator = kinesis.get_shard_iterator(StreamName=name, ShardId=shard, ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
        records = kinesis.get_records(ShardIterator=iterator)["Records"]
        self.assertEqual([(r["Data"], r["EncryptionType"]) for r in records], [(b"sealed record", "KMS"), (b"clear record", "NONE")])
        with Expect(self, "KMSNotFoundException"):
            kinesis.start_stream_encryption(StreamName=name, EncryptionType="KMS", KeyId="alias/none-such")


def open_envelope(kms, body, attributes):
    """Opens a message sealed by sluice_client::envelope (format 1, key service)."""
    header = attributes["SluiceEnvelope"]["StringValue"]
    version, algorithm, provider = header.split(";", 2)
    assert (version, algorithm) == ("1", "AES-256-GCM") and provider.startswith("kms:"), header
    data_key = kms.decrypt(CiphertextBlob=attributes["SluiceEnvelopeKey"]["BinaryValue"], EncryptionContext={"sluice-envelope": "1"})["Plaintext"]
    sealed = base64.b64decode(body)
    return AESGCM(data_key).decrypt(sealed[:12], sealed[12:], header.encode())


def seal_envelope(kms, key, text):
    """Seals a message as sluice_client::envelope does (format 1, key service)."""
    data_key = kms.generate_data_key(KeyId=key, KeySpec="AES_256", EncryptionContext={"sluice-envelope": "1"})
    header = "1;AES-256-GCM;kms:" + data_key["KeyId"]
    nonce = bytes(12)
    body = base64.b64encode(nonce + AESGCM(data_key["Plaintext"]).encrypt(nonce, text.encode(), header.encode())).decode()
    attributes = {
        "SluiceEnvelope": {"DataType": "String", "StringValue": header},
        "SluiceEnvelopeKey": {"DataType": "Binary", "BinaryValue": data_key["CiphertextBlob"]},
    }
    return body, attributes


class Envelopes(unittest.TestCase):
    """Messages the Rust client sealed (SLUICE_ENVELOPE_QUEUE) are opened here; one sealed here
    goes to SLUICE_ENVELOPE_BACK for the Rust client to open."""

    def test_the_rust_clients_envelopes_open_here_and_ours_there(self):
        sqs, kms = client("sqs"), client("kms")
        url = sqs.get_queue_url(QueueName=os.environ["SLUICE_ENVELOPE_QUEUE"])["QueueUrl"]
        opened = set()
        for _ in range(10):
            for message in sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, MessageAttributeNames=["All"]).get("Messages", []):
                self.assertNotIn("from rust", message["Body"])
                opened.add(open_envelope(kms, message["Body"], message["MessageAttributes"]).decode())
                sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
            if len(opened) == 3:
                break
        self.assertEqual(opened, {f"from rust {i}" for i in range(3)})
        back = sqs.get_queue_url(QueueName=os.environ["SLUICE_ENVELOPE_BACK"])["QueueUrl"]
        body, attributes = seal_envelope(kms, os.environ["SLUICE_ENVELOPE_KEY"], "from python")
        sqs.send_message(QueueUrl=back, MessageBody=body, MessageAttributes=attributes)


if __name__ == "__main__":
    unittest.main()
