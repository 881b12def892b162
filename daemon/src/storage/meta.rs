//! The metadata: shard 0's registry (queues, topics, streams, recent deletions and
//! purges, stream consumer groups' checkpoints, alarms), kept as a full document (`meta.json`) and a
//! journal of changes after it (`meta.journal.N`). A change appends what it changed — the
//! scalars and each queue, topic, stream or checkpoint it added, changed or removed, whole — and syncs: it costs what it changes, not
//! what the server holds. Once the journal outgrows the full document (and 1 MiB), the
//! next change writes a new full document instead (to a temporary file, synced, renamed
//! over the old one, the directory synced), which names the next journal; the old journal
//! is removed after. A start reads the full document and applies its journal's entries in
//! order: an entry cut short at the end (a crash during its write, never acknowledged) is
//! dropped; a damaged entry with more after it refuses the start, naming the file.
//!
//! The document also records how many shards wrote the data directory: queue logs are
//! per shard and receipt handles name shards, so a directory is only reopened with
//! the same number of shards.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use glommio::io::{BufferedFile, Directory, OpenOptions};
use serde_json::Value;

use super::log::StorageError;

const FILE_NAME: &str = "meta.json";
const JOURNAL_PREFIX: &str = "meta.journal.";
/// Format 2 adds the journal; format 1 files (no journal) are read as its generation 0.
const FORMAT: u64 = 2;
/// The journal is folded into a new full document once it is larger than the document and than this.
const JOURNAL_BYTES_MIN: u64 = 1 << 20;
/// Bytes before each journal entry: its length and CRC-32 (both u32, little-endian).
const ENTRY_HEADER_BYTES: usize = 8;

fn io_error(path: &Path, error: impl Into<std::io::Error>) -> StorageError {
    StorageError::Io { path: path.to_path_buf(), source: std::sync::Arc::new(error.into()) }
}

pub fn path(data_dir: &Path) -> PathBuf {
    data_dir.join(FILE_NAME)
}

fn journal_path(data_dir: &Path, generation: u64) -> PathBuf {
    data_dir.join(format!("{JOURNAL_PREFIX}{generation}"))
}

/// Where the journal stood when the metadata was read: what shard 0 needs to go on writing.
#[derive(Debug, Clone, Copy, Default)]
pub struct JournalPosition {
    /// The journal the full document names.
    pub generation: u64,
    /// Bytes of whole entries in it (a torn last entry is cut back to here before the next write).
    pub len: u64,
    /// Bytes of the full document.
    pub document_len: u64,
    /// Whether the full document is of this version's format (one of an older version is
    /// rewritten at the first change, so that no older version reads it without its journal).
    pub current_format: bool,
}

/// The metadata as read at start: the registry document with the journal applied.
pub struct Loaded {
    pub registry: Value,
    pub position: JournalPosition,
}

