//! The tests of `cras serve` (the HTTP service in-process on loopback, and its inspection page
//! in a headless browser), in one test binary: one link, and the tiny model of `serve_support`
//! trained once for all of them. Each module is one former `tests/<name>.rs` (run one with
//! `cargo test --test serve <name>::`). `tests/serve_connection_cap.rs` (counts this process's
//! descriptors) and `tests/serve_soak.rs` (a timed load) are separate binaries.

#[path = "../common/mod.rs"]
mod common;
#[path = "../serve_support/mod.rs"]
mod serve_support;
#[path = "../serve_support/soak.rs"]
mod soak;
#[path = "../webdriver/mod.rs"]
mod webdriver;

mod serve_api;
mod serve_budget;
mod serve_connections;
mod serve_engines;
mod serve_hardening;
mod serve_limits;
mod serve_memory;
mod serve_oip;
mod serve_openapi;
mod serve_page;
mod serve_replicas;
mod serve_schemathesis;
