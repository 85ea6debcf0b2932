//! `mallctl` as a user runs it: exit codes, output lines, and no panic on any input.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn mallctl(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_mallctl")).args(args).current_dir(root()).output().unwrap()
}

fn with_input(text: &str) -> (Output, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("input.yaml");
    std::fs::write(&path, text).unwrap();
    let p = path.to_string_lossy().to_string();
    let out = mallctl(&["validate", "-f", &p]);
    (out, p)
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn assert_no_panic(o: &Output) {
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!err.contains("panicked"), "mallctl panicked: {err}");
    assert!(o.status.code().is_some(), "mallctl was killed by a signal");
}

#[test]
fn examples_are_valid() {
    let out = mallctl(&[
        "validate",
        "-f",
        "examples/minimal.yaml",
        "examples/production.yaml",
        "examples/double-eleven.yaml",
        "examples/multi-cluster.yaml",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
    assert_eq!(stdout(&out), "");
}

#[test]
fn invalid_examples_print_their_field_path() {
    let mut checked = 0;
    for entry in std::fs::read_dir(root().join("examples/invalid")).unwrap() {
        let path = entry.unwrap().path();
        let rel = format!("examples/invalid/{}", path.file_name().unwrap().to_string_lossy());
        let text = std::fs::read_to_string(&path).unwrap();
        let expect = text.lines().find_map(|l| l.strip_prefix("# expect: ")).unwrap().trim().to_string();
        let out = mallctl(&["validate", "-f", &rel]);
        assert_no_panic(&out);
        assert_eq!(out.status.code(), Some(1), "{rel}");
        let lines = stdout(&out);
        assert!(lines.lines().all(|l| l.starts_with(&format!("{rel}: "))), "{lines}");
        assert!(lines.contains(&format!("{rel}: {expect}: ")), "{rel}: expected {expect} in\n{lines}");
        checked += 1;
    }
    assert!(checked >= 25);
}

#[test]
fn hostile_inputs_fail_cleanly() {
    let mall =
        |spec: &str| format!("apiVersion: mallctl.io/v1alpha1\nkind: Mall\nmetadata: {{name: x}}\nspec:\n{spec}");
    let cases: Vec<(String, &str)> = vec![
        (String::new(), "no documents"),
        ("# just a comment\n".into(), "no documents"),
        ("{[}: : :\n\t- ]".into(), "not valid YAML"),
        ("\u{feff}\u{0}\u{1}\u{2}".into(), ""),
        ("kind: Deployment\napiVersion: apps/v1\nmetadata: {name: d}\n".into(), "no Mall among the documents"),
        ("kind: Mal\napiVersion: mallctl.io/v1alpha1\nmetadata: {name: d}\n".into(), "kind: Unsupported value"),
        ("apiVersion: mallctl.io/v1alpha1\nmetadata: {name: d}\n".into(), "kind"),
        ("just a string".into(), "expected a Mall object"),
        ("- 1\n- 2\n".into(), "expected a Mall object"),
        (
            mall("  storefront: {image: a, port: 99999999999999999999999999999}\n  database: {}\n"),
            "spec.storefront.port: ",
        ),
        (mall("  storefront: {image: a}\n  database: {shards: -1e300}\n"), "spec.database.shards: "),
        (mall("  storefront: {image: a}\n  database: {}\n  nonsense: true\n"), "spec.nonsense: unknown field"),
        (mall("  storefront: {image: a}\n  database: {shards: [1, 2]}\n"), "spec.database.shards: "),
        (mall("  storefront: {image: &a [1]}\n  database: *a\n"), "spec.storefront.image: "),
        (
            format!("{}---\n{}", mall("  storefront: {image: a}\n  database: {}\n"), mall("  database: {}\n")),
            "(document 2)",
        ),
        (
            mall(&format!("  storefront: {{image: \"{}\"}}\n  database: {{}}\n", "x".repeat(100_000))),
            "spec.storefront.image: Too long",
        ),
    ];
    for (input, expect) in cases {
        let (out, path) = with_input(&input);
        assert_no_panic(&out);
        assert_eq!(out.status.code(), Some(1), "input {:?} should be refused", &input[..input.len().min(80)]);
        let text = stdout(&out);
        assert!(text.starts_with(&format!("{path}: ")), "{text}");
        assert!(text.contains(expect), "expected {expect:?} in {text}");
    }
}

#[test]
fn several_valid_documents_are_fine() {
    let one = std::fs::read_to_string(root().join("examples/minimal.yaml")).unwrap();
    let (out, _) = with_input(&format!("{one}\n---\n{one}"));
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
}

#[test]
fn render_prints_typed_children() {
    let out = mallctl(&["render", "-f", "examples/double-eleven.yaml", "-o", "json"]);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let list: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let items = list["items"].as_array().unwrap();
    let names: Vec<_> =
        items.iter().filter(|i| i["kind"] == "Deployment").map(|i| i["metadata"]["name"].as_str().unwrap()).collect();
    assert!(
        names.contains(&"singles-day-east-storefront") && names.contains(&"singles-day-west-storefront"),
        "{names:?}"
    );
    let yaml = mallctl(&["render", "-f", "examples/minimal.yaml"]);
    assert_eq!(yaml.status.code(), Some(0));
    assert!(stdout(&yaml).contains("kind: Deployment"));
    let bad = mallctl(&["render", "-f", "examples/invalid/shards-zero.yaml"]);
    assert_eq!(bad.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("spec.database.shards"));
}

#[test]
fn crd_command_matches_the_chart() {
    let out = mallctl(&["crd"]);
    assert_eq!(out.status.code(), Some(0));
    let chart = std::fs::read_to_string(root().join("charts/mall-operator/crds/mall.yaml")).unwrap();
    assert_eq!(stdout(&out), chart);
}

#[test]
fn usage_errors_exit_2() {
    assert_eq!(mallctl(&["validate"]).status.code(), Some(2));
    assert_eq!(mallctl(&["frobnicate"]).status.code(), Some(2));
}

#[test]
fn render_into_a_closed_pipe_does_not_panic() {
    use std::io::Read;
    // Far more output than a pipe buffers (64 KiB), so writes happen after the reader left.
    let one = std::fs::read_to_string(root().join("examples/production.yaml")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let many = dir.path().join("many.yaml");
    std::fs::write(&many, vec![one; 20].join("\n---\n")).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_mallctl"))
        .args(["render", "-f", &many.to_string_lossy()])
        .current_dir(root())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = [0u8; 16];
    child.stdout.take().unwrap().read_exact(&mut first).unwrap();
    // stdout is dropped here: the reader went away, as with `| head -c 16`.
    let out = child.wait_with_output().unwrap();
    assert_no_panic(&out);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
}
