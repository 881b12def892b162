//! The run's table: one section per scenario, one row per system, with Sluice's advantage
//! as ratios against each peer. Written to the run's folder and to the top of
//! `results/README.md` (between markers, so earlier history stays below it).

use std::fmt::Write as _;
use std::path::Path;

use serde_json::Value;

use crate::scenario::{received_per_second, Outcome, Scenario};
use crate::systems::System;

const BEGIN: &str = "<!-- latest-run:begin (written by `sluice-bench run`) -->";
const END: &str = "<!-- latest-run:end -->";

fn us(summary: &Value, op: &str, key: &str) -> Option<u64> {
    summary.get(op)?.get(key)?.as_u64()
}

fn latency(value: Option<u64>) -> String {
    match value {
        Some(v) if v >= 10_000 => format!("{:.1} ms", v as f64 / 1000.0),
        Some(v) => format!("{v} µs"),
        None => "–".into(),
    }
}

/// A "Sluice ÷ peer" cell: 1 on Sluice's own row, the ratio to two places, or – unknown.
fn ratio_cell(system: System, ratio: Option<f64>) -> String {
    if system == System::SluiceFsyncAlways {
        "1".into()
    } else {
        ratio.map_or("–".into(), |r| format!("{r:.2}"))
    }
}

/// Writes `table.md` in `folder`; returns the table.
pub fn write(folder: &Path, stamp: &str, scenarios: &[&Scenario], outcomes: &[Outcome], versions: &str) -> Result<String, String> {
    let mut out = format!(
        "## Latest run: `{stamp}`\n\nEvery system on this machine in one session, each started fresh for each run, with \
`sluice-load` sharing the two cores (machine, versions and exact commands in [`{stamp}/`]({stamp}/)). \
End to end is from the timestamp a producer put in the body to the moment a consumer had the message. \
\"Sluice ÷ peer\" is Sluice with `--fsync always` against that row: throughput ratio (above 1: Sluice moves more) \
and end-to-end p99 ratio (peer's p99 ÷ Sluice's; above 1: Sluice is faster). \
The `sluice-http-gateway` row (queue scenarios) is the same daemon driven through its AWS-compatible HTTP gateway \
(SQS's JSON protocol, one request per HTTP/1.1 connection at a time, as the AWS SDKs send them): \
its ratios are what the binary protocol gains over it.\n\n"
    );
    writeln!(out, "Versions: {}\n", versions.lines().collect::<Vec<_>>().join("; ")).ok();
    for scenario in scenarios {
        let rows: Vec<&Outcome> = outcomes.iter().filter(|o| o.scenario == scenario.name).collect();
        if rows.is_empty() {
            continue;
        }
        writeln!(out, "### {} — {}\n", scenario.name, scenario.what).ok();
        if let Some(reason) = scenario.pending {
            writeln!(out, "Not run: {reason}.\n").ok();
            continue;
        }
        if !scenario.workload.receives() {
            // Nothing is received: no latency to plot, and the throughput plot shows receipts.
        } else {
            writeln!(
                out,
                "Plots: [latency percentiles]({stamp}/latency-{0}.svg), [throughput over time]({stamp}/throughput-{0}.svg)\n",
                scenario.name
            )
            .ok();
        }
        if let crate::scenario::Workload::Fanout { subscribers, .. } = scenario.workload {
            fanout_rows(&mut out, &rows, subscribers);
            continue;
        }
        if let crate::scenario::Workload::Stream { shards, readers } = scenario.workload {
            stream_rows(&mut out, &rows, shards, readers);
            continue;
        }
        if let crate::scenario::Workload::QueueSync { .. } = scenario.workload {
            sync_rows(&mut out, &rows);
            continue;
        }
        if let crate::scenario::Workload::Tenants { .. } = scenario.workload {
            tenant_rows(&mut out, &rows);
            continue;
        }
        out.push_str("| system | fsync before ack | received msgs/s | MB/s | e2e p50 | e2e p99 | e2e p99.9 | e2e p99.99 | e2e max | send p99 | Sluice ÷ peer: throughput | Sluice ÷ peer: p99 |\n");
        out.push_str("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n");
        let sluice = rows.iter().find(|o| o.system == System::SluiceFsyncAlways).and_then(|o| o.summary.as_ref());
        for row in &rows {
            let Some(summary) = &row.summary else {
                unmeasured_row(&mut out, row, "failed", 9);
                continue;
            };
            let rate = received_per_second(row).unwrap_or(0.0);
            let mb = summary.get("received_mb_per_second").and_then(Value::as_f64).unwrap_or(0.0);
            let ratio_throughput = sluice.and_then(|s| s.get("received_per_second")?.as_f64()).map(|s| s / rate.max(1e-9));
            let ratio_p99 = sluice
                .and_then(|s| us(s, "end_to_end", "p99_us"))
                .zip(us(summary, "end_to_end", "p99_us"))
                .map(|(s, p)| p as f64 / s.max(1) as f64);
            let ratio = |r: Option<f64>| ratio_cell(row.system, r);
            writeln!(
                out,
                "| {} | {} | {:.0} | {:.1} | {} | {} | {} | {} | {} | {} | {} | {} |",
                row.system.name(),
                row.system.fsync_before_ack(),
                rate,
                mb,
                latency(us(summary, "end_to_end", "p50_us")),
                latency(us(summary, "end_to_end", "p99_us")),
                latency(us(summary, "end_to_end", "p999_us")),
                latency(us(summary, "end_to_end", "p9999_us")),
                latency(us(summary, "end_to_end", "max_us")),
                latency(us(summary, "send", "p99_us")),
                ratio(ratio_throughput),
                ratio(ratio_p99),
            )
            .ok();
        }
        out.push('\n');
    }
    std::fs::write(folder.join("table.md"), &out).map_err(|e| format!("writing table.md: {e}"))?;
    Ok(out)
}

