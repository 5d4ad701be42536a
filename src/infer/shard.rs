//! Sharded, resumable batch scoring output (`cras predict --manifest LIST --shard K/N --out DIR`).
//!
//! - [`ShardSpec`] `K/N`: shard `K` of `N` (`0 <= K < N`) owns the list's rows `i` with
//!   `i % N == K` (0-based row order of the list): every row in exactly one shard, the same
//!   split on every run, shards of near-equal size whatever the list's order. `K` is a plain
//!   number, so a Kubernetes Indexed Job passes `--shard $(JOB_COMPLETION_INDEX)/N`.
//! - [`ShardOutput`] writes the shard's JSON lines (one object per row with at least `row`,
//!   the list's row index, and `path`; `score` on a scored row, `error` on a failed one) to
//!   `DIR/shard-K-of-N.jsonl.partial`, flushed to disk every `checkpoint_every` rows. When
//!   every row has a line, [`ShardOutput::finish`] writes `DIR/shard-K-of-N.jsonl` (lines in
//!   row order) atomically and removes the partial file. Resuming: the scored lines of an
//!   earlier partial (or final) file are kept and their rows skipped; failed rows, a torn last
//!   line and unparsable lines are done again. A kept line must name the same path as the
//!   list's row, else the output is from another list and is refused.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::{Error, Result};

/// Shard `index` of `count`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ShardSpec {
    pub index: usize,
    pub count: usize,
}

impl std::str::FromStr for ShardSpec {
    type Err = Error;

    /// Parses `K/N` (whole numbers, `0 <= K < N`).
    fn from_str(s: &str) -> Result<Self> {
        let bad = |msg: &str| Error::config("--shard", format!("'{s}'"), msg.to_string());
        let (k, n) = s
            .split_once('/')
            .ok_or_else(|| bad("expected K/N, e.g. 0/4 or $(JOB_COMPLETION_INDEX)/4"))?;
        let number = |x: &str| {
            (!x.is_empty() && x.bytes().all(|b| b.is_ascii_digit()))
                .then(|| x.parse::<usize>().ok())
                .flatten()
        };
        let (Some(index), Some(count)) = (number(k), number(n)) else {
            return Err(bad("K and N must be whole numbers >= 0 (K/N, e.g. 0/4)"));
        };
        if count == 0 {
            return Err(bad("N, the number of shards, must be at least 1"));
        }
        if index >= count {
            return Err(bad(&format!(
                "K must be below N: the shards of {count} are numbered 0 to {}",
                count - 1
            )));
        }
        Ok(ShardSpec { index, count })
    }
}

impl ShardSpec {
    /// The row indices of this shard among `rows` rows.
    pub fn rows(&self, rows: usize) -> impl Iterator<Item = usize> {
        (self.index..rows).step_by(self.count)
    }

    /// `shard-K-of-N.jsonl`.
    pub fn file_name(&self) -> String {
        format!("shard-{}-of-{}.jsonl", self.index, self.count)
    }
}

/// What [`ShardOutput::finish`] wrote.
#[derive(Clone, Debug)]
pub struct ShardDone {
    pub path: PathBuf,
    /// Lines written (= the shard's rows).
    pub lines: usize,
    /// Lines with an `error`.
    pub failed: usize,
}

/// The shard's output files (see the module docs).
pub struct ShardOutput {
    final_path: PathBuf,
    partial_path: PathBuf,
    /// Every row's line so far, by row.
    lines: BTreeMap<usize, String>,
    resumed: usize,
    writer: std::io::BufWriter<std::fs::File>,
    unsynced: usize,
    checkpoint_every: usize,
}

