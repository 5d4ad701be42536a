//! The library and command-line integration tests, in one test binary (one link of the crate and
//! its runtimes instead of one per file): data, backbones, training, inference and its engines,
//! metrics, reports and the `cras` command. Each module is one former `tests/<name>.rs` (run one
//! with `cargo test --test it <name>::`). The shared helpers are `common` (fixtures, the tiny
//! training configuration, hostile inputs, the mutation fuzzer) and `serve_support` (whose tiny
//! model is trained once for the whole binary). Tests that must be alone in their process
//! (process memory, open descriptors) are separate binaries: `tests/*.rs`.

#[path = "../common/mod.rs"]
mod common;
#[path = "../serve_support/mod.rs"]
mod serve_support;

mod backbone_cli;
mod backbone_fetch;
mod backbone_parity;
mod backbone_random;
mod bomb_memory;
mod data_decode;
mod data_discovery;
mod data_e2e;
mod data_inspect;
mod data_layouts;
mod data_manifest;
mod data_preprocess;
mod data_synth;
mod engine_parity;
mod fidelity;
mod file_writes;
mod fuzz_model_file;
mod infer_choices;
mod metrics_anomaly_map;
mod metrics_fixtures;
mod model_checks;
mod pipeline_e2e;
mod predict_cli;
mod predict_shard;
mod reference_import;
mod report_tables;
mod report_visual;
mod tiling_e2e;
mod train_fit;
mod train_parity;
mod triton_export;
