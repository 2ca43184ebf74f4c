//! The deployment files: docker-compose.yml (parsed, its topology asserted, vpcgate's environment
//! fed to the real config loader), the Dockerfile (against compose and config/sidecar.toml), every
//! config/*.toml example (loaded with `check-config`), and the sidecar topology rebuilt with Linux
//! network namespaces (Docker cannot run here): app ── gate ── aws, with no link app ── aws.
//!
//! The namespace tests need root, iproute2, dnsmasq, openssl and curl. Their addresses
//! (10.213.1.0/24 app-gate, 10.213.2.0/24 gate-aws) exist only inside the namespaces they create.

#[path = "support/mod.rs"]
mod support;

#[path = "support/netns.rs"]
mod netns;

use netns::{Lab, Proto};
use serde_json::Value as Json;
use serde_yaml_ng::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::{Duration, Instant};
use support::upstream::TestCa;

const VPCGATE: &str = env!("CARGO_BIN_EXE_vpcgate");

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(repo().join(rel)).unwrap_or_else(|e| panic!("cannot read {rel} ({e})"))
}

/// The vpcgate binary with exactly `env` (nothing inherited), from the repository root, bounded.
fn vpcgate(args: &[&str], env: &BTreeMap<String, String>) -> Output {
    std::process::Command::new("timeout").args(["-k", "2", "30", VPCGATE]).args(args).current_dir(repo()).env_clear().envs(env).output().expect("run vpcgate")
}

fn text(out: &Output) -> String {
    format!("status {}\nstdout:\n{}\nstderr:\n{}", out.status, String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

// ---------------------------------------------------------------------------------------------
// docker-compose.yml, read the way Compose reads it (both the short and the long syntaxes)
// ---------------------------------------------------------------------------------------------

fn compose() -> Value {
    serde_yaml_ng::from_str(&read("docker-compose.yml")).unwrap_or_else(|e| panic!("docker-compose.yml is not valid YAML: {e}"))
}

fn service<'a>(c: &'a Value, name: &str) -> &'a Value {
    let s = &c["services"][name];
    assert!(s.is_mapping(), "docker-compose.yml has no service {name:?}");
    s
}

fn scalar(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Null => None,
        other => panic!("expected a scalar, got {other:?}"),
    }
}

/// `environment:` as a map; `None` is a variable passed through from the shell that runs compose.
fn environment(svc: &Value) -> BTreeMap<String, Option<String>> {
    let mut out = BTreeMap::new();
    match &svc["environment"] {
        Value::Null => {}
        Value::Mapping(m) => {
            for (k, v) in m {
                out.insert(scalar(k).expect("environment key"), scalar(v));
            }
        }
        Value::Sequence(s) => {
            for item in s {
                let item = scalar(item).expect("environment entry");
                match item.split_once('=') {
                    Some((k, v)) => out.insert(k.to_string(), Some(v.to_string())),
                    None => out.insert(item, None),
                };
            }
        }
        other => panic!("environment must be a map or a list, got {other:?}"),
    }
    out
}

/// Compose interpolation of a value: `$$` is a dollar; `${NAME:-default}` and `${NAME-default}` take
/// the default. A variable without a default would make CI depend on its own environment: refused.
fn interpolate(s: &str) -> String {
    let mut out = String::new();
    let mut rest = s;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        if let Some(r) = after.strip_prefix('$') {
            out.push('$');
            rest = r;
        } else if let Some(r) = after.strip_prefix('{') {
            let end = r.find('}').unwrap_or_else(|| panic!("unclosed ${{ in {s:?}"));
            let inner = &r[..end];
            let default = inner
                .split_once(":-")
                .or_else(|| inner.split_once('-'))
                .map(|(_, d)| d)
                .unwrap_or_else(|| panic!("{s:?}: give ${{{inner}}} a default (${{{inner}:-…}}) so the file works without it"));
            out.push_str(default);
            rest = &r[end + 1..];
        } else {
            panic!("{s:?}: write variables as ${{NAME:-default}}");
        }
    }
    out.push_str(rest);
    out
}

fn networks(svc: &Value) -> BTreeSet<String> {
    match &svc["networks"] {
        Value::Null => ["default".to_string()].into(),
        Value::Sequence(s) => s.iter().map(|n| scalar(n).expect("network name")).collect(),
        Value::Mapping(m) => m.keys().map(|n| scalar(n).expect("network name")).collect(),
        other => panic!("networks must be a list or a map, got {other:?}"),
    }
}

#[derive(Debug, Clone, PartialEq)]
struct Mount {
    /// A named volume, a host path (bind) or "" (anonymous).
    source: String,
    target: String,
    read_only: bool,
    bind: bool,
}

