//! Linux network namespaces made by a test: a small lab of "hosts" joined by veth pairs, with the
//! processes started in them. Everything is bounded in time and undone on drop (also when an
//! assertion fails): processes are stopped by their own PID/process group, then the namespaces are
//! deleted, which removes their veth pairs.
//!
//! Needs root (`ip netns`), iproute2 (`ip`, `ss`) and coreutils `timeout`. Include it from a test
//! file with `#[path = "support/netns.rs"] mod netns;`.
#![allow(dead_code)]

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

/// Namespace names start with this; the last dash-separated part is the PID of the test process.
pub const PREFIX: &str = "vg-";

/// The absolute path of `tool`, from PATH and the sbin directories (dnsmasq and ip live there).
pub fn which(tool: &str) -> Option<PathBuf> {
    let path = std::env::var("PATH").unwrap_or_default();
    let found = path
        .split(':')
        .chain(["/usr/local/sbin", "/usr/sbin", "/sbin", "/usr/bin", "/bin"])
        .filter(|d| !d.is_empty())
        .map(|d| Path::new(d).join(tool))
        .find(|p| p.is_file());
    found
}

/// Fails the test with one clear sentence when we are not root or a tool is missing.
/// `tools` are (binary, Debian package) pairs.
pub fn preflight(tools: &[(&str, &str)]) {
    let uid = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("Uid:")).map(|l| l.split_whitespace().nth(1).unwrap_or("").to_string()))
        .unwrap_or_default();
    assert_eq!(uid, "0", "the network-namespace tests need root (ip netns add/exec); run integration-tests/run-all.sh as root");
    let missing: Vec<String> = tools.iter().filter(|(bin, _)| which(bin).is_none()).map(|(bin, pkg)| format!("{bin} (Debian package {pkg})")).collect();
    assert!(
        missing.is_empty(),
        "missing tools for the network-namespace tests: {}; install them with `apt-get install -y {}` (integration-tests/run-all.sh does)",
        missing.join(", "),
        tools.iter().filter(|(bin, _)| which(bin).is_none()).map(|(_, p)| *p).collect::<Vec<_>>().join(" ")
    );
}

/// Run `args` to completion under `timeout` (SIGTERM after `secs`, SIGKILL 2 s later).
pub fn run(args: &[&str], secs: u64) -> Output {
    assert!(!args.is_empty());
    Command::new("timeout")
        .args(["-k", "2", &secs.to_string()])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {args:?} ({e})"))
}

