//! `sluice`: the command-line client for a Sluice broker.
//!
//! Errors print the AWS-style code and message to stderr and exit with 1.

use std::io::{BufRead, Write};
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use futures::StreamExt;
use serde_json::json;
use sluice_client::blocking::BlockingClient;
use sluice_client::{ClientError, DeleteEntry, KeyValues, MessageAttribute, PublishEntry, ReceiveMessage, ReceivedMessage, SendEntry};
use sluice_protocol::limits::{BATCH_BYTES_MAX, BATCH_ENTRIES_MAX};

/// Batches `send -` keeps in flight at once.
const STDIN_BATCHES_IN_FLIGHT_MAX: usize = 64;

#[derive(Parser)]
#[command(name = "sluice", version, about = "Command-line client for the Sluice message broker.")]
struct Cli {
    /// Address of the broker's binary protocol.
    #[arg(long, global = true, env = "SLUICE_ENDPOINT", default_value = "127.0.0.1:9800")]
    endpoint: String,

    /// Print results as JSON (one object per line) instead of plain text.
    #[arg(long, global = true, env = "SLUICE_JSON", default_value_t = false)]
    json: bool,

    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Create, list, inspect, delete and purge queues.
    #[command(subcommand)]
    Queue(QueueCommand),
    /// Send a message; a BODY of `-` sends each line of standard input as one message (batched).
    Send(SendArgs),
    /// Receive messages and print each body on its own line.
    Receive(ReceiveArgs),
    /// Delete a received message by its receipt handle.
    Delete {
        /// Queue name or URL.
        queue: String,
        /// The receipt handle printed by `receive --json`.
        receipt_handle: String,
    },
    /// Create, list, inspect and delete topics.
    #[command(subcommand)]
    Topic(TopicCommand),
    /// Subscribe a queue to a topic. Prints the subscription ARN.
    Subscribe {
        /// Topic name or ARN.
        topic: String,
        /// Queue name, URL or ARN.
        queue: String,
        /// Deliver the message itself (and its attributes) instead of the SNS JSON envelope.
        #[arg(long, default_value_t = false)]
        raw: bool,
        /// A filter policy (JSON); only matching messages reach the queue.
        #[arg(long, value_name = "JSON")]
        filter: Option<String>,
        /// What the filter policy looks at: `attributes` (the message attributes) or `body` (the message as JSON).
        #[arg(long, value_name = "SCOPE", default_value = "attributes", value_parser = ["attributes", "body"])]
        filter_scope: String,
    },
    /// Remove a subscription.
    Unsubscribe {
        /// The ARN `subscribe` printed.
        subscription_arn: String,
    },
    /// Publish a message to a topic. Prints its message id.
    Publish {
        /// Topic name or ARN.
        topic: String,
        /// The message.
        message: String,
        /// A subject (copied into the envelope subscribers receive).
        #[arg(long)]
        subject: Option<String>,
        /// A message attribute, `NAME=VALUE` (a String) or `NAME:TYPE=VALUE` with TYPE String, String.Array or Number (repeatable).
        #[arg(long = "attr", value_name = "NAME=VALUE")]
        attributes: Vec<String>,
    },
}

#[derive(Subcommand)]
enum TopicCommand {
    /// Create a topic (idempotent when the attributes are the same). Prints its ARN.
    Create(CreateArgs),
    /// List topic ARNs.
    List,
    /// Print every attribute of a topic.
    Attrs { topic: String },
    /// List a topic's subscriptions: ARN, protocol and endpoint.
    Subscriptions { topic: String },
    /// Delete a topic and its subscriptions.
    Delete { topic: String },
}

#[derive(Subcommand)]
enum QueueCommand {
    /// Create a queue (idempotent when the attributes are the same). Prints its URL.
    Create(CreateArgs),
    /// List queue URLs.
    List {
        /// Only queues whose name starts with this.
        #[arg(long)]
        prefix: Option<String>,
    },
    /// Print every attribute of a queue, message counts included.
    Attrs { name: String },
    /// Change queue attributes.
    Set {
        name: String,
        /// An attribute to set, e.g. `DelaySeconds=5` (repeatable).
        #[arg(long = "attr", value_name = "KEY=VALUE", required = true)]
        attributes: Vec<String>,
    },
    /// Print a queue's URL.
    Url { name: String },
    /// Delete a queue and all its messages.
    Delete { name: String },
    /// Delete all messages of a queue (once per 60 seconds).
    Purge { name: String },
}

/// A queue or topic to create.
#[derive(Args)]
struct CreateArgs {
    /// The queue's or topic's name.
    name: String,
    /// An attribute, e.g. `VisibilityTimeout=60` for a queue or `DisplayName=Orders` for a topic (repeatable).
    #[arg(long = "attr", value_name = "KEY=VALUE")]
    attributes: Vec<String>,
    /// A tag, e.g. `team=payments` (repeatable).
    #[arg(long = "tag", value_name = "KEY=VALUE")]
    tags: Vec<String>,
}

