use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use candle_core::{Device, Tensor, Var};
use candle_nn::VarMap;
#[cfg(feature = "hub")]
use hf_hub::{HFClient, HFError};

use crate::{ModelError, ResNet18, ResNetConfig, Result, TensorRole};

/// The default `--weights`: timm's ResNet18 trained on ImageNet-1k (recipe A1).
pub const DEFAULT_WEIGHTS: &str = "hub:timm/resnet18.a1_in1k";
/// The file fetched from a hub repository.
pub const HUB_WEIGHTS_FILE: &str = "model.safetensors";

/// Where initial weights come from (`--weights`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WeightsSource {
    /// `hub:owner/name[@revision]`: `model.safetensors` of a Hugging Face hub
    /// repository, through the local hub cache.
    Hub {
        /// `owner/name`.
        repo: String,
        /// A branch, tag or commit; `None` means `main`.
        revision: Option<String>,
    },
    /// `PATH.safetensors`: a local file.
    File(PathBuf),
    /// `none`: train from scratch.
    None,
}

impl Default for WeightsSource {
    /// [`DEFAULT_WEIGHTS`].
    fn default() -> Self {
        Self::Hub {
            repo: "timm/resnet18.a1_in1k".into(),
            revision: None,
        }
    }
}

impl FromStr for WeightsSource {
    type Err = ModelError;

    /// Parses `hub:owner/name[@revision]`, `PATH.safetensors` or `none`.
    fn from_str(spec: &str) -> Result<Self> {
        let bad = |reason: &str| ModelError::WeightsSource {
            spec: spec.to_string(),
            reason: format!(
                "{reason} (expected `hub:owner/name[@revision]`, `PATH.safetensors` or `none`)"
            ),
        };
        if spec.eq_ignore_ascii_case("none") {
            return Ok(Self::None);
        }
        if let Some(rest) = spec.strip_prefix("hub:") {
            let (repo, revision) = match rest.split_once('@') {
                Some((r, rev)) if !rev.is_empty() && !rev.contains(['/', '\\', '@']) => {
                    (r, Some(rev.to_string()))
                }
                Some(_) => return Err(bad("empty or malformed revision after `@`")),
                None => (rest, None),
            };
            let ok_part = |p: &str| {
                !p.is_empty()
                    && !p.starts_with('.')
                    && p.chars()
                        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
            };
            return match repo.split_once('/') {
                Some((owner, name)) if ok_part(owner) && ok_part(name) => Ok(Self::Hub {
                    repo: repo.to_string(),
                    revision,
                }),
                _ => Err(bad(
                    "hub repository must be `owner/name` (letters, digits, `-`, `_`, `.`)",
                )),
            };
        }
        if spec
            .rsplit_once('.')
            .is_some_and(|(_, ext)| ext.eq_ignore_ascii_case("safetensors"))
        {
            return Ok(Self::File(PathBuf::from(spec)));
        }
        Err(bad("not a hub id, a .safetensors file or `none`"))
    }
}

impl fmt::Display for WeightsSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Hub {
                repo,
                revision: None,
            } => write!(f, "hub:{repo}"),
            Self::Hub {
                repo,
                revision: Some(rev),
            } => write!(f, "hub:{repo}@{rev}"),
            Self::File(p) => write!(f, "{}", p.display()),
            Self::None => f.write_str("none"),
        }
    }
}

/// How the hub is reached. Build it with [`HubOptions::from_env`] or set the fields;
/// the cache folder is always passed to `hf-hub` explicitly.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HubOptions {
    /// The hub cache folder (holding `models--owner--name/`).
    pub cache_dir: PathBuf,
    /// Resolve from the cache only, never touching the network.
    pub offline: bool,
}

impl HubOptions {
    /// The cache folder and offline switch as the Python `huggingface_hub` reads them:
    /// `HF_HUB_CACHE`, else `HF_HOME/hub`, else `~/.cache/huggingface/hub`; offline when
    /// `HF_HUB_OFFLINE` is `1`, `true`, `yes` or `on`.
    pub fn from_env() -> Self {
        Self::from_lookup(|k| std::env::var_os(k))
    }

