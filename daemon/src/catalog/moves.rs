//! Message move tasks (SQS's dead-letter redrive): which tasks each dead-letter queue has, the
//! last ten of them, with their progress as last recorded. The catalog keeps them so that any
//! shard answers ListMessageMoveTasks and a restart resumes a running task; the moving itself
//! is the queue engine's (`queue::redrive`), on shard 0.

use std::collections::BTreeMap;
use std::sync::Arc;

use base64::Engine as _;
use serde_json::{json, Value};
use sluice_protocol::{ErrorCode, MoveTaskDescription, OpError};

/// Tasks a queue keeps (the most recent).
pub const TASKS_KEPT: usize = 10;
/// The most MaxNumberOfMessagesPerSecond may ask.
pub const RATE_MAX: i32 = 500;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MoveStatus {
    Running,
    Completed,
    Cancelling,
    Cancelled,
    Failed,
}

impl MoveStatus {
    pub fn name(self) -> &'static str {
        match self {
            MoveStatus::Running => "RUNNING",
            MoveStatus::Completed => "COMPLETED",
            MoveStatus::Cancelling => "CANCELLING",
            MoveStatus::Cancelled => "CANCELLED",
            MoveStatus::Failed => "FAILED",
        }
    }

    fn parse(name: &str) -> Option<MoveStatus> {
        [MoveStatus::Running, MoveStatus::Completed, MoveStatus::Cancelling, MoveStatus::Cancelled, MoveStatus::Failed]
            .into_iter()
            .find(|status| status.name() == name)
    }

    /// Whether the task still has work (a cancelling one stops at its next step).
    pub fn active(self) -> bool {
        matches!(self, MoveStatus::Running | MoveStatus::Cancelling)
    }
}

#[derive(Debug, Clone)]
pub struct MoveTask {
    pub id: String,
    /// The dead-letter queue moved from.
    pub source_id: u64,
    pub source_arn: String,
    /// `None`: each message back to the queue it came from.
    pub destination_arn: Option<String>,
    pub max_per_second: Option<i32>,
    pub status: MoveStatus,
    pub moved: u64,
    pub to_move: u64,
    pub failure: Option<String>,
    pub started_ms: u64,
}

impl MoveTask {
    /// The handle clients hold (as SQS's: base64 of JSON naming the task and its source).
    pub fn handle(&self) -> String {
        let text = json!({ "taskId": self.id, "sourceArn": self.source_arn }).to_string();
        base64::engine::general_purpose::STANDARD.encode(text)
    }

    pub fn describe(&self) -> MoveTaskDescription {
        MoveTaskDescription {
            task_handle: (self.status == MoveStatus::Running).then(|| self.handle()),
            status: self.status.name().to_owned(),
            source_arn: self.source_arn.clone(),
            destination_arn: self.destination_arn.clone(),
            max_per_second: self.max_per_second,
            moved: self.moved as i64,
            to_move: self.to_move as i64,
            failure_reason: self.failure.clone(),
            started_ms: self.started_ms,
        }
    }
}

/// (task id, source ARN) a handle names.
pub fn parse_handle(handle: &str) -> Result<(String, String), OpError> {
    let invalid = || OpError::new(ErrorCode::ResourceNotFound, "The task handle is not valid or the task does not exist.");
    let text = base64::engine::general_purpose::STANDARD.decode(handle).map_err(|_| invalid())?;
    let value: Value = serde_json::from_slice(&text).map_err(|_| invalid())?;
    let id = value["taskId"].as_str().ok_or_else(invalid)?.to_owned();
    let source = value["sourceArn"].as_str().ok_or_else(invalid)?.to_owned();
    Ok((id, source))
}

/// Every queue's tasks, by source queue id, the most recent last.
pub type Moves = BTreeMap<u64, Vec<Arc<MoveTask>>>;

/// A change to the tasks; applied on shard 0.
#[derive(Debug, Clone)]
pub enum MoveChange {
    Start(MoveTask),
    /// Progress of a task, and (unless still running) how it ended.
    Progress {
        source_id: u64,
        id: String,
        moved: u64,
        status: MoveStatus,
        failure: Option<String>,
    },
    Cancel {
        source_id: u64,
        id: String,
    },
}

/// Applies a change; answers the task.
pub fn apply(moves: &mut Moves, change: MoveChange) -> Result<Arc<MoveTask>, OpError> {
    match change {
        MoveChange::Start(task) => {
            let tasks = moves.entry(task.source_id).or_default();
            if tasks.iter().any(|other| other.status.active()) {
                return Err(OpError::new(
                    ErrorCode::UnsupportedOperation,
                    "There is already a task running on this queue: cancel it or wait for it to end.",
                ));
            }
            let task = Arc::new(task);
            tasks.push(task.clone());
            if tasks.len() > TASKS_KEPT {
                tasks.remove(0);
            }
            Ok(task)
        }
        MoveChange::Progress { source_id, id, moved, status, failure } => {
            let task = find(moves, source_id, &id)?;
            let mut next = (**task).clone();
            next.moved = moved;
            // A cancelled task's last step reports Running: it ends cancelled.
            next.status = match (next.status, status) {
                (MoveStatus::Cancelling, MoveStatus::Running) => MoveStatus::Cancelling,
                (MoveStatus::Cancelling, MoveStatus::Completed) => MoveStatus::Cancelled,
                (_, status) => status,
            };
            next.failure = failure;
            Ok(put(moves, source_id, next))
        }
        MoveChange::Cancel { source_id, id } => {
            let task = find(moves, source_id, &id)?;
            if task.status != MoveStatus::Running {
                return Err(OpError::new(ErrorCode::ResourceNotFound, "Only a running task can be cancelled."));
            }
            let mut next = (**task).clone();
            next.status = MoveStatus::Cancelling;
            Ok(put(moves, source_id, next))
        }
    }
}

