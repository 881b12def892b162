//! What becomes of a batch of records before it is written: the record processors (a
//! delimiter appended to each), then the compression. Runs off the shards (on the delivery
//! thread's blocking pool), as it touches every byte.

use std::io::Write;

use bytes::Bytes;

use std::collections::BTreeMap;

use crate::catalog::firehose::{parse_prefix, Compression, PartitionKeys, PrefixPart, Processor};
use crate::catalog::jq::Query;

/// Bytes Hadoop's block compressor takes at a time (its default buffer size).
const HADOOP_BLOCK: usize = 256 * 1024;

/// The records of a batch one after the other, each followed by `delimiter`.
pub fn join(records: &[Bytes], delimiter: &[u8]) -> Vec<u8> {
    let size = records.iter().map(|record| record.len() + delimiter.len()).sum();
    let mut out = Vec::with_capacity(size);
    for record in records {
        out.extend_from_slice(record);
        out.extend_from_slice(delimiter);
    }
    out
}

/// The delimiter the processors in force append to each record (none: empty).
pub fn delimiter(processors: &[Processor]) -> &[u8] {
    processors
        .iter()
        .find_map(|processor| match processor {
            Processor::AppendDelimiterToRecord { delimiter } => Some(delimiter.as_slice()),
            _ => None,
        })
        .unwrap_or(&[])
}