fn mounts(svc: &Value) -> Vec<Mount> {
    let Value::Sequence(list) = &svc["volumes"] else { return Vec::new() };
    list.iter()
        .map(|v| match v {
            Value::String(s) => {
                let parts: Vec<&str> = s.split(':').collect();
                let (source, target, opts) = match parts.as_slice() {
                    [t] => ("", *t, ""),
                    [s, t] => (*s, *t, ""),
                    [s, t, o] => (*s, *t, *o),
                    _ => panic!("volume {s:?} has too many ':'"),
                };
                Mount {
                    source: source.to_string(),
                    target: target.to_string(),
                    read_only: opts.split(',').any(|o| o == "ro"),
                    bind: source.starts_with(['.', '/', '~', '$']),
                }
            }
            Value::Mapping(_) => Mount {
                source: scalar(&v["source"]).unwrap_or_default(),
                target: scalar(&v["target"]).expect("volume target"),
                read_only: v["read_only"].as_bool().unwrap_or(false),
                bind: v["type"].as_str() == Some("bind"),
            },
            other => panic!("volume entry {other:?}"),
        })
        .collect()
}

/// The mount that holds `path` (the longest target that is `path` or a parent of it).
fn mount_of<'a>(mounts: &'a [Mount], path: &str) -> Option<&'a Mount> {
    mounts.iter().filter(|m| path == m.target || path.starts_with(&format!("{}/", m.target.trim_end_matches('/')))).max_by_key(|m| m.target.len())
}

fn relative_in(m: &Mount, path: &str) -> String {
    path.strip_prefix(m.target.trim_end_matches('/')).unwrap_or(path).trim_start_matches('/').to_string()
}

/// The vpcgate service's environment after interpolation (pass-through variables left out).
fn vpcgate_env(c: &Value) -> BTreeMap<String, String> {
    environment(service(c, "vpcgate")).into_iter().filter_map(|(k, v)| v.map(|v| (k, interpolate(&v)))).collect()
}

fn port_of(listen: &str) -> u16 {
    let addr: std::net::SocketAddr = listen.parse().unwrap_or_else(|_| panic!("{listen:?} is not IP:PORT"));
    addr.port()
}

