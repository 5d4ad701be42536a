//! A soak of a running `cras serve` on loopback, shared by `tests/serve_soak.rs` (short, with
//! assertions) and `examples/serve_soak.rs` (long, prints the figures): for a bounded time,
//! concurrent clients of every kind hit the server at once:
//! - `valid`: POST one image with the token (expect 200);
//! - `unauthenticated`: the same without the token (401);
//! - `oversized`: a body one byte above the body limit (413);
//! - `garbage`: random bytes as an image, or a multipart body without its closing boundary (400);
//! - `slow_body`: the head, then the body trickled slower than the body timeout allows (408);
//! - `slow_head`: the request head trickled a byte at a time (closed at the header timeout; no
//!   answer, recorded as status 0).
//!
//! Meanwhile the server's VmRSS is sampled from /proc. Self-contained (std and ureq) so the
//! example can include it by path.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// What to soak and how hard.
#[derive(Clone, Debug)]
pub struct SoakConfig {
    /// `host:port` of the server (loopback).
    pub addr: String,
    /// The server's bearer token.
    pub token: String,
    /// A valid image (PNG) for the valid and unauthenticated clients.
    pub image: Vec<u8>,
    /// How long to run.
    pub duration: Duration,
    /// Concurrent valid clients.
    pub valid_clients: usize,
    /// Concurrent clients of each bad kind.
    pub bad_clients: usize,
    /// The server's body limit in bytes (the oversized clients send one more).
    pub max_body: usize,
    /// A valid request slower than this counts as hung (status 0).
    pub client_timeout: Duration,
    /// The pause between the bytes of the slow clients (times ~250 bytes must exceed the server's
    /// header and body timeouts).
    pub trickle: Duration,
    /// The server's process id, for its memory figures.
    pub server_pid: Option<u32>,
}

/// Client kinds, in report order.
pub const KINDS: [&str; 6] = [
    "valid",
    "unauthenticated",
    "oversized",
    "garbage",
    "slow_body",
    "slow_head",
];

/// What a soak saw.
#[derive(Debug, Default)]
pub struct SoakReport {
    /// Per client kind, the count of each answer status (0: no answer, connection closed or
    /// timed out).
    pub statuses: BTreeMap<&'static str, BTreeMap<u16, u64>>,
    /// Latencies of the valid requests answered 200, in seconds, with their start offset.
    pub valid: Vec<(f64, f64)>,
    /// Largest VmRSS sampled, and VmHWM at the end, of the server, in KiB.
    pub peak_rss_kib: u64,
    pub hwm_kib: u64,
    /// VmRSS sampled after the first second, and at the end, in KiB.
    pub rss_start_kib: u64,
    pub rss_end_kib: u64,
    /// Wall time of the soak.
    pub elapsed: f64,
}

impl SoakReport {
    /// Requests of `kind` answered `status`.
    pub fn count(&self, kind: &str, status: u16) -> u64 {
        self.statuses
            .get(kind)
            .and_then(|m| m.get(&status))
            .copied()
            .unwrap_or(0)
    }

    /// Requests of `kind`.
    pub fn total(&self, kind: &str) -> u64 {
        self.statuses.get(kind).map_or(0, |m| m.values().sum())
    }

    /// The `q` quantile (0..1) of the valid latencies, in milliseconds.
    pub fn latency_ms(&self, q: f64) -> f64 {
        let mut l: Vec<f64> = self.valid.iter().map(|v| v.1).collect();
        if l.is_empty() {
            return f64::NAN;
        }
        l.sort_by(f64::total_cmp);
        l[((l.len() - 1) as f64 * q).round() as usize] * 1e3
    }

    /// The figures, one line per client kind then latency and memory.
    pub fn summary(&self) -> String {
        let mut out = String::new();
        for kind in KINDS {
            let codes: Vec<String> = self
                .statuses
                .get(kind)
                .map(|m| m.iter().map(|(s, n)| format!("{s}: {n}")).collect())
                .unwrap_or_default();
            out += &format!(
                "{kind:<16} {:>7} requests ({:.1}/s)  {}\n",
                self.total(kind),
                self.total(kind) as f64 / self.elapsed,
                codes.join(", ")
            );
        }
        out += &format!(
            "valid latency: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms\n",
            self.latency_ms(0.5),
            self.latency_ms(0.99),
            self.latency_ms(1.0)
        );
        out += &format!(
            "server memory: VmRSS {} MiB after 1 s, {} MiB at the end, peak sampled {} MiB, VmHWM {} MiB\n",
            self.rss_start_kib / 1024,
            self.rss_end_kib / 1024,
            self.peak_rss_kib / 1024,
            self.hwm_kib / 1024
        );
        out
    }
}

