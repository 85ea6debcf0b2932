//! The edge tier with the real program: the generated VCL compiles with `varnishd -C` for every
//! example, and a varnishd on 127.0.0.1 in front of a loopback origin caches, bypasses, serves
//! stale inside the grace window, and obeys PURGE/BAN only from the ACL.

#[path = "../examples/support/dataplane.rs"]
mod dataplane;

use dataplane::{Origin, http, program};
use mall_controllers::build::Scope;
use mall_controllers::build::edge::{self, Backend, HEALTH_PATH};
use serde_json::json;
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

const INSIDE: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 1);
const OUTSIDE: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 2);

fn parse_example(path: &std::path::Path) -> serde_json::Value {
    let text = std::fs::read_to_string(path).unwrap();
    let mut value: serde_json::Value = serde_saphyr::from_str(&text).unwrap();
    value["metadata"]["namespace"] = json!("shop");
    value
}

#[test]
fn generated_vcl_compiles_for_every_example() {
    let dir = dataplane::crate_path("../examples");
    let mut compiled = 0;
    let tmp = tempfile::tempdir().unwrap();
    let mut paths: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()).collect();
    paths.sort();
    for path in paths.iter().filter(|p| p.extension().is_some_and(|e| e == "yaml")) {
        let mall = mall_controllers::validate::validate_value(&parse_example(path), None).unwrap();
        let Some(cdn) = &mall.spec.cdn else { continue };
        for scope in Scope::all(&mall) {
            let objects = edge::build(&scope).unwrap();
            let built = objects[0].to_value().unwrap()["data"]["default.vcl"].as_str().unwrap().to_string();
            let service = edge::storefront_backend(&scope);
            assert_eq!(service.host, format!("{}.shop.svc", scope.name("storefront")));
            assert_eq!(built, edge::vcl::vcl(cdn, &service).unwrap());
            // varnishd resolves backend hosts when it compiles; the Service name resolves only in
            // the cluster, so compile the same generator's output with a loopback host.
            let local = edge::vcl::vcl(cdn, &Backend { host: "127.0.0.1".into(), ..service.clone() }).unwrap();
            let differing: Vec<_> = built.lines().zip(local.lines()).filter(|(a, b)| a != b).collect();
            assert_eq!(differing.len(), 1, "only the backend host differs: {differing:?}");
            let file = tmp.path().join(format!("{}.vcl", scope.name("edge")));
            std::fs::write(&file, &local).unwrap();
            let out = std::process::Command::new(program("varnishd")).arg("-C").arg("-f").arg(&file).output().unwrap();
            assert!(out.status.success(), "{}: {}", path.display(), String::from_utf8_lossy(&out.stderr));
            compiled += 1;
        }
    }
    assert!(compiled >= 3, "only {compiled} VCLs compiled");
}

#[test]
fn varnish_caches_bypasses_serves_stale_and_guards_purge() {
    let value = json!({
        "apiVersion": "mallctl.io/v1alpha1", "kind": "Mall",
        "metadata": {"name": "shop", "namespace": "shop", "uid": "u-1"},
        "spec": {"storefront": {"image": "shop:1", "healthPath": "/healthz"}, "database": {},
            "cdn": {"domains": ["shop.example.com"], "gateway": {"name": "public"},
                "rules": [{"pathPrefix": "/static/", "ttl": "30s"}, {"pathPrefix": "/news/", "ttl": "1s"},
                          {"pathPrefix": "/search", "bypass": true}],
                "defaultTtl": "30s", "staleIfError": "3s", "purgeAllowedCidrs": ["127.0.0.1/32"]}},
    });
    let mall = mall_controllers::validate::validate_value(&value, None).unwrap();
    let origin = Origin::start("/healthz");
    let tmp = tempfile::tempdir().unwrap();
    let vcl = edge::vcl::vcl(
        mall.spec.cdn.as_ref().unwrap(),
        &Backend { host: "127.0.0.1".into(), port: origin.port, health_path: "/healthz".into() },
    )
    .unwrap();
    let vcl_path = tmp.path().join("default.vcl");
    std::fs::write(&vcl_path, vcl).unwrap();
    let port = dataplane::free_port();
    let _varnish = dataplane::varnish(&vcl_path, &tmp.path().join("varnish"), port);
    let get = |path: &str, headers: &[(&str, &str)]| http(INSIDE, port, "GET", path, headers);

    assert_eq!(get(HEALTH_PATH, &[]).status, 200);

    // Cacheable: one origin request within the TTL; headers from spec.cdn.headers.
    let first = get("/static/app.js", &[]);
    let second = get("/static/app.js", &[("Cookie", "session=1")]);
    assert_eq!((first.status, second.status), (200, 200));
    assert_eq!(first.body, second.body);
    assert_eq!(origin.count("/static/app.js"), 1);
    assert_eq!(second.header("x-cache"), Some("HIT"));
    assert_eq!(second.header("cache-control"), Some("no-cache"));
    assert_eq!(second.header("surrogate-control"), Some("max-age=30, stale-if-error=3"));

    // Bypass: a bypass rule, the private paths, a session cookie, Authorization.
    for (path, headers) in [
        ("/search?q=shoes", &[][..]),
        ("/cart", &[][..]),
        ("/checkout/pay", &[][..]),
        ("/account", &[][..]),
        ("/home", &[("Cookie", "session=abc")][..]),
        ("/profile", &[("Authorization", "Bearer x")][..]),
    ] {
        for _ in 0..3 {
            assert_eq!(get(path, headers).status, 200, "{path}");
        }
        assert_eq!(origin.count(path), 3, "{path} must always reach the origin");
    }
    let plain = get("/home", &[]);
    assert_eq!(get("/home", &[]).body, plain.body, "an anonymous default path is cached");

    // PURGE and BAN: refused outside the ACL, honoured inside.
    assert_eq!(http(OUTSIDE, port, "PURGE", "/static/app.js", &[]).status, 405);
    assert_eq!(http(OUTSIDE, port, "BAN", "/static/", &[]).status, 405);
    assert_eq!(get("/static/app.js", &[]).header("x-cache"), Some("HIT"));
    assert_eq!(origin.count("/static/app.js"), 1);
    assert_eq!(http(INSIDE, port, "PURGE", "/static/app.js", &[]).status, 200);
    assert_eq!(get("/static/app.js", &[]).header("x-cache"), Some("MISS"));
    assert_eq!(origin.count("/static/app.js"), 2);
    assert_eq!(http(INSIDE, port, "BAN", "/static/", &[]).status, 200);
    get("/static/app.js", &[]);
    assert_eq!(origin.count("/static/app.js"), 3, "BAN must drop the object");

    // Grace: ttl 1s, staleIfError 3s. Stale while the origin fails inside the window, 503 after.
    let fresh = get("/news/today", &[]);
    let fetched = Instant::now();
    assert_eq!(fresh.status, 200);
    origin.set_down(true);
    std::thread::sleep(Duration::from_millis(1600));
    let stale = get("/news/today", &[]);
    assert!(fetched.elapsed() < Duration::from_millis(3500));
    assert_eq!((stale.status, stale.body.as_str()), (200, fresh.body.as_str()), "stale content inside grace");
    std::thread::sleep(Duration::from_secs(4).saturating_sub(fetched.elapsed()) + Duration::from_millis(800));
    assert_eq!(get("/news/today", &[]).status, 503, "past ttl + grace the error shows");
    assert_eq!(origin.count("/news/today"), 1);
}
