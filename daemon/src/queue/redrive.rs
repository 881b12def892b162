//! Message move tasks (SQS's dead-letter queue redrive): StartMessageMoveTask moves the
//! messages of a dead-letter queue back to the queues they came from (each message's
//! `DeadLetterQueueSourceArn`) or to one queue, at most `MaxNumberOfMessagesPerSecond`;
//! CancelMessageMoveTask stops it; ListMessageMoveTasks reports the last ten with their
//! progress. Tasks are kept in the metadata file (`catalog::moves`), so one running at a crash
//! goes on after the restart.
//!
//! Shard 0 drives every running task in steps (`run`): each shard moves up to its share of the
//! step's messages from its partition of the dead-letter queue into the destination's partition
//! on the same shard — the destination's `MovedIn` records before the source's `MovedOut`, both
//! durable before the step counts them, so a crash can duplicate a message but never lose one.
//! Moved messages start afresh in their destination (receive count 0), keeping their id, body,
//! attributes and send time. A task completes when no shard has a visible message left; messages
//! in flight in the dead-letter queue are left there, as SQS does. FIFO queues are refused
//! (their groups' order across a move is not kept yet).

use std::collections::HashMap;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use futures::future::join_all;
use sluice_protocol::{ErrorCode, OpError, Reply, Response};

use super::calls::{MoveOut, MovedOut};
use super::partition::{Moved, Partition};
use super::{call_on, QueueHost};
use crate::catalog::moves::{parse_handle, MoveChange, MoveStatus, MoveTask, RATE_MAX};
use crate::catalog::{MetaChange, MetaOutcome};

/// Messages a second when a task names no rate.
const RATE_DEFAULT: u64 = 5_000;
/// How often a running task takes a step.
const STEP: Duration = Duration::from_millis(100);
/// How often shard 0 looks for tasks when none runs.
const IDLE: Duration = Duration::from_millis(500);
/// How often a running task's progress is written to the metadata file.
const PROGRESS_EVERY_MS: u64 = 1_000;

fn not_found(what: &str) -> OpError {
    OpError::new(ErrorCode::ResourceNotFound, format!("The resource that you specified for the {what} parameter doesn't exist."))
}

fn invalid(message: impl Into<String>) -> OpError {
    OpError::new(ErrorCode::InvalidParameterValue, message)
}

/// StartMessageMoveTask.
pub async fn start<H: QueueHost>(host: &Rc<H>, source_arn: String, destination_arn: Option<String>, rate: Option<i32>) -> Response {
    let snapshot = host.snapshot();
    let source = snapshot.queue_by_arn(&source_arn).ok_or_else(|| not_found("SourceArn"))?.clone();
    if !snapshot.client_queues().any(|queue| snapshot.dead_letter_queue(queue).is_some_and(|dead| dead.id == source.id)) {
        return Err(invalid("Source queue must be configured as a Dead Letter Queue."));
    }
    if source.attributes.fifo {
        return Err(OpError::new(ErrorCode::UnsupportedOperation, "Message move tasks of FIFO queues are not supported by this server."));
    }
    if let Some(arn) = &destination_arn {
        let destination = snapshot.queue_by_arn(arn).ok_or_else(|| not_found("DestinationArn"))?;
        if destination.id == source.id {
            return Err(invalid("The destination queue must not be the source queue."));
        }
        if destination.attributes.fifo {
            return Err(invalid("The destination of a standard queue's messages must be a standard queue."));
        }
    }
    if let Some(rate) = rate {
        if !(1..=RATE_MAX).contains(&rate) {
            return Err(invalid(format!("MaxNumberOfMessagesPerSecond must be from 1 to {RATE_MAX}.")));
        }
    }
    drop(snapshot);
    let counts = join_all((0..host.count()).map(|shard| call_on(host, shard, super::calls::CountMessages { queue_id: source.id }))).await;
    let mut to_move = 0;
    for counts in counts {
        to_move += counts?.visible;
    }
    let task = MoveTask {
        id: crate::catalog::topics::random_uuid(),
        source_id: source.id,
        source_arn: source.arn.clone(),
        destination_arn,
        max_per_second: rate,
        status: MoveStatus::Running,
        moved: 0,
        to_move,
        failure: None,
        started_ms: host.env().now_ms(),
    };
    match host.meta_change(MetaChange::Move(MoveChange::Start(task))).await? {
        MetaOutcome::Move(task) => Ok(Reply::Attributes(vec![("TaskHandle".to_owned(), task.handle())])),
        _ => Err(OpError::new(ErrorCode::InternalFailure, "starting a task answered something else")),
    }
}