impl CreateArgs {
    fn pairs(&self) -> Result<(KeyValues, KeyValues), String> {
        let attributes = self.attributes.iter().map(|a| split_pair(a)).collect::<Result<Vec<_>, _>>()?;
        let tags = self.tags.iter().map(|t| split_pair(t)).collect::<Result<Vec<_>, _>>()?;
        Ok((attributes, tags))
    }
}

#[derive(Args)]
struct SendArgs {
    /// Queue name or URL.
    queue: String,
    /// The message body, or `-` for one message per line of standard input.
    body: String,
    /// Seconds before the message can be received (0–900; default: the queue's DelaySeconds).
    #[arg(long)]
    delay: Option<i32>,
    /// A message attribute, `NAME=VALUE` (a String) or `NAME:TYPE=VALUE` with TYPE String or Number (repeatable).
    #[arg(long = "attr", value_name = "NAME=VALUE")]
    attributes: Vec<String>,
}

#[derive(Args)]
struct ReceiveArgs {
    /// Queue name or URL.
    queue: String,
    /// Most messages to receive (1–10).
    #[arg(long, default_value_t = 1)]
    max: i32,
    /// Seconds to wait for a message (0–20; default: the queue's ReceiveMessageWaitTimeSeconds).
    #[arg(long)]
    wait: Option<i32>,
    /// Seconds the received messages stay hidden from other receivers (default: the queue's VisibilityTimeout).
    #[arg(long)]
    visibility: Option<i32>,
    /// Delete each message once printed.
    #[arg(long, default_value_t = false)]
    delete: bool,
}

fn split_pair(text: &str) -> Result<(String, String), String> {
    text.split_once('=').map(|(k, v)| (k.to_owned(), v.to_owned())).ok_or_else(|| format!("expected KEY=VALUE, got `{text}`"))
}

fn message_attribute(text: &str) -> Result<MessageAttribute, String> {
    let (name, value) = split_pair(text)?;
    let (name, data_type) = match name.split_once(':') {
        Some((name, data_type)) => (name.to_owned(), data_type.to_owned()),
        None => (name, "String".to_owned()),
    };
    Ok(MessageAttribute::string(name, data_type, value))
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Client(ClientError::Server(error))) => {
            eprintln!("error: {}: {}", error.code.aws_name(), error.message);
            ExitCode::FAILURE
        }
        Err(Failure::Client(error)) => {
            eprintln!("error: {error}");
            ExitCode::FAILURE
        }
        Err(Failure::Usage(message)) => {
            eprintln!("error: {message}");
            ExitCode::FAILURE
        }
    }
}

enum Failure {
    Client(ClientError),
    Usage(String),
}

impl From<ClientError> for Failure {
    fn from(error: ClientError) -> Self {
        Failure::Client(error)
    }
}

impl From<String> for Failure {
    fn from(message: String) -> Self {
        Failure::Usage(message)
    }
}

impl From<std::io::Error> for Failure {
    fn from(error: std::io::Error) -> Self {
        Failure::Client(ClientError::Io(error))
    }
}

