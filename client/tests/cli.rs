//! The `sluice` CLI against a real daemon: the README's quick start, and errors.

use std::io::Write;
use std::process::{Command, Output, Stdio};

use sluice_testkit::*;

fn sluice(daemon: &Daemon, args: &[&str], stdin: Option<&str>) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .arg("--endpoint")
        .arg(daemon.addr.to_string())
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    if let Some(text) = stdin {
        input.write_all(text.as_bytes()).unwrap();
    }
    drop(input);
    child.wait_with_output().unwrap()
}

fn stdout(output: &Output) -> String {
    assert!(output.status.success(), "sluice failed: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8(output.stdout.clone()).unwrap()
}

#[test]
fn quick_start_round_trips_a_message() {
    let daemon = Daemon::start();
    assert!(stdout(&sluice(&daemon, &["queue", "create", "q"], None)).trim().ends_with("/q"));
    assert_eq!(stdout(&sluice(&daemon, &["send", "q", "hello"], None)).trim().len(), 36);
    assert_eq!(stdout(&sluice(&daemon, &["receive", "q", "--delete"], None)), "hello\n");
    assert_eq!(stdout(&sluice(&daemon, &["receive", "q"], None)), "");
}

#[test]
fn queue_commands_and_stdin_batches_work() {
    let daemon = Daemon::start();
    stdout(&sluice(&daemon, &["queue", "create", "jobs", "--attr", "VisibilityTimeout=120", "--tag", "team=a"], None));
    stdout(&sluice(&daemon, &["queue", "create", "other"], None));
    assert_eq!(stdout(&sluice(&daemon, &["queue", "list", "--prefix", "jo"], None)).lines().count(), 1);
    let lines: String = (0..25).map(|i| format!("line {i}\n")).collect();
    assert!(stdout(&sluice(&daemon, &["send", "jobs", "-"], Some(&lines))).contains("sent 25"));
    let attrs = stdout(&sluice(&daemon, &["queue", "attrs", "jobs"], None));
    assert!(attrs.contains("ApproximateNumberOfMessages=25"), "{attrs}");
    assert!(attrs.contains("VisibilityTimeout=120"));
    let received = stdout(&sluice(&daemon, &["--json", "receive", "jobs", "--max", "10"], None));
    let first: serde_json::Value = serde_json::from_str(received.lines().next().unwrap()).unwrap();
    assert!(first["Body"].as_str().unwrap().starts_with("line "));
    let handle = first["ReceiptHandle"].as_str().unwrap().to_owned();
    stdout(&sluice(&daemon, &["delete", "jobs", &handle], None));
    stdout(&sluice(&daemon, &["queue", "purge", "jobs"], None));
    assert!(stdout(&sluice(&daemon, &["queue", "attrs", "jobs"], None)).contains("ApproximateNumberOfMessages=0"));
    stdout(&sluice(&daemon, &["queue", "delete", "jobs"], None));
    assert_eq!(stdout(&sluice(&daemon, &["queue", "list"], None)).lines().count(), 1);
}

#[test]
fn errors_print_the_aws_code_and_exit_non_zero() {
    let daemon = Daemon::start();
    let output = sluice(&daemon, &["send", "missing", "x"], None);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("QueueDoesNotExist"), "{stderr}");
    let output = sluice(&daemon, &["queue", "create", "q", "--attr", "DelaySeconds=5000"], None);
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("InvalidAttributeValue"));
}