/// The soak's `cras serve` options: `model` on `device`, a bearer token read from `token_file`,
/// a 1 MiB body limit and 1.5 s header and body timeouts (so slow clients are cut quickly).
pub fn server_args(
    model: &std::path::Path,
    device: &str,
    token_file: &std::path::Path,
) -> Vec<String> {
    [
        "--model",
        &model.to_string_lossy(),
        "--device",
        device,
        "--token-file",
        &token_file.to_string_lossy(),
        "--max-body-mb",
        "1",
        "--header-timeout-ms",
        "1500",
        "--body-timeout-ms",
        "1500",
    ]
    .map(String::from)
    .to_vec()
}

/// A `cras serve` process on 127.0.0.1 (an ephemeral port), killed on drop.
pub struct ServerProcess {
    pub child: std::process::Child,
    /// `host:port` it listens on.
    pub addr: String,
    /// Its standard error so far (filled by a background thread).
    pub stderr: Arc<Mutex<String>>,
}

impl ServerProcess {
    /// Starts `cras` (the binary at `cras`) as `cras --log warn serve --addr 127.0.0.1:0 ARGS`
    /// and waits (up to two minutes) for the address it prints.
    pub fn start(cras: &std::path::Path, args: &[String]) -> ServerProcess {
        use std::io::BufRead;
        let mut child = std::process::Command::new(cras)
            .args(["--log", "warn", "serve", "--addr", "127.0.0.1:0"])
            .args(args)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("cras serve starts");
        let stderr = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let pipe = child.stderr.take().expect("stderr is piped");
        let log = stderr.clone();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(pipe).lines().map_while(Result::ok) {
                if let Some(addr) = line
                    .split("on http://")
                    .nth(1)
                    .and_then(|r| r.split_whitespace().next())
                {
                    let _ = tx.send(addr.to_string());
                }
                let mut l = log.lock().unwrap();
                l.push_str(&line);
                l.push('\n');
            }
        });
        let addr = rx
            .recv_timeout(Duration::from_secs(120))
            .unwrap_or_else(|_| {
                panic!("cras serve printed no address: {}", stderr.lock().unwrap())
            });
        ServerProcess {
            child,
            addr,
            stderr,
        }
    }

    /// Whether the process is still running.
    pub fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A `/proc/<pid>/status` field in KiB.
