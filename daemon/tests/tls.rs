//! TLS on both listeners (`--tls-cert`, `--tls-key`, `--tls-client-ca`): the binary protocol
//! through the client library and the `sluice` CLI, the gateway through a rustls client (the
//! AWS SDKs over HTTPS are in `aws_clients.rs`); plain clients, untrusted certificates and,
//! under mutual TLS, clients without a trusted certificate refused; certificates replaced on
//! SIGHUP while open connections go on. Test certificates are made with rcgen.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::sync::Arc;

use sluice_client::blocking::BlockingClient;
use sluice_client::tls::Tls;
use sluice_client::{ClientError, ReceiveMessage};
use sluice_testkit::pki::Authority;
use sluice_testkit::*;

fn s(path: &Path) -> &str {
    path.to_str().unwrap()
}

fn trusting(ca: &Path) -> Tls {
    Tls::new(Some(ca), None).unwrap()
}

/// Sends, receives and deletes one message over `c`.
fn round_trip(c: &Conn, queue: &str, body: &str) {
    c.run(c.client().create_queue(queue, vec![], vec![])).unwrap();
    c.run(c.client().send_message(queue, body.to_owned())).unwrap();
    let received = c
        .run(c.client().receive_message(ReceiveMessage {
            queue: queue.into(),
            max_messages: Some(10),
            wait_time_seconds: Some(5),
            ..ReceiveMessage::default()
        }))
        .unwrap();
    assert_eq!(received.len(), 1);
    assert_eq!(&received[0].body[..], body.as_bytes());
    c.run(c.client().delete_message(queue, &received[0].receipt_handle)).unwrap();
}

/// A rustls client connection to the gateway offering `alpn`.
fn tls_to_gateway(
    daemon: &Daemon,
    ca: &Path,
    identity: Option<(&Path, &Path)>,
    alpn: &[&[u8]],
) -> rustls::StreamOwned<rustls::ClientConnection, TcpStream> {
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls::pki_types::CertificateDer::pem_file_iter(ca).unwrap() {
        roots.add(cert.unwrap()).unwrap();
    }
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
    let mut config = match identity {
        None => builder.with_no_client_auth(),
        Some((cert, key)) => {
            let certs = rustls::pki_types::CertificateDer::pem_file_iter(cert).unwrap().map(Result::unwrap).collect();
            builder.with_client_auth_cert(certs, rustls::pki_types::PrivateKeyDer::from_pem_file(key).unwrap()).unwrap()
        }
    };
    config.alpn_protocols = alpn.iter().map(|name| name.to_vec()).collect();
    let http = daemon.http_addr.expect("the gateway listens");
    let connection = rustls::ClientConnection::new(Arc::new(config), "localhost".try_into().unwrap()).unwrap();
    let socket = TcpStream::connect(http).unwrap();
    socket.set_read_timeout(Some(std::time::Duration::from_secs(10))).unwrap();
    rustls::StreamOwned::new(connection, socket)
}

/// A connection to the gateway speaking HTTP/1.1 over TLS.
fn https(daemon: &Daemon, ca: &Path, identity: Option<(&Path, &Path)>) -> rustls::StreamOwned<rustls::ClientConnection, TcpStream> {
    tls_to_gateway(daemon, ca, identity, &[b"http/1.1"])
}

