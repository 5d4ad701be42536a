//! `cras serve` keeps its documented contract at the edges: a truncated JPEG is a 400 (not a
//! "defect"), every error including 405 is JSON, the bearer scheme is case-insensitive, and the
//! OpenAPI document declares bearer auth only when the server runs with a token.

use crate::serve_support;

use serve_support::{post, TestServer};

fn call(method: &str, url: &str, auth: Option<&str>) -> (u16, String) {
    let mut req = ureq::request(method, url);
    if let Some(a) = auth {
        req = req.set("Authorization", a);
    }
    match req.call() {
        Ok(r) => (r.status(), r.into_string().unwrap()),
        Err(ureq::Error::Status(s, r)) => (s, r.into_string().unwrap()),
        Err(e) => panic!("transport error: {e}"),
    }
}

#[test]
fn a_truncated_jpeg_is_a_400_naming_the_problem() {
    let server = TestServer::start(|_| {});
    let img = image::RgbImage::from_fn(64, 64, |x, y| image::Rgb([x as u8 * 4, y as u8 * 4, 9]));
    let mut jpeg = std::io::Cursor::new(Vec::new());
    img.write_to(&mut jpeg, image::ImageFormat::Jpeg).unwrap();
    let jpeg = jpeg.into_inner();
    let predict = server.url("/v1/predict");
    assert_eq!(post(&predict, "image/jpeg", &jpeg, None).status, 200);
    let a = post(&predict, "image/jpeg", &jpeg[..jpeg.len() / 2], None);
    assert_eq!(a.status, 400, "{}", a.body);
    assert!(a.error().contains("truncated JPEG"), "{}", a.body);
}

#[test]
fn method_not_allowed_is_a_json_error() {
    let server = TestServer::start(|_| {});
    for (method, path) in [
        ("GET", "/v1/predict"),
        ("DELETE", "/v1/model"),
        ("PUT", "/v1/health"),
    ] {
        let (status, body) = call(method, &server.url(path), None);
        assert_eq!(status, 405, "{method} {path}: {body}");
        let v: serde_json::Value = serde_json::from_str(&body)
            .unwrap_or_else(|e| panic!("{method} {path}: not JSON ({e}): '{body}'"));
        assert_eq!(v["status"], 405);
        assert!(
            v["error"].as_str().unwrap().contains("not allowed"),
            "{body}"
        );
    }
}

#[test]
fn the_bearer_scheme_is_case_insensitive_and_openapi_follows_the_token() {
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, "s3cret\n").unwrap();
    let guarded = TestServer::start(|c| c.token_file = Some(token_file.clone()));
    let model = guarded.url("/v1/model");
    for auth in ["Bearer s3cret", "bearer s3cret", "BEARER s3cret"] {
        assert_eq!(call("GET", &model, Some(auth)).0, 200, "{auth}");
    }
    for auth in ["bearer wrong", "Basic s3cret", "s3cret"] {
        assert_eq!(call("GET", &model, Some(auth)).0, 401, "{auth}");
    }
    let (_, doc) = call(
        "GET",
        &guarded.url("/v1/openapi.json"),
        Some("Bearer s3cret"),
    );
    let doc: serde_json::Value = serde_json::from_str(&doc).unwrap();
    assert!(doc["components"]["securitySchemes"]["bearer"].is_object());
    assert!(doc["security"].is_array());

    let open = TestServer::start(|_| {});
    let (status, doc) = call("GET", &open.url("/v1/openapi.json"), None);
    assert_eq!(status, 200);
    let doc: serde_json::Value = serde_json::from_str(&doc).unwrap();
    assert!(doc.get("security").is_none(), "{doc}");
    assert!(doc["components"].get("securitySchemes").is_none(), "{doc}");
    let text = doc.to_string();
    assert!(
        !text.contains("\"401\"") && !text.contains("bearer"),
        "{text}"
    );
}
