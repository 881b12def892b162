//! Hostile and broken input: each gets a typed error or a closed connection,
//! the daemon never panics, and other connections carry on.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use bytes::Bytes;
use sluice_protocol::limits::PROTOCOL_VERSION;
use sluice_protocol::{decode_response, Encoder, ErrorCode, Op, Request};
use sluice_testkit::*;

fn raw(daemon: &Daemon) -> TcpStream {
    let stream = TcpStream::connect(daemon.addr).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    stream
}

fn hello() -> Vec<u8> {
    Encoder::new().request(&Request { id: 1, op: Op::Hello { protocol_version: PROTOCOL_VERSION, client_name: "raw".into() } }).to_vec()
}

/// Reads one response frame; `None` when the server closed the connection.
fn read_response(stream: &mut TcpStream) -> Option<(u64, sluice_protocol::Response)> {
    let mut prefix = [0u8; 4];
    stream.read_exact(&mut prefix).ok()?;
    let len = u32::from_le_bytes(prefix) as usize;
    let mut frame = prefix.to_vec();
    frame.resize(4 + len, 0);
    stream.read_exact(&mut frame[4..]).ok()?;
    Some(decode_response(&Bytes::from(frame)).expect("server frames are valid"))
}

fn assert_closed(stream: &mut TcpStream) {
    let mut rest = Vec::new();
    // Anything left is at most an error frame; then EOF (or a reset).
    let _ = stream.read_to_end(&mut rest);
}

/// The daemon still serves a fresh, well-behaved client.
fn assert_healthy(daemon: &mut Daemon) {
    assert!(daemon.is_running(), "sluiced exited");
    let c = daemon.client();
    c.run(c.client().create_queue("still-alive", vec![], vec![])).unwrap();
    c.run(c.client().send_message("still-alive", "ok")).unwrap();
}

#[test]
fn an_oversized_length_prefix_closes_only_that_connection() {
    let mut daemon = Daemon::start_with(&["--frame-bytes-max", "65536"]);
    let bystander = daemon.client();
    bystander.run(bystander.client().create_queue("q", vec![], vec![])).unwrap();
    let mut stream = raw(&daemon);
    stream.write_all(&hello()).unwrap();
    assert!(read_response(&mut stream).unwrap().1.is_ok());
    stream.write_all(&u32::MAX.to_le_bytes()).unwrap();
    let (_, response) = read_response(&mut stream).expect("an error frame before closing");
    assert_eq!(response.unwrap_err().code, ErrorCode::MalformedRequest);
    assert_closed(&mut stream);
    bystander.run(bystander.client().send_message("q", "unaffected")).unwrap();
    assert_healthy(&mut daemon);
}

#[test]
fn garbage_bytes_get_an_error_and_a_closed_connection() {
    let mut daemon = Daemon::start();
    let mut stream = raw(&daemon);
    let mut garbage = 64u32.to_le_bytes().to_vec();
    garbage.extend((0..64).map(|i| (i * 37 + 11) as u8));
    stream.write_all(&garbage).unwrap();
    if let Some((_, response)) = read_response(&mut stream) {
        assert_eq!(response.unwrap_err().code, ErrorCode::MalformedRequest);
    }
    assert_closed(&mut stream);
    assert_healthy(&mut daemon);
}

#[test]
fn a_truncated_frame_then_hang_up_harms_nothing() {
    let mut daemon = Daemon::start();
    let mut stream = raw(&daemon);
    let frame = hello();
    stream.write_all(&frame[..frame.len() / 2]).unwrap();
    drop(stream);
    // A frame that announces more than it sends, then stalls: the daemon waits on it without harm.
    let mut stalled = raw(&daemon);
    stalled.write_all(&1000u32.to_le_bytes()).unwrap();
    stalled.write_all(&[0u8; 10]).unwrap();
    assert_healthy(&mut daemon);
    drop(stalled);
    assert_healthy(&mut daemon);
}