fn run(cli: Cli) -> Result<(), Failure> {
    let connection = BlockingClient::connect(cli.endpoint.as_str(), "sluice-cli")
        .map_err(|error| Failure::Usage(format!("cannot reach a Sluice broker at {}: {error}", cli.endpoint)))?;
    let client = connection.client().clone();
    let json = cli.json;
    let mut out = std::io::stdout().lock();
    match cli.command {
        Command::Queue(QueueCommand::Create(args)) => {
            let (attributes, tags) = args.pairs()?;
            let url = connection.block_on(client.create_queue(&args.name, attributes, tags))?;
            print_url(&mut out, json, &url)?;
        }
        Command::Queue(QueueCommand::List { prefix }) => {
            let mut token = None;
            loop {
                let (urls, next) = connection.block_on(client.list_queues(prefix.as_deref(), Some(1000), token))?;
                for url in urls {
                    print_url(&mut out, json, &url)?;
                }
                match next {
                    Some(next) => token = Some(next),
                    None => break,
                }
            }
        }
        Command::Queue(QueueCommand::Attrs { name }) => {
            let attributes = connection.block_on(client.get_queue_attributes(&name, &["All"]))?;
            print_attributes(&mut out, json, attributes)?;
        }
        Command::Queue(QueueCommand::Set { name, attributes }) => {
            let attributes = attributes.iter().map(|a| split_pair(a)).collect::<Result<Vec<_>, _>>()?;
            connection.block_on(client.set_queue_attributes(&name, attributes))?;
        }
        Command::Queue(QueueCommand::Url { name }) => {
            let url = connection.block_on(client.get_queue_url(&name))?;
            print_url(&mut out, json, &url)?;
        }
        Command::Queue(QueueCommand::Delete { name }) => connection.block_on(client.delete_queue(&name))?,
        Command::Queue(QueueCommand::Purge { name }) => connection.block_on(client.purge_queue(&name))?,
        Command::Send(args) => {
            let attributes = args.attributes.iter().map(|a| message_attribute(a)).collect::<Result<Vec<_>, _>>()?;
            if args.body == "-" {
                send_stdin(&connection, &args.queue, args.delay, &attributes, json, &mut out)?;
            } else {
                let entry =
                    SendEntry { body: args.body.into_bytes().into(), delay_seconds: args.delay, attributes, ..SendEntry::default() };
                let result = connection.block_on(client.send_entry(&args.queue, entry))?;
                if json {
                    writeln!(out, "{}", json!({"MessageId": result.message_id, "MD5OfMessageBody": result.md5_of_body}))?;
                } else {
                    writeln!(out, "{}", result.message_id)?;
                }
            }
        }
        Command::Receive(args) => {
            let receive = ReceiveMessage {
                queue: args.queue.clone(),
                max_messages: Some(args.max),
                wait_time_seconds: args.wait,
                visibility_timeout: args.visibility,
                system_attribute_names: if json { vec!["All".into()] } else { Vec::new() },
                message_attribute_names: if json { vec!["All".into()] } else { Vec::new() },
                receive_request_attempt_id: None,
            };
            let messages = connection.block_on(client.receive_message(receive))?;
            for message in &messages {
                print_message(&mut out, json, message)?;
            }
            out.flush()?;
            if args.delete && !messages.is_empty() {
                let entries = messages
                    .iter()
                    .enumerate()
                    .map(|(i, m)| DeleteEntry { id: i.to_string(), receipt_handle: m.receipt_handle.clone() })
                    .collect();
                let (_, failed) = connection.block_on(client.delete_message_batch(&args.queue, entries))?;
                if let Some(failure) = failed.first() {
                    return Err(Failure::Client(ClientError::Server(sluice_client::OpError::new(failure.code, failure.message.clone()))));
                }
            }
        }
        Command::Delete { queue, receipt_handle } => connection.block_on(client.delete_message(&queue, &receipt_handle))?,
        Command::Topic(TopicCommand::Create(args)) => {
            let (attributes, tags) = args.pairs()?;
            let arn = connection.block_on(client.create_topic(&args.name, attributes, tags))?;
            print_named(&mut out, json, "TopicArn", &arn)?;
        }
        Command::Topic(TopicCommand::List) => {
            let mut token = None;
            loop {
                let (arns, next) = connection.block_on(client.list_topics(token))?;
                for arn in arns {
                    print_named(&mut out, json, "TopicArn", &arn)?;
                }
                match next {
                    Some(next) => token = Some(next),
                    None => break,
                }
            }
        }
        Command::Topic(TopicCommand::Attrs { topic }) => {
            let attributes = connection.block_on(client.get_topic_attributes(&topic))?;
            print_attributes(&mut out, json, attributes)?;
        }
        Command::Topic(TopicCommand::Subscriptions { topic }) => {
            let mut token = None;
            loop {
                let (rows, next) = connection.block_on(client.list_subscriptions(Some(&topic), token))?;
                for row in rows {
                    if json {
                        writeln!(
                            out,
                            "{}",
                            json!({"SubscriptionArn": row.subscription_arn, "Protocol": row.protocol, "Endpoint": row.endpoint, "TopicArn": row.topic_arn})
                        )?;
                    } else {
                        writeln!(out, "{} {} {}", row.subscription_arn, row.protocol, row.endpoint)?;
                    }
                }
                match next {
                    Some(next) => token = Some(next),
                    None => break,
                }
            }
        }
        Command::Topic(TopicCommand::Delete { topic }) => connection.block_on(client.delete_topic(&topic))?,
        Command::Subscribe { topic, queue, raw, filter, filter_scope } => {
            let queue_arn = if queue.starts_with("arn:") {
                queue
            } else {
                let attributes = connection.block_on(client.get_queue_attributes(&queue, &["QueueArn"]))?;
                attributes.into_iter().find(|(k, _)| k == "QueueArn").map(|(_, v)| v).ok_or("the queue has no ARN".to_owned())?
            };
            let mut attributes = Vec::new();
            if raw {
                attributes.push(("RawMessageDelivery".to_owned(), "true".to_owned()));
            }
            if let Some(filter) = filter {
                attributes.push(("FilterPolicy".to_owned(), filter));
                let scope = if filter_scope == "body" { "MessageBody" } else { "MessageAttributes" };
                attributes.push(("FilterPolicyScope".to_owned(), scope.to_owned()));
            }
            let arn = connection.block_on(client.subscribe(&topic, "sqs", &queue_arn, attributes))?;
            print_named(&mut out, json, "SubscriptionArn", &arn)?;
        }
        Command::Unsubscribe { subscription_arn } => connection.block_on(client.unsubscribe(&subscription_arn))?,
        Command::Publish { topic, message, subject, attributes } => {
            let attributes = attributes.iter().map(|a| message_attribute(a)).collect::<Result<Vec<_>, _>>()?;
            let entry = PublishEntry { message: message.into_bytes().into(), subject, attributes, ..PublishEntry::default() };
            let result = connection.block_on(client.publish_entry(&topic, entry))?;
            print_named(&mut out, json, "MessageId", &result.message_id)?;
        }
    }
    drop(client);
    connection.close()?;
    Ok(())
}