    /// [`HubOptions::from_env`] with the environment given as a lookup function.
    fn from_lookup(get: impl Fn(&str) -> Option<std::ffi::OsString>) -> Self {
        let env = |k: &str| get(k).filter(|v| !v.is_empty());
        let cache_dir = env("HF_HUB_CACHE")
            .map(PathBuf::from)
            .or_else(|| env("HF_HOME").map(|h| PathBuf::from(h).join("hub")))
            .or_else(|| env("HOME").map(|h| PathBuf::from(h).join(".cache/huggingface/hub")))
            .unwrap_or_else(|| PathBuf::from(".cache/huggingface/hub"));
        let offline = env("HF_HUB_OFFLINE").is_some_and(|v| {
            matches!(
                v.to_string_lossy().trim().to_ascii_lowercase().as_str(),
                "1" | "true" | "yes" | "on"
            )
        });
        Self { cache_dir, offline }
    }
}

/// Fetches `filename` of hub model repository `repo` (`owner/name`) at `revision`
/// (default `main`) through the cache in `hub.cache_dir` and returns its local path.
/// Offline, or when the network fails, the cached copy is used if there is one.
///
/// Errors: [`ModelError::HubUnavailable`] when the hub cannot be reached (or
/// `hub.offline` is set) and the file is not cached; [`ModelError::Hub`] when the hub
/// answers with an error (unknown repository or file, authentication, ...), or when
/// this build has no hub client (the default-on `hub` feature is off).
#[cfg(feature = "hub")]
pub fn fetch_hub_file(
    repo: &str,
    revision: Option<&str>,
    filename: &str,
    hub: &HubOptions,
) -> Result<PathBuf> {
    let hub_err = |reason: String| ModelError::Hub {
        repo: repo.to_string(),
        reason,
    };
    let (owner, name) = repo
        .split_once('/')
        .ok_or_else(|| hub_err("repository must be `owner/name`".into()))?;
    let client = HFClient::builder()
        .cache_dir(&hub.cache_dir)
        .build_sync()
        .map_err(|e| hub_err(format!("cannot start the hub client: {e}")))?;
    tracing::info!(
        repo,
        revision = revision.unwrap_or("main"),
        filename,
        offline = hub.offline,
        cache = %hub.cache_dir.display(),
        "fetching weights from the hub"
    );
    client
        .model(owner, name)
        .download_file()
        .filename(filename)
        .maybe_revision(revision.map(str::to_string))
        .local_files_only(hub.offline)
        .send()
        .map_err(|e| classify_hub_error(repo, &hub.cache_dir, e))
}

/// Without the `hub` feature: every hub source is an error that says so.
#[cfg(not(feature = "hub"))]
pub fn fetch_hub_file(
    repo: &str,
    _revision: Option<&str>,
    _filename: &str,
    _hub: &HubOptions,
) -> Result<PathBuf> {
    Err(ModelError::Hub {
        repo: repo.to_string(),
        reason: "this build has no hub client (cxr-models' `hub` feature is off); pass a \
                 .safetensors file instead"
            .into(),
    })
}

/// Splits hub failures into "cannot reach it / not cached" and "it said no".
#[cfg(feature = "hub")]
fn classify_hub_error(repo: &str, cache: &Path, e: HFError) -> ModelError {
    let unavailable = match &e {
        HFError::LocalEntryNotFound { .. }
        | HFError::Request { .. }
        | HFError::RateLimited { .. }
        | HFError::CacheLockTimeout { .. } => true,
        HFError::Http { context } => context.status.is_server_error(),
        _ => false,
    };
    if unavailable {
        ModelError::HubUnavailable {
            repo: repo.to_string(),
            cache: cache.to_path_buf(),
            reason: e.to_string(),
        }
    } else {
        ModelError::Hub {
            repo: repo.to_string(),
            reason: e.to_string(),
        }
    }
}

