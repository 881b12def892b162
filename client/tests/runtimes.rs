//! The async client runs on tokio too (through futures-io compat), pipelining requests.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use sluice_client::{Client, ReceiveMessage};
use tokio_util::compat::TokioAsyncReadCompatExt;

#[tokio::test]
async fn client_works_under_tokio() {
    // `sluiced` is built beside this test by `cargo test --workspace`.
    let sluiced = std::env::current_exe().unwrap().parent().unwrap().with_file_name("sluiced");
    assert!(sluiced.exists(), "{} is missing: run the suite with `cargo test --workspace`", sluiced.display());
    let data = std::env::temp_dir().join(format!("sluice-tokio-test-{}", std::process::id()));
    let mut child = Command::new(&sluiced)
        .args(["--listen", "127.0.0.1:0", "--cores", "2", "--log", "warn", "--data-dir"])
        .arg(&data)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let addr = line.trim().strip_prefix("sluiced listening on ").unwrap().to_owned();

    let stream = tokio::net::TcpStream::connect(&addr).await.unwrap();
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
    let _ = child.kill();
    let _ = child.wait();
    let _ = std::fs::remove_dir_all(data);
}
