//! The weight download logic against a local HTTP server on 127.0.0.1 (no outside network):
//! hash-prefix check, atomic storage in the cache folder, reuse of a cached copy, offline hint.

use cras::backbone::fetch::{self, expected_hash_prefix};
use cras::backbone::{weights, Arch};
use sha2::Digest;
use std::io::{Read, Write};
use std::net::TcpListener;

/// Serves `body` to every request, for `requests` connections; returns the base URL.
fn serve(body: Vec<u8>, requests: usize) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming().take(requests) {
            let mut s = stream.unwrap();
            let mut buf = [0u8; 4096];
            let mut req = Vec::new();
            while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                let n = s.read(&mut buf).unwrap();
                if n == 0 {
                    break;
                }
                req.extend_from_slice(&buf[..n]);
            }
            let head = format!(
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nContent-Type: application/octet-stream\r\nConnection: close\r\n\r\n",
                body.len()
            );
            s.write_all(head.as_bytes()).unwrap();
            s.write_all(&body).unwrap();
        }
    });
    format!("http://{addr}")
}

fn body() -> (Vec<u8>, String) {
    let body: Vec<u8> = (0..50_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let sha = weights::hex(&sha2::Sha256::digest(&body));
    (body, sha)
}

#[test]
fn hash_prefix_is_read_from_torchvision_names() {
    assert_eq!(
        expected_hash_prefix(fetch::known_file_name(Arch::WideResnet50_2)).as_deref(),
        Some("95faca4d")
    );
    assert_eq!(expected_hash_prefix("weights.pth"), None);
    assert_eq!(expected_hash_prefix("net-xyz12345.pth"), None);
    assert!(fetch::default_url(Arch::Resnet18).ends_with("/resnet18-f37072fd.pth"));
}

#[test]
fn good_download_is_stored_and_then_reused() {
    let (body, sha) = body();
    let base = serve(body.clone(), 1);
    let dir = tempfile::tempdir().unwrap();
    let url = format!("{base}/models/testnet-{}.pth", &sha[..8]);
    let path = fetch::fetch(&url, dir.path()).unwrap();
    assert_eq!(path, dir.path().join(format!("testnet-{}.pth", &sha[..8])));
    assert_eq!(std::fs::read(&path).unwrap(), body);
    // The server is gone (it served one request): a cached, verified copy needs no network.
    assert_eq!(fetch::fetch(&url, dir.path()).unwrap(), path);
    // Nothing but the file is left in the cache folder (no temporary files).
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
}

#[test]
fn hash_mismatch_is_refused_and_not_stored() {
    let (body, sha) = body();
    let wrong = if sha.starts_with('0') {
        "11111111"
    } else {
        "00000000"
    };
    let base = serve(body, 1);
    let dir = tempfile::tempdir().unwrap();
    let url = format!("{base}/testnet-{wrong}.pth");
    let msg = fetch::fetch(&url, dir.path()).unwrap_err().to_string();
    assert!(msg.contains(&sha) && msg.contains(wrong), "{msg}");
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        0,
        "nothing stored"
    );
}

#[test]
fn offline_error_says_where_to_put_the_file() {
    // A port nobody listens on: bind, note the port, close.
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dir = tempfile::tempdir().unwrap();
    let url = format!("http://127.0.0.1:{port}/wide_resnet50_2-95faca4d.pth");
    let msg = fetch::fetch(&url, dir.path()).unwrap_err().to_string();
    let dest = dir.path().join("wide_resnet50_2-95faca4d.pth");
    assert!(msg.contains(&dest.display().to_string()), "{msg}");
}