/// The row of a system whose run gave no figures: why (`what`: failed, not run), then
/// `empty` empty cells.
fn unmeasured_row(out: &mut String, row: &Outcome, what: &str, empty: usize) {
    let note = row.note.as_deref().unwrap_or("?");
    writeln!(out, "| {} | {} | {what}: {note} |{}", row.system.name(), row.system.fsync_before_ack(), " |".repeat(empty)).ok();
}

/// A tenants section: the quiet tenants' end-to-end latency (their dwell time), beside
/// everyone's, which the noisy tenant's backlog makes grow.
fn tenant_rows(out: &mut String, rows: &[&Outcome]) {
    out.push_str("| system | fsync before ack | sent msgs/s | received msgs/s | quiet tenants e2e p50 | p99 | p99.9 | max | all e2e p50 | all e2e p99 |\n");
    out.push_str("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|\n");
    for row in rows {
        let Some(summary) = &row.summary else {
            unmeasured_row(out, row, "failed", 7);
            continue;
        };
        let quiet = |key: &str| latency(us(summary, "end_to_end_quiet", key));
        writeln!(
            out,
            "| {} | {} | {:.0} | {:.0} | {} | {} | {} | {} | {} | {} |",
            row.system.name(),
            row.system.fsync_before_ack(),
            summary.get("sent_per_second").and_then(Value::as_f64).unwrap_or(0.0),
            received_per_second(row).unwrap_or(0.0),
            quiet("p50_us"),
            quiet("p99_us"),
            quiet("p999_us"),
            quiet("max_us"),
            latency(us(summary, "end_to_end", "p50_us")),
            latency(us(summary, "end_to_end", "p99_us")),
        )
        .ok();
    }
    out.push('\n');
}

/// A synchronous-producer section: what a send waits for, beside what one append takes to be
/// durable on the same disk, measured right after Sluice's run (`disk_floor`).
fn sync_rows(out: &mut String, rows: &[&Outcome]) {
    out.push_str("| system | fsync before ack | received msgs/s | send p50 | send p99 | e2e p50 | e2e p99 | disk floor p50 | disk floor p99 | send p50 ÷ floor p50 |\n");
    out.push_str("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|\n");
    for row in rows {
        let Some(summary) = &row.summary else {
            unmeasured_row(out, row, "failed", 7);
            continue;
        };
        let floor = |key: &str| us(summary, "disk_floor", key);
        let ratio =
            us(summary, "send", "p50_us").zip(floor("p50_us")).map(|(send, floor)| format!("{:.2}", send as f64 / floor.max(1) as f64));
        writeln!(
            out,
            "| {} | {} | {:.0} | {} | {} | {} | {} | {} | {} | {} |",
            row.system.name(),
            row.system.fsync_before_ack(),
            received_per_second(row).unwrap_or(0.0),
            latency(us(summary, "send", "p50_us")),
            latency(us(summary, "send", "p99_us")),
            latency(us(summary, "end_to_end", "p50_us")),
            latency(us(summary, "end_to_end", "p99_us")),
            latency(floor("p50_us")),
            latency(floor("p99_us")),
            ratio.unwrap_or_else(|| "–".to_owned()),
        )
        .ok();
    }
    out.push('\n');
}

