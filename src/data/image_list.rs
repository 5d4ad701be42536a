//! Lists of images to score (`cras predict --manifest`), as rows in file order.
//!
//! A list is one of:
//! - a dataset manifest ([`super::manifest`]: `.csv` with the `class,split,label,image` header,
//!   or `.jsonl`), read by [`super::manifest::read_manifest`] with all its checks (a missing
//!   image is an error naming the line); every row of every split is listed, with its class;
//! - a one-column `.csv` whose header is `image` (or `path`): one image per row, no class;
//! - any other file (`.txt`, ...): one image path per line; blank lines and lines starting
//!   with `#` are skipped; no class.
//!
//! Relative paths are relative to the list's folder. Rows of a plain list are not checked here:
//! an unreadable image is reported when it is scored, as `cras predict` does. A list without
//! any image is an error.

use std::path::{Path, PathBuf};

use crate::{Error, Result};

/// One row of a list.
#[derive(Clone, Debug, PartialEq)]
pub struct ListedImage {
    /// The image file (joined to the list's folder).
    pub image: PathBuf,
    /// The class of a dataset manifest's row (`None` for plain lists).
    pub class: Option<String>,
}

/// Reads the list at `path` (see the module docs).
pub fn read_image_list(path: &Path) -> Result<Vec<ListedImage>> {
    let base = path.parent().unwrap_or(Path::new("."));
    let ext = path
        .extension()
        .map(|e| e.to_string_lossy().to_ascii_lowercase())
        .unwrap_or_default();
    let rows = match ext.as_str() {
        "csv" => match one_column_csv(path, base)? {
            Some(rows) => rows,
            None => from_manifest(path)?,
        },
        "jsonl" => from_manifest(path)?,
        _ => text_lines(path, base)?,
    };
    if rows.is_empty() {
        return Err(Error::dataset(path, "the list holds no images"));
    }
    Ok(rows)
}

fn from_manifest(path: &Path) -> Result<Vec<ListedImage>> {
    Ok(super::manifest::read_manifest(path)?
        .into_iter()
        .map(|s| ListedImage {
            image: s.image,
            class: Some(s.class),
        })
        .collect())
}

/// The rows of a CSV whose header is the single column `image` or `path`; `None` for any
/// other header (a dataset manifest).
fn one_column_csv(path: &Path, base: &Path) -> Result<Option<Vec<ListedImage>>> {
    let mut reader = csv::ReaderBuilder::new()
        .trim(csv::Trim::All)
        .flexible(false)
        .from_path(path)
        .map_err(|e| Error::dataset(path, format!("cannot read the CSV file: {e}")))?;
    let header = reader
        .headers()
        .map_err(|e| Error::dataset(path, format!("cannot read the CSV header: {e}")))?;
    let single =
        header.len() == 1 && matches!(header[0].to_ascii_lowercase().as_str(), "image" | "path");
    if !single {
        return Ok(None);
    }
    let mut rows = Vec::new();
    for record in reader.records() {
        let (record, line) = super::manifest::csv_record(path, record)?;
        match record.get(0).map(str::trim) {
            Some(p) if !p.is_empty() => rows.push(ListedImage {
                image: base.join(p),
                class: None,
            }),
            _ => {
                return Err(Error::dataset(
                    path,
                    format!("line {line}: the path is empty"),
                ))
            }
        }
    }
    Ok(Some(rows))
}

/// One path per line (blank lines and `#` comments skipped).
fn text_lines(path: &Path, base: &Path) -> Result<Vec<ListedImage>> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    Ok(text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| ListedImage {
            image: base.join(l),
            class: None,
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_three_kinds_of_list_are_read_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::write(d.join("a.png"), b"x").unwrap();
        std::fs::write(d.join("b.png"), b"x").unwrap();
        std::fs::write(d.join("list.txt"), "# images\nb.png\n\n a.png \n").unwrap();
        let rows = read_image_list(&d.join("list.txt")).unwrap();
        assert_eq!(rows[0].image, d.join("b.png"));
        assert_eq!(rows[1].image, d.join("a.png"));
        assert!(rows.iter().all(|r| r.class.is_none()));
        std::fs::write(d.join("one.csv"), "image\nmissing.png\nb.png\n").unwrap();
        let rows = read_image_list(&d.join("one.csv")).unwrap();
        assert_eq!(rows.len(), 2, "a plain list's rows are not checked here");
        assert_eq!(rows[1].image, d.join("b.png"));
        std::fs::write(
            d.join("rows.csv"),
            "class,split,label,image\nbolt,test,normal,b.png\nnut,train,normal,a.png\n",
        )
        .unwrap();
        let rows = read_image_list(&d.join("rows.csv")).unwrap();
        assert_eq!(rows[0].class.as_deref(), Some("bolt"));
        assert_eq!(rows[1].image, d.join("a.png"));
        assert_eq!(rows[1].class.as_deref(), Some("nut"));
    }

    #[test]
    fn an_empty_list_and_a_bad_manifest_row_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::write(d.join("empty.txt"), "# nothing\n\n").unwrap();
        let e = read_image_list(&d.join("empty.txt"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("empty.txt") && e.contains("no images"), "{e}");
        std::fs::write(d.join("empty.csv"), "image\n").unwrap();
        let e = read_image_list(&d.join("empty.csv"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("no images"), "{e}");
        std::fs::write(
            d.join("rows.csv"),
            "class,split,label,image\nbolt,test,normal,gone.png\n",
        )
        .unwrap();
        let e = read_image_list(&d.join("rows.csv"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("line 2") && e.contains("gone.png"), "{e}");
    }
}
