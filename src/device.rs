//! Device selection: `auto` (the GPU when the binary was built with the `cuda` feature and a GPU
//! is present, else the CPU), `cpu`, or `cuda[:N]`; and the host CPU in words (model, logical
//! cores, the instruction sets the low-precision runtimes use), for benchmark figures and
//! measured confirmation bands, whose values depend on it.

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

/// The instruction-set flags (as `/proc/cpuinfo` names them) that decide how fast and how
/// exactly the runtimes' low-precision kernels run, in the order they are reported.
pub const ISA_FLAGS: [&str; 6] = [
    "avx2",
    "avx512f",
    "avx512_vnni",
    "avx512_bf16",
    "amx_bf16",
    "amx_int8",
];

/// A CPU as the low-precision runtimes see it: its model, logical cores and the instruction
/// sets of [`ISA_FLAGS`] it has. Stored with a measured confirmation band, whose errors depend
/// on those instruction sets.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct HostCpu {
    /// The model name (`/proc/cpuinfo`'s `model name`), or `unknown <arch>` elsewhere.
    pub model: String,
    pub logical_cores: usize,
    /// Those of [`ISA_FLAGS`] present, in that order (empty when unknown).
    pub isa: Vec<String>,
}

impl HostCpu {
    /// This machine's CPU (from `/proc/cpuinfo` on Linux; elsewhere the architecture and the
    /// core count, instruction sets unknown).
    pub fn here() -> Self {
        std::fs::read_to_string("/proc/cpuinfo")
            .ok()
            .and_then(|text| Self::from_cpuinfo(&text))
            .unwrap_or_else(|| Self {
                model: format!("unknown {}", std::env::consts::ARCH),
                logical_cores: std::thread::available_parallelism().map_or(0, |n| n.get()),
                isa: Vec::new(),
            })
    }

    /// From the text of a `/proc/cpuinfo` (`None` when it names no model).
    pub fn from_cpuinfo(text: &str) -> Option<Self> {
        let field = |name: &str| {
            text.lines().find_map(|l| {
                let (key, value) = l.split_once(':')?;
                (key.trim() == name).then(|| value.trim().to_string())
            })
        };
        let model = field("model name")?;
        let logical_cores = text
            .lines()
            .filter(|l| l.split(':').next().map(str::trim) == Some("processor"))
            .count();
        let flags = field("flags").unwrap_or_default();
        let isa = ISA_FLAGS
            .iter()
            .filter(|f| flags.split_whitespace().any(|x| x == **f))
            .map(|f| f.to_string())
            .collect();
        Some(Self {
            model,
            logical_cores,
            isa,
        })
    }

    /// Whether its instruction sets are known (read from `/proc/cpuinfo`).
    pub fn known(&self) -> bool {
        !self.model.starts_with("unknown ")
    }

    /// In words, e.g. `AMD EPYC, 2 logical cores, avx2 avx512f avx512_vnni avx512_bf16, no AMX`.
    pub fn describe(&self) -> String {
        let noun = if self.logical_cores == 1 {
            "core"
        } else {
            "cores"
        };
        let mut out = format!("{}, {} logical {noun}", self.model, self.logical_cores);
        if self.known() {
            if !self.isa.is_empty() {
                out += &format!(", {}", self.isa.join(" "));
            }
            let amx = self.isa.iter().any(|f| f.starts_with("amx"));
            out += if amx { ", AMX" } else { ", no AMX" };
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cpuinfo(model: &str, flags: &str, cores: usize) -> String {
        (0..cores)
            .map(|i| format!("processor\t: {i}\nvendor_id\t: x\nmodel name\t: {model}\nflags\t\t: {flags}\n\n"))
            .collect()
    }

    #[test]
    fn cpuinfo_names_the_model_the_cores_and_the_low_precision_instruction_sets() {
        let describe = |text: &str| HostCpu::from_cpuinfo(text).map(|c| c.describe());
        let amd = cpuinfo(
            "AMD EPYC",
            "fpu sse avx2 avx512f avx512_bf16 avx512_vnni avx512vl",
            2,
        );
        assert_eq!(
            describe(&amd).unwrap(),
            "AMD EPYC, 2 logical cores, avx2 avx512f avx512_vnni avx512_bf16, no AMX"
        );
        let intel = cpuinfo(
            "Intel(R) Xeon(R) Platinum 8480+",
            "avx2 avx512f avx512_vnni avx512_bf16 amx_bf16 amx_tile amx_int8",
            4,
        );
        assert_eq!(
            describe(&intel).unwrap(),
            "Intel(R) Xeon(R) Platinum 8480+, 4 logical cores, avx2 avx512f avx512_vnni \
             avx512_bf16 amx_bf16 amx_int8, AMX"
        );
        // A flag is matched whole: avx512_bf16x is not avx512_bf16.
        let old = cpuinfo("Old", "sse4_2 avx512_bf16x", 1);
        assert_eq!(describe(&old).unwrap(), "Old, 1 logical core, no AMX");
        assert_eq!(describe("processor : 0\nflags : avx2\n"), None);
        assert!(HostCpu::here().describe().contains("logical core"));
    }

    #[test]
    fn cpu_and_bad_names() {
        assert!(select("cpu").unwrap().is_cpu());
        assert!(select("auto").is_ok());
        let err = select("tpu").unwrap_err().to_string();
        assert!(err.contains("tpu") && err.contains("expected"), "{err}");
        assert!(select("cuda:x").is_err());
    }
}
