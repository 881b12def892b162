//! What becomes of a batch of records before it is written: the record processors (a
//! delimiter appended to each), then the compression. Runs off the shards (on the delivery
//! thread's blocking pool), as it touches every byte.

use std::io::Write;

use bytes::Bytes;

use crate::catalog::firehose::{Compression, Processor};

/// Bytes Hadoop's block compressor takes at a time (its default buffer size).
const HADOOP_BLOCK: usize = 256 * 1024;

/// The records of a batch one after the other, each followed by the delimiter when the
/// processors in force (`Destination::processors`) append one.
pub fn join(records: &[Bytes], processors: &[Processor]) -> Vec<u8> {
    let delimiter: &[u8] = match processors.first() {
        Some(Processor::AppendDelimiterToRecord { delimiter }) => delimiter,
        _ => &[],
    };
    let size = records.iter().map(|record| record.len() + delimiter.len()).sum();
    let mut out = Vec::with_capacity(size);
    for record in records {
        out.extend_from_slice(record);
        out.extend_from_slice(delimiter);
    }
    out
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
    fn every_compression_decodes_back_to_the_records() {
        for compression in [Compression::Uncompressed, Compression::Gzip, Compression::Snappy, Compression::HadoopSnappy, Compression::Zip]
        {
            roundtrip(compression);
        }
    }
}
