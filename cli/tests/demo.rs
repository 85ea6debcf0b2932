//! `mallctl demo` end to end, as a newcomer runs it: three local control planes, the operator, a
//! real Prometheus, a Double Eleven surge autoscaled in the eu member cluster, eu killed and us
//! taking over. Asserts the summary it prints, the plot it writes and exit 0 (a shorter surge
//! than the default keeps the test near three minutes).

use std::process::Command;

#[test]
fn the_demo_runs_the_whole_product_and_says_what_happened() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_mallctl"))
        .args(["demo", "--surge-in", "40s", "--surge-for", "40s", "--dir"])
        .arg(dir.path())
        .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
        .output()
        .expect("mallctl demo runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let log = std::fs::read_to_string(dir.path().join("operator.log")).unwrap_or_default();
    let tail: Vec<&str> = log.lines().rev().take(30).collect();
    assert!(
        out.status.success(),
        "mallctl demo failed:\n{stdout}\n{stderr}\noperator log (last lines, newest first):\n{}",
        tail.join("\n")
    );
    println!("{stdout}");
    for phase in 1..=6 {
        assert!(stdout.contains(&format!("[{phase}/6]")), "phase {phase} missing:\n{stdout}");
    }
    let line = |key: &str| stdout.lines().find(|l| l.starts_with(key)).unwrap_or_default().to_string();
    // 20 req/s -> 160 req/s at 10 per replica: the autoscaler must go well past the 2 it starts with.
    let storefront = line("storefront:");
    let peak: i32 =
        storefront.rsplit("peak ").next().and_then(|p| p.split_whitespace().next()?.parse().ok()).unwrap_or(0);
    assert!(peak >= 12, "peak {peak} replicas for 160 req/s at 10 per replica: {storefront}");
    let violations = line("SLO violations:");
    let seconds: u64 = violations.split_whitespace().nth(2).and_then(|v| v.parse().ok()).unwrap_or(u64::MAX);
    println!("measured: {storefront}; {violations}");
    assert!(seconds <= 10, "{violations}");
    let failover = line("failover:");
    assert!(
        failover.contains("us active in") && failover.contains("epoch 1") && failover.contains("127.0.20.1"),
        "{failover}"
    );
    let plot = std::fs::read_to_string(dir.path().join("demo.svg")).expect("the plot");
    assert!(plot.starts_with("<svg") && plot.contains("polyline"), "not an SVG plot");
    assert!(stderr.contains("everything it started is stopped"), "{stderr}");
}
