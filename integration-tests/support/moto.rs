//! moto in server mode (the AWS APIs other than S3: STS, DynamoDB, EC2) from a pinned venv
//! (integration-tests/services/setup-moto.sh, installed on first use into target/moto).

use super::harness::eventually;
use super::upstream::free_port;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The pinned venv with moto and boto3 (installed on first use).
pub fn venv() -> PathBuf {
    let dir = repo().join("target/moto");
    let st = Command::new("bash").arg(repo().join("integration-tests/services/setup-moto.sh")).arg(&dir).status().expect("bash runs");
    assert!(st.success(), "installing moto and boto3 failed (see above)");
    dir
}

/// moto in server mode on a free loopback port; stopped on drop.
pub struct Moto {
    pub child: Child,
    pub addr: SocketAddr,
}

impl Moto {
    pub fn start(venv: &Path) -> Moto {
        let port = free_port();
        let child = Command::new(venv.join("bin/python"))
            .args(["-m", "moto.server", "-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("moto starts");
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        let mut m = Moto { child, addr };
        eventually(
            30,
            || "moto did not listen".into(),
            || {
                if let Ok(Some(st)) = m.child.try_wait() {
                    panic!("moto exited with {st}");
                }
                std::net::TcpStream::connect(addr).ok()
            },
        );
        m
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