#[test]
fn compose_topology_keeps_app_behind_vpcgate_and_the_ca_key_private() {
    let c = compose();
    let gate = service(&c, "vpcgate");
    let app = service(&c, "app");
    let genv = vpcgate_env(&c);
    let aenv: BTreeMap<String, String> = environment(app).into_iter().filter_map(|(k, v)| v.map(|v| (k, interpolate(&v)))).collect();
    assert!(!gate["build"].is_null(), "the vpcgate service builds the image from this repository");

    // Networks: internal has no egress; app is only on it; vpcgate bridges both.
    let internal = &c["networks"]["internal"];
    assert_eq!(internal["internal"].as_bool(), Some(true), "networks.internal must set internal: true (no egress)");
    assert!(c["networks"].get("egress").is_some(), "a network named egress is declared");
    assert_ne!(c["networks"]["egress"]["internal"].as_bool(), Some(true), "egress must reach the outside");
    assert_eq!(networks(app), BTreeSet::from(["internal".to_string()]), "app is on the internal network only");
    assert!(app.get("network_mode").is_none(), "app must not choose another network mode");
    let gnets = networks(gate);
    assert!(gnets.contains("internal") && gnets.contains("egress"), "vpcgate is on internal and egress: {gnets:?}");
    assert!(gate.get("ports").is_none(), "vpcgate publishes no host ports (the proxy listens on 0.0.0.0)");

    // HTTPS_PROXY names the vpcgate service (reachable: same network) and the port it listens on.
    let proxy = aenv.get("HTTPS_PROXY").expect("app sets HTTPS_PROXY");
    let hostport = proxy.strip_prefix("http://").unwrap_or_else(|| panic!("HTTPS_PROXY {proxy:?} must be http://SERVICE:PORT")).trim_end_matches('/');
    let (host, port) = hostport.rsplit_once(':').unwrap_or_else(|| panic!("HTTPS_PROXY {proxy:?} has no port"));
    assert_eq!(host, "vpcgate", "HTTPS_PROXY names the vpcgate service");
    let listen = genv.get("VPCGATE__PROXY__LISTEN").expect("vpcgate sets VPCGATE__PROXY__LISTEN");
    assert_eq!(port.parse::<u16>().ok(), Some(port_of(listen)), "HTTPS_PROXY port vs VPCGATE__PROXY__LISTEN {listen}");
    let ip: std::net::SocketAddr = listen.parse().unwrap();
    assert!(ip.ip().is_unspecified(), "vpcgate must listen on all interfaces for other containers: {listen}");
    assert!(aenv.keys().all(|k| !k.eq_ignore_ascii_case("no_proxy")), "NO_PROXY would let the SDK go around vpcgate");
    assert_eq!(aenv.get("AWS_S3_US_EAST_1_REGIONAL_ENDPOINT").map(String::as_str), Some("regional"));

    // The CA certificate lives in a named volume app mounts read-only; the key in one it never mounts.
    let gmounts = mounts(gate);
    let amounts = mounts(app);
    let cert = genv.get("VPCGATE__TLS__CA_CERT").expect("vpcgate sets VPCGATE__TLS__CA_CERT");
    let key = genv.get("VPCGATE__TLS__CA_KEY").expect("vpcgate sets VPCGATE__TLS__CA_KEY");
    let cert_vol = mount_of(&gmounts, cert).unwrap_or_else(|| panic!("tls.ca_cert {cert} is in no volume of vpcgate"));
    let key_vol = mount_of(&gmounts, key).unwrap_or_else(|| panic!("tls.ca_key {key} is in no volume of vpcgate"));
    for v in [cert_vol, key_vol] {
        assert!(!v.bind && !v.source.is_empty(), "{v:?} must be a named volume");
        assert!(c["volumes"].get(v.source.as_str()).is_some(), "volume {} is declared at the top level", v.source);
        assert!(!v.read_only, "vpcgate writes the CA into {v:?} on first start");
    }
    assert_ne!(cert_vol.source, key_vol.source, "the CA key must not share the certificate's volume");
    assert!(amounts.iter().all(|m| m.source != key_vol.source), "app must not mount the CA key's volume {}: {amounts:?}", key_vol.source);
    assert!(amounts.iter().all(|m| !m.bind), "app mounts no host paths: {amounts:?}");
    let bundle = aenv.get("AWS_CA_BUNDLE").expect("app sets AWS_CA_BUNDLE");
    let bundle_vol = mount_of(&amounts, bundle).unwrap_or_else(|| panic!("AWS_CA_BUNDLE {bundle} is in no volume app mounts"));
    assert_eq!(bundle_vol.source, cert_vol.source, "AWS_CA_BUNDLE must be in the volume vpcgate writes its CA to");
    assert_eq!(relative_in(bundle_vol, bundle), relative_in(cert_vol, cert), "AWS_CA_BUNDLE must be vpcgate's tls.ca_cert");
    assert!(bundle_vol.read_only, "app mounts the CA volume read-only");

    // app starts once vpcgate is healthy (so the CA exists); vpcgate has a healthcheck.
    assert_eq!(app["depends_on"]["vpcgate"]["condition"].as_str(), Some("service_healthy"));
    assert!(gate["healthcheck"]["test"].is_sequence(), "vpcgate has healthcheck.test");
    assert!(gate["healthcheck"]["disable"].as_bool() != Some(true));
}

#[test]
fn compose_vpcgate_environment_loads_with_the_real_config_loader() {
    let c = compose();
    let env = vpcgate_env(&c);
    assert!(env.keys().any(|k| k.starts_with("VPCGATE__")), "the vpcgate service is configured by VPCGATE__ variables");

    // On its own (embedded default + environment) and as the image runs it (its VPCGATE_CONFIG file).
    let (_, repo_file) = baked_config();
    let baked = repo().join(&repo_file);
    let mut with_file = env.clone();
    with_file.insert("VPCGATE_CONFIG".into(), baked.display().to_string());
    for env in [&env, &with_file] {
        let out = vpcgate(&["check-config"], env);
        assert!(out.status.success(), "compose's vpcgate environment does not load:\n{}", text(&out));
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(stdout.contains("VPCGATE__ environment variables"), "the variables were read: {stdout}");
    }
    let out = vpcgate(&["check-config"], &with_file);
    assert!(String::from_utf8_lossy(&out.stdout).contains(&repo_file), "the baked config file was read: {}", text(&out));

    // The same check catches a misspelled variable or value (so a typo in the compose file fails CI).
    for (k, v) in [("VPCGATE__PROXY__LISTN", "0.0.0.0:3128"), ("VPCGATE__PROXI__LISTEN", "0.0.0.0:3128"), ("VPCGATE__TLS__MODE", "inspekt")] {
        let mut bad = env.clone();
        bad.insert(k.into(), v.into());
        let out = vpcgate(&["check-config"], &bad);
        assert_eq!(out.status.code(), Some(2), "{k}={v} must be refused:\n{}", text(&out));
    }
}

// ---------------------------------------------------------------------------------------------
// Dockerfile and .dockerignore
// ---------------------------------------------------------------------------------------------