fn print_named(out: &mut impl Write, json: bool, name: &str, value: &str) -> std::io::Result<()> {
    if json {
        writeln!(out, "{}", json!({ name: value }))
    } else {
        writeln!(out, "{value}")
    }
}

fn print_attributes(out: &mut impl Write, json: bool, attributes: Vec<(String, String)>) -> std::io::Result<()> {
    if json {
        let map: serde_json::Map<String, serde_json::Value> = attributes.into_iter().map(|(k, v)| (k, json!(v))).collect();
        writeln!(out, "{}", serde_json::Value::Object(map))
    } else {
        for (key, value) in attributes {
            writeln!(out, "{key}={value}")?;
        }
        Ok(())
    }
}

fn print_url(out: &mut impl Write, json: bool, url: &str) -> std::io::Result<()> {
    print_named(out, json, "QueueUrl", url)
}

fn print_message(out: &mut impl Write, json: bool, message: &ReceivedMessage) -> std::io::Result<()> {
    let body = String::from_utf8_lossy(&message.body);
    if !json {
        return writeln!(out, "{body}");
    }
    let attributes: serde_json::Map<String, serde_json::Value> = message.attributes.iter().map(|(k, v)| (k.clone(), json!(v))).collect();
    let message_attributes: serde_json::Map<String, serde_json::Value> = message
        .message_attributes
        .iter()
        .map(|a| (a.name.clone(), json!({ "DataType": a.data_type, "StringValue": a.string_value })))
        .collect();
    writeln!(
        out,
        "{}",
        json!({
            "Body": body,
            "MessageId": message.message_id,
            "ReceiptHandle": message.receipt_handle,
            "MD5OfBody": message.md5_of_body,
            "Attributes": attributes,
            "MessageAttributes": message_attributes,
        })
    )
}

/// Sends each line of stdin as a message, in batches of up to 10 (and 1 MiB), many batches in flight.
fn send_stdin(
    connection: &BlockingClient,
    queue: &str,
    delay: Option<i32>,
    attributes: &[MessageAttribute],
    json: bool,
    out: &mut impl Write,
) -> Result<(), Failure> {
    let stdin = std::io::stdin().lock();
    let mut batches: Vec<Vec<SendEntry>> = Vec::new();
    let mut current: Vec<SendEntry> = Vec::new();
    let mut current_bytes = 0;
    for line in stdin.lines() {
        let line = line?;
        if line.is_empty() {
            continue;
        }
        let entry =
            SendEntry { body: line.into_bytes().into(), delay_seconds: delay, attributes: attributes.to_vec(), ..SendEntry::default() };
        let size = entry.size_bytes();
        if current.len() == BATCH_ENTRIES_MAX || (current_bytes + size > BATCH_BYTES_MAX && !current.is_empty()) {
            batches.push(std::mem::take(&mut current));
            current_bytes = 0;
        }
        current_bytes += size;
        current.push(SendEntry { id: current.len().to_string(), ..entry });
    }
    if !current.is_empty() {
        batches.push(current);
    }
    let client = connection.client().clone();
    let results: Vec<_> = connection.block_on(
        futures::stream::iter(batches.into_iter().map(|batch| {
            let client = client.clone();
            async move { client.send_message_batch(queue, batch).await }
        }))
        .buffered(STDIN_BATCHES_IN_FLIGHT_MAX)
        .collect(),
    );
    let (mut sent, mut failures) = (0usize, Vec::new());
    for result in results {
        let (successful, failed) = result?;
        sent += successful.len();
        failures.extend(failed);
    }
    if json {
        writeln!(out, "{}", json!({ "Sent": sent, "Failed": failures.len() }))?;
    } else {
        writeln!(out, "sent {sent} messages")?;
    }
    if let Some(failure) = failures.first() {
        return Err(Failure::Usage(format!("{} messages failed; first: {}: {}", failures.len(), failure.code.aws_name(), failure.message)));
    }
    Ok(())
}