/// Like `run`, but the command must succeed; returns its stdout.
pub fn run_ok(args: &[&str], secs: u64) -> String {
    let out = run(args, secs);
    assert!(out.status.success(), "{args:?} failed ({}): {}{}", out.status, String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn pid_alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

/// Delete `vg-…-PID` namespaces left by test processes that no longer exist (e.g. killed with
/// SIGKILL, so their drop guards never ran). Namespaces of live processes are left alone.
pub fn delete_stale() {
    let list = run(&["ip", "netns", "list"], 10);
    for line in String::from_utf8_lossy(&list.stdout).lines() {
        let Some(name) = line.split_whitespace().next() else { continue };
        let Some(rest) = name.strip_prefix(PREFIX) else { continue };
        let Some(pid) = rest.rsplit('-').next().and_then(|p| p.parse::<u32>().ok()) else { continue };
        if !pid_alive(pid) {
            let _ = run(&["ip", "netns", "del", name], 10);
        }
    }
}

/// A process started in a namespace. It runs under `timeout`, so it ends by itself even if the test
/// process dies without dropping the lab; `timeout` leads its own process group.
pub struct Proc {
    pub name: String,
    pub log: PathBuf,
    child: Child,
}

impl Proc {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// `Some(status)` once it has exited.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    fn wait_until(&mut self, deadline: Instant) -> bool {
        loop {
            if self.exited().is_some() {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGTERM (timeout passes it on), then SIGKILL to the whole process group after 2 s.
    pub fn stop(&mut self) {
        if self.exited().is_some() {
            return;
        }
        let pid = self.pid().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).stderr(Stdio::null()).status();
        if !self.wait_until(Instant::now() + Duration::from_secs(2)) {
            let _ = Command::new("kill").args(["-KILL", "--", &format!("-{pid}")]).stderr(Stdio::null()).status();
            let _ = self.child.kill();
            let _ = self.wait_until(Instant::now() + Duration::from_secs(2));
        }
    }
}

pub enum Proto {
    Tcp,
    Udp,
}

/// Namespaces and processes of one test, undone on drop.
pub struct Lab {
    /// Distinguishes labs of one test process (tests run in parallel).
    pub tag: String,
    pub dir: tempfile::TempDir,
    namespaces: Vec<String>,
    procs: Vec<Proc>,
}

impl Lab {
    pub fn new(tag: &str) -> Lab {
        delete_stale();
        Lab { tag: tag.to_string(), dir: tempfile::tempdir().expect("temp dir"), namespaces: Vec::new(), procs: Vec::new() }
    }

    /// Create the namespace `vg-ROLE-TAG-PID` with `lo` up; returns its name.
    pub fn namespace(&mut self, role: &str) -> String {
        let name = format!("{PREFIX}{role}-{}-{}", self.tag, std::process::id());
        run_ok(&["ip", "netns", "add", &name], 10);
        self.namespaces.push(name.clone());
        run_ok(&["ip", "-n", &name, "link", "set", "lo", "up"], 10);
        name
    }

    /// A veth pair between two namespaces (created directly inside them, never in ours), each end
    /// with an address like "10.213.1.1/24", up. Only the connected /24 routes exist afterwards.
    pub fn veth(&self, a: (&str, &str, &str), b: (&str, &str, &str)) {
        let (ns_a, if_a, addr_a) = a;
        let (ns_b, if_b, addr_b) = b;
        run_ok(&["ip", "link", "add", if_a, "netns", ns_a, "type", "veth", "peer", "name", if_b, "netns", ns_b], 10);
        for (ns, ifname, addr) in [(ns_a, if_a, addr_a), (ns_b, if_b, addr_b)] {
            run_ok(&["ip", "-n", ns, "addr", "add", addr, "dev", ifname], 10);
            run_ok(&["ip", "-n", ns, "link", "set", ifname, "up"], 10);
        }
    }

    /// Run `args` in `ns` to completion, bounded by `secs`.
    pub fn exec(&self, ns: &str, args: &[&str], secs: u64) -> Output {
        let mut all = vec!["ip", "netns", "exec", ns];
        all.extend_from_slice(args);
        run(&all, secs)
    }

    pub fn exec_ok(&self, ns: &str, args: &[&str], secs: u64) -> String {
        let mut all = vec!["ip", "netns", "exec", ns];
        all.extend_from_slice(args);
        run_ok(&all, secs)
    }

    /// A sysctl of `ns`, read from its /proc/sys.
    pub fn sysctl(&self, ns: &str, key: &str) -> String {
        let path = format!("/proc/sys/{}", key.replace('.', "/"));
        self.exec_ok(ns, &["cat", &path], 10).trim().to_string()
    }

    pub fn set_sysctl(&self, ns: &str, key: &str, value: &str) {
        let path = format!("/proc/sys/{}", key.replace('.', "/"));
        self.exec_ok(ns, &["sh", "-c", &format!("echo {value} > {path}")], 10);
    }

    /// Start `args` in `ns` in the background for at most `life_secs`, stdout and stderr to
    /// `{dir}/{name}.log`, stdin an open pipe, environment `envs` only (plus PATH).
    /// Returns its index for `proc`/`wait_listening`.
    pub fn spawn(&mut self, ns: &str, name: &str, args: &[&str], envs: &[(&str, &str)], life_secs: u64) -> usize {
        let log = self.dir.path().join(format!("{name}.log"));
        let file = std::fs::File::create(&log).expect("create log file");
        let mut cmd = Command::new("timeout");
        cmd.args(["-k", "2", &life_secs.to_string(), "ip", "netns", "exec", ns])
            .args(args)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_else(|_| "/usr/sbin:/usr/bin:/sbin:/bin".into()))
            .envs(envs.iter().copied())
            .stdin(Stdio::piped())
            .stdout(file.try_clone().expect("clone log handle"))
            .stderr(file)
            // Its own process group, so the whole of it can be killed by that id.
            .process_group(0);
        let child = cmd.spawn().unwrap_or_else(|e| panic!("cannot start {name} in {ns} ({e})"));
        self.procs.push(Proc { name: name.to_string(), log, child });
        self.procs.len() - 1
    }

    pub fn proc(&mut self, i: usize) -> &mut Proc {
        &mut self.procs[i]
    }

    /// Wait (at most 10 s) until `ns` has a listening socket on `addr` ("IP:PORT"); fail with the
    /// process's log when it exits first or the time runs out.
    pub fn wait_listening(&mut self, ns: &str, proto: Proto, addr: &str, i: usize) {
        let flag = match proto {
            Proto::Tcp => "-Hlnt",
            Proto::Udp => "-Hlnu",
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let out = self.exec(ns, &["ss", flag], 5);
            let text = String::from_utf8_lossy(&out.stdout);
            if text.lines().any(|l| l.split_whitespace().nth(3) == Some(addr)) {
                return;
            }
            let p = &mut self.procs[i];
            if let Some(status) = p.exited() {
                panic!("{} exited ({status}) before listening on {addr} in {ns}:\n{}", p.name, p.log_text());
            }
            assert!(Instant::now() < deadline, "{} did not listen on {addr} in {ns} within 10 s:\n{}", p.name, p.log_text());
            std::thread::sleep(Duration::from_millis(30));
        }
    }

    /// Wait (at most 10 s) until the process's log contains `needle`.
    pub fn wait_log(&mut self, i: usize, needle: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let p = &mut self.procs[i];
            let text = p.log_text();
            if text.contains(needle) {
                return text;
            }
            if let Some(status) = p.exited() {
                panic!("{} exited ({status}) before logging {needle:?}:\n{text}", p.name);
            }
            assert!(Instant::now() < deadline, "{} did not log {needle:?} within 10 s:\n{text}", p.name);
            std::thread::sleep(Duration::from_millis(30));
        }
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for p in self.procs.iter_mut().rev() {
            p.stop();
        }
        for ns in self.namespaces.iter().rev() {
            let out = run(&["ip", "netns", "del", ns], 10);
            if !out.status.success() {
                eprintln!("could not delete network namespace {ns}: {}", String::from_utf8_lossy(&out.stderr));
            }
        }
    }
}