/// (INSTRUCTION, arguments) with continuation lines joined and comments dropped.
fn dockerfile() -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut cur = String::new();
    for line in read("Dockerfile").lines() {
        let t = line.trim();
        if t.starts_with('#') || (t.is_empty() && cur.is_empty()) {
            continue;
        }
        if let Some(part) = t.strip_suffix('\\') {
            cur.push_str(part);
            cur.push(' ');
            continue;
        }
        cur.push_str(t);
        let (ins, args) = cur.trim().split_once(char::is_whitespace).unwrap_or((cur.trim(), ""));
        out.push((ins.to_ascii_uppercase(), args.split_whitespace().collect::<Vec<_>>().join(" ")));
        cur.clear();
    }
    out
}

/// The image's VPCGATE_CONFIG path and the repository file the Dockerfile copies there.
fn baked_config() -> (String, String) {
    let d = dockerfile();
    let path = d
        .iter()
        .filter(|(i, _)| i == "ENV")
        .find_map(|(_, a)| a.strip_prefix("VPCGATE_CONFIG=").map(|p| p.trim_matches('"').to_string()))
        .expect("the Dockerfile sets ENV VPCGATE_CONFIG=…");
    let src = d
        .iter()
        .filter(|(i, a)| i == "COPY" && !a.starts_with("--from"))
        .find_map(|(_, a)| {
            let parts: Vec<&str> = a.split_whitespace().collect();
            (parts.len() == 2 && parts[1] == path).then(|| parts[0].to_string())
        })
        .unwrap_or_else(|| panic!("the Dockerfile copies no repository file to VPCGATE_CONFIG {path}"));
    (path, src)
}

/// `listen` of `[section]` in a TOML file (a line scan: enough for our own examples).
fn toml_listen(rel: &str, section: &str) -> String {
    let mut cur = String::new();
    for line in read(rel).lines() {
        let t = line.trim();
        if t.starts_with('[') {
            cur = t.trim_matches(|c| c == '[' || c == ']').to_string();
        } else if cur == section {
            if let Some(v) = t.strip_prefix("listen").map(str::trim_start).and_then(|v| v.strip_prefix('=')) {
                return v.split('#').next().unwrap().trim().trim_matches('"').to_string();
            }
        }
    }
    panic!("{rel} has no [{section}] listen");
}

#[test]
fn dockerfile_agrees_with_compose_and_the_sidecar_config() {
    let d = dockerfile();
    let from: Vec<&str> = d.iter().filter(|(i, _)| i == "FROM").map(|(_, a)| a.as_str()).collect();
    assert!(from.first().is_some_and(|f| f.starts_with("rust:1-slim-bookworm ")), "builder stage: {from:?}");
    assert_eq!(from.last().copied(), Some("debian:bookworm-slim"), "runtime stage: {from:?}");
    assert!(d.iter().any(|(i, a)| i == "RUN" && a.contains("cargo build --release --locked")));
    let user = d.iter().rfind(|(i, _)| i == "USER").map(|(_, a)| a.as_str());
    assert_eq!(user, Some("vpcgate"), "the image runs as the non-root user vpcgate");

    // The volumes' mount points exist in the image, owned by vpcgate (new named volumes copy that).
    let c = compose();
    let env = vpcgate_env(&c);
    for key in ["VPCGATE__TLS__CA_CERT", "VPCGATE__TLS__CA_KEY"] {
        let dir = Path::new(&env[key]).parent().unwrap().display().to_string();
        assert!(d.iter().any(|(i, a)| i == "RUN" && a.contains("chown") && a.contains(&dir)), "the Dockerfile creates {dir} owned by vpcgate");
    }

    // Ports: EXPOSE = the sidecar config's listeners = compose's.
    let expose: BTreeSet<u16> = d
        .iter()
        .filter(|(i, _)| i == "EXPOSE")
        .flat_map(|(_, a)| a.split_whitespace().map(|p| p.trim_end_matches("/tcp").parse::<u16>().expect("EXPOSE port")).collect::<Vec<_>>())
        .collect();
    let sidecar: BTreeSet<u16> =
        [toml_listen("config/sidecar.toml", "proxy"), toml_listen("config/sidecar.toml", "admin")].iter().map(|l| port_of(l)).collect();
    let composed: BTreeSet<u16> = ["VPCGATE__PROXY__LISTEN", "VPCGATE__ADMIN__LISTEN"].iter().map(|k| port_of(&env[*k])).collect();
    assert_eq!(expose, sidecar, "EXPOSE vs config/sidecar.toml");
    assert_eq!(expose, composed, "EXPOSE vs docker-compose.yml");

    // One health check command for both.
    let hc = d.iter().find(|(i, _)| i == "HEALTHCHECK").map(|(_, a)| a.clone()).expect("a HEALTHCHECK");
    let compose_test: Vec<String> = service(&c, "vpcgate")["healthcheck"]["test"].as_sequence().unwrap().iter().map(|v| scalar(v).unwrap()).collect();
    let exec_form = format!("CMD [{}]", compose_test[1..].iter().map(|s| format!("\"{s}\"")).collect::<Vec<_>>().join(", "));
    assert_eq!(compose_test.first().map(String::as_str), Some("CMD"));
    assert!(hc.ends_with(&exec_form), "HEALTHCHECK {hc:?} runs {exec_form}, like compose");

    // Every COPY source exists and is not excluded from the build context.
    let ignore: Vec<String> = read(".dockerignore").lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')).map(String::from).collect();
    for needed in [".git", "target/", "certs/*"] {
        assert!(ignore.iter().any(|l| l == needed), ".dockerignore lists {needed}");
    }
    for (_, a) in d.iter().filter(|(i, a)| i == "COPY" && !a.starts_with("--from")) {
        let parts: Vec<&str> = a.split_whitespace().collect();
        for src in &parts[..parts.len() - 1] {
            assert!(repo().join(src).exists(), "COPY source {src} exists");
            for pat in &ignore {
                let p = pat.trim_end_matches('/').trim_end_matches("/*");
                assert!(!(src.trim_end_matches('/') == p || src.starts_with(&format!("{p}/"))), ".dockerignore {pat} excludes COPY source {src}");
            }
        }
    }
    let (_, baked) = baked_config();
    assert_eq!(baked, "config/sidecar.toml");
}

