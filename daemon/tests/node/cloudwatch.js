// The AWS SDK for JavaScript v3's CloudWatch client against the gateway (SLUICE_ENDPOINT), in
// each protocol the service speaks: AWS JSON 1.0 (the client's default), Smithy RPC v2 CBOR and
// Query (the SDK's own protocol implementations, chosen with `protocol`). An alarm is made,
// described, set and deleted; the metric history answers; errors carry CloudWatch's codes.
// The daemon samples every second (--metrics-sample-seconds 1). Exits non-zero with the first
// failure.
const assert = require("assert");
const cw = require("@aws-sdk/client-cloudwatch");
const { AwsJson1_0Protocol, AwsQueryProtocol, AwsSmithyRpcV2CborProtocol } = require("@aws-sdk/core/protocols");
const { SQSClient, CreateQueueCommand, SendMessageCommand } = require("@aws-sdk/client-sqs");

const config = {
  endpoint: process.env.SLUICE_ENDPOINT,
  region: "us-east-1",
  credentials: { accessKeyId: "test", secretAccessKey: "test" },
  maxAttempts: 1,
};
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

async function until(what, check) {
  const deadline = Date.now() + 60_000;
  for (;;) {
    const found = await check();
    if (found) return found;
    if (Date.now() > deadline) throw new Error(`${what}: not within 60 s`);
    await sleep(500);
  }
}

async function scenario(label, protocol) {
  const client = new cw.CloudWatchClient({ ...config, protocol });
  const seen = [];
  client.middlewareStack.add((next) => async (args) => {
    seen.push(args.request.headers["content-type"] || args.request.headers["Content-Type"]);
    return next(args);
  }, { step: "finalizeRequest", name: "seeContentType" });
  const send = (command) => client.send(command);
  const queue = `js-cw-${label}-${Date.now()}`;
  const sqs = new SQSClient(config);
  const url = (await sqs.send(new CreateQueueCommand({ QueueName: queue }))).QueueUrl;
  for (let i = 0; i < 4; i++) await sqs.send(new SendMessageCommand({ QueueUrl: url, MessageBody: `m${i}` }));
  const dims = [{ Name: "QueueName", Value: queue }];
  const name = `js-${label}-${Date.now()}`;
  await send(new cw.PutMetricAlarmCommand({
    AlarmName: name, Namespace: "AWS/SQS", MetricName: "ApproximateNumberOfMessagesVisible", Dimensions: dims,
    Statistic: "Maximum", Period: 10, EvaluationPeriods: 1, Threshold: 3, ComparisonOperator: "GreaterThanThreshold",
  }));
  let alarm = (await send(new cw.DescribeAlarmsCommand({ AlarmNames: [name] }))).MetricAlarms[0];
  assert.equal(alarm.Threshold, 3);
  assert.ok(alarm.StateUpdatedTimestamp instanceof Date && Math.abs(alarm.StateUpdatedTimestamp - Date.now()) < 60_000, `${label}: a time`);
  await until(`${label}: ALARM`, async () =>
    (await send(new cw.DescribeAlarmsCommand({ AlarmNames: [name] }))).MetricAlarms[0].StateValue === "ALARM");
  await send(new cw.SetAlarmStateCommand({ AlarmName: name, StateValue: "OK", StateReason: "by hand" }));
  alarm = (await send(new cw.DescribeAlarmsCommand({ AlarmNames: [name] }))).MetricAlarms[0];
  assert.equal(alarm.StateReason, "by hand");
  const start = new Date(Date.now() - 600_000);
  const end = new Date(Date.now() + 60_000);
  const stats = await send(new cw.GetMetricStatisticsCommand({
    Namespace: "AWS/SQS", MetricName: "NumberOfMessagesSent", Dimensions: dims, StartTime: start, EndTime: end, Period: 660, Statistics: ["Sum"],
  }));
  assert.equal(stats.Datapoints.reduce((sum, p) => sum + p.Sum, 0), 4, `${label}: four sent`);
  assert.ok(stats.Datapoints[0].Timestamp instanceof Date);
  const data = await send(new cw.GetMetricDataCommand({
    StartTime: start, EndTime: end,
    MetricDataQueries: [{ Id: "depth", MetricStat: { Metric: { Namespace: "AWS/SQS", MetricName: "ApproximateNumberOfMessagesVisible", Dimensions: dims }, Period: 60, Stat: "Maximum" } }],
  }));
  assert.equal(data.MetricDataResults[0].Values[0], 4);
  const listed = (await send(new cw.ListMetricsCommand({ Namespace: "AWS/SQS", Dimensions: [{ Name: "QueueName", Value: queue }] }))).Metrics;
  assert.equal(listed.length, 8, `${label}: a queue's eight metrics`);
  await send(new cw.DeleteAlarmsCommand({ AlarmNames: [name] }));
  await assert.rejects(send(new cw.SetAlarmStateCommand({ AlarmName: name, StateValue: "OK", StateReason: "x" })), (error) => {
    assert.equal(error.name, "ResourceNotFound", `${label}: ${error.name}`);
    assert.equal(error.$metadata.httpStatusCode, 404);
    return true;
  });
  await assert.rejects(send(new cw.PutMetricAlarmCommand({
    AlarmName: name, Namespace: "AWS/SQS", MetricName: "X", Statistic: "Sum", Period: 45, EvaluationPeriods: 1, Threshold: 1,
    ComparisonOperator: "GreaterThanThreshold",
  })), (error) => {
    assert.ok(["InvalidParameterValue", "InvalidParameterValueException"].includes(error.name), `${label}: ${error.name}`);
    return true;
  });
  return seen;
}

(async () => {
  const json = await scenario("json", AwsJson1_0Protocol);
  assert.ok(json.every((type) => type === "application/x-amz-json-1.0"), `JSON: ${json}`);
  const cbor = await scenario("cbor", AwsSmithyRpcV2CborProtocol);
  assert.ok(cbor.every((type) => type === "application/cbor"), `CBOR: ${cbor}`);
  const query = await scenario("query", AwsQueryProtocol);
  assert.ok(query.every((type) => type.startsWith("application/x-www-form-urlencoded")), `Query: ${query}`);
  console.log("cloudwatch: JSON, CBOR and Query ok");
})().catch((error) => {
  console.error(error);
  process.exit(1);
});
