//! The metadata file: shard 0's registry (queues, attributes, tags, recent
//! deletions and purges) as one JSON document, replaced atomically on every
//! change (written to a temporary file, synced, renamed over the old one, and the
//! directory synced). Metadata changes are rare and small next to messages, so a
//! whole-file rewrite keeps recovery trivial: the file is either the old or the new one.
//!
//! The file also records how many shards wrote the data directory: queue logs are
//! per shard and receipt handles name shards, so a directory is only reopened with
//! the same number of shards.

use std::path::{Path, PathBuf};

use glommio::io::{BufferedFile, Directory};
use serde_json::Value;

use super::log::StorageError;

const FILE_NAME: &str = "meta.json";
const FORMAT: u64 = 1;

fn io_error(path: &Path, error: impl Into<std::io::Error>) -> StorageError {
    StorageError::Io { path: path.to_path_buf(), source: std::sync::Arc::new(error.into()) }
}

pub fn path(data_dir: &Path) -> PathBuf {
    data_dir.join(FILE_NAME)
}

/// Reads the metadata file, if there is one, checking its format and shard count.
/// Returns the registry document inside it.
pub fn load(data_dir: &Path, shards: usize) -> Result<Option<Value>, String> {
    let path = path(data_dir);
    let text = match std::fs::read(&path) {
        Ok(text) => text,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            check_no_foreign_shards(data_dir, shards)?;
            return Ok(None);
        }
        Err(error) => return Err(format!("{}: {error}", path.display())),
    };
    let document: Value = serde_json::from_slice(&text).map_err(|e| format!("{} is not valid JSON: {e}", path.display()))?;
    if document["format"].as_u64() != Some(FORMAT) {
        return Err(format!("{} has an unknown format {} (this sluiced reads format {FORMAT})", path.display(), document["format"]));
    }
    let written_by = document["shards"].as_u64().ok_or_else(|| format!("{} does not say how many shards wrote it", path.display()))?;
    if written_by != shards as u64 {
        return Err(format!(
            "{} was written by {written_by} shards and this start has {shards}: start with --cores {written_by} \
             (a data directory keeps one log per shard, and receipt handles name shards)",
            data_dir.display()
        ));
    }
    check_no_foreign_shards(data_dir, shards)?;
    Ok(Some(document["registry"].clone()))
}

fn check_no_foreign_shards(data_dir: &Path, shards: usize) -> Result<(), String> {
    let Ok(entries) = std::fs::read_dir(data_dir) else { return Ok(()) };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(index) = name.to_str().and_then(|n| n.strip_prefix("shard-")).and_then(|n| n.parse::<usize>().ok()) else { continue };
        if index >= shards {
            return Err(format!(
                "{} holds a log of shard {index}, but this start has {shards} shards: start with the --cores it was written with",
                data_dir.display()
            ));
        }
    }
    Ok(())
}

/// Replaces the metadata file with `registry`'s document; durable when this returns.
pub async fn save(data_dir: &Path, shards: usize, registry: Value) -> Result<(), StorageError> {
    let document = serde_json::json!({ "format": FORMAT, "shards": shards, "registry": registry });
    let encode = || serde_json::to_vec_pretty(&document).map_err(|e| io_error(data_dir, std::io::Error::other(e)));
    let bytes = encode()?;
    let final_path = path(data_dir);
    let temporary = data_dir.join(format!("{FILE_NAME}.tmp"));
    let file = BufferedFile::create(&temporary).await.map_err(|e| io_error(&temporary, e))?;
    // A short write goes on from where it stopped (the rest encoded again: the same bytes);
    // one that makes no progress fails.
    let len = bytes.len();
    let mut done = file.write_at(bytes, 0).await.map_err(|e| io_error(&temporary, e))?;
    while done < len {
        let rest = encode()?.split_off(done);
        match file.write_at(rest, done as u64).await.map_err(|e| io_error(&temporary, e))? {
            0 => {
                let short = std::io::Error::new(std::io::ErrorKind::WriteZero, format!("short write: {done} of {len} bytes"));
                return Err(io_error(&temporary, short));
            }
            more => done += more,
        }
    }
    file.fdatasync().await.map_err(|e| io_error(&temporary, e))?;
    file.close().await.map_err(|e| io_error(&temporary, e))?;
    glommio::io::rename(&temporary, &final_path).await.map_err(|e| io_error(&final_path, e))?;
    let directory = Directory::open(data_dir).await.map_err(|e| io_error(data_dir, e))?;
    directory.sync().await.map_err(|e| io_error(data_dir, e))?;
    Ok(())
}
