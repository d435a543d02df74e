//! Reading the JSON files of a checkpoint, with problems located as byte
//! offsets in the file they came from.

use std::path::Path;

use crate::ir::error::{Error, Result};

/// Reads a whole small file, refusing files larger than `cap` bytes.
pub fn read_capped(path: &Path, cap: u64) -> Result<Vec<u8>> {
    let len = std::fs::metadata(path)
        .map_err(|e| Error::io(path, e))?
        .len();
    if len > cap {
        return Err(Error::parse(
            path,
            0,
            format!("file is {len} bytes, more than the {cap}-byte cap"),
        ));
    }
    std::fs::read(path).map_err(|e| Error::io(path, e))
}

/// Reads and parses a JSON file of at most `cap` bytes, errors located.
pub fn read_json_file(path: &Path, cap: u64) -> Result<serde_json::Value> {
    let text = read_capped(path, cap)?;
    serde_json::from_slice(&text).map_err(|e| parse_error(path, 0, &text, &e))
}

/// A serde_json error as an [`Error::Parse`] at its byte offset in the file,
/// where the JSON text `json` starts at byte `base`.
pub fn parse_error(path: &Path, base: u64, json: &[u8], err: &serde_json::Error) -> Error {
    Error::parse(
        path,
        base + line_column_offset(json, err.line(), err.column()),
        format!("bad JSON: {err}"),
    )
}

/// Byte offset of serde_json's 1-based line and byte column.
fn line_column_offset(json: &[u8], line: usize, column: usize) -> u64 {
    let line_start = if line <= 1 {
        0
    } else {
        json.iter()
            .enumerate()
            .filter(|&(_, &b)| b == b'\n')
            .nth(line - 2)
            .map_or(json.len(), |(i, _)| i + 1)
    };
    (line_start + column.saturating_sub(1)).min(json.len()) as u64
}

/// Byte offset in `json` of the `occurrence`-th (0-based) appearance of `key`
/// as a JSON string, used to point errors at the entry they concern.
pub fn key_offset(json: &[u8], key: &str, occurrence: usize) -> Option<u64> {
    let needle = serde_json::to_string(key).ok()?;
    let needle = needle.as_bytes();
    if needle.len() > json.len() {
        return None;
    }
    json.windows(needle.len())
        .enumerate()
        .filter(|(_, w)| *w == needle)
        .nth(occurrence)
        .map(|(i, _)| i as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serde_positions_become_byte_offsets() {
        let json = b"{\n  \"a\": 1,\n  \"b\": x\n}";
        let err = serde_json::from_slice::<serde_json::Value>(json).unwrap_err();
        let Error::Parse { offset, .. } = parse_error(Path::new("f"), 8, json, &err) else {
            panic!("expected a parse error");
        };
        let x = json.iter().position(|&b| b == b'x').unwrap() as u64;
        assert_eq!(offset, 8 + x);
    }

    #[test]
    fn keys_are_found_by_occurrence() {
        let json = br#"{"w": 1, "w": 2}"#;
        assert_eq!(key_offset(json, "w", 0), Some(1));
        assert_eq!(key_offset(json, "w", 1), Some(9));
        assert_eq!(key_offset(json, "v", 0), None);
    }
}
