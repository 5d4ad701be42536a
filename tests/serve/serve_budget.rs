//! `cras serve` holds at most its budget of decoded pixels across concurrent requests: a
//! request above the whole budget gets 413, one that does not fit beside the requests in flight
//! 503 with Retry-After, and it succeeds once they are answered.

use crate::serve_support;

use serve_support::{post_multipart, TestServer};

fn parts(n: usize, side: u32) -> Vec<(String, Vec<u8>)> {
    let img = image::RgbImage::from_fn(side, side, |x, y| image::Rgb([x as u8, y as u8, 3]));
    let mut png = Vec::new();
    img.write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
        .unwrap();
    (0..n).map(|i| (format!("p{i}.png"), png.clone())).collect()
}

#[test]
fn decoded_pixels_in_flight_stay_within_the_budget() {
    let server = TestServer::start(|c| c.max_inflight_pixels = 1_000_000);
    let predict = server.url("/v1/predict");
    // 8 x 400 x 400 = 1.28 M pixels: above the whole budget.
    let a = post_multipart(&predict, &parts(8, 400));
    assert_eq!(a.status, 413, "{}", a.body);
    assert!(a.error().contains("budget"), "{}", a.error());

    // 3 x 400 x 400 = 480 k pixels held while the worker is paused; 4 more do not fit.
    let pause = server.handle.pause();
    let first = {
        let predict = predict.clone();
        std::thread::spawn(move || post_multipart(&predict, &parts(3, 400)))
    };
    std::thread::sleep(std::time::Duration::from_millis(500));
    let busy = post_multipart(&predict, &parts(4, 400));
    assert_eq!(busy.status, 503, "{}", busy.body);
    assert_eq!(busy.retry_after.as_deref(), Some("1"));
    drop(pause);
    assert_eq!(first.join().unwrap().status, 200);
    // Released: the same request now fits.
    let a = post_multipart(&predict, &parts(4, 400));
    assert_eq!(a.status, 200, "{}", a.body);
}
