//! Table renderers and the evaluation report (metrics.json / metrics.csv / report.md).

use std::collections::BTreeSet;

use cras::metrics::MetricSet;
use cras::report::table::{csv_table, markdown_table, pct, text_table};
use cras::report::{ClassReport, EvalReport, ThresholdReport};
use serde_json::{json, Value};

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

/// A small RFC 4180 parser (quoted fields may hold commas, quotes and newlines).
fn parse_csv(text: &str) -> Vec<Vec<String>> {
    let mut rows = Vec::new();
    let (mut row, mut field) = (Vec::new(), String::new());
    let mut chars = text.chars().peekable();
    let mut quoted = false;
    while let Some(c) = chars.next() {
        match (quoted, c) {
            (true, '"') if chars.peek() == Some(&'"') => {
                chars.next();
                field.push('"');
            }
            (true, '"') => quoted = false,
            (true, c) => field.push(c),
            (false, '"') => quoted = true,
            (false, ',') => row.push(std::mem::take(&mut field)),
            (false, '\n') => {
                row.push(std::mem::take(&mut field));
                rows.push(std::mem::take(&mut row));
            }
            (false, c) => field.push(c),
        }
    }
    rows
}

#[test]
fn text_table_lines_have_equal_width_and_columns_align() {
    let header = strings(&["class", "I-AUROC", "note"]);
    let rows = vec![
        strings(&["bottle", "100.00", "größe"]),
        strings(&["screw_long_name", "7.5", "-"]),
        strings(&["x"]),
    ];
    let t = text_table(&header, &rows);
    let lines: Vec<&str> = t.lines().collect();
    assert_eq!(lines.len(), 5, "header, rule, three rows");
    let width = lines[0].chars().count();
    assert!(lines.iter().all(|l| l.chars().count() == width), "{t}");
    // Numbers are right-aligned: they end where the column's rule ends.
    let rule: Vec<usize> = lines[1].split("  ").map(str::len).collect();
    let second_column_end = rule[0] + 2 + rule[1];
    let col_end = |l: &str, cell: &str| {
        let byte = l.find(cell).unwrap() + cell.len();
        l[..byte].chars().count()
    };
    assert_eq!(col_end(lines[2], "100.00"), col_end(lines[3], "7.5"));
    assert_eq!(col_end(lines[3], "7.5"), second_column_end);
    assert!(lines[3].starts_with("screw_long_name  "));
}

#[test]
fn csv_quotes_commas_quotes_and_newlines() {
    let header = strings(&["name", "value"]);
    let rows = vec![
        strings(&["a,b", "say \"hi\""]),
        strings(&["two\nlines", "plain"]),
        strings(&["short"]),
    ];
    let text = csv_table(&header, &rows);
    assert!(text.contains("\"a,b\",\"say \"\"hi\"\"\"\n"));
    assert!(text.contains("plain\n") && !text.contains("\"plain\""));
    let parsed = parse_csv(&text);
    assert_eq!(parsed[0], header);
    assert_eq!(parsed[1], rows[0]);
    assert_eq!(parsed[2], rows[1]);
    assert_eq!(parsed[3], strings(&["short", ""]));
}

#[test]
fn markdown_escapes_pipes() {
    let md = markdown_table(&strings(&["a", "b"]), &[strings(&["x|y", "1"])]);
    let lines: Vec<&str> = md.lines().collect();
    assert_eq!(lines[0], "| a | b |");
    assert_eq!(lines[1], "|---|---|");
    assert_eq!(lines[2], "| x\\|y | 1 |");
}

#[test]
fn pct_formats_and_handles_undefined() {
    assert_eq!(pct(Some(0.9876)), "98.76");
    assert_eq!(pct(Some(1.0)), "100.00");
    assert_eq!(pct(Some(0.0)), "0.00");
    assert_eq!(pct(None), "-");
    assert_eq!(pct(Some(f64::NAN)), "-");
}

