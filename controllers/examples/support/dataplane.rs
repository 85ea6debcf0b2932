//! Loopback harness shared by the real-program tests (`tests/cache_real.rs`, `tests/edge_real.rs`)
//! and the `dataplane_bench` example: finds the programs, runs the generated cache scripts and
//! Varnish on 127.0.0.1 with free ports, and kills every process it started (on drop too).
//!
//! Contract: loopback only; every wait is bounded in time; nothing is left running.

#![allow(dead_code)]

use std::io::Write;
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::{Duration, Instant};

/// A program on PATH (or /usr/sbin, /usr/local/sbin), or a panic naming the package to install.
pub fn program(name: &str) -> PathBuf {
    let path = std::env::var("PATH").unwrap_or_default();
    let dirs = path.split(':').map(PathBuf::from).chain(["/usr/sbin", "/usr/local/sbin", "/sbin"].map(PathBuf::from));
    for dir in dirs {
        let candidate = dir.join(name);
        if candidate.is_file() {
            return candidate;
        }
    }
    panic!(
        "`{name}` is not installed (looked on PATH and in /usr/sbin); install the Debian packages: \
         apt-get install -y redis-server redis-tools varnish wrk"
    )
}

/// A process group killed (SIGKILL) when dropped.
pub struct Guard {
    child: Option<Child>,
    /// What it is, for messages.
    pub what: String,
}

impl Guard {
    /// Spawns `cmd` in its own process group.
    pub fn spawn(mut cmd: Command, what: impl Into<String>) -> Guard {
        use std::os::unix::process::CommandExt;
        let what = what.into();
        cmd.process_group(0);
        let child = cmd.spawn().unwrap_or_else(|e| panic!("starting {what}: {e}"));
        Guard { child: Some(child), what }
    }

    /// Process id (= process group id).
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(Child::id).unwrap_or(0)
    }

    /// Kills the whole group (like a pod dying) and reaps the leader.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ =
                Command::new("kill").args(["-KILL", "--", &format!("-{}", child.id())]).stderr(Stdio::null()).status();
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// True while the leader runs.
    pub fn running(&mut self) -> bool {
        matches!(self.child.as_mut().map(|c| c.try_wait()), Some(Ok(None)))
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        self.kill();
    }
}

static NEXT_BLOCK: AtomicU16 = AtomicU16::new(0);
/// Ports handed out by [`free_block`] in this process (tests run in parallel threads).
static RESERVED: std::sync::Mutex<std::collections::BTreeSet<u16>> =
    std::sync::Mutex::new(std::collections::BTreeSet::new());

/// True when `port` (and nothing else) can be bound on 127.0.0.1 now.
pub fn port_free(port: u16) -> bool {
    TcpListener::bind((Ipv4Addr::LOCALHOST, port)).is_ok()
}

/// A base port such that `base..base+len` and `base+10000..base+10000+len` are free on
/// 127.0.0.1 (cache nodes use port+10000 for the cluster bus), below the kernel's ephemeral
/// range so that no outgoing connection can take a node's port before it starts.
pub fn free_block(len: u16) -> u16 {
    let ephemeral = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|t| t.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(32768);
    let (low, high) = (10000u16, ephemeral.saturating_sub(10000 + len));
    assert!(high > low + 64, "ephemeral port range starts at {ephemeral}: no room for cache ports");
    let seed = (std::process::id() as u16).wrapping_mul(7919);
    for _ in 0..200 {
        let n = NEXT_BLOCK.fetch_add(1, Ordering::SeqCst);
        let base = low + (seed.wrapping_add(n.wrapping_mul(64)) % (high - low)) / 64 * 64;
        let Ok(mut reserved) = RESERVED.lock() else { continue };
        let ports = || (0..len).flat_map(|i| [base + i, base + 10000 + i]);
        if ports().all(|p| !reserved.contains(&p) && port_free(p)) {
            reserved.extend(ports());
            return base;
        }
    }
    panic!("no free block of {len} ports on 127.0.0.1")
}

/// A free port on 127.0.0.1 (bind to 0, read it, release it).
pub fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or_else(|e| panic!("{e}"))
}

