//! Object keys as Firehose lays them out: the prefix (its `!{…}` expressions evaluated, or
//! `YYYY/MM/DD/HH/` appended when it has none), then
//! `<stream>-<version>-<YYYY-MM-DD-HH-MM-SS>-<random>` and the compression's extension (or the
//! configured `FileExtension`). Times are the UTC arrival time of the object's first record.

pub use crate::catalog::firehose::Utc;
use crate::catalog::firehose::{parse_prefix, DeliveryStreamMeta, PartitionKeys, PrefixPart, S3Destination, TimePart};
use crate::catalog::topics::random_uuid;

fn time_text(parts: &[TimePart], utc: Utc, out: &mut String) {
    use std::fmt::Write;
    for part in parts {
        // Writing to a String cannot fail.
        let _ = match part {
            TimePart::Text(text) => write!(out, "{text}"),
            TimePart::Year => write!(out, "{:04}", utc.year),
            TimePart::ShortYear => write!(out, "{:02}", utc.year % 100),
            TimePart::Month => write!(out, "{:02}", utc.month),
            TimePart::Day => write!(out, "{:02}", utc.day),
            TimePart::Hour => write!(out, "{:02}", utc.hour),
            TimePart::Minute => write!(out, "{:02}", utc.minute),
            TimePart::Second => write!(out, "{:02}", utc.second),
        };
    }
}

/// The prefix `prefix` evaluated for an object whose first record arrived at `utc`;
/// `error_type` fills `!{firehose:error-output-type}`, `keys` the partition keys.
pub fn evaluate_prefix(prefix: &str, utc: Utc, error_type: &str, keys: &PartitionKeys) -> String {
    // Prefixes are checked when configured; one that no longer parses is used as written.
    let Ok(parts) = parse_prefix(prefix) else { return prefix.to_owned() };
    let mut out = String::with_capacity(prefix.len() + 16);
    let mut expressions = false;
    for part in &parts {
        match part {
            PrefixPart::Text(text) => out.push_str(text),
            PrefixPart::Timestamp(pattern) => {
                expressions = true;
                time_text(pattern, utc, &mut out);
            }
            PrefixPart::RandomString => {
                expressions = true;
                out.push_str(&random_uuid()[..11]);
            }
            PrefixPart::ErrorOutputType => {
                expressions = true;
                out.push_str(error_type);
            }
            PrefixPart::PartitionKey { lambda, name } => {
                expressions = true;
                let from = if *lambda { &keys.lambda } else { &keys.query };
                // Records without the key are held back before this (`partitioning-failed`).
                out.push_str(from.get(name).map_or("", String::as_str));
            }
        }
    }
    if !expressions {
        time_text(
            &[
                TimePart::Year,
                TimePart::Text("/".into()),
                TimePart::Month,
                TimePart::Text("/".into()),
                TimePart::Day,
                TimePart::Text("/".into()),
                TimePart::Hour,
                TimePart::Text("/".into()),
            ],
            utc,
            &mut out,
        );
    }
    out
}

/// The key of a delivered object (`error_type` set: under the error output prefix, for
/// records that failed with that kind of error).
pub fn object_key(
    meta: &DeliveryStreamMeta,
    s3: &S3Destination,
    arrival_ms: u64,
    error_type: Option<&str>,
    keys: &PartitionKeys,
) -> String {
    let utc = Utc::of_ms(arrival_ms);
    let mut key = match error_type {
        None => evaluate_prefix(&s3.prefix, utc, "", keys),
        Some(kind) if s3.error_output_prefix.is_empty() => evaluate_prefix(&format!("{kind}/"), utc, kind, keys),
        Some(kind) => evaluate_prefix(&s3.error_output_prefix, utc, kind, keys),
    };
    key.push_str(&object_name(meta, utc));
    key.push_str(if s3.file_extension.is_empty() { s3.compression.extension() } else { &s3.file_extension });
    key
}

/// Where the COPY manifest of a load skipped after its retry duration goes (as Firehose's
/// Redshift destination: `errors/manifests/YYYY/MM/DD/HH/<stream>-<version>-<time>-<random>`).
pub fn manifest_key(meta: &DeliveryStreamMeta, arrival_ms: u64) -> String {
    let utc = Utc::of_ms(arrival_ms);
    let mut key = evaluate_prefix("errors/manifests/", utc, "", &PartitionKeys::default());
    key.push_str(&object_name(meta, utc));
    key
}

/// An object's name after its prefix: `<stream>-<version>-<YYYY-MM-DD-HH-MM-SS>-<random>`, the
/// random part of a UUID's form, as Firehose's.
fn object_name(meta: &DeliveryStreamMeta, utc: Utc) -> String {
    let stamp = format!("{:04}-{:02}-{:02}-{:02}-{:02}-{:02}", utc.year, utc.month, utc.day, utc.hour, utc.minute, utc.second);
    format!("{}-{}-{stamp}-{}", meta.name, meta.version, random_uuid())
}

#[cfg(test)]
mod tests {
    use super::*;

    // 2026-12-07T13:45:29Z
    const MS: u64 = 1_796_651_129_000;

    #[test]
    fn times_are_utc_parts() {
        assert_eq!(Utc::of_ms(MS), Utc { year: 2026, month: 12, day: 7, hour: 13, minute: 45, second: 29 });
    }

    #[test]
    fn a_prefix_without_expressions_gets_the_hour_folders() {
        assert_eq!(evaluate_prefix("app/", Utc::of_ms(MS), "", &PartitionKeys::default()), "app/2026/12/07/13/");
        assert_eq!(evaluate_prefix("", Utc::of_ms(MS), "", &PartitionKeys::default()), "2026/12/07/13/");
    }

    #[test]
    fn expressions_are_evaluated_and_replace_the_hour_folders() {
        let prefix = "logs/year=!{timestamp:yyyy}/month=!{timestamp:MM}/!{timestamp:'day='dd}/";
        assert_eq!(evaluate_prefix(prefix, Utc::of_ms(MS), "", &PartitionKeys::default()), "logs/year=2026/month=12/day=07/");
        assert_eq!(
            evaluate_prefix("err/!{firehose:error-output-type}/", Utc::of_ms(MS), "processing-failed", &PartitionKeys::default()),
            "err/processing-failed/"
        );
    }
}
