//! What one shard asks of another's topic engine.

use sluice_protocol::{OpError, PublishEntry, PublishResult};

use crate::runtime::calls::calls;

calls! { TopicCall, TopicAnswer;
    /// Publish to the FIFO topic this shard owns: one outcome per entry, once delivered.
    PublishFifo => Result<Vec<Result<PublishResult, OpError>>, OpError>,
}

#[derive(Debug)]
pub struct PublishFifo {
    pub topic: String,
    /// Checked by the shard that took the request (`topic::fifo::check_entry`), and copied
    /// out of its frame.
    pub entries: Vec<PublishEntry>,
}