fn find<'a>(moves: &'a Moves, source_id: u64, id: &str) -> Result<&'a Arc<MoveTask>, OpError> {
    moves
        .get(&source_id)
        .and_then(|tasks| tasks.iter().find(|task| task.id == id))
        .ok_or_else(|| OpError::new(ErrorCode::ResourceNotFound, "The task does not exist."))
}

fn put(moves: &mut Moves, source_id: u64, task: MoveTask) -> Arc<MoveTask> {
    let task = Arc::new(task);
    if let Some(slot) = moves.get_mut(&source_id).and_then(|tasks| tasks.iter_mut().find(|old| old.id == task.id)) {
        *slot = task.clone();
    }
    task
}

/// The metadata file's `moves` section.
pub fn to_json(moves: &Moves) -> Value {
    let tasks: Vec<Value> = moves
        .values()
        .flatten()
        .map(|task| {
            json!({
                "id": task.id, "source_id": task.source_id, "source_arn": task.source_arn,
                "destination_arn": task.destination_arn, "max_per_second": task.max_per_second,
                "status": task.status.name(), "moved": task.moved, "to_move": task.to_move,
                "failure": task.failure, "started_ms": task.started_ms,
            })
        })
        .collect();
    json!({ "tasks": tasks })
}

/// Reads the `moves` section back (from disk: checked); tasks of queues that no longer exist go.
pub fn from_json(value: &Value, exists: impl Fn(u64) -> bool) -> Result<Moves, String> {
    let mut moves = Moves::new();
    if value.is_null() {
        return Ok(moves);
    }
    for item in value["tasks"].as_array().ok_or("moves.tasks is not a list")? {
        let text = |field: &str| item[field].as_str().map(str::to_owned).ok_or_else(|| format!("a move task's {field} is not text"));
        let number = |field: &str| item[field].as_u64().ok_or_else(|| format!("a move task's {field} is not a number"));
        let source_id = number("source_id")?;
        if !exists(source_id) {
            continue;
        }
        let status = text("status")?;
        let task = MoveTask {
            id: text("id")?,
            source_id,
            source_arn: text("source_arn")?,
            destination_arn: item["destination_arn"].as_str().map(str::to_owned),
            max_per_second: item["max_per_second"].as_i64().map(|rate| rate as i32),
            status: MoveStatus::parse(&status).ok_or_else(|| format!("a move task has an unknown status {status:?}"))?,
            moved: number("moved")?,
            to_move: number("to_move")?,
            failure: item["failure"].as_str().map(str::to_owned),
            started_ms: number("started_ms")?,
        };
        moves.entry(source_id).or_default().push(Arc::new(task));
    }
    Ok(moves)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn task(id: &str) -> MoveTask {
        MoveTask {
            id: id.into(),
            source_id: 7,
            source_arn: "arn:aws:sqs:us-east-1:000000000000:dlq".into(),
            destination_arn: None,
            max_per_second: None,
            status: MoveStatus::Running,
            moved: 0,
            to_move: 5,
            failure: None,
            started_ms: 1,
        }
    }

    #[test]
    fn one_active_task_per_queue_and_a_cancelled_one_ends_cancelled() {
        let mut moves = Moves::new();
        let first = apply(&mut moves, MoveChange::Start(task("a"))).unwrap();
        assert_eq!(parse_handle(&first.handle()).unwrap(), ("a".to_owned(), first.source_arn.clone()));
        assert!(apply(&mut moves, MoveChange::Start(task("b"))).is_err());
        apply(&mut moves, MoveChange::Cancel { source_id: 7, id: "a".into() }).unwrap();
        let progress = MoveChange::Progress { source_id: 7, id: "a".into(), moved: 2, status: MoveStatus::Running, failure: None };
        assert_eq!(apply(&mut moves, progress).unwrap().status, MoveStatus::Cancelling);
        let done = MoveChange::Progress { source_id: 7, id: "a".into(), moved: 2, status: MoveStatus::Completed, failure: None };
        assert_eq!(apply(&mut moves, done).unwrap().status, MoveStatus::Cancelled);
        apply(&mut moves, MoveChange::Start(task("b"))).unwrap();
        let back = from_json(&to_json(&moves), |_| true).unwrap();
        assert_eq!(back[&7].len(), 2);
        assert_eq!(back[&7][0].status, MoveStatus::Cancelled);
        assert!(from_json(&to_json(&moves), |_| false).unwrap().is_empty());
    }
}