// ---------------------------------------------------------------------------------------------
// config/*.toml and the prefix-list snapshot
// ---------------------------------------------------------------------------------------------

const PL_63A5400A: [&str; 8] =
    ["16.15.176.0/20", "16.15.192.0/18", "16.182.0.0/16", "18.34.0.0/19", "18.34.232.0/21", "3.5.0.0/19", "52.216.0.0/15", "54.231.0.0/16"];

#[test]
fn every_example_config_loads() {
    let mut seen = Vec::new();
    for entry in std::fs::read_dir(repo().join("config")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().and_then(|e| e.to_str()) != Some("toml") {
            continue;
        }
        let rel = format!("config/{}", path.file_name().unwrap().to_str().unwrap());
        let out = vpcgate(&["--config", &rel, "check-config"], &BTreeMap::new());
        assert!(out.status.success(), "{rel} does not load:\n{}", text(&out));
        seen.push(rel);
    }
    for needed in ["config/ec2-gateway.toml", "config/sidecar.toml", "config/laptop-vpn.toml"] {
        assert!(seen.iter().any(|s| s == needed), "{needed} exists: {seen:?}");
    }

    let routes = |rel: &str| {
        let out = vpcgate(&["--config", rel, "routes"], &BTreeMap::new());
        assert!(out.status.success(), "{}", text(&out));
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    // The EC2 example follows the list in AWS; with no copy fetched yet it holds nothing (fail
    // closed), and the snapshot still loads as a cidrs_file.
    let gw = routes("config/ec2-gateway.toml");
    assert!(gw.starts_with("s3-gateway (s3 gateway) 0 CIDRs from prefix list com.amazonaws.us-east-1.s3, not fetched yet"), "{gw}");
    assert_eq!(gw.lines().count(), 1, "one route: {gw}");
    let snapshot = vpcgate::routes::parse_cidr_source(&read("config/pl-63a5400a.json"), &[], "s3").expect("the snapshot is a cidrs_file");
    assert_eq!(snapshot.0.len(), PL_63A5400A.len());
    let vpn = routes("config/laptop-vpn.toml");
    assert!(vpn.starts_with("s3-interface (s3 interface, endpoint vpce-0abc1234def567890-abcdefgh.s3.us-east-1.vpce.amazonaws.com) 1 CIDRs"), "{vpn}");
    assert!(!vpn.contains("(gateway"), "no gateway route over a VPN: {vpn}");
    let side = routes("config/sidecar.toml");
    assert!(side.starts_with("s3-default (s3 gateway)"), "{side}");

    // The sidecar takes its region from AWS_REGION (decided before any lookup; the DNS server is a
    // closed loopback port all the same, so nothing leaves this machine).
    let env = BTreeMap::from([("AWS_REGION".to_string(), "eu-west-1".to_string()), ("VPCGATE__DNS__SERVERS".to_string(), "127.0.0.1:9".to_string())]);
    let out = vpcgate(&["--config", "config/sidecar.toml", "explain", "s3.us-east-1.amazonaws.com", "--json"], &env);
    let ex: Json = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("explain --json ({e}):\n{}", text(&out)));
    assert_eq!(ex["decision"], "deny", "{ex}");
    assert_eq!(ex["reason"], "other_region", "{ex}");
}

