//! The Redshift destination, delivered into PostgreSQL: each batch, already written to the
//! intermediate bucket, is loaded into the table with one `COPY … FROM STDIN` (`tokio-postgres`),
//! in one transaction — all of the batch or none of it. Records are rows as the `CopyOptions`
//! say: delimited text (Redshift's default, `|`), CSV, or JSON objects whose keys are matched to
//! `DataTableColumns` (`JSON 'auto'`). A load that fails is tried again, backing off, for the
//! retry duration; then it is skipped, and a COPY manifest naming its intermediate object goes
//! under `errors/manifests/` to load it by hand (as Firehose does).
//!
//! The cluster's host is resolved and refused when it is not a public address, unless
//! `--http-endpoints-allow-private`, as HTTP endpoints are. Connections are plain (no TLS).

use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::SinkExt;
use serde_json::Value;

use crate::catalog::firehose::{CopyFormat, TableDestination};

/// Longest wait between tries.
const BACKOFF_MAX: Duration = Duration::from_secs(30);
/// Longest a connection and a load may take.
const LOAD_TIMEOUT: Duration = Duration::from_secs(300);

/// Loads `records` into `table`, trying again for its retry duration; `Err` (why, tries) when
/// every try failed.
pub async fn load_until_done(table: &TableDestination, allow_private: bool, records: Vec<Bytes>, name: &str) -> Result<u32, (String, u32)> {
    let format = table.format.clone();
    let columns = table.columns.clone();
    let data = tokio::task::spawn_blocking(move || rows(&records, &format, &columns))
        .await
        .map_err(|e| (format!("making the rows stopped: {e}"), 0))?
        .map_err(|why| (why, 0))?;
    let statement = statement(table);
    let started = Instant::now();
    let retry = Duration::from_secs(u64::from(table.retry_s));
    let mut tries = 0u32;
    loop {
        tries += 1;
        let outcome = tokio::time::timeout(LOAD_TIMEOUT, load(table, allow_private, &statement, data.clone())).await;
        let why = match outcome {
            Ok(Ok(_rows)) => return Ok(tries),
            Ok(Err(why)) => why,
            Err(_) => format!("the load took more than {} s", LOAD_TIMEOUT.as_secs()),
        };
        let waited = started.elapsed();
        if waited >= retry {
            return Err((why, tries));
        }
        if tries == 1 || tries.is_multiple_of(10) {
            tracing::warn!(delivery_stream = name, tries, %why, "a COPY into the table failed; trying again");
        }
        let backoff = Duration::from_millis(500u64 << tries.min(6)).min(BACKOFF_MAX).min(retry - waited);
        tokio::time::sleep(backoff).await;
    }
}

/// `COPY table (columns) FROM STDIN WITH (…)` for the destination's format.
fn statement(table: &TableDestination) -> String {
    let columns = if table.columns.is_empty() { String::new() } else { format!(" ({})", table.columns.join(", ")) };
    let options = match table.format {
        CopyFormat::Text { delimiter } => format!("FORMAT text, DELIMITER {}", literal(delimiter)),
        CopyFormat::Csv { delimiter } => format!("FORMAT csv, DELIMITER {}", literal(delimiter)),
        CopyFormat::JsonAuto => "FORMAT csv".to_owned(),
    };
    // The table and column names were checked to be plain identifiers.
    format!("COPY {}{columns} FROM STDIN WITH ({options})", table.table)
}

fn literal(delimiter: u8) -> String {
    match delimiter {
        b'\'' => "''''".to_owned(),
        b'\t' => "E'\\t'".to_owned(),
        other => format!("'{}'", other as char),
    }
}