impl ShardOutput {
    /// Creates `dir` (an error names it when that or writing into it fails), keeps the scored
    /// lines of an earlier run whose `row` is one of `rows` (row index, the path as the lines
    /// show it) and opens the partial file to append.
    pub fn open(
        dir: &Path,
        spec: ShardSpec,
        rows: &[(usize, String)],
        checkpoint_every: usize,
    ) -> Result<Self> {
        std::fs::create_dir_all(dir).map_err(|e| {
            Error::io(
                dir,
                std::io::Error::other(format!("cannot create the output folder: {e}")),
            )
        })?;
        let final_path = dir.join(spec.file_name());
        let partial_path = dir.join(format!("{}.partial", spec.file_name()));
        let paths: BTreeMap<usize, &str> = rows.iter().map(|(i, p)| (*i, p.as_str())).collect();
        let mut lines = BTreeMap::new();
        for file in [&final_path, &partial_path] {
            read_scored(file, &paths, &mut lines)?;
        }
        let kept: String = lines.values().map(|l| format!("{l}\n")).collect();
        crate::fsio::write_atomic(&partial_path, kept.as_bytes())?;
        let file = std::fs::OpenOptions::new()
            .append(true)
            .open(&partial_path)
            .map_err(|e| Error::io(&partial_path, e))?;
        Ok(ShardOutput {
            final_path,
            partial_path,
            resumed: lines.len(),
            lines,
            writer: std::io::BufWriter::new(file),
            unsynced: 0,
            checkpoint_every: checkpoint_every.max(1),
        })
    }

    /// Rows kept from an earlier run.
    pub fn resumed(&self) -> usize {
        self.resumed
    }

    /// Whether `row` already has a scored line from an earlier run.
    pub fn is_done(&self, row: usize) -> bool {
        self.lines.contains_key(&row)
    }

    /// Appends `line` (which must hold `"row": row`) to the partial file; every
    /// `checkpoint_every` lines the file is flushed to disk.
    pub fn append(&mut self, row: usize, line: &serde_json::Value) -> Result<()> {
        let text = line.to_string();
        writeln!(self.writer, "{text}").map_err(|e| Error::io(&self.partial_path, e))?;
        self.lines.insert(row, text);
        self.unsynced += 1;
        if self.unsynced >= self.checkpoint_every {
            self.sync()?;
        }
        Ok(())
    }

    fn sync(&mut self) -> Result<()> {
        self.writer
            .flush()
            .and_then(|_| self.writer.get_ref().sync_data())
            .map_err(|e| Error::io(&self.partial_path, e))?;
        self.unsynced = 0;
        Ok(())
    }

    /// Once every one of `rows` has a line: writes the final file (row order) atomically and
    /// removes the partial one. Otherwise an error, and the partial file stays for a resume.
    pub fn finish(mut self, rows: &[(usize, String)]) -> Result<ShardDone> {
        self.sync()?;
        if let Some((row, _)) = rows.iter().find(|(r, _)| !self.lines.contains_key(r)) {
            return Err(Error::Other(format!(
                "{}: row {row} has no line yet; the partial output is kept for a resume",
                self.partial_path.display()
            )));
        }
        let text: String = self.lines.values().map(|l| format!("{l}\n")).collect();
        crate::fsio::write_atomic(&self.final_path, text.as_bytes())?;
        std::fs::remove_file(&self.partial_path).map_err(|e| Error::io(&self.partial_path, e))?;
        let failed = self.lines.values().filter(|l| !is_scored(l)).count();
        Ok(ShardDone {
            path: self.final_path,
            lines: self.lines.len(),
            failed,
        })
    }
}

/// Whether a written line is a scored row (no `error`).
fn is_scored(line: &str) -> bool {
    serde_json::from_str::<serde_json::Value>(line).is_ok_and(|v| v.get("score").is_some())
}