/// Polls `check` every `every` until it is true or `limit` passes; returns the time it took.
pub fn wait_for(what: &str, limit: Duration, every: Duration, mut check: impl FnMut() -> bool) -> Duration {
    let start = Instant::now();
    while start.elapsed() < limit {
        if check() {
            return start.elapsed();
        }
        std::thread::sleep(every);
    }
    panic!("timed out after {limit:?} waiting for {what}")
}

/// Waits until something accepts TCP connections on 127.0.0.1:`port`.
pub fn wait_listening(port: u16, limit: Duration) {
    wait_for(&format!("127.0.0.1:{port} to listen"), limit, Duration::from_millis(50), || {
        TcpStream::connect_timeout(&SocketAddr::from((Ipv4Addr::LOCALHOST, port)), Duration::from_millis(200)).is_ok()
    });
}

/// The stride between shards in a loopback cache cluster (more than 6 nodes per shard).
pub const STRIDE_SHARD: u16 = 8;

/// A cache cluster on loopback run by the generated `cluster.sh`, one process group per node.
pub struct CacheCluster {
    /// Temp dir holding `config/` (the ConfigMap's files) and per-node data/run dirs.
    pub dir: tempfile::TempDir,
    /// First port.
    pub base: u16,
    /// Password of the ACL user.
    pub password: String,
    /// Running nodes: (shard, ordinal, guard).
    pub nodes: Vec<(u16, u16, Guard)>,
    /// `cluster-node-timeout` override (ms), if any.
    pub node_timeout_ms: Option<u32>,
    /// Data directory generation per node (bumped by `restart_fresh`).
    generation: std::collections::BTreeMap<(u16, u16), u32>,
}

impl CacheCluster {
    /// Writes the ConfigMap's files (`data` of the built ConfigMap) and reserves ports for up
    /// to `max_shards` shards.
    pub fn new(
        config_map_data: &serde_json::Value,
        password: &str,
        max_shards: u16,
        node_timeout_ms: Option<u32>,
    ) -> Self {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
        let config = dir.path().join("config");
        std::fs::create_dir_all(&config).unwrap_or_else(|e| panic!("{e}"));
        for (key, value) in config_map_data.as_object().into_iter().flatten() {
            std::fs::write(config.join(key), value.as_str().unwrap_or_default()).unwrap_or_else(|e| panic!("{e}"));
        }
        let base = free_block(max_shards * STRIDE_SHARD);
        CacheCluster {
            dir,
            base,
            password: password.into(),
            nodes: Vec::new(),
            node_timeout_ms,
            generation: Default::default(),
        }
    }

    /// Port of node (shard, ordinal).
    pub fn port(&self, shard: u16, ordinal: u16) -> u16 {
        self.base + shard * STRIDE_SHARD + ordinal
    }

    fn node_dir(&self, shard: u16, ordinal: u16) -> PathBuf {
        let generation = self.generation.get(&(shard, ordinal)).copied().unwrap_or(0);
        self.dir.path().join(format!("node-{shard}-{ordinal}-{generation}"))
    }

    /// The script's environment for node (shard, ordinal), as the StatefulSet sets it but on loopback.
    pub fn script(&self, shard: u16, ordinal: u16, action: &str) -> Command {
        let node = self.node_dir(shard, ordinal);
        let mut cmd = Command::new("sh");
        cmd.arg(self.dir.path().join("config/cluster.sh"))
            .arg(action)
            .current_dir(self.dir.path())
            .env("SHARD", shard.to_string())
            .env("ORDINAL", ordinal.to_string())
            .env("NODE_HOST_TEMPLATE", "127.0.0.1")
            .env("NODE_PORT", self.base.to_string())
            .env("PORT_STRIDE_SHARD", STRIDE_SHARD.to_string())
            .env("PORT_STRIDE_ORDINAL", "1")
            .env("BIND", "127.0.0.1")
            .env("CACHE_USER", "mall")
            .env("CACHE_PASSWORD", &self.password)
            .env("CONFIG_DIR", self.dir.path().join("config"))
            .env("DATA_DIR", node.join("data"))
            .env("RUN_DIR", node.join("run"))
            .env("CACHE_SERVER", program("redis-server"))
            .env("CACHE_CLI", program("redis-cli"))
            .env("JOIN_TIMEOUT_S", "90");
        if let Some(ms) = self.node_timeout_ms {
            cmd.env("NODE_TIMEOUT_MS", ms.to_string());
        }
        cmd
    }

