//! The async client runs on tokio too (through futures-io compat), pipelining requests.

use sluice_client::{Client, ReceiveMessage};
use sluice_testkit::Daemon;
use tokio_util::compat::TokioAsyncReadCompatExt;

#[tokio::test]
async fn client_works_under_tokio() {
    let daemon = Daemon::start();
    let stream = tokio::net::TcpStream::connect(daemon.addr).await.unwrap();
    let (client, driver) = Client::connect(stream.compat(), "tokio-test").await.unwrap();
    let driver = tokio::spawn(driver.run());
    client.create_queue("t", vec![], vec![]).await.unwrap();
    let sends: Vec<_> = (0..100)
        .map(|i| {
            let client = client.clone();
            tokio::spawn(async move { client.send_message("t", format!("{i}")).await })
        })
        .collect();
    for send in sends {
        send.await.unwrap().unwrap();
    }
    let request = ReceiveMessage { queue: "t".into(), max_messages: Some(10), ..Default::default() };
    assert_eq!(client.receive_message(request).await.unwrap().len(), 10);
    drop(client);
    driver.await.unwrap().unwrap();
}