fn metrics(base: f64, pixel: bool) -> MetricSet {
    let p = |v: f64| pixel.then_some(v);
    MetricSet {
        image_auroc: Some(base),
        image_ap: Some(base - 0.01),
        image_f1max: Some(base - 0.02),
        pixel_auroc: p(base - 0.03),
        pixel_ap: p(base - 0.3),
        pixel_f1max: p(base - 0.25),
        aupro: p(base - 0.1),
        mad: None,
    }
    .with_mad()
}

fn threshold(tp: usize) -> ThresholdReport {
    ThresholdReport {
        threshold: 0.42,
        source: "stored-class".into(),
        precision: Some(0.8),
        recall: Some(0.5),
        f1: None,
        tp,
        fp: 2,
        tn: 7,
        fn_: 3,
    }
}

fn sample_report(test_selected: bool, random_backbone: bool) -> EvalReport {
    let classes = vec![
        ClassReport {
            name: "bottle".into(),
            n_train: 209,
            n_test_good: 20,
            n_test_defect: 63,
            metrics: metrics(0.99, true),
            routing_accuracy: Some(1.0),
            at_threshold: Some(threshold(60)),
        },
        ClassReport {
            name: "cable, \"big\"".into(),
            n_train: 224,
            n_test_good: 58,
            n_test_defect: 92,
            metrics: metrics(0.9, false),
            routing_accuracy: Some(0.5),
            at_threshold: None,
        },
    ];
    let sets: Vec<MetricSet> = classes.iter().map(|c| c.metrics.clone()).collect();
    EvalReport {
        format: 1,
        tool: EvalReport::tool_name(),
        created_unix: 1_700_000_000,
        model: json!({"path": "model.safetensors", "sha256": "abc", "classes": ["bottle", "cable"]}),
        test_selected,
        random_backbone,
        config: json!({"batch": 8}),
        classes,
        mean: MetricSet::mean_of(&sets),
        pooled: metrics(0.95, true),
        routing_accuracy: Some(0.75),
        at_threshold: Some(threshold(100)),
        timing: json!({"seconds": 1.5}),
        images: 233,
    }
}

/// Asserts that two JSON values are equal, numbers to 1e-12 relative (serde_json's default float
/// parser may be one ulp off the shortest representation it wrote).
fn assert_json_close(a: &Value, b: &Value, at: &str) {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => {
            let (x, y) = (x.as_f64().unwrap(), y.as_f64().unwrap());
            assert!(
                (x - y).abs() <= 1e-12 * x.abs().max(1.0),
                "{at}: {x} != {y}"
            );
        }
        (Value::Array(x), Value::Array(y)) => {
            assert_eq!(x.len(), y.len(), "{at}");
            for (i, (p, q)) in x.iter().zip(y).enumerate() {
                assert_json_close(p, q, &format!("{at}[{i}]"));
            }
        }
        (Value::Object(x), Value::Object(y)) => {
            assert_eq!(keys(a), keys(b), "{at}");
            for (k, p) in x {
                assert_json_close(p, &y[k], &format!("{at}.{k}"));
            }
        }
        _ => assert_eq!(a, b, "{at}"),
    }
}

/// The report survives JSON text and back (all fields, numbers to 1e-12).
fn assert_round_trip(text: &str, report: &EvalReport) {
    let back: EvalReport = serde_json::from_str(text).unwrap();
    assert_eq!(back.classes.len(), report.classes.len());
    assert_eq!(back.classes[1].metrics.pixel_auroc, None);
    let (a, b) = (
        serde_json::to_value(&back).unwrap(),
        serde_json::to_value(report).unwrap(),
    );
    assert_json_close(&a, &b, "report");
}

fn keys(v: &Value) -> BTreeSet<String> {
    v.as_object().unwrap().keys().cloned().collect()
}

const METRIC_KEYS: [&str; 8] = [
    "image_auroc",
    "image_ap",
    "image_f1max",
    "pixel_auroc",
    "pixel_ap",
    "pixel_f1max",
    "aupro",
    "mad",
];