#[test]
fn the_first_request_must_be_hello_with_our_version() {
    let mut daemon = Daemon::start();
    let mut stream = raw(&daemon);
    let frame =
        Encoder::new().request(&Request { id: 5, op: Op::ListQueues { prefix: None, max_results: None, next_token: None } }).to_vec();
    stream.write_all(&frame).unwrap();
    let (id, response) = read_response(&mut stream).unwrap();
    assert_eq!(id, 5);
    assert_eq!(response.unwrap_err().code, ErrorCode::MalformedRequest);
    assert_closed(&mut stream);

    let mut stream = raw(&daemon);
    let old = Encoder::new().request(&Request { id: 6, op: Op::Hello { protocol_version: 999, client_name: "future".into() } }).to_vec();
    stream.write_all(&old).unwrap();
    assert_eq!(read_response(&mut stream).unwrap().1.unwrap_err().code, ErrorCode::MalformedRequest);
    assert_closed(&mut stream);
    assert_healthy(&mut daemon);
}

#[test]
fn an_unknown_operation_gets_invalid_action_and_the_connection_stays_open() {
    let mut daemon = Daemon::start();
    let mut stream = raw(&daemon);
    stream.write_all(&hello()).unwrap();
    assert!(read_response(&mut stream).unwrap().1.is_ok());
    // A valid Request whose union type this server does not know (a newer client's op).
    let mut frame = Encoder::new().request(&Request { id: 9, op: Op::ListQueueTags { queue: "q".into() } }).to_vec();
    let known = sluice_protocol::generated::sluice::wire::Op::ListQueueTags.0;
    let position = (4..frame.len()).find(|&i| frame[i] == known).expect("union type byte");
    frame[position] = 200;
    stream.write_all(&frame).unwrap();
    let (id, response) = read_response(&mut stream).unwrap();
    assert_eq!(id, 9);
    assert_eq!(response.unwrap_err().code, ErrorCode::InvalidAction);
    // Same connection, next request works.
    let list =
        Encoder::new().request(&Request { id: 10, op: Op::ListQueues { prefix: None, max_results: None, next_token: None } }).to_vec();
    stream.write_all(&list).unwrap();
    let (id, response) = read_response(&mut stream).unwrap();
    assert_eq!(id, 10);
    assert!(response.is_ok());
    assert_healthy(&mut daemon);
}

#[test]
fn out_of_range_values_in_valid_frames_get_typed_errors() {
    let mut daemon = Daemon::start();
    let c = daemon.client();
    c.run(c.client().create_queue("q", vec![], vec![])).unwrap();
    let receive = |max, wait, visibility| sluice_client::ReceiveMessage {
        queue: "q".into(),
        max_messages: Some(max),
        wait_time_seconds: Some(wait),
        visibility_timeout: Some(visibility),
        ..Default::default()
    };
    for request in [receive(i32::MIN, 0, 0), receive(1, i32::MAX, 0), receive(1, 0, i32::MIN)] {
        assert_code(c.run(c.client().receive_message(request)), ErrorCode::InvalidParameterValue);
    }
    assert_code(c.run(c.client().change_message_visibility("q", &"A".repeat(10_000), 0)), ErrorCode::ReceiptHandleIsInvalid);
    assert_code(c.run(c.client().list_queues(None, Some(i32::MAX), None)), ErrorCode::InvalidParameterValue);
    assert_healthy(&mut daemon);
}

#[test]
fn sigterm_answers_waiting_long_polls_and_exits_cleanly() {
    let mut daemon = Daemon::start();
    let c = daemon.client();
    c.run(c.client().create_queue("q", vec![], vec![])).unwrap();
    let client = c.client().clone();
    let poll = std::thread::spawn(move || {
        let request = sluice_client::ReceiveMessage { queue: "q".into(), wait_time_seconds: Some(20), ..Default::default() };
        async_io::block_on(client.receive_message(request))
    });
    // Let the long poll reach the daemon before the signal.
    std::thread::sleep(Duration::from_millis(500));
    let status = daemon.terminate();
    assert!(status.success(), "sluiced exited with {status}");
    // The in-flight long poll was answered (empty), not cut off.
    assert_eq!(poll.join().unwrap().unwrap().len(), 0);
}

