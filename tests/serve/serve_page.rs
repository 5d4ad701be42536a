//! The inspection page of `cras serve` and the routes it uses.
//!
//! `page_routes_*`: the page and its assets are served (open even with a token, with a strict
//! Content-Security-Policy), `/v1/recent` lists predictions from any client, and saved threshold
//! sets (`PUT|GET|DELETE /v1/thresholds`) are checked, written beside the model, applied to
//! decisions, re-read on reload, and sit behind the token.
//!
//! `page_in_a_real_browser`: headless Chromium driven through chromedriver (WebDriver): sign in
//! with the token (stored nowhere), upload good and defective images, compare the shown scores
//! and decisions with the API's, change the map opacity, paste and drop an image, sort by score,
//! open one large, move the sliders and check the decisions flip without re-scoring, save a
//! threshold set and check the server then decides like the page, see a prediction made by
//! another client in the line view, read the model view; at 1280x800 and at a phone's 390x844,
//! with no horizontal overflow. Screenshots go to `$CRAS_SCREENSHOTS` when
//! set. Without chromedriver or Chromium it says so and passes, unless `CRAS_REQUIRE_BROWSER=1`.

use crate::serve_support;
use crate::webdriver;

use std::path::{Path, PathBuf};

use serde_json::{json, Value};
use serve_support::{get, post, tiny_model, TestServer};
use webdriver::Browser;

const TOKEN: &str = "page-test-token";

/// A server on its own hard link (or copy) of the tiny model, so that the threshold file it
/// writes beside the model is its own; with the token when `token`.
fn server(token: bool) -> (tempfile::TempDir, PathBuf, TestServer) {
    let dir = tempfile::tempdir().expect("temp dir");
    let model = dir.path().join("model.safetensors");
    if std::fs::hard_link(&tiny_model().model, &model).is_err() {
        std::fs::copy(&tiny_model().model, &model).expect("copy the model");
    }
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, format!("{TOKEN}\n")).expect("token file");
    let m = model.clone();
    let server = TestServer::start(move |c| {
        c.model = m;
        if token {
            c.token_file = Some(token_file);
        }
    });
    (dir, model, server)
}

