//! Plain tables of strings in three renderings: aligned text for a terminal, Markdown, and CSV.
//!
//! Inputs: a header row and data rows of cells (`String`). Rows may be shorter or longer than
//! the header: the table's width is the longest row, missing cells are empty.
//! Outputs: one `String` per table, each line ending in `\n`.
//! - [`text_table`]: columns padded to a common width (by `char` count), two spaces apart, a
//!   dashed rule under the header; every line has the same width.
//! - [`markdown_table`]: GitHub-flavoured pipes; `|` in a cell is escaped, newlines become spaces.
//! - [`csv_table`]: RFC 4180 quoting by the `csv` crate (a cell holding `,`, `"`, CR or LF is
//!   quoted, quotes doubled).
//!
//! [`pct`] formats a fraction as a percentage with two decimals, `-` when undefined.

/// Number of columns: the longest of the header and the rows.
fn column_count(header: &[String], rows: &[Vec<String>]) -> usize {
    rows.iter().map(Vec::len).fold(header.len(), usize::max)
}

/// All rows (header first) padded with empty cells to `n` columns.
fn padded_rows<'a>(header: &'a [String], rows: &'a [Vec<String>], n: usize) -> Vec<Vec<&'a str>> {
    std::iter::once(header)
        .chain(rows.iter().map(Vec::as_slice))
        .map(|r| {
            (0..n)
                .map(|i| r.get(i).map_or("", String::as_str))
                .collect()
        })
        .collect()
}

fn width(s: &str) -> usize {
    s.chars().count()
}

/// An aligned text table: numbers are right-aligned (cells that parse as a number or are `-`),
/// other cells left-aligned; a rule of dashes under the header.
pub fn text_table(header: &[String], rows: &[Vec<String>]) -> String {
    let n = column_count(header, rows);
    let all = padded_rows(header, rows, n);
    let widths: Vec<usize> = (0..n)
        .map(|c| all.iter().map(|r| width(r[c])).max().unwrap_or(0))
        .collect();
    let is_numeric = |s: &str| s == "-" || s.parse::<f64>().is_ok();
    let render = |cells: &[&str]| -> String {
        let parts: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(cell, &w)| {
                if is_numeric(cell) {
                    format!("{cell:>w$}")
                } else {
                    format!("{cell:<w$}")
                }
            })
            .collect();
        parts.join("  ") + "\n"
    };
    let mut out = String::new();
    let mut lines = all.iter();
    if let Some(head) = lines.next() {
        out.push_str(&render(head));
        let rule: Vec<String> = widths.iter().map(|&w| "-".repeat(w)).collect();
        out.push_str(&(rule.join("  ") + "\n"));
    }
    for row in lines {
        out.push_str(&render(row));
    }
    out
}

fn markdown_cell(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('|', "\\|")
        .replace(['\r', '\n'], " ")
}

/// A GitHub-flavoured Markdown table.
pub fn markdown_table(header: &[String], rows: &[Vec<String>]) -> String {
    let n = column_count(header, rows);
    let all = padded_rows(header, rows, n);
    let line = |cells: &[&str]| -> String {
        let parts: Vec<String> = cells.iter().map(|c| markdown_cell(c)).collect();
        format!("| {} |\n", parts.join(" | "))
    };
    let mut out = String::new();
    for (i, row) in all.iter().enumerate() {
        out.push_str(&line(row));
        if i == 0 {
            out.push_str(&format!("|{}\n", "---|".repeat(n)));
        }
    }
    out
}

/// A CSV document (header line, then one line per row), written by the `csv` crate: a cell
/// holding `,`, `"`, CR or LF is quoted with its quotes doubled; lines end in `\n`.
pub fn csv_table(header: &[String], rows: &[Vec<String>]) -> String {
    let n = column_count(header, rows);
    let mut w = csv::Writer::from_writer(Vec::new());
    for row in padded_rows(header, rows, n) {
        w.write_record(&row)
            .expect("writing CSV into memory cannot fail");
    }
    let bytes = w
        .into_inner()
        .expect("flushing CSV into memory cannot fail");
    String::from_utf8(bytes).expect("CSV of UTF-8 cells is UTF-8")
}

/// A fraction as a percentage with two decimals (`0.9876` -> `"98.76"`); `"-"` for None or a
/// non-finite value.
pub fn pct(v: Option<f64>) -> String {
    match v {
        Some(x) if x.is_finite() => format!("{:.2}", x * 100.0),
        _ => "-".to_string(),
    }
}