#[test]
fn metrics_json_has_the_documented_keys_and_round_trips() {
    let report = sample_report(false, false);
    let text = report.to_json().unwrap();
    assert_round_trip(&text, &report);

    let v: Value = serde_json::from_str(&text).unwrap();
    let top: BTreeSet<String> = [
        "format",
        "tool",
        "created_unix",
        "model",
        "test_selected",
        "random_backbone",
        "config",
        "classes",
        "mean",
        "pooled",
        "routing_accuracy",
        "at_threshold",
        "timing",
        "images",
    ]
    .map(String::from)
    .into();
    assert_eq!(keys(&v), top);
    let mut class_keys: BTreeSet<String> = [
        "name",
        "n_train",
        "n_test_good",
        "n_test_defect",
        "routing_accuracy",
        "at_threshold",
    ]
    .map(String::from)
    .into();
    class_keys.extend(METRIC_KEYS.map(String::from));
    assert_eq!(keys(&v["classes"][0]), class_keys);
    assert_eq!(v["classes"][0]["name"], "bottle");
    assert_eq!(v["classes"][0]["image_auroc"].as_f64(), Some(0.99));
    assert_eq!(v["classes"][0]["aupro"].as_f64(), Some(0.89));
    assert!(v["classes"][1]["pixel_auroc"].is_null());
    assert!(v["classes"][1]["mad"].is_null());
    assert!(v["classes"][1]["at_threshold"].is_null());
    let mean_auroc = v["mean"]["image_auroc"].as_f64().unwrap();
    assert!((mean_auroc - (0.99 + 0.9) / 2.0).abs() < 1e-12);
    assert_eq!(
        v["mean"]["aupro"].as_f64(),
        Some(0.89),
        "only bottle has AUPRO"
    );
    assert_eq!(v["pooled"]["aupro"].as_f64(), Some(0.85));
    assert_eq!(v["at_threshold"]["fn"], 3);
    assert!(v["at_threshold"]["f1"].is_null());
    assert_eq!(v["format"], 1);
    assert!(v["tool"].as_str().unwrap().starts_with("cras "));
    for set in [&v["mean"], &v["pooled"], &v["classes"][0], &v["classes"][1]] {
        for k in METRIC_KEYS {
            let x = &set[k];
            assert!(
                x.is_null() || x.as_f64().is_some_and(|f| (0.0..=1.0).contains(&f)),
                "{k} = {x}"
            );
        }
    }
}

#[test]
fn non_finite_values_become_null_not_nan() {
    let mut report = sample_report(false, false);
    report.classes[0].metrics.image_ap = Some(f64::NAN);
    report.classes[0].routing_accuracy = Some(f64::INFINITY);
    report.pooled.aupro = Some(f64::NAN);
    report.at_threshold.as_mut().unwrap().precision = Some(f64::NAN);
    let text = report.to_json().unwrap();
    assert!(!text.contains("NaN") && !text.contains("inf"));
    let v: Value = serde_json::from_str(&text).unwrap();
    assert!(v["classes"][0]["image_ap"].is_null());
    assert!(v["classes"][0]["routing_accuracy"].is_null());
    assert!(v["pooled"]["aupro"].is_null());
    assert!(v["at_threshold"]["precision"].is_null());
    let csv = report.to_csv();
    assert!(!csv.contains("NaN") && !csv.contains("inf"));
    let table = report.to_text_table();
    assert!(!table.contains("NaN") && !table.contains("inf"));
}

