//! Heat images, panels, PNG writing, SVG curves and the HTML gallery.

use cras::report::curves::{line_plot_svg, plot_box, pr_points, roc_points, thin, Curve};
use cras::report::gallery::{gallery_html, write_gallery_html, GalleryEntry};
use cras::report::heatmap::{
    check_map_len, gray_map_png, heatmap_rgb, jet, overlay, panel, scale_unit, write_png,
};
use image::{Rgb, RgbImage};

/// Hue in degrees of an RGB colour (0 for grey).
fn hue(c: [u8; 3]) -> f64 {
    let [r, g, b] = c.map(|v| v as f64 / 255.0);
    let max = r.max(g).max(b);
    let min = r.min(g).min(b);
    let d = max - min;
    if d == 0.0 {
        return 0.0;
    }
    let h = if max == r {
        ((g - b) / d).rem_euclid(6.0)
    } else if max == g {
        (b - r) / d + 2.0
    } else {
        (r - g) / d + 4.0
    };
    h * 60.0
}

#[test]
fn jet_endpoints_and_clamping() {
    assert_eq!(jet(0.0), [0, 0, 128], "0 is dark blue");
    assert_eq!(jet(1.0), [128, 0, 0], "1 is dark red");
    assert_eq!(jet(-3.0), jet(0.0));
    assert_eq!(jet(7.0), jet(1.0));
    assert_eq!(jet(f32::NAN), jet(0.0));
    // The middle of jet is a green-dominated colour.
    let [r, g, b] = jet(0.5);
    assert!(g == 255 && r < 255 && b < 255, "jet(0.5) = {:?}", [r, g, b]);
}

#[test]
fn jet_hue_falls_monotonically_from_blue_to_red() {
    let hues: Vec<f64> = (0..=200).map(|i| hue(jet(i as f32 / 200.0))).collect();
    assert!((hues[0] - 240.0).abs() < 1.0);
    assert!(hues[200].abs() < 1.0);
    for (i, w) in hues.windows(2).enumerate() {
        assert!(
            w[1] <= w[0] + 0.5,
            "hue rises at step {i}: {} -> {}",
            w[0],
            w[1]
        );
    }
}

#[test]
fn heatmap_maps_lo_to_blue_and_hi_to_red() {
    let map = [0.0f32, 5.0, 10.0, -4.0, 99.0, f32::NAN];
    let img = heatmap_rgb(&map, 3, 2, 0.0, 10.0);
    assert_eq!(img.dimensions(), (3, 2));
    let p = |x, y| img.get_pixel(x, y).0;
    assert_eq!(p(0, 0), jet(0.0));
    assert_eq!(p(1, 0), jet(0.5));
    assert_eq!(p(2, 0), jet(1.0));
    assert_eq!(p(0, 1), jet(0.0), "below lo clamps to blue");
    assert_eq!(p(1, 1), jet(1.0), "above hi clamps to red");
    assert_eq!(p(2, 1), jet(0.0), "NaN counts as lo");
}

#[test]
fn constant_map_and_degenerate_range_give_no_nan() {
    let map = vec![0.7f32; 12];
    for (lo, hi) in [
        (0.7, 0.7),
        (1.0, 0.0),
        (f32::NAN, 1.0),
        (0.0, f32::INFINITY),
    ] {
        let unit = scale_unit(&map, lo, hi);
        assert!(unit.iter().all(|v| *v == 0.0), "lo={lo} hi={hi}: {unit:?}");
        let img = heatmap_rgb(&map, 4, 3, lo, hi);
        assert!(img.pixels().all(|p| p.0 == jet(0.0)));
    }
}

#[test]
fn gray_map_scales_to_full_range() {
    let g = gray_map_png(&[2.0, 3.0, 4.0, 1.0], 2, 2, 2.0, 4.0);
    assert_eq!(g.as_raw(), &vec![0u8, 128, 255, 0]);
}

#[test]
fn short_map_is_reported_not_panicking() {
    assert!(check_map_len(&[0.0; 6], 3, 2).is_ok());
    let err = check_map_len(&[0.0; 5], 3, 2).unwrap_err().to_string();
    assert!(err.contains('5') && err.contains('6'), "{err}");
    // Drawing a short map does not panic: missing values count as lo.
    let img = heatmap_rgb(&[1.0; 5], 3, 2, 0.0, 1.0);
    assert_eq!(img.get_pixel(2, 1).0, jet(0.0));
    assert_eq!(img.get_pixel(1, 1).0, jet(1.0));
}

fn test_image(w: u32, h: u32) -> RgbImage {
    RgbImage::from_fn(w, h, |x, y| Rgb([(x * 40) as u8, (y * 50) as u8, 100]))
}

