//! nginx (Debian's package) terminating TLS in front of a test backend, as a real
//! HTTPS MCP server is usually deployed: started by a test, stopped when dropped.
//!
//! Needs `nginx` on the PATH or in `/usr/sbin` (`apt-get install nginx-light`; `.ci/run`
//! installs it).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::pki::Pair;

/// How nginx serves.
#[derive(Clone, Debug)]
pub struct NginxTls<'a> {
    /// The certificate and key it presents.
    pub server: &'a Pair,
    /// With a CA here, `ssl_verify_client on`: a client without a certificate that CA
    /// signed is refused.
    pub client_ca: Option<&'a Path>,
    /// Where it forwards (plain HTTP).
    pub upstream: SocketAddr,
}

/// A running nginx.
#[derive(Debug)]
pub struct Nginx {
    process: Child,
    dir: PathBuf,
    addr: SocketAddr,
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.process.kill();
        let _ = self.process.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

type Error = Box<dyn std::error::Error + Send + Sync>;

fn binary() -> Option<PathBuf> {
    let candidates = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .unwrap_or_default();
    candidates
        .into_iter()
        .chain([PathBuf::from("/usr/sbin")])
        .map(|d| d.join("nginx"))
        .find(|p| p.is_file())
}

impl Nginx {
    /// Starts nginx on a free loopback port and waits until it accepts connections.
    pub fn start(tls: &NginxTls<'_>) -> Result<Nginx, Error> {
        let nginx = binary()
            .ok_or("nginx is not installed: apt-get install nginx-light (the TLS tests run it)")?;
        use std::sync::atomic::{AtomicU32, Ordering};
        static N: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "hale-nginx-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir)?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        let verify = match tls.client_ca {
            Some(ca) => format!(
                "ssl_client_certificate {};\n      ssl_verify_client on;",
                ca.display()
            ),
            None => String::new(),
        };
        let d = dir.display();
        let conf = format!(
            r#"daemon off;
master_process off;
worker_processes 1;
pid {d}/nginx.pid;
error_log {d}/error.log warn;
events {{ worker_connections 256; }}
http {{
  access_log off;
  client_body_temp_path {d}/body;
  proxy_temp_path {d}/proxy;
  fastcgi_temp_path {d}/fastcgi;
  uwsgi_temp_path {d}/uwsgi;
  scgi_temp_path {d}/scgi;
  server {{
      listen {addr} ssl;
      ssl_certificate {cert};
      ssl_certificate_key {key};
      {verify}
      location / {{
          proxy_pass http://{upstream};
          proxy_http_version 1.1;
          proxy_set_header Connection "";
          proxy_buffering off;
          proxy_read_timeout 1h;
      }}
  }}
}}
"#,
            cert = tls.server.cert.display(),
            key = tls.server.key.display(),
            upstream = tls.upstream,
        );
        let conf_path = dir.join("nginx.conf");
        std::fs::write(&conf_path, conf)?;
        let mut process = Command::new(nginx)
            .arg("-p")
            .arg(&dir)
            .arg("-c")
            .arg(&conf_path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if std::net::TcpStream::connect(addr).is_ok() {
                return Ok(Nginx { process, dir, addr });
            }
            if let Some(status) = process.try_wait()? {
                let log = std::fs::read_to_string(dir.join("error.log")).unwrap_or_default();
                let _ = std::fs::remove_dir_all(&dir);
                return Err(format!("nginx exited ({status}): {log}").into());
            }
            if Instant::now() > deadline {
                let _ = process.kill();
                let _ = std::fs::remove_dir_all(&dir);
                return Err("nginx did not start listening within 10 s".into());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `https://127.0.0.1:PORT` + `path`.
    pub fn url(&self, path: &str) -> String {
        format!("https://{}{path}", self.addr)
    }

    /// `https://localhost:PORT` + `path`.
    pub fn localhost_url(&self, path: &str) -> String {
        format!("https://localhost:{}{path}", self.addr.port())
    }
}
