//! MVTec AD layout: `<root>/<class>/train/good/*`, `<root>/<class>/test/<good|defect>/*`,
//! `<root>/<class>/ground_truth/<defect>/<stem>_mask.png`. Read by [`crate::data::discover`]
//! (its order and checks, unchanged) and flattened into rows: train, then test. Training and
//! evaluation load it through [`crate::data::discover_splits`] directly
//! ([`super::load_splits`]), which reads only the splits they use.

use std::path::Path;

use crate::data::dataset::discover;
use crate::data::manifest::{samples_of, Sample};
use crate::Result;

/// The rows of the MVTec AD dataset at `root`, restricted to `classes` when given.
pub fn samples(root: &Path, classes: Option<&[String]>) -> Result<Vec<Sample>> {
    Ok(samples_of(&discover(root, classes)?))
}
