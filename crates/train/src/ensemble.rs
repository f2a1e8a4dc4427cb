//! [`ensemble`]: finished runs combined into one run folder whose model is the mean
//! of their logits.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use candle_core::Tensor;
use cxr_data::Dataset;
use cxr_models::{Classifier, load_ensemble, member_prefix, parse_device};
use cxr_runfolder::{
    DataRecord, EnsembleMember, MemberScore, Metrics, ModelCard, RunConfig, RunLock, RunStatus,
    Timing, names,
};
use tracing::info;

use crate::trainer::{
    Net, Outcome, RunOptions, RunSummary, predict_logits, rayon_threads, sized_splits,
    write_outcome, write_safetensors,
};
use crate::{Result, TrainError};

/// Each member's test logits (from its `predictions.csv`) against the ensemble's: the
/// AUC gain with the paired DeLong test. Reported only; nothing is chosen by it.
fn member_scores(runs: &[Member], labels: &[u8], ensemble: &[f32]) -> Result<Vec<MemberScore>> {
    let ens: Vec<f64> = ensemble.iter().map(|&z| z as f64).collect();
    let mut out = Vec::with_capacity(runs.len());
    for m in runs {
        let rows = cxr_runfolder::read_predictions(&m.dir)?;
        let mut z = vec![f64::NAN; labels.len()];
        for r in rows.iter().filter(|r| r.split == "test") {
            if let (Some(slot), Some(logit)) = (z.get_mut(r.index), r.logit) {
                *slot = logit;
            }
        }
        if z.iter().any(|v| !v.is_finite()) {
            return Err(TrainError::Ensemble {
                path: m.dir.join(names::PREDICTIONS),
                reason: format!(
                    "does not hold a logit for each of the {} test images",
                    labels.len()
                ),
            });
        }
        let t =
            cxr_metrics::delong_test(labels, &ens, &z).map_err(|source| TrainError::Metrics {
                split: "test".into(),
                source,
            })?;
        out.push(MemberScore {
            run: m.dir.display().to_string(),
            seed: m.config.train.seed,
            val_auc: m.metrics.val.auc,
            test_auc: t.auc_b,
            test_auc_gain: t.auc_a - t.auc_b,
            delong_z: t.z,
            delong_p: t.p_value,
        });
    }
    Ok(out)
}

/// A member run as read from its folder.
struct Member {
    dir: PathBuf,
    config: RunConfig,
    metrics: Metrics,
}

impl Member {
    fn open(dir: &Path) -> Result<Self> {
        let bad = |reason: String| TrainError::Ensemble {
            path: dir.to_path_buf(),
            reason,
        };
        let config = RunConfig::read(&dir.join(names::CONFIG))?;
        if config.status != RunStatus::Finished {
            return Err(bad(format!(
                "the run's status is `{}`; only finished runs can be members",
                config.status.as_str()
            )));
        }
        if config.provenance.ensemble.is_some() {
            return Err(bad("is itself an ensemble; give its members instead".into()));
        }
        let card = ModelCard::of_run(dir)?;
        if card.members.is_some() {
            return Err(bad(
                "model.json describes an ensemble; give its members instead".into(),
            ));
        }
        let metrics = Metrics::read(&dir.join(names::METRICS))?;
        Ok(Self {
            dir: dir.to_path_buf(),
            config,
            metrics,
        })
    }
}

