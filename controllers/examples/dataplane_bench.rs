//! Data-plane benchmark with the real programs on loopback, bounded (about a minute in all):
//!
//! * cache: `redis-benchmark --cluster` through the generated 3-shard cluster (`cluster.sh`,
//!   `cache.conf`, ACL user) against one plain `redis-server` in the same run, and the failover
//!   time (a primary SIGKILLed → a write to its slots accepted again) with the generated
//!   `cluster-node-timeout`;
//! * edge: `wrk` through varnishd running the generated VCL vs the origin directly: hit ratio
//!   and p50/p99 latency.
//!
//! Run: `cargo run --release -p mall-controllers --example dataplane_bench`

#[path = "support/dataplane.rs"]
mod dataplane;

use dataplane::{CacheCluster, Guard, Origin, program};
use mall_controllers::build::{Scope, cache, edge};
use serde_json::json;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const REQUESTS: &str = "100000";
const CLIENTS: &str = "50";
const WRK_SECONDS: &str = "4s";

fn mall() -> mall_crds::Mall {
    let value = json!({
        "apiVersion": "mallctl.io/v1alpha1", "kind": "Mall",
        "metadata": {"name": "bench", "namespace": "bench", "uid": "u-1"},
        "spec": {"storefront": {"image": "shop:1", "healthPath": "/healthz"}, "database": {},
            "cache": {"shards": 3, "replicasPerShard": 1, "maxMemory": "256Mi"},
            "cdn": {"domains": ["shop.example.com"], "gateway": {"name": "public"},
                "rules": [{"pathPrefix": "/products/", "ttl": "5m"}], "defaultTtl": "60s"}},
    });
    mall_controllers::validate::validate_value(&value, None).unwrap_or_else(|e| panic!("{e}"))
}

/// `SET`/`GET` requests per second from `redis-benchmark -q` output.
fn rps(output: &str, test: &str) -> f64 {
    output
        .split(['\r', '\n'])
        .filter_map(|l| l.trim().strip_prefix(&format!("{test}: ")))
        .filter_map(|l| l.split_whitespace().next()?.parse().ok())
        .next_back()
        .unwrap_or(0.0)
}

fn redis_benchmark(port: u16, extra: &[&str]) -> (f64, f64) {
    let out = Command::new("timeout")
        .arg("120")
        .arg(program("redis-benchmark"))
        .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-n", REQUESTS, "-c", CLIENTS, "-t", "set,get", "-q"])
        .args(extra)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("redis-benchmark: {e}"));
    let text = String::from_utf8_lossy(&out.stdout);
    (rps(&text, "SET"), rps(&text, "GET"))
}

fn bench_cache() {
    let mall = mall();
    let scope = &Scope::all(&mall)[0];
    let config = serde_json::to_value(cache::config_map(scope, mall.spec.cache.as_ref().unwrap()).unwrap()).unwrap();
    let seed = Instant::now().elapsed().as_nanos() ^ u128::from(std::process::id());
    let secrets = cache::CacheSecrets::from_random_bytes(&std::array::from_fn(|i| (seed >> (i % 16)) as u8 ^ i as u8));
    let mut c = CacheCluster::new(&config["data"], secrets.password(), 3, None);
    for shard in 0..3 {
        for ordinal in 0..2 {
            c.start(shard, ordinal);
        }
    }
    let formed = c.wait_ready(Duration::from_secs(120));
    println!("cache: 3 shards x (1 primary + 1 replica) formed from nothing in {:.1}s", formed.as_secs_f64());

    let plain_port = dataplane::free_port();
    let mut plain = Command::new(program("redis-server"));
    plain.args(["--port", &plain_port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]);
    plain.args(["--maxmemory", "256mb", "--maxmemory-policy", "allkeys-lru"]).stdout(Stdio::null());
    let _plain = Guard::spawn(plain, "plain redis-server");
    dataplane::wait_listening(plain_port, Duration::from_secs(10));

    let (base_set, base_get) = redis_benchmark(plain_port, &[]);
    let auth = ["--user", "mall", "-a", secrets.password(), "--cluster"];
    let (set, get) = redis_benchmark(c.port(0, 0), &auth);
    println!("cache: redis-benchmark -n {REQUESTS} -c {CLIENTS} (ops/s)");
    println!("  plain redis-server   SET {base_set:>10.0}  GET {base_get:>10.0}");
    println!("  generated cluster    SET {set:>10.0}  GET {get:>10.0}");
    println!("  ratio cluster/plain  SET {:>10.2}  GET {:>10.2}", set / base_set.max(1.0), get / base_get.max(1.0));

    // Failover: a key in shard 1's slots (5461..=10922 at bootstrap), its primary killed.
    let key = (0..1000)
        .map(|i| format!("fo{i}"))
        .find(|k| c.cmd(0, 0, &["cluster", "keyslot", k]).parse::<u32>().is_ok_and(|s| (5461..=10922).contains(&s)))
        .unwrap_or_else(|| "fo".into());
    c.session(0, 0, &format!("SET {key} before\n"));
    c.cmd(1, 0, &["wait", "1", "2000"]);
    c.kill(1, 0);
    let mut writes = 0;
    let took = dataplane::wait_for(
        "writes accepted after failover",
        Duration::from_secs(60),
        Duration::from_millis(50),
        || {
            writes += 1;
            c.session(0, 0, &format!("SET {key} after\n")).first().map(String::as_str) == Some("OK")
        },
    );
    println!(
        "cache: failover (primary SIGKILL -> write accepted) {:.2}s with cluster-node-timeout {} ms ({writes} write attempts)",
        took.as_secs_f64(),
        cache::NODE_TIMEOUT_MS
    );
}

