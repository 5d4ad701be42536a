//! `cras serve` under bad input and pressure: every malformed request gets a 4xx with a message
//! saying what is wrong and the server keeps serving; body and pixel limits answer 413, a full
//! queue 503 with Retry-After, a slow answer 504; the bearer token guards every route but health.

use crate::serve_support;

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use serve_support::{get, post, post_multipart, tiny_model, Answer, TestServer};

fn png_of(w: u32, h: u32) -> Vec<u8> {
    let img = image::RgbImage::from_fn(w, h, |x, y| {
        image::Rgb([(x % 256) as u8, (y % 256) as u8, 7])
    });
    let mut out = Vec::new();
    img.write_to(&mut std::io::Cursor::new(&mut out), image::ImageFormat::Png)
        .unwrap();
    out
}

fn assert_error(a: &Answer, status: u16, needle: &str, what: &str) {
    assert_eq!(a.status, status, "{what}: {}", a.body);
    let msg = a.error();
    assert!(
        msg.to_lowercase().contains(&needle.to_lowercase()),
        "{what}: message '{msg}' lacks '{needle}'"
    );
}

#[test]
fn bad_requests_get_clear_errors_and_the_server_keeps_serving() {
    let m = tiny_model();
    let server = TestServer::start(|c| c.max_pixels = 100 * 100);
    let predict = server.url("/v1/predict");
    let good = std::fs::read(&m.images[0]).unwrap();
    let truncated = &good[..good.len() / 2];
    let cases: Vec<(String, &str, Vec<u8>, u16, &str)> = vec![
        (
            predict.clone(),
            "image/png",
            truncated.to_vec(),
            400,
            "cannot decode",
        ),
        (
            predict.clone(),
            "image/png",
            b"\x89PNG\r\n\x1a\n garbage".to_vec(),
            400,
            "cannot decode",
        ),
        (
            predict.clone(),
            "image/jpeg",
            b"hello, not an image".to_vec(),
            400,
            "cannot decode",
        ),
        (predict.clone(), "image/png", Vec::new(), 400, "empty"),
        (
            predict.clone(),
            "text/plain",
            good.clone(),
            415,
            "content type",
        ),
        (
            predict.clone(),
            "image/png",
            png_of(200, 100),
            413,
            "above the server's limit of 10000 pixels",
        ),
        (
            format!("{predict}?class=no_such_class"),
            "image/png",
            good.clone(),
            400,
            "unknown class 'no_such_class'",
        ),
        (
            format!("{predict}?threshold=abc"),
            "image/png",
            good.clone(),
            400,
            "threshold 'abc'",
        ),
        (
            format!("{predict}?threshold=NaN"),
            "image/png",
            good.clone(),
            400,
            "not a finite number",
        ),
        (
            format!("{predict}?threshold=inf"),
            "image/png",
            good.clone(),
            400,
            "not a finite number",
        ),
        (
            format!("{predict}?map=jpeg"),
            "image/png",
            good.clone(),
            400,
            "map=png",
        ),
        (
            format!("{predict}?path=/etc/passwd"),
            "image/png",
            good.clone(),
            400,
            "unknown field",
        ),
        (
            predict.clone(),
            "multipart/form-data; boundary=zz",
            b"--zz--\r\n".to_vec(),
            400,
            "no image part",
        ),
        (
            predict.clone(),
            "multipart/form-data",
            b"whatever".to_vec(),
            400,
            "boundary",
        ),
        (
            server.url("/v1/nothing"),
            "image/png",
            good.clone(),
            404,
            "no such route",
        ),
    ];
    for (url, content_type, body, status, needle) in &cases {
        let a = post(url, content_type, body, None);
        assert_error(&a, *status, needle, &format!("POST {url} ({content_type})"));
    }
    // A multipart body whose second part is broken names that part.
    let parts = vec![
        ("ok.png".to_string(), good.clone()),
        ("bad.png".to_string(), truncated.to_vec()),
    ];
    assert_error(
        &post_multipart(&predict, &parts),
        400,
        "bad.png",
        "multipart with a broken part",
    );
    // Wrong method.
    assert_eq!(get(&predict, None).status, 405);
    // Still serving.
    let a = post(&predict, "image/png", &good, None);
    assert_eq!(a.status, 200, "{}", a.body);
    assert!(a.json()["predictions"][0]["score"].is_number());
}

