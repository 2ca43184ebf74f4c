//! deploy/kubernetes/: the two shapes vpcgate ships for Kubernetes, checked without a cluster.
//!
//! - Every manifest validates strictly (unknown fields are errors) against the Kubernetes API
//!   schemas of two releases with kubernetes-validate (PyPI, pinned; installed into
//!   target/k8s-validate by integration-tests/kubernetes/setup-validator.sh when missing), as
//!   written and as kustomize renders it; every kustomization lists every file of its directory.
//! - The manifests agree with the vpcgate configurations they ship (ports, paths, volumes, UIDs,
//!   probes, arguments), and every configuration loads with `vpcgate check-config`.
//! - The sidecar shape's egress-rules.sh, run as it is in a network namespace standing in for the
//!   pod, leaves only vpcgate's UID a way out (IPv4 and IPv6): the application's UID is refused on
//!   a direct connection and reaches the same upstream through vpcgate on loopback.
//! - The gateway shape's `run --watch-config` reloads a ConfigMap that is updated the way kubelet
//!   updates one (a new timestamped directory, the `..data` symlink swapped by rename), refuses a
//!   broken update and keeps serving the previous configuration.
//!
//! The namespace test needs root, iproute2, dnsmasq, openssl, curl, bash, setpriv and iptables
//! (integration-tests/kubernetes/setup-netfilter.sh installs the last two). Its addresses
//! (10.214.1.0/24, fd14:214::/64) exist only inside the namespaces it creates. The reload test binds
//! 127.121.x.1:443 (root).

#[path = "support/mod.rs"]
mod support;

#[path = "support/netns.rs"]
mod netns;

use netns::{Lab, Proto};
use serde::Deserialize;
use serde_json::Value as Json;
use serde_yaml_ng::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};
use support::harness::{connect_req, eventually, free_port, raw_request};
use support::upstream::TestCa;

const VPCGATE: &str = env!("CARGO_BIN_EXE_vpcgate");
/// The releases the manifests are validated against: the first with native sidecars GA, and the
/// newest kubernetes-validate ships.
const K8S_VERSIONS: [&str; 2] = ["1.33.0", "1.37.0"];
const KUBE: &str = "deploy/kubernetes";

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(repo().join(rel)).unwrap_or_else(|e| panic!("cannot read {rel} ({e})"))
}

