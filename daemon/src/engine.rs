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
use crate::kms::at_rest::{Keyring, SealSpec, Sealing};
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
    /// This shard's data keys: what seals and opens encrypted records (`kms::at_rest`).
    fn keyring(&self) -> &Keyring;
    /// This shard's counters (`metrics`).
    fn metrics(&self) -> &crate::metrics::Metrics;
    /// Whether this node runs the background work that changes metadata (message moves,
    /// ON_DEMAND scaling, alarms): always on a single node; in a cluster, on the metadata
    /// group's leader only.
    fn leads_metadata(&self) -> bool {
        true
    }
    /// Runs a metadata change on shard 0 and returns once every shard has the snapshot it made.
    async fn meta_change(self: &Rc<Self>, change: MetaChange) -> Result<MetaOutcome, OpError>;
}

/// Before new data is sealed for a resource (`spec` finds its `SealSpec` in a snapshot): an
/// AWS-managed key or the SSE-SQS key not made yet is made now (a change on shard 0, as AWS
/// makes them on first use), and a key that is disabled, pending deletion or missing refuses
/// the write with KMS's error.
pub async fn sealable<H: Host>(host: &Rc<H>, spec: impl Fn(&Snapshot) -> Option<SealSpec>) -> Result<(), OpError> {
    let Some(found) = spec(&host.snapshot()) else { return Ok(()) };
    if let Sealing::Unmade(change) = &found.sealing {
        host.meta_change(MetaChange::Key(change.clone())).await?;
        return spec(&host.snapshot()).map_or(Ok(()), |spec| spec.writable().map(|_| ()));
    }
    found.writable().map(|_| ())
}

/// Before sealed data is handed out: a resource whose KMS key is disabled, pending deletion or
/// gone answers KMS's error, as reads need `kms:Decrypt` on AWS. (The keys services own for
/// SSE-SQS are always usable.)
pub fn unsealable(spec: Option<&SealSpec>) -> Result<(), OpError> {
    match spec.map(|spec| &spec.sealing) {
        Some(Sealing::Key(key)) => key.usable(),
        Some(Sealing::Missing(_)) => spec.expect("a spec").writable().map(|_| ()),
        _ => Ok(()),
    }
}