#[test]
fn a_tiny_inflight_budget_still_serves_receives() {
    let daemon = Daemon::start_with(&["--connection-inflight-max", "1"]);
    let c = daemon.client();
    c.run(c.client().create_queue("q", vec![], vec![])).unwrap();
    c.run(c.client().send_message("q", "x")).unwrap();
    let request = sluice_client::ReceiveMessage { queue: "q".into(), ..Default::default() };
    assert_eq!(c.run(c.client().receive_message(request)).unwrap().len(), 1);
}

/// Whether the server closed `stream` (EOF or reset) before `read_timeout` of silence.
fn closed_by_server(stream: &mut TcpStream) -> bool {
    let mut byte = [0u8; 1];
    loop {
        match stream.read(&mut byte) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(error) if matches!(error.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => return false,
            Err(_) => return true,
        }
    }
}

#[test]
fn length_prefixes_that_promise_16_mib_hold_kilobytes_not_megabytes() {
    let mut daemon = Daemon::start_with(&["--cores", "1"]);
    let bystander = daemon.client();
    bystander.run(bystander.client().create_queue("q", vec![], vec![])).unwrap();
    let before = daemon.resident_bytes();
    // 500 connections, each greeted, then promising a frame of almost 16 MiB and sending 100 bytes of it.
    let mut hostile = Vec::new();
    for _ in 0..500 {
        let mut stream = raw(&daemon);
        stream.write_all(&hello()).unwrap();
        assert!(read_response(&mut stream).unwrap().1.is_ok());
        stream.write_all(&(16 * 1024 * 1024 - 8u32).to_le_bytes()).unwrap();
        stream.write_all(&[7u8; 100]).unwrap();
        hostile.push(stream);
    }
    // The bystander is served while they wait, and that also lets the daemon read them all.
    for i in 0..20 {
        bystander.run(bystander.client().send_message("q", format!("m{i}"))).unwrap();
    }
    std::thread::sleep(Duration::from_millis(500));
    let grown = daemon.resident_bytes().saturating_sub(before);
    // Allocated as promised, this is 500 × 16 MiB; as bytes arrive, a few KiB each.
    eprintln!("500 half-sent frames: {} KiB", grown >> 10);
    assert!(grown < 64 << 20, "500 half-sent frames took {} MiB", grown >> 20);
    drop(hostile);
    assert_healthy(&mut daemon);
}

#[test]
fn a_connection_that_never_says_hello_is_closed_after_the_deadline() {
    let mut daemon = Daemon::start_with(&["--hello-timeout-seconds", "1"]);
    let mut silent = raw(&daemon);
    assert!(closed_by_server(&mut silent), "a connection without Hello stayed open past the deadline");
    // A byte at a time does not extend the deadline either.
    let mut trickle = raw(&daemon);
    trickle.set_read_timeout(Some(Duration::from_millis(300))).unwrap();
    let mut closed = false;
    for _ in 0..40 {
        if trickle.write_all(&[1]).is_err() || closed_by_server(&mut trickle) {
            closed = true;
            break;
        }
    }
    assert!(closed, "a trickling connection without Hello stayed open");
    assert_healthy(&mut daemon);
}

#[test]
fn idle_connections_are_closed_but_long_polls_are_not_idle() {
    let mut daemon = Daemon::start_with(&["--idle-timeout-seconds", "1"]);
    let c = daemon.client();
    c.run(c.client().create_queue("q", vec![], vec![])).unwrap();
    // A long poll of 3 s outlives the idle timeout: it is not idle, and it is answered.
    let receive = sluice_client::ReceiveMessage { queue: "q".into(), wait_time_seconds: Some(3), ..Default::default() };
    assert!(c.run(c.client().receive_message(receive)).unwrap().is_empty());
    // A greeted connection that then says nothing is closed.
    let mut idle = raw(&daemon);
    idle.write_all(&hello()).unwrap();
    assert!(read_response(&mut idle).unwrap().1.is_ok());
    assert!(closed_by_server(&mut idle), "an idle connection stayed open past the idle timeout");
    assert_healthy(&mut daemon);
}