fn text(out: &Output) -> String {
    format!("status {}\nstdout:\n{}\nstderr:\n{}", out.status, String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

/// Every file under `rel` (recursively), as repository-relative paths, sorted.
fn files_under(rel: &str) -> Vec<String> {
    fn walk(dir: &Path, base: &Path, out: &mut Vec<String>) {
        let entries = std::fs::read_dir(dir).unwrap_or_else(|e| panic!("cannot list {} ({e})", dir.display()));
        for e in entries {
            let p = e.unwrap().path();
            if p.is_dir() {
                walk(&p, base, out);
            } else {
                out.push(p.strip_prefix(base).unwrap().display().to_string());
            }
        }
    }
    let mut out = Vec::new();
    walk(&repo().join(rel), &repo(), &mut out);
    out.sort();
    out
}

fn is_yaml(rel: &str) -> bool {
    rel.ends_with(".yaml") || rel.ends_with(".yml")
}

fn file_name(rel: &str) -> &str {
    rel.rsplit('/').next().unwrap()
}

fn parent(rel: &str) -> &str {
    rel.rsplit_once('/').map(|(d, _)| d).unwrap_or("")
}

/// The YAML documents of a file (empty documents left out).
fn documents(rel: &str) -> Vec<Value> {
    let text = read(rel);
    serde_yaml_ng::Deserializer::from_str(&text)
        .map(|d| Value::deserialize(d).unwrap_or_else(|e| panic!("{rel} is not valid YAML: {e}")))
        .filter(|v| !v.is_null())
        .collect()
}

fn s(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        other => panic!("expected a scalar, got {other:?}"),
    }
}

fn strings(v: &Value) -> Vec<String> {
    v.as_sequence().map(|q| q.iter().map(s).collect()).unwrap_or_default()
}

// ---------------------------------------------------------------------------------------------
// Kustomizations
// ---------------------------------------------------------------------------------------------

struct Generator {
    name: String,
    /// Repository-relative paths of the files, with the ConfigMap key of each.
    files: Vec<(String, String)>,
    hashed: bool,
}

struct Kustomization {
    dir: String,
    namespace: Option<String>,
    resources: Vec<String>,
    generators: Vec<Generator>,
}

impl Kustomization {
    fn generator_of(&self, file: &str) -> &Generator {
        let rel = format!("{}/{file}", self.dir);
        self.generators
            .iter()
            .find(|g| g.files.iter().any(|(f, _)| *f == rel))
            .unwrap_or_else(|| panic!("no configMapGenerator of {}/kustomization.yaml holds {file}", self.dir))
    }

    /// The documents of every resource, with the file each came from.
    fn docs(&self) -> Vec<(String, Value)> {
        self.resources.iter().flat_map(|r| documents(r).into_iter().map(move |d| (r.clone(), d))).collect()
    }
}

/// The keys this test knows how to follow. A kustomization using another (patches, images,
/// components…) would change what is applied without this test seeing it: teach the test first.
const KUSTOMIZATION_KEYS: [&str; 5] = ["apiVersion", "kind", "namespace", "resources", "configMapGenerator"];

fn kustomization(dir: &str) -> Kustomization {
    let rel = format!("{dir}/kustomization.yaml");
    let k = documents(&rel).into_iter().next().unwrap_or_else(|| panic!("{rel} is empty"));
    assert_eq!(k["apiVersion"].as_str(), Some("kustomize.config.k8s.io/v1beta1"), "{rel}");
    assert_eq!(k["kind"].as_str(), Some("Kustomization"), "{rel}");
    for key in k.as_mapping().unwrap().keys() {
        let key = s(key);
        assert!(KUSTOMIZATION_KEYS.contains(&key.as_str()), "{rel}: this test does not follow `{key}` yet (it follows {KUSTOMIZATION_KEYS:?})");
    }
    let resources: Vec<String> = strings(&k["resources"]).into_iter().map(|r| format!("{dir}/{r}")).collect();
    let generators = k["configMapGenerator"]
        .as_sequence()
        .map(|gs| {
            gs.iter()
                .map(|g| {
                    for key in g.as_mapping().unwrap().keys() {
                        assert!(["name", "files", "options"].contains(&s(key).as_str()), "{rel}: configMapGenerator key {key:?} is not followed by this test");
                    }
                    let files = strings(&g["files"])
                        .into_iter()
                        .map(|f| match f.split_once('=') {
                            Some((key, path)) => (format!("{dir}/{path}"), key.to_string()),
                            None => (format!("{dir}/{f}"), file_name(&f).to_string()),
                        })
                        .collect();
                    Generator { name: s(&g["name"]), files, hashed: g["options"]["disableNameSuffixHash"].as_bool() != Some(true) }
                })
                .collect()
        })
        .unwrap_or_default();
    Kustomization { dir: dir.to_string(), namespace: k["namespace"].as_str().map(String::from), resources, generators }
}

/// The directories under deploy/kubernetes that hold a kustomization.yaml.
fn kustomization_dirs() -> Vec<String> {
    files_under(KUBE).into_iter().filter(|f| file_name(f) == "kustomization.yaml").map(|f| parent(&f).to_string()).collect()
}

#[test]
fn every_file_is_listed_by_the_kustomization_of_its_directory() {
    let dirs = kustomization_dirs();
    for shape in ["sidecar", "gateway"] {
        assert!(dirs.contains(&format!("{KUBE}/{shape}")), "{KUBE}/{shape}/kustomization.yaml exists: {dirs:?}");
    }
    assert!(repo().join(KUBE).join("README.md").is_file(), "{KUBE}/README.md documents the shapes");
    let mut listed = BTreeSet::new();
    for dir in &dirs {
        let k = kustomization(dir);
        assert!(!k.resources.is_empty(), "{dir}/kustomization.yaml lists resources");
        for r in &k.resources {
            assert!(repo().join(r).is_file(), "{dir}/kustomization.yaml lists {r}, which is not a file");
            assert!(is_yaml(r), "{r}: resources are YAML files");
            assert_eq!(parent(r), dir, "{r}: a kustomization lists the files of its own directory");
            listed.insert(r.clone());
        }
        for g in &k.generators {
            for (f, _) in &g.files {
                assert!(repo().join(f).is_file(), "configMapGenerator {} of {dir} names {f}, which is not a file", g.name);
                assert_eq!(parent(f), dir, "{f}: a generator reads the files of its own directory");
                listed.insert(f.clone());
            }
        }
    }
    // Nothing shipped unvalidated: every other file is listed where it lies. Only the
    // documentation, the kustomizations and image recipes (*.Dockerfile) are not resources.
    for f in files_under(KUBE) {
        let name = file_name(&f);
        if name == "kustomization.yaml" || name == "README.md" || name.ends_with(".Dockerfile") {
            continue;
        }
        assert!(dirs.iter().any(|d| d == parent(&f)), "{f} lies in a directory without a kustomization.yaml");
        assert!(listed.contains(&f), "{f} is not listed in {}/kustomization.yaml (resources or configMapGenerator)", parent(&f));
    }
}

// ---------------------------------------------------------------------------------------------
// Schema validation (kubernetes-validate)
// ---------------------------------------------------------------------------------------------

fn validator() -> PathBuf {
    let venv = repo().join("target/k8s-validate");
    let script = repo().join("integration-tests/kubernetes/setup-validator.sh");
    let st = Command::new("bash").arg(&script).arg(&venv).status().expect("bash runs");
    assert!(st.success(), "installing kubernetes-validate with {} failed (see above)", script.display());
    venv.join("bin/kubernetes-validate")
}

/// Validate `files` (paths relative to `cwd`) strictly against `version`: Ok when every document
/// of every file passed and nothing else was printed, else the validator's whole report.
fn validate(bin: &Path, cwd: &Path, version: &str, files: &[(String, usize)]) -> Result<(), String> {
    let out = Command::new("timeout")
        .args(["-k", "2", "120"])
        .arg(bin)
        .args(["--strict", "--kubernetes-version", version])
        .args(files.iter().map(|(f, _)| f))
        .current_dir(cwd)
        .stdin(Stdio::null())
        .output()
        .expect("run kubernetes-validate");
    let report = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    let mut problems = Vec::new();
    if !out.status.success() {
        problems.push(format!("exit status {}", out.status));
    }
    // A kind without a schema is only a warning to the tool ("Couldn't find schema"): not here.
    problems.extend(report.lines().filter(|l| !l.starts_with("INFO ")).map(String::from));
    for (f, docs) in files {
        let passed = report.lines().filter(|l| l.starts_with(&format!("INFO {f} passed for resource "))).count();
        if passed != *docs {
            problems.push(format!("{f}: {passed} of {docs} documents passed"));
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(format!("{}\nfull report:\n{report}", problems.join("\n")))
    }
}

#[test]
fn manifests_validate_strictly_against_the_kubernetes_schemas() {
    let bin = validator();
    let files: Vec<(String, usize)> = files_under(KUBE)
        .into_iter()
        .filter(|f| is_yaml(f) && file_name(f) != "kustomization.yaml")
        .map(|f| {
            let n = documents(&f).len();
            assert!(n > 0, "{f} holds no document");
            (f, n)
        })
        .collect();
    assert!(files.len() >= 8, "both shapes' manifests: {files:?}");
    for v in K8S_VERSIONS {
        if let Err(e) = validate(&bin, &repo(), v, &files) {
            panic!("deploy/kubernetes does not validate against Kubernetes {v}:\n{e}");
        }
    }

    // The check can fail: a misspelt field deep in a pod template, a wrong type and an unknown
    // kind, each in a copy, are each refused.
    let dir = tempfile::tempdir().unwrap();
    let sidecar = read(&format!("{KUBE}/sidecar/deployment.yaml"));
    let gateway = read(&format!("{KUBE}/gateway/deployment.yaml"));
    let broken = [
        ("misspelt.yaml", sidecar.replacen("\n          restartPolicy: Always\n", "\n          restartPolicyy: Always\n", 1), "restartPolicyy"),
        ("type.yaml", gateway.replacen("\n  replicas: 2\n", "\n  replicas: two\n", 1), "replicas: two"),
        ("kind.yaml", "apiVersion: v1\nkind: ConfigMapp\nmetadata:\n  name: x\n".to_string(), "ConfigMapp"),
    ];
    for (name, yaml, needle) in broken {
        assert!(yaml.contains(needle), "{name} carries the fault {needle:?}");
        let needle = needle.trim_start_matches("replicas: ");
        std::fs::write(dir.path().join(name), &yaml).unwrap();
        match validate(&bin, dir.path(), K8S_VERSIONS[0], &[(name.to_string(), 1)]) {
            Ok(()) => panic!("the validator passed a broken manifest ({name}, {needle})"),
            Err(e) => assert!(e.contains(needle), "{name}: the report names {needle:?}:\n{e}"),
        }
    }
}

/// `kubectl kustomize DIR` (kustomize is built into kubectl).
fn kustomize(dir: &str) -> String {
    let kubectl = netns::which("kubectl")
        .unwrap_or_else(|| panic!("kubectl is missing: it renders the kustomizations (`kubectl kustomize`, kustomize built in); install kubectl"));
    let out = Command::new("timeout").args(["-k", "2", "60"]).arg(kubectl).arg("kustomize").arg(repo().join(dir)).output().expect("run kubectl");
    assert!(out.status.success(), "kubectl kustomize {dir} fails:\n{}", text(&out));
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn each_kustomization_renders_to_valid_objects_with_one_copy_of_each_file() {
    let bin = validator();
    let tmp = tempfile::tempdir().unwrap();
    for dir in kustomization_dirs() {
        let k = kustomization(&dir);
        let rendered = kustomize(&dir);
        let docs: Vec<Value> = serde_yaml_ng::Deserializer::from_str(&rendered).map(|d| Value::deserialize(d).unwrap()).filter(|v| !v.is_null()).collect();
        let want = k.docs().len() + k.generators.len();
        assert_eq!(docs.len(), want, "{dir} renders its resources and one ConfigMap per generator:\n{rendered}");
        let file = format!("{}.yaml", dir.replace('/', "-"));
        std::fs::write(tmp.path().join(&file), &rendered).unwrap();
        if let Err(e) = validate(&bin, tmp.path(), K8S_VERSIONS[0], &[(file, docs.len())]) {
            panic!("kubectl kustomize {dir} does not validate:\n{e}");
        }
        // Each generated ConfigMap holds the file itself, byte for byte, and the pods name the
        // ConfigMap as generated (kustomize rewrote the reference to the hashed name).
        for g in &k.generators {
            let cm = docs
                .iter()
                .find(|d| d["kind"] == "ConfigMap" && d["metadata"]["name"].as_str().is_some_and(|n| n == g.name || n.starts_with(&format!("{}-", g.name))))
                .unwrap_or_else(|| panic!("{dir}: no ConfigMap generated for {}", g.name));
            let name = cm["metadata"]["name"].as_str().unwrap();
            assert_eq!(g.hashed, name != g.name, "{dir}: {name} carries a hash suffix exactly when the generator asks for one");
            for (f, key) in &g.files {
                assert_eq!(cm["data"][key.as_str()].as_str(), Some(read(f).as_str()), "{dir}: ConfigMap {name} key {key} is {f} verbatim");
            }
            let referenced = rendered.matches(&format!("name: {name}\n")).count();
            assert!(referenced >= 2, "{dir}: the pods mount ConfigMap {name} by its generated name:\n{rendered}");
        }
        if let Some(ns) = &k.namespace {
            for d in docs.iter().filter(|d| d["kind"] != "Namespace") {
                assert_eq!(d["metadata"]["namespace"].as_str(), Some(ns.as_str()), "{dir}: every object lands in {ns}: {d:?}");
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The configurations and the manifests agree
// ---------------------------------------------------------------------------------------------

fn vpcgate(args: &[&str], env: &[(&str, &str)]) -> Output {
    Command::new("timeout")
        .args(["-k", "2", "30", VPCGATE])
        .args(args)
        .current_dir(repo())
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .envs(env.iter().copied())
        .output()
        .expect("run vpcgate")
}

/// A TOML file as JSON (read with the same `config` crate vpcgate uses).
fn toml(rel: &str) -> Json {
    config::Config::builder()
        .add_source(config::File::from_str(&read(rel), config::FileFormat::Toml))
        .build()
        .and_then(|c| c.try_deserialize::<Json>())
        .unwrap_or_else(|e| panic!("{rel} is not TOML: {e}"))
}

fn listen_port(listen: &str) -> u16 {
    listen.parse::<std::net::SocketAddr>().unwrap_or_else(|_| panic!("{listen:?} is not IP:PORT")).port()
}

#[test]
fn every_shipped_config_loads_and_routes_s3_and_sts() {
    let tomls: Vec<String> = files_under(KUBE).into_iter().filter(|f| f.ends_with(".toml")).collect();
    for shape in ["sidecar", "gateway"] {
        assert!(tomls.contains(&format!("{KUBE}/{shape}/vpcgate.toml")), "{shape} ships vpcgate.toml: {tomls:?}");
    }
    for rel in &tomls {
        let out = vpcgate(&["--config", rel, "check-config"], &[]);
        assert!(out.status.success(), "{rel} does not load:\n{}", text(&out));
        let out = vpcgate(&["--config", rel, "routes"], &[]);
        assert!(out.status.success(), "{}", text(&out));
        let routes = String::from_utf8_lossy(&out.stdout);
        assert!(routes.starts_with("s3-gateway (s3 gateway) "), "{rel}: {routes}");
        assert!(routes.contains("from embedded S3 prefixes"), "{rel}: the S3 route is the embedded prefixes: {routes}");
        let sts = routes.lines().find(|l| l.starts_with("sts-interface")).unwrap_or_else(|| panic!("{rel}: an STS route: {routes}"));
        assert!(sts.contains("sts interface") && sts.contains("sts.us-east-1.amazonaws.com"), "{rel}: {sts}");
        assert!(read(rel).contains("REPLACE 10.0.0.0/16"), "{rel} says to replace the example interface CIDR");
    }
}

struct Mount {
    volume: String,
    path: String,
    read_only: bool,
    sub_path: bool,
}

fn mounts(c: &Value) -> Vec<Mount> {
    c["volumeMounts"]
        .as_sequence()
        .map(|ms| {
            ms.iter()
                .map(|m| Mount {
                    volume: s(&m["name"]),
                    path: s(&m["mountPath"]),
                    read_only: m["readOnly"].as_bool() == Some(true),
                    sub_path: !m["subPath"].is_null() || !m["subPathExpr"].is_null(),
                })
                .collect()
        })
        .unwrap_or_default()
}

/// The mount of `c` that holds `path` (the longest mount path that is it or a parent of it).
fn mount_of<'a>(ms: &'a [Mount], path: &str) -> Option<&'a Mount> {
    ms.iter().filter(|m| path == m.path || path.starts_with(&format!("{}/", m.path.trim_end_matches('/')))).max_by_key(|m| m.path.len())
}

fn env_of(c: &Value) -> BTreeMap<String, String> {
    c["env"]
        .as_sequence()
        .map(|es| {
            es.iter()
                .map(|e| {
                    assert!(e["valueFrom"].is_null(), "env {:?} is a literal value", e["name"]);
                    (s(&e["name"]), e["value"].as_str().unwrap_or("").to_string())
                })
                .collect()
        })
        .unwrap_or_default()
}

fn named<'a>(list: &'a Value, name: &str) -> &'a Value {
    list.as_sequence().and_then(|l| l.iter().find(|c| c["name"].as_str() == Some(name))).unwrap_or_else(|| panic!("no entry named {name:?} in {list:?}"))
}

fn object<'a>(docs: &'a [(String, Value)], kind: &str, name: &str) -> &'a Value {
    docs.iter()
        .map(|(_, d)| d)
        .find(|d| d["kind"].as_str() == Some(kind) && d["metadata"]["name"].as_str() == Some(name))
        .unwrap_or_else(|| panic!("no {kind} {name:?} among the resources"))
}

fn only<'a>(docs: &'a [(String, Value)], kind: &str) -> Vec<&'a Value> {
    docs.iter().map(|(_, d)| d).filter(|d| d["kind"].as_str() == Some(kind)).collect()
}