impl WeightsSource {
    /// The local file holding the weights: the path itself, the hub file fetched
    /// through `hub` (see [`fetch_hub_file`]), or `None` for `none`.
    pub fn resolve(&self, hub: &HubOptions) -> Result<Option<PathBuf>> {
        match self {
            Self::None => Ok(None),
            Self::File(p) => Ok(Some(p.clone())),
            Self::Hub { repo, revision } => {
                fetch_hub_file(repo, revision.as_deref(), HUB_WEIGHTS_FILE, hub).map(Some)
            }
        }
    }
}

/// What [`load_resnet18_weights`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadReport {
    /// The file read.
    pub path: PathBuf,
    /// Number of tensors copied into the model.
    pub loaded: usize,
    /// True when `fc` came from the file too (its class count matched); false when the
    /// model keeps its freshly initialised head (e.g. an ImageNet 1000-class checkpoint).
    pub head_loaded: bool,
    /// Tensors in the file that were skipped: the foreign head and `num_batches_tracked`.
    pub skipped: Vec<String>,
}

/// Reads a safetensors file into `map` (name → tensor on the CPU).
fn read_safetensors(path: &Path) -> Result<HashMap<String, Tensor>> {
    if !path.is_file() {
        return Err(ModelError::Weights {
            path: path.to_path_buf(),
            reason: "no such file".into(),
        });
    }
    candle_core::safetensors::load(path, &Device::Cpu).map_err(|e| ModelError::Weights {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })
}

