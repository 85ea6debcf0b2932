//! The Prometheus source against a real Prometheus server (Debian package `prometheus`, binary
//! `/usr/bin/prometheus` or `$PROMETHEUS_BIN`) scraping a test exporter every second — both on
//! 127.0.0.1 free ports — then with Prometheus stopped mid-test: the source reports the series
//! missing and the engine holds with `MetricsUnavailable`.
//!
//! Every wait is bounded; the Prometheus child is killed on every path (guard) and the exporter
//! dies with the test's runtime.

use chrono::Utc;
use mall_controllers::autoscaler::prometheus::{PrometheusSource, Queries};
use mall_controllers::autoscaler::{Engine, EngineConfig, Observations, Tier, TierObservation};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// Requests per second the exporter's counter grows by.
const RATE: f64 = 240.0;

struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// Serves `/metrics`: a request counter growing at [`RATE`] and a latency histogram where every
/// request took 200 ms.
async fn exporter() -> std::net::SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let born = Instant::now();
    tokio::spawn(async move {
        loop {
            let Ok((mut sock, _)) = listener.accept().await else { return };
            let mut buf = [0u8; 4096];
            let _ = tokio::time::timeout(Duration::from_secs(2), sock.read(&mut buf)).await;
            let n = born.elapsed().as_secs_f64() * RATE;
            let labels = r#"namespace="ns",mall="shop""#;
            let body = format!(
                "# TYPE mall_http_requests_total counter\nmall_http_requests_total{{{labels}}} {n}\n\
                 # TYPE mall_http_request_duration_seconds histogram\n\
                 mall_http_request_duration_seconds_bucket{{{labels},le=\"0.1\"}} 0\n\
                 mall_http_request_duration_seconds_bucket{{{labels},le=\"0.25\"}} {n}\n\
                 mall_http_request_duration_seconds_bucket{{{labels},le=\"+Inf\"}} {n}\n\
                 mall_http_request_duration_seconds_sum{{{labels}}} {}\n\
                 mall_http_request_duration_seconds_count{{{labels}}} {n}\n",
                n * 0.2
            );
            let response = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = sock.write_all(response.as_bytes()).await;
            let _ = sock.shutdown().await;
        }
    });
    addr
}

fn mall_config() -> EngineConfig {
    let value = serde_json::json!({
        "apiVersion": "mallctl.io/v1alpha1", "kind": "Mall",
        "metadata": {"name": "shop", "namespace": "ns"},
        "spec": {
            "storefront": {"image": "shop:1"}, "database": {},
            "autoscaling": {
                "prometheus": {"url": "http://127.0.0.1:9"},
                "storefront": {"min": 1, "max": 50, "targetPerReplica": 40},
                "latencySlo": {"p99": "300ms"}
            }
        }
    });
    let mall = mall_controllers::validate::validate_value(&value, None).unwrap();
    EngineConfig::from_mall(&mall).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_prometheus_then_outage() {
    let target = exporter().await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n  - job_name: shop\n    static_configs:\n      - targets: ['{target}']\n"
        ),
    )
    .unwrap();
    let port = free_port();
    let bin = std::env::var("PROMETHEUS_BIN").unwrap_or_else(|_| "/usr/bin/prometheus".into());
    let child = Command::new(&bin)
        .arg(format!("--config.file={}", config.display()))
        .arg(format!("--storage.tsdb.path={}", dir.path().join("data").display()))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("starting {bin} (apt-get install -y prometheus): {e}"));
    let mut prometheus = KillOnDrop(child);

    let cfg = mall_config();
    let queries = Queries::for_mall(&cfg, "ns", "shop");
    let source = PrometheusSource::new(&format!("http://127.0.0.1:{port}"), queries, Duration::from_secs(2)).unwrap();

    // Bounded wait for the first irate (needs two scrapes).
    let deadline = Instant::now() + Duration::from_secs(60);
    let metrics = loop {
        let m = source.read(Utc::now()).await;
        if m.storefront.is_some() && m.p99_latency.is_some() {
            break m;
        }
        assert!(Instant::now() < deadline, "no data from Prometheus within 60 s: {:?}", m.problems);
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let load = metrics.storefront.unwrap();
    assert!((load - RATE).abs() < RATE * 0.2, "irate {load} vs the exporter's {RATE}/s");
    let p99 = metrics.p99_latency.unwrap();
    assert!(p99 > 0.1 && p99 <= 0.25, "p99 {p99} lies in the (0.1, 0.25] bucket");

    let mut engine = Engine::new(cfg);
    let obs = |load: Option<f64>, p99: Option<f64>, problems: Vec<String>| Observations {
        storefront: TierObservation { load, replicas: 2, ready: 2 },
        p99_latency: p99,
        problems,
        ..Observations::default()
    };
    let d = engine.decide(Utc::now(), &obs(Some(load), Some(p99), metrics.problems.clone()));
    assert!(!d.metrics_unavailable(), "{d:?}");
    let wanted = (load / 40.0).ceil() as i32;
    let to = d.target(Tier::Storefront).unwrap();
    assert!((to - wanted).abs() <= 1, "{load}/s at 40 per replica → about {wanted}, got {to}: {}", d.tiers[0].reason);

    // Prometheus stops mid-test.
    let _ = prometheus.0.kill();
    let _ = prometheus.0.wait();
    let down = source.read(Utc::now()).await;
    assert_eq!(down.storefront, None);
    assert_eq!(down.p99_latency, None);
    assert!(down.problems.iter().any(|p| p.contains("Prometheus query failed")), "{:?}", down.problems);
    let held = engine.decide(Utc::now(), &obs(down.storefront, down.p99_latency, down.problems.clone()));
    assert!(held.metrics_unavailable(), "{held:?}");
    let sf = held.tier(Tier::Storefront).unwrap();
    assert_eq!((sf.from, sf.to), (2, 2), "holds the current size: {}", sf.reason);
    let condition = &held.conditions[0];
    assert!(condition.message.contains("Prometheus query failed"), "{condition:?}");
}
