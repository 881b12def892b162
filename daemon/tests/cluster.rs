//! Three `sluiced` processes in a cluster (`--node-id`, `--cluster-peers`), each with its own
//! ports and data directory, share one catalog through the metadata Raft group: a change
//! made through any node is answered once committed and applied there, and reaches the
//! others; the leader killed with SIGKILL, the survivors elect another and take changes; a
//! node away while changes are made catches up when it comes back; every change survives
//! restarts of every node, with and without changes between; a node away past a snapshot is
//! sent the whole catalog. Concurrent conflicting changes through two nodes: exactly one wins.

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::time::{Duration, Instant};

use sluice_client::*;
use sluice_testkit::*;

/// Free ports on loopback for the nodes' cluster listeners.
fn free_ports(count: usize) -> Vec<u16> {
    let listeners: Vec<std::net::TcpListener> = (0..count).map(|_| std::net::TcpListener::bind("127.0.0.1:0").unwrap()).collect();
    listeners.iter().map(|listener| listener.local_addr().unwrap().port()).collect()
}

struct Cluster {
    /// Node i+1 at index i; `None` while stopped.
    nodes: Vec<Daemon>,
    _dir: tempfile::TempDir,
}

fn start_node(dir: &Path, id: usize, peers: &str, extra: &[&str]) -> Daemon {
    let mut args = vec!["--node-id".to_owned(), id.to_string(), "--cluster-peers".to_owned(), peers.to_owned()];
    args.extend(extra.iter().map(|arg| arg.to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    Daemon::start_in(&dir.join(format!("node-{id}")), &args)
}

impl Cluster {
    fn start(count: usize) -> Cluster {
        Cluster::start_with(count, &[])
    }

    fn start_with(count: usize, extra: &[&str]) -> Cluster {
        let dir = tempfile::tempdir().unwrap();
        let peers: Vec<String> = free_ports(count).iter().enumerate().map(|(i, port)| format!("{}=127.0.0.1:{port}", i + 1)).collect();
        let peers = peers.join(",");
        let nodes = (1..=count).map(|id| start_node(dir.path(), id, &peers, extra)).collect();
        Cluster { nodes, _dir: dir }
    }

    fn node(&self, id: usize) -> &Daemon {
        &self.nodes[id - 1]
    }

    fn node_mut(&mut self, id: usize) -> &mut Daemon {
        &mut self.nodes[id - 1]
    }
}

/// The gateway's `/metrics` of a node.
fn scrape(addr: SocketAddr) -> String {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.write_all(format!("GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes()).unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    response
}

fn sample(text: &str, series: &str) -> Option<u64> {
    text.lines().find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.parse::<f64>().ok()).map(|value| value as u64)
}

/// The leader as node `id` knows it.
fn leader_seen_by(cluster: &Cluster, id: usize) -> Option<usize> {
    let text = scrape(cluster.node(id).http_addr.unwrap());
    sample(&text, &format!("sluice_cluster_leader{{node=\"{id}\"}}")).filter(|leader| *leader > 0).map(|leader| leader as usize)
}

/// Waits (up to 30 s) until the running nodes `alive` agree on a leader among them.
fn leader(cluster: &Cluster, alive: &[usize]) -> usize {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let seen: BTreeSet<Option<usize>> = alive.iter().map(|id| leader_seen_by(cluster, *id)).collect();
        if let [Some(leader)] = seen.iter().copied().collect::<Vec<_>>()[..] {
            if alive.contains(&leader) {
                return leader;
            }
        }
        assert!(Instant::now() < deadline, "no leader agreed among {alive:?}: {seen:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Runs `attempt` until it is not refused as unavailable (no leader or quorum yet), up to 30 s.
fn until_taken<T: std::fmt::Debug>(mut attempt: impl FnMut() -> Result<T, ClientError>) -> T {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match attempt() {
            Err(ClientError::Server(OpError { code: ErrorCode::ServiceUnavailable, .. })) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(100))
            }
            other => return other.expect("the change is taken"),
        }
    }
}

fn create_queue(node: &Daemon, name: &str) -> String {
    let c = node.client();
    until_taken(|| c.run(c.client().create_queue(name, vec![], vec![])))
}

fn queues(node: &Daemon) -> BTreeSet<String> {
    let c = node.client();
    let (urls, _) = c.run(c.client().list_queues(None, None, None)).unwrap();
    urls.iter().map(|url| url.rsplit('/').next().unwrap().to_owned()).collect()
}

fn names(list: &[&str]) -> BTreeSet<String> {
    list.iter().map(|name| name.to_string()).collect()
}

/// Waits (up to 30 s) until node `id` lists exactly `expected`.
#[track_caller]
fn until_lists(cluster: &Cluster, id: usize, expected: &[&str]) {
    let expected = names(expected);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let listed = queues(cluster.node(id));
        if listed == expected {
            return;
        }
        assert!(Instant::now() < deadline, "node {id} lists {listed:?}, not {expected:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn three_nodes_share_one_catalog_through_a_killed_leader_and_restarts() {
    let mut cluster = Cluster::start(3);
    let first = leader(&cluster, &[1, 2, 3]);

    // Through every node, leader or not: each answers once it has the change itself.
    for id in 1..=3 {
        let name = format!("q-{id}");
        create_queue(cluster.node(id), &name);
        assert!(queues(cluster.node(id)).contains(&name), "node {id} lists the queue it answered for");
    }
    for id in 1..=3 {
        until_lists(&cluster, id, &["q-1", "q-2", "q-3"]);
    }
    // Topics too (one catalog for every engine), made through a node that does not lead.
    let follower = (1..=3).find(|id| *id != first).unwrap();
    let c = cluster.node(follower).client();
    let topic = until_taken(|| c.run(c.client().create_topic("news", vec![], vec![])));
    for id in 1..=3 {
        let c = cluster.node(id).client();
        let deadline = Instant::now() + Duration::from_secs(30);
        while !c.run(c.client().list_topics(None)).unwrap().0.contains(&topic) {
            assert!(Instant::now() < deadline, "node {id} never lists the topic");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    // The leader killed: the others elect one of themselves and take changes.
    cluster.node_mut(first).kill();
    let alive: Vec<usize> = (1..=3).filter(|id| *id != first).collect();
    let second = leader(&cluster, &alive);
    assert_ne!(second, first);
    create_queue(cluster.node(alive[0]), "q-4");
    create_queue(cluster.node(alive[1]), "q-5");
    for id in &alive {
        until_lists(&cluster, *id, &["q-1", "q-2", "q-3", "q-4", "q-5"]);
    }
    // Back from SIGKILL, the old leader catches up, and takes a deletion.
    cluster.node_mut(first).restart();
    until_lists(&cluster, first, &["q-1", "q-2", "q-3", "q-4", "q-5"]);
    let c = cluster.node(first).client();
    let url = c.run(c.client().get_queue_url("q-2")).unwrap();
    until_taken(|| c.run(c.client().delete_queue(&url)));
    for id in 1..=3 {
        until_lists(&cluster, id, &["q-1", "q-3", "q-4", "q-5"]);
    }

    // A node away while changes are made gets them when it is back.
    let away = alive[1];
    cluster.node_mut(away).kill();
    let present = (1..=3).find(|id| *id != away).unwrap();
    create_queue(cluster.node(present), "q-6");
    cluster.node_mut(away).restart();
    until_lists(&cluster, away, &["q-1", "q-3", "q-4", "q-5", "q-6"]);

    // Every node restarted, with no change between, twice: nothing lost, nothing back.
    for _ in 0..2 {
        for id in 1..=3 {
            cluster.node_mut(id).terminate();
        }
        for id in 1..=3 {
            cluster.node_mut(id).restart();
        }
        leader(&cluster, &[1, 2, 3]);
        for id in 1..=3 {
            until_lists(&cluster, id, &["q-1", "q-3", "q-4", "q-5", "q-6"]);
        }
    }
    // And it still takes changes.
    create_queue(cluster.node(2), "q-7");
    for id in 1..=3 {
        until_lists(&cluster, id, &["q-1", "q-3", "q-4", "q-5", "q-6", "q-7"]);
    }
}

#[test]
fn a_node_away_past_a_snapshot_is_sent_the_catalog_whole() {
    // A snapshot every 5 entries, and only 5 kept before it: 40 changes later the entries a
    // node missed are gone from the followers' logs (a leader keeps what a replication may
    // still send), so a follower that becomes leader can only catch it up from a snapshot.
    let mut cluster = Cluster::start_with(3, &["--cluster-snapshot-entries", "5"]);
    leader(&cluster, &[1, 2, 3]);
    create_queue(cluster.node(1), "first");
    until_lists(&cluster, 3, &["first"]);
    cluster.node_mut(3).kill();
    let mut expected: Vec<String> = Vec::new();
    for i in 0..30 {
        let name = format!("made-while-away-{i:02}");
        create_queue(cluster.node(1 + i % 2), &name);
        expected.push(name);
    }
    // A removal travels in the snapshot too.
    let c = cluster.node(2).client();
    let url = c.run(c.client().get_queue_url("first")).unwrap();
    until_taken(|| c.run(c.client().delete_queue(&url)));
    // Ten more through the leader: the other node follows them and purges its log.
    let first_leader = leader(&cluster, &[1, 2]);
    let follower = 3 - first_leader;
    for i in 30..40 {
        let name = format!("made-while-away-{i:02}");
        create_queue(cluster.node(first_leader), &name);
        expected.push(name);
    }
    let expected: Vec<&str> = expected.iter().map(String::as_str).collect();
    until_lists(&cluster, follower, &expected);
    // The leader goes; node 3 comes back: with the follower it makes a majority, the follower
    // leads (its log is the longer), and sends node 3 the catalog whole.
    cluster.node_mut(first_leader).kill();
    cluster.node_mut(3).restart();
    assert_eq!(leader(&cluster, &[follower, 3]), follower);
    until_lists(&cluster, 3, &expected);
    let text = scrape(cluster.node(3).http_addr.unwrap());
    assert_eq!(sample(&text, "sluice_cluster_snapshots_installed_total{node=\"3\"}"), Some(1), "caught up from a snapshot:\n{text}");
    // Started again, it reads the catalog the snapshot gave it from its own disk, and goes on.
    cluster.node_mut(3).restart();
    until_lists(&cluster, 3, &expected);
    cluster.node_mut(first_leader).restart();
    create_queue(cluster.node(3), "after-the-snapshot");
    let mut more = expected.clone();
    more.push("after-the-snapshot");
    for id in 1..=3 {
        until_lists(&cluster, id, &more);
    }
}

#[test]
fn conflicting_changes_through_two_nodes_at_once_end_with_exactly_one_winner() {
    let cluster = Cluster::start(3);
    leader(&cluster, &[1, 2, 3]);
    create_queue(cluster.node(1), "warm-up");
    for round in 0..5 {
        let name = format!("contested-{round}");
        // The same queue with different attributes through nodes 2 and 3 at once: one creates
        // it, the other finds a queue of that name with other attributes.
        let outcomes: Vec<Result<String, ClientError>> = std::thread::scope(|scope| {
            let handles: Vec<_> = [(2usize, "30"), (3, "45")]
                .into_iter()
                .map(|(id, timeout)| {
                    let node = cluster.node(id);
                    let name = name.clone();
                    scope.spawn(move || {
                        let c = node.client();
                        let deadline = Instant::now() + Duration::from_secs(30);
                        loop {
                            match c.run(c.client().create_queue(&name, vec![kv("VisibilityTimeout", timeout)], vec![])) {
                                Err(ClientError::Server(OpError { code: ErrorCode::ServiceUnavailable, .. }))
                                    if Instant::now() < deadline =>
                                {
                                    std::thread::sleep(Duration::from_millis(20))
                                }
                                other => return other,
                            }
                        }
                    })
                })
                .collect();
            handles.into_iter().map(|handle| handle.join().unwrap()).collect()
        });
        let won = outcomes.iter().filter(|outcome| outcome.is_ok()).count();
        assert_eq!(won, 1, "round {round}: {outcomes:?}");
        let lost = outcomes.iter().find_map(|outcome| outcome.as_ref().err()).unwrap();
        assert!(matches!(lost, ClientError::Server(OpError { code: ErrorCode::QueueNameExists, .. })), "round {round}: {lost:?}");
        // Every node ends with the winner's attributes.
        let winner = if outcomes[0].is_ok() { "30" } else { "45" };
        for id in 1..=3 {
            let c = cluster.node(id).client();
            let deadline = Instant::now() + Duration::from_secs(30);
            loop {
                let seen = c.run(c.client().get_queue_url(&name)).ok().and_then(|url| {
                    let attributes = c.run(c.client().get_queue_attributes(&url, &["VisibilityTimeout"])).ok()?;
                    attribute(&attributes, "VisibilityTimeout").map(str::to_owned)
                });
                if seen.as_deref() == Some(winner) {
                    break;
                }
                assert!(Instant::now() < deadline, "node {id} shows {seen:?} for {name}, not {winner}");
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }
}

#[test]
fn cluster_flags_are_checked_before_anything_starts() {
    let dir = tempfile::tempdir().unwrap();
    let (status, stderr) = Daemon::start_failing(dir.path(), &["--node-id", "4", "--cluster-peers", "1=127.0.0.1:1,2=127.0.0.1:2"]);
    assert!(!status.success());
    assert!(stderr.contains("--node-id 4 is not among --cluster-peers"), "{stderr}");
    let (status, stderr) = Daemon::start_failing(dir.path(), &["--node-id", "1"]);
    assert!(!status.success());
    assert!(stderr.contains("--cluster-peers"), "{stderr}");
    let (status, stderr) = Daemon::start_failing(dir.path(), &["--node-id", "1", "--cluster-peers", "1=127.0.0.1:1,2=127.0.0.1:1"]);
    assert!(!status.success());
    assert!(stderr.contains("given to two nodes"), "{stderr}");

    // A single node's data directory with queues in it does not join a cluster as it is.
    let single = tempfile::tempdir().unwrap();
    let mut daemon = Daemon::start_in(single.path(), &[]);
    let c = daemon.client();
    c.run(c.client().create_queue("mine", vec![], vec![])).unwrap();
    drop(c);
    daemon.terminate();
    let port = free_ports(1)[0];
    let (status, stderr) = Daemon::start_failing(single.path(), &["--node-id", "1", "--cluster-peers", &format!("1=127.0.0.1:{port}")]);
    assert!(!status.success());
    assert!(stderr.contains("holds a single node's queues"), "{stderr}");
}
