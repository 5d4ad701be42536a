//! Soak of `cras serve` (a dev command): starts the server binary on loopback with short header
//! and body timeouts, a 1 MiB body limit and a token, then runs the mixed load of
//! `tests/serve_support/soak.rs` (valid, unauthenticated, oversized, garbage, slow-body and
//! slow-head clients at once) for `--secs` seconds and prints requests and status codes per
//! client kind, requests/s, the valid requests' p50/p99 latency and the server's memory.
//!
//! `cargo build --release && cargo run --release --example serve_soak -- --cras target/release/cras --model model.safetensors --secs 60`

#[path = "../tests/serve_support/soak.rs"]
mod soak;

use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;

/// Soak of `cras serve` on this machine.
#[derive(Parser, Debug)]
struct Args {
    /// The `cras` binary to serve with.
    #[arg(long, default_value = "target/release/cras")]
    cras: PathBuf,
    /// Model file to serve.
    #[arg(long)]
    model: PathBuf,
    /// Image the valid clients POST (default: a generated 64x64 PNG).
    #[arg(long)]
    image: Option<PathBuf>,
    /// Duration in seconds (1..=3600).
    #[arg(long, default_value_t = 60)]
    secs: u64,
    /// Concurrent valid clients.
    #[arg(long, default_value_t = 4)]
    valid_clients: usize,
    /// Concurrent clients of each bad kind.
    #[arg(long, default_value_t = 2)]
    bad_clients: usize,
    /// Device of the server.
    #[arg(long, default_value = "cpu")]
    device: String,
}

fn main() -> anyhow::Result<()> {
    let a = Args::parse();
    anyhow::ensure!((1..=3600).contains(&a.secs), "--secs must be 1..=3600");
    let image = match &a.image {
        Some(p) => std::fs::read(p)?,
        None => {
            let img = image::RgbImage::from_fn(64, 64, |x, y| {
                image::Rgb([x as u8 * 4, y as u8 * 4, 128])
            });
            let mut out = std::io::Cursor::new(Vec::new());
            img.write_to(&mut out, image::ImageFormat::Png)?;
            out.into_inner()
        }
    };
    let dir = tempfile::tempdir()?;
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, "soak-token\n")?;
    let args = soak::server_args(&a.model, &a.device, &token_file);
    let mut server = soak::ServerProcess::start(&a.cras, &args);
    println!(
        "soaking {} at {} for {} s",
        a.model.display(),
        server.addr,
        a.secs
    );
    let cfg = soak::SoakConfig {
        addr: server.addr.clone(),
        token: "soak-token".into(),
        image,
        duration: Duration::from_secs(a.secs),
        valid_clients: a.valid_clients,
        bad_clients: a.bad_clients,
        max_body: 1 << 20,
        client_timeout: Duration::from_secs(10),
        trickle: Duration::from_millis(100),
        server_pid: Some(server.child.id()),
    };
    let r = soak::run(&cfg);
    print!("{}", r.summary());
    let all: u64 = soak::KINDS.iter().map(|k| r.total(k)).sum();
    println!(
        "all clients: {all} requests in {:.1} s ({:.0}/s); server still running: {}",
        r.elapsed,
        all as f64 / r.elapsed,
        server.running()
    );
    Ok(())
}