#[test]
fn prefix_list_snapshot_is_get_managed_prefix_list_entries_output() {
    let v: Json = serde_json::from_str(&read("config/pl-63a5400a.json")).expect("config/pl-63a5400a.json is JSON");
    let entries = v["Entries"].as_array().expect("an Entries array");
    let cidrs: Vec<&str> = entries.iter().map(|e| e["Cidr"].as_str().expect("Cidr")).collect();
    assert_eq!(cidrs, PL_63A5400A);
    for e in entries {
        let keys: BTreeSet<&str> = e.as_object().unwrap().keys().map(String::as_str).collect();
        assert!(keys.is_subset(&BTreeSet::from(["Cidr", "Description"])), "only the API's fields: {keys:?}");
    }
    let toml = read("config/ec2-gateway.toml");
    for needed in [
        "cidrs_file = \"config/pl-63a5400a.json\"",
        "prefix_list = \"com.amazonaws.us-east-1.s3\"",
        "require = \"route_table\"",
        "describe-managed-prefix-lists",
        "Name=prefix-list-name,Values=com.amazonaws.us-east-1.s3",
        "get-managed-prefix-list-entries --prefix-list-id",
        "EXAMPLE SNAPSHOT",
        "2024-05",
        "\"169.254.169.253:53\"",
    ] {
        assert!(toml.contains(needed), "config/ec2-gateway.toml mentions {needed}");
    }
}

// ---------------------------------------------------------------------------------------------
// The sidecar topology in network namespaces
// ---------------------------------------------------------------------------------------------

const HOST: &str = "s3.us-east-1.amazonaws.com";
const APP: &str = "10.213.1.2";
const GATE_APP_SIDE: &str = "10.213.1.1";
const GATE_AWS_SIDE: &str = "10.213.2.1";
const AWS: &str = "10.213.2.2";

struct Curl {
    code: i32,
    connect: u16,
    status: u16,
    body: String,
    stderr: String,
}