#[test]
fn overlay_blends_with_alpha() {
    let img = test_image(4, 3);
    let map: Vec<f32> = (0..12).map(|i| i as f32 / 11.0).collect();
    let heat = heatmap_rgb(&map, 4, 3, 0.0, 1.0);
    assert_eq!(overlay(&img, &map, 0.0, 1.0, 0.0), img);
    assert_eq!(overlay(&img, &map, 0.0, 1.0, 1.0), heat);
    let half = overlay(&img, &map, 0.0, 1.0, 0.5);
    for ((o, a), b) in half.pixels().zip(img.pixels()).zip(heat.pixels()) {
        for c in 0..3 {
            let expected = (a.0[c] as f32 + b.0[c] as f32) / 2.0;
            assert!((o.0[c] as f32 - expected).abs() <= 0.5 + 1e-3);
        }
    }
}

#[test]
fn panel_is_three_wide_with_white_mask() {
    let (w, h) = (5u32, 4u32);
    let img = test_image(w, h);
    let map: Vec<f32> = (0..20).map(|i| i as f32).collect();
    let mut mask = vec![0u8; 20];
    mask[7] = 255; // (2, 1)
    mask[13] = 1; // (3, 2): any non-zero value is defect
    let p = panel(&img, Some(&mask), &map, 0.0, 19.0);
    assert_eq!(p.dimensions(), (3 * w, h));
    for y in 0..h {
        for x in 0..w {
            assert_eq!(
                p.get_pixel(x, y),
                img.get_pixel(x, y),
                "left third is the image"
            );
            let m = p.get_pixel(w + x, y).0;
            let defect = mask[(y * w + x) as usize] != 0;
            assert_eq!(
                m,
                if defect { [255; 3] } else { [0; 3] },
                "mask at ({x},{y})"
            );
        }
    }
    let over = overlay(&img, &map, 0.0, 19.0, 0.5);
    assert_eq!(p.get_pixel(2 * w + 4, 3), over.get_pixel(4, 3));
    let no_mask = panel(&img, None, &map, 0.0, 19.0);
    assert!((0..h).all(|y| (w..2 * w).all(|x| no_mask.get_pixel(x, y).0 == [0; 3])));
}

#[test]
fn write_png_round_trips_and_leaves_no_temp_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sub").join("panel.png");
    let img = test_image(6, 3);
    write_png(&path, &img).unwrap();
    let back = image::open(&path).unwrap().to_rgb8();
    assert_eq!(back, img);
    let names: Vec<_> = std::fs::read_dir(dir.path().join("sub")).unwrap().collect();
    assert_eq!(names.len(), 1, "only the PNG remains");
    // A path below a regular file cannot be written: the error names it.
    let blocker = dir.path().join("file");
    std::fs::write(&blocker, b"x").unwrap();
    let bad = blocker.join("x.png");
    let err = write_png(&bad, &img).unwrap_err().to_string();
    assert!(err.contains("file"), "{err}");
}

/// The (x, y) pairs of every `points="..."` attribute of the polylines.
fn polylines(svg: &str) -> Vec<Vec<(f64, f64)>> {
    svg.split("<polyline")
        .skip(1)
        .map(|part| {
            let start = part.find("points=\"").unwrap() + 8;
            let end = start + part[start..].find('"').unwrap();
            part[start..end]
                .split_whitespace()
                .map(|xy| {
                    let (x, y) = xy.split_once(',').unwrap();
                    (x.parse().unwrap(), y.parse().unwrap())
                })
                .collect()
        })
        .collect()
}

#[test]
fn svg_has_one_scaled_polyline_per_curve_and_escapes_text() {
    let curves = vec![
        Curve {
            label: "bottle <a&b>".into(),
            points: vec![(0.0, 0.0), (0.5, 0.25), (1.0, 1.0)],
        },
        Curve {
            label: "cable".into(),
            points: vec![(0.0, 1.0), (2.0, -1.0), (f64::NAN, 0.5)],
        },
    ];
    let svg = line_plot_svg("ROC <image>", "FPR", "TPR & co", &curves, true);
    assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
    let lines = polylines(&svg);
    assert_eq!(lines.len(), 2);
    let (left, top, w, h) = plot_box();
    let near = |a: (f64, f64), b: (f64, f64)| (a.0 - b.0).abs() < 0.01 && (a.1 - b.1).abs() < 0.01;
    assert!(near(lines[0][0], (left, top + h)), "(0,0) is bottom-left");
    assert!(near(lines[0][1], (left + 0.5 * w, top + 0.75 * h)));
    assert!(near(lines[0][2], (left + w, top)), "(1,1) is top-right");
    assert_eq!(lines[1].len(), 2, "the NaN point is dropped");
    assert!(
        near(lines[1][1], (left + w, top + h)),
        "out-of-range points are clamped"
    );
    for (x, y) in lines.iter().flatten() {
        assert!(*x >= left && *x <= left + w && *y >= top && *y <= top + h);
    }
    assert!(svg.contains("bottle &lt;a&amp;b&gt;") && !svg.contains("<a&b>"));
    assert!(svg.contains("ROC &lt;image&gt;") && svg.contains("TPR &amp; co"));
    assert!(svg.contains("class=\"diagonal\""));
    assert!(!line_plot_svg("t", "x", "y", &curves, false).contains("class=\"diagonal\""));
    for tick in ["0.0", "0.2", "0.4", "0.6", "0.8", "1.0"] {
        assert!(svg.contains(&format!(">{tick}</text>")), "tick {tick}");
    }
}

