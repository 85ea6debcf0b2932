//! `mallctl validate -f FILE... [-o text|json]`: the operator's own validation, offline.
//!
//! Contract: every document of every file is judged exactly as the API server would. A
//! document of another kind (a bundle holding Namespaces, ConfigMaps, ... beside the Malls: its
//! `apiVersion` is not in the `mallctl.io` group) is skipped and said so; a document of that
//! group with another kind, or without a kind, is judged (and refused naming `kind`); files
//! holding no Mall at all fail (nothing was validated). Text output prints one line per
//! problem, `FILE: spec.path.to.field: message` (with `(document N)` appended when a file holds
//! several), and one `FILE: skipped ...` line per skipped document on stderr; JSON output prints
//! one object: `valid`, and per document its file, position, kind, name, verdict and errors
//! (`path`, `message`), or why it was skipped or could not be read. [`run`] (used by `render`
//! and `simulate`) judges every document, skipping none.

use crate::input::{Document, read_documents};
use mall_controllers::validate::{FieldError, validate_value};
use mall_crds::Mall;
use serde::Serialize;

/// Output formats of `validate`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Output {
    /// One line per problem.
    #[default]
    Text,
    /// One JSON object.
    Json,
}

/// The verdict on one document (or on a file that could not be read).
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Verdict {
    /// File as given.
    pub file: String,
    /// 1-based document position (absent: the file could not be read).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub document: Option<usize>,
    /// `kind` of the document.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// `metadata.name` of the document.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Whether it is a valid Mall (skipped documents: `true`, they are not judged).
    pub valid: bool,
    /// The problems, each naming a field.
    pub errors: Vec<Problem>,
    /// Why the document was not judged (another kind).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub skipped: Option<String>,
    #[serde(skip)]
    of: usize,
    #[serde(skip)]
    mall: Option<Box<Mall>>,
}

/// One problem.
#[derive(Debug, Serialize)]
pub struct Problem {
    /// The field (`spec.database.shards`), empty for the document as a whole.
    pub path: String,
    /// What is wrong.
    pub message: String,
}

/// Whether a document is of a kind other than Mall (and so is skipped by `validate`).
fn other_kind(value: &serde_json::Value) -> Option<String> {
    let kind = value["kind"].as_str()?;
    let api_version = value["apiVersion"].as_str().unwrap_or_default();
    let group = api_version.split_once('/').map_or("", |(g, _)| g);
    // Anything in the Mall's API group is judged: a misspelt kind is an error, not a skip.
    (group != mall_crds::GROUP).then(|| format!("{api_version} {kind}"))
}

/// Judges every document of `files`; with `skip_others`, documents of other kinds are skipped.
pub fn judge(files: &[String], skip_others: bool) -> Vec<Verdict> {
    let mut verdicts = Vec::new();
    for file in files {
        let docs = match read_documents(file) {
            Ok(docs) => docs,
            Err(e) => {
                verdicts.push(Verdict {
                    file: file.clone(),
                    document: None,
                    kind: None,
                    name: None,
                    valid: false,
                    errors: vec![Problem { path: String::new(), message: e.to_string() }],
                    skipped: None,
                    of: 0,
                    mall: None,
                });
                continue;
            }
        };
        for doc in docs {
            verdicts.push(verdict(file, &doc, skip_others));
        }
    }
    verdicts
}

fn verdict(file: &str, doc: &Document, skip_others: bool) -> Verdict {
    let text = |pointer: &str| doc.value.pointer(pointer).and_then(|v| v.as_str()).map(str::to_string);
    let mut v = Verdict {
        file: file.to_string(),
        document: Some(doc.index),
        kind: text("/kind"),
        name: text("/metadata/name"),
        valid: true,
        errors: Vec::new(),
        skipped: None,
        of: doc.of,
        mall: None,
    };
    if let Some(other) = other_kind(&doc.value).filter(|_| skip_others) {
        v.skipped = Some(format!("{other} is not a Mall"));
        return v;
    }
    match validate_value(&doc.value, None) {
        Ok(mall) => v.mall = Some(Box::new(mall)),
        Err(invalid) => {
            v.valid = false;
            v.errors = invalid
                .0
                .iter()
                .map(|e: &FieldError| Problem { path: e.path.clone(), message: e.message.clone() })
                .collect();
        }
    }
    v
}

