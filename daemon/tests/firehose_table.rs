//! Firehose's Redshift destination delivered into a real PostgreSQL server (Debian's, started by
//! the test on a temporary directory): JSON records loaded with COPY as rows of the named
//! columns, counted and compared; the server stopped mid-run loses nothing (loads are tried
//! again and the records wait); a kill -9 of `sluiced` loses nothing acknowledged; a load that
//! fails for the retry duration leaves a COPY manifest of its intermediate object.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde_json::json;
use sluice_client::*;
use sluice_testkit::*;

/// A PostgreSQL server on 127.0.0.1 with a trusted user `sluice`, on a temporary directory.
struct Postgres {
    bin: PathBuf,
    dir: tempfile::TempDir,
    port: u16,
    server: Option<Child>,
    /// Root runs the server as the `postgres` user (it refuses to run as root).
    as_postgres: bool,
}

impl Postgres {
    fn start() -> Postgres {
        let bin = std::fs::read_dir("/usr/lib/postgresql")
            .expect("PostgreSQL's server (Debian's postgresql package; .ci/run installs it)")
            .filter_map(|entry| Some(entry.ok()?.path().join("bin")))
            .filter(|bin| bin.join("postgres").exists())
            .max()
            .expect("a PostgreSQL server under /usr/lib/postgresql/*/bin");
        let dir = tempfile::tempdir().unwrap();
        let as_postgres = Command::new("id").arg("-u").output().map(|out| out.stdout.starts_with(b"0\n")).unwrap_or(false);
        if as_postgres {
            assert!(Command::new("chown").args(["-R", "postgres:postgres"]).arg(dir.path()).status().unwrap().success());
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let mut postgres = Postgres { bin, dir, port, server: None, as_postgres };
        let data = postgres.data();
        let initdb =
            postgres.command("initdb").args(["-U", "sluice", "--auth=trust", "-D"]).arg(&data).stdout(Stdio::null()).status().unwrap();
        assert!(initdb.success(), "initdb failed");
        postgres.up();
        postgres.sql("CREATE TABLE events (id integer, name text, tags text)");
        postgres
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn command(&self, program: &str) -> Command {
        let path = self.bin.join(program);
        if self.as_postgres {
            let mut command = Command::new("runuser");
            command.args(["-u", "postgres", "--"]).arg(path);
            command
        } else {
            Command::new(path)
        }
    }

    /// Starts the server and waits until it takes connections.
    fn up(&mut self) {
        let data = self.data();
        let server = self
            .command("postgres")
            .arg("-D")
            .arg(&data)
            .args(["-p", &self.port.to_string(), "-c", "listen_addresses=127.0.0.1", "-c", "fsync=off", "-k"])
            .arg(self.dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        self.server = Some(server);
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.psql("SELECT 1").is_none_or(|out| out.trim() != "1") {
            assert!(Instant::now() < deadline, "PostgreSQL did not start");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Stops the server (`mode`: fast, or immediate) and waits for it. Through pg_ctl: the
    /// child may be `runuser`, which does not pass signals on.
    fn stop(&mut self, mode: &str) {
        if let Some(mut server) = self.server.take() {
            let data = self.data();
            let _ = self.command("pg_ctl").args(["stop", "-m", mode, "-D"]).arg(&data).stdout(Stdio::null()).stderr(Stdio::null()).status();
            let _ = server.wait();
        }
    }

    fn down(&mut self) {
        self.stop("fast");
    }

    fn psql(&self, sql: &str) -> Option<String> {
        let out = Command::new(self.bin.join("psql"))
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string(), "-U", "sluice", "-d", "postgres", "-w", "-tAc", sql])
            .stdin(Stdio::null())
            .stderr(Stdio::null())
            .output()
            .ok()?;
        out.status.success().then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    }

    #[track_caller]
    fn sql(&self, sql: &str) -> String {
        self.psql(sql).unwrap_or_else(|| panic!("{sql} failed"))
    }

    fn url(&self) -> String {
        format!("jdbc:postgresql://127.0.0.1:{}/postgres", self.port)
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        self.stop("immediate");
    }
}

fn configuration(url: &str, retry_s: u32) -> String {
    json!({ "RedshiftDestinationConfiguration": {
        "S3BackupMode": "Enabled",
        "S3BackupConfiguration": { "RoleARN": "arn:aws:iam::000000000000:role/firehose", "BucketARN": "arn:aws:s3:::source" },
        "RoleARN": "arn:aws:iam::000000000000:role/firehose",
        "ClusterJDBCURL": url,
        "CopyCommand": { "DataTableName": "events", "DataTableColumns": "id,name,tags", "CopyOptions": "JSON 'auto'" },
        "Username": "sluice",
        "Password": "not-needed-with-trust",
        "RetryOptions": { "DurationInSeconds": retry_s },
        "S3Configuration": {
            "RoleARN": "arn:aws:iam::000000000000:role/firehose",
            "BucketARN": "arn:aws:s3:::staging",
            "BufferingHints": { "SizeInMBs": 1, "IntervalInSeconds": 0 },
        },
    }})
    .to_string()
}

fn put(c: &Conn, stream: &str, from: usize, count: usize) -> Vec<usize> {
    let ids: Vec<usize> = (from..from + count).collect();
    for chunk in ids.chunks(250) {
        let records =
            chunk.iter().map(|id| Bytes::from(json!({"id": id, "name": format!("n{id}"), "tags": ["a", id]}).to_string())).collect();
        let results = c.run(c.client().put_firehose_records(stream, records, true)).unwrap();
        assert!(results.iter().all(|result| result.record_id.is_some()));
    }
    ids
}

/// The ids in the table: how many rows each has.
fn rows(postgres: &Postgres) -> std::collections::BTreeMap<usize, usize> {
    let mut counts = std::collections::BTreeMap::new();
    for line in postgres.sql("SELECT id FROM events").lines() {
        *counts.entry(line.trim().parse::<usize>().unwrap()).or_insert(0) += 1;
    }
    counts
}

#[track_caller]
fn wait_for_rows(postgres: &Postgres, expected: &[usize]) -> std::collections::BTreeMap<usize, usize> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let counts = rows(postgres);
        let missing = expected.iter().filter(|id| !counts.contains_key(id)).count();
        if missing == 0 {
            return counts;
        }
        assert!(Instant::now() < deadline, "{missing} of {} acknowledged records never loaded", expected.len());
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn records_are_copied_into_postgresql_through_its_outage_and_a_kill_9() {
    let mut postgres = Postgres::start();
    let objects = tempfile::tempdir().unwrap();
    let local = objects.path().to_string_lossy().into_owned();
    let mut daemon = Daemon::start_with(&["--firehose-local-dir", &local, "--http-endpoints-allow-private"]);
    let c = daemon.client();
    c.run(c.client().create_delivery_stream("to-table", &configuration(&postgres.url(), 3600), vec![])).unwrap();
    let described: serde_json::Value = serde_json::from_str(&c.run(c.client().describe_delivery_stream("to-table")).unwrap()).unwrap();
    let destination = &described["Destinations"][0]["RedshiftDestinationDescription"];
    assert_eq!(destination["CopyCommand"]["CopyOptions"], "JSON 'auto'");
    assert!(destination.get("Password").is_none(), "the password is never described");

    let mut expected = put(&c, "to-table", 0, 500);
    wait_for_rows(&postgres, &expected);
    assert_eq!(postgres.sql("SELECT name || ' ' || tags FROM events WHERE id = 7").trim(), r#"n7 ["a",7]"#);
    // The server goes away: records are taken and wait; once it is back they are loaded.
    postgres.down();
    expected.extend(put(&daemon.client_on_shard(1), "to-table", 500, 300));
    std::thread::sleep(Duration::from_millis(1500));
    postgres.up();
    // And a kill -9 of sluiced with records just put.
    expected.extend(put(&c, "to-table", 800, 200));
    daemon.kill();
    daemon.restart();
    expected.extend(put(&daemon.client(), "to-table", 1000, 100));
    let counts = wait_for_rows(&postgres, &expected);
    let duplicates: usize = counts.values().map(|count| count - 1).sum();
    assert!(duplicates <= expected.len() / 4, "{duplicates} duplicate rows");
    // Every batch was written to the intermediate bucket too, and its source records to the
    // backup bucket.
    assert!(!files_under(&objects.path().join("staging")).is_empty());
    let source = objects.path().join("source");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        // Written after each load: the last may still be on its way.
        let backed_up: String = files_under(&source).values().map(|data| String::from_utf8_lossy(data).into_owned()).collect();
        if expected.iter().all(|id| backed_up.contains(&format!("\"id\":{id},"))) {
            break;
        }
        assert!(Instant::now() < deadline, "not every source record reached the backup bucket");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(destination["S3BackupMode"], "Enabled");
}

#[test]
fn a_load_refused_for_the_retry_duration_leaves_a_copy_manifest() {
    let postgres = Postgres::start();
    postgres.sql("DROP TABLE events");
    let objects = tempfile::tempdir().unwrap();
    let local = objects.path().to_string_lossy().into_owned();
    let daemon = Daemon::start_with(&["--firehose-local-dir", &local, "--http-endpoints-allow-private"]);
    let c = daemon.client();
    c.run(c.client().create_delivery_stream("no-table", &configuration(&postgres.url(), 1), vec![])).unwrap();
    put(&c, "no-table", 0, 10);
    let staging = objects.path().join("staging");
    let deadline = Instant::now() + Duration::from_secs(60);
    let manifest = loop {
        if let Some(key) = files_under(&staging).into_keys().find(|key| key.starts_with("errors/manifests/")) {
            break std::fs::read_to_string(staging.join(key)).unwrap();
        }
        assert!(Instant::now() < deadline, "no manifest of the skipped load");
        std::thread::sleep(Duration::from_millis(100));
    };
    let manifest: serde_json::Value = serde_json::from_str(&manifest).unwrap();
    let url = manifest["entries"][0]["url"].as_str().unwrap();
    let object = url.strip_prefix("s3://staging/").expect("the intermediate object's URL");
    assert!(staging.join(object).exists(), "{url} names the intermediate object");
    // A cluster on a private address needs the flag.
    let strict = Daemon::start_with(&["--firehose-local-dir", &local]);
    let c = strict.client();
    assert_code(
        c.run(c.client().create_delivery_stream("private", &configuration(&postgres.url(), 60), vec![])),
        ErrorCode::InvalidArgument,
    );
}