/// CancelMessageMoveTask.
pub async fn cancel<H: QueueHost>(host: &Rc<H>, handle: &str) -> Response {
    let (id, source_arn) = parse_handle(handle)?;
    let source = host.snapshot().queue_by_arn(&source_arn).map(|meta| meta.id).ok_or_else(|| not_found("TaskHandle"))?;
    match host.meta_change(MetaChange::Move(MoveChange::Cancel { source_id: source, id })).await? {
        MetaOutcome::Move(task) => Ok(Reply::Attributes(vec![("ApproximateNumberOfMessagesMoved".to_owned(), task.moved.to_string())])),
        _ => Err(OpError::new(ErrorCode::InternalFailure, "cancelling a task answered something else")),
    }
}

/// ListMessageMoveTasks.
pub async fn list<H: QueueHost>(host: &Rc<H>, source_arn: &str, max_results: Option<i32>) -> Response {
    let max = match max_results {
        None => 1,
        Some(max @ 1..=10) => max as usize,
        Some(_) => return Err(invalid("MaxResults must be from 1 to 10.")),
    };
    let source = host.snapshot().queue_by_arn(source_arn).map(|meta| meta.id).ok_or_else(|| not_found("SourceArn"))?;
    match host.meta_change(MetaChange::Moves(Some(source))).await? {
        MetaOutcome::Moves(tasks) => Ok(Reply::MoveTasks(tasks.iter().take(max).map(|task| task.describe()).collect())),
        _ => Err(OpError::new(ErrorCode::InternalFailure, "listing tasks answered something else")),
    }
}

/// One shard's part of a step: moves up to `max` visible messages of its partition of the
/// source into the destination's partition here, both durable before it answers.
pub async fn move_out_local<H: QueueHost>(host: &Rc<H>, request: MoveOut) -> Result<MovedOut, OpError> {
    let MoveOut { queue_id, destination, max } = request;
    let snapshot = host.snapshot();
    let Some(meta) = snapshot.by_id.get(&queue_id).cloned() else { return Err(not_found("SourceArn")) };
    let placed = take_and_place(host, &snapshot, &meta, &destination, max)?;
    for ticket in placed.tickets {
        host.queues().storage.durable(ticket).await?;
    }
    // Long polls on the queues the step filled find their messages.
    for queue_id in placed.filled {
        super::service::notify_visible(host, queue_id);
    }
    Ok(MovedOut { moved: placed.moved, left: placed.left, unplaced: placed.unplaced })
}

/// What the synchronous part of a step did.
struct Placed {
    /// What to wait for before the step counts.
    tickets: Vec<crate::storage::Ticket>,
    /// The queues that took messages.
    filled: Vec<u64>,
    moved: u64,
    /// Visible messages left in the source partition here.
    left: u64,
    /// Why a message could not move (it stays in the source).
    unplaced: Option<String>,
}

/// The synchronous part of a step: takes the messages out of the source partition and into
/// their destinations' partitions here, journaled and staged.
fn take_and_place<H: QueueHost>(
    host: &Rc<H>,
    snapshot: &crate::catalog::Snapshot,
    meta: &crate::catalog::QueueMeta,
    destination: &Option<String>,
    max: usize,
) -> Result<Placed, OpError> {
    let queue_id = meta.id;
    let retention_ms = meta.attributes.message_retention_seconds as u64 * 1000;
    let now = host.env().now_ms();
    let mut moved: Vec<Moved> = Vec::new();
    let mut tickets = Vec::new();
    let mut unplaced = None;
    let mut partitions = host.queues().partitions.borrow_mut();
    let Some(partition) = partitions.get_mut(&queue_id) else {
        return Ok(Placed { tickets, filled: Vec::new(), moved: 0, left: 0, unplaced: None });
    };
    partition.take_for_move(now, retention_ms, max, &mut moved);
    if partition.front_on_disk() {
        host.queues().request_load(queue_id);
    }
    // Where each goes: the task's destination, else the queue it came from.
    let mut by_target: HashMap<u64, Vec<Moved>> = HashMap::new();
    let mut back: Vec<Moved> = Vec::new();
    for message in moved.drain(..) {
        let target = match destination {
            Some(arn) => snapshot.queue_by_arn(arn),
            None => message.payload.dead_letter_source_arn.as_deref().and_then(|arn| snapshot.queue_by_arn(arn)),
        };
        match target {
            Some(target) if !target.attributes.fifo => by_target.entry(target.id).or_default().push(message),
            _ => {
                unplaced.get_or_insert_with(|| match destination {
                    Some(arn) => format!("the destination queue {arn} does not exist"),
                    None => {
                        let source = message.payload.dead_letter_source_arn.as_deref().unwrap_or("(none recorded)");
                        format!("a message's source queue {source} does not exist")
                    }
                });
                back.push(message);
            }
        }
    }
    let moved: u64 = by_target.values().map(|messages| messages.len() as u64).sum();
    let filled: Vec<u64> = by_target.keys().copied().collect();
    for (target_id, messages) in by_target {
        let target = partitions.entry(target_id).or_insert_with(|| Partition::for_queue(target_id));
        for mut message in messages {
            // A fresh start in its queue: not from a dead-letter queue, never received.
            let mut payload = (*message.payload).clone();
            payload.dead_letter_source_arn = None;
            message.payload = Arc::new(payload);
            message.receive_count = 0;
            message.first_receive_ms = 0;
            target.accept_moved(message, now);
        }
        tickets.extend(host.queues().storage.commit(target)?);
    }
    let partition = partitions.get_mut(&queue_id).expect("the source partition");
    // What has nowhere to go stays in the dead-letter queue.
    for message in back {
        partition.accept_moved(message, now);
    }
    tickets.extend(host.queues().storage.commit(partition)?);
    let left = partition.counts(now, retention_ms).visible;
    Ok(Placed { tickets, filled, moved, left, unplaced })
}