/// Adds the scored lines of `file` (if it exists) to `out`, checking each against `rows`.
fn read_scored(
    file: &Path,
    rows: &BTreeMap<usize, &str>,
    out: &mut BTreeMap<usize, String>,
) -> Result<()> {
    let text = match std::fs::read(file) {
        Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(Error::io(file, e)),
    };
    // A line without its newline was cut by an interruption: done again.
    let complete = text.rfind('\n').map_or("", |end| &text[..end]);
    for (n, line) in complete.lines().enumerate() {
        let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        if v.get("score").is_none() {
            continue;
        }
        let row = v["row"].as_u64().map(|r| r as usize);
        let expected = row.and_then(|r| rows.get(&r));
        if row.is_none() || expected.is_none() || v["path"].as_str() != expected.copied() {
            return Err(Error::dataset(
                file,
                format!(
                    "line {}: row {} path {} is not a row of this shard of the list; the output \
                     is from another list or shard: remove it or choose another --out",
                    n + 1,
                    v["row"],
                    v["path"]
                ),
            ));
        }
        out.insert(row.unwrap_or_default(), line.to_string());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_parse_and_bad_ones_are_named() {
        let s: ShardSpec = "2/5".parse().unwrap();
        assert_eq!((s.index, s.count), (2, 5));
        assert_eq!(s.rows(13).collect::<Vec<_>>(), [2, 7, 12]);
        assert_eq!(s.file_name(), "shard-2-of-5.jsonl");
        for (bad, says) in [
            ("3/2", "below N"),
            ("2/2", "below N"),
            ("0/0", "at least 1"),
            ("a/b", "whole numbers"),
            ("-1/2", "whole numbers"),
            ("+1/2", "whole numbers"),
            ("1/", "whole numbers"),
            ("3", "expected K/N"),
        ] {
            let e = bad.parse::<ShardSpec>().unwrap_err().to_string();
            assert!(
                e.contains("--shard") && e.contains(bad) && e.contains(says),
                "{bad}: {e}"
            );
        }
    }

    #[test]
    fn every_row_is_in_exactly_one_shard() {
        for n in 1..6 {
            let mut seen = vec![0; 17];
            for k in 0..n {
                for r in (ShardSpec { index: k, count: n }).rows(17) {
                    seen[r] += 1;
                }
            }
            assert!(seen.iter().all(|&c| c == 1), "N = {n}: {seen:?}");
        }
    }

    fn line(row: usize, path: &str, scored: bool) -> serde_json::Value {
        if scored {
            serde_json::json!({"row": row, "path": path, "score": row as f64})
        } else {
            serde_json::json!({"row": row, "path": path, "error": "unreadable"})
        }
    }

    #[test]
    fn a_resume_keeps_scored_lines_and_redoes_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let spec = ShardSpec { index: 1, count: 2 };
        let rows: Vec<(usize, String)> = spec.rows(8).map(|r| (r, format!("img{r}"))).collect();
        let mut out = ShardOutput::open(dir.path(), spec, &rows, 1).unwrap();
        out.append(1, &line(1, "img1", true)).unwrap();
        out.append(3, &line(3, "img3", false)).unwrap();
        drop(out); // interrupted
        let partial = dir.path().join("shard-1-of-2.jsonl.partial");
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&partial)
            .unwrap();
        write!(f, "{{\"row\": 5, \"path\": \"img5\", \"sco").unwrap(); // torn line
        let out = ShardOutput::open(dir.path(), spec, &rows, 1).unwrap();
        assert_eq!(out.resumed(), 1);
        assert!(out.is_done(1) && !out.is_done(3) && !out.is_done(5));
        let early = out.finish(&rows);
        assert!(early.unwrap_err().to_string().contains("row 3"));
        let mut out = ShardOutput::open(dir.path(), spec, &rows, 1).unwrap();
        for r in [3, 5, 7] {
            out.append(r, &line(r, &format!("img{r}"), r != 5)).unwrap();
        }
        let done = out.finish(&rows).unwrap();
        assert_eq!((done.lines, done.failed), (4, 1));
        assert!(!partial.exists());
        let text = std::fs::read_to_string(&done.path).unwrap();
        let got: Vec<u64> = text
            .lines()
            .map(|l| {
                serde_json::from_str::<serde_json::Value>(l).unwrap()["row"]
                    .as_u64()
                    .unwrap()
            })
            .collect();
        assert_eq!(got, [1, 3, 5, 7]);
        // A rerun of a finished shard keeps its scored rows and redoes only the failed one.
        let out = ShardOutput::open(dir.path(), spec, &rows, 1).unwrap();
        assert_eq!(out.resumed(), 3);
        assert!(!out.is_done(5));
    }

    #[test]
    fn output_of_another_list_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let spec = ShardSpec { index: 0, count: 1 };
        let rows = vec![(0, "a.png".to_string())];
        let mut out = ShardOutput::open(dir.path(), spec, &rows, 1).unwrap();
        out.append(0, &line(0, "a.png", true)).unwrap();
        drop(out);
        let other = vec![(0, "b.png".to_string())];
        let e = ShardOutput::open(dir.path(), spec, &other, 1)
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("another list") && e.contains("a.png"), "{e}");
    }

    #[test]
    fn an_unwritable_folder_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("file");
        std::fs::write(&file, b"x").unwrap();
        let spec = ShardSpec { index: 0, count: 1 };
        let e = ShardOutput::open(&file.join("out"), spec, &[], 1)
            .err()
            .unwrap()
            .to_string();
        assert!(
            e.contains("out") && e.contains("cannot create the output folder"),
            "{e}"
        );
    }
}
