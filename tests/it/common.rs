//! The harness: start the real `chronoshard` binary on 127.0.0.1 with a fresh data directory on
//! disk, and talk raw HTTP/1.1 to it.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

pub const TEST_WAL_SEGMENT_BYTES: u64 = 1 << 20;

/// A running server; killed on drop if still alive.
pub struct Server {
    pub addr: SocketAddr,
    pub child: Child,
    pub dir: tempfile::TempDir,
    pub log: Arc<Mutex<Vec<String>>>,
    /// How it was started, for `restart`.
    config: Option<PathBuf>,
    shards: usize,
}

/// A fresh directory under the cargo target dir (on disk, never tmpfs).
pub fn temp_dir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("chronoshard-it-")
        .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
        .expect("temp dir")
}

pub fn binary() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_chronoshard"))
}

impl Server {
    /// Starts a server with `config` (TOML, may be empty) and `shards` shards on a free port.
    pub fn start(config: &str, shards: usize) -> Server {
        let dir = temp_dir();
        let config_path = dir.path().join("test.toml");
        // Small WAL segments: each start preallocates a fresh one, and tests restart a lot.
        let config = format!("wal_segment_bytes = {TEST_WAL_SEGMENT_BYTES}\n{config}");
        std::fs::write(&config_path, config).expect("write config");
        Server::start_in(dir, Some(&config_path), shards, &[], &[])
    }

    /// Starts with extra flags and environment variables.
    pub fn start_in(
        dir: tempfile::TempDir,
        config_path: Option<&Path>,
        shards: usize,
        args: &[&str],
        envs: &[(&str, &str)],
    ) -> Server {
        let mut child = Command::new(binary())
            .args(["serve", "--http-addr", "127.0.0.1:0"])
            .args(config_path.iter().flat_map(|p| [Path::new("--config"), p]))
            .arg("--data-dir")
            .arg(dir.path().join("data"))
            .args(["--shards", &shards.to_string()])
            .args(args)
            .envs(envs.iter().copied())
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn chronoshard");
        let stderr = child.stderr.take().expect("stderr");
        let log = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = mpsc::channel();
        let log_w = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let addr = line
                    .split("listening on ")
                    .nth(1)
                    .map(|rest| rest.split(',').next().unwrap_or_default().to_string());
                let ready = line.contains(" ready: ");
                log_w.lock().expect("log lock").push(line);
                if let Some(addr) = addr {
                    let _ = tx.send(Some(addr));
                } else if ready {
                    let _ = tx.send(None);
                }
            }
        });
        // First the start-up line with the address, then the line saying WAL replay is done.
        let addr = match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(Some(a)) => a.parse().expect("address in the start-up line"),
            _ => {
                let _ = child.kill();
                panic!("server did not start; log: {:?}", log.lock().expect("log"));
            }
        };
        if !matches!(rx.recv_timeout(Duration::from_secs(120)), Ok(None)) {
            let _ = child.kill();
            panic!(
                "server did not get ready; log: {:?}",
                log.lock().expect("log")
            );
        }
        Server {
            addr,
            child,
            dir,
            log,
            config: config_path.map(Path::to_path_buf),
            shards,
        }
    }

    /// Starts a new server on the same data directory and config (this one must have exited).
    pub fn restart(mut self) -> Server {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let dir = std::mem::replace(&mut self.dir, temp_dir());
        let config = self.config.take();
        Server::start_in(dir, config.as_deref(), self.shards, &[], &[])
    }

    pub fn connect(&self) -> TcpStream {
        let s = TcpStream::connect(self.addr).expect("connect");
        // Generous: debug builds on 2 shared cores, tests in parallel; every loop stays bounded.
        s.set_read_timeout(Some(Duration::from_secs(60)))
            .expect("timeout");
        s.set_nodelay(true).expect("nodelay");
        s
    }

    /// Sends SIGTERM and waits (bounded) for the exit status.
    pub fn terminate(&mut self) -> ExitStatus {
        signal(&self.child, libc::SIGTERM);
        self.wait_exit(Duration::from_secs(30))
    }

    pub fn wait_exit(&mut self, limit: Duration) -> ExitStatus {
        let until = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status;
            }
            assert!(
                Instant::now() < until,
                "server did not exit within {limit:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn log_text(&self) -> String {
        self.log.lock().expect("log").join("\n")
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn signal(child: &Child, sig: i32) {
    // SAFETY: kill(2) on the pid of a child we spawned.
    let rc = unsafe { libc::kill(child.id() as i32, sig) };
    assert_eq!(rc, 0, "kill failed");
}

/// A parsed response.
#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Resp {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// Asserts a JSON error body with the given status.
    pub fn assert_error(&self, status: u16) {
        assert_eq!(self.status, status, "body: {}", self.text());
        assert_eq!(self.header("content-type"), Some("application/json"));
        let t = self.text();
        assert!(t.starts_with("{\"error_code\":\""), "{t}");
        assert!(t.contains("\"error_message\":\""), "{t}");
    }
}

