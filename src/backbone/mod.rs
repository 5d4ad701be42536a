//! backbone: placeholder, filled in by its issue.
