//! Reading Mall manifests: files (or `-` for stdin) holding one or more YAML or JSON documents.
//!
//! Contract: never panics on any input; every failure names the file (and the document when
//! the file holds several).

use serde_json::Value;
use std::path::Path;

/// Why a file could not be read as documents.
#[derive(Debug, thiserror::Error)]
pub enum InputError {
    /// The file could not be read.
    #[error("{file}: cannot read: {source}")]
    Read {
        /// File name as given.
        file: String,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// The text is not YAML (JSON is YAML).
    #[error("{file}: not valid YAML: {message}")]
    Parse {
        /// File name as given.
        file: String,
        /// Parser message (with line and column).
        message: String,
    },
    /// The file holds no document.
    #[error("{file}: no documents (the file is empty)")]
    Empty {
        /// File name as given.
        file: String,
    },
}

/// One document of a file.
pub struct Document {
    /// 1-based position in the file.
    pub index: usize,
    /// How many documents the file has.
    pub of: usize,
    /// The parsed value.
    pub value: Value,
}

/// Reads `file` (`-` = standard input) and parses every YAML document in it.
pub fn read_documents(file: &str) -> Result<Vec<Document>, InputError> {
    let text =
        if file == "-" { std::io::read_to_string(std::io::stdin()) } else { std::fs::read_to_string(Path::new(file)) }
            .map_err(|source| InputError::Read { file: file.to_string(), source })?;
    parse_documents(file, &text)
}

/// Parses YAML text holding one or more documents; `null` documents (empty or comment-only
/// sections between `---`) are skipped.
pub fn parse_documents(file: &str, text: &str) -> Result<Vec<Document>, InputError> {
    let values: Vec<Value> = serde_saphyr::from_multiple(text).map_err(|e| InputError::Parse {
        file: file.to_string(),
        message: e.to_string().lines().next().unwrap_or("parse error").to_string(),
    })?;
    let values: Vec<Value> = values.into_iter().filter(|v| !v.is_null()).collect();
    if values.is_empty() {
        return Err(InputError::Empty { file: file.to_string() });
    }
    let of = values.len();
    Ok(values.into_iter().enumerate().map(|(i, value)| Document { index: i + 1, of, value }).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn several_documents_and_blank_sections() {
        let docs = parse_documents("f", "a: 1\n---\n# nothing\n---\nb: 2\n").unwrap();
        assert_eq!(docs.len(), 2);
        assert_eq!(docs[1].value["b"], 2);
        assert_eq!(docs[1].of, 2);
    }

    #[test]
    fn empty_and_garbage_are_errors_not_panics() {
        assert!(matches!(parse_documents("f", ""), Err(InputError::Empty { .. })));
        assert!(matches!(parse_documents("f", "# only a comment\n"), Err(InputError::Empty { .. })));
        assert!(matches!(parse_documents("f", "a: [1, 2\n"), Err(InputError::Parse { .. })));
        // Binary junk must come back as a value or an error, never a panic.
        let _ = parse_documents("f", "\u{0}\u{1}binary: [\u{7f}");
    }
}