/// A container runs as `uid`, non-root, without privilege escalation or capabilities, read-only root.
fn assert_locked_down(who: &str, c: &Value, pod: &Value, uid: Option<i64>) {
    let sc = &c["securityContext"];
    let get = |k: &str| if sc[k].is_null() { pod["securityContext"][k].clone() } else { sc[k].clone() };
    if let Some(uid) = uid {
        assert_eq!(get("runAsUser").as_i64(), Some(uid), "{who} runs as UID {uid}");
        assert_eq!(get("runAsGroup").as_i64(), Some(uid), "{who} runs as GID {uid}");
    }
    assert_eq!(get("runAsNonRoot").as_bool(), Some(true), "{who}: runAsNonRoot");
    assert_eq!(sc["allowPrivilegeEscalation"].as_bool(), Some(false), "{who}: allowPrivilegeEscalation false");
    assert_eq!(sc["readOnlyRootFilesystem"].as_bool(), Some(true), "{who}: readOnlyRootFilesystem");
    assert_eq!(strings(&sc["capabilities"]["drop"]), ["ALL"], "{who} drops every capability");
    assert!(sc["capabilities"]["add"].is_null(), "{who} adds no capability");
    assert!(sc["privileged"].as_bool() != Some(true), "{who} is not privileged");
}

fn seconds(d: &Json) -> u64 {
    humantime::parse_duration(d.as_str().unwrap_or_else(|| panic!("{d} is a duration"))).unwrap().as_secs()
}

/// The sidecar shape, as the namespace test needs it.
struct Sidecar {
    pod: Value,
    config: Json,
    script: String,
    rules_env: BTreeMap<String, String>,
    vpcgate_uid: i64,
    vpcgate_args: Vec<String>,
    probe: Vec<String>,
    app_uid: i64,
    app_env: BTreeMap<String, String>,
}