#[test]
fn roc_and_pr_points_are_exact_with_ties() {
    let scores = [0.9f32, 0.8, 0.8, 0.3];
    let labels = [true, false, true, false];
    let roc = roc_points(&scores, &labels, 100);
    assert_eq!(roc, vec![(0.0, 0.0), (0.0, 0.5), (0.5, 1.0), (1.0, 1.0)]);
    // Trapezoidal area = the Mann-Whitney AUROC with ties counted half: 3.5 / 4.
    let auc: f64 = roc
        .windows(2)
        .map(|p| (p[1].0 - p[0].0) * (p[1].1 + p[0].1) / 2.0)
        .sum();
    assert!((auc - 0.875).abs() < 1e-12);
    let pr = pr_points(&scores, &labels, 100);
    assert_eq!(pr.len(), 4);
    assert_eq!(pr[0], (0.0, 1.0));
    assert_eq!(pr[1], (0.5, 1.0));
    assert!((pr[2].0 - 1.0).abs() < 1e-12 && (pr[2].1 - 2.0 / 3.0).abs() < 1e-12);
    assert_eq!(pr[3], (1.0, 0.5));
    assert!(
        roc_points(&scores, &[true; 4], 100).is_empty(),
        "no negative"
    );
    assert!(
        pr_points(&scores, &[false; 4], 100).is_empty(),
        "no positive"
    );
}

#[test]
fn thin_keeps_ends_and_bounds_size() {
    let pts: Vec<(f64, f64)> = (0..1000).map(|i| (i as f64, 0.0)).collect();
    let t = thin(pts.clone(), 50);
    assert_eq!(t.len(), 50);
    assert_eq!(t[0], pts[0]);
    assert_eq!(t[49], pts[999]);
    assert!(t.windows(2).all(|p| p[1].0 > p[0].0));
    assert_eq!(thin(pts[..10].to_vec(), 50).len(), 10);
}

fn entry(class: &str, file: &str, score: f32, matched: &str) -> GalleryEntry {
    GalleryEntry {
        class: class.into(),
        defect: "crack".into(),
        file: file.into(),
        source: format!("/data/{class}/test/crack/{file}"),
        score,
        threshold: Some(0.5),
        verdict: cras::infer::decide(score, Some(0.5)).is_anomalous(),
        matched_class: matched.into(),
    }
}

#[test]
fn gallery_escapes_text_references_files_and_flags_mismatches() {
    let evil = "<script>alert(1)</script>";
    let entries = vec![
        entry("bottle", "panels/b_low.png", 0.2, "bottle"),
        entry(evil, "panels/evil.png", 0.9, evil),
        entry("bottle", "panels/b_high.png", 0.8, "cable"),
        entry("bottle", "panels/b mid#1.png", 0.5, "bottle"),
    ];
    let html = gallery_html("Gallery & <test>", &entries);
    assert!(!html.contains("<script"), "raw script tag in the page");
    assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
    assert!(html.contains("Gallery &amp; &lt;test&gt;"));
    for f in [
        "panels/b_low.png",
        "panels/evil.png",
        "panels/b_high.png",
        "panels/b%20mid%231.png",
    ] {
        assert!(html.contains(&format!("src=\"{f}\"")), "missing {f}");
    }
    // Grouped by class in order of first appearance, highest score first within a class.
    let pos = |s: &str| html.find(s).unwrap();
    assert!(pos("b_high.png") < pos("b%20mid") && pos("b%20mid") < pos("b_low.png"));
    assert!(
        pos("b_low.png") < pos("evil.png"),
        "bottle section comes first"
    );
    assert_eq!(html.matches("<tr class=\"mismatch\"").count(), 1);
    // Decisions at threshold 0.5: 0.9, 0.8 and 0.5 are defects, 0.2 is OK.
    assert_eq!(html.matches("<td class=\"defect\">defect</td>").count(), 3);
    assert_eq!(html.matches("<td class=\"ok\">OK</td>").count(), 1);
    assert!(html.contains("linear-gradient"), "colour legend");

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gallery").join("index.html");
    write_gallery_html(&path, "Gallery & <test>", &entries).unwrap();
    assert_eq!(std::fs::read_to_string(&path).unwrap(), html);
}

#[test]
fn long_legend_labels_are_cut_but_kept_in_the_tooltip() {
    let label = "a_very_long_class_name_that_overflows_the_legend";
    let svg = line_plot_svg(
        "PR",
        "recall",
        "precision",
        &[Curve {
            label: label.into(),
            points: vec![(0.0, 1.0), (1.0, 0.5)],
        }],
        false,
    );
    assert!(svg.contains(&format!("<title>{label}</title>")));
    let shown: String = label.chars().take(21).collect();
    assert!(svg.contains(&format!(">{shown}\u{2026}</text>")));
    let (left, top, w, h) = plot_box();
    assert!((w - h).abs() < 1e-9, "square plot box");
    assert!(left > 0.0 && top > 0.0);
}