/// Sends a request with a body above the limit by hand, tolerating the server closing early.
fn oversized_status(addr: &str, bytes: usize) -> String {
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let head = format!(
        "POST /v1/predict HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\nContent-Length: {bytes}\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).unwrap();
    let _ = stream.write_all(&vec![0u8; bytes]);
    let mut reply = String::new();
    let _ = stream.read_to_string(&mut reply);
    reply
}

#[test]
fn body_limit_answers_413() {
    let server = TestServer::start(|c| c.max_body_mb = 1);
    let addr = server.base.trim_start_matches("http://").to_string();
    let reply = oversized_status(&addr, (1 << 20) + 1);
    assert!(reply.starts_with("HTTP/1.1 413"), "{reply}");
    // The same size as multipart is refused too.
    let big = vec![("big.png".to_string(), vec![0u8; 1 << 20])];
    let a = post_multipart(&server.url("/v1/predict"), &big);
    assert_eq!(a.status, 413, "{}", a.body);
    assert!(
        a.error()
            .contains("above the server's limit of 1048576 bytes"),
        "{}",
        a.error()
    );
}

#[test]
fn a_full_queue_answers_503_with_retry_after() {
    let m = tiny_model();
    let server = TestServer::start(|c| {
        c.queue = 1;
        c.max_batch = 1;
    });
    let good = std::fs::read(&m.images[0]).unwrap();
    let handle = server.handle.clone();
    let guard = handle.pause();
    // With the worker paused, the queue holds one request and the worker at most one more: of
    // three, one is refused, or two when both others arrive before the worker takes the first.
    let clients: Vec<_> = (0..3)
        .map(|_| {
            let url = server.url("/v1/predict");
            let body = good.clone();
            std::thread::spawn(move || post(&url, "image/png", &body, None))
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !get(&server.url("/metrics"), None)
        .body
        .contains("/v1/predict\",status=\"503\"}")
    {
        assert!(
            Instant::now() < deadline,
            "no request was refused while the worker was paused"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    drop(guard);
    let answers: Vec<Answer> = clients.into_iter().map(|c| c.join().unwrap()).collect();
    let refused: Vec<&Answer> = answers.iter().filter(|a| a.status == 503).collect();
    assert!(
        (1..=2).contains(&refused.len()),
        "{} refused",
        refused.len()
    );
    for r in &refused {
        assert_eq!(r.retry_after.as_deref(), Some("1"));
        assert!(r.error().contains("queue is full"), "{}", r.error());
    }
    // Everything not refused was answered once the worker resumed.
    assert_eq!(
        answers.iter().filter(|a| a.status == 200).count(),
        3 - refused.len()
    );
}

#[test]
fn a_slow_answer_times_out_with_504_and_the_next_request_succeeds() {
    let m = tiny_model();
    let server = TestServer::start(|c| c.timeout_ms = 100);
    let good = std::fs::read(&m.images[0]).unwrap();
    let guard = server.handle.pause();
    let a = post(&server.url("/v1/predict"), "image/png", &good, None);
    assert_error(&a, 504, "timeout of 100 ms", "paused worker");
    drop(guard);
    let a = post(&server.url("/v1/predict"), "image/png", &good, None);
    assert_eq!(a.status, 200, "{}", a.body);
}

#[test]
fn the_bearer_token_guards_every_route_but_health() {
    let m = tiny_model();
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, "s3cret-token\n").unwrap();
    let server = TestServer::start(|c| c.token_file = Some(token_file.clone()));
    let good = std::fs::read(&m.images[0]).unwrap();
    let predict = server.url("/v1/predict");
    assert_error(
        &post(&predict, "image/png", &good, None),
        401,
        "Bearer",
        "no token",
    );
    assert_eq!(
        post(&predict, "image/png", &good, Some("wrong")).status,
        401
    );
    assert_eq!(get(&server.url("/v1/model"), None).status, 401);
    assert_eq!(get(&server.url("/metrics"), None).status, 401);
    assert_eq!(get(&server.url("/v1/health"), None).status, 200);
    assert_eq!(
        get(&server.url("/v1/model"), Some("s3cret-token")).status,
        200
    );
    let a = post(&predict, "image/png", &good, Some("s3cret-token"));
    assert_eq!(a.status, 200, "{}", a.body);
}

#[test]
fn a_remote_address_is_refused_without_allow_remote() {
    let mut config = cras::serve::ServeConfig::new(&tiny_model().model);
    config.addr = "0.0.0.0:0".into();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let err = rt
        .block_on(cras::serve::Server::bind(&config))
        .err()
        .expect("refused");
    assert!(err.to_string().contains("--allow-remote"), "{err}");
}
