// The AWS SDK for JavaScript v3 against the gateway (SLUICE_ENDPOINT): every Kinesis action its
// client sends over HTTP/2 (prior knowledge on http://, as the SDK does), SubscribeToShard's
// event stream among them, and a send/receive through SQS and a publish through SNS. Exits
// non-zero with the first failure.
const assert = require("assert");
const k = require("@aws-sdk/client-kinesis");
const { SQSClient, CreateQueueCommand, SendMessageCommand, ReceiveMessageCommand, DeleteMessageCommand } = require("@aws-sdk/client-sqs");
const { SNSClient, CreateTopicCommand, PublishCommand, SubscribeCommand } = require("@aws-sdk/client-sns");

const config = {
  endpoint: process.env.SLUICE_ENDPOINT,
  region: "us-east-1",
  credentials: { accessKeyId: "test", secretAccessKey: "test" },
  maxAttempts: 1,
};
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

async function kinesis() {
  const client = new k.KinesisClient(config);
  const send = (command) => client.send(command);
  const name = `js-${Date.now()}`;
  await send(new k.CreateStreamCommand({ StreamName: name, ShardCount: 2 }));
  const summary = (await send(new k.DescribeStreamSummaryCommand({ StreamName: name }))).StreamDescriptionSummary;
  assert.equal(summary.StreamStatus, "ACTIVE");
  const arn = summary.StreamARN;
  const described = (await send(new k.DescribeStreamCommand({ StreamName: name }))).StreamDescription;
  assert.equal(described.Shards.length, 2);
  assert.ok((await send(new k.ListStreamsCommand({}))).StreamNames.includes(name));
  const shards = (await send(new k.ListShardsCommand({ StreamName: name }))).Shards;
  const put = await send(new k.PutRecordCommand({ StreamName: name, PartitionKey: "a", Data: Buffer.from("one") }));
  const puts = await send(new k.PutRecordsCommand({
    StreamARN: arn,
    Records: [{ PartitionKey: "a", Data: Buffer.from("two") }, { PartitionKey: "a", Data: Buffer.from("three") }],
  }));
  assert.equal(puts.FailedRecordCount, 0);
  const iterator = (await send(new k.GetShardIteratorCommand({ StreamName: name, ShardId: put.ShardId, ShardIteratorType: "TRIM_HORIZON" }))).ShardIterator;
  const records = (await send(new k.GetRecordsCommand({ ShardIterator: iterator }))).Records;
  assert.deepEqual(records.map((r) => Buffer.from(r.Data).toString()), ["one", "two", "three"]);
  await send(new k.IncreaseStreamRetentionPeriodCommand({ StreamName: name, RetentionPeriodHours: 48 }));
  await send(new k.DecreaseStreamRetentionPeriodCommand({ StreamName: name, RetentionPeriodHours: 24 }));
  await send(new k.AddTagsToStreamCommand({ StreamName: name, Tags: { team: "js" } }));
  assert.deepEqual((await send(new k.ListTagsForStreamCommand({ StreamName: name }))).Tags, [{ Key: "team", Value: "js" }]);
  await send(new k.RemoveTagsFromStreamCommand({ StreamName: name, TagKeys: ["team"] }));
  const consumer = (await send(new k.RegisterStreamConsumerCommand({ StreamARN: arn, ConsumerName: "reader" }))).Consumer;
  assert.equal((await send(new k.DescribeStreamConsumerCommand({ ConsumerARN: consumer.ConsumerARN }))).ConsumerDescription.ConsumerName, "reader");
  assert.equal((await send(new k.ListStreamConsumersCommand({ StreamARN: arn }))).Consumers.length, 1);
  // SubscribeToShard: an event stream over one HTTP/2 stream.
  let subscribed;
  for (let attempt = 0; attempt < 20; attempt++) {
    try {
      subscribed = await send(new k.SubscribeToShardCommand({
        ConsumerARN: consumer.ConsumerARN,
        ShardId: put.ShardId,
        StartingPosition: { Type: "TRIM_HORIZON" },
      }));
      break;
    } catch (error) {
      if (error.name !== "ResourceInUseException") throw error;
      await sleep(500); // the consumer becomes ACTIVE shortly after it is registered
    }
  }
  const seen = [];
  for await (const event of subscribed.EventStream) {
    if (event.SubscribeToShardEvent) {
      seen.push(...event.SubscribeToShardEvent.Records.map((r) => Buffer.from(r.Data).toString()));
      if (seen.length >= 3) break;
    }
  }
  assert.deepEqual(seen, ["one", "two", "three"]);
  await send(new k.UpdateShardCountCommand({ StreamName: name, TargetShardCount: 4, ScalingType: "UNIFORM_SCALING" }));
  const open = (await send(new k.ListShardsCommand({ StreamName: name, ShardFilter: { Type: "AT_LATEST" } }))).Shards;
  assert.equal(open.length, 4);
  const [first, second] = open;
  await send(new k.SplitShardCommand({ StreamName: name, ShardToSplit: first.ShardId, NewStartingHashKey: ((BigInt(first.HashKeyRange.StartingHashKey) + BigInt(first.HashKeyRange.EndingHashKey)) / 2n).toString() }));
  const afterSplit = (await send(new k.ListShardsCommand({ StreamName: name, ShardFilter: { Type: "AT_LATEST" } }))).Shards;
  const adjacent = afterSplit.filter((s) => s.ShardId !== second.ShardId).find((s) => BigInt(s.HashKeyRange.EndingHashKey) + 1n === BigInt(second.HashKeyRange.StartingHashKey));
  await send(new k.MergeShardsCommand({ StreamName: name, ShardToMerge: adjacent.ShardId, AdjacentShardToMerge: second.ShardId }));
  await send(new k.UpdateStreamModeCommand({ StreamARN: arn, StreamModeDetails: { StreamMode: "ON_DEMAND" } }));
  assert.equal((await send(new k.DescribeStreamSummaryCommand({ StreamARN: arn }))).StreamDescriptionSummary.StreamModeDetails.StreamMode, "ON_DEMAND");
  await send(new k.DeregisterStreamConsumerCommand({ ConsumerARN: consumer.ConsumerARN }));
  await send(new k.DeleteStreamCommand({ StreamName: name, EnforceConsumerDeletion: true }));
  client.destroy();
  console.log(`kinesis: every action, ${shards.length} shards listed, ${seen.length} records pushed over HTTP/2`);
}

