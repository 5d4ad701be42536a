//! Synthetic benchmark: determinism (same seed -> byte-identical files, whatever the thread
//! count; another seed -> different files), layout validity (discover() accepts it, masks
//! non-empty exactly for defects with a sensible area), and the loader on its output (order,
//! batch shapes, values matching single-image preprocessing), and sets of up to 16 classes (the
//! eight drawings again in a second colourway) for MVTec-size runs.

use std::collections::BTreeMap;
use std::path::Path;

use cras::data::decode::{decode_mask, decode_rgb};
use cras::data::loader::batches;
use cras::data::synth::{class_name, generate, SynthConfig, CLASS_NAMES, MAX_CLASSES};
use cras::data::{discover, Preprocess, ResizeMode};
use sha2::{Digest, Sha256};

fn small(seed: u64) -> SynthConfig {
    SynthConfig {
        classes: CLASS_NAMES.len(),
        train_per_class: 2,
        test_good_per_class: 1,
        test_defect_per_class: 5,
        size: 64,
        defect_px: None,
        seed,
    }
}

/// Relative path -> SHA-256 of every file under `root`.
fn hashes(root: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                let digest = Sha256::digest(std::fs::read(&p).unwrap());
                let rel = p.strip_prefix(root).unwrap().to_string_lossy().into_owned();
                out.insert(rel, format!("{digest:x}"));
            }
        }
    }
    out
}

#[test]
fn same_seed_gives_identical_files_whatever_the_thread_count() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b, c) = (
        tmp.path().join("a"),
        tmp.path().join("b"),
        tmp.path().join("c"),
    );
    let summary = generate(&small(3), &a).unwrap();
    assert_eq!(summary.images, CLASS_NAMES.len() * 8);
    let one_thread = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .unwrap();
    one_thread.install(|| generate(&small(3), &b).unwrap());
    generate(&small(4), &c).unwrap();
    let (ha, hb, hc) = (hashes(&a), hashes(&b), hashes(&c));
    assert_eq!(ha.len(), CLASS_NAMES.len() * (8 + 5));
    assert_eq!(ha, hb);
    let same = ha.iter().filter(|(k, v)| hc.get(*k) == Some(*v)).count();
    assert_eq!(same, 0, "another seed must change every file");
    // Refuses to write into a non-empty folder.
    let msg = generate(&small(3), &a).unwrap_err().to_string();
    assert!(msg.contains("not empty"), "{msg}");
}

#[test]
fn output_is_a_valid_dataset_with_exact_masks() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("synth");
    let cfg = small(0);
    generate(&cfg, &out).unwrap();
    let ds = discover(&out, None).unwrap();
    let mut names = ds.class_names();
    names.sort();
    let mut expected: Vec<String> = CLASS_NAMES.iter().map(|s| s.to_string()).collect();
    expected.sort();
    assert_eq!(names, expected);
    let pixels = (cfg.size * cfg.size) as f64;
    for class in &ds.classes {
        assert_eq!(class.train.len(), 2);
        assert_eq!(class.test.len(), 6);
        assert_eq!(class.defect_types().len(), 5, "{}", class.name);
        for item in &class.test {
            let img = decode_rgb(&item.path).unwrap();
            assert_eq!(img.dimensions(), (cfg.size, cfg.size));
            match &item.mask {
                None => assert!(!item.is_anomalous()),
                Some(mask) => {
                    let area = decode_mask(mask)
                        .unwrap()
                        .pixels()
                        .filter(|p| p[0] > 0)
                        .count();
                    let share = area as f64 / pixels;
                    assert!(
                        (0.004..0.12).contains(&share),
                        "{}: defect area {share:.4}",
                        item.path.display()
                    );
                }
            }
        }
    }
    // Normal images of one class vary (placement, lighting, noise).
    let c = &ds.classes[0];
    assert_ne!(
        std::fs::read(&c.train[0]).unwrap(),
        std::fs::read(&c.train[1]).unwrap()
    );
}

#[test]
fn loader_streams_batches_in_order_with_the_right_shapes() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("synth");
    generate(&small(1), &out).unwrap();
    let ds = discover(&out, None).unwrap();
    let paths: Vec<_> = ds.classes.iter().flat_map(|c| c.train.clone()).collect();
    assert_eq!(paths.len(), 16);
    let pre = Preprocess {
        resize: 36,
        crop: 32,
        mode: ResizeMode::ShorterSideThenCenterCrop,
        ..Preprocess::reference()
    };
    let got: Vec<_> = batches(paths.clone(), pre.clone(), 5, false)
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(
        got.iter().map(|b| b.len()).collect::<Vec<_>>(),
        vec![5, 5, 5, 1]
    );
    let streamed: Vec<_> = got.iter().flat_map(|b| b.paths.clone()).collect();
    assert_eq!(streamed, paths);
    let plane = 3 * 32 * 32;
    assert_eq!(got[1].images.len(), 5 * plane);
    let single = pre.image(&decode_rgb(&paths[7]).unwrap());
    assert_eq!(&got[1].images[2 * plane..3 * plane], single.as_slice());
    let t = got[3].to_tensor(&candle_core::Device::Cpu).unwrap();
    assert_eq!(t.dims(), &[1, 3, 32, 32]);

    // A broken file ends the stream with an error naming it.
    let bad = tmp.path().join("bad.png");
    std::fs::write(&bad, b"nope").unwrap();
    let results: Vec<_> = batches(vec![paths[0].clone(), bad], pre, 1, false).collect();
    assert!(results[0].is_ok());
    let msg = results[1].as_ref().unwrap_err().to_string();
    assert!(msg.contains("bad.png"), "{msg}");
    assert_eq!(results.len(), 2);
}

