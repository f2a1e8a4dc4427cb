//! The recipes: the settings of a run from the model's recipe (or a recorded run's
//! settings) with the user's flags on top, and where a ResNet18 gets its weights.

use std::path::Path;

use cxr_data::{PatientPattern, PatientSource, PatientTable};
use cxr_models::{HubOptions, WeightsSource};
use cxr_train::{
    AdamConfig, AugmentPreset, KeepEpoch, ModelKind, OptimizerKind, Precision, Schedule,
    TrainConfig,
};
use tracing::warn;

use crate::cli::{
    AugmentArg, DataArgs, KeepArg, ModelArg, OptimizerArg, PrecisionArg, RecipeArgs, ScheduleArg,
};
use crate::{CxrError, Result};

/// The network a `--model` names.
pub fn model_kind(model: ModelArg) -> ModelKind {
    match model {
        ModelArg::Cnn => ModelKind::Cnn,
        ModelArg::Resnet18 => ModelKind::Resnet18,
    }
}

/// The model's recipe ([`TrainConfig::default`] for the CNN, [`TrainConfig::resnet18`]
/// with `weights`) with `seed` and every flag of `r` that is set applied on top.
pub fn train_config(model: ModelArg, seed: u64, r: &RecipeArgs, weights: &str) -> TrainConfig {
    let base = match model {
        ModelArg::Cnn => TrainConfig::default(),
        ModelArg::Resnet18 => TrainConfig::resnet18(weights),
    };
    TrainConfig {
        seed,
        ..apply(base, r)
    }
}

/// `base` with every flag of `r` that is set applied on top (a recorded run's settings
/// on `--resume`, a recipe otherwise).
pub fn apply(base: TrainConfig, r: &RecipeArgs) -> TrainConfig {
    let schedule = match (r.schedule, base.schedule) {
        (None, s) => s,
        (Some(ScheduleArg::Constant), _) => Schedule::Constant,
        (Some(ScheduleArg::OneCycle), s @ Schedule::OneCycle { .. }) => s,
        (Some(ScheduleArg::OneCycle), Schedule::Constant) => Schedule::OneCycle {
            pct_start: 0.3,
            div: 25.0,
            div_final: 1e4,
        },
    };
    TrainConfig {
        epochs: r.epochs.unwrap_or(base.epochs),
        batch_size: r.batch_size.unwrap_or(base.batch_size),
        optimizer: AdamConfig {
            kind: match r.optimizer {
                None => base.optimizer.kind,
                Some(OptimizerArg::Adam) => OptimizerKind::Adam,
                Some(OptimizerArg::Adamw) => OptimizerKind::AdamW,
            },
            lr: r.lr.unwrap_or(base.optimizer.lr),
            weight_decay: r.weight_decay.unwrap_or(base.optimizer.weight_decay),
            ..base.optimizer
        },
        image_size: r.image_size.unwrap_or(base.image_size),
        augment: match r.augment {
            None => base.augment,
            Some(AugmentArg::None) => AugmentPreset::None,
            Some(AugmentArg::Light) => AugmentPreset::Light,
            Some(AugmentArg::Strong) => AugmentPreset::Strong,
        },
        schedule,
        keep: match r.keep {
            None => base.keep,
            Some(KeepArg::Best) => KeepEpoch::Best,
            Some(KeepArg::Last) => KeepEpoch::Last,
        },
        mixup: match r.mixup {
            None => base.mixup,
            Some(0.0) => None,
            Some(a) => Some(a),
        },
        label_smoothing: r.label_smoothing.unwrap_or(base.label_smoothing),
        ema: match r.ema {
            None => base.ema,
            Some(0.0) => None,
            Some(d) => Some(d),
        },
        self_distillation: match r.self_distill {
            None => base.self_distillation,
            Some(0.0) => None,
            Some(a) => Some(a),
        },
        weights: r.weights.clone().unwrap_or(base.weights.clone()),
        freeze_epochs: r.freeze_epochs.unwrap_or(base.freeze_epochs),
        lr_mult: r.lr_mult.unwrap_or(base.lr_mult),
        lr_find: r.lr_find || base.lr_find,
        exclude_duplicates: r.exclude_duplicates || base.exclude_duplicates,
        val_from_train: r.val_from_train.or(base.val_from_train),
        allow_patient_overlap: r.allow_patient_overlap || base.allow_patient_overlap,
        train_limit: r.limit.or(base.train_limit),
        device: r.device.clone().unwrap_or(base.device.clone()),
        precision: match r.precision {
            None => base.precision,
            Some(PrecisionArg::F32) => Precision::F32,
            Some(PrecisionArg::F32Strict) => Precision::F32Strict,
            Some(PrecisionArg::Bf16) => Precision::Bf16,
            Some(PrecisionArg::F16) => Precision::F16,
        },
        ..base
    }
}

/// `cfg` with the patient flags of `d` that are set applied on top (`--group-pattern`,
/// `--patients`).
pub fn apply_data(cfg: TrainConfig, d: &DataArgs) -> TrainConfig {
    TrainConfig {
        group_pattern: d.group_pattern.clone().or(cfg.group_pattern.clone()),
        patients: d
            .patients
            .as_ref()
            .map(|p| p.display().to_string())
            .or(cfg.patients.clone()),
        ..cfg
    }
}

/// Where `cfg` takes patient ids from: its table (read and checked), its pattern
/// (compiled), else the Kaggle names. Errors name the flag and the file or pattern.
pub fn patient_source(cfg: &TrainConfig) -> Result<PatientSource> {
    if let Some(path) = &cfg.patients {
        let table = PatientTable::read(Path::new(path))
            .map_err(|e| CxrError::step("--patients: reading the patients table", e))?;
        return Ok(PatientSource::Table(table));
    }
    match &cfg.group_pattern {
        Some(p) => PatientPattern::new(p)
            .map(PatientSource::Pattern)
            .map_err(|e| CxrError::Setting(format!("--group-pattern: {e}"))),
        None => Ok(PatientSource::Pattern(PatientPattern::kaggle())),
    }
}