pub fn proc_kib(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// Sends `head` then `body` (in `chunks` pieces, `pause` apart) on a fresh connection and reads
/// the answer's status (0: closed without one, or nothing within `timeout`). Before each piece
/// it looks for an early answer (413, 408), so that a reset caused by writing after the server
/// closed cannot hide it.
fn raw_request(
    addr: &str,
    head: &[u8],
    body: &[u8],
    chunks: usize,
    pause: Duration,
    timeout: Duration,
) -> u16 {
    let Ok(mut s) = TcpStream::connect(addr) else {
        return 0;
    };
    let _ = s.set_read_timeout(Some(timeout));
    let _ = s.set_write_timeout(Some(timeout));
    let _ = s.set_nodelay(true);
    let mut reply = Vec::new();
    let mut buf = [0u8; 1024];
    if s.write_all(head).is_ok() {
        let step = body.len().div_ceil(chunks.max(1)).max(1);
        for (i, piece) in body.chunks(step).enumerate() {
            if i > 0 {
                std::thread::sleep(pause);
                let _ = s.set_nonblocking(true);
                let early = s.read(&mut buf);
                let _ = s.set_nonblocking(false);
                match early {
                    Ok(0) => break,
                    Ok(n) => {
                        reply.extend_from_slice(&buf[..n]);
                        break;
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                    Err(_) => break,
                }
            }
            if s.write_all(piece).is_err() {
                break;
            }
        }
    }
    while !reply.windows(2).any(|w| w == b"\r\n") {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => reply.extend_from_slice(&buf[..n]),
        }
    }
    status_of(&reply)
}

fn status_of(reply: &[u8]) -> u16 {
    String::from_utf8_lossy(reply)
        .strip_prefix("HTTP/1.1 ")
        .and_then(|r| r.get(..3))
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

fn head(addr: &str, content_type: &str, len: usize, token: Option<&str>) -> Vec<u8> {
    let auth = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
    format!(
        "POST /v1/predict HTTP/1.1\r\nHost: {addr}\r\nContent-Type: {content_type}\r\n\
         Content-Length: {len}\r\n{auth}Connection: close\r\n\r\n"
    )
    .into_bytes()
}

/// One request of `kind`; returns its status (0: no answer) and its duration.
fn one_request(cfg: &SoakConfig, agent: &ureq::Agent, kind: &str, n: u64) -> (u16, Duration) {
    let started = Instant::now();
    let url = format!("http://{}/v1/predict", cfg.addr);
    let status = match kind {
        "valid" | "unauthenticated" => {
            let mut req = agent.post(&url).set("Content-Type", "image/png");
            if kind == "valid" {
                req = req.set("Authorization", &format!("Bearer {}", cfg.token));
            }
            match req.send_bytes(&cfg.image) {
                Ok(r) => {
                    let s = r.status();
                    // Read the whole answer: a valid one must carry a score.
                    match r.into_string() {
                        Ok(body) if s != 200 || body.contains("\"score\"") => s,
                        _ => 0,
                    }
                }
                Err(ureq::Error::Status(s, _)) => s,
                Err(_) => 0,
            }
        }
        "oversized" => {
            let body = vec![0u8; cfg.max_body + 1];
            let h = head(&cfg.addr, "image/png", body.len(), Some(&cfg.token));
            raw_request(&cfg.addr, &h, &body, 16, Duration::ZERO, cfg.client_timeout)
        }
        "garbage" => {
            // Alternate: random bytes as a PNG, and a multipart body cut before its end.
            let (ct, body) = if n.is_multiple_of(2) {
                let mut x = n.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
                let bytes: Vec<u8> = (0..4096)
                    .map(|_| {
                        x ^= x << 13;
                        x ^= x >> 7;
                        x ^= x << 17;
                        x as u8
                    })
                    .collect();
                ("image/png".to_string(), bytes)
            } else {
                let b = "soak-boundary";
                let mut body = format!(
                    "--{b}\r\nContent-Disposition: form-data; name=\"image\"; filename=\"a.png\"\r\n\
                     Content-Type: image/png\r\n\r\n"
                )
                .into_bytes();
                body.extend_from_slice(&cfg.image[..cfg.image.len() / 2]);
                (format!("multipart/form-data; boundary={b}"), body)
            };
            let h = head(&cfg.addr, &ct, body.len(), Some(&cfg.token));
            raw_request(&cfg.addr, &h, &body, 1, Duration::ZERO, cfg.client_timeout)
        }
        "slow_body" => {
            // A byte every `trickle`: longer in all than the server's body timeout.
            let body = vec![0u8; 256];
            let h = head(&cfg.addr, "image/png", body.len(), Some(&cfg.token));
            raw_request(
                &cfg.addr,
                &h,
                &body,
                body.len(),
                cfg.trickle,
                cfg.client_timeout,
            )
        }
        _ => {
            // The head a byte every `trickle`: longer in all than the header timeout.
            let h = head(&cfg.addr, "image/png", 10, Some(&cfg.token));
            raw_request(&cfg.addr, &[], &h, h.len(), cfg.trickle, cfg.client_timeout)
        }
    };
    (status, started.elapsed())
}

/// Runs the soak (module docs) and returns what it saw.
pub fn run(cfg: &SoakConfig) -> SoakReport {
    let report = Arc::new(Mutex::new(SoakReport::default()));
    let started = Instant::now();
    let until = started + cfg.duration;
    let done = Arc::new(AtomicBool::new(false));
    let sampler = cfg.server_pid.map(|pid| {
        let (report, done) = (report.clone(), done.clone());
        std::thread::spawn(move || {
            while !done.load(Ordering::Relaxed) {
                let rss = proc_kib(pid, "VmRSS:").unwrap_or(0);
                let mut r = report.lock().unwrap();
                r.peak_rss_kib = r.peak_rss_kib.max(rss);
                if r.rss_start_kib == 0 && started.elapsed() >= Duration::from_secs(1) {
                    r.rss_start_kib = rss;
                }
                drop(r);
                std::thread::sleep(Duration::from_millis(100));
            }
        })
    });
    let mut clients = Vec::new();
    for kind in KINDS {
        let n = if kind == "valid" {
            cfg.valid_clients
        } else {
            cfg.bad_clients
        };
        for _ in 0..n {
            let (cfg, report) = (cfg.clone(), report.clone());
            clients.push(std::thread::spawn(move || {
                let agent = ureq::AgentBuilder::new()
                    .timeout(cfg.client_timeout)
                    .build();
                let mut i = 0u64;
                while Instant::now() < until {
                    let at = started.elapsed().as_secs_f64();
                    let (status, took) = one_request(&cfg, &agent, kind, i);
                    i += 1;
                    let mut r = report.lock().unwrap();
                    *r.statuses
                        .entry(kind)
                        .or_default()
                        .entry(status)
                        .or_default() += 1;
                    if kind == "valid" && status == 200 {
                        r.valid.push((at, took.as_secs_f64()));
                    }
                }
            }));
        }
    }
    for c in clients {
        c.join().expect("a soak client panicked");
    }
    done.store(true, Ordering::Relaxed);
    if let Some(s) = sampler {
        s.join().expect("the memory sampler panicked");
    }
    let mut r = Arc::try_unwrap(report)
        .expect("every client has finished")
        .into_inner()
        .unwrap();
    r.elapsed = started.elapsed().as_secs_f64();
    if let Some(pid) = cfg.server_pid {
        r.rss_end_kib = proc_kib(pid, "VmRSS:").unwrap_or(0);
        r.hwm_kib = proc_kib(pid, "VmHWM:").unwrap_or(0);
    }
    r
}
