//! Device selection: `auto` (the GPU when the binary was built with the `cuda` feature and a GPU
//! is present, else the CPU), `cpu`, or `cuda[:N]`.

use crate::{Error, Result};
use candle_core::Device;

/// Parses a device name and returns the candle device. The choice is logged.
pub fn select(name: &str) -> Result<Device> {
    let name = name.trim().to_ascii_lowercase();
    let dev = match name.as_str() {
        "cpu" => Device::Cpu,
        "auto" => {
            if cfg!(feature = "cuda") && candle_core::utils::cuda_is_available() {
                Device::new_cuda(0)?
            } else {
                Device::Cpu
            }
        }
        s if s == "cuda" || s.starts_with("cuda:") => {
            let ordinal: usize = match s.strip_prefix("cuda:") {
                None => 0,
                Some(n) => n
                    .parse()
                    .map_err(|_| Error::config("device", s, "expected cuda or cuda:N"))?,
            };
            if !cfg!(feature = "cuda") {
                return Err(Error::config(
                    "device",
                    s,
                    "this binary was built without CUDA support; rebuild with `cargo build --release --features cuda`",
                ));
            }
            Device::new_cuda(ordinal)?
        }
        other => {
            return Err(Error::config(
                "device",
                other,
                "expected auto, cpu, cuda or cuda:N",
            ))
        }
    };
    tracing::info!(device = ?dev, "selected device");
    Ok(dev)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_and_bad_names() {
        assert!(select("cpu").unwrap().is_cpu());
        assert!(select("auto").is_ok());
        let err = select("tpu").unwrap_err().to_string();
        assert!(err.contains("tpu") && err.contains("expected"), "{err}");
        assert!(select("cuda:x").is_err());
    }
}
