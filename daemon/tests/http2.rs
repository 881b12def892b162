//! HTTP/2 on the gateway against clients that misbehave, with the `h2` crate as the client:
//! the server's SETTINGS say its limits; a client that opens streams and resets them at once
//! ("rapid reset", CVE-2023-44487) is sent GOAWAY and closed while others are served; headers
//! beyond the limit are refused. The well-behaved path (the JavaScript SDK) is in aws_clients.rs.

use std::time::Duration;

use sluice_testkit::Daemon;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
}

async fn h2_client(daemon: &Daemon) -> h2::client::SendRequest<bytes::Bytes> {
    let tcp = tokio::net::TcpStream::connect(daemon.http_addr.unwrap()).await.unwrap();
    let (client, connection) = h2::client::handshake(tcp).await.expect("an HTTP/2 handshake (prior knowledge)");
    tokio::spawn(async move {
        let _ = connection.await;
    });
    client.ready().await.unwrap()
}

fn health() -> http::Request<()> {
    http::Request::builder().method("GET").uri("http://127.0.0.1/health").body(()).unwrap()
}

async fn served(client: &mut h2::client::SendRequest<bytes::Bytes>) -> http::StatusCode {
    let (response, _) = client.send_request(health(), true).unwrap();
    response.await.unwrap().status()
}

#[test]
fn the_server_states_its_limits_and_serves_many_streams_on_one_connection() {
    let daemon = Daemon::start();
    runtime().block_on(async {
        let mut client = h2_client(&daemon).await;
        // The server's SETTINGS are in once a first answer is.
        assert_eq!(served(&mut client).await, 200);
        client = client.ready().await.unwrap();
        assert_eq!(client.current_max_send_streams(), 100, "the server's SETTINGS_MAX_CONCURRENT_STREAMS");
        let mut waiting = Vec::new();
        for _ in 0..50 {
            let (response, _) = client.send_request(health(), true).unwrap();
            waiting.push(response);
            client = client.ready().await.unwrap();
        }
        for response in waiting {
            assert_eq!(response.await.unwrap().status(), 200);
        }
    });
}

#[test]
fn a_rapid_reset_client_is_sent_away_and_others_are_still_served() {
    let daemon = Daemon::start();
    runtime().block_on(async {
        let mut attacker = h2_client(&daemon).await;
        let mut bystander = h2_client(&daemon).await;
        // Streams opened and reset in one burst, as the attack sends them.
        let mut refused_after = None;
        for round in 0..100 {
            for _ in 0..100 {
                match attacker.send_request(health(), false) {
                    Ok((_, mut stream)) => stream.send_reset(h2::Reason::CANCEL),
                    Err(_) => break,
                }
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
            match tokio::time::timeout(Duration::from_secs(5), attacker.clone().ready()).await {
                Ok(Ok(ready)) => attacker = ready,
                _ => {
                    refused_after = Some(round * 100);
                    break;
                }
            }
        }
        let opened = refused_after.expect("10,000 streams opened and reset in bursts were all taken");
        assert!(opened < 1_000, "the connection was closed only after {opened} resets");
        assert_eq!(served(&mut bystander).await, 200, "another connection is still served");
    });
}

#[test]
fn headers_beyond_the_limit_are_refused() {
    let daemon = Daemon::start();
    runtime().block_on(async {
        let mut client = h2_client(&daemon).await;
        let big = http::Request::builder()
            .method("GET")
            .uri("http://127.0.0.1/health")
            .header("x-padding", "a".repeat(100 * 1024))
            .body(())
            .unwrap();
        let outcome = match client.send_request(big, true) {
            Ok((response, _)) => response.await.map(|r| r.status()),
            Err(error) => Err(error),
        };
        assert!(!matches!(outcome, Ok(status) if status == 200), "100 KiB of headers must not be served: {outcome:?}");
        // The server is still there for the next connection.
        let mut next = h2_client(&daemon).await;
        assert_eq!(served(&mut next).await, 200);
    });
}
