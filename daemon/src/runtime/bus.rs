//! Cross-shard messaging over glommio's channel mesh, generic over what is sent.
//!
//! A call (`C`) goes to the shard that owns what it touches and comes back as an answer
//! (`A`) matched by a correlation id; the answer is resolved on the shard that asked.
//! Notices (`N`) are one-way. A shard's pump, which reads its peers' channels, never awaits
//! a send, so two shards calling each other can never deadlock on full channels. The bus
//! knows no engine: the dispatch module (`crate::shard`) names what its calls, answers and
//! notices are.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;

use futures::channel::oneshot;
use glommio::channels::channel_mesh::Senders;
use sluice_protocol::{ErrorCode, OpError};

/// Messages in flight per ordered pair of shards before a sender waits.
pub const MESH_CHANNEL_CAPACITY_MAX: usize = 1024;

/// What travels between two shards.
#[derive(Debug)]
pub enum Envelope<C, A, N> {
    Call { from: usize, corr: u64, call: C },
    Answer { corr: u64, answer: A },
    Notice(N),
}

/// This shard's end of the mesh.
pub struct Bus<C: Send, A: Send, N: Send> {
    senders: Senders<Envelope<C, A, N>>,
    next_corr: Cell<u64>,
    pending: RefCell<HashMap<u64, oneshot::Sender<A>>>,
}

impl<C: Send, A: Send, N: Send> Bus<C, A, N> {
    pub fn new(senders: Senders<Envelope<C, A, N>>) -> Self {
        Bus { senders, next_corr: Cell::new(1), pending: RefCell::new(HashMap::new()) }
    }

    pub fn shard_id(&self) -> usize {
        self.senders.peer_id()
    }

    pub fn shard_count(&self) -> usize {
        self.senders.nr_consumers()
    }

    /// Calls sent that await their answer.
    pub fn pending(&self) -> usize {
        self.pending.borrow().len()
    }

    /// Sends `call` to shard `to` and waits for its answer. `to` must not be this shard.
    pub async fn call(&self, to: usize, call: C) -> Result<A, OpError> {
        let corr = self.next_corr.get();
        self.next_corr.set(corr + 1);
        let (reply, answer) = oneshot::channel();
        self.pending.borrow_mut().insert(corr, reply);
        let message = Envelope::Call { from: self.shard_id(), corr, call };
        if self.senders.send_to(to, message).await.is_err() {
            self.pending.borrow_mut().remove(&corr);
            return Err(OpError::new(ErrorCode::ServiceUnavailable, format!("shard {to} is not reachable")));
        }
        answer.await.map_err(|_| OpError::new(ErrorCode::ServiceUnavailable, format!("shard {to} dropped the request")))
    }

    /// Sends an answer back to the shard that called.
    pub async fn answer(&self, to: usize, corr: u64, answer: A) {
        // A failed send means that shard is gone (shutting down); nobody waits for this answer.
        let _ = self.senders.send_to(to, Envelope::Answer { corr, answer }).await;
    }

    /// Fire-and-forget notices; dropped only if the peer is gone.
    pub async fn notify(&self, to: usize, notice: N) {
        let _ = self.senders.send_to(to, Envelope::Notice(notice)).await;
    }

    /// Resolves a pending call with the answer that came back.
    pub fn resolve(&self, corr: u64, answer: A) {
        if let Some(reply) = self.pending.borrow_mut().remove(&corr) {
            let _ = reply.send(answer);
        }
    }
}