/// Reads the metadata, if there is any, checking its format and shard count, and applies
/// the journal. Returns the registry document.
pub fn load(data_dir: &Path, shards: usize) -> Result<Option<Loaded>, String> {
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
    if !matches!(document["format"].as_u64(), Some(1) | Some(FORMAT)) {
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
    let generation = document["journal"].as_u64().unwrap_or(0);
    let current_format = document["format"].as_u64() == Some(FORMAT);
    let mut position = JournalPosition { generation, len: 0, document_len: text.len() as u64, current_format };
    let mut registry = document["registry"].clone();
    let journal = journal_path(data_dir, generation);
    match std::fs::read(&journal) {
        Ok(bytes) => {
            let (applied, len) = apply_journal(registry, &bytes).map_err(|reason| format!("{}: {reason}", journal.display()))?;
            registry = applied;
            position.len = len;
        }
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
        Err(error) => return Err(format!("{}: {error}", journal.display())),
    }
    Ok(Some(Loaded { registry, position }))
}

/// Applies a journal's entries to a registry document; returns the document and the bytes of
/// the whole entries (what `load` does; public for the fuzz targets: the disk is not trusted).
pub fn apply_journal(document: Value, journal: &[u8]) -> Result<(Value, u64), String> {
    if !document.is_object() {
        return Err("the registry is not a JSON object".into());
    }
    let mut entries = Entries::of(&document)?;
    let len = replay(journal, |delta| entries.apply(delta))?;
    Ok((entries.into_document(document), len))
}

/// Applies one change (a `Registry::delta_json` output) to a registry document: what a cluster
/// node does with each change the metadata group commits (`cluster::machine`).
pub fn merge(document: Value, delta: &Value) -> Result<Value, String> {
    if !document.is_object() || !delta.is_object() {
        return Err("a registry document and a change are JSON objects".into());
    }
    let mut entries = Entries::of(&document)?;
    entries.apply(delta)?;
    Ok(entries.into_document(document))
}

/// Applies every whole entry of a journal, in order, and returns the bytes they take. An
/// entry cut short by the end of the file is a write that never finished; a damaged entry
/// with bytes after it is damage, and refused.
fn replay(bytes: &[u8], mut apply: impl FnMut(&Value) -> Result<(), String>) -> Result<u64, String> {
    let mut at = 0usize;
    while at < bytes.len() {
        let Some(header) = bytes.get(at..at + ENTRY_HEADER_BYTES) else { break };
        let len = u32::from_le_bytes([header[0], header[1], header[2], header[3]]) as usize;
        let crc = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
        let end = at + ENTRY_HEADER_BYTES + len;
        if len == 0 && crc == 0 && bytes[at..].iter().all(|b| *b == 0) {
            break;
        }
        let Some(body) = bytes.get(at + ENTRY_HEADER_BYTES..end) else { break };
        if crc32fast::hash(body) != crc {
            if end >= bytes.len() {
                break;
            }
            return Err(format!("the entry at offset {at} is damaged and entries follow it"));
        }
        let delta: Value = serde_json::from_slice(body).map_err(|e| format!("the entry at offset {at} is not valid JSON: {e}"))?;
        apply(&delta).map_err(|reason| format!("the entry at offset {at}: {reason}"))?;
        at = end;
    }
    Ok(at as u64)
}

/// A registry document's queues, topics and streams by name, for applying journal entries.
struct Entries {
    kinds: [BTreeMap<String, Value>; KINDS.len()],
    scalars: Option<Value>,
    /// The sections written whole (`WHOLE`), as the last entry that changed each wrote it.
    whole: BTreeMap<&'static str, Value>,
}

/// What the journal writes item by item (each keyed by its `name`): a stream consumer group's
/// checkpoint is one item, so a checkpoint costs what it changes.
const KINDS: [&str; 6] = ["queues", "topics", "streams", "checkpoints", "alarms", "delivery_streams"];
/// Sections an entry writes whole when they change (the key service's keys, message move tasks).
const WHOLE: [&str; 2] = ["kms", "moves"];

impl Entries {
    fn of(document: &Value) -> Result<Entries, String> {
        let mut kinds: [BTreeMap<String, Value>; KINDS.len()] = Default::default();
        for (kind, map) in KINDS.iter().zip(kinds.iter_mut()) {
            for item in document[*kind].as_array().into_iter().flatten() {
                let name = item["name"].as_str().ok_or_else(|| format!("an item of {kind} has no name"))?;
                map.insert(name.to_owned(), item.clone());
            }
        }
        Ok(Entries { kinds, scalars: None, whole: BTreeMap::new() })
    }

    fn apply(&mut self, delta: &Value) -> Result<(), String> {
        for (kind, map) in KINDS.iter().zip(self.kinds.iter_mut()) {
            let change = &delta[*kind];
            for name in change["removed"].as_array().into_iter().flatten() {
                map.remove(name.as_str().ok_or("a removed name is not a string")?);
            }
            for item in change["put"].as_array().into_iter().flatten() {
                let name = item["name"].as_str().ok_or_else(|| format!("an item of {kind} has no name"))?;
                map.insert(name.to_owned(), item.clone());
            }
        }
        for section in WHOLE {
            if !delta[section].is_null() {
                self.whole.insert(section, delta[section].clone());
            }
        }
        self.scalars = Some(delta.clone());
        Ok(())
    }

    fn into_document(self, mut document: Value) -> Value {
        if let Some(scalars) = self.scalars {
            for key in ["version", "next_id", "deleted_at_ms", "purged_at_ms"] {
                document[key] = scalars[key].clone();
            }
            // A cluster node's place in the metadata group's log (`cluster::machine`).
            if !scalars["cluster"].is_null() {
                document["cluster"] = scalars["cluster"].clone();
            }
        }
        for (kind, map) in KINDS.iter().zip(self.kinds) {
            document[*kind] = Value::Array(map.into_values().collect());
        }
        for (section, value) in self.whole {
            document[section] = value;
        }
        document
    }
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

/// Shard 0's writer of the metadata: appends each change to the journal, and folds the
/// journal into a new full document once it has grown past it. Used one change at a time.
pub struct MetaWriter {
    data_dir: PathBuf,
    shards: usize,
    state: RefCell<WriterState>,
}

struct WriterState {
    position: JournalPosition,
    /// Whether a full document exists (none before the first change).
    document: bool,
    journal: Option<Rc<BufferedFile>>,
}

impl MetaWriter {
    /// A writer going on from `position` (`None`: nothing written yet). Removes journals the
    /// full document does not name (left by a crash right after a new document was written).
    pub fn new(data_dir: &Path, shards: usize, position: Option<JournalPosition>) -> MetaWriter {
        let current = position.map(|position| position.generation);
        for entry in std::fs::read_dir(data_dir).into_iter().flatten().flatten() {
            let name = entry.file_name();
            let generation = name.to_str().and_then(|name| name.strip_prefix(JOURNAL_PREFIX)?.parse::<u64>().ok());
            if generation.is_some() && generation != current {
                if let Err(error) = std::fs::remove_file(entry.path()) {
                    tracing::warn!(file = %entry.path().display(), %error, "cannot remove a stale metadata journal");
                }
            }
        }
        let state = WriterState { position: position.unwrap_or_default(), document: position.is_some(), journal: None };
        MetaWriter { data_dir: data_dir.to_owned(), shards, state: RefCell::new(state) }
    }

    /// Records one change, durably when this returns: `delta` (`Registry::delta_json`) goes to
    /// the journal, or, once the journal has outgrown the full document, `full()` (the whole
    /// registry after the change) becomes the new full document.
    pub async fn record(&self, delta: Value, full: impl FnOnce() -> Value) -> Result<(), StorageError> {
        let body = serde_json::to_vec(&delta).map_err(|e| io_error(&self.data_dir, std::io::Error::other(e)))?;
        let position = self.state.borrow().position;
        let grown = position.len + (ENTRY_HEADER_BYTES + body.len()) as u64;
        let fold = !position.current_format || grown > position.document_len.max(JOURNAL_BYTES_MIN);
        if !self.state.borrow().document || fold {
            return self.rewrite(full()).await;
        }
        let path = journal_path(&self.data_dir, position.generation);
        let file = self.journal(&path, position.len).await?;
        let failed = |error: StorageError| {
            // What is on disk past the last whole entry is unknown: reopen (and cut) next time.
            self.state.borrow_mut().journal = None;
            error
        };
        write_all(&file, &path, position.len, || entry(&body)).await.map_err(failed)?;
        file.fdatasync().await.map_err(|e| failed(io_error(&path, e)))?;
        self.state.borrow_mut().position.len = grown;
        Ok(())
    }

    /// The open journal, opened (and cut back to `len`, past a torn entry) if need be.
    async fn journal(&self, path: &Path, len: u64) -> Result<Rc<BufferedFile>, StorageError> {
        if let Some(file) = self.state.borrow().journal.clone() {
            return Ok(file);
        }
        let existed = path.exists();
        let file = OpenOptions::new().read(true).write(true).create(true).buffered_open(path).await.map_err(|e| io_error(path, e))?;
        if file.file_size().await.map_err(|e| io_error(path, e))? > len {
            file.truncate(len).await.map_err(|e| io_error(path, e))?;
        }
        if !existed {
            // The new file's name must outlive a crash as much as what is written in it.
            file.fdatasync().await.map_err(|e| io_error(path, e))?;
            sync_dir(&self.data_dir).await?;
        }
        let file = Rc::new(file);
        self.state.borrow_mut().journal = Some(file.clone());
        Ok(file)
    }

    /// Writes `registry` as the new full document, naming the next journal, and removes the old journal.
    async fn rewrite(&self, registry: Value) -> Result<(), StorageError> {
        let (old, document_existed) = {
            let state = self.state.borrow();
            (state.position.generation, state.document)
        };
        let generation = if document_existed { old + 1 } else { old };
        let document = serde_json::json!({ "format": FORMAT, "shards": self.shards, "journal": generation, "registry": registry });
        let document_len = save(&self.data_dir, &document).await?;
        drop(self.state.borrow_mut().journal.take());
        if generation != old {
            let stale = journal_path(&self.data_dir, old);
            if let Err(error) = glommio::io::remove(&stale).await {
                if stale.exists() {
                    tracing::warn!(file = %stale.display(), %error, "cannot remove a metadata journal folded into meta.json");
                }
            }
        }
        let mut state = self.state.borrow_mut();
        state.position = JournalPosition { generation, len: 0, document_len, current_format: true };
        state.document = true;
        Ok(())
    }
}

/// A journal entry: the body's length and CRC-32, then the body.
fn entry(body: &[u8]) -> Vec<u8> {
    let mut entry = Vec::with_capacity(ENTRY_HEADER_BYTES + body.len());
    entry.extend_from_slice(&(body.len() as u32).to_le_bytes());
    entry.extend_from_slice(&crc32fast::hash(body).to_le_bytes());
    entry.extend_from_slice(body);
    entry
}

/// Writes the bytes `make` gives at `offset`. A short write goes on from where it stopped
/// (with the rest of the bytes `make` gives again: no copy is kept for the rare case); one
/// that makes no progress fails.
async fn write_all(file: &BufferedFile, path: &Path, offset: u64, make: impl Fn() -> Vec<u8>) -> Result<(), StorageError> {
    let bytes = make();
    let len = bytes.len();
    let mut done = file.write_at(bytes, offset).await.map_err(|e| io_error(path, e))?;
    while done < len {
        let mut rest = make();
        if rest.len() != len {
            return Err(io_error(path, std::io::Error::other("the bytes to write changed during a short write")));
        }
        match file.write_at(rest.split_off(done), offset + done as u64).await.map_err(|e| io_error(path, e))? {
            0 => {
                let short = std::io::Error::new(std::io::ErrorKind::WriteZero, format!("short write: {done} of {len} bytes"));
                return Err(io_error(path, short));
            }
            more => done += more,
        }
    }
    Ok(())
}

async fn sync_dir(dir: &Path) -> Result<(), StorageError> {
    let directory = Directory::open(dir).await.map_err(|e| io_error(dir, e))?;
    directory.sync().await.map_err(|e| io_error(dir, e))
}

/// Replaces the full document with `document`; durable when this returns. Returns its size.
async fn save(data_dir: &Path, document: &Value) -> Result<u64, StorageError> {
    let bytes = serde_json::to_vec_pretty(document).map_err(|e| io_error(data_dir, std::io::Error::other(e)))?;
    let len = bytes.len() as u64;
    let final_path = path(data_dir);
    let temporary = data_dir.join(format!("{FILE_NAME}.tmp"));
    let file = BufferedFile::create(&temporary).await.map_err(|e| io_error(&temporary, e))?;
    // The document encodes to the same bytes again should a short write need the rest.
    let first = std::cell::Cell::new(Some(bytes));
    write_all(&file, &temporary, 0, || first.take().unwrap_or_else(|| serde_json::to_vec_pretty(document).unwrap_or_default())).await?;
    file.fdatasync().await.map_err(|e| io_error(&temporary, e))?;
    file.close().await.map_err(|e| io_error(&temporary, e))?;
    glommio::io::rename(&temporary, &final_path).await.map_err(|e| io_error(&final_path, e))?;
    sync_dir(data_dir).await?;
    Ok(len)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn entry_of(delta: &Value) -> Vec<u8> {
        entry(&serde_json::to_vec(delta).unwrap())
    }

    fn delta(version: u64, put: &[&str], removed: &[&str]) -> Value {
        let put: Vec<Value> = put.iter().map(|name| json!({ "name": name, "version": version })).collect();
        json!({ "version": version, "next_id": version + 10, "deleted_at_ms": {}, "purged_at_ms": {},
                "queues": { "put": put, "removed": removed } })
    }

    #[test]
    fn entries_apply_in_order_and_a_torn_last_one_is_dropped() {
        let document = json!({ "version": 1, "next_id": 5, "queues": [{ "name": "a" }, { "name": "b" }], "topics": [], "streams": [] });
        let mut journal = entry_of(&delta(2, &["c"], &["a"]));
        journal.extend(entry_of(&delta(3, &["b"], &[])));
        let whole = journal.len() as u64;
        let torn = entry_of(&delta(4, &["d"], &[]));
        journal.extend_from_slice(&torn[..torn.len() - 3]);
        let mut entries = Entries::of(&document).unwrap();
        assert_eq!(replay(&journal, |delta| entries.apply(delta)).unwrap(), whole);
        let after = entries.into_document(document);
        assert_eq!(after["version"], 3);
        assert_eq!(after["next_id"], 13);
        let names: Vec<&str> = after["queues"].as_array().unwrap().iter().map(|q| q["name"].as_str().unwrap()).collect();
        assert_eq!(names, ["b", "c"]);
        assert_eq!(after["queues"][0]["version"], 3, "b as the later entry put it");
    }

    #[test]
    fn every_kind_the_journal_writes_item_by_item_is_read_back() {
        // Each kind once in the document and once in an entry: all of them after the replay.
        let mut document = json!({ "version": 1, "next_id": 5 });
        let mut change = delta(2, &[], &[]);
        for kind in KINDS {
            document[kind] = json!([{ "name": format!("{kind}-old") }]);
            change[kind] = json!({ "put": [{ "name": format!("{kind}-new") }], "removed": [] });
        }
        let mut entries = Entries::of(&document).unwrap();
        replay(&entry_of(&change), |delta| entries.apply(delta)).unwrap();
        let after = entries.into_document(document);
        for kind in KINDS {
            let names: Vec<&str> = after[kind].as_array().unwrap().iter().map(|item| item["name"].as_str().unwrap()).collect();
            assert_eq!(names, [format!("{kind}-new"), format!("{kind}-old")], "{kind}");
        }
    }

    #[test]
    fn the_key_section_is_the_last_entry_that_wrote_it() {
        let document = json!({ "version": 1, "next_id": 5, "queues": [], "topics": [], "streams": [], "kms": { "keys": ["k0"] } });
        let mut with_keys = delta(2, &[], &[]);
        with_keys["kms"] = json!({ "keys": ["k0", "k1"] });
        let mut journal = entry_of(&with_keys);
        journal.extend(entry_of(&delta(3, &["q"], &[])));
        let mut entries = Entries::of(&document).unwrap();
        replay(&journal, |delta| entries.apply(delta)).unwrap();
        let after = entries.into_document(document);
        assert_eq!(after["kms"]["keys"], json!(["k0", "k1"]), "an entry without keys leaves them as the one before wrote them");
    }

    #[test]
    fn a_registry_that_is_not_an_object_is_refused_not_a_panic() {
        // Found by the stored_data fuzz target: a damaged meta.json panicked the start.
        for document in [json!(1), json!([]), json!("x"), Value::Null] {
            assert!(apply_journal(document, b"").is_err());
        }
    }

    #[test]
    fn a_damaged_entry_with_entries_after_it_is_refused() {
        let mut journal = entry_of(&delta(2, &["a"], &[]));
        let second = journal.len();
        journal.extend(entry_of(&delta(3, &["b"], &[])));
        journal.extend(entry_of(&delta(4, &["c"], &[])));
        journal[second + ENTRY_HEADER_BYTES + 2] ^= 0x20;
        let error = replay(&journal, |_| Ok(())).unwrap_err();
        assert!(error.contains(&format!("offset {second}")), "{error}");
        // The same damage in the last entry is a torn write: the entries before it stand.
        let mut last = entry_of(&delta(2, &["a"], &[]));
        let kept = last.len() as u64;
        last.extend(entry_of(&delta(3, &["b"], &[])));
        let at = kept as usize + ENTRY_HEADER_BYTES + 2;
        last[at] ^= 0x20;
        assert_eq!(replay(&last, |_| Ok(())).unwrap(), kept);
    }
}
