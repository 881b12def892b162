//! The web console through a real daemon: the page loads in headless Chromium (Debian's
//! `chromium`, or `$SLUICE_CHROMIUM`), runs its script and shows a queue's depth; with
//! `--credentials` it asks for them, and serves only a principal allowed
//! `cloudwatch:GetMetricData`.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::Command;
use std::time::{Duration, Instant};

use base64::Engine;
use sluice_testkit::*;

fn chromium() -> String {
    std::env::var("SLUICE_CHROMIUM").unwrap_or_else(|_| "chromium".into())
}

/// Runs headless Chromium on `url` with `args`; its stdout.
fn headless(url: &str, args: &[&str]) -> String {
    let profile = tempfile::tempdir().unwrap();
    let profile_arg = format!("--user-data-dir={}", profile.path().display());
    let output = Command::new(chromium())
        .args(["--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--no-first-run", &profile_arg])
        .args(args)
        .arg(url)
        .output()
        .unwrap_or_else(|error| panic!("running {} (Debian's chromium package; .ci/run installs it): {error}", chromium()));
    assert!(output.status.success(), "chromium failed: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// One HTTP/1.1 GET: (status, body).
fn get(addr: SocketAddr, path: &str, authorization: Option<&str>) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).unwrap();
    let auth = authorization.map(|value| format!("Authorization: {value}\r\n")).unwrap_or_default();
    stream.write_all(format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\n{auth}Connection: close\r\n\r\n").as_bytes()).unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let status = response.get(9..12).and_then(|code| code.parse().ok()).unwrap_or(0);
    (status, response.split_once("\r\n\r\n").map(|(_, body)| body.to_owned()).unwrap_or_default())
}

#[test]
fn the_console_shows_a_queues_depth_in_a_real_browser() {
    let daemon = Daemon::start_with(&["--metrics-sample-seconds", "1"]);
    let c = daemon.client();
    c.run(c.client().create_queue("orders", vec![], vec![])).unwrap();
    for i in 0..7 {
        c.run(c.client().send_message("orders", format!("order {i}"))).unwrap();
    }
    c.run(c.client().create_topic("events", vec![], vec![])).unwrap();
    let url = format!("{}/console", daemon.http_url());
    // The page's script fetches the figures and fills the tables.
    let dom = headless(&url, &["--virtual-time-budget=5000", "--dump-dom"]);
    assert!(dom.contains(r#"data-loaded="true""#), "the script did not render:\n{dom}");
    assert!(dom.contains(r#"<td class="name">orders</td><td>7</td><td>0</td><td>0</td>"#), "orders with 7 visible:\n{dom}");
    assert!(dom.contains(r#"<td class="name">events</td><td>0</td>"#), "the topic:\n{dom}");
    // And it draws: a screenshot of the page is an image of some size.
    let shot = tempfile::tempdir().unwrap();
    let path = shot.path().join("console.png");
    headless(&url, &["--virtual-time-budget=5000", "--window-size=1280,900", &format!("--screenshot={}", path.display())]);
    let png = std::fs::read(&path).expect("a screenshot");
    assert!(png.starts_with(b"\x89PNG") && png.len() > 10_000, "{} bytes", png.len());
    // The chart data: the history's last hour, once a sample has been taken.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (status, body) = get(daemon.http_addr.expect("the gateway"), "/console/data.json", None);
        assert_eq!(status, 200, "{body}");
        let data: serde_json::Value = serde_json::from_str(&body).unwrap();
        if data["charts"]["q0"].as_array().and_then(|points| points.last()).is_some_and(|point| point[1] == 7.0) {
            break;
        }
        assert!(Instant::now() < deadline, "no chart point of 7: {data}");
        std::thread::sleep(Duration::from_millis(250));
    }
}

#[test]
fn with_credentials_the_console_asks_for_them_and_checks_the_policy() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("credentials.json");
    let deny = r#"[{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"sqs:*","Resource":"*"}]}]"#;
    std::fs::write(
        &path,
        format!(
            r#"{{"principals":[
                {{"access_key_id":"AKIAOPS","secret_access_key":"ops-secret-0123456789"}},
                {{"access_key_id":"AKIAAPP","secret_access_key":"app-secret-0123456789","policies":{deny}}}]}}"#
        ),
    )
    .unwrap();
    let daemon = Daemon::start_with(&["--credentials", path.to_str().unwrap()]);
    let basic =
        |user: &str, secret: &str| format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{user}:{secret}")));
    let (status, _) = get(daemon.http_addr.expect("the gateway"), "/console", None);
    assert_eq!(status, 401, "no credentials");
    let (status, _) = get(daemon.http_addr.expect("the gateway"), "/console/data.json", Some(&basic("AKIAOPS", "wrong-secret-0123456789")));
    assert_eq!(status, 401, "a wrong secret");
    let (status, body) =
        get(daemon.http_addr.expect("the gateway"), "/console/data.json", Some(&basic("AKIAAPP", "app-secret-0123456789")));
    assert_eq!(status, 403, "a principal without cloudwatch:GetMetricData: {body}");
    let (status, body) =
        get(daemon.http_addr.expect("the gateway"), "/console/data.json", Some(&basic("AKIAOPS", "ops-secret-0123456789")));
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("\"queues\""), "{body}");
    let (status, page) = get(daemon.http_addr.expect("the gateway"), "/console", Some(&basic("AKIAOPS", "ops-secret-0123456789")));
    assert_eq!(status, 200);
    assert!(page.contains("/console/console.js"), "{page}");
}