#[test]
fn table_rows_are_classes_then_mean_and_pooled() {
    let report = sample_report(false, false);
    let header = EvalReport::table_header();
    assert_eq!(
        header,
        strings(&[
            "class", "I-AUROC", "I-AP", "I-F1max", "P-AUROC", "P-AP", "P-F1max", "AUPRO", "mAD",
            "routing"
        ])
    );
    let rows = report.table_rows();
    assert_eq!(rows.len(), 4);
    assert_eq!(rows[0][0], "bottle");
    assert_eq!(rows[0][1], "99.00");
    assert_eq!(rows[1][4], "-", "undefined P-AUROC");
    assert_eq!(rows[2][0], "mean");
    assert_eq!(
        rows[2][9], "75.00",
        "mean of the classes' routing (100, 50)"
    );
    assert_eq!(rows[3][0], "pooled");
    assert_eq!(rows[3][7], "85.00");
    assert!(rows.iter().all(|r| r.len() == header.len()));
    let text = report.to_text_table();
    assert!(!text.contains("WARNING"));
    let flagged = sample_report(true, true).to_text_table();
    assert!(flagged.contains("WARNING: test-selected (optimistic)"));
    assert!(flagged.contains("WARNING: random backbone: real inspection needs ImageNet weights"));
}

#[test]
fn write_files_writes_json_csv_and_markdown() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("eval");
    std::fs::create_dir_all(&out).unwrap();
    std::fs::write(out.join("roc_image.svg"), "<svg/>").unwrap();
    let report = sample_report(true, true);
    report.write_files(&out).unwrap();

    assert_round_trip(
        &std::fs::read_to_string(out.join("metrics.json")).unwrap(),
        &report,
    );

    let csv = parse_csv(&std::fs::read_to_string(out.join("metrics.csv")).unwrap());
    assert_eq!(csv.len(), 1 + 2 + 2);
    assert_eq!(
        &csv[0][..5],
        &strings(&[
            "class",
            "n_train",
            "n_test_good",
            "n_test_defect",
            "image_auroc"
        ])
    );
    assert_eq!(
        csv[2][0], "cable, \"big\"",
        "class name survives CSV quoting"
    );
    let col = |name: &str| csv[0].iter().position(|h| h == name).unwrap();
    assert_eq!(csv[1][col("image_auroc")].parse::<f64>().unwrap(), 0.99);
    assert_eq!(csv[2][col("pixel_auroc")], "", "undefined is an empty cell");
    assert_eq!(csv[1][col("fn")], "3");
    assert_eq!(csv[4][0], "pooled");
    assert_eq!(csv[4][col("n_train")], "433");
    assert_eq!(csv[4][col("tp")], "100");

    let md = std::fs::read_to_string(out.join("report.md")).unwrap();
    assert!(md.contains("test-selected (optimistic)"));
    assert!(md.contains("random backbone: real inspection needs ImageNet weights"));
    assert!(md.contains("| class | I-AUROC |"));
    assert!(md.contains("| bottle | 99.00 |"));
    assert!(md.contains("](roc_image.svg)"), "existing curve is linked");
    assert!(
        !md.contains("](pr_image.svg)"),
        "missing curve is not linked"
    );
    assert!(md.contains("2023-11-14 22:13:20 UTC"));
    assert!(md.contains("| all images | 0.420000 | stored-class | 80.00 | 50.00 | - | 100 |"));

    let clean = sample_report(false, false).to_markdown(None);
    assert!(!clean.contains("WARNING"));
    let names: BTreeSet<String> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    let expected: BTreeSet<String> = ["metrics.csv", "metrics.json", "report.md", "roc_image.svg"]
        .map(String::from)
        .into();
    assert_eq!(names, expected, "no temporary file left behind");
}

#[test]
fn write_files_reports_the_failing_path() {
    let dir = tempfile::tempdir().unwrap();
    let blocker = dir.path().join("not_a_dir");
    std::fs::write(&blocker, b"x").unwrap();
    let err = sample_report(false, false)
        .write_files(&blocker)
        .unwrap_err()
        .to_string();
    assert!(err.contains("not_a_dir"), "{err}");
}

#[test]
fn schema_doc_mentions_every_key() {
    let doc = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/metrics-json.md"));
    let v: Value = serde_json::from_str(&sample_report(false, false).to_json().unwrap()).unwrap();
    let mut all = keys(&v);
    all.extend(keys(&v["classes"][0]));
    all.extend(keys(&v["at_threshold"]));
    for k in all {
        assert!(
            doc.contains(&format!("`{k}`")),
            "docs/metrics-json.md lacks `{k}`"
        );
    }
}