fn sidecar() -> Sidecar {
    let k = kustomization(&format!("{KUBE}/sidecar"));
    let docs = k.docs();
    let deps = only(&docs, "Deployment");
    assert_eq!(deps.len(), 1, "one example Deployment");
    let pod = deps[0]["spec"]["template"]["spec"].clone();
    assert!(pod["hostNetwork"].as_bool() != Some(true), "the egress rules need the pod's own network namespace");
    let inits = pod["initContainers"].as_sequence().expect("initContainers").clone();
    let names: Vec<String> = inits.iter().map(|c| s(&c["name"])).collect();
    assert_eq!(names, ["egress-rules", "vpcgate"], "the rules are installed first, then the vpcgate sidecar starts");
    let (rules, gate) = (&inits[0], &inits[1]);
    let apps = pod["containers"].as_sequence().expect("containers");
    assert_eq!(apps.len(), 1, "one application container");
    let app = &apps[0];
    let volume = |name: &str| named(&pod["volumes"], name).clone();

    // egress-rules: root with NET_ADMIN, runs to completion, the script from its ConfigMap.
    assert!(rules["restartPolicy"].is_null(), "egress-rules is a plain init container (runs once, to completion)");
    let sc = &rules["securityContext"];
    assert_eq!(sc["runAsUser"].as_i64(), Some(0), "iptables needs root");
    let caps = strings(&sc["capabilities"]["add"]);
    assert!(caps.contains(&"NET_ADMIN".to_string()), "egress-rules needs NET_ADMIN: {caps:?}");
    assert_eq!(strings(&sc["capabilities"]["drop"]), ["ALL"], "and nothing else");
    assert_eq!(sc["allowPrivilegeEscalation"].as_bool(), Some(false));
    let script_gen = k.generator_of("egress-rules.sh");
    let command = strings(&rules["command"]);
    assert_eq!(command.len(), 2, "egress-rules runs `sh SCRIPT`: {command:?}");
    assert_eq!(command[0], "sh");
    let rms = mounts(rules);
    let m = mount_of(&rms, &command[1]).unwrap_or_else(|| panic!("{} is in no mount of egress-rules", command[1]));
    assert_eq!(volume(&m.volume)["configMap"]["name"].as_str(), Some(script_gen.name.as_str()), "the script comes from the generated ConfigMap");
    let key = &script_gen.files.iter().find(|(f, _)| f.ends_with("/egress-rules.sh")).unwrap().1;
    assert_eq!(command[1], format!("{}/{key}", m.path), "egress-rules runs the ConfigMap's egress-rules.sh");
    let rules_env = env_of(rules);
    let image = read(&format!("{KUBE}/sidecar/egress-init.Dockerfile"));
    assert!(image.contains("apt-get install") && image.contains(" iptables"), "the egress-init image installs Debian's iptables");

    // vpcgate: a native sidecar as UID/GID 10001, its config from the generated ConfigMap.
    assert_eq!(gate["restartPolicy"].as_str(), Some("Always"), "vpcgate is a native sidecar (restartPolicy: Always)");
    assert_locked_down("vpcgate", gate, &pod, Some(10001));
    let vpcgate_args = strings(&gate["args"]);
    assert_eq!(vpcgate_args, ["run"]);
    let genv = env_of(gate);
    let cfg_path = genv.get("VPCGATE_CONFIG").expect("vpcgate gets VPCGATE_CONFIG");
    let gms = mounts(gate);
    let m = mount_of(&gms, cfg_path).unwrap_or_else(|| panic!("{cfg_path} is in no mount of vpcgate"));
    let cfg_gen = k.generator_of("vpcgate.toml");
    assert_eq!(volume(&m.volume)["configMap"]["name"].as_str(), Some(cfg_gen.name.as_str()));
    assert_eq!(cfg_path, &format!("{}/vpcgate.toml", m.path), "VPCGATE_CONFIG is the ConfigMap's vpcgate.toml");
    let probe = strings(&gate["livenessProbe"]["exec"]["command"]);
    for p in ["startupProbe", "livenessProbe"] {
        assert_eq!(strings(&gate[p]["exec"]["command"]), ["vpcgate", "healthcheck"], "{p}: vpcgate healthcheck (the admin port is on loopback)");
    }
    assert_eq!(strings(&gate["readinessProbe"]["exec"]["command"]), ["vpcgate", "healthcheck", "--ready"], "readiness follows /readyz");
    let config = toml(&format!("{KUBE}/sidecar/vpcgate.toml"));
    let listen = config["proxy"]["listen"].as_str().unwrap();
    assert_eq!(listen, "127.0.0.1:3128", "the sidecar listens on loopback only");
    assert_eq!(config["admin"]["listen"].as_str(), Some("127.0.0.1:9128"));
    assert_eq!(config["tls"]["mode"].as_str(), Some("inspect"));
    let grace = pod["terminationGracePeriodSeconds"].as_u64().expect("terminationGracePeriodSeconds");
    assert!(grace > seconds(&config["proxy"]["shutdown_grace"]), "terminationGracePeriodSeconds {grace} outlasts proxy.shutdown_grace");

    // The CA: the certificate in an emptyDir the app mounts read-only, the key in one it never mounts.
    let (cert, key) = (config["tls"]["ca_cert"].as_str().unwrap(), config["tls"]["ca_key"].as_str().unwrap());
    let cert_m = mount_of(&gms, cert).unwrap_or_else(|| panic!("tls.ca_cert {cert} is in no mount of vpcgate"));
    let key_m = mount_of(&gms, key).unwrap_or_else(|| panic!("tls.ca_key {key} is in no mount of vpcgate"));
    assert_ne!(cert_m.volume, key_m.volume, "the CA key does not share the certificate's volume");
    for m in [cert_m, key_m] {
        assert!(!volume(&m.volume)["emptyDir"].is_null(), "{} is an emptyDir (created with the pod)", m.volume);
        assert!(!m.read_only, "vpcgate writes its CA into {} on first start", m.volume);
    }
    let ams = mounts(app);
    assert!(ams.iter().all(|m| m.volume != key_m.volume), "the application never mounts the CA key's volume");
    let app_env = env_of(app);
    let bundle = app_env.get("AWS_CA_BUNDLE").expect("AWS_CA_BUNDLE");
    let bm = mount_of(&ams, bundle).unwrap_or_else(|| panic!("AWS_CA_BUNDLE {bundle} is in no mount of the app"));
    assert_eq!(bm.volume, cert_m.volume, "AWS_CA_BUNDLE is in the volume vpcgate writes its CA to");
    assert!(bm.read_only, "the app mounts the CA read-only");
    assert_eq!(bundle.strip_prefix(&bm.path), cert.strip_prefix(&cert_m.path), "AWS_CA_BUNDLE is vpcgate's tls.ca_cert");

    // The application: through vpcgate, credential endpoints direct, regional names.
    let proxy = format!("http://{listen}");
    for k in ["HTTPS_PROXY", "https_proxy"] {
        assert_eq!(app_env.get(k), Some(&proxy), "{k}");
    }
    let no_proxy = app_env.get("NO_PROXY").expect("NO_PROXY");
    assert_eq!(app_env.get("no_proxy"), Some(no_proxy), "no_proxy equals NO_PROXY");
    let entries: BTreeSet<&str> = no_proxy.split(',').collect();
    for e in ["169.254.169.254", "169.254.170.2", "169.254.170.23", "localhost", "127.0.0.1"] {
        assert!(entries.contains(e), "NO_PROXY holds {e}: {no_proxy}");
    }
    assert!(!no_proxy.contains("amazonaws") && !no_proxy.contains("api.aws"), "NO_PROXY must not send AWS names around vpcgate: {no_proxy}");
    for (k, v) in [("AWS_STS_REGIONAL_ENDPOINTS", "regional"), ("AWS_S3_US_EAST_1_REGIONAL_ENDPOINT", "regional")] {
        assert_eq!(app_env.get(k).map(String::as_str), Some(v), "{k}");
    }
    assert_locked_down("app", app, &pod, None);
    let app_uid = app["securityContext"]["runAsUser"].as_i64().expect("the app sets runAsUser");
    let vpcgate_uid = gate["securityContext"]["runAsUser"].as_i64().unwrap();
    assert_ne!(app_uid, vpcgate_uid, "the app must not run as vpcgate's UID: the rules would let it out");
    assert_eq!(rules_env.get("VPCGATE_UID").map(String::as_str), Some(vpcgate_uid.to_string().as_str()), "the rules let vpcgate's UID out");

    let script = format!("{KUBE}/sidecar/egress-rules.sh");
    Sidecar { pod, config, script, rules_env, vpcgate_uid, vpcgate_args, probe, app_uid, app_env }
}

#[test]
fn sidecar_manifest_wires_the_rules_vpcgate_and_the_application() {
    // sidecar() asserts the wiring; what the namespace test takes from it is checked here too.
    let sc = sidecar();
    assert_eq!(sc.script, format!("{KUBE}/sidecar/egress-rules.sh"));
    assert_eq!((sc.vpcgate_uid, sc.probe.len()), (10001, 2));
    assert_eq!(sc.pod["containers"][0]["env"].as_sequence().map(|e| e.len()), Some(sc.app_env.len()));
}

/// A numeric or named container port of `c`.
fn port_number(c: &Value, port: &Value) -> u16 {
    match port {
        Value::Number(n) => n.as_u64().unwrap() as u16,
        Value::String(name) => {
            let p = named(&c["ports"], name);
            p["containerPort"].as_u64().unwrap() as u16
        }
        other => panic!("port {other:?}"),
    }
}

fn selects(selector: &Value, labels: &Value) -> bool {
    let m = selector["matchLabels"].as_mapping().expect("matchLabels");
    assert!(selector["matchExpressions"].is_null(), "this test reads matchLabels only");
    !m.is_empty() && m.iter().all(|(k, v)| labels[s(k).as_str()] == *v)
}

/// (protocol, port) pairs of a NetworkPolicy rule.
fn policy_ports(rule: &Value) -> BTreeSet<(String, u16)> {
    rule["ports"]
        .as_sequence()
        .expect("every rule names its ports")
        .iter()
        .map(|p| (p["protocol"].as_str().unwrap_or("TCP").to_string(), p["port"].as_u64().expect("numeric port") as u16))
        .collect()
}

fn dns_ports() -> BTreeSet<(String, u16)> {
    [("UDP".to_string(), 53), ("TCP".to_string(), 53)].into()
}

fn is_kube_dns(peer: &Value) -> bool {
    peer["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"] == "kube-system" && peer["podSelector"]["matchLabels"]["k8s-app"] == "kube-dns"
}