#[test]
fn defect_px_sets_the_defect_extent_whatever_the_image_size() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = SynthConfig {
        size: 256,
        defect_px: Some((10, 16)),
        ..small(4)
    };
    generate(&cfg, tmp.path()).unwrap();
    let ds = discover(tmp.path(), None).unwrap();
    let mut masks = 0;
    for class in &ds.classes {
        for item in class.test.iter().filter(|t| t.is_anomalous()) {
            let m = decode_mask(item.mask.as_ref().unwrap()).unwrap();
            let (w, h) = m.dimensions();
            let on: Vec<(u32, u32)> = (0..h)
                .flat_map(|y| (0..w).map(move |x| (x, y)))
                .filter(|&(x, y)| m.get_pixel(x, y)[0] > 0)
                .collect();
            assert!(!on.is_empty(), "{}: empty mask", item.path.display());
            let span = |f: fn(&(u32, u32)) -> u32| {
                on.iter().map(f).max().unwrap() - on.iter().map(f).min().unwrap() + 1
            };
            let extent = span(|p| p.0).max(span(|p| p.1));
            // A blob of diameter <= 16 (its edge is jittered by up to 40%), a stroke about 16 long.
            assert!(
                (2..=24).contains(&extent),
                "{}: defect spans {extent} px",
                item.path.display()
            );
            masks += 1;
        }
    }
    assert_eq!(masks, CLASS_NAMES.len() * 5);
    // At 256 px without --defect-px the defects are far larger (4-25% of the side).
    let err = generate(
        &SynthConfig {
            defect_px: Some((10, 100)),
            ..cfg
        },
        &tmp.path().join("bad"),
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("defect-px") && err.contains("10-100"), "{err}");
}

#[test]
fn sixteen_classes_the_second_eight_in_another_colourway() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = SynthConfig {
        classes: MAX_CLASSES,
        test_good_per_class: 0,
        ..small(5)
    };
    assert_eq!(MAX_CLASSES, 16);
    let summary = generate(&cfg, &tmp.path().join("all")).unwrap();
    assert_eq!(summary.images, 16 * 7);
    let ds = discover(&tmp.path().join("all"), None).unwrap();
    let mut names = ds.class_names();
    names.sort();
    let mut expected: Vec<String> = (0..16).map(class_name).collect();
    expected.sort();
    expected.dedup();
    assert_eq!(expected.len(), 16, "class names must be distinct");
    assert_eq!(names, expected);
    assert_eq!(class_name(3), "bolt");
    assert_eq!(class_name(11), "bolt_alt");
    for class in &ds.classes {
        assert_eq!(class.train.len(), 2, "{}", class.name);
        assert_eq!(class.defect_types().len(), 5, "{}", class.name);
    }
    // The first eight classes are byte-identical to an 8-class set of the same seed: existing
    // sets do not change.
    let eight = tmp.path().join("eight");
    generate(
        &SynthConfig {
            classes: CLASS_NAMES.len(),
            ..cfg.clone()
        },
        &eight,
    )
    .unwrap();
    let (h16, h8) = (hashes(&tmp.path().join("all")), hashes(&eight));
    assert_eq!(h8.len(), 8 * (7 + 5));
    for (k, v) in &h8 {
        assert_eq!(h16.get(k), Some(v), "{k} changed");
    }
    // A second colourway: its mean colour is the drawing's, channels rotated (not a copy).
    let mean = |p: &Path| {
        let img = decode_rgb(p).unwrap();
        let n = (img.width() * img.height()) as f64;
        let mut m = [0f64; 3];
        for px in img.pixels() {
            for (c, v) in px.0.iter().enumerate() {
                m[c] += *v as f64 / n;
            }
        }
        m
    };
    let dir = tmp.path().join("all");
    let (a, b) = (
        mean(&dir.join("carpet_weave/train/good/000.png")),
        mean(&dir.join("carpet_weave_alt/train/good/000.png")),
    );
    // carpet_weave is red-brown (R > G, B); its alt is blue-dominant (B took R's place).
    assert!(a[0] > a[2] + 30.0, "{a:?}");
    assert!(b[1] > b[0] + 30.0 || b[2] > b[0] + 30.0, "{b:?}");
    // Beyond 16: refused, naming the value and the range.
    let err = generate(&SynthConfig { classes: 17, ..cfg }, &tmp.path().join("bad"))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("classes") && err.contains("17") && err.contains("16"),
        "{err}"
    );
}