/// Shard 0: drives every running task a step at a time, and records their progress.
pub async fn run<H: QueueHost>(host: Rc<H>) {
    // Moved since progress was last written, and when that was, by task id.
    let mut unsaved: HashMap<String, (u64, u64)> = HashMap::new();
    loop {
        if host.shutdown().requested.get() {
            return;
        }
        let tasks = match host.meta_change(MetaChange::Moves(None)).await {
            Ok(MetaOutcome::Moves(tasks)) if host.leads_metadata() => tasks,
            _ => Vec::new(),
        };
        unsaved.retain(|id, _| tasks.iter().any(|task| &task.id == id));
        for task in &tasks {
            if let Err(error) = step(&host, task, &mut unsaved).await {
                tracing::warn!(task = %task.id, %error, "a message move task's step failed; it is tried again");
            }
        }
        let pause = if tasks.is_empty() { IDLE } else { STEP };
        let shutdown = host.shutdown().event.listen();
        let timer = host.env().sleep(pause);
        futures::pin_mut!(shutdown, timer);
        futures::future::select(shutdown, timer).await;
    }
}

async fn step<H: QueueHost>(host: &Rc<H>, task: &MoveTask, unsaved: &mut HashMap<String, (u64, u64)>) -> Result<(), OpError> {
    let now = host.env().now_ms();
    let (mut moved, saved_at) = unsaved.get(&task.id).copied().unwrap_or((task.moved, now));
    let progress = |moved: u64, status: MoveStatus, failure: Option<String>| {
        MetaChange::Move(MoveChange::Progress { source_id: task.source_id, id: task.id.clone(), moved, status, failure })
    };
    if task.status == MoveStatus::Cancelling {
        host.meta_change(progress(moved, MoveStatus::Cancelled, None)).await?;
        return Ok(());
    }
    if !host.snapshot().by_id.contains_key(&task.source_id) {
        host.meta_change(progress(moved, MoveStatus::Failed, Some("The source queue was deleted.".into()))).await?;
        return Ok(());
    }
    let rate = task.max_per_second.map_or(RATE_DEFAULT, |rate| rate as u64);
    let per_step = (rate * STEP.as_millis() as u64 / 1000).max(1) as usize;
    let shards = host.count();
    let share = per_step.div_ceil(shards).max(1);
    let request = || MoveOut { queue_id: task.source_id, destination: task.destination_arn.clone(), max: share };
    let outcomes = join_all((0..shards).map(|shard| call_on(host, shard, request()))).await;
    let (mut stepped, mut left, mut failure) = (0, 0, None);
    for outcome in outcomes {
        let outcome = outcome??;
        stepped += outcome.moved;
        left += outcome.left;
        failure = failure.or(outcome.unplaced);
    }
    moved += stepped;
    let status = match (&failure, left) {
        (Some(_), _) => MoveStatus::Failed,
        (None, 0) => MoveStatus::Completed,
        (None, _) => MoveStatus::Running,
    };
    if status != MoveStatus::Running || now >= saved_at + PROGRESS_EVERY_MS {
        host.meta_change(progress(moved, status, failure)).await?;
        unsaved.insert(task.id.clone(), (moved, now));
    } else {
        unsaved.insert(task.id.clone(), (moved, saved_at));
    }
    Ok(())
}