/// A fan-out section: publishes, what they put into the queues, what consumers took out.
fn fanout_rows(out: &mut String, rows: &[&Outcome], subscribers: usize) {
    out.push_str("| system | fsync before ack | published msgs/s | into queues msgs/s | received msgs/s | e2e p50 | e2e p99 | e2e p99.9 | e2e max | publish p50 | publish p99 | Sluice ÷ peer: deliveries | Sluice ÷ peer: p99 |\n");
    out.push_str("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n");
    // Deliveries: what reached the subscribers (received), or without consumers what the
    // publishes put into them; p99: end to end, or without consumers the publish's.
    let measure = |summary: &Value| -> (f64, Option<u64>) {
        let published = summary.get("sent_per_second").and_then(Value::as_f64).unwrap_or(0.0);
        let received = summary.get("received_per_second").and_then(Value::as_f64).unwrap_or(0.0);
        if received > 0.0 {
            (received, us(summary, "end_to_end", "p99_us"))
        } else {
            (published * subscribers as f64, us(summary, "send", "p99_us"))
        }
    };
    let sluice = rows.iter().find(|o| o.system == System::SluiceFsyncAlways).and_then(|o| o.summary.as_ref()).map(measure);
    for row in rows {
        let Some(summary) = &row.summary else {
            unmeasured_row(out, row, "not run", 10);
            continue;
        };
        let published = summary.get("sent_per_second").and_then(Value::as_f64).unwrap_or(0.0);
        let received = received_per_second(row).unwrap_or(0.0);
        // Without consumers there is no end-to-end latency to show.
        let e2e = |key: &str| if received > 0.0 { latency(us(summary, "end_to_end", key)) } else { "–".into() };
        let (deliveries, p99) = measure(summary);
        let ratio = |r: Option<f64>| ratio_cell(row.system, r);
        let ratio_deliveries = sluice.map(|(s, _)| s / deliveries.max(1e-9));
        let ratio_p99 = sluice.and_then(|(_, s)| s).zip(p99).map(|(s, p)| p as f64 / s.max(1) as f64);
        writeln!(
            out,
            "| {} | {} | {:.0} | {:.0} | {:.0} | {} | {} | {} | {} | {} | {} | {} | {} |",
            row.system.name(),
            row.system.fsync_before_ack(),
            published,
            published * subscribers as f64,
            received,
            e2e("p50_us"),
            e2e("p99_us"),
            e2e("p999_us"),
            e2e("max_us"),
            latency(us(summary, "send", "p50_us")),
            latency(us(summary, "send", "p99_us")),
            ratio(ratio_deliveries),
            ratio(ratio_p99),
        )
        .ok();
    }
    out.push('\n');
}

/// A stream section: records put (and MB/s), and what the push consumers read.
fn stream_rows(out: &mut String, rows: &[&Outcome], shards: usize, readers: usize) {
    out.push_str("| system | fsync before ack | shards | readers per shard | put records/s | put MB/s | read records/s | read MB/s | put p50 | put p99 | e2e p50 | e2e p99 | e2e p99.9 | Sluice ÷ peer: put | Sluice ÷ peer: read |\n");
    out.push_str("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n");
    let rate = |summary: &Value, key: &str| summary.get(key).and_then(Value::as_f64).unwrap_or(0.0);
    let sluice = rows.iter().find(|o| o.system == System::SluiceFsyncAlways).and_then(|o| o.summary.as_ref());
    for row in rows {
        let Some(summary) = &row.summary else {
            writeln!(
                out,
                "| {} | {} | {shards} | {readers} | not run: {} | | | | | | | | |",
                row.system.name(),
                row.system.fsync_before_ack(),
                row.note.as_deref().unwrap_or("?")
            )
            .ok();
            continue;
        };
        let number = |key: &str| rate(summary, key);
        let e2e = |key: &str| if readers > 0 { latency(us(summary, "end_to_end", key)) } else { "–".into() };
        let ratio = |key: &str| {
            ratio_cell(row.system, sluice.map(|s| rate(s, key) / rate(summary, key).max(1e-9)).filter(|_| rate(summary, key) > 0.0))
        };
        writeln!(
            out,
            "| {} | {} | {shards} | {readers} | {:.0} | {:.1} | {:.0} | {:.1} | {} | {} | {} | {} | {} | {} | {} |",
            row.system.name(),
            row.system.fsync_before_ack(),
            number("sent_per_second"),
            number("sent_mb_per_second"),
            number("received_per_second"),
            number("received_mb_per_second"),
            latency(us(summary, "send", "p50_us")),
            latency(us(summary, "send", "p99_us")),
            e2e("p50_us"),
            e2e("p99_us"),
            e2e("p999_us"),
            ratio("sent_per_second"),
            ratio("received_per_second"),
        )
        .ok();
    }
    out.push('\n');
}

/// Puts `table` at the top of `results/README.md`, replacing the previous latest run.
pub fn update_readme(results: &Path, stamp: &str, table: &str) -> Result<(), String> {
    let path = results.join("README.md");
    let readme = std::fs::read_to_string(&path).unwrap_or_else(|_| "# Recorded measurements\n\n".into());
    let block = format!("{BEGIN}\n{table}{END}\n");
    let updated = match (readme.find(BEGIN), readme.find(END)) {
        (Some(begin), Some(end)) if begin < end => {
            format!("{}{block}{}", &readme[..begin], &readme[end + END.len()..].trim_start_matches('\n'))
        }
        _ => {
            // First run: the block goes after the title and its first paragraph.
            let at =
                readme.find("\n\n").map(|i| readme[i + 2..].find("\n\n").map_or(readme.len(), |j| i + 2 + j + 2)).unwrap_or(readme.len());
            format!("{}{block}\n{}", &readme[..at], &readme[at..])
        }
    };
    std::fs::write(&path, updated).map_err(|e| format!("writing {}: {e}", path.display()))?;
    eprintln!("sluice-bench: results/README.md now shows {stamp}");
    Ok(())
}
