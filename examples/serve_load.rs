//! Load test of a running `cras serve` (a dev command): N concurrent clients POST one image to
//! `/v1/predict` for T seconds, then it prints requests, errors by status, throughput and
//! p50/p99 latency, and (with --server-pid) the server's resident memory before and after.
//!
//! Loopback only and bounded (at most 256 clients, 600 s). Example:
//! `cargo run --example serve_load -- --image some.png --clients 16 --seconds 20 --server-pid 1234`

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use clap::Parser;

/// Load test of `cras serve` on this machine.
#[derive(Parser, Debug)]
struct Args {
    /// Server base URL (loopback host only).
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    url: String,
    /// Image POSTed by every request.
    #[arg(long)]
    image: PathBuf,
    /// Concurrent clients (1..=256).
    #[arg(long, default_value_t = 16)]
    clients: usize,
    /// Duration in seconds (1..=600).
    #[arg(long, default_value_t = 20)]
    seconds: u64,
    /// Bearer token, when the server needs one.
    #[arg(long)]
    token: Option<String>,
    /// Server process id: report its VmRSS before and after.
    #[arg(long)]
    server_pid: Option<u32>,
}

/// VmRSS of `pid` in KiB, from /proc.
fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// One client's tally: latencies of successes (seconds) and counts by status (0 = transport error).
#[derive(Default)]
struct Tally {
    latencies: Vec<f64>,
    statuses: BTreeMap<u16, u64>,
}

fn client(url: String, body: Vec<u8>, token: Option<String>, until: Instant) -> Tally {
    let agent = ureq::AgentBuilder::new()
        .timeout(Duration::from_secs(30))
        .build();
    let mut tally = Tally::default();
    while Instant::now() < until {
        let started = Instant::now();
        let mut req = agent.post(&url).set("Content-Type", "image/png");
        if let Some(t) = &token {
            req = req.set("Authorization", &format!("Bearer {t}"));
        }
        let status = match req.send_bytes(&body) {
            Ok(r) => {
                let _ = r.into_string();
                200
            }
            Err(ureq::Error::Status(code, r)) => {
                let _ = r.into_string();
                code
            }
            Err(_) => 0,
        };
        if status == 200 {
            tally.latencies.push(started.elapsed().as_secs_f64());
        }
        *tally.statuses.entry(status).or_insert(0) += 1;
    }
    tally
}

/// The `q` quantile (nearest rank) of sorted values.
fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() - 1) as f64 * q).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn main() -> anyhow::Result<()> {
    let a = Args::parse();
    anyhow::ensure!((1..=256).contains(&a.clients), "--clients must be 1..=256");
    anyhow::ensure!((1..=600).contains(&a.seconds), "--seconds must be 1..=600");
    let host = a
        .url
        .strip_prefix("http://")
        .and_then(|r| r.split('/').next())
        .ok_or_else(|| anyhow::anyhow!("--url must start with http://"))?;
    let mut resolved = std::net::ToSocketAddrs::to_socket_addrs(host)
        .map_err(|e| anyhow::anyhow!("--url host {host}: {e}"))?
        .peekable();
    anyhow::ensure!(
        resolved.peek().is_some() && resolved.all(|s| s.ip().is_loopback()),
        "--url {} is not a loopback address; this tool only loads the local machine",
        a.url
    );
    let body =
        std::fs::read(&a.image).map_err(|e| anyhow::anyhow!("{}: {e}", a.image.display()))?;
    let url = format!("{}/v1/predict", a.url.trim_end_matches('/'));
    let rss_before = a.server_pid.and_then(rss_kib);
    let started = Instant::now();
    let until = started + Duration::from_secs(a.seconds);
    let handles: Vec<_> = (0..a.clients)
        .map(|_| {
            let (url, body, token) = (url.clone(), body.clone(), a.token.clone());
            std::thread::spawn(move || client(url, body, token, until))
        })
        .collect();
    let mut latencies = Vec::new();
    let mut statuses = BTreeMap::new();
    for h in handles {
        let t = h
            .join()
            .map_err(|_| anyhow::anyhow!("a client thread panicked"))?;
        latencies.extend(t.latencies);
        for (s, n) in t.statuses {
            *statuses.entry(s).or_insert(0) += n;
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    latencies.sort_by(f64::total_cmp);
    let total: u64 = statuses.values().sum();
    let errors = total - statuses.get(&200).copied().unwrap_or(0);
    println!("clients {}  duration {elapsed:.1} s", a.clients);
    println!(
        "requests {total}  ok {}  errors {errors}  by status {statuses:?} (0 = transport error)",
        latencies.len()
    );
    println!(
        "throughput {:.1} requests/s",
        latencies.len() as f64 / elapsed
    );
    println!(
        "latency p50 {:.1} ms  p99 {:.1} ms  max {:.1} ms",
        percentile(&latencies, 0.5) * 1e3,
        percentile(&latencies, 0.99) * 1e3,
        latencies.last().copied().unwrap_or(f64::NAN) * 1e3
    );
    if let Some(pid) = a.server_pid {
        let show = |v: Option<u64>| {
            v.map(|k| format!("{:.1} MiB", k as f64 / 1024.0))
                .unwrap_or("unknown".into())
        };
        println!(
            "server VmRSS before {}  after {}",
            show(rss_before),
            show(rss_kib(pid))
        );
    }
    Ok(())
}