fn curl_in(lab: &Lab, ns: &str, args: &[&str]) -> Curl {
    let mut all = vec!["curl", "-sS", "-v", "--connect-timeout", "5", "--max-time", "10", "-w", "\n%{http_connect} %{http_code}"];
    all.extend_from_slice(args);
    let out = lab.exec(ns, &all, 15);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, codes) = stdout.rsplit_once('\n').unwrap_or(("", &stdout));
    let mut it = codes.split_whitespace().map(|c| c.parse::<u16>().unwrap_or(0));
    Curl {
        code: out.status.code().unwrap_or(-1),
        connect: it.next().unwrap_or(0),
        status: it.next().unwrap_or(0),
        body: body.to_string(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn json_events(log: &str, kind: &str) -> Vec<Json> {
    log.lines().filter_map(|l| serde_json::from_str::<Json>(l).ok()).filter(|v| v["event"] == kind).collect()
}

fn wait_event(lab: &mut Lab, i: usize, kind: &str) -> Json {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let log = lab.proc(i).log_text();
        if let Some(v) = json_events(&log, kind).into_iter().find(|v| v["host"] == HOST) {
            return v;
        }
        assert!(Instant::now() < deadline, "no {kind} event for {HOST}:\n{log}");
        std::thread::sleep(Duration::from_millis(25));
    }
}

#[derive(PartialEq)]
enum Mode {
    Passthrough,
    Inspect,
}

fn sidecar_lab(tag: &str, mode: Mode) {
    netns::preflight(&[
        ("ip", "iproute2"),
        ("ss", "iproute2"),
        ("dnsmasq", "dnsmasq-base"),
        ("openssl", "openssl"),
        ("curl", "curl"),
        ("timeout", "coreutils"),
    ]);
    let started = Instant::now();
    let mut lab = Lab::new(tag);
    let app = lab.namespace("app");
    let gate = lab.namespace("gate");
    let aws = lab.namespace("aws");
    lab.veth((&app, "eth0", &format!("{APP}/24")), (&gate, "app0", &format!("{GATE_APP_SIDE}/24")));
    lab.veth((&gate, "aws0", &format!("{GATE_AWS_SIDE}/24")), (&aws, "eth0", &format!("{AWS}/24")));
    // gate is a proxy, not a router.
    lab.set_sysctl(&gate, "net.ipv4.ip_forward", "0");
    assert_eq!(lab.sysctl(&gate, "net.ipv4.ip_forward"), "0");
    // app knows only its link to gate; aws only its link to gate.
    let app_routes = lab.exec_ok(&app, &["ip", "-4", "route", "show"], 10);
    assert_eq!(app_routes.trim().lines().count(), 1, "app has one route: {app_routes}");
    assert!(app_routes.starts_with("10.213.1.0/24 dev eth0"), "{app_routes}");
    assert!(!lab.exec(&app, &["ip", "route", "get", AWS], 10).status.success(), "app has no route to aws");
    let aws_routes = lab.exec_ok(&aws, &["ip", "-4", "route", "show"], 10);
    assert!(aws_routes.trim().lines().count() == 1 && aws_routes.starts_with("10.213.2.0/24 dev eth0"), "{aws_routes}");

    // A CA of the test's own and an upstream leaf for the S3 name.
    let dir = lab.dir.path().to_path_buf();
    let ca = TestCa::new("vpcgate deploy test CA");
    let test_ca = ca.write_pem(&dir);
    let (leaf, key) = ca.leaf(&[HOST]);
    let (leaf_path, key_path) = (dir.join("leaf.pem"), dir.join("key.pem"));
    std::fs::write(&leaf_path, leaf).unwrap();
    std::fs::write(&key_path, key).unwrap();
    let p = |p: &Path| p.display().to_string();

    // aws: DNS and TLS.
    let dnsmasq = netns::which("dnsmasq").unwrap().display().to_string();
    let dns = lab.spawn(
        &aws,
        "dnsmasq",
        &[
            &dnsmasq,
            "--no-daemon",
            "--no-resolv",
            "--no-hosts",
            "--bind-interfaces",
            "--conf-file=/dev/null",
            "--pid-file=",
            "--log-queries",
            "--log-facility=-",
            &format!("--listen-address={AWS}"),
            &format!("--address=/{HOST}/{AWS}"),
        ],
        &[],
        60,
    );
    lab.wait_listening(&aws, Proto::Udp, &format!("{AWS}:53"), dns);
    let upstream = lab.spawn(
        &aws,
        "s_server",
        &["openssl", "s_server", "-accept", &format!("{AWS}:443"), "-www", "-cert", &p(&leaf_path), "-key", &p(&key_path)],
        &[],
        60,
    );
    lab.wait_listening(&aws, Proto::Tcp, &format!("{AWS}:443"), upstream);

    // gate: vpcgate on its app-side address, resolving through aws's DNS, one route: aws's /24.
    let (tls, admin, trust) = match mode {
        Mode::Passthrough => ("mode = \"passthrough\"\n".to_string(), format!("listen = \"{GATE_APP_SIDE}:9128\"\n"), test_ca.clone()),
        Mode::Inspect => (
            format!(
                "mode = \"inspect\"\nca_cert = \"{d}/gate-ca/ca.pem\"\nca_key = \"{d}/gate-ca/ca-key.pem\"\nextra_roots = [\"{}\"]\n",
                p(&test_ca),
                d = p(&dir)
            ),
            "enabled = false\n".to_string(),
            dir.join("gate-ca/ca.pem"),
        ),
    };
    let cfg = dir.join("vpcgate.toml");
    std::fs::write(
        &cfg,
        format!(
            "[proxy]\nlisten = \"{GATE_APP_SIDE}:3128\"\nhandshake_timeout = \"5s\"\nshutdown_grace = \"1s\"\n\
             [dns]\nservers = [\"{AWS}:53\"]\ntimeout = \"2s\"\n[aws]\nregions = [\"us-east-1\"]\n\
             [[routes]]\nname = \"lab-gateway\"\nkind = \"gateway\"\ncidrs = [\"10.213.2.0/24\"]\n\
             [tls]\n{tls}[admin]\n{admin}[log]\nformat = \"json\"\nlevel = \"info\"\n"
        ),
    )
    .unwrap();
    let gw = lab.spawn(&gate, "vpcgate", &[VPCGATE, "--config", &p(&cfg), "run"], &[], 60);
    lab.wait_listening(&gate, Proto::Tcp, &format!("{GATE_APP_SIDE}:3128"), gw);
    lab.wait_log(gw, "vpcgate listening");

    // app → aws directly: no route.
    let url = format!("https://{HOST}/");
    let resolve = format!("{HOST}:443:{AWS}");
    let direct = curl_in(&lab, &app, &["--noproxy", "*", "--resolve", &resolve, "--cacert", &p(&test_ca), &url]);
    assert_eq!(direct.code, 7, "app must not reach aws directly (curl: couldn't connect):\n{}", direct.stderr);
    assert!(direct.stderr.contains("unreachable") || direct.stderr.contains("Couldn't connect"), "{}", direct.stderr);

    // app → vpcgate → aws: 200 from the upstream in aws (s_server's page names its own address).
    let via = curl_in(&lab, &app, &["--proxy", &format!("http://{GATE_APP_SIDE}:3128"), "--cacert", &p(&trust), &url]);
    assert_eq!((via.code, via.connect, via.status), (0, 200, 200), "through vpcgate:\n{}\n{}", via.stderr, lab.proc(gw).log_text());
    assert!(via.body.contains(&format!("s_server -accept {AWS}:443")), "the answer came from aws's upstream: {}", via.body);

    // The evidence: vpcgate resolved through aws's DNS (from its aws-side address) and chose aws's
    // address through the lab route.
    let c = wait_event(&mut lab, gw, "connect");
    assert_eq!(c["decision"], "allow", "{c}");
    assert_eq!(c["chosen"], AWS, "{c}");
    assert_eq!(c["route"], "lab-gateway", "{c}");
    assert_eq!(c["cidr"], "10.213.2.0/24", "{c}");
    assert!(c["client"].as_str().is_some_and(|s| s.starts_with(&format!("{APP}:"))), "{c}");
    let dns_log = lab.proc(dns).log_text();
    assert!(dns_log.contains(&format!("query[A] {HOST} from {GATE_AWS_SIDE}")), "{dns_log}");

    match mode {
        Mode::Passthrough => {
            // The client's TLS went end to end: curl verified the aws leaf against the test CA.
            let close = wait_event(&mut lab, gw, "close");
            assert_eq!(close["sni"], HOST, "{close}");
            assert!(close["tls_version"].as_str().is_some_and(|v| v.starts_with("TLS1.")), "{close}");
            // The admin listener on the gate address answers /healthz (a compose healthcheck's view).
            let hz = curl_in(&lab, &app, &["--noproxy", "*", &format!("http://{GATE_APP_SIDE}:9128/healthz")]);
            assert_eq!((hz.code, hz.status), (0, 200), "{}", hz.stderr);
            healthcheck_in_gate(&lab, &gate, &cfg);
        }
        Mode::Inspect => {
            // vpcgate showed its own leaf: the test CA alone does not verify it.
            assert!(via.stderr.contains("issuer:") && via.stderr.contains("vpcgate"), "{}", via.stderr);
            let untrusted = curl_in(&lab, &app, &["--proxy", &format!("http://{GATE_APP_SIDE}:3128"), "--cacert", &p(&test_ca), &url]);
            assert_eq!(untrusted.code, 60, "inspect mode presents vpcgate's CA:\n{}", untrusted.stderr);
            let r = wait_event(&mut lab, gw, "request");
            assert_eq!(r["decision"], "allow", "{r}");
            assert_eq!(r["status"], 200, "{r}");
            let key_mode = std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(dir.join("gate-ca/ca-key.pem")).unwrap().permissions());
            assert_eq!(key_mode & 0o777, 0o600);
        }
    }
    drop(lab);
    assert!(started.elapsed() < Duration::from_secs(30), "the lab took {:?}", started.elapsed());
}