/// GET /health over `stream`; the whole answer, or the error that stopped it.
fn health(stream: &mut rustls::StreamOwned<rustls::ClientConnection, TcpStream>) -> std::io::Result<String> {
    stream.write_all(b"GET /health HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer)?;
    Ok(answer)
}

#[test]
fn both_listeners_serve_tls_to_clients_that_trust_the_certificate_and_nothing_else() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Authority::new(dir.path(), "main");
    let (cert, key) = ca.issue(dir.path(), "server");
    let mut daemon = Daemon::start_with(&["--tls-cert", s(&cert), "--tls-key", s(&key)]);

    let c = daemon.client_tls(&trusting(&ca.file), None).expect("a client trusting the CA connects");
    round_trip(&c, "sealed-in-transit", "over tls");
    c.run(c.client().send_message("sealed-in-transit", "kept")).unwrap();

    // A plain client, a client trusting only the public roots, and one expecting another name
    // get no service.
    assert!(BlockingClient::connect(daemon.addr, "plain").is_err(), "a plain client is not served");
    match daemon.client_tls(&Tls::new(None, None).unwrap(), None) {
        Err(ClientError::Tls(message)) => assert!(message.contains("handshake"), "{message}"),
        other => panic!("a certificate from an unknown CA must fail the handshake, got {:?}", other.err()),
    }
    assert!(daemon.client_tls(&trusting(&ca.file).with_server_name("elsewhere.example"), None).is_err());

    // The gateway: HTTP/1.1 or HTTP/2 as ALPN chooses, and a plain request refused.
    let mut stream = https(&daemon, &ca.file, None);
    let answer = health(&mut stream).expect("GET /health over TLS");
    assert!(answer.starts_with("HTTP/1.1 200") && answer.ends_with("ok\n"), "{answer}");
    assert_eq!(stream.conn.alpn_protocol(), Some(&b"http/1.1"[..]));
    let mut h2 = tls_to_gateway(&daemon, &ca.file, None, &[b"h2", b"http/1.1"]);
    while h2.conn.is_handshaking() {
        h2.conn.complete_io(&mut h2.sock).expect("the TLS handshake");
    }
    assert_eq!(h2.conn.alpn_protocol(), Some(&b"h2"[..]), "a client offering h2 gets HTTP/2");
    let mut plain = TcpStream::connect(daemon.http_addr.unwrap()).unwrap();
    plain.set_read_timeout(Some(std::time::Duration::from_secs(10))).unwrap();
    plain.write_all(b"GET /health HTTP/1.1\r\nHost: localhost\r\n\r\n").unwrap();
    let mut answer = Vec::new();
    let _ = plain.read_to_end(&mut answer);
    assert!(!answer.starts_with(b"HTTP/1.1 200"), "a plain request is not served: {}", String::from_utf8_lossy(&answer));

    // Queue URLs say https.
    let url = c.run(c.client().get_queue_url("sealed-in-transit")).unwrap();
    assert!(url.starts_with("https://"), "{url}");

    // Twice restarted, TLS still on and the message kept.
    drop(c);
    for _ in 0..2 {
        daemon.restart();
    }
    let c = daemon.client_tls(&trusting(&ca.file), None).unwrap();
    let received = c
        .run(c.client().receive_message(ReceiveMessage {
            queue: "sealed-in-transit".into(),
            wait_time_seconds: Some(5),
            ..ReceiveMessage::default()
        }))
        .unwrap();
    assert_eq!(received.len(), 1);
    assert_eq!(&received[0].body[..], b"kept");
}

#[test]
fn mutual_tls_serves_only_clients_with_a_certificate_from_the_client_ca() {
    let dir = tempfile::tempdir().unwrap();
    let servers = Authority::new(dir.path(), "servers");
    let clients = Authority::new(dir.path(), "clients");
    let strangers = Authority::new(dir.path(), "strangers");
    let (cert, key) = servers.issue(dir.path(), "server");
    let (client_cert, client_key) = clients.issue(dir.path(), "client");
    let (stranger_cert, stranger_key) = strangers.issue(dir.path(), "stranger");
    let daemon = Daemon::start_with(&["--tls-cert", s(&cert), "--tls-key", s(&key), "--tls-client-ca", s(&clients.file)]);

    let with_identity = Tls::new(Some(&servers.file), Some((&client_cert, &client_key))).unwrap();
    let c = daemon.client_tls(&with_identity, None).expect("a client with a certificate from the client CA connects");
    round_trip(&c, "mutual", "both sides known");

    let anonymous = daemon.client_tls(&trusting(&servers.file), None);
    assert!(anonymous.is_err(), "a client without a certificate is refused");
    let stranger = Tls::new(Some(&servers.file), Some((&stranger_cert, &stranger_key))).unwrap();
    assert!(daemon.client_tls(&stranger, None).is_err(), "a certificate from another CA is refused");

    let answer = health(&mut https(&daemon, &servers.file, Some((&client_cert, &client_key)))).unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(health(&mut https(&daemon, &servers.file, None)).is_err(), "the gateway refuses a client without a certificate");
    assert!(health(&mut https(&daemon, &servers.file, Some((&stranger_cert, &stranger_key)))).is_err());
}

