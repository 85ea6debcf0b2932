//! A real Prometheus (Debian package `prometheus`: `/usr/bin/prometheus`, or `$PROMETHEUS_BIN`)
//! scraping a storefront stand-in every second, both on 127.0.0.1 free ports — what the
//! autoscaler reads in the e2e tests, `mallctl plan`'s tests and the demo.
//!
//! The [`Exporter`] serves `mall_http_requests_total{namespace,mall}` (the counter the default
//! storefront query reads) growing at a rate the test sets and changes; the [`Prometheus`]
//! process is killed on [`Prometheus::stop`] or drop.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

struct Counter {
    total: f64,
    rate: f64,
    at: Instant,
}

impl Counter {
    fn advance(&mut self) -> f64 {
        let now = Instant::now();
        self.total += self.rate * now.duration_since(self.at).as_secs_f64();
        self.at = now;
        self.total
    }
}

/// Serves `/metrics` of one Mall's storefront with a settable request rate.
#[derive(Clone)]
pub struct Exporter {
    counter: Arc<Mutex<Counter>>,
    /// Where it listens.
    pub address: std::net::SocketAddr,
}

impl Exporter {
    /// Starts serving the Mall `namespace/mall` at `rate` requests/s (dies with the runtime).
    pub async fn start(namespace: &str, mall: &str, rate: f64) -> Exporter {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("exporter port");
        let address = listener.local_addr().expect("exporter address");
        let counter = Arc::new(Mutex::new(Counter { total: 0.0, rate, at: Instant::now() }));
        let labels = format!(r#"namespace="{namespace}",mall="{mall}""#);
        let shared = counter.clone();
        tokio::spawn(async move {
            loop {
                let Ok((mut sock, _)) = listener.accept().await else { return };
                let mut buf = [0u8; 4096];
                let _ = tokio::time::timeout(Duration::from_secs(2), sock.read(&mut buf)).await;
                let n = shared.lock().map(|mut c| c.advance()).unwrap_or(0.0);
                let body =
                    format!("# TYPE mall_http_requests_total counter\nmall_http_requests_total{{{labels}}} {n}\n");
                let response = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = sock.write_all(response.as_bytes()).await;
                let _ = sock.shutdown().await;
            }
        });
        Exporter { counter, address }
    }

    /// Changes the request rate from now on.
    pub fn set_rate(&self, rate: f64) {
        if let Ok(mut c) = self.counter.lock() {
            c.advance();
            c.rate = rate;
        }
    }
}

/// A Prometheus server process.
pub struct Prometheus {
    child: Option<Child>,
    /// Its HTTP API base URL.
    pub url: String,
}

impl Prometheus {
    /// Starts Prometheus scraping `target` every second, its data in `dir` (panics on failure:
    /// for tests; [`Prometheus::try_start`] returns the error).
    pub fn start(target: std::net::SocketAddr, dir: &Path) -> Prometheus {
        Self::try_start(target, dir).unwrap_or_else(|e| panic!("{e}"))
    }

    /// The Prometheus binary: `$PROMETHEUS_BIN`, else Debian's `/usr/bin/prometheus`.
    pub fn binary() -> std::path::PathBuf {
        std::env::var_os("PROMETHEUS_BIN").map_or_else(|| "/usr/bin/prometheus".into(), Into::into)
    }

    /// Starts Prometheus scraping `target` every second, its data in `dir`.
    pub fn try_start(target: std::net::SocketAddr, dir: &Path) -> std::io::Result<Prometheus> {
        let config = dir.join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n  - job_name: storefront\n    static_configs:\n      - targets: ['{target}']\n"
            ),
        )?;
        let port = std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr())?.port();
        let bin = Self::binary();
        let child = Command::new(&bin)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!("--storage.tsdb.path={}", dir.join("prometheus-data").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| {
                std::io::Error::new(
                    e.kind(),
                    format!("starting {} (apt-get install -y prometheus): {e}", bin.display()),
                )
            })?;
        Ok(Prometheus { child: Some(child), url: format!("http://127.0.0.1:{port}") })
    }

    /// Kills the process and waits for it.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        self.stop();
    }
}