    /// Starts node (shard, ordinal) like its pod would (`cluster.sh run`), logs to its dir.
    pub fn start(&mut self, shard: u16, ordinal: u16) {
        let node = self.node_dir(shard, ordinal);
        std::fs::create_dir_all(&node).unwrap_or_else(|e| panic!("{e}"));
        let log = std::fs::File::create(node.join("log")).unwrap_or_else(|e| panic!("{e}"));
        let mut cmd = self.script(shard, ordinal, "run");
        cmd.stdin(Stdio::null()).stdout(log.try_clone().unwrap_or_else(|e| panic!("{e}"))).stderr(log);
        let guard = Guard::spawn(cmd, format!("cache node {shard}/{ordinal}"));
        self.nodes.push((shard, ordinal, guard));
    }

    /// Kills node (shard, ordinal) with SIGKILL (server and script), like a crashed pod.
    pub fn kill(&mut self, shard: u16, ordinal: u16) {
        self.nodes.retain_mut(|(s, o, g)| {
            if (*s, *o) == (shard, ordinal) {
                g.kill();
                false
            } else {
                true
            }
        });
    }

    /// Starts node (shard, ordinal) again with an empty data dir (a recreated pod without a volume).
    pub fn start_fresh(&mut self, shard: u16, ordinal: u16) {
        *self.generation.entry((shard, ordinal)).or_insert(0) += 1;
        self.start(shard, ordinal);
    }

    /// True when `cluster.sh probe` (the readiness probe) passes on the node.
    pub fn ready(&self, shard: u16, ordinal: u16) -> bool {
        self.script(shard, ordinal, "probe")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }

    /// Waits until every running node passes its readiness probe.
    pub fn wait_ready(&self, limit: Duration) -> Duration {
        let nodes: Vec<_> = self.nodes.iter().map(|(s, o, _)| (*s, *o)).collect();
        let start = Instant::now();
        while start.elapsed() < limit {
            if nodes.iter().all(|(s, o)| self.ready(*s, *o)) {
                return start.elapsed();
            }
            std::thread::sleep(Duration::from_millis(300));
        }
        let report: Vec<String> = nodes
            .iter()
            .filter(|(s, o)| !self.ready(*s, *o))
            .map(|(s, o)| {
                format!(
                    "node {s}/{o} (port {}) not ready\n--- log ---\n{}\n--- cluster nodes ---\n{}\n--- replication ---\n{}",
                    self.port(*s, *o),
                    self.log(*s, *o),
                    self.cmd(*s, *o, &["cluster", "nodes"]),
                    self.cmd(*s, *o, &["info", "replication"])
                )
            })
            .collect();
        panic!("timed out after {limit:?} waiting for every cache node ready:\n{}", report.join("\n"))
    }

    /// `redis-cli` as user `mall` to node (shard, ordinal); `cluster` adds `-c`.
    pub fn cli(&self, shard: u16, ordinal: u16, cluster: bool, args: &[&str]) -> Output {
        let mut cmd = Command::new(program("redis-cli"));
        cmd.env("REDISCLI_AUTH", &self.password).args(["--no-auth-warning", "--user", "mall", "-h", "127.0.0.1", "-p"]);
        cmd.arg(self.port(shard, ordinal).to_string());
        if cluster {
            cmd.arg("-c");
        }
        cmd.args(args).stdin(Stdio::null()).output().unwrap_or_else(|e| panic!("redis-cli: {e}"))
    }

    /// One command's trimmed stdout.
    pub fn cmd(&self, shard: u16, ordinal: u16, args: &[&str]) -> String {
        String::from_utf8_lossy(&self.cli(shard, ordinal, false, args).stdout).trim().to_string()
    }