/// The gateway shape, as the reload test needs it: vpcgate's arguments.
fn gateway() -> Vec<String> {
    let k = kustomization(&format!("{KUBE}/gateway"));
    let docs = k.docs();
    let ns = k.namespace.clone().expect("the gateway kustomization sets its namespace");
    assert_eq!(object(&docs, "Namespace", &ns)["kind"], "Namespace", "the namespace is created");
    let dep = object(&docs, "Deployment", "vpcgate");
    assert!(dep["spec"]["replicas"].as_u64().unwrap_or(1) >= 2, "2+ replicas");
    let labels = &dep["spec"]["template"]["metadata"]["labels"];
    assert!(selects(&dep["spec"]["selector"], labels));
    let pod = &dep["spec"]["template"]["spec"];
    assert!(pod["hostNetwork"].as_bool() != Some(true));
    let c = named(&pod["containers"], "vpcgate");
    assert_locked_down("gateway vpcgate", c, pod, Some(10001));
    let config = toml(&format!("{KUBE}/gateway/vpcgate.toml"));

    // Arguments: the ConfigMap's file, reloaded on change.
    let args = strings(&c["args"]);
    assert_eq!(args.len(), 5, "{args:?}");
    assert_eq!((args[0].as_str(), args[2].as_str(), args[3].as_str(), args[4].as_str()), ("--config", "run", "--watch-config", "10s"), "{args:?}");
    let ms = mounts(c);
    let m = mount_of(&ms, &args[1]).unwrap_or_else(|| panic!("{} is in no mount", args[1]));
    assert!(!m.sub_path, "the ConfigMap is mounted as a directory: a subPath mount never sees an update");
    assert_eq!(args[1], format!("{}/vpcgate.toml", m.path));
    let generator = k.generator_of("vpcgate.toml");
    assert_eq!(named(&pod["volumes"], &m.volume)["configMap"]["name"].as_str(), Some(generator.name.as_str()));
    assert!(!generator.hashed, "the gateway's ConfigMap keeps its name (disableNameSuffixHash), so an edit reaches the running pods");

    // Listeners, probes, ports, termination.
    let listen = config["proxy"]["listen"].as_str().unwrap();
    let admin = config["admin"]["listen"].as_str().unwrap();
    assert_eq!((listen, admin), ("0.0.0.0:3128", "0.0.0.0:9128"), "the gateway listens for other pods");
    for (probe, path) in [("readinessProbe", "/readyz"), ("livenessProbe", "/healthz")] {
        let get = &c[probe]["httpGet"];
        assert_eq!(get["path"].as_str(), Some(path), "{probe}");
        assert_eq!(port_number(c, &get["port"]), listen_port(admin), "{probe} asks the admin listener");
    }
    let grace = pod["terminationGracePeriodSeconds"].as_u64().expect("terminationGracePeriodSeconds");
    let pause = c["lifecycle"]["preStop"]["sleep"]["seconds"].as_u64().unwrap_or(0);
    assert!(
        grace > seconds(&config["proxy"]["shutdown_grace"]) + pause,
        "terminationGracePeriodSeconds {grace} outlasts the preStop pause and proxy.shutdown_grace"
    );
    assert!(c["resources"]["requests"]["cpu"].as_str().is_some(), "a CPU request, which the autoscaler scales against");

    let svc = object(&docs, "Service", "vpcgate");
    assert!(svc["spec"]["type"].is_null() || svc["spec"]["type"] == "ClusterIP");
    let chosen = svc["spec"]["selector"].as_mapping().expect("the Service has a selector");
    assert!(!chosen.is_empty() && chosen.iter().all(|(k, v)| labels[s(k).as_str()] == *v), "the Service selects the gateway pods");
    let sp = svc["spec"]["ports"].as_sequence().unwrap();
    assert_eq!(sp.len(), 1, "the Service exposes the proxy port only");
    assert_eq!(sp[0]["port"].as_u64(), Some(3128));
    assert_eq!(port_number(c, &sp[0]["targetPort"]), listen_port(listen), "the Service targets proxy.listen");
    let pdb = object(&docs, "PodDisruptionBudget", "vpcgate");
    assert!(selects(&pdb["spec"]["selector"], labels));
    assert!(pdb["spec"]["minAvailable"].as_u64().is_some_and(|n| n >= 1) || pdb["spec"]["maxUnavailable"].as_u64() == Some(1));
    let hpa = object(&docs, "HorizontalPodAutoscaler", "vpcgate");
    assert_eq!(hpa["apiVersion"].as_str(), Some("autoscaling/v2"));
    assert_eq!((hpa["spec"]["scaleTargetRef"]["kind"].as_str(), hpa["spec"]["scaleTargetRef"]["name"].as_str()), (Some("Deployment"), Some("vpcgate")));
    assert!(hpa["spec"]["minReplicas"].as_u64().is_some_and(|n| n >= 2));
    assert!(hpa["spec"]["metrics"].as_sequence().unwrap().iter().any(|m| m["resource"]["name"] == "cpu"), "the autoscaler scales on CPU");

    // One CA for every replica, from a Secret: the certificate read in place, the key from the
    // 0600 copy the init container makes of the same Secret's key.
    let (cert, key) = (config["tls"]["ca_cert"].as_str().unwrap(), config["tls"]["ca_key"].as_str().unwrap());
    let secret_of = |mount: &Mount| named(&pod["volumes"], &mount.volume)["secret"]["secretName"].as_str().map(String::from);
    let cert_m = mount_of(&ms, cert).unwrap_or_else(|| panic!("tls.ca_cert {cert} is in no mount"));
    let secret = secret_of(cert_m).unwrap_or_else(|| panic!("tls.ca_cert {cert} is in a Secret volume"));
    let key_m = mount_of(&ms, key).unwrap_or_else(|| panic!("tls.ca_key {key} is in no mount"));
    assert!(!named(&pod["volumes"], &key_m.volume)["emptyDir"].is_null(), "the key copy lives in an emptyDir");
    assert!(ms.iter().all(|m| secret_of(m).is_none() || m.volume == cert_m.volume), "vpcgate mounts only the certificate from the Secret");
    let init = named(&pod["initContainers"], "ca-key");
    let copy = strings(&init["command"]);
    assert_eq!(copy.len(), 5, "install -m 0600 FROM TO: {copy:?}");
    assert_eq!((copy[0].as_str(), copy[1].as_str(), copy[2].as_str()), ("install", "-m", "0600"), "{copy:?}");
    let ims = mounts(init);
    let from = mount_of(&ims, &copy[3]).unwrap_or_else(|| panic!("{} is in no mount of ca-key", copy[3]));
    assert_eq!(secret_of(from), Some(secret.clone()), "ca-key copies the key of the CA's Secret");
    assert_eq!(copy[4], key, "ca-key writes tls.ca_key");
    let to = mount_of(&ims, &copy[4]).unwrap();
    assert_eq!(to.volume, key_m.volume);
    assert_locked_down("ca-key", init, pod, Some(10001));
    assert_eq!(pod["securityContext"]["fsGroup"].as_i64(), Some(10001), "fsGroup lets UID 10001 read the Secret's files");
    let readme = read(&format!("{KUBE}/README.md"));
    assert!(readme.contains(&format!("kubectl create secret generic {secret}")), "README.md shows how to create the Secret {secret}");

    // NetworkPolicies: vpcgate's own pods, and the application namespaces'.
    let np = object(&docs, "NetworkPolicy", "vpcgate");
    assert!(selects(&np["spec"]["podSelector"], labels));
    assert_eq!(strings(&np["spec"]["policyTypes"]), ["Ingress", "Egress"]);
    let ingress = np["spec"]["ingress"].as_sequence().unwrap();
    assert_eq!(ingress.len(), 2, "two ingress rules: proxy clients and monitoring");
    let client_label: Value = serde_yaml_ng::from_str("{vpcgate.io/egress: gateway}").unwrap();
    let from = &ingress[0]["from"].as_sequence().unwrap()[0];
    assert!(selects(&from["podSelector"], &client_label), "3128 from pods labelled vpcgate.io/egress=gateway");
    assert_eq!(policy_ports(&ingress[0]), [("TCP".to_string(), 3128)].into());
    assert_eq!(ingress[1]["from"].as_sequence().unwrap()[0]["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"], "monitoring");
    assert_eq!(policy_ports(&ingress[1]), [("TCP".to_string(), 9128)].into());
    let egress = np["spec"]["egress"].as_sequence().unwrap();
    assert_eq!(egress.len(), 2);
    assert_eq!(policy_ports(&egress[0]), [("TCP".to_string(), 443)].into(), "vpcgate dials HTTPS (its routes choose where)");
    assert!(is_kube_dns(&egress[1]["to"][0]) && policy_ports(&egress[1]) == dns_ports(), "DNS to kube-dns");

    let app_k = kustomization(&format!("{KUBE}/gateway/app-namespace"));
    assert!(app_k.namespace.is_none(), "the application side is applied with -n NAMESPACE");
    let app_docs = app_k.docs();
    let ap = object(&app_docs, "NetworkPolicy", "egress-through-vpcgate");
    assert!(selects(&ap["spec"]["podSelector"], &client_label), "the application policy selects the labelled pods");
    assert_eq!(strings(&ap["spec"]["policyTypes"]), ["Egress"]);
    let rules = ap["spec"]["egress"].as_sequence().unwrap();
    assert_eq!(rules.len(), 2, "only vpcgate and DNS");
    let to = &rules[0]["to"].as_sequence().unwrap()[0];
    assert_eq!(to["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"].as_str(), Some(ns.as_str()));
    assert!(selects(&to["podSelector"], labels), "to the gateway pods");
    assert_eq!(policy_ports(&rules[0]), [("TCP".to_string(), 3128)].into());
    assert!(is_kube_dns(&rules[1]["to"][0]) && policy_ports(&rules[1]) == dns_ports());
    args
}