struct Wrk {
    requests: u64,
    rps: f64,
    p50: String,
    p99: String,
}

fn wrk(port: u16, script: &std::path::Path) -> Wrk {
    let out = Command::new("timeout")
        .arg("30")
        .arg(program("wrk"))
        .args(["-t2", "-c32", "-d", WRK_SECONDS, "--timeout", "2s", "--latency", "-s"])
        .arg(script)
        .arg(format!("http://127.0.0.1:{port}/"))
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("wrk: {e}"));
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let field = |prefix: &str| {
        text.lines().find_map(|l| l.trim().strip_prefix(prefix).map(|v| v.trim().to_string())).unwrap_or_default()
    };
    let requests = text
        .lines()
        .find(|l| l.contains("requests in"))
        .and_then(|l| l.split_whitespace().next()?.parse().ok())
        .unwrap_or(0);
    Wrk { requests, rps: field("Requests/sec:").parse().unwrap_or(0.0), p50: field("50%"), p99: field("99%") }
}

fn bench_edge() {
    let mall = mall();
    let cdn = mall.spec.cdn.as_ref().unwrap();
    let work = Duration::from_millis(2);
    let origin = Origin::start_with("/healthz", work);
    let tmp = tempfile::tempdir().unwrap();
    let backend = edge::Backend { host: "127.0.0.1".into(), port: origin.port, health_path: "/healthz".into() };
    let vcl = tmp.path().join("default.vcl");
    std::fs::write(&vcl, edge::vcl::vcl(cdn, &backend).unwrap()).unwrap();
    let script = tmp.path().join("mix.lua");
    // 90 % product pages (500 distinct, cached by rule), 10 % cart (always bypassed).
    std::fs::write(
        &script,
        "counter = 0\nrequest = function()\n  counter = counter + 1\n  local path\n  if counter % 10 == 0 then path = \"/cart\" \
         else path = \"/products/\" .. (counter * 7 % 500) end\n  return wrk.format(\"GET\", path)\nend\n",
    )
    .unwrap();
    let port = dataplane::free_port();
    let _varnish = dataplane::varnish(&vcl, &tmp.path().join("varnish"), port);

    let direct = wrk(origin.port, &script);
    let before = origin.total();
    let through = wrk(port, &script);
    let misses = origin.total() - before;
    let hit_ratio = 1.0 - f64::from(misses) / (through.requests.max(1) as f64);
    println!(
        "edge: wrk -t2 -c32 -d{WRK_SECONDS}, 90% /products/<500 ids> (ttl 5m) + 10% /cart (bypass), origin work {work:?}/request"
    );
    println!("  origin directly  {:>9.0} req/s  p50 {:>9}  p99 {:>9}", direct.rps, direct.p50, direct.p99);
    println!("  through varnish  {:>9.0} req/s  p50 {:>9}  p99 {:>9}", through.rps, through.p50, through.p99);
    println!("  edge hit ratio   {:.3} ({misses} of {} requests reached the origin)", hit_ratio, through.requests);
}

fn main() {
    let start = Instant::now();
    bench_cache();
    bench_edge();
    println!("total {:.1}s", start.elapsed().as_secs_f64());
}