async function queuesAndTopics() {
  const sqs = new SQSClient(config);
  const sns = new SNSClient(config);
  const url = (await sqs.send(new CreateQueueCommand({ QueueName: `js-${Date.now()}` }))).QueueUrl;
  await sqs.send(new SendMessageCommand({ QueueUrl: url, MessageBody: "from javascript" }));
  const topic = (await sns.send(new CreateTopicCommand({ Name: `js-${Date.now()}` }))).TopicArn;
  const queueArn = `arn:aws:sqs:us-east-1:000000000000:${url.split("/").pop()}`;
  await sns.send(new SubscribeCommand({ TopicArn: topic, Protocol: "sqs", Endpoint: queueArn, Attributes: { RawMessageDelivery: "true" } }));
  await sns.send(new PublishCommand({ TopicArn: topic, Message: "published from javascript" }));
  const bodies = [];
  for (let i = 0; i < 10 && bodies.length < 2; i++) {
    const received = await sqs.send(new ReceiveMessageCommand({ QueueUrl: url, MaxNumberOfMessages: 10, WaitTimeSeconds: 1 }));
    for (const message of received.Messages || []) {
      bodies.push(message.Body);
      await sqs.send(new DeleteMessageCommand({ QueueUrl: url, ReceiptHandle: message.ReceiptHandle }));
    }
  }
  assert.deepEqual(bodies.sort(), ["from javascript", "published from javascript"]);
  sqs.destroy();
  sns.destroy();
  console.log("sqs and sns: sent, published, received");
}

(async () => {
  await kinesis();
  await queuesAndTopics();
})().catch((error) => {
  console.error(error);
  process.exit(1);
});