/// The records as COPY's input: one line each (delimited text and CSV as they come; JSON
/// objects as CSV rows of the columns' values). `Err` when a record is not what the format
/// takes — the whole load would fail, as Redshift's does.
fn rows(records: &[Bytes], format: &CopyFormat, columns: &[String]) -> Result<Bytes, String> {
    let mut out = Vec::with_capacity(records.iter().map(|record| record.len() + 1).sum());
    for (at, record) in records.iter().enumerate() {
        match format {
            CopyFormat::Text { .. } | CopyFormat::Csv { .. } => {
                let line = record.strip_suffix(b"\n").unwrap_or(record);
                let line = line.strip_suffix(b"\r").unwrap_or(line);
                out.extend_from_slice(line);
                out.push(b'\n');
            }
            CopyFormat::JsonAuto => {
                let value: Value = serde_json::from_slice(record).map_err(|e| format!("record {at} is not JSON: {e}"))?;
                let object = value.as_object().ok_or_else(|| format!("record {at} is not a JSON object"))?;
                for (index, column) in columns.iter().enumerate() {
                    if index > 0 {
                        out.push(b',');
                    }
                    // JSON 'auto' matches keys to column names without regard to case.
                    let field =
                        object.get(column).or_else(|| object.iter().find(|(key, _)| key.eq_ignore_ascii_case(column)).map(|(_, v)| v));
                    match field {
                        None | Some(Value::Null) => {}
                        Some(Value::String(text)) => quoted(&mut out, text),
                        Some(Value::Number(number)) => out.extend_from_slice(number.to_string().as_bytes()),
                        Some(Value::Bool(flag)) => out.extend_from_slice(if *flag { b"true" } else { b"false" }),
                        Some(other) => quoted(&mut out, &other.to_string()),
                    }
                }
                out.push(b'\n');
            }
        }
    }
    Ok(Bytes::from(out))
}

/// A CSV field, quoted (an empty quoted field is an empty string, not NULL).
fn quoted(out: &mut Vec<u8>, text: &str) {
    out.push(b'"');
    for byte in text.bytes() {
        if byte == b'"' {
            out.push(b'"');
        }
        out.push(byte);
    }
    out.push(b'"');
}

/// One connection and one COPY; answers the rows loaded.
async fn load(table: &TableDestination, allow_private: bool, statement: &str, data: Bytes) -> Result<u64, String> {
    let address = tokio::net::lookup_host((table.host.as_str(), table.port))
        .await
        .map_err(|e| format!("resolving {}: {e}", table.host))?
        .next()
        .ok_or_else(|| format!("{} has no address", table.host))?;
    if !allow_private {
        if let Some(why) = crate::topic::http::non_public(address.ip()) {
            return Err(format!("{} resolves to {}, {why} (allow with --http-endpoints-allow-private)", table.host, address.ip()));
        }
    }
    let mut config = tokio_postgres::Config::new();
    config.hostaddr(address.ip()).port(address.port()).dbname(&table.database).user(&table.username);
    config.application_name("sluice-firehose").connect_timeout(Duration::from_secs(30));
    if let Some(password) = &table.password {
        config.password(password);
    }
    let (client, connection) =
        config.connect(tokio_postgres::NoTls).await.map_err(|e| format!("connecting to {}: {}", table.jdbc_url, chain(&e)))?;
    let connection = tokio::spawn(connection);
    let outcome = async {
        let sink = client.copy_in::<_, Bytes>(statement).await.map_err(|e| format!("{statement}: {}", chain(&e)))?;
        futures::pin_mut!(sink);
        sink.send(data).await.map_err(|e| format!("sending the rows: {}", chain(&e)))?;
        sink.as_mut().finish().await.map_err(|e| format!("{statement}: {}", chain(&e)))
    }
    .await;
    drop(client);
    let _ = connection.await;
    outcome
}

fn chain(error: &tokio_postgres::Error) -> String {
    match error.as_db_error() {
        Some(db) => format!("{} ({})", db.message(), db.code().code()),
        None => super::deliver::error_chain(error),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_records_become_csv_rows_of_the_columns() {
        let records = [Bytes::from(r#"{"id": 1, "Name": "a \"b\"", "tags": [1], "ok": true}"#), Bytes::from(r#"{"id": 2}"#)];
        let columns = ["id".to_owned(), "name".to_owned(), "tags".to_owned(), "ok".to_owned()];
        let rows = rows(&records, &CopyFormat::JsonAuto, &columns).unwrap();
        assert_eq!(rows, Bytes::from("1,\"a \"\"b\"\"\",\"[1]\",true\n2,,,\n"));
        assert!(super::rows(&[Bytes::from("nope")], &CopyFormat::JsonAuto, &columns).unwrap_err().contains("record 0 is not JSON"));
        let text = super::rows(&[Bytes::from("a|b\n"), Bytes::from("c|d")], &CopyFormat::Text { delimiter: b'|' }, &[]).unwrap();
        assert_eq!(text, Bytes::from("a|b\nc|d\n"));
    }
}