/// Reads responses from one connection, keeping bytes that belong to the next one.
pub struct Reader {
    pub stream: TcpStream,
    buf: Vec<u8>,
}

impl Reader {
    pub fn new(stream: TcpStream) -> Reader {
        Reader {
            stream,
            buf: Vec::new(),
        }
    }

    pub fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("send");
    }

    fn more(&mut self) -> usize {
        let mut chunk = [0u8; 8192];
        let n = self.stream.read(&mut chunk).unwrap_or(0);
        self.buf.extend_from_slice(&chunk[..n]);
        n
    }

    /// Reads one response; `head_request` for answers to HEAD (no body).
    pub fn read(&mut self, head_request: bool) -> Option<Resp> {
        let (status, headers, used) = loop {
            let mut hs = [httparse::EMPTY_HEADER; 64];
            let mut r = httparse::Response::new(&mut hs);
            if let httparse::Status::Complete(n) = r.parse(&self.buf).expect("valid response") {
                let headers = r
                    .headers
                    .iter()
                    .map(|h| {
                        (
                            h.name.to_string(),
                            String::from_utf8_lossy(h.value).into_owned(),
                        )
                    })
                    .collect::<Vec<_>>();
                break (r.code.expect("code"), headers, n);
            }
            if self.more() == 0 {
                return None;
            }
        };
        self.buf.drain(..used);
        let resp = Resp {
            status,
            headers,
            body: Vec::new(),
        };
        Some(self.read_body(resp, head_request || status == 100))
    }

    fn read_body(&mut self, mut resp: Resp, no_body: bool) -> Resp {
        if no_body {
            return resp;
        }
        let len: usize = resp
            .header("content-length")
            .expect("we always send Content-Length")
            .parse()
            .expect("length");
        while self.buf.len() < len {
            assert!(self.more() > 0, "connection closed inside a body");
        }
        resp.body = self.buf.drain(..len).collect();
        resp
    }

    /// True when the server has closed the connection (reads end without data).
    pub fn is_closed(&mut self) -> bool {
        self.buf.is_empty() && self.more() == 0
    }
}

/// One request on a new connection.
pub fn request(server: &Server, raw: &[u8]) -> Resp {
    let mut r = Reader::new(server.connect());
    r.send(raw);
    r.read(raw.starts_with(b"HEAD ")).expect("a response")
}

/// `Authorization` header value for root with an empty password.
pub const ROOT_AUTH: &str = "Basic cm9vdDo=";

/// Posts line protocol to /api/v1/write with root's credentials; `query` without the `?`.
pub fn write(server: &Server, query: &str, body: &str) -> Resp {
    let raw = format!(
        "POST /api/v1/write?{query} HTTP/1.1\r\nAuthorization: {ROOT_AUTH}\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    request(server, raw.as_bytes())
}

/// The value of a metric line (the text before the value must match exactly), summed over
/// every line that starts with `prefix` (so per-shard series add up).
pub fn metric_sum(server: &Server, prefix: &str) -> u64 {
    let text = get(server, "/metrics").text();
    text.lines()
        .filter(|l| l.starts_with(prefix))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

pub fn get(server: &Server, path: &str) -> Resp {
    request(
        server,
        format!("GET {path} HTTP/1.1\r\nHost: t\r\n\r\n").as_bytes(),
    )
}