/// The image's HEALTHCHECK command, run beside vpcgate as Docker would (same config, no other
/// environment): healthy now, and failing for an admin address nobody serves.
fn healthcheck_in_gate(lab: &Lab, gate: &str, cfg: &Path) {
    let d = dockerfile();
    let hc = &d.iter().find(|(i, _)| i == "HEALTHCHECK").expect("a HEALTHCHECK").1;
    let json = hc.split_once("CMD ").expect("HEALTHCHECK … CMD [exec form]").1;
    let argv: Vec<String> = serde_json::from_str(json).unwrap_or_else(|e| panic!("HEALTHCHECK CMD {json} is not the exec form ({e})"));
    assert_eq!(argv.first().map(String::as_str), Some("vpcgate"));
    let probe = vpcgate(&[argv[1].as_str(), "--help"], &BTreeMap::new());
    assert!(probe.status.success(), "the image's HEALTHCHECK runs `vpcgate {}`, which this binary does not have:\n{}", argv[1..].join(" "), text(&probe));
    let config = format!("VPCGATE_CONFIG={}", cfg.display());
    let mut cmd: Vec<&str> = vec!["env", "-i", &config, VPCGATE];
    cmd.extend(argv[1..].iter().map(String::as_str));
    let out = lab.exec(gate, &cmd, 10);
    assert!(out.status.success(), "the HEALTHCHECK command fails against a healthy vpcgate:\n{}", text(&out));
    let elsewhere = format!("VPCGATE__ADMIN__LISTEN={GATE_APP_SIDE}:9129");
    cmd.insert(3, &elsewhere);
    let out = lab.exec(gate, &cmd, 10);
    assert_eq!(out.status.code(), Some(1), "nothing answers on 9129: unhealthy is exit 1:\n{}", text(&out));
}

#[test]
fn sidecar_in_namespaces_passthrough() {
    sidecar_lab("pt", Mode::Passthrough);
}

#[test]
fn sidecar_in_namespaces_inspect() {
    sidecar_lab("in", Mode::Inspect);
}