#[test]
fn gateway_manifests_wire_service_probes_ca_policies_and_reload() {
    let args = gateway();
    assert_eq!(args[1], "/etc/vpcgate/vpcgate.toml");
}

// ---------------------------------------------------------------------------------------------
// The sidecar's egress rules in a network namespace
// ---------------------------------------------------------------------------------------------

const HOST: &str = "s3.us-east-1.amazonaws.com";
const POD: &str = "10.214.1.2";
const AWS: &str = "10.214.1.1";
const POD6: &str = "fd14:214::2";
const AWS6: &str = "fd14:214::1";

fn setpriv(uid: i64) -> [String; 4] {
    ["setpriv".into(), format!("--reuid={uid}"), format!("--regid={uid}"), "--clear-groups".into()]
}

/// A TCP connect from `uid` in `ns` to `addr` port `port` (bash's /dev/tcp): Ok, or the error.
fn connect_as(lab: &Lab, ns: &str, uid: i64, addr: &str, port: u16) -> Result<(), String> {
    let started = Instant::now();
    let script = format!("exec 3<>/dev/tcp/{addr}/{port} && echo connected");
    let mut cmd: Vec<String> = setpriv(uid).to_vec();
    cmd.extend(["bash".into(), "-c".into(), script]);
    let out = lab.exec(ns, &cmd.iter().map(String::as_str).collect::<Vec<_>>(), 10);
    let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    if out.status.success() && said.contains("connected") {
        Ok(())
    } else {
        Err(format!("{} (after {:?})", said.trim(), started.elapsed()))
    }
}

