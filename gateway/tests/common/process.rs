//! The `govpaas-gateway` binary as a process of its own, as production runs it: for what only a
//! process shows (its memory, its file descriptors, a kill -9).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::Province;

pub const BINARY: &str = env!("CARGO_BIN_EXE_govpaas-gateway");

/// A free loopback port (bound, then released).
pub fn free_port() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap()
}

/// The files a gateway process is started with, in `dir`.
pub struct GatewayFiles {
    pub dir: PathBuf,
}

impl GatewayFiles {
    /// Writes the gateway's certificate, key and trust bundle, and `routes` as its route table.
    pub fn write(dir: &Path, province: &Province, routes: &str) -> GatewayFiles {
        let (crt, key) = province.gateway_certificate();
        std::fs::write(dir.join("tls.crt"), crt).unwrap();
        std::fs::write(dir.join("tls.key"), key).unwrap();
        std::fs::write(dir.join("ca.crt"), province.platform.certificate_pem()).unwrap();
        std::fs::create_dir_all(dir.join("routes")).unwrap();
        std::fs::write(dir.join("routes/land.json"), routes).unwrap();
        GatewayFiles { dir: dir.to_owned() }
    }

    pub fn audit_log(&self) -> PathBuf {
        self.dir.join("audit.jsonl")
    }
}

/// A running gateway process; killed when dropped.
pub struct GatewayProcess {
    pub listen: SocketAddr,
    pub open_data_listen: SocketAddr,
    pub child: Child,
    pub log: PathBuf,
}

impl GatewayProcess {
    /// Starts `govpaas-gateway serve` on free loopback ports with `files`, `--resolve`d upstreams
    /// and `extra` arguments; waits until both listeners accept.
    pub fn start(files: &GatewayFiles, resolve: &[(&str, SocketAddr)], extra: &[&str]) -> GatewayProcess {
        let (listen, open_data_listen) = (free_port(), free_port());
        let d = &files.dir;
        let log = d.join(format!("gateway-{}.log", listen.port()));
        let mut command = Command::new(BINARY);
        command
            .arg("serve")
            .arg("--tls-cert")
            .arg(d.join("tls.crt"))
            .arg("--tls-key")
            .arg(d.join("tls.key"))
            .arg("--client-ca")
            .arg(d.join("ca.crt"))
            .arg("--routes")
            .arg(d.join("routes"))
            .arg(format!("--listen={listen}"))
            .arg(format!("--open-data-listen={open_data_listen}"))
            .args(extra)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap());
        if !extra.iter().any(|arg| arg.starts_with("--audit-log")) {
            command.arg("--audit-log").arg(files.audit_log());
        }
        for (host, addr) in resolve {
            command.arg(format!("--resolve={host}={addr}"));
        }
        let mut child = command.spawn().unwrap_or_else(|e| panic!("starting {BINARY}: {e}"));
        for _ in 0..200 {
            if std::net::TcpStream::connect(listen).is_ok() && std::net::TcpStream::connect(open_data_listen).is_ok() {
                return GatewayProcess { listen, open_data_listen, child, log };
            }
            if let Ok(Some(status)) = child.try_wait() {
                panic!("the gateway exited ({status}): {}", std::fs::read_to_string(&log).unwrap_or_default());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("the gateway did not listen: {}", std::fs::read_to_string(&log).unwrap_or_default());
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// A field of `/proc/<pid>/status` in KiB (`VmRSS`, `VmHWM`).
    pub fn status_kib(&self, field: &str) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap();
        status
            .lines()
            .find_map(|line| line.strip_prefix(&format!("{field}:")))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or_else(|| panic!("no {field} in /proc/{}/status", self.pid()))
    }

    /// Open file descriptors.
    pub fn open_fds(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.pid())).map(|d| d.count()).unwrap_or(0)
    }

    /// SIGKILL, as a crashing node or the OOM killer would.
    pub fn kill_9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM, and waits for the exit.
    pub fn stop(&mut self) {
        let _ = Command::new("kill").arg("-TERM").arg(self.pid().to_string()).status();
        for _ in 0..200 {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        self.kill_9();
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for GatewayProcess {
    fn drop(&mut self) {
        self.kill_9();
    }
}