#[test]
fn certificates_are_replaced_on_sighup_and_open_connections_go_on() {
    let dir = tempfile::tempdir().unwrap();
    let old = Authority::new(dir.path(), "old");
    let new = Authority::new(dir.path(), "new");
    let (cert, key) = old.issue(dir.path(), "server");
    let daemon = Daemon::start_with(&["--tls-cert", s(&cert), "--tls-key", s(&key)]);
    let open = daemon.client_tls(&trusting(&old.file), None).unwrap();
    open.run(open.client().create_queue("rotation", vec![], vec![])).unwrap();

    // The new certificate replaces the files in place, then SIGHUP.
    let (new_cert, new_key) = new.issue(dir.path(), "server-next");
    std::fs::copy(&new_cert, &cert).unwrap();
    std::fs::copy(&new_key, &key).unwrap();
    daemon.signal("HUP");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let renewed = loop {
        match daemon.client_tls(&trusting(&new.file), None) {
            Ok(conn) => break conn,
            Err(_) if std::time::Instant::now() < deadline => std::thread::sleep(std::time::Duration::from_millis(50)),
            Err(error) => panic!("the new certificate was never served: {error}"),
        }
    };
    renewed.run(renewed.client().send_message("rotation", "after")).unwrap();
    assert!(daemon.client_tls(&trusting(&old.file), None).is_err(), "new connections no longer get the old certificate");
    // The connection opened before the reload goes on.
    open.run(open.client().send_message("rotation", "before")).unwrap();

    // A file that does not read is refused on SIGHUP; the certificate in force stays.
    std::fs::write(&cert, "not a certificate").unwrap();
    daemon.signal("HUP");
    let c = daemon.client_tls(&trusting(&new.file), None).expect("the certificate in force stays");
    let attributes = c.run(c.client().get_queue_attributes("rotation", &["ApproximateNumberOfMessages"])).unwrap();
    assert_eq!(attribute(&attributes, "ApproximateNumberOfMessages"), Some("2"));
    open.run(open.client().send_message("rotation", "still open")).unwrap();
}

#[test]
fn tls_files_that_do_not_read_stop_the_start_with_the_flag_named() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Authority::new(dir.path(), "main");
    let (cert, key) = ca.issue(dir.path(), "server");
    let garbage = dir.path().join("garbage.pem");
    std::fs::write(&garbage, "-----BEGIN NOTHING-----\n").unwrap();
    let data = dir.path().join("data");

    let (status, stderr) = Daemon::start_failing(&data, &["--tls-cert", s(&garbage), "--tls-key", s(&key)]);
    assert!(!status.success());
    assert!(stderr.contains("--tls-cert") && stderr.contains("garbage.pem"), "{stderr}");
    let (status, stderr) = Daemon::start_failing(&data, &["--tls-cert", s(&cert), "--tls-key", s(&cert)]);
    assert!(!status.success());
    assert!(stderr.contains("--tls-key"), "{stderr}");
    let (status, stderr) = Daemon::start_failing(&data, &["--tls-cert", s(&cert)]);
    assert!(!status.success());
    assert!(stderr.contains("--tls-key"), "a certificate without its key: {stderr}");
    let (status, stderr) = Daemon::start_failing(&data, &["--tls-cert", s(&cert), "--tls-key", s(&key), "--tls-client-ca", s(&garbage)]);
    assert!(!status.success());
    assert!(stderr.contains("--tls-client-ca"), "{stderr}");
}

#[test]
fn the_cli_connects_over_tls() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Authority::new(dir.path(), "main");
    let (cert, key) = ca.issue(dir.path(), "server");
    let daemon = Daemon::start_with(&["--tls-cert", s(&cert), "--tls-key", s(&key)]);
    let endpoint = format!("localhost:{}", daemon.addr.port());
    let sluice = |args: &[&str]| {
        std::process::Command::new(workspace_binary("sluice")).args(["--endpoint", &endpoint]).args(args).output().expect("running sluice")
    };
    let created = sluice(&["--ca-file", s(&ca.file), "queue", "create", "from-the-cli"]);
    assert!(created.status.success(), "{}", String::from_utf8_lossy(&created.stderr));
    let listed = sluice(&["--ca-file", s(&ca.file), "queue", "list"]);
    assert!(String::from_utf8_lossy(&listed.stdout).contains("from-the-cli"));
    let refused = sluice(&["--tls", "queue", "list"]);
    assert!(!refused.status.success(), "the public roots do not trust the test CA");
    assert!(String::from_utf8_lossy(&refused.stderr).contains("TLS"), "{}", String::from_utf8_lossy(&refused.stderr));
}

#[test]
fn a_connection_past_the_cap_is_told_why_over_tls() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Authority::new(dir.path(), "main");
    let (cert, key) = ca.issue(dir.path(), "server");
    let daemon = Daemon::start_with(&["--tls-cert", s(&cert), "--tls-key", s(&key), "--cores", "1", "--connections-max", "1"]);
    let held = daemon.client_tls(&trusting(&ca.file), None).unwrap();
    assert_code(daemon.client_tls(&trusting(&ca.file), None).map(|_| ()), sluice_client::ErrorCode::ServiceUnavailable);
    held.run(held.client().list_queues(None, None, None)).unwrap();
}