/// Checks every setting (and the weights' syntax) before any data is touched.
pub fn validate(cfg: &TrainConfig) -> Result<()> {
    cfg.validate()
        .map_err(|e| CxrError::Setting(e.to_string()))?;
    if let Some(p) = &cfg.group_pattern {
        PatientPattern::new(p).map_err(|e| CxrError::Setting(format!("--group-pattern: {e}")))?;
    }
    cfg.weights
        .parse::<WeightsSource>()
        .map_err(|e| CxrError::Setting(format!("invalid setting `weights`: {e}")))?;
    Ok(())
}

/// The `--weights` a resnet18 run starts from, and why it has none when it wanted
/// some. Unset: the default hub checkpoint if the hub (or its cache) has it, else
/// `none` with the reason, logged loudly. An explicit hub id that cannot be fetched
/// is an error.
pub fn resnet_weights(explicit: Option<&str>) -> Result<(String, Option<String>)> {
    let spec = explicit.unwrap_or(cxr_models::DEFAULT_WEIGHTS);
    let source: WeightsSource = spec
        .parse()
        .map_err(|e| CxrError::step(format!("--weights {spec}"), e))?;
    if !matches!(source, WeightsSource::Hub { .. }) {
        return Ok((spec.to_string(), None));
    }
    let hub = HubOptions::from_env();
    match source.resolve(&hub) {
        Ok(_) => Ok((spec.to_string(), None)),
        Err(e) if explicit.is_none() && e.is_hub_unavailable() => {
            let reason = format!(
                "the ImageNet weights {spec} could not be fetched ({e}); trained from scratch instead"
            );
            warn!("==============================================================");
            warn!("NO PRETRAINED WEIGHTS: {reason}");
            warn!(
                "resnet18 uses the from-scratch recipe; to fine-tune, put the hub cache in {} \
                 (or set HF_HOME / HF_HUB_CACHE) or pass --weights PATH.safetensors",
                hub.cache_dir.display()
            );
            warn!("==============================================================");
            Ok(("none".to_string(), Some(reason)))
        }
        Err(e) => Err(CxrError::step(
            format!(
                "--weights {spec}: fetching the checkpoint failed (pass --weights none to train \
                 from scratch, or a local .safetensors file)"
            ),
            e,
        )),
    }
}

/// The settings that differ between `a` and `b`, by their `config.json` names.
pub(crate) fn differing_settings(a: &TrainConfig, b: &TrainConfig) -> Vec<String> {
    let (Ok(serde_json::Value::Object(a)), Ok(serde_json::Value::Object(b))) =
        (serde_json::to_value(a), serde_json::to_value(b))
    else {
        return vec!["(settings not comparable)".into()];
    };
    a.iter()
        .filter(|(k, v)| b.get(*k) != Some(*v))
        .map(|(k, v)| {
            format!(
                "{k} (recorded {}, given {v})",
                b.get(k).unwrap_or(&serde_json::Value::Null)
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_flags() -> RecipeArgs {
        RecipeArgs {
            epochs: None,
            batch_size: None,
            lr: None,
            optimizer: None,
            weight_decay: None,
            image_size: None,
            augment: None,
            schedule: None,
            keep: None,
            mixup: None,
            label_smoothing: None,
            ema: None,
            self_distill: None,
            weights: None,
            freeze_epochs: None,
            lr_mult: None,
            lr_find: false,
            exclude_duplicates: false,
            val_from_train: None,
            allow_patient_overlap: false,
            limit: None,
            device: None,
            precision: None,
        }
    }

    #[test]
    fn unset_flags_keep_the_recipe_and_set_ones_win() {
        assert_eq!(
            train_config(ModelArg::Cnn, 0, &no_flags(), "none"),
            TrainConfig::default()
        );
        assert_eq!(
            train_config(ModelArg::Resnet18, 0, &no_flags(), "none"),
            TrainConfig::resnet18("none")
        );
        let r = RecipeArgs {
            lr: Some(3e-4),
            batch_size: Some(8),
            ..no_flags()
        };
        let c = train_config(ModelArg::Cnn, 7, &r, "none");
        assert_eq!((c.seed, c.batch_size, c.optimizer.lr), (7, 8, 3e-4));
        let recorded = TrainConfig {
            epochs: 3,
            ..TrainConfig::default()
        };
        let longer = apply(
            recorded.clone(),
            &RecipeArgs {
                epochs: Some(5),
                ..no_flags()
            },
        );
        assert_eq!(
            differing_settings(&longer, &recorded),
            vec!["epochs (recorded 3, given 5)".to_string()]
        );
    }

    #[test]
    fn bad_settings_are_named() {
        let c = TrainConfig {
            optimizer: AdamConfig {
                lr: f64::NAN,
                ..AdamConfig::default()
            },
            ..TrainConfig::default()
        };
        assert!(validate(&c).unwrap_err().to_string().contains("`lr`"));
        let c = TrainConfig {
            group_pattern: Some("person\\d+_".into()),
            ..TrainConfig::default()
        };
        let e = validate(&c).unwrap_err().to_string();
        assert!(
            e.contains("--group-pattern")
                && e.contains("person\\d+_")
                && e.contains("capture group"),
            "{e}"
        );
        let c = TrainConfig {
            val_from_train: Some(1.5),
            ..TrainConfig::default()
        };
        assert!(
            validate(&c)
                .unwrap_err()
                .to_string()
                .contains("val-from-train")
        );
    }
}