/// Copies a ResNet18 checkpoint (torchvision/timm names) from `path` into `varmap`,
/// which should already hold an initialised model ([`crate::init_resnet18`]) so that
/// a head the file does not provide keeps its initial weights.
///
/// - Every body tensor (convolutions, BatchNorm weights, biases and running
///   statistics) must be present with its shape: otherwise
///   [`ModelError::MissingTensor`] or [`ModelError::ShapeMismatch`] naming the key.
/// - `fc.*` is loaded only when its shape matches the model's head; an ImageNet
///   head (1000 classes) is skipped and listed in [`LoadReport::skipped`].
/// - `*.num_batches_tracked` is ignored; any other tensor is
///   [`ModelError::UnexpectedTensor`] (another architecture's weights).
/// - Values are converted to each variable's dtype and device.
pub fn load_resnet18_weights(
    varmap: &VarMap,
    cfg: &ResNetConfig,
    path: &Path,
) -> Result<LoadReport> {
    let tensors = read_safetensors(path)?;
    let specs = ResNet18::tensor_specs(cfg);
    let mut skipped = Vec::new();
    // Reject foreign tensors first: a deeper ResNet holds every ResNet18 name too.
    let mut names: Vec<&String> = tensors.keys().collect();
    names.sort();
    for name in names {
        let known = specs.iter().any(|s| &s.name == name);
        if known {
            continue;
        }
        let tracked_of_bn = name
            .strip_suffix(".num_batches_tracked")
            .is_some_and(|m| ResNet18::tensor_role(&format!("{m}.running_mean")).is_some());
        if tracked_of_bn {
            skipped.push(name.clone());
            continue;
        }
        return Err(ModelError::UnexpectedTensor {
            path: path.to_path_buf(),
            key: name.clone(),
        });
    }
    let head_fits = specs
        .iter()
        .filter(|s| s.role == TensorRole::Head)
        .all(|s| {
            tensors
                .get(&s.name)
                .is_some_and(|t| t.dims() == s.shape.as_slice())
        });
    let mut staged = Vec::with_capacity(specs.len());
    for spec in &specs {
        if spec.role == TensorRole::Head && !head_fits {
            if tensors.contains_key(&spec.name) {
                skipped.push(spec.name.clone());
            }
            continue;
        }
        let t = tensors
            .get(&spec.name)
            .ok_or_else(|| ModelError::MissingTensor {
                path: path.to_path_buf(),
                key: spec.name.clone(),
            })?;
        if t.dims() != spec.shape.as_slice() {
            return Err(ModelError::ShapeMismatch {
                path: path.to_path_buf(),
                key: spec.name.clone(),
                expected: spec.shape.clone(),
                actual: t.dims().to_vec(),
            });
        }
        staged.push((spec.name.clone(), t));
    }
    // Every check passed: only now touch the model.
    let mut data = varmap
        .data()
        .lock()
        .map_err(|_| candle_core::Error::Msg("VarMap lock poisoned".into()))?;
    let loaded = staged.len();
    for (name, t) in staged {
        match data.get(&name) {
            Some(var) => {
                var.set(&t.to_device(var.device())?.to_dtype(var.dtype())?)?;
            }
            None => {
                data.insert(
                    name,
                    Var::from_tensor(&t.to_dtype(candle_core::DType::F32)?)?,
                );
            }
        }
    }
    skipped.sort();
    tracing::info!(
        path = %path.display(),
        loaded,
        head_loaded = head_fits,
        skipped = skipped.len(),
        "loaded ResNet18 weights"
    );
    Ok(LoadReport {
        path: path.to_path_buf(),
        loaded,
        head_loaded: head_fits,
        skipped,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_weights_sources() {
        assert_eq!(
            WeightsSource::from_str(DEFAULT_WEIGHTS).unwrap(),
            WeightsSource::default()
        );
        assert_eq!(
            "hub:timm/resnet18.a1_in1k@v1.0"
                .parse::<WeightsSource>()
                .unwrap(),
            WeightsSource::Hub {
                repo: "timm/resnet18.a1_in1k".into(),
                revision: Some("v1.0".into())
            }
        );
        assert_eq!(
            "NONE".parse::<WeightsSource>().unwrap(),
            WeightsSource::None
        );
        assert_eq!(
            "runs/a/model.safetensors".parse::<WeightsSource>().unwrap(),
            WeightsSource::File("runs/a/model.safetensors".into())
        );
        for bad in [
            "hub:timm",
            "hub:/x",
            "hub:a/b/c",
            "hub:a/b@",
            "hub:../x",
            "model.bin",
            "",
        ] {
            let err = bad.parse::<WeightsSource>().unwrap_err();
            assert!(
                matches!(err, ModelError::WeightsSource { .. }),
                "{bad}: {err}"
            );
            assert!(!err.is_hub_unavailable());
        }
        for s in [
            "hub:timm/resnet18.a1_in1k",
            "hub:a/b@main",
            "x.safetensors",
            "none",
        ] {
            assert_eq!(s.parse::<WeightsSource>().unwrap().to_string(), s);
        }
    }

    #[test]
    fn env_options_follow_huggingface_hub_rules() {
        let opts = |vars: &[(&str, &str)]| {
            let vars: HashMap<String, String> = vars
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            HubOptions::from_lookup(|k| vars.get(k).map(Into::into))
        };
        let o = opts(&[("HOME", "/home/u")]);
        assert_eq!(o.cache_dir, PathBuf::from("/home/u/.cache/huggingface/hub"));
        assert!(!o.offline);
        let o = opts(&[
            ("HOME", "/home/u"),
            ("HF_HOME", "/hf"),
            ("HF_HUB_OFFLINE", "1"),
        ]);
        assert_eq!(o.cache_dir, PathBuf::from("/hf/hub"));
        assert!(o.offline);
        let o = opts(&[
            ("HF_HOME", "/hf"),
            ("HF_HUB_CACHE", "/c"),
            ("HF_HUB_OFFLINE", "0"),
        ]);
        assert_eq!(o.cache_dir, PathBuf::from("/c"));
        assert!(!o.offline);
        assert!(opts(&[("HF_HUB_OFFLINE", "True")]).offline);
    }
}