/// The body of Firehose's HTTP endpoint delivery request, written straight out (no JSON tree
/// per record): `{"requestId", "timestamp", "records": [{"data": base64}]}`, each record with
/// `delimiter` appended before it is encoded.
pub fn http_body(records: &[Bytes], delimiter: &[u8], request_id: &str, timestamp_ms: u64) -> Vec<u8> {
    use base64::Engine;
    let encoded: usize = records.iter().map(|record| (record.len() + delimiter.len()).div_ceil(3) * 4 + 12).sum();
    let mut body = String::with_capacity(encoded + 96);
    // The request id is a UUID: nothing in it needs escaping.
    body.push_str(&format!(r#"{{"requestId":"{request_id}","timestamp":{timestamp_ms},"records":["#));
    let mut scratch = Vec::new();
    for (at, record) in records.iter().enumerate() {
        if at > 0 {
            body.push(',');
        }
        body.push_str(r#"{"data":""#);
        let data: &[u8] = if delimiter.is_empty() {
            record
        } else {
            scratch.clear();
            scratch.extend_from_slice(record);
            scratch.extend_from_slice(delimiter);
            &scratch
        };
        base64::engine::general_purpose::STANDARD.encode_string(data, &mut body);
        body.push_str(r#""}"#);
    }
    body.push_str("]}");
    body.into_bytes()
}

/// Records grouped by their partition keys, and those that have none to give.
pub struct Partitioned {
    pub groups: BTreeMap<PartitionKeys, Vec<Bytes>>,
    pub failed: Vec<(Bytes, String)>,
}

/// Longest partition key value.
const KEY_VALUE_MAX: usize = 512;

/// Groups records by the partition keys `prefix` uses: those `query` takes from each (JSON)
/// record, and those the transformation function gave it. A record that is not JSON, lacks a
/// key, or has a value that cannot be part of an object key (empty, `.` or `..`, a slash,
/// a control character, longer than 512 bytes) fails.
pub fn partition(records: Vec<(Bytes, BTreeMap<String, String>)>, query: Option<&Query>, prefix: &str) -> Partitioned {
    let used: Vec<(bool, String)> = parse_prefix(prefix)
        .unwrap_or_default()
        .into_iter()
        .filter_map(|part| match part {
            PrefixPart::PartitionKey { lambda, name } => Some((lambda, name)),
            _ => None,
        })
        .collect();
    let needs_query = used.iter().any(|(lambda, _)| !lambda);
    let mut out = Partitioned { groups: BTreeMap::new(), failed: Vec::new() };
    for (record, from_lambda) in records {
        match keys_of(&record, from_lambda, query.filter(|_| needs_query), &used) {
            Ok(keys) => out.groups.entry(keys).or_default().push(record),
            Err(why) => out.failed.push((record, why)),
        }
    }
    out
}

fn keys_of(
    record: &[u8],
    mut from_lambda: BTreeMap<String, String>,
    query: Option<&Query>,
    used: &[(bool, String)],
) -> Result<PartitionKeys, String> {
    let mut keys = PartitionKeys::default();
    // Only the keys the prefix uses are evaluated: one it does not use cannot fail a record.
    let parsed = match query {
        Some(_) => Some(serde_json::from_slice::<serde_json::Value>(record).map_err(|e| format!("the record is not JSON: {e}"))?),
        None => None,
    };
    for (lambda, name) in used {
        let value = match (lambda, query.zip(parsed.as_ref())) {
            (true, _) => from_lambda.remove(name).ok_or_else(|| format!("the function gave no partition key {name}"))?,
            (false, Some((query, parsed))) => {
                query.evaluate_key(name, parsed).unwrap_or_else(|| Err(format!("the query names no partition key {name}")))?
            }
            (false, None) => return Err(format!("no query gives the partition key {name}")),
        };
        if value.is_empty()
            || value == "."
            || value == ".."
            || value.len() > KEY_VALUE_MAX
            || value.contains(['/', '\\'])
            || value.chars().any(char::is_control)
        {
            return Err(format!("partition key {name}'s value {value:?} cannot be part of an object key (empty, . or .., a slash, a control character, or longer than {KEY_VALUE_MAX} bytes)"));
        }
        match lambda {
            true => keys.lambda.insert(name.clone(), value),
            false => keys.query.insert(name.clone(), value),
        };
    }
    Ok(keys)
}

/// `data` compressed as `compression`; `entry` names the file inside a ZIP archive.
pub fn compress(data: Vec<u8>, compression: Compression, entry: &str) -> std::io::Result<Vec<u8>> {
    Ok(match compression {
        Compression::Uncompressed => data,
        Compression::Gzip => {
            let mut encoder = flate2::write::GzEncoder::new(Vec::with_capacity(data.len() / 4), flate2::Compression::fast());
            encoder.write_all(&data)?;
            encoder.finish()?
        }
        // The framing format (`.snappy` files Firehose writes with Snappy).
        Compression::Snappy => {
            let mut encoder = snap::write::FrameEncoder::new(Vec::with_capacity(data.len() / 2));
            encoder.write_all(&data)?;
            encoder.into_inner().map_err(|e| std::io::Error::other(e.to_string()))?
        }
        // Hadoop's block format: per block, its length and the compressed chunk's (big-endian),
        // then the raw Snappy chunk.
        Compression::HadoopSnappy => {
            let mut out = Vec::with_capacity(data.len() / 2);
            let mut encoder = snap::raw::Encoder::new();
            for block in data.chunks(HADOOP_BLOCK) {
                let compressed = encoder.compress_vec(block).map_err(|e| std::io::Error::other(e.to_string()))?;
                out.extend_from_slice(&(block.len() as u32).to_be_bytes());
                out.extend_from_slice(&(compressed.len() as u32).to_be_bytes());
                out.extend_from_slice(&compressed);
            }
            out
        }
        Compression::Zip => {
            let mut archive = zip::ZipWriter::new(std::io::Cursor::new(Vec::with_capacity(data.len() / 4)));
            let options = zip::write::SimpleFileOptions::default()
                .compression_method(zip::CompressionMethod::Deflated)
                .large_file(data.len() as u64 >= u32::MAX as u64);
            archive.start_file(entry, options).map_err(std::io::Error::other)?;
            archive.write_all(&data)?;
            archive.finish().map_err(std::io::Error::other)?.into_inner()
        }
    })
}

#[cfg(test)]
mod tests {
    use std::io::Read;

    use super::*;

    #[test]
    fn records_are_grouped_by_the_keys_the_prefix_uses_and_those_without_fail() {
        let query = crate::catalog::jq::parse("{customer: .c, unused: .u}").unwrap();
        let records: Vec<(Bytes, BTreeMap<String, String>)> = [
            (r#"{"c":"a","u":1}"#, Some("x")),
            (r#"{"c":"b","u":2}"#, Some("x")),
            (r#"{"c":"a","u":3}"#, Some("x")),
            (r#"{"c":"../etc"}"#, Some("x")),
            (r#"not json"#, Some("x")),
            (r#"{"c":"a"}"#, None),
        ]
        .into_iter()
        .map(|(text, region)| {
            let keys = region.map(|region| BTreeMap::from([("region".to_owned(), region.to_owned())])).unwrap_or_default();
            (Bytes::from(text), keys)
        })
        .collect();
        let out = partition(records, Some(&query), "!{partitionKeyFromQuery:customer}/!{partitionKeyFromLambda:region}/");
        let sizes: Vec<(String, usize)> =
            out.groups.iter().map(|(keys, records)| (keys.query["customer"].clone(), records.len())).collect();
        assert_eq!(sizes, [("a".to_owned(), 2), ("b".to_owned(), 1)]);
        assert!(out.groups.keys().all(|keys| keys.lambda["region"] == "x" && !keys.query.contains_key("unused")));
        let why: Vec<&str> = out.failed.iter().map(|(_, why)| why.as_str()).collect();
        assert_eq!(why.len(), 3);
        assert!(
            why[0].contains("cannot be part of an object key") && why[1].contains("not JSON") && why[2].contains("no partition key region"),
            "{why:?}"
        );
    }

    fn roundtrip(compression: Compression) -> Vec<u8> {
        let data: Vec<u8> = (0..700_000u32).flat_map(|i| (i % 251).to_le_bytes()).collect();
        let packed = compress(data.clone(), compression, "entry").unwrap();
        let unpacked = match compression {
            Compression::Uncompressed => packed,
            Compression::Gzip => {
                let mut out = Vec::new();
                flate2::read::GzDecoder::new(&packed[..]).read_to_end(&mut out).unwrap();
                out
            }
            Compression::Snappy => {
                let mut out = Vec::new();
                snap::read::FrameDecoder::new(&packed[..]).read_to_end(&mut out).unwrap();
                out
            }
            Compression::HadoopSnappy => {
                let (mut out, mut at) = (Vec::new(), 0);
                while at < packed.len() {
                    let raw = u32::from_be_bytes(packed[at..at + 4].try_into().unwrap()) as usize;
                    let len = u32::from_be_bytes(packed[at + 4..at + 8].try_into().unwrap()) as usize;
                    let block = snap::raw::Decoder::new().decompress_vec(&packed[at + 8..at + 8 + len]).unwrap();
                    assert_eq!(block.len(), raw);
                    out.extend_from_slice(&block);
                    at += 8 + len;
                }
                out
            }
            Compression::Zip => {
                let mut archive = zip::ZipArchive::new(std::io::Cursor::new(packed)).unwrap();
                let mut out = Vec::new();
                archive.by_name("entry").unwrap().read_to_end(&mut out).unwrap();
                out
            }
        };
        assert_eq!(unpacked, data, "{compression:?}");
        unpacked
    }

    #[test]
    fn the_http_body_is_the_json_firehose_sends() {
        use base64::Engine;
        let records = [Bytes::from_static(b"one"), Bytes::from_static(b"\x00\xff\"quoted\"")];
        let body: serde_json::Value = serde_json::from_slice(&http_body(&records, b"\n", "id-1", 42)).unwrap();
        assert_eq!((body["requestId"].as_str(), body["timestamp"].as_u64()), (Some("id-1"), Some(42)));
        let decoded: Vec<Vec<u8>> = body["records"]
            .as_array()
            .unwrap()
            .iter()
            .map(|record| base64::engine::general_purpose::STANDARD.decode(record["data"].as_str().unwrap()).unwrap())
            .collect();
        assert_eq!(decoded, vec![b"one\n".to_vec(), b"\x00\xff\"quoted\"\n".to_vec()]);
        let empty: serde_json::Value = serde_json::from_slice(&http_body(&[], b"", "id-2", 1)).unwrap();
        assert_eq!(empty["records"], serde_json::json!([]));
    }

    #[test]
    fn every_compression_decodes_back_to_the_records() {
        for compression in [Compression::Uncompressed, Compression::Gzip, Compression::Snappy, Compression::HadoopSnappy, Compression::Zip]
        {
            roundtrip(compression);
        }
    }
}