    /// A field of `INFO replication` on a node.
    pub fn replication(&self, shard: u16, ordinal: u16, field: &str) -> Option<String> {
        let info = self.cmd(shard, ordinal, &["info", "replication"]);
        info.lines().find_map(|l| l.strip_prefix(&format!("{field}:")).map(|v| v.trim().to_string()))
    }

    /// Runs `commands` (one per line) through one cluster-mode `redis-cli -c` session entering at
    /// (shard, ordinal); returns stdout lines.
    pub fn session(&self, shard: u16, ordinal: u16, commands: &str) -> Vec<String> {
        let mut cmd = Command::new(program("redis-cli"));
        cmd.env("REDISCLI_AUTH", &self.password)
            .args(["--no-auth-warning", "--user", "mall", "-h", "127.0.0.1", "-c", "-p"])
            .arg(self.port(shard, ordinal).to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().unwrap_or_else(|e| panic!("redis-cli: {e}"));
        if let Some(mut stdin) = child.stdin.take() {
            let _ = stdin.write_all(commands.as_bytes());
        }
        let out = child.wait_with_output().unwrap_or_else(|e| panic!("redis-cli: {e}"));
        // `-c` reports each redirection on stdout before the reply: drop those lines.
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| l.trim().to_string())
            .filter(|l| !l.starts_with("-> Redirected"))
            .collect()
    }

    /// Log of a node (for failure messages).
    pub fn log(&self, shard: u16, ordinal: u16) -> String {
        std::fs::read_to_string(self.node_dir(shard, ordinal).join("log")).unwrap_or_default()
    }
}

/// A static file path relative to the controllers crate.
pub fn crate_path(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}

impl CacheCluster {
    /// The ordinal of the node currently primary in `shard` (0 if none answers).
    pub fn primary_ordinal(&self, shard: u16) -> u16 {
        self.nodes
            .iter()
            .filter(|(s, _, _)| *s == shard)
            .map(|(_, o, _)| *o)
            .find(|o| self.replication(shard, *o, "role").as_deref() == Some("master"))
            .unwrap_or(0)
    }
}

