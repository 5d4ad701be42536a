//! anomaly_map: placeholder
