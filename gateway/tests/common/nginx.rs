//! nginx as a provider: a real HTTP server that decodes and normalises request paths itself
//! (percent-decoding, `%2F` to `/`, dot segments resolved, slashes merged), so a test sees what
//! an ordinary provider would make of what the gateway forwards. It runs in the foreground
//! (`daemon off; master_process off;`) on a free loopback port, with its configuration, logs and
//! temporary files in a directory of its own, and logs every request it received.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// nginx on `PATH` or in `/usr/sbin`; installed with apt-get (Debian's `nginx-light`) when missing,
/// saying so, as CI runs on a fresh machine.
pub fn nginx_binary() -> PathBuf {
    static BINARY: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    BINARY
        .get_or_init(|| {
            let find = || {
                std::env::var_os("PATH")
                    .map(|paths| std::env::split_paths(&paths).collect::<Vec<_>>())
                    .unwrap_or_default()
                    .into_iter()
                    .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/usr/local/sbin")])
                    .map(|dir| dir.join("nginx"))
                    .find(|candidate| candidate.is_file())
            };
            if let Some(found) = find() {
                return found;
            }
            eprintln!("nginx not found: installing Debian's nginx-light with apt-get (the provider of the gateway's path tests)");
            let install = || {
                Command::new("apt-get")
                    .args(["install", "-y", "--no-install-recommends", "nginx-light"])
                    .env("DEBIAN_FRONTEND", "noninteractive")
                    .status()
                    .is_ok_and(|status| status.success())
            };
            if !install() {
                eprintln!("apt-get install failed: running apt-get update and trying again");
                let _ = Command::new("apt-get").arg("update").status();
                install();
            }
            find().expect("nginx is needed as the provider of these tests: apt-get install nginx-light (as root)")
        })
        .clone()
}

/// A running nginx; stopped when dropped.
pub struct Nginx {
    pub addr: SocketAddr,
    pub dir: tempfile::TempDir,
    child: Child,
}

/// What nginx logged for one request: the target as received, and the path it resolved.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Received {
    pub request_uri: String,
    /// nginx's `$uri`: decoded and normalised.
    pub uri: String,
    /// Which location answered: `api` and `open` (the published APIs) or `other` (anything else).
    pub location: String,
    /// Headers as received (`-` when absent): x-lgsp-consumer, client-cert, x-real-ip,
    /// true-client-ip, x-original-url, cf-connecting-ip, x-forwarded-for.
    pub headers: Vec<String>,
}

pub const LOGGED_HEADERS: [&str; 7] = [
    "x-lgsp-consumer",
    "client-cert",
    "x-real-ip",
    "true-client-ip",
    "x-original-url",
    "cf-connecting-ip",
    "x-forwarded-for",
];

impl Nginx {
    /// Serves `/api/v1/` (location `api`) and everything else (location `other`: the provider's
    /// paths no route publishes, such as `/admin/`), answering JSON that names the location.
    pub fn start() -> Nginx {
        let dir = tempfile::tempdir().unwrap();
        let addr = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
        let headers: Vec<String> = LOGGED_HEADERS.iter().map(|h| format!("$http_{}", h.replace('-', "_"))).collect();
        let server = format!(
            r#"    client_max_body_size 0;
    log_format received escape=json '$request_uri\t$uri\t$location\t{headers}';
    server {{
        listen {addr};
        set $location other;
        location /api/v1/ {{
            set $location api;
            return 200 '{{"location":"api","uri":"$uri","requestUri":"$request_uri"}}';
        }}
        location /open/ {{
            set $location open;
            return 200 '{{"location":"open","uri":"$uri","requestUri":"$request_uri"}}';
        }}
        location / {{
            return 200 '{{"location":"other","uri":"$uri","requestUri":"$request_uri"}}';
        }}
    }}
"#,
            headers = headers.join("\\t"),
        );
        let child = spawn(dir.path(), addr, &server);
        Nginx { addr, dir, child }
    }

    pub fn error_log(&self) -> PathBuf {
        self.dir.path().join("error.log")
    }

    /// Every request nginx logged so far, in order.
    pub fn received(&self) -> Vec<Received> {
        read_access_log(self.dir.path())
    }

    /// The requests logged, once there are at least `count` (nginx logs a request just after
    /// answering it); at most five seconds.
    pub fn received_at_least(&self, count: usize) -> Vec<Received> {
        for _ in 0..100 {
            let received = self.received();
            if received.len() >= count {
                return received;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("nginx logged fewer than {count} requests: {:?}", self.received());
    }
}

/// Runs nginx in the foreground from `dir` (configuration, logs, temporary files) with `http` as
/// the body of its `http` block (which must declare the log format `received`: every request is
/// logged with it to `access.log`), and waits until it listens on `addr`.
pub fn spawn(dir: &Path, addr: SocketAddr, http: &str) -> Child {
    let binary = nginx_binary();
    let d = dir.display();
    let config = format!(
        r#"daemon off;
master_process off;
worker_processes 1;
pid {d}/nginx.pid;
error_log {d}/error.log info;
events {{ worker_connections 1024; }}
http {{
    client_body_temp_path {d}/body;
    proxy_temp_path {d}/proxy;
    fastcgi_temp_path {d}/fastcgi;
    uwsgi_temp_path {d}/uwsgi;
    scgi_temp_path {d}/scgi;
    default_type application/json;
{http}    access_log {d}/access.log received;
}}
"#
    );
    std::fs::write(dir.join("nginx.conf"), config).unwrap();
    std::fs::write(dir.join("access.log"), "").unwrap();
    let mut child = Command::new(&binary)
        .arg("-p")
        .arg(dir)
        .arg("-c")
        .arg(dir.join("nginx.conf"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("starting {}: {e}", binary.display()));
    for _ in 0..100 {
        if std::net::TcpStream::connect(addr).is_ok() {
            return child;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
    panic!("nginx did not listen on {addr}: {}", std::fs::read_to_string(dir.join("error.log")).unwrap_or_default());
}

/// The lines nginx logged to `dir`'s `access.log`, split at tabs.
pub fn logged(dir: &Path) -> Vec<Vec<String>> {
    std::fs::read_to_string(dir.join("access.log"))
        .unwrap()
        .lines()
        .map(|line| line.split('\t').map(str::to_owned).collect())
        .collect()
}

fn read_access_log(dir: &Path) -> Vec<Received> {
    logged(dir)
        .into_iter()
        .map(|fields| {
            let mut fields = fields.into_iter();
            let mut next = || fields.next().unwrap_or_default();
            Received {
                request_uri: next(),
                uri: next(),
                location: next(),
                headers: std::iter::repeat_with(next).take(LOGGED_HEADERS.len()).collect(),
            }
        })
        .collect()
}

impl Received {
    pub fn header(&self, name: &str) -> Option<&str> {
        let index = LOGGED_HEADERS.iter().position(|h| *h == name).expect("a logged header");
        Some(self.headers[index].as_str()).filter(|v| !v.is_empty() && *v != "-")
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