/// Prints `verdicts` as `output` says (text: problems on `out`, skipped documents on `err`);
/// returns whether every judged document was valid.
pub fn print(
    verdicts: &[Verdict],
    output: Output,
    out: &mut impl std::io::Write,
    err: &mut impl std::io::Write,
) -> std::io::Result<bool> {
    // Only documents of other kinds: nothing was validated, which is not a pass.
    let none = !verdicts.is_empty() && verdicts.iter().all(|v| v.skipped.is_some());
    let valid = !none && verdicts.iter().all(|v| v.valid);
    match output {
        Output::Json => {
            let mut value = serde_json::json!({"valid": valid, "documents": verdicts});
            if none {
                value["error"] = serde_json::json!("no Mall among the documents");
            }
            writeln!(out, "{}", serde_json::to_string_pretty(&value).unwrap_or_default())?;
        }
        Output::Text => {
            for v in verdicts {
                if let Some(why) = &v.skipped {
                    writeln!(err, "{}: skipped {}{}", v.file, why, suffix(v))?;
                }
                for p in &v.errors {
                    writeln!(out, "{}", line(v, p))?;
                }
            }
            if none {
                let files: std::collections::BTreeSet<&str> = verdicts.iter().map(|v| v.file.as_str()).collect();
                for file in files {
                    writeln!(out, "{file}: no Mall among the documents (only other kinds, skipped)")?;
                }
            }
        }
    }
    Ok(valid)
}

fn suffix(v: &Verdict) -> String {
    match v.document {
        Some(index) if v.of > 1 => format!(" (document {index})"),
        _ => String::new(),
    }
}

fn line(v: &Verdict, p: &Problem) -> String {
    if p.path.is_empty() {
        format!("{}: {}{}", v.file, p.message, suffix(v))
    } else {
        format!("{}: {}: {}{}", v.file, p.path, p.message, suffix(v))
    }
}

/// Validates every document of every file (none skipped); prints problems to `out`. Returns the
/// valid Malls (file, Mall) and whether every document was valid.
pub fn run(files: &[String], out: &mut impl std::io::Write) -> std::io::Result<(Vec<(String, Mall)>, bool)> {
    let verdicts = judge(files, false);
    let ok = print(&verdicts, Output::Text, out, &mut std::io::sink())?;
    let malls = verdicts.into_iter().filter_map(|v| Some((v.file, *v.mall?))).collect();
    Ok((malls, ok))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bundle(text: &str) -> (Vec<Verdict>, String, String, bool) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bundle.yaml");
        std::fs::write(&path, text).unwrap();
        let verdicts = judge(&[path.display().to_string()], true);
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let ok = print(&verdicts, Output::Text, &mut out, &mut err).unwrap();
        (verdicts, String::from_utf8(out).unwrap(), String::from_utf8(err).unwrap(), ok)
    }

    const MALL: &str = "apiVersion: mallctl.io/v1alpha1\nkind: Mall\nmetadata: {name: shop}\nspec:\n  storefront: {image: \
                        a:1}\n  database: {}\n";

    #[test]
    fn other_kinds_in_a_bundle_are_skipped_and_said_so() {
        let text = format!("apiVersion: v1\nkind: Namespace\nmetadata: {{name: shop}}\n---\n{MALL}");
        let (verdicts, out, err, ok) = bundle(&text);
        assert!(ok, "{out}");
        assert_eq!(out, "");
        assert!(err.contains("skipped v1 Namespace is not a Mall (document 1)"), "{err}");
        assert!(verdicts[1].valid && verdicts[1].skipped.is_none());
    }

    #[test]
    fn a_document_without_a_kind_is_judged_and_json_names_fields() {
        let text = format!("{MALL}---\nmetadata: {{name: x}}\nspec: {{}}\n");
        let (verdicts, out, _, ok) = bundle(&text);
        assert!(!ok);
        assert!(out.contains("(document 2)"), "{out}");
        let mut json = Vec::new();
        print(&verdicts, Output::Json, &mut json, &mut std::io::sink()).unwrap();
        let value: serde_json::Value = serde_json::from_slice(&json).unwrap();
        assert_eq!(value["valid"], false);
        assert_eq!(value["documents"][0]["valid"], true);
        assert_eq!(value["documents"][0]["name"], "shop");
        assert!(value["documents"][1]["errors"].as_array().is_some_and(|e| !e.is_empty()), "{value}");
    }

    #[test]
    fn only_other_kinds_is_not_a_pass() {
        let (_, out, _, ok) = bundle("apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: d}\n");
        assert!(!ok);
        assert!(out.ends_with("no Mall among the documents (only other kinds, skipped)\n"), "{out}");
    }

    #[test]
    fn an_unreadable_file_is_a_verdict() {
        let verdicts = judge(&["/nonexistent/mall.yaml".to_string()], true);
        assert!(!verdicts[0].valid && verdicts[0].errors[0].message.contains("cannot read"));
    }
}