#[test]
fn connections_past_the_cap_are_refused_with_a_reason_and_the_others_are_served() {
    let mut daemon = Daemon::start_with(&["--cores", "1", "--connections-max", "3", "--http-listen", "off"]);
    let first = daemon.client();
    first.run(first.client().create_queue("q", vec![], vec![])).unwrap();
    let _second = daemon.client();
    let _third = daemon.client();
    let mut fourth = raw(&daemon);
    let _ = fourth.write_all(&hello());
    let (_, refusal) = read_response(&mut fourth).expect("a refusal before the close");
    let refusal = refusal.unwrap_err();
    assert_eq!(refusal.code, ErrorCode::ServiceUnavailable);
    assert!(refusal.message.contains("--connections-max"), "{refusal:?}");
    assert_closed(&mut fourth);
    // Those already connected are served.
    first.run(first.client().send_message("q", "still served")).unwrap();
    // Once one leaves, a new connection is taken again.
    drop(_third);
    let mut accepted = false;
    for _ in 0..50 {
        std::thread::sleep(Duration::from_millis(100));
        if let Ok(client) = sluice_client::blocking::BlockingClient::connect(daemon.addr, "late") {
            let _ = client;
            accepted = true;
            break;
        }
    }
    assert!(accepted, "no connection was taken after one closed");
    assert!(daemon.is_running());
}

#[test]
fn pipelined_reads_that_are_never_read_back_hold_one_answer_budget() {
    let mut daemon = Daemon::start_with(&["--cores", "1"]);
    let c = daemon.client();
    c.run(c.client().create_stream("big", 1)).unwrap();
    for batch in 0..3 {
        let records = (0..5)
            .map(|i| sluice_client::PutRecordsEntry {
                data: Bytes::from(vec![b'a' + (batch * 5 + i) as u8 % 26; 900_000]),
                partition_key: "k".into(),
                explicit_hash_key: None,
            })
            .collect();
        for result in c.run(c.client().put_records("big", records)).unwrap() {
            assert!(matches!(result, sluice_client::PutRecordResult::Put { .. }), "{result:?}");
        }
    }
    let shard = c.run(c.client().describe_stream("big")).unwrap().shards[0].shard_id.clone();
    let iterator = c.run(c.client().get_shard_iterator("big", &shard, sluice_client::StartingPosition::new("TRIM_HORIZON"))).unwrap();
    // Each GetRecords answers about 10 MiB; 300 of them pipelined on a connection that never reads.
    let before = daemon.resident_bytes();
    let mut greedy = raw(&daemon);
    greedy.write_all(&hello()).unwrap();
    assert!(read_response(&mut greedy).unwrap().1.is_ok());
    let mut encoder = Encoder::new();
    let mut frames = Vec::new();
    for id in 0..300u64 {
        frames.extend_from_slice(
            encoder.request(&Request { id: 10 + id, op: Op::GetRecords { iterator: iterator.clone(), limit: None, stream_arn: None } }),
        );
    }
    greedy.write_all(&frames).unwrap();
    // Meanwhile another client is served, and the daemon's memory stays bounded.
    let mut peak = 0;
    for i in 0..20 {
        c.run(c.client().put_record("big", "k", format!("small {i}"))).unwrap();
        let small = c.run(c.client().get_records(&iterator, Some(1))).unwrap();
        assert_eq!(small.records.len(), 1);
        peak = peak.max(daemon.resident_bytes().saturating_sub(before));
        std::thread::sleep(Duration::from_millis(100));
    }
    eprintln!("300 unread GetRecords of ~10 MiB: resident grew by at most {} MiB", peak >> 20);
    assert!(peak < 150 << 20, "300 unread GetRecords answers took {} MiB", peak >> 20);
    drop(greedy);
    assert_healthy(&mut daemon);
}
