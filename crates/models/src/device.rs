use candle_core::{Device, DeviceLocation};

use crate::{ModelError, Result};

/// Parses a device spec: `cpu`, `cuda`, `cuda:N`, `metal`, or `auto` (CUDA if this
/// build has it and a GPU answers, else Metal likewise, else CPU).
///
/// A CUDA or Metal request on a build without that cargo feature is an error that
/// names the feature to enable.
pub fn parse_device(spec: &str) -> Result<Device> {
    let err = |reason: String| ModelError::Device {
        spec: spec.to_string(),
        reason,
    };
    let s = spec.trim().to_ascii_lowercase();
    match s.as_str() {
        "cpu" => Ok(Device::Cpu),
        "auto" => {
            if candle_core::utils::cuda_is_available()
                && let Ok(d) = Device::new_cuda(0)
            {
                return Ok(d);
            }
            if candle_core::utils::metal_is_available()
                && let Ok(d) = Device::new_metal(0)
            {
                return Ok(d);
            }
            Ok(Device::Cpu)
        }
        "metal" => {
            if !candle_core::utils::metal_is_available() {
                return Err(err(
                    "this build has no Metal support (rebuild with `--features metal` on macOS)"
                        .into(),
                ));
            }
            Device::new_metal(0).map_err(|e| err(e.to_string()))
        }
        _ => {
            let ordinal = match s.strip_prefix("cuda") {
                Some("") => 0,
                Some(rest) => rest
                    .strip_prefix(':')
                    .and_then(|n| n.parse::<usize>().ok())
                    .ok_or_else(|| err("expected cuda or cuda:N".into()))?,
                None => return Err(err("expected cpu, cuda[:N], metal or auto".into())),
            };
            if !candle_core::utils::cuda_is_available() {
                return Err(err(
                    "this build has no CUDA support (rebuild with `--features cuda`)".into(),
                ));
            }
            Device::new_cuda(ordinal).map_err(|e| err(e.to_string()))
        }
    }
}

/// A short name for a device with its ordinal (`cpu`, `cuda:0`, `metal:0`), as logged
/// and written to `config.json`.
pub fn device_name(device: &Device) -> String {
    match device.location() {
        DeviceLocation::Cpu => "cpu".into(),
        DeviceLocation::Cuda { gpu_id } => format!("cuda:{gpu_id}"),
        DeviceLocation::Metal { gpu_id } => format!("metal:{gpu_id}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_specs() {
        assert!(parse_device("cpu").unwrap().is_cpu());
        assert_eq!(device_name(&parse_device(" CPU ").unwrap()), "cpu");
        assert!(parse_device("auto").is_ok());
        for bad in ["gpu", "cuda:x", "cuda:", "", "tpu:0"] {
            assert!(
                matches!(parse_device(bad), Err(ModelError::Device { .. })),
                "{bad}"
            );
        }
        if !candle_core::utils::cuda_is_available() {
            let e = parse_device("cuda:0").unwrap_err().to_string();
            assert!(e.contains("--features cuda"), "{e}");
        }
    }
}