/// A DNS query for HOST, type A, over UDP from `uid` to `addr:port`: the answer's first bytes
/// (the query ID, "12 34") when one came.
fn udp_dns_as(lab: &Lab, ns: &str, uid: i64, addr: &str, port: u16) -> String {
    let script = format!(
        "exec 3<>/dev/udp/{addr}/{port}; printf '\\x12\\x34\\x01\\x00\\x00\\x01\\x00\\x00\\x00\\x00\\x00\\x00\\x02s3\\x09us-east-1\\x09amazonaws\\x03com\\x00\\x00\\x01\\x00\\x01' >&3; timeout 2 head -c 2 <&3 | od -An -tx1"
    );
    let mut cmd: Vec<String> = setpriv(uid).to_vec();
    cmd.extend(["bash".into(), "-c".into(), script]);
    let out = lab.exec(ns, &cmd.iter().map(String::as_str).collect::<Vec<_>>(), 10);
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Run the shipped egress-rules.sh in `ns` as the init container runs it: `sh SCRIPT` with the
/// container's environment (and PATH) only.
fn egress_rules(lab: &Lab, ns: &str, script: &str, env: &BTreeMap<String, String>) -> String {
    // iptables lives in /usr/sbin, which a container's PATH has and a test's may lack.
    let path = format!("{}:/usr/local/sbin:/usr/sbin:/sbin", std::env::var("PATH").unwrap_or_default());
    let mut cmd: Vec<String> = vec!["env".into(), "-i".into(), format!("PATH={path}")];
    cmd.extend(env.iter().map(|(k, v)| format!("{k}={v}")));
    cmd.extend(["sh".into(), repo().join(script).display().to_string()]);
    let out = lab.exec(ns, &cmd.iter().map(String::as_str).collect::<Vec<_>>(), 30);
    assert!(out.status.success(), "{script} failed in {ns}:\n{}", text(&out));
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn jumps(lab: &Lab, ns: &str, tool: &str) -> usize {
    let tool = netns::which(tool).unwrap_or_else(|| panic!("{tool} is missing")).display().to_string();
    lab.exec_ok(ns, &[&tool, "-S", "OUTPUT"], 10).lines().filter(|l| l.trim() == "-A OUTPUT -j VPCGATE_EGRESS").count()
}

fn chmod(p: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
}

#[test]
fn sidecar_egress_rules_leave_only_vpcgate_a_way_out() {
    let setup = repo().join("integration-tests/kubernetes/setup-netfilter.sh");
    let st = Command::new("bash").arg(&setup).status().expect("bash runs");
    assert!(st.success(), "{} failed (see above)", setup.display());
    netns::preflight(&[
        ("ip", "iproute2"),
        ("ss", "iproute2"),
        ("dnsmasq", "dnsmasq-base"),
        ("openssl", "openssl"),
        ("curl", "curl"),
        ("bash", "bash"),
        ("timeout", "coreutils"),
        ("setpriv", "util-linux"),
        ("iptables", "iptables"),
        ("ip6tables", "iptables"),
    ]);
    let sc = sidecar();
    let started = Instant::now();
    let mut lab = Lab::new("k8s");
    let pod = lab.namespace("pod");
    let aws = lab.namespace("aws");
    lab.veth((&pod, "eth0", &format!("{POD}/24")), (&aws, "eth0", &format!("{AWS}/24")));
    for (ns, addr) in [(&pod, POD6), (&aws, AWS6)] {
        lab.exec_ok(ns, &["ip", "-6", "addr", "add", &format!("{addr}/64"), "dev", "eth0", "nodad"], 10);
    }

    // Files every UID of the "pod" reads: the lab directory is the test's (root, 0700).
    let dir = lab.dir.path().to_path_buf();
    chmod(&dir, 0o755);
    let ca = TestCa::new("vpcgate kubernetes test CA");
    let test_ca = ca.write_pem(&dir);
    chmod(&test_ca, 0o644);
    let (leaf, key) = ca.leaf(&[HOST]);
    let (leaf_path, key_path) = (dir.join("leaf.pem"), dir.join("key.pem"));
    std::fs::write(&leaf_path, leaf).unwrap();
    std::fs::write(&key_path, key).unwrap();
    let p = |p: &Path| p.display().to_string();

    // "AWS" on the pod's veth peer: DNS on 53 (and a second one on 5353, a UDP port the rules do
    // not open), TLS on 443 over IPv4 and IPv6.
    let dnsmasq = netns::which("dnsmasq").unwrap().display().to_string();
    for port in [53u16, 5353] {
        let name = format!("dnsmasq-{port}");
        let args = [
            dnsmasq.clone(),
            "--no-daemon".into(),
            "--no-resolv".into(),
            "--no-hosts".into(),
            "--bind-interfaces".into(),
            "--conf-file=/dev/null".into(),
            "--pid-file=".into(),
            "--log-queries".into(),
            "--log-facility=-".into(),
            format!("--port={port}"),
            format!("--listen-address={AWS}"),
            format!("--address=/{HOST}/{AWS}"),
        ];
        let i = lab.spawn(&aws, &name, &args.iter().map(String::as_str).collect::<Vec<_>>(), &[], 90);
        lab.wait_listening(&aws, Proto::Udp, &format!("{AWS}:{port}"), i);
    }
    for (name, accept, ss) in [("s_server", format!("{AWS}:443"), format!("{AWS}:443")), ("s_server6", format!("[{AWS6}]:443"), format!("[{AWS6}]:443"))] {
        let i = lab.spawn(&aws, name, &["openssl", "s_server", "-accept", &accept, "-www", "-cert", &p(&leaf_path), "-key", &p(&key_path)], &[], 90);
        lab.wait_listening(&aws, Proto::Tcp, &ss, i);
    }

    // Before the rules the pod has a direct path: what refuses the application below is the
    // rules, not the topology.
    let app = sc.app_uid;
    let gate = sc.vpcgate_uid;
    connect_as(&lab, &pod, app, AWS, 443).unwrap_or_else(|e| panic!("before the rules the app reaches {AWS}:443 directly: {e}"));
    connect_as(&lab, &pod, app, AWS6, 443).unwrap_or_else(|e| panic!("before the rules the app reaches [{AWS6}]:443 directly: {e}"));
    assert_eq!(udp_dns_as(&lab, &pod, app, AWS, 5353), "12 34", "before the rules UDP 5353 answers the app");

    // The init container: the shipped script, verbatim, with the manifest's environment.
    let said = egress_rules(&lab, &pod, &sc.script, &sc.rules_env);
    assert!(said.contains(&format!("only UID {gate} may leave")), "{said}");
    for tool in ["iptables", "ip6tables"] {
        assert_eq!(jumps(&lab, &pod, tool), 1, "{tool}: one jump from OUTPUT to the chain");
    }

    // vpcgate, as the sidecar runs it: UID/GID 10001, the manifest's arguments, its config file in
    // VPCGATE_CONFIG, listening where the shipped config says; a gateway route covering "AWS".
    let shipped = &sc.config;
    let listen = shipped["proxy"]["listen"].as_str().unwrap();
    let admin = shipped["admin"]["listen"].as_str().unwrap();
    let cfg = dir.join("vpcgate.toml");
    std::fs::write(
        &cfg,
        format!(
            "[proxy]\nlisten = \"{listen}\"\nhandshake_timeout = \"5s\"\nshutdown_grace = \"1s\"\n\
             [dns]\nservers = [\"{AWS}:53\"]\ntimeout = \"2s\"\n[aws]\nregions = [\"us-east-1\"]\n\
             [[routes]]\nname = \"pod-lab\"\nkind = \"gateway\"\ncidrs = [\"10.214.1.0/24\"]\n\
             [tls]\nmode = \"passthrough\"\n[admin]\nlisten = \"{admin}\"\n[log]\nformat = \"json\"\nlevel = \"info\"\n"
        ),
    )
    .unwrap();
    chmod(&cfg, 0o644);
    let mut argv: Vec<String> = setpriv(gate).to_vec();
    argv.push(VPCGATE.into());
    argv.extend(sc.vpcgate_args.iter().cloned());
    let vg = lab.spawn(&pod, "vpcgate", &argv.iter().map(String::as_str).collect::<Vec<_>>(), &[("VPCGATE_CONFIG", &p(&cfg))], 90);
    lab.wait_listening(&pod, Proto::Tcp, listen, vg);
    lab.wait_log(vg, "vpcgate listening");

    // kubelet's probe, as the manifest gives it, inside the pod as vpcgate's user.
    let mut probe: Vec<String> = vec!["env".into(), "-i".into(), format!("VPCGATE_CONFIG={}", p(&cfg))];
    probe.extend(setpriv(gate));
    probe.push(VPCGATE.into());
    probe.extend(sc.probe[1..].iter().cloned());
    let out = lab.exec(&pod, &probe.iter().map(String::as_str).collect::<Vec<_>>(), 10);
    assert!(out.status.success(), "the probe {:?} fails against the running sidecar:\n{}", sc.probe, text(&out));

    // The application's UID: refused at once on a direct connection, IPv4 and IPv6, TCP and UDP
    // other than DNS; and so is root. vpcgate's UID goes out.
    for (who, uid) in [("the app", app), ("root", 0)] {
        for addr in [AWS, AWS6] {
            let e = connect_as(&lab, &pod, uid, addr, 443).expect_err(&format!("{who} must not reach {addr}:443 directly"));
            assert!(e.contains("Connection refused"), "{who} → {addr}:443 is rejected (a reset, so it fails fast): {e}");
        }
    }
    let t = Instant::now();
    let url = format!("https://{HOST}/");
    let resolve = format!("{HOST}:443:{AWS}");
    let ca_arg = p(&test_ca);
    let mut direct: Vec<String> = setpriv(app).to_vec();
    direct.extend(
        ["curl", "-sS", "-v", "--noproxy", "*", "--connect-timeout", "5", "--resolve", resolve.as_str(), "--cacert", ca_arg.as_str(), url.as_str()]
            .map(String::from),
    );
    let out = lab.exec(&pod, &direct.iter().map(String::as_str).collect::<Vec<_>>(), 15);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(7), "curl from the app straight to {AWS}: couldn't connect:\n{err}");
    assert!(err.contains("Connection refused"), "{err}");
    assert!(t.elapsed() < Duration::from_secs(2), "a rejected connect fails fast: {:?}", t.elapsed());
    for addr in [AWS, AWS6] {
        connect_as(&lab, &pod, gate, addr, 443).unwrap_or_else(|e| panic!("vpcgate's UID reaches {addr}:443: {e}"));
    }
    assert_eq!(udp_dns_as(&lab, &pod, app, AWS, 5353), "", "UDP other than port 53 is rejected for the app");
    assert_eq!(udp_dns_as(&lab, &pod, gate, AWS, 5353), "12 34", "and open to vpcgate");

    // What stays open to every UID: DNS (UDP and TCP 53) and loopback (vpcgate itself).
    assert_eq!(udp_dns_as(&lab, &pod, app, AWS, 53), "12 34", "the app resolves names over UDP 53");
    connect_as(&lab, &pod, app, AWS, 53).unwrap_or_else(|e| panic!("the app reaches DNS over TCP 53: {e}"));
    let (lhost, lport) = listen.rsplit_once(':').unwrap();
    connect_as(&lab, &pod, app, lhost, lport.parse().unwrap()).unwrap_or_else(|e| panic!("the app reaches vpcgate on {listen}: {e}"));
    // And the application still serves: a connection from outside the pod to a port it listens
    // on gets its answers (the replies are established traffic, as kubelet's httpGet probes are).
    let mut serve: Vec<String> = setpriv(app).to_vec();
    serve.extend(["openssl", "s_server", "-accept", &format!("{POD}:8443"), "-www", "-cert", &p(&leaf_path), "-key", &p(&key_path)].map(String::from));
    let srv = lab.spawn(&pod, "app-server", &serve.iter().map(String::as_str).collect::<Vec<_>>(), &[], 60);
    lab.wait_listening(&pod, Proto::Tcp, &format!("{POD}:8443"), srv);
    let inbound = lab.exec(&aws, &["curl", "-sS", "--max-time", "5", "-k", &format!("https://{POD}:8443/")], 10);
    assert!(
        inbound.status.success() && String::from_utf8_lossy(&inbound.stdout).contains("s_server"),
        "a client outside reaches the app's own port:\n{}",
        text(&inbound)
    );

    // The same request through vpcgate, with the application container's proxy environment.
    let mut via: Vec<String> = vec!["env".into(), "-i".into(), format!("PATH={}", std::env::var("PATH").unwrap_or_default())];
    via.extend(sc.app_env.iter().filter(|(k, _)| k.to_ascii_lowercase().ends_with("_proxy")).map(|(k, v)| format!("{k}={v}")));
    via.extend(setpriv(app));
    via.extend(
        ["curl", "-sS", "-v", "--connect-timeout", "5", "--max-time", "10", "--cacert", ca_arg.as_str(), "-w", "\n%{http_connect} %{http_code}", url.as_str()]
            .map(String::from),
    );
    let out = lab.exec(&pod, &via.iter().map(String::as_str).collect::<Vec<_>>(), 15);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && stdout.ends_with("\n200 200"), "the app through vpcgate:\n{}\n{}", text(&out), lab_log(&dir));
    assert!(stdout.contains(&format!("s_server -accept {AWS}:443")), "the answer came from the upstream on the peer: {stdout}");
    let connect = eventually(
        5,
        || lab_log(&dir),
        || lab_log(&dir).lines().filter_map(|l| serde_json::from_str::<Json>(l).ok()).find(|v| v["event"] == "connect" && v["host"] == HOST),
    );
    assert_eq!(connect["decision"], "allow", "{connect}");
    assert_eq!(connect["chosen"], AWS, "{connect}");
    assert!(connect["client"].as_str().is_some_and(|c| c.starts_with("127.0.0.1:")), "the app came over loopback: {connect}");

    // VPCGATE_DIRECT_TCP opens chosen destinations to every UID; running the script again with
    // the manifest's environment closes them again (it replaces its rules, one jump stays).
    let mut open = sc.rules_env.clone();
    open.insert("VPCGATE_DIRECT_TCP".into(), format!("{AWS}:443 [{AWS6}]:443"));
    egress_rules(&lab, &pod, &sc.script, &open);
    for addr in [AWS, AWS6] {
        connect_as(&lab, &pod, app, addr, 443).unwrap_or_else(|e| panic!("VPCGATE_DIRECT_TCP opens {addr}:443 to the app: {e}"));
    }
    assert!(connect_as(&lab, &pod, app, AWS, 53).is_ok() && udp_dns_as(&lab, &pod, app, AWS, 5353).is_empty(), "and nothing else");
    egress_rules(&lab, &pod, &sc.script, &sc.rules_env);
    for addr in [AWS, AWS6] {
        assert!(connect_as(&lab, &pod, app, addr, 443).is_err(), "closed again: {addr}:443");
    }
    for tool in ["iptables", "ip6tables"] {
        assert_eq!(jumps(&lab, &pod, tool), 1, "{tool}: still one jump after three runs");
    }
    drop(lab);
    assert!(started.elapsed() < Duration::from_secs(45), "the namespace test took {:?}", started.elapsed());
}

