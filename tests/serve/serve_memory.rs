//! A 1 MB PNG whose ICC profile (iCCP chunk) inflates to 1 GiB, posted to a `cras serve`
//! process once and then four times at once: each answer is a 400 naming the part and the
//! profile, and the server's peak RSS (VmHWM, read from /proc) grows by a bounded amount.
//! Before: the header read inflated the profile up to the image crate's 512 MiB default
//! allocation limit, about +550 MiB for one request and +2 GiB for four at once, and the image
//! was then scored as if nothing were wrong. The server is a process of its own so that no
//! other test shares its memory figure.

use crate::common::hostile;
use crate::serve_support::{post_multipart, tiny_model};
use crate::soak::{proc_kib, ServerProcess};

/// The bound on the server's peak RSS growth over a warm baseline, in MiB: well above what
/// decoding an 8x8 image costs even four at once, a fraction of one inflated profile.
const MAX_GROWTH_MIB: u64 = 150;

#[test]
fn an_iccp_bomb_is_answered_in_bounded_memory_alone_and_four_at_once() {
    let m = tiny_model();
    let args: Vec<String> = ["--model", &m.model.to_string_lossy(), "--device", "cpu"]
        .map(String::from)
        .to_vec();
    let server = ServerProcess::start(std::path::Path::new(env!("CARGO_BIN_EXE_cras")), &args);
    let url = format!("http://{}/v1/predict", server.addr);
    let pid = server.child.id();
    let peak = || proc_kib(pid, "VmHWM:").expect("the server's VmHWM") / 1024;

    // Warm: the model loaded and one real image scored, so the baseline holds the buffers
    // every request needs.
    let good = std::fs::read(&m.images[0]).unwrap();
    let warm = post_multipart(&url, &[("good.png".into(), good)]);
    assert_eq!(warm.status, 200, "{}", warm.body);
    let bomb = hostile::iccp_bomb_1gib().to_vec();
    let refused = |answer: &crate::serve_support::Answer| {
        assert_eq!(answer.status, 400, "{}", answer.body);
        let e = answer.error();
        assert!(e.contains("bomb.png") && e.contains("ICC profile"), "{e}");
    };

    let base = peak();
    let alone = post_multipart(&url, &[("bomb.png".into(), bomb.clone())]);
    let one = peak() - base;
    let at_once: Vec<_> = std::thread::scope(|s| {
        let posts: Vec<_> = (0..4)
            .map(|_| s.spawn(|| post_multipart(&url, &[("bomb.png".into(), bomb.clone())])))
            .collect();
        posts.into_iter().map(|p| p.join().unwrap()).collect()
    });
    let four = peak() - base;
    eprintln!(
        "serve: peak RSS {base} MiB warm, +{one} MiB after one bomb, +{four} MiB after four at once"
    );
    assert!(one < MAX_GROWTH_MIB, "one bomb: +{one} MiB");
    assert!(four < MAX_GROWTH_MIB, "four bombs at once: +{four} MiB");
    for answer in std::iter::once(&alone).chain(&at_once) {
        refused(answer);
    }
}
