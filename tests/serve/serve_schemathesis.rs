//! `GET /v1/openapi.json` describes what the server accepts, as checked by Schemathesis
//! (`schemathesis run --checks all`): every request the document allows is answered as it
//! says (no 5xx, documented statuses, content types and bodies), every request it forbids is
//! refused, and the token guards what it claims to guard. Run against the tiny model, without a
//! token and with one (`-H Authorization: Bearer ...`), with a fixed seed and a bounded number
//! of examples per operation.
//!
//! The CLI is looked for in `$VIRTUAL_ENV/bin/schemathesis` (`.ci/run` installs it); without it
//! the test says why and passes, unless `CRAS_REQUIRE_SCHEMATHESIS=1` (set by `.ci/run`).
//! `tests/schemathesis/cras_hooks.py` makes every generated image body a real PNG (the document
//! cannot say that bytes must decode). `CRAS_SCHEMATHESIS_SEED` and
//! `CRAS_SCHEMATHESIS_EXAMPLES` override the seed and the examples per operation (for a longer
//! search by hand).

use crate::serve_support::TestServer;

use std::path::{Path, PathBuf};
use std::process::Command;

const SEED: &str = "20260424";
const EXAMPLES: &str = "12";

/// `$VIRTUAL_ENV/bin/schemathesis`, when it runs.
fn schemathesis() -> Option<PathBuf> {
    let cli = std::env::var_os("VIRTUAL_ENV").map(|v| PathBuf::from(v).join("bin/schemathesis"));
    let runs = cli.as_ref().is_some_and(|c| {
        Command::new(c)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
    });
    if runs {
        return cli;
    }
    let why = match &cli {
        Some(c) => format!("{} does not run", c.display()),
        None => "VIRTUAL_ENV is not set".to_string(),
    };
    let why = format!(
        "schemathesis not found: {why} (set VIRTUAL_ENV to a virtualenv with schemathesis==4.32.5)"
    );
    if std::env::var("CRAS_REQUIRE_SCHEMATHESIS").is_ok_and(|v| v == "1") {
        panic!("{why}; required by CRAS_REQUIRE_SCHEMATHESIS=1");
    }
    eprintln!("skipped: {why}");
    None
}

/// Runs Schemathesis against `server`'s document; returns (exit success, output).
fn run(cli: &Path, server: &TestServer, token: Option<&str>, work: &Path) -> (bool, String) {
    let hooks = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/schemathesis");
    let seed = std::env::var("CRAS_SCHEMATHESIS_SEED").unwrap_or_else(|_| SEED.into());
    let examples = std::env::var("CRAS_SCHEMATHESIS_EXAMPLES").unwrap_or_else(|_| EXAMPLES.into());
    let mut cmd = Command::new(cli);
    cmd.arg("run")
        .arg(server.url("/v1/openapi.json"))
        .args([
            "--checks",
            "all",
            "--seed",
            &seed,
            "--max-examples",
            &examples,
        ])
        .args(["--workers", "1", "--request-timeout", "30"])
        .args(["--output-truncate", "false"])
        // Its hypothesis database and any report stay in the temporary folder.
        .current_dir(work)
        .env("SCHEMATHESIS_HOOKS", "cras_hooks")
        .env("PYTHONPATH", &hooks)
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .env("NO_COLOR", "1");
    if let Some(t) = token {
        cmd.args(["--header", &format!("Authorization: Bearer {t}")]);
    }
    let out = cmd.output().expect("schemathesis runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[test]
fn schemathesis_finds_nothing_against_the_document() {
    let Some(cli) = schemathesis() else { return };
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, "schemathesis-token-0123456789\n").unwrap();
    let mut failures = Vec::new();
    for token in [None, Some("schemathesis-token-0123456789")] {
        // A threshold file of its own: the PUTs and DELETEs Schemathesis sends must not touch
        // the file beside the shared tiny model that other tests read.
        let thresholds = dir.path().join(format!("t{}.json", token.is_some()));
        let work = dir.path().join(format!("work{}", token.is_some()));
        std::fs::create_dir_all(&work).unwrap();
        let server = TestServer::start(|c| {
            c.thresholds_file = Some(thresholds.clone());
            c.thresholds_poll_ms = 60_000;
            if token.is_some() {
                c.token_file = Some(token_file.clone());
            }
        });
        let (ok, output) = run(&cli, &server, token, &work);
        // Printed whatever the outcome: the harness shows it when the test fails.
        eprintln!("schemathesis, token: {}\n{output}", token.is_some());
        if !ok {
            failures.push(format!("token: {}", token.is_some()));
        }
    }
    assert!(
        failures.is_empty(),
        "schemathesis found requests the server answers otherwise than /v1/openapi.json \
         says (runs {}); its report is printed above",
        failures.join(", ")
    );
}
