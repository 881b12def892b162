//! Regenerates `protocol/src/generated/` from `protocol/schema/*.fbs` with the
//! flatc vendored by the `flatc` crate (built from source with cmake), so a
//! fresh machine needs no flatc of its own.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The `protocol/` folder of this workspace.
pub fn protocol_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("codegen lives in protocol/").to_path_buf()
}

/// The schema files, sorted by name.
pub fn schema_files() -> std::io::Result<Vec<PathBuf>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(protocol_dir().join("schema"))?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|path| path.extension().is_some_and(|ext| ext == "fbs"))
        .collect();
    files.sort();
    Ok(files)
}

/// Runs flatc over every schema file, writing Rust into `out_dir`.
pub fn generate(out_dir: &Path) -> Result<(), String> {
    let schemas = schema_files().map_err(|e| format!("reading protocol/schema: {e}"))?;
    let status = Command::new(flatc::flatc())
        .arg("--rust")
        .arg("-o")
        .arg(out_dir)
        .args(&schemas)
        .status()
        .map_err(|e| format!("running flatc: {e}"))?;
    if !status.success() {
        return Err(format!("flatc failed: {status}"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Fails when someone edited the schema without regenerating (or edited the
    /// generated code by hand): run `cargo run -p sluice-codegen` and commit.
    #[test]
    fn checked_in_generated_code_matches_schema() {
        let out = std::env::temp_dir().join(format!("sluice-codegen-{}", std::process::id()));
        std::fs::create_dir_all(&out).unwrap();
        generate(&out).unwrap();
        let checked_in = protocol_dir().join("src/generated");
        let mut compared = 0;
        for entry in std::fs::read_dir(&out).unwrap() {
            let fresh = entry.unwrap().path();
            let name = fresh.file_name().unwrap().to_owned();
            let old = std::fs::read_to_string(checked_in.join(&name)).unwrap_or_default();
            let new = std::fs::read_to_string(&fresh).unwrap();
            assert!(old == new, "protocol/src/generated/{} is stale: run `cargo run -p sluice-codegen` and commit", name.to_string_lossy());
            compared += 1;
        }
        assert!(compared > 0, "flatc generated nothing");
        std::fs::remove_dir_all(&out).ok();
    }
}
