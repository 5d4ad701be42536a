//! A bounded soak of `cras serve` (the binary, on loopback, a tiny model): for 15 s, valid
//! clients share the server with unauthenticated, oversized, garbage and slow (trickled head or
//! body) clients. Valid clients must keep being answered 200 throughout (>= 95%, none hanging
//! past the client timeout, some in every 5-second window), each bad kind must get its
//! documented status (401, 413, 400, 408; a trickled head is closed), the server's memory must
//! stay bounded and it must still serve at the end. `examples/serve_soak.rs` runs the same soak
//! for longer and prints the figures.
//!
//! A test binary of its own, not a module of `tests/serve`: its availability figures (answers
//! within the client timeout, some in every 5-second window) assume the machine is not busy
//! with other tests for those 15 s.

mod common;
mod serve_support;
#[path = "serve_support/soak.rs"]
mod soak;

use std::time::Duration;

use serve_support::tiny_model;
use soak::{server_args, ServerProcess, SoakConfig};

/// Peak resident memory allowed to the server (a tiny model; the limits keep every request's
/// memory bounded).
const MAX_SERVER_RSS_MIB: u64 = 256;

#[test]
fn the_server_stays_available_and_bounded_under_a_mixed_hostile_load() {
    let model = tiny_model();
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, "soak-token\n").unwrap();
    let args = server_args(&model.model, "cpu", &token_file);
    let mut server = ServerProcess::start(std::path::Path::new(env!("CARGO_BIN_EXE_cras")), &args);
    let cfg = SoakConfig {
        addr: server.addr.clone(),
        token: "soak-token".into(),
        image: std::fs::read(&model.images[0]).unwrap(),
        duration: Duration::from_secs(15),
        valid_clients: 4,
        bad_clients: 2,
        max_body: 1 << 20,
        client_timeout: Duration::from_secs(10),
        trickle: Duration::from_millis(100),
        server_pid: Some(server.child.id()),
    };
    let r = soak::run(&cfg);
    eprintln!("{}", r.summary());
    let log = server.stderr.lock().unwrap().clone();

    // Valid clients: answered, in time, throughout.
    let valid = r.total("valid");
    let ok = r.count("valid", 200);
    assert!(valid >= 20, "only {valid} valid requests in 15 s\n{log}");
    assert!(
        ok * 100 >= valid * 95,
        "{ok} of {valid} valid requests got 200\n{log}"
    );
    assert_eq!(
        r.count("valid", 0),
        0,
        "valid requests hung or dropped\n{log}"
    );
    for window in 0..3 {
        let (from, to) = (window as f64 * 5.0, window as f64 * 5.0 + 5.0);
        assert!(
            r.valid.iter().any(|(at, _)| (from..to).contains(at)),
            "no valid request answered between {from} s and {to} s"
        );
    }
    // Bad clients: each its documented status.
    for (kind, status) in [
        ("unauthenticated", 401),
        ("oversized", 413),
        ("garbage", 400),
        ("slow_body", 408),
    ] {
        let n = r.total(kind);
        assert!(n > 0, "no {kind} request completed");
        assert_eq!(r.count(kind, status), n, "{kind}: {:?}", r.statuses[kind]);
    }
    let heads = r.total("slow_head");
    assert!(heads > 0, "no trickled head completed");
    assert_eq!(
        r.count("slow_head", 0) + r.count("slow_head", 408),
        heads,
        "trickled heads: {:?}",
        r.statuses["slow_head"]
    );
    // Memory bounded; still up and serving.
    assert!(r.hwm_kib > 0, "no memory figures for the server");
    assert!(
        r.hwm_kib / 1024 < MAX_SERVER_RSS_MIB,
        "server peak RSS {} MiB",
        r.hwm_kib / 1024
    );
    assert!(server.running(), "the server exited\n{log}");
    let health = ureq::get(&format!("http://{}/v1/health", server.addr))
        .call()
        .expect("health answers");
    assert_eq!(health.status(), 200);
}