fn multipart(parts: &[(String, Vec<u8>)]) -> (String, Vec<u8>) {
    let boundary = "cras-page-test-boundary";
    let mut body = Vec::new();
    for (name, bytes) in parts {
        body.extend_from_slice(format!("--{boundary}\r\nContent-Disposition: form-data; name=\"image\"; filename=\"{name}\"\r\nContent-Type: image/png\r\n\r\n").as_bytes());
        body.extend_from_slice(bytes);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}

fn predict(server: &TestServer, files: &[(String, PathBuf)], token: Option<&str>) -> Value {
    let parts: Vec<(String, Vec<u8>)> = files
        .iter()
        .map(|(n, p)| (n.clone(), std::fs::read(p).expect("image")))
        .collect();
    let (ct, body) = multipart(&parts);
    let a = post(&server.url("/v1/predict"), &ct, &body, token);
    assert_eq!(a.status, 200, "{}", a.body);
    a.json()
}

fn put_json(url: &str, body: &str, token: Option<&str>) -> (u16, Value) {
    let mut r = ureq::put(url).set("Content-Type", "application/json");
    if let Some(t) = token {
        r = r.set("Authorization", &format!("Bearer {t}"));
    }
    let response = match r.send_string(body) {
        Ok(r) => r,
        Err(ureq::Error::Status(_, r)) => r,
        Err(e) => panic!("transport error: {e}"),
    };
    let status = response.status();
    let text = response.into_string().expect("body");
    (status, serde_json::from_str(&text).expect("JSON answer"))
}

fn delete(url: &str, token: Option<&str>) -> u16 {
    let mut r = ureq::delete(url);
    if let Some(t) = token {
        r = r.set("Authorization", &format!("Bearer {t}"));
    }
    match r.call() {
        Ok(r) => r.status(),
        Err(ureq::Error::Status(s, _)) => s,
        Err(e) => panic!("transport error: {e}"),
    }
}

/// The test images as (unique display name, path): good and defective of every class.
fn images() -> Vec<(String, PathBuf)> {
    tiny_model()
        .images
        .iter()
        .map(|p| {
            let parts: Vec<String> = p
                .components()
                .rev()
                .take(4)
                .map(|c| c.as_os_str().to_string_lossy().to_string())
                .collect();
            // class/test/kind/file -> class-kind-file
            (format!("{}-{}-{}", parts[3], parts[1], parts[0]), p.clone())
        })
        .collect()
}

#[test]
fn page_routes_serve_the_page_and_keep_thresholds_apart() {
    let (_dir, model, server) = server(true);
    let auth = Some(TOKEN);

    // The page and its assets: open, embedded, locked to this origin.
    let page = get(&server.url("/"), None);
    assert_eq!(page.status, 200);
    assert!(page.content_type.starts_with("text/html"));
    assert!(page.body.contains("/assets/inspect.js"));
    let csp = ureq::get(&server.url("/assets/inspect.js"))
        .call()
        .expect("asset");
    assert!(csp
        .header("Content-Security-Policy")
        .unwrap()
        .contains("default-src 'self'"));
    assert_eq!(get(&server.url("/assets/nope.js"), None).status, 404);
    // The data is not open.
    assert_eq!(get(&server.url("/v1/recent"), None).status, 401);
    assert_eq!(get(&server.url("/v1/thresholds"), None).status, 401);
    let (s, _) = put_json(&server.url("/v1/thresholds"), r#"{"global": 0.5}"#, None);
    assert_eq!(s, 401);
    assert_eq!(delete(&server.url("/v1/thresholds"), None), 401);

    // The model's thresholds with the held-out scores behind them.
    let t = get(&server.url("/v1/thresholds"), auth).json();
    assert_eq!(t["active"], "model");
    assert!(t["saved"].is_null());
    let classes = &tiny_model().classes;
    assert_eq!(t["classes"].as_array().unwrap().len(), classes.len());
    assert!(!t["classes"][0]["holdout_scores"]
        .as_array()
        .unwrap()
        .is_empty());
    assert_eq!(t["classes"][0]["effective"], t["classes"][0]["model"]);

    // Bad sets are refused with a reason, and nothing is written.
    for (body, needle) in [
        ("{}", "no threshold"),
        (r#"{"per_class": {"no-such-class": 0.5}}"#, "unknown class"),
        (r#"{"global": "high"}"#, "not valid JSON"),
        (r#"{"global": 0.5, "extra": 1}"#, "not valid JSON"),
        ("not json", "not valid JSON"),
        (r#"{"global": 1e39}"#, ""),
    ] {
        let (s, v) = put_json(&server.url("/v1/thresholds"), body, auth);
        assert_eq!(s, 400, "{body}: {v}");
        assert!(v["error"].as_str().unwrap().contains(needle), "{body}: {v}");
    }
    let file = model.with_extension("thresholds.json");
    assert!(!file.exists());

    // Scores with the model's thresholds.
    let files = images();
    let before = predict(&server, &files, auth);
    let n = files.len();
    // A saved set: every image of the first class becomes a defect, the rest OK.
    let body = json!({"per_class": {classes[0].clone(): -1.0e6}, "global": 1.0e6}).to_string();
    let (s, v) = put_json(&server.url("/v1/thresholds"), &body, auth);
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["active"], "saved");
    assert!(file.exists(), "the set is written beside the model");
    let saved: Value = serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    assert_eq!(saved["global"], 1.0e6);
    let after = predict(&server, &files, auth);
    for i in 0..n {
        let p = &after["predictions"][i];
        assert_eq!(
            p["score"], before["predictions"][i]["score"],
            "scores do not move"
        );
        let first = p["class"] == classes[0].as_str();
        assert_eq!(p["decision"], if first { "defect" } else { "ok" }, "{p}");
        assert_eq!(p["threshold"], if first { -1.0e6 } else { 1.0e6 });
    }
    // ?threshold still overrides the saved set.
    let over = post(
        &server.url("/v1/predict?threshold=-1e6"),
        "image/png",
        &std::fs::read(&files[n - 1].1).unwrap(),
        auth,
    )
    .json();
    assert_eq!(over["predictions"][0]["decision"], "defect");

    // Edited on disk, re-read on reload (SIGHUP) with the model.
    std::fs::write(&file, r#"{"global": -1000000.0}"#).unwrap();
    server.handle.reload().expect("reload");
    let t = get(&server.url("/v1/thresholds"), auth).json();
    assert_eq!(t["saved"]["global"], -1.0e6);
    // A damaged file keeps the set in force.
    std::fs::write(&file, "{damaged").unwrap();
    server.handle.reload().expect("reload");
    assert_eq!(
        get(&server.url("/v1/thresholds"), auth).json()["saved"]["global"],
        -1.0e6
    );

    // Removed: back to the model's thresholds.
    assert_eq!(delete(&server.url("/v1/thresholds"), auth), 200);
    assert!(!file.exists());
    let again = predict(&server, &files, auth);
    for i in 0..n {
        for k in ["score", "class", "threshold", "decision"] {
            assert_eq!(
                again["predictions"][i][k], before["predictions"][i][k],
                "{k}"
            );
        }
    }

    // The recent ring saw every image, with their decisions.
    let recent = get(&server.url("/v1/recent?since=0"), auth).json();
    assert_eq!(recent["total"].as_u64().unwrap(), (3 * n + 1) as u64);
    let items = recent["items"].as_array().unwrap();
    assert_eq!(items.last().unwrap()["name"], files[n - 1].0.as_str());
    let since = items[items.len() - 2]["id"].as_u64().unwrap();
    let newer = get(&server.url(&format!("/v1/recent?since={since}")), auth).json();
    assert_eq!(newer["items"].as_array().unwrap().len(), 1);
    assert!(newer["throughput"]["images"].as_u64().unwrap() >= n as u64);
    let counted: u64 = recent["per_class"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["count"].as_u64().unwrap())
        .sum();
    assert_eq!(counted, (3 * n + 1) as u64);
    assert_eq!(get(&server.url("/v1/recent?since=x"), auth).status, 400);

    // A damaged set stops a start with a message naming the file.
    std::fs::write(&file, "{damaged").unwrap();
    let mut config = cras::serve::ServeConfig::new(&model);
    config.addr = "127.0.0.1:0".into();
    config.device = "cpu".into();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let err = rt
        .block_on(cras::serve::Server::bind(&config))
        .err()
        .expect("refused")
        .to_string();
    assert!(err.contains("thresholds.json"), "{err}");
}

fn screenshot(browser: &Browser, name: &str) {
    let Some(dir) = std::env::var_os("CRAS_SCREENSHOTS") else {
        return;
    };
    let dir = Path::new(&dir);
    std::fs::create_dir_all(dir).expect("screenshot folder");
    let png = browser.screenshot().expect("screenshot");
    std::fs::write(dir.join(format!("{name}.png")), png).expect("write screenshot");
}

/// Fails the test with the browser's message.
fn ok<T>(r: Result<T, String>) -> T {
    r.unwrap_or_else(|e| panic!("browser: {e}"))
}

/// The shown cards as (name, data-score, class, decision).
fn cards(b: &Browser) -> Vec<(String, String, String, String)> {
    let v = ok(b.eval(
        "return Array.from(document.querySelectorAll('#results .card[data-score]')).map(c => \
         [c.dataset.name, c.dataset.score, c.dataset.class, c.dataset.decision]);",
        vec![],
    ));
    v.as_array()
        .unwrap()
        .iter()
        .map(|c| {
            let s = |i: usize| c[i].as_str().unwrap_or_default().to_string();
            (s(0), s(1), s(2), s(3))
        })
        .collect()
}

/// Sets the slider of `class` ("*": all classes) to its minimum or maximum, as a user would.
fn slide(b: &Browser, class: &str, to_max: bool) {
    ok(b.eval(
        "const s = document.querySelector(`.slider[data-class=\"${arguments[0]}\"]`); \
         s.value = arguments[1] ? s.max : s.min; \
         s.dispatchEvent(new Event('input', {bubbles: true})); return s.value;",
        vec![json!(class), json!(to_max)],
    ));
}

fn predict_requests(server: &TestServer) -> u64 {
    let text = get(&server.url("/metrics"), Some(TOKEN)).body;
    text.lines()
        .filter(|l| l.starts_with("cras_requests_total") && l.contains("/v1/predict"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

fn show(b: &Browser, view: &str) {
    ok(b.click(&format!("#tabs button[data-view=\"{view}\"]")));
    ok(b.wait_for(
        view,
        &format!("return !document.querySelector('#view-{view}').hidden;"),
        10,
    ));
}

fn no_horizontal_overflow(b: &Browser, what: &str) {
    let v = ok(b.eval(
        "return [document.documentElement.scrollWidth, window.innerWidth];",
        vec![],
    ));
    let (scroll, width) = (v[0].as_u64().unwrap(), v[1].as_u64().unwrap());
    assert!(
        scroll <= width,
        "{what}: the page is {scroll} px wide in a {width} px window"
    );
}

#[test]
fn page_in_a_real_browser() {
    let browser = match Browser::launch() {
        Ok(Some(b)) => b,
        Ok(None) => {
            let why =
                "chromedriver or chromium not found (apt-get install chromium chromium-driver)";
            assert!(
                std::env::var("CRAS_REQUIRE_BROWSER").ok().as_deref() != Some("1"),
                "CRAS_REQUIRE_BROWSER=1 but {why}"
            );
            eprintln!("page_in_a_real_browser skipped: {why}");
            return;
        }
        Err(e) => panic!("cannot start the browser: {e}"),
    };
    let b = &browser;
    let (_dir, _model, server) = server(true);
    let classes = &tiny_model().classes;
    ok(b.viewport(1280, 800, false));
    ok(b.goto(&server.url("/")));

    // Sign in: the token is asked for, then kept in memory only.
    ok(b.wait_for(
        "the login field",
        "return !document.querySelector('#login').hidden;",
        20,
    ));
    ok(b.type_into("#token", TOKEN));
    ok(b.click("#login button"));
    ok(b.wait_for(
        "the model",
        "return document.querySelector('#status').textContent.includes('classes');",
        20,
    ));
    let stored = ok(b.eval(
        "return [localStorage.length, sessionStorage.length, document.cookie];",
        vec![],
    ));
    assert_eq!(stored, json!([0, 0, ""]), "the token is stored nowhere");

    // Inspect: upload good and defective images; the page shows the API's numbers.
    let files = images();
    assert!(
        files.iter().any(|(n, _)| n.contains("-good-"))
            && files.iter().any(|(n, _)| !n.contains("-good-"))
    );
    let paths: Vec<String> = files
        .iter()
        .map(|(_, p)| p.to_string_lossy().to_string())
        .collect();
    // The page sends the files' own names; the API call below uses the same ones.
    let api_files: Vec<(String, PathBuf)> = files
        .iter()
        .map(|(_, p)| {
            (
                p.file_name().unwrap().to_string_lossy().to_string(),
                p.clone(),
            )
        })
        .collect();
    ok(b.type_into("#files", &paths.join("\n")));
    ok(b.wait_for(
        "the scored cards",
        &format!("return document.querySelectorAll('#results .card[data-score]').length === {} && document.querySelectorAll('#results .overlay').length === {0};", files.len()),
        60,
    ));
    let api = predict(&server, &api_files, Some(TOKEN));
    let shown = cards(b);
    assert_eq!(shown.len(), files.len());
    for (i, (name, score, class, decision)) in shown.iter().enumerate() {
        let p = &api["predictions"][i];
        assert_eq!(name, p["name"].as_str().unwrap());
        let page_score: f32 = score.parse().unwrap_or_else(|_| panic!("score '{score}'"));
        let api_score = p["score"].as_f64().unwrap() as f32;
        assert_eq!(
            page_score.to_bits(),
            api_score.to_bits(),
            "{name}: page {score}, API {api_score}"
        );
        assert_eq!(class, p["class"].as_str().unwrap());
        assert_eq!(decision, p["decision"].as_str().unwrap(), "{name}");
    }
    screenshot(b, "inspect-desktop");

    // The opacity control reaches the overlays.
    let opacity = ok(b.eval(
        "const o = document.querySelector('#opacity'); o.value = 80; \
         o.dispatchEvent(new Event('input')); \
         return getComputedStyle(document.querySelector('#results .overlay')).opacity;",
        vec![],
    ));
    assert_eq!(opacity, json!("0.8"));
    // Pasting and dropping an image (here the first upload again) score it like the upload.
    for event in ["paste", "drop"] {
        let count = cards(b).len();
        ok(b.eval(
            "const blob = App.items[0].file; \
             { \
               const dt = new DataTransfer(); \
               dt.items.add(new File([blob], arguments[0] + '.png', {type: 'image/png'})); \
               if (arguments[0] === 'paste') { \
                 document.dispatchEvent(new ClipboardEvent('paste', {clipboardData: dt, bubbles: true})); \
               } else { \
                 document.querySelector('#drop').dispatchEvent(new DragEvent('drop', {dataTransfer: dt, bubbles: true, cancelable: true})); \
               } return 1; }",
            vec![json!(event)],
        ));
        ok(b.wait_for(
            event,
            &format!(
                "return document.querySelectorAll('#results .card[data-score]').length === {};",
                count + 1
            ),
            30,
        ));
        let added = cards(b);
        let new = added
            .iter()
            .find(|c| c.0 == format!("{event}.png"))
            .expect("the new card");
        assert_eq!(new.1, added[0].1, "{event}: same image, same score");
    }
    no_horizontal_overflow(b, "inspect at 1280");

    // Sorting by score.
    ok(b.eval("const s = document.querySelector('#sort'); s.value = 'desc'; s.dispatchEvent(new Event('change')); return 1;", vec![]));
    let sorted: Vec<f32> = cards(b).iter().map(|c| c.1.parse().unwrap()).collect();
    assert!(sorted.windows(2).all(|w| w[0] >= w[1]), "{sorted:?}");
    // One large.
    ok(b.click("#results .card"));
    ok(b.wait_for("the large view", "return !document.querySelector('#modal').hidden && !!document.querySelector('#modal .frame.big .overlay');", 10));
    screenshot(b, "large-desktop");
    ok(b.click("#modal-close"));

    // Thresholds: the sliders re-decide every image without re-scoring.
    let requests = predict_requests(&server);
    show(b, "thresholds");
    ok(b.wait_for(
        "the slider rows",
        &format!(
            "return document.querySelectorAll('.threshold-row').length === {};",
            classes.len() + 1
        ),
        10,
    ));
    let alarms = ok(b.eval(
        "return document.querySelector('.threshold-row[data-class=\"*\"] .alarms').textContent;",
        vec![],
    ));
    assert!(
        alarms
            .as_str()
            .unwrap()
            .contains("false alarms on held-out normals"),
        "{alarms}"
    );
    slide(b, "*", false);
    assert!(
        cards(b).iter().all(|c| c.3 == "defect"),
        "global slider at its minimum: {:?}",
        cards(b)
    );
    slide(b, "*", true);
    assert!(
        cards(b).iter().all(|c| c.3 == "ok"),
        "global slider at its maximum: {:?}",
        cards(b)
    );
    slide(b, &classes[0], false);
    for c in cards(b) {
        assert_eq!(
            c.3,
            if c.2 == classes[0] { "defect" } else { "ok" },
            "{c:?}"
        );
    }
    let flips = ok(b.eval("return document.querySelector(`.threshold-row[data-class=\"${arguments[0]}\"] .flips`).textContent;", vec![json!(classes[0])]));
    assert!(flips.as_str().unwrap().contains("would flip"), "{flips}");
    screenshot(b, "thresholds-desktop");
    assert_eq!(
        predict_requests(&server),
        requests,
        "moving sliders re-scores nothing"
    );
    let t = get(&server.url("/v1/thresholds"), Some(TOKEN)).json();
    assert_eq!(
        t["active"], "model",
        "nothing is saved before the operator saves"
    );

    // Saving makes the server decide like the page.
    ok(b.click("#save-thresholds"));
    ok(b.wait_for("the saved set", "return document.querySelector('#threshold-status').textContent.includes('saved set in force');", 10));
    let after = predict(&server, &api_files, Some(TOKEN));
    let page = cards(b);
    for p in after["predictions"].as_array().unwrap() {
        let bits = (p["score"].as_f64().unwrap() as f32).to_bits();
        let shown = page
            .iter()
            .find(|c| {
                c.0 == p["name"].as_str().unwrap() && c.1.parse::<f32>().unwrap().to_bits() == bits
            })
            .expect("the card of the prediction");
        assert_eq!(shown.3, p["decision"].as_str().unwrap(), "{p}");
    }

    // Line view: a prediction made by another client shows up.
    show(b, "line");
    let image = std::fs::read(&files[0].1).unwrap();
    let (ct, body) = multipart(&[("from-another-client.png".into(), image)]);
    assert_eq!(
        post(&server.url("/v1/predict"), &ct, &body, Some(TOKEN)).status,
        200
    );
    ok(b.wait_for(
        "the other client's prediction",
        "return !!document.querySelector('#line-table tr[data-name=\"from-another-client.png\"]');",
        10,
    ));
    let tiles = ok(b.eval(
        "return document.querySelector('#line-stats').textContent;",
        vec![],
    ));
    assert!(tiles.as_str().unwrap().contains("images/s"), "{tiles}");
    screenshot(b, "line-desktop");

    // Model view.
    show(b, "model");
    ok(b.wait_for(
        "the model facts",
        "return document.querySelectorAll('#model-facts .card-box').length >= 5;",
        10,
    ));
    let random =
        get(&server.url("/v1/model"), Some(TOKEN)).json()["backbone"]["weights_file"].is_null();
    let warned = ok(b.eval(
        "return !!document.querySelector('#random-warning');",
        vec![],
    ));
    assert_eq!(
        warned,
        json!(random),
        "the random-backbone warning follows the model"
    );
    let text = ok(b.eval(
        "return document.querySelector('#model-facts').textContent;",
        vec![],
    ));
    for c in classes {
        assert!(text.as_str().unwrap().contains(c.as_str()));
    }
    screenshot(b, "model-desktop");

    // A phone: every view fits its width.
    ok(b.viewport(390, 844, true));
    for view in ["inspect", "thresholds", "line", "model"] {
        show(b, view);
        std::thread::sleep(std::time::Duration::from_millis(300));
        no_horizontal_overflow(b, &format!("{view} at 390"));
        screenshot(b, &format!("{view}-phone"));
    }
    ok(b.viewport(1280, 800, false));
    show(b, "inspect");
    no_horizontal_overflow(b, "inspect at 1280 again");
}
