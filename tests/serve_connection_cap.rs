//! `cras serve` caps its open connections: descriptors stay bounded whatever the clients do
//! (alone in its test binary, so that no other test opens descriptors meanwhile).
//!
//! A test binary of its own, not a module of `tests/serve`: it counts this process's open file
//! descriptors, which the servers and clients of tests running beside it would change.

mod common;
mod serve_support;

use std::net::TcpStream;
use std::time::Duration;

use serve_support::TestServer;

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

#[test]
fn connections_are_capped_so_descriptors_stay_bounded() {
    let server = TestServer::start(|c| c.max_connections = 8);
    std::thread::sleep(Duration::from_millis(200));
    let before = open_fds();
    let addr = server.base.trim_start_matches("http://").to_string();
    let idle: Vec<TcpStream> = (0..60)
        .map(|_| TcpStream::connect(&addr).unwrap())
        .collect();
    std::thread::sleep(Duration::from_millis(500));
    let grown = open_fds() - before;
    // 60 client sockets in this process, plus at most 8 accepted server sockets (+ slack for
    // the runtime); without a cap the server side accepts all 60.
    assert!(grown <= 60 + 8 + 4, "descriptors grew by {grown}");
    drop(idle);
    // The capped server still answers once a slot is free.
    assert_eq!(
        serve_support::get(&server.url("/v1/health"), None).status,
        200
    );
}