fn lab_log(dir: &Path) -> String {
    std::fs::read_to_string(dir.join("vpcgate.log")).unwrap_or_default()
}

// ---------------------------------------------------------------------------------------------
// The gateway's reload of a ConfigMap updated as kubelet updates one
// ---------------------------------------------------------------------------------------------

const N: u8 = 121;

/// A ConfigMap volume as kubelet writes it (AtomicWriter): the files in `..TIMESTAMP/`, the
/// symlink `..data` to it, and one symlink per key to `..data/KEY`. An update writes a new
/// timestamped directory, points a new `..data_tmp` at it, renames that over `..data` (the atomic
/// step) and removes the old directory.
fn kubelet_write(dir: &Path, stamp: &str, files: &[(&str, &str)]) {
    use std::os::unix::fs::symlink;
    let ts = format!("..{stamp}");
    std::fs::create_dir(dir.join(&ts)).unwrap();
    for (name, body) in files {
        std::fs::write(dir.join(&ts).join(name), body).unwrap();
    }
    let old = std::fs::read_link(dir.join("..data")).ok();
    let _ = std::fs::remove_file(dir.join("..data_tmp"));
    symlink(&ts, dir.join("..data_tmp")).unwrap();
    std::fs::rename(dir.join("..data_tmp"), dir.join("..data")).unwrap();
    for (name, _) in files {
        if std::fs::symlink_metadata(dir.join(name)).is_err() {
            symlink(format!("..data/{name}"), dir.join(name)).unwrap();
        }
    }
    if let Some(old) = old {
        std::fs::remove_dir_all(dir.join(old)).unwrap();
    }
}

fn prefixes(cidrs: &[&str]) -> String {
    let entries: Vec<Json> = cidrs.iter().map(|c| serde_json::json!({"Cidr": c, "Description": "test"})).collect();
    serde_json::json!({ "Entries": entries }).to_string()
}

#[test]
fn gateway_reloads_a_configmap_updated_as_kubelet_does() {
    let args = gateway();
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let a_host = format!("fleet-a.{HOST}");
    let b_host = format!("fleet-b.{HOST}");
    let (a_ip, b_ip) = (support::harness::ip(N, 2, 1), support::harness::ip(N, 3, 1));
    let dns = rt.block_on(support::FakeDns::start(&[(a_host.as_str(), &[a_ip.into()]), (b_host.as_str(), &[b_ip.into()])]));
    // Passthrough mode dials before it answers the CONNECT: listeners the kernel accepts on.
    let _a = std::net::TcpListener::bind((a_ip, 443)).expect("bind 127.121.2.1:443 (root)");
    let _b = std::net::TcpListener::bind((b_ip, 443)).expect("bind 127.121.3.1:443 (root)");

    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("etc-vpcgate");
    std::fs::create_dir(&dir).unwrap();
    let port = free_port();
    let pl = dir.join("prefixes.json");
    let toml = |extra: &str| {
        format!(
            "[proxy]\nlisten = \"127.0.0.1:{port}\"\nhandshake_timeout = \"5s\"\nshutdown_grace = \"1s\"\n\
             [dns]\nservers = [\"{}\"]\ntimeout = \"1s\"\n[aws]\nregions = [\"us-east-1\"]\n\
             [[routes]]\nname = \"fleet\"\nkind = \"gateway\"\ncidrs_file = \"{}\"\n{extra}\
             [tls]\nmode = \"passthrough\"\n[admin]\nenabled = false\n[log]\nformat = \"json\"\nlevel = \"info\"\n",
            dns.addr,
            pl.display()
        )
    };
    let one = format!("127.{N}.1.0/24");
    let two = format!("127.{N}.2.0/24");
    kubelet_write(&dir, "2026_12_03_06_00_00.000000001", &[("vpcgate.toml", &toml("")), ("prefixes.json", &prefixes(&[&one]))]);
    assert_eq!(std::fs::read_link(dir.join("vpcgate.toml")).unwrap(), Path::new("..data/vpcgate.toml"));

    // The Deployment's arguments, with this directory for /etc/vpcgate and 1s for 10s.
    let cfg = dir.join("vpcgate.toml").display().to_string();
    let argv: Vec<String> = args
        .iter()
        .map(|a| {
            if a.starts_with("/etc/vpcgate/") {
                cfg.clone()
            } else if a == "10s" {
                "1s".into()
            } else {
                a.clone()
            }
        })
        .collect();
    assert_ne!(argv, args);
    let log = tmp.path().join("vpcgate.log");
    let child = Command::new(VPCGATE)
        .args(&argv)
        .env_remove("RUST_LOG")
        .env_remove("VPCGATE_CONFIG")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .expect("start vpcgate");
    struct Kill(std::process::Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let mut guard = Kill(child);
    let logs = || std::fs::read_to_string(&log).unwrap_or_default();
    eventually(15, || format!("vpcgate did not listen:\n{}", logs()), || std::net::TcpStream::connect(("127.0.0.1", port)).ok());
    let connect = |host: &str| raw_request(port, &connect_req(&format!("{host}:443")));
    let count = |needle: &str| logs().matches(needle).count();
    const RELOADED: &str = "configuration reloaded";
    const REFUSED: &str = "reload refused, still serving the previous configuration";

    let (status, body) = connect(&a_host);
    assert_eq!(status, 403, "fleet-a resolves outside the route at first:\n{body}");

    // 1. The prefix list (a second key of the ConfigMap) gains 127.121.2.0/24: reloaded through
    //    the ..data symlink, and fleet-a is allowed.
    kubelet_write(&dir, "2026_12_03_06_01_00.000000002", &[("vpcgate.toml", &toml("")), ("prefixes.json", &prefixes(&[&one, &two]))]);
    eventually(10, || format!("no {RELOADED:?} after the prefix list changed:\n{}", logs()), || (count(RELOADED) == 1).then_some(()));
    assert!(logs().lines().any(|l| l.contains(RELOADED) && l.contains(&two)), "the reload names the CIDR it added:\n{}", logs());
    let (status, body) = connect(&a_host);
    assert_eq!(status, 200, "fleet-a after the reload:\n{body}\n{}", logs());

    // 2. vpcgate.toml itself changes (the route gains cidrs): fleet-b is allowed.
    let three = format!("cidrs = [\"127.{N}.3.0/24\"]\n");
    kubelet_write(&dir, "2026_12_03_06_02_00.000000003", &[("vpcgate.toml", &toml(&three)), ("prefixes.json", &prefixes(&[&one, &two]))]);
    eventually(10, || format!("no second {RELOADED:?} after vpcgate.toml changed:\n{}", logs()), || (count(RELOADED) == 2).then_some(()));
    assert_eq!(connect(&b_host).0, 200, "fleet-b after the second reload:\n{}", logs());

    // 3. A broken update (a misspelt key) is refused; the previous configuration keeps serving.
    let broken = toml(&three).replace("cidrs_file", "cidrs_fil");
    kubelet_write(&dir, "2026_12_03_06_03_00.000000004", &[("vpcgate.toml", &broken), ("prefixes.json", &prefixes(&[&one, &two]))]);
    eventually(10, || format!("no {REFUSED:?} after a broken update:\n{}", logs()), || (count(REFUSED) == 1).then_some(()));
    assert_eq!(connect(&a_host).0, 200, "fleet-a still allowed after the refused reload:\n{}", logs());
    assert_eq!(connect(&b_host).0, 200, "fleet-b still allowed after the refused reload:\n{}", logs());
    assert_eq!(count(RELOADED), 2, "the broken file was not applied");

    // 4. The next good update applies again (the watch goes on after a refusal): 127.121.2.0/24
    //    is gone, and fleet-a is refused.
    kubelet_write(&dir, "2026_12_03_06_04_00.000000005", &[("vpcgate.toml", &toml(&three)), ("prefixes.json", &prefixes(&[&one]))]);
    eventually(10, || format!("no third {RELOADED:?}:\n{}", logs()), || (count(RELOADED) == 3).then_some(()));
    assert_eq!(connect(&a_host).0, 403, "fleet-a refused once its CIDR left the prefix list:\n{}", logs());
    assert_eq!(connect(&b_host).0, 200);
    // Unchanged files cause no reload (the watch compares bytes, it does not reload every tick).
    std::thread::sleep(Duration::from_millis(2500));
    assert_eq!((count(RELOADED), count(REFUSED)), (3, 1), "no reload without a change:\n{}", logs());
    assert!(guard.0.try_wait().unwrap().is_none(), "vpcgate is still running:\n{}", logs());
    drop(guard);
    drop(dns);
}
