//! The `cras` command-line tool: a thin layer over the `cras` library. Each subcommand's
//! arguments and driver live in `cli/<name>.rs`.

mod cli;

use clap::{Parser, Subcommand};

/// Multi-class industrial visual anomaly detection with CRAS (Center-aware Residual Anomaly
/// Synthesis): one model for every product class, trained on normal images only.
#[derive(Parser)]
#[command(name = "cras", version, about, long_about = None)]
struct Cli {
    /// Log verbosity: error, warn, info, debug or trace (RUST_LOG overrides it).
    #[arg(long, global = true, default_value = "info")]
    log: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Write a deterministic multi-class synthetic benchmark in MVTec AD layout.
    Synth(cli::synth::SynthArgs),
    /// Inspect datasets.
    #[command(subcommand)]
    Data(cli::data::DataCommand),
    /// Inspect, convert and fetch backbone weights.
    #[command(subcommand)]
    Weights(cli::weights::WeightsCommand),
    /// Write the patch descriptors of one image.
    Embed(cli::embed::EmbedArgs),
    /// Train one model on the normal images of every class.
    Train(cli::train::TrainArgs),
    /// Evaluate a model on a test split: metrics, report, curves, heatmap gallery.
    Eval(cli::eval::EvalArgs),
    /// Write a cras model from the authors' released checkpoint and centers.
    ImportReference(cli::import_reference::ImportReferenceArgs),
    /// Score images with a model: one JSON line per image.
    Predict(cli::predict::PredictArgs),
    /// The whole product on generated data: synth, train, eval (a few minutes on a CPU).
    Demo(cli::demo::DemoArgs),
    /// Measure inference and training speed on the chosen device.
    Bench(cli::bench::BenchArgs),
    /// Serve a model over HTTP: POST /v1/predict with dynamic batching.
    Serve(cli::serve::ServeArgs),
    /// Export a trained model's whole scoring path as one ONNX graph.
    Export(cli::export::ExportArgs),
    /// Calibrate a trained model for int8 (`--precision int8`, `cras export --int8`) on its
    /// training images; models trained by this cras are calibrated already.
    Quantize(cli::quantize::QuantizeArgs),
}

/// Keeps freed tensor buffers in the process heap instead of handing them back to the kernel,
/// which would clear fresh pages and flush TLBs for every step's buffers. glibc only.
///
/// Every command keeps freed memory up to 1 GiB (the demo trained about 18% faster with the
/// same peak memory). The commands that run to completion (`heap_only`: all but `serve`) also
/// take buffers of every size from the heap and never trim it: a training step's largest
/// tensors (a batch's discriminator activations, 40-80 MB at the realistic size) are above
/// glibc's 32 MiB mmap ceiling and would otherwise be mapped and faulted in afresh at every
/// step, and a trimmed heap top faults in again at the next. On one thread that took half of
/// an epoch's time (16.4 -> 7.8 s at the realistic size), for 7% more peak memory; the model is
/// the same to the bit (docs/benchmarks.md, "Training speed"). `serve`, which lives on beside
/// other processes, keeps glibc's default for very large buffers and hands freed memory back.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn tune_allocator(heap_only: bool) {
    // SAFETY: `mallopt` only sets glibc allocator parameters. It is called in `main` right
    // after the arguments are parsed, before any other thread exists, with documented
    // parameters and in-range values: a 32 MiB mmap threshold (glibc's maximum), a 1 GiB trim
    // threshold; with `heap_only`, no mmapped blocks and trimming off (-1, as `man mallopt`
    // documents).
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, if heap_only { -1 } else { 1 << 30 });
        if heap_only {
            libc::mallopt(libc::M_MMAP_MAX, 0);
        }
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn tune_allocator(_heap_only: bool) {}

/// Logs to stderr at `level` (RUST_LOG overrides it), coloured only on a terminal.
fn init_logging(level: &str) {
    use std::io::IsTerminal;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    let colour = use_colour(
        std::io::stderr().is_terminal(),
        std::env::var_os("NO_COLOR").as_deref(),
    );
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(colour)
        .init();
}

/// Colour codes only for a terminal, and not when `NO_COLOR` is set to a non-empty value
/// (no-color.org): a log redirected to a file or a pipe stays plain text.
fn use_colour(is_terminal: bool, no_color: Option<&std::ffi::OsStr>) -> bool {
    is_terminal && no_color.is_none_or(|v| v.is_empty())
}

/// This process's peak resident memory so far (VmHWM of /proc/self/status), in KiB; `None`
/// where there is no /proc.
fn peak_rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Logs the peak resident memory of the command at debug level, target `cras::memory`
/// (`--log warn,cras::memory=debug` shows it alone): how the hostile-input tests and a user
/// measure a command's memory.
fn log_peak_memory() {
    if let Some(kib) = peak_rss_kib() {
        tracing::debug!(target: "cras::memory", peak_rss_kib = kib, "peak resident memory");
    }
}

fn main() {
    let cli = Cli::parse();
    tune_allocator(!matches!(cli.command, Command::Serve(_)));
    init_logging(&cli.log);
    let result = match cli.command {
        Command::Synth(a) => cli::synth::run(a),
        Command::Data(a) => cli::data::run(a),
        Command::Weights(a) => cli::weights::run(a),
        Command::Embed(a) => cli::embed::run(a),
        Command::Train(a) => cli::train::run(a),
        Command::Eval(a) => cli::eval::run(a),
        Command::ImportReference(a) => cli::import_reference::run(a),
        Command::Predict(a) => cli::predict::run(a),
        Command::Demo(a) => cli::demo::run(a),
        Command::Bench(a) => cli::bench::run(a),
        Command::Serve(a) => cli::serve::run(a),
        Command::Export(a) => cli::export::run(a),
        Command::Quantize(a) => cli::quantize::run(a),
    };
    log_peak_memory();
    if let Err(e) = result {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_consistent() {
        // Catches clashing option names (e.g. a subcommand option shadowing a global one).
        Cli::command().debug_assert();
    }

    #[test]
    fn train_defaults_are_the_papers_configuration() {
        let cli = Cli::try_parse_from(["cras", "train", "--data", "d", "--out", "m.safetensors"])
            .unwrap();
        let Command::Train(args) = cli.command else {
            panic!("not the train command")
        };
        let got = serde_json::to_value(args.config().unwrap()).unwrap();
        let want = serde_json::to_value(cras::train::config::TrainConfig::paper("d")).unwrap();
        assert_eq!(got, want);
    }

    #[test]
    fn colour_only_on_a_terminal_without_no_color() {
        let set = Some(std::ffi::OsStr::new("1"));
        let empty = Some(std::ffi::OsStr::new(""));
        assert!(use_colour(true, None));
        assert!(use_colour(true, empty));
        assert!(!use_colour(true, set));
        assert!(!use_colour(false, None));
        assert!(!use_colour(false, empty));
    }
}
