//! What every engine gets from the shard it runs in — its place among the shards, the
//! settings, time and files (`Env`), the shutdown state, the current metadata snapshot,
//! and metadata changes — as the `Host` trait. Each engine adds what it needs of its own
//! (`queue::QueueHost`, `stream::StreamHost`, `topic::TopicHost`: its state and its calls to
//! other shards), and its operations are written against those traits, not against the
//! shard: `crate::shard` implements them for production, and a simulator can too.

use std::rc::Rc;
use std::sync::Arc;

use sluice_protocol::OpError;

use crate::catalog::current::Current;
use crate::catalog::{MetaChange, MetaOutcome, Snapshot};
use crate::config::Config;
use crate::env::Env;
use crate::runtime::ShutdownState;

// Shard-local futures, never sent between threads: no `Send` bound is wanted.
#[allow(async_fn_in_trait)]
pub trait Host: Sized + 'static {
    /// This shard's index.
    fn id(&self) -> usize;
    /// How many shards there are.
    fn count(&self) -> usize;
    fn config(&self) -> &Config;
    fn env(&self) -> &Env;
    fn shutdown(&self) -> &ShutdownState;
    /// The metadata snapshot this shard serves from.
    fn catalog(&self) -> &Current;
    fn snapshot(&self) -> Arc<Snapshot> {
        self.catalog().get()
    }
    /// Runs a metadata change on shard 0 and returns once every shard has the snapshot it made.
    async fn meta_change(self: &Rc<Self>, change: MetaChange) -> Result<MetaOutcome, OpError>;
}