/// Combines the finished runs `members` (trained on `data`) into the run folder
/// `out_dir`: its model is the equal-weight mean of the members' logits, scored on
/// validation and test like a trained model (temperature, operating points and
/// scaling fitted on validation; `metrics.json`, `predictions.csv`, the curves),
/// with `model.json` listing the members and `model.safetensors` holding every
/// member's weights (see `cxr_models::load_ensemble`). `config.json` carries the
/// first member's settings and the member list (`ensemble`). Nothing is trained.
///
/// The members must share the network, input size, normalisation and data (the
/// data's sha256); none may be an ensemble. Equal weights: nothing about the
/// combination is fitted, so validation is spent only on what a single run fits too.
pub fn ensemble(
    members: &[PathBuf],
    data: &Dataset,
    out_dir: &Path,
    opts: &RunOptions,
) -> Result<RunSummary> {
    let started = Instant::now();
    if members.len() < 2 {
        return Err(TrainError::Config {
            field: "members".into(),
            reason: format!("an ensemble needs at least two runs, got {}", members.len()),
        });
    }
    let runs = members
        .iter()
        .map(|d| Member::open(d))
        .collect::<Result<Vec<_>>>()?;
    let first = &runs[0].config.train;
    for m in &runs {
        let t = &m.config.train;
        let bad = |what: &str, a: String, b: String| TrainError::Ensemble {
            path: m.dir.clone(),
            reason: format!(
                "its {what} ({a}) differs from the first member's ({b}); members share the \
                 network and its input"
            ),
        };
        if t.model != first.model {
            return Err(bad(
                "network",
                t.model.as_str().into(),
                first.model.as_str().into(),
            ));
        }
        if t.image_size != first.image_size {
            return Err(bad(
                "input size",
                t.image_size.to_string(),
                first.image_size.to_string(),
            ));
        }
        if (t.normalize_mean, t.normalize_std) != (first.normalize_mean, first.normalize_std) {
            return Err(bad(
                "normalisation",
                format!("{}, {}", t.normalize_mean, t.normalize_std),
                format!("{}, {}", first.normalize_mean, first.normalize_std),
            ));
        }
        if t.val_from_train.is_some()
            && (t.val_from_train != first.val_from_train || t.seed != first.seed)
        {
            return Err(TrainError::Ensemble {
                path: m.dir.clone(),
                reason: "drew its validation split from train with another seed or fraction \
                         than the first member: the ensemble's validation images would be \
                         some member's training images"
                    .into(),
            });
        }
        if m.config.data.sha256 != data.sha256 {
            return Err(TrainError::Ensemble {
                path: m.dir.clone(),
                reason: format!(
                    "trained on data with sha256 {}, but {} has {}",
                    m.config.data.sha256,
                    data.source.display(),
                    data.sha256
                ),
            });
        }
    }
    cxr_runfolder::ensure_writable_dir(out_dir)?;
    let lock = RunLock::acquire(out_dir)?;
    lock.remove_stale_temps();

    let cfg = first.clone();
    let device = parse_device(&cfg.device)?;
    // Fitting the combination would spend validation; equal weights do not.
    let weight = 1.0 / runs.len() as f64;
    let mut tensors: HashMap<String, Tensor> = HashMap::new();
    for (i, m) in runs.iter().enumerate() {
        let path = m.dir.join(names::MODEL);
        let own =
            candle_core::safetensors::load(&path, &device).map_err(|e| TrainError::Ensemble {
                path: path.clone(),
                reason: format!("cannot read the weights: {e}"),
            })?;
        let prefix = member_prefix(i);
        tensors.extend(own.into_iter().map(|(k, t)| (format!("{prefix}.{k}"), t)));
    }
    let weights_path = out_dir.join(names::MODEL);
    write_safetensors(&weights_path, &tensors)?;
    // Scored from the file written, so what is measured is what is kept.
    let model = load_ensemble(
        cfg.model.as_str(),
        &weights_path,
        &vec![weight; runs.len()],
        &device,
    )?;
    let net = Net {
        model: Box::new(model) as Box<dyn Classifier>,
        name: cfg.model.as_str(),
    };

    let (train_set, val_set, test_set) = sized_splits(data, cfg.image_size)?;
    let listed: Vec<EnsembleMember> = runs
        .iter()
        .map(|m| EnsembleMember {
            run: m.dir.display().to_string(),
            seed: m.config.train.seed,
            image_size: m.config.train.image_size,
            epochs: m.config.train.total_epochs(),
            weight,
            best_epoch: m.metrics.best_epoch,
            val_auc: Some(m.metrics.val.auc),
            test_auc: Some(m.metrics.test.auc),
        })
        .collect();
    info!(
        members = runs.len(),
        network = cfg.model.as_str(),
        size = cfg.image_size,
        "ensemble: scoring validation and test"
    );
    let mut provenance = opts.provenance.clone();
    provenance.ensemble = Some(listed.clone());
    let mut config = RunConfig {
        train: cfg.clone(),
        data: DataRecord {
            source: data.source.display().to_string(),
            sha256: data.sha256.clone(),
            train: train_set.len(),
            val: val_set.len(),
            test: test_set.len(),
            excluded_duplicates: None,
        },
        device_resolved: cxr_models::device_name(&device),
        precision: cfg.precision,
        threads: rayon_threads(),
        cxr_version: env!("CARGO_PKG_VERSION").into(),
        status: RunStatus::Running,
        pretrained: runs[0].config.pretrained,
        provenance,
        ..RunConfig::default()
    };
    config.write(&out_dir.join(names::CONFIG))?;
    let val_logits = predict_logits(&net, None, &val_set, &cfg, &device)?;
    let test_logits = predict_logits(&net, None, &test_set, &cfg, &device)?;
    cxr_runfolder::write_history(out_dir, &[])?;
    let seconds = started.elapsed().as_secs_f64();
    let (val, test) = write_outcome(
        Outcome {
            cfg: &cfg,
            data,
            sets: [&train_set, &val_set, &test_set],
            val_logits: &val_logits,
            test_logits: &test_logits,
            best_epoch: None,
            timing: Timing {
                train_seconds: seconds,
                train_images_per_second: None,
            },
            members: Some(listed),
            member_scores: member_scores(&runs, &test_set.labels, &test_logits)?,
        },
        out_dir,
        &mut config,
    )?;
    Ok(RunSummary {
        out_dir: out_dir.to_path_buf(),
        best_epoch: 0,
        val,
        test,
        train_seconds: seconds,
        train_images_per_second: 0.0,
    })
}
