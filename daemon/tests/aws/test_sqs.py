"""Every SQS action through boto3. Run twice by the harness: with today's SDK (AWS JSON 1.0)
and with a Query-era SDK (form POSTs, XML answers); SLUICE_SQS_PROTOCOL says which."""
import base64
import hashlib
import json
import os
import time
import unittest

from common import Expect, client, unique


class Sqs(unittest.TestCase):
    def setUp(self):
        self.sqs = client("sqs")

    def queue(self, prefix, **attributes):
        return self.sqs.create_queue(QueueName=unique(prefix), Attributes={k: str(v) for k, v in attributes.items()})["QueueUrl"]

    def receive(self, url, want, **extra):
        got = []
        for _ in range(20):
            response = self.sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=1, **extra)
            got.extend(response.get("Messages", []))
            if len(got) >= want:
                break
        return got

    def test_the_sdk_speaks_the_expected_protocol(self):
        self.assertEqual(self.sqs.meta.service_model.protocol, os.environ["SLUICE_SQS_PROTOCOL"])

    def test_queue_lifecycle_attributes_tags_and_dead_letter_sources(self):
        name = unique("life")
        url = self.sqs.create_queue(QueueName=name, Attributes={"VisibilityTimeout": "40"}, tags={"team": "a"})["QueueUrl"]
        self.assertTrue(url.startswith(os.environ["SLUICE_ENDPOINT"]), url)
        self.assertTrue(url.endswith("/000000000000/" + name), url)
        self.assertEqual(self.sqs.get_queue_url(QueueName=name)["QueueUrl"], url)
        self.assertEqual(self.sqs.list_queues(QueueNamePrefix=name)["QueueUrls"], [url])

        attributes = self.sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
        self.assertEqual(attributes["VisibilityTimeout"], "40")
        self.assertEqual(attributes["QueueArn"], "arn:aws:sqs:us-east-1:000000000000:" + name)
        self.sqs.set_queue_attributes(QueueUrl=url, Attributes={"VisibilityTimeout": "50", "DelaySeconds": "1"})
        attributes = self.sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["VisibilityTimeout", "DelaySeconds"])["Attributes"]
        self.assertEqual(attributes, {"VisibilityTimeout": "50", "DelaySeconds": "1"})

        self.sqs.tag_queue(QueueUrl=url, Tags={"env": "test"})
        self.assertEqual(self.sqs.list_queue_tags(QueueUrl=url)["Tags"], {"team": "a", "env": "test"})
        self.sqs.untag_queue(QueueUrl=url, TagKeys=["team"])
        self.assertEqual(self.sqs.list_queue_tags(QueueUrl=url)["Tags"], {"env": "test"})

        dead = self.queue("dead")
        dead_arn = self.sqs.get_queue_attributes(QueueUrl=dead, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        policy = json.dumps({"deadLetterTargetArn": dead_arn, "maxReceiveCount": 2})
        self.sqs.set_queue_attributes(QueueUrl=url, Attributes={"RedrivePolicy": policy})
        self.assertEqual(self.sqs.list_dead_letter_source_queues(QueueUrl=dead)["queueUrls"], [url])

        self.sqs.send_message(QueueUrl=url, MessageBody="to purge")
        self.sqs.purge_queue(QueueUrl=url)
        self.assertEqual(self.sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages"])["Attributes"]["ApproximateNumberOfMessages"], "0")
        self.sqs.delete_queue(QueueUrl=url)
        with Expect(self, "AWS.SimpleQueueService.NonExistentQueue", 400):
            self.sqs.get_queue_url(QueueName=name)

    def test_list_queues_pages_with_max_results_as_the_sdk_paginator_expects(self):
        prefix = unique("page")
        urls = sorted(self.queue(f"{prefix}-{i}") for i in range(5))
        whole = self.sqs.list_queues(QueueNamePrefix=prefix)
        self.assertEqual((sorted(whole["QueueUrls"]), whole.get("NextToken")), (urls, None), "no MaxResults: no paging")
        first = self.sqs.list_queues(QueueNamePrefix=prefix, MaxResults=2)
        self.assertEqual(len(first["QueueUrls"]), 2)
        self.assertIn("NextToken", first)
        pages = self.sqs.get_paginator("list_queues").paginate(QueueNamePrefix=prefix, PaginationConfig={"PageSize": 2})
        seen = [url for page in pages for url in page.get("QueueUrls", [])]
        self.assertEqual(sorted(seen), urls)
        with Expect(self, "InvalidParameterValue"):
            self.sqs.list_queues(MaxResults=1001)

    def test_message_move_tasks_redrive_a_dead_letter_queue(self):
        dead = self.queue("redrive-dead")
        dead_arn = self.sqs.get_queue_attributes(QueueUrl=dead, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        source = self.queue("redrive-src", RedrivePolicy=json.dumps({"deadLetterTargetArn": dead_arn, "maxReceiveCount": 1}))
        source_arn = self.sqs.get_queue_attributes(QueueUrl=source, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        for i in range(6):
            self.sqs.send_message(QueueUrl=source, MessageBody=f"redrive {i}")
        for _ in range(20):
            self.sqs.receive_message(QueueUrl=source, MaxNumberOfMessages=10, VisibilityTimeout=0)
            counts = self.sqs.get_queue_attributes(QueueUrl=dead, AttributeNames=["ApproximateNumberOfMessages"])["Attributes"]
            if counts["ApproximateNumberOfMessages"] == "6":
                break
        with Expect(self, "InvalidParameterValue"):
            self.sqs.start_message_move_task(SourceArn=source_arn)
        handle = self.sqs.start_message_move_task(SourceArn=dead_arn, MaxNumberOfMessagesPerSecond=100)["TaskHandle"]
        self.assertTrue(handle)
        for _ in range(200):
            [task] = self.sqs.list_message_move_tasks(SourceArn=dead_arn, MaxResults=10)["Results"]
            if task["Status"] != "RUNNING":
                break
            time.sleep(0.05)
        self.assertEqual((task["Status"], task["SourceArn"], task["ApproximateNumberOfMessagesMoved"]), ("COMPLETED", dead_arn, 6))
        self.assertEqual(task["MaxNumberOfMessagesPerSecond"], 100)
        self.assertNotIn("TaskHandle", task)
        bodies = sorted(m["Body"] for m in self.receive(source, 6))
        self.assertEqual(bodies, [f"redrive {i}" for i in range(6)])
        with Expect(self, "ResourceNotFoundException"):
            self.sqs.cancel_message_move_task(TaskHandle=handle)

    def test_messages_with_attributes_visibility_and_batches(self):
        url = self.queue("msgs")
        body = "hello \u00e9\u4e16 <&>"
        sent = self.sqs.send_message(
            QueueUrl=url,
            MessageBody=body,
            MessageAttributes={
                "color": {"DataType": "String", "StringValue": "red"},
                "count": {"DataType": "Number", "StringValue": "3"},
                "blob": {"DataType": "Binary", "BinaryValue": b"\x00\x01\xff"},
            },
        )
        self.assertEqual(sent["MD5OfMessageBody"], hashlib.md5(body.encode()).hexdigest())
        self.assertEqual(len(sent["MD5OfMessageAttributes"]), 32)

        [message] = self.receive(url, 1, MessageAttributeNames=["All"], AttributeNames=["All"])
        self.assertEqual(message["Body"], body)
        self.assertEqual(message["MessageId"], sent["MessageId"])
        self.assertEqual(message["MD5OfMessageAttributes"], sent["MD5OfMessageAttributes"])
        self.assertEqual(message["MessageAttributes"]["blob"], {"DataType": "Binary", "BinaryValue": b"\x00\x01\xff"})
        self.assertEqual(message["MessageAttributes"]["color"]["StringValue"], "red")
        self.assertEqual(message["Attributes"]["ApproximateReceiveCount"], "1")

        # Visible again at once, received a second time, then deleted.
        self.sqs.change_message_visibility(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"], VisibilityTimeout=0)
        [again] = self.receive(url, 1, AttributeNames=["ApproximateReceiveCount"])
        self.assertEqual(again["Attributes"]["ApproximateReceiveCount"], "2")
        self.sqs.delete_message(QueueUrl=url, ReceiptHandle=again["ReceiptHandle"])

        batch = self.sqs.send_message_batch(
            QueueUrl=url,
            Entries=[{"Id": f"e{i}", "MessageBody": f"batch {i}", "DelaySeconds": 0} for i in range(3)],
        )
        self.assertEqual(sorted(entry["Id"] for entry in batch["Successful"]), ["e0", "e1", "e2"])
        self.assertEqual(batch.get("Failed", []), [])
        received = self.receive(url, 3)
        self.assertEqual(sorted(m["Body"] for m in received), ["batch 0", "batch 1", "batch 2"])

        entries = [{"Id": f"v{i}", "ReceiptHandle": m["ReceiptHandle"], "VisibilityTimeout": 30} for i, m in enumerate(received)]
        entries.append({"Id": "bogus", "ReceiptHandle": "not-a-handle", "VisibilityTimeout": 30})
        changed = self.sqs.change_message_visibility_batch(QueueUrl=url, Entries=entries)
        self.assertEqual(len(changed["Successful"]), 3)
        [failed] = changed["Failed"]
        self.assertEqual((failed["Id"], failed["SenderFault"]), ("bogus", True))
        self.assertEqual(failed["Code"], "ReceiptHandleIsInvalid")

        deleted = self.sqs.delete_message_batch(QueueUrl=url, Entries=[{"Id": f"d{i}", "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(received)])
        self.assertEqual(sorted(entry["Id"] for entry in deleted["Successful"]), ["d0", "d1", "d2"])
        self.assertEqual(deleted.get("Failed", []), [])
        self.assertNotIn("Messages", self.sqs.receive_message(QueueUrl=url, WaitTimeSeconds=1))

    def test_fifo_queues_keep_group_order_deduplicate_and_number(self):
        name = unique("orders") + ".fifo"
        url = self.sqs.create_queue(QueueName=name, Attributes={"FifoQueue": "true", "ContentBasedDeduplication": "true"})["QueueUrl"]
        attributes = self.sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
        self.assertEqual(attributes["FifoQueue"], "true")
        self.assertEqual(attributes["ContentBasedDeduplication"], "true")
        self.assertEqual(attributes["DeduplicationScope"], "queue")
        self.assertEqual(attributes["FifoThroughputLimit"], "perQueue")

        first = self.sqs.send_message(QueueUrl=url, MessageBody="a1", MessageGroupId="a", MessageDeduplicationId="d1")
        duplicate = self.sqs.send_message(QueueUrl=url, MessageBody="a1 again", MessageGroupId="a", MessageDeduplicationId="d1")
        self.assertEqual(duplicate["MessageId"], first["MessageId"])
        self.assertEqual(duplicate["SequenceNumber"], first["SequenceNumber"])
        batch = self.sqs.send_message_batch(QueueUrl=url, Entries=[
            {"Id": "1", "MessageBody": "a2", "MessageGroupId": "a"},
            {"Id": "2", "MessageBody": "b1", "MessageGroupId": "b"},
            {"Id": "3", "MessageBody": "a3", "MessageGroupId": "a"},
        ])
        self.assertEqual(sorted(entry["Id"] for entry in batch["Successful"]), ["1", "2", "3"])
        sequences = [int(first["SequenceNumber"])] + [int(entry["SequenceNumber"]) for entry in sorted(batch["Successful"], key=lambda e: e["Id"])]
        self.assertLess(sequences[0], sequences[1])
        self.assertLess(sequences[1], sequences[3])

        got = self.sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, AttributeNames=["All"], ReceiveRequestAttemptId="try-1")["Messages"]
        bodies = [m["Body"] for m in got]
        self.assertEqual([b for b in bodies if b.startswith("a")], ["a1", "a2", "a3"])
        self.assertEqual(len(bodies), 4)
        self.assertEqual(got[0]["Attributes"]["MessageGroupId"], "a")
        self.assertEqual(got[0]["Attributes"]["MessageDeduplicationId"], "d1")
        self.assertEqual(got[0]["Attributes"]["SequenceNumber"], first["SequenceNumber"])
        b1 = next(m for m in got if m["Body"] == "b1")
        self.assertEqual(b1["Attributes"]["MessageDeduplicationId"], hashlib.sha256(b"b1").hexdigest())
        # A retried attempt answers the same messages with the same receipts.
        again = self.sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, ReceiveRequestAttemptId="try-1")["Messages"]
        self.assertEqual([m["ReceiptHandle"] for m in again], [m["ReceiptHandle"] for m in got])
        # Every group is in flight: nothing more until they are deleted.
        self.assertNotIn("Messages", self.sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10))
        deleted = self.sqs.delete_message_batch(QueueUrl=url, Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(got)])
        self.assertEqual(len(deleted["Successful"]), 4)
        # Deleted, d1 is still within its window.
        repeat = self.sqs.send_message(QueueUrl=url, MessageBody="a1", MessageGroupId="a", MessageDeduplicationId="d1")
        self.assertEqual(repeat["MessageId"], first["MessageId"])
        self.assertNotIn("Messages", self.sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10))

        with Expect(self, "MissingParameter", 400):
            self.sqs.send_message(QueueUrl=url, MessageBody="no group")
        with Expect(self, "InvalidParameterValue", 400):
            self.sqs.send_message(QueueUrl=url, MessageBody="delayed", MessageGroupId="a", DelaySeconds=5)
        with Expect(self, "InvalidParameterValue", 400):
            self.sqs.create_queue(QueueName=unique("no-suffix"), Attributes={"FifoQueue": "true"})

    def test_a_high_throughput_fifo_queue_keeps_every_group_in_order(self):
        # perMessageGroupId: the groups are spread over the daemon's cores.
        name = unique("spread") + ".fifo"
        url = self.sqs.create_queue(QueueName=name, Attributes={
            "FifoQueue": "true", "DeduplicationScope": "messageGroup", "FifoThroughputLimit": "perMessageGroupId"})["QueueUrl"]
        attributes = self.sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
        self.assertEqual((attributes["DeduplicationScope"], attributes["FifoThroughputLimit"]), ("messageGroup", "perMessageGroupId"))
        sent = {}
        for round in range(4):
            entries = [{"Id": str(g), "MessageBody": f"g{g}-{round}", "MessageGroupId": f"g{g}", "MessageDeduplicationId": f"{round}"}
                       for g in range(10)]
            answer = self.sqs.send_message_batch(QueueUrl=url, Entries=entries)
            self.assertEqual(len(answer["Successful"]), 10)
            for entry in answer["Successful"]:
                sent.setdefault(f"g{entry['Id']}", []).append(int(entry["SequenceNumber"]))
        for numbers in sent.values():
            self.assertEqual(numbers, sorted(numbers))
        # The same deduplication id is new in every group, a repeat within one.
        repeat = self.sqs.send_message(QueueUrl=url, MessageBody="again", MessageGroupId="g3", MessageDeduplicationId="0")
        self.assertEqual(int(repeat["SequenceNumber"]), sent["g3"][0])
        received = {}
        for _ in range(40):
            got = self.sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, AttributeNames=["All"], WaitTimeSeconds=1).get("Messages", [])
            for m in got:
                received.setdefault(m["Attributes"]["MessageGroupId"], []).append(m["Body"])
            if got:
                deleted = self.sqs.delete_message_batch(QueueUrl=url, Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(got)])
                self.assertEqual(len(deleted["Successful"]), len(got))
            if sum(len(v) for v in received.values()) >= 40:
                break
        self.assertEqual(received, {f"g{g}": [f"g{g}-{r}" for r in range(4)] for g in range(10)})

    def test_a_fair_queue_serves_a_quiet_tenant_before_a_noisy_backlog(self):
        # One pooled connection: every send lands in the same core's partition of the queue.
        url = self.sqs.create_queue(QueueName=unique("tenants"))["QueueUrl"]
        for start in range(0, 60, 10):
            entries = [{"Id": str(i), "MessageBody": f"noisy {start + i}", "MessageGroupId": "noisy"} for i in range(10)]
            self.assertEqual(len(self.sqs.send_message_batch(QueueUrl=url, Entries=entries)["Successful"]), 10)
        self.sqs.send_message(QueueUrl=url, MessageBody="quiet 0", MessageGroupId="quiet")
        self.sqs.send_message(QueueUrl=url, MessageBody="plain 0")
        held = []
        for _ in range(3):
            got = self.sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, VisibilityTimeout=600)["Messages"]
            held += [m["Body"] for m in got]
        self.assertEqual(held, [f"noisy {i}" for i in range(30)])
        # 30 in flight, all the noisy tenant's: the quiet tenant and the ungrouped message first.
        got = self.sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=4, VisibilityTimeout=600, AttributeNames=["All"])["Messages"]
        self.assertEqual([m["Body"] for m in got], ["quiet 0", "plain 0", "noisy 30", "noisy 31"])
        self.assertEqual(got[0]["Attributes"]["MessageGroupId"], "quiet")
        self.assertNotIn("MessageGroupId", got[1]["Attributes"])

    def test_errors_arrive_as_the_sdk_models_them(self):
        url = self.queue("errors")
        with Expect(self, "AWS.SimpleQueueService.NonExistentQueue", 400) as expect:
            self.sqs.send_message(QueueUrl=url + "-missing", MessageBody="x")
        self.assertIsInstance(expect.error, self.sqs.exceptions.QueueDoesNotExist)
        with Expect(self, "AWS.SimpleQueueService.TooManyEntriesInBatchRequest", 400):
            self.sqs.send_message_batch(QueueUrl=url, Entries=[{"Id": f"e{i}", "MessageBody": "x"} for i in range(11)])
        with Expect(self, "AWS.SimpleQueueService.InvalidBatchEntryId", 400):
            self.sqs.send_message_batch(QueueUrl=url, Entries=[{"Id": "bad id!", "MessageBody": "x"}])
        with Expect(self, "InvalidParameterValue", 400):
            self.sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=11)
        with Expect(self, "ReceiptHandleIsInvalid", 400):
            self.sqs.delete_message(QueueUrl=url, ReceiptHandle="garbage")
        with Expect(self, "InvalidAttributeName", 400):
            self.sqs.set_queue_attributes(QueueUrl=url, Attributes={"NoSuchAttribute": "1"})

    def test_a_receipt_handle_edited_to_name_another_message_is_refused(self):
        url = self.queue("sealed")
        for body in ("first", "second"):
            self.sqs.send_message(QueueUrl=url, MessageBody=body)
        handle = self.sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=1, VisibilityTimeout=600)["Messages"][0]["ReceiptHandle"]
        # The handle names a message by its sequence number (bytes 11..19); the next one is the
        # message not received. Without the daemon's key the edit cannot be sealed again.
        raw = bytearray(base64.urlsafe_b64decode(handle + "=" * (-len(handle) % 4)))
        raw[11:19] = (int.from_bytes(raw[11:19], "big") + 1).to_bytes(8, "big")
        forged = base64.urlsafe_b64encode(bytes(raw)).decode().rstrip("=")
        with Expect(self, "ReceiptHandleIsInvalid", 400):
            self.sqs.delete_message(QueueUrl=url, ReceiptHandle=forged)
        attributes = self.sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
        self.assertEqual((attributes["ApproximateNumberOfMessages"], attributes["ApproximateNumberOfMessagesNotVisible"]), ("1", "1"))
        self.sqs.delete_message(QueueUrl=url, ReceiptHandle=handle)


if __name__ == "__main__":
    unittest.main()
