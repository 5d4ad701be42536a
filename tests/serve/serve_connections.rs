//! `cras serve` under connection pressure, on hyper's own limits (the connection cap is in
//! `serve_connection_cap.rs`, alone in its binary to count descriptors): idle and slow request heads are closed
//! after the header timeout, a stalled body gets 408, shutdown ends within its grace period
//! despite a half-sent request, and the token is checked before a body is buffered.

use crate::serve_support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use serve_support::{post, TestServer};

fn connect(server: &TestServer) -> TcpStream {
    let addr = server.base.trim_start_matches("http://");
    let s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    s
}

/// Reads until the server closes; returns what it sent and how long it took.
fn read_to_close(mut s: TcpStream) -> (String, Duration) {
    let started = Instant::now();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    (
        String::from_utf8_lossy(&out).into_owned(),
        started.elapsed(),
    )
}

#[test]
fn idle_and_slow_heads_are_closed_after_the_header_timeout() {
    let server = TestServer::start(|c| c.header_timeout_ms = 400);
    let idle = connect(&server);
    let mut slow = connect(&server);
    slow.write_all(b"GET /v1/health HTTP/1.1\r\nHost: x\r\n")
        .unwrap();
    for s in [idle, slow] {
        let (_, took) = read_to_close(s);
        assert!(took < Duration::from_secs(5), "closed after {took:?}");
    }
    // A real client is still served.
    let a = serve_support::get(&server.url("/v1/health"), None);
    assert_eq!(a.status, 200);
}

#[test]
fn a_stalled_body_gets_408() {
    let server = TestServer::start(|c| c.body_timeout_ms = 400);
    let mut s = connect(&server);
    s.write_all(
        b"POST /v1/predict HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\nContent-Length: 1000\r\n\r\n0123456789",
    )
    .unwrap();
    let (answer, took) = read_to_close(s);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("\"status\":408"), "{answer}");
    assert!(took < Duration::from_secs(5), "{took:?}");
}

#[test]
fn shutdown_ends_within_its_grace_despite_a_half_sent_request() {
    let mut server = TestServer::start(|c| c.shutdown_grace_ms = 300);
    let mut s = connect(&server);
    s.write_all(
        b"POST /v1/predict HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\nContent-Length: 1000\r\n\r\n0123",
    )
    .unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let started = Instant::now();
    server.stop().expect("clean stop");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "stopped after {:?}",
        started.elapsed()
    );
    drop(s);
}

/// A POST of `bytes` zero bytes by hand (tolerating the server closing early): the status line.
fn post_raw(server: &TestServer, bytes: usize, auth: &str) -> String {
    let mut s = connect(server);
    let head = format!(
        "POST /v1/predict HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\n{auth}Content-Length: {bytes}\r\nConnection: close\r\n\r\n"
    );
    s.write_all(head.as_bytes()).unwrap();
    let _ = s.write_all(&vec![0u8; bytes]);
    let (reply, _) = read_to_close(s);
    reply.lines().next().unwrap_or_default().to_string()
}

#[test]
fn the_token_is_checked_before_the_body_is_buffered() {
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, "s3cret\n").unwrap();
    let server = TestServer::start(|c| {
        c.token_file = Some(token_file.clone());
        c.max_body_mb = 1;
    });
    let bytes = (1 << 20) + 1000;
    // Unauthenticated: refused by the token check (401), not by buffering the body (413).
    let status = post_raw(&server, bytes, "");
    assert!(status.starts_with("HTTP/1.1 401"), "{status}");
    // Authenticated: the body limit applies.
    let status = post_raw(&server, bytes, "Authorization: Bearer s3cret\r\n");
    assert!(status.starts_with("HTTP/1.1 413"), "{status}");
    // A small unauthenticated body gets its 401 through the client library too.
    let a = post(&server.url("/v1/predict"), "image/png", &[0u8; 1000], None);
    assert_eq!(a.status, 401, "{}", a.body);
}