/// A tiny HTTP/1.1 origin on 127.0.0.1: answers every path with `200 origin <path> #<n>`
/// (`Connection: close`), counts requests per path (the health path apart), and while `down`
/// drops connections without answering, like a failing storefront.
pub struct Origin {
    /// Its port.
    pub port: u16,
    counts: Counts,
    down: std::sync::Arc<std::sync::atomic::AtomicBool>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Origin {
    /// Starts the origin; `health_path` is answered but not counted.
    pub fn start(health_path: &str) -> Origin {
        Origin::start_with(health_path, Duration::ZERO)
    }

    /// Starts the origin, each answer taking `work` (a storefront rendering a page), one thread
    /// per connection.
    pub fn start_with(health_path: &str, work: Duration) -> Origin {
        use std::sync::atomic::AtomicBool;
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap_or_else(|e| panic!("origin bind: {e}"));
        let port = listener.local_addr().map(|a| a.port()).unwrap_or_else(|e| panic!("{e}"));
        listener.set_nonblocking(true).unwrap_or_else(|e| panic!("{e}"));
        let counts = std::sync::Arc::new(std::sync::Mutex::new(std::collections::HashMap::new()));
        let down = std::sync::Arc::new(AtomicBool::new(false));
        let stop = std::sync::Arc::new(AtomicBool::new(false));
        let (c, d, s, health) = (counts.clone(), down.clone(), stop.clone(), health_path.to_string());
        let thread = std::thread::spawn(move || {
            while !s.load(Ordering::SeqCst) {
                let Ok((stream, _)) = listener.accept() else {
                    std::thread::sleep(Duration::from_millis(1));
                    continue;
                };
                if d.load(Ordering::SeqCst) {
                    drop(stream);
                    continue;
                }
                let (c, health) = (c.clone(), health.clone());
                std::thread::spawn(move || answer(stream, &c, &health, work));
            }
        });
        Origin { port, counts, down, stop, thread: Some(thread) }
    }

    /// Requests seen for `path` (with its query string).
    pub fn count(&self, path: &str) -> u32 {
        self.counts.lock().map(|m| m.get(path).copied().unwrap_or(0)).unwrap_or(0)
    }

    /// All requests seen (health checks apart).
    pub fn total(&self) -> u32 {
        self.counts.lock().map(|m| m.values().sum()).unwrap_or(0)
    }

    /// Fails (drops connections) or serves again.
    pub fn set_down(&self, down: bool) {
        self.down.store(down, Ordering::SeqCst);
    }
}

impl Drop for Origin {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

type Counts = std::sync::Arc<std::sync::Mutex<std::collections::HashMap<String, u32>>>;

/// Reads one request head from `stream` and answers it (`Connection: close`).
fn answer(mut stream: TcpStream, counts: &Counts, health: &str, work: Duration) {
    use std::io::Read;
    let _ = stream.set_nonblocking(false);
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") && buf.len() < 65536 {
        match stream.read(&mut chunk) {
            Ok(0) | Err(_) => break,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
    let head = String::from_utf8_lossy(&buf);
    let path = head.split_whitespace().nth(1).unwrap_or("/").to_string();
    let n = if path == health {
        0
    } else if let Ok(mut map) = counts.lock() {
        let n = map.entry(path.clone()).or_insert(0);
        *n += 1;
        *n
    } else {
        0
    };
    if !work.is_zero() && path != health {
        std::thread::sleep(work);
    }
    let body = format!("origin {path} #{n}");
    let _ = write!(
        stream,
        "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
}

/// A parsed HTTP response.
#[derive(Debug)]
pub struct Response {
    /// Status code (0 when the connection failed).
    pub status: u16,
    /// Headers, names lower-cased.
    pub headers: Vec<(String, String)>,
    /// Body.
    pub body: String,
}

impl Response {
    /// First header `name` (lower case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }
}

/// One HTTP/1.1 request to 127.0.0.1:`port` from source address `from` (127.0.0.x).
pub fn http(from: Ipv4Addr, port: u16, method: &str, path: &str, headers: &[(&str, &str)]) -> Response {
    use std::io::Read;
    let failed = Response { status: 0, headers: Vec::new(), body: String::new() };
    let Ok(socket) = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None) else { return failed };
    let to = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    if socket.bind(&SocketAddr::from((from, 0)).into()).is_err()
        || socket.connect_timeout(&to.into(), Duration::from_secs(2)).is_err()
    {
        return failed;
    }
    let mut stream: TcpStream = socket.into();
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    let mut request = format!("{method} {path} HTTP/1.1\r\nHost: shop.example.com\r\nConnection: close\r\n");
    for (k, v) in headers {
        request.push_str(&format!("{k}: {v}\r\n"));
    }
    request.push_str("\r\n");
    if stream.write_all(request.as_bytes()).is_err() {
        return failed;
    }
    let mut raw = Vec::new();
    let _ = stream.read_to_end(&mut raw);
    let text = String::from_utf8_lossy(&raw);
    let Some((head, body)) = text.split_once("\r\n\r\n") else { return failed };
    let mut lines = head.lines();
    let status = lines.next().and_then(|l| l.split_whitespace().nth(1)).and_then(|s| s.parse().ok()).unwrap_or(0);
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    Response { status, headers, body: body.to_string() }
}

/// `varnishd` serving `vcl_path` on 127.0.0.1:`port` (foreground, no CLI, no jail), stopped on drop.
pub fn varnish(vcl_path: &Path, workdir: &Path, port: u16) -> Guard {
    let mut cmd = Command::new(program("varnishd"));
    cmd.arg("-F")
        .arg("-f")
        .arg(vcl_path)
        .args(["-a", &format!("127.0.0.1:{port}"), "-T", "none", "-j", "none", "-s", "malloc,64M"])
        .args(["-p", "thread_pools=1", "-p", "thread_pool_min=10"])
        .arg("-n")
        .arg(workdir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let guard = Guard::spawn(cmd, "varnishd");
    wait_listening(port, Duration::from_secs(30));
    guard
}
