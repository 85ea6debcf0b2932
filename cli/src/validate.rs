//! `mallctl validate -f FILE...`: the operator's own validation, offline.
//!
//! Contract: prints one line per problem, `FILE: spec.path.to.field: message` (with
//! `(document N)` appended when a file holds several), and returns whether all were valid.

use crate::input::{Document, read_documents};
use mall_controllers::validate::{FieldError, validate_value};
use mall_crds::Mall;

/// Validates every document of every file; prints problems to `out`. Returns the valid Malls
/// (file, Mall) and whether every document was valid.
pub fn run(files: &[String], out: &mut impl std::io::Write) -> std::io::Result<(Vec<(String, Mall)>, bool)> {
    let mut malls = Vec::new();
    let mut all_ok = true;
    for file in files {
        let docs = match read_documents(file) {
            Ok(docs) => docs,
            Err(e) => {
                writeln!(out, "{e}")?;
                all_ok = false;
                continue;
            }
        };
        for doc in docs {
            match validate_value(&doc.value, None) {
                Ok(mall) => malls.push((file.clone(), mall)),
                Err(invalid) => {
                    all_ok = false;
                    for err in &invalid.0 {
                        writeln!(out, "{}", line(file, &doc, err))?;
                    }
                }
            }
        }
    }
    Ok((malls, all_ok))
}

fn line(file: &str, doc: &Document, err: &FieldError) -> String {
    let suffix = if doc.of > 1 { format!(" (document {})", doc.index) } else { String::new() };
    if err.path.is_empty() {
        format!("{file}: {}{suffix}", err.message)
    } else {
        format!("{file}: {}: {}{suffix}", err.path, err.message)
    }
}
