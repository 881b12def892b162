//! One shard's life from start to stop, front ends included: the shard opens (`shard::open`),
//! its binary-protocol and HTTP listeners serve until shutdown, and the shard finishes
//! (`shard::finish`). The shard knows no front end; the front ends know the shard; this
//! module, called by `runtime::run` on every core, puts them together.

use crate::runtime::ShardStart;
use crate::shard::ShardMessage;

pub async fn shard_main(start: ShardStart<ShardMessage>) -> anyhow::Result<()> {
    let ShardStart { config, mesh, addr, http_addr, metrics_addr, ready, drained } = start;
    let shard = crate::shard::open(config, mesh).await?;
    let id = shard.id;
    if id == 0 && shard.config.node_id.is_some() {
        let catalog = std::rc::Rc::new(crate::shard::meta::ShardCatalog(std::rc::Rc::downgrade(&shard)));
        let node = crate::cluster::start(&shard.config, shard.env.clone(), catalog).await?;
        let _ = shard.cluster.set(node);
    }
    let listener = glommio::net::TcpListener::bind(addr).map_err(|e| anyhow::anyhow!("shard {id} cannot listen on {addr}: {e}"))?;
    if let Some(http_addr) = http_addr {
        let http_listener = glommio::net::TcpListener::bind(http_addr)
            .map_err(|e| anyhow::anyhow!("shard {id} cannot listen for HTTP on {http_addr}: {e}"))?;
        glommio::spawn_local(crate::gateway::accept_loop(shard.clone(), http_listener)).detach();
    }
    if let Some(metrics_addr) = metrics_addr {
        let metrics_listener = glommio::net::TcpListener::bind(metrics_addr)
            .map_err(|e| anyhow::anyhow!("shard {id} cannot listen for metrics on {metrics_addr}: {e}"))?;
        glommio::spawn_local(crate::gateway::metrics_accept_loop(shard.clone(), metrics_listener)).detach();
    }
    let _ = ready.send(Ok(()));
    tracing::debug!(shard = id, %addr, "listening");

    crate::net::accept_loop(shard.clone(), listener).await;
    if let Some(node) = shard.cluster.get() {
        node.stop().await;
    }
    crate::shard::finish(shard, drained).await;
    Ok(())
}
