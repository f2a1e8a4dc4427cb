//! The command line of the `cxr` binary (and of `cargo xtask`'s user commands):
//! clap's definitions, shared with programs that embed these commands.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// cxr: train, audit and report chest X-ray pneumonia classifiers.
#[derive(Debug, Parser)]
#[command(name = "cxr", version, about)]
pub struct Cli {
    /// More log output (also: CXR_LOG=debug or RUST_LOG=debug).
    #[arg(long, short, global = true)]
    pub verbose: bool,
    /// The command.
    #[command(subcommand)]
    pub command: Command,
}

/// The user commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Train the seed CNN over several seeds and ResNet18 (pretrained when the hub is
    /// reachable, else from scratch, said loudly), and write every run folder, a
    /// comparison summary and the reports.
    Pipeline(PipelineArgs),
    /// Train one model into a run folder.
    Train(TrainArgs),
    /// Rebuild report.md, report.html, figures/ and predictions.parquet from a run
    /// folder, or a pipeline folder's comparison plus each of its runs (never trains).
    Report {
        /// The run folder, or a pipeline folder (one with summary.csv).
        #[arg(long)]
        run: PathBuf,
    },
    /// Recompute a run folder's audit (audit/: failure modes, gallery with Grad-CAM,
    /// robustness sweep, data audit) from its model.safetensors (never trains).
    Audit(AuditArgs),
    /// Apply a trained run's model to new chest X-rays (PNG, JPEG, BMP, TIFF, DICOM
    /// files and folders of them): predictions.csv, summary.json with a label-free site
    /// check, optional Grad-CAM / occlusion overlays, and report.html.
    Predict(PredictArgs),
    /// Evaluate a trained run's model on a labelled set from elsewhere (an npz split,
    /// a Kaggle-style folder, or NORMAL/ and PNEUMONIA/ folders of images or DICOM):
    /// its validation operating points applied unchanged with 95% intervals, AUC,
    /// calibration, the prevalence shift, subgroups from a metadata table, and a
    /// paired comparison with a second run; evaluation.json, metrics.json, parquet
    /// tables and report.html.
    Evaluate(EvaluateArgs),
    /// Combine finished runs (one network at one input size, trained on the same data)
    /// into a run folder whose model is the mean of their logits: scored on validation
    /// and test, audited and reported like a trained run; predict, evaluate and audit
    /// apply to it.
    Ensemble(EnsembleArgs),
    /// Measure what changes of a recipe did: for each pair of runs (the same seed
    /// without and with a change) both models on the same labelled images with the
    /// paired DeLong test of their AUC difference; ablation.json, ablation.md and one
    /// evaluation folder per pair. The pipeline report shows it with --ablation.
    Ablation(AblationArgs),
}

/// Where the data comes from.
#[derive(Debug, Args, Clone)]
pub struct DataArgs {
    /// The PneumoniaMNIST npz file, or a folder holding pneumoniamnist.npz, or a
    /// Kaggle-layout folder (ROOT/{train,val,test}/{NORMAL,PNEUMONIA}).
    /// Default: $CXR_DATA_DIR, then data/, then download.
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Never download; fail if the data is not found locally.
    #[arg(long)]
    pub offline: bool,
    /// For folder data: skip unreadable images (counted in config.json) instead of failing.
    #[arg(long)]
    pub skip_bad: bool,
    /// For folder data: the patient id is this regular expression's one capture group,
    /// matched against each file name. Default: the Kaggle names — `personN` of
    /// `personN_bacteria_M.jpeg` / `personN_virus_M.jpeg`, `IM-XXXX` of
    /// `IM-XXXX-YYYY.jpeg`, `NORMAL2-IM-XXXX` of `NORMAL2-IM-XXXX-YYYY.jpeg` (three
    /// numbering series, kept apart). Files it does not match are each their own
    /// patient (counted and logged).
    #[arg(long, value_name = "REGEX", conflicts_with = "patients")]
    pub group_pattern: Option<String>,
    /// For folder data: patient ids from a CSV table with a header: `patient` and `path`
    /// (relative to the data root, `/` separators) or `file` (a file name). Files it
    /// does not list are each their own patient; rows naming no image are counted.
    #[arg(long, value_name = "CSV")]
    pub patients: Option<PathBuf>,
}

/// `--model`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ModelArg {
    /// The seed study's 3-block CNN.
    Cnn,
    /// torchvision's ResNet18, fine-tuned fastai-style (or trained from scratch).
    Resnet18,
}

/// `--schedule`.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum ScheduleArg {
    /// One learning rate throughout.
    Constant,
    /// One-cycle: cosine warm-up over 30% of the steps, then cosine annealing.
    OneCycle,
}

/// `--keep`.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum KeepArg {
    /// The epoch with the highest validation AUC.
    Best,
    /// The last epoch.
    Last,
}

/// `--optimizer`.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum OptimizerArg {
    /// Adam (L2 weight decay).
    Adam,
    /// AdamW (decoupled weight decay).
    Adamw,
}

/// `--precision`.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum PrecisionArg {
    /// f32 everywhere; on CUDA (Ampere and newer) matrix products round their inputs
    /// to TF32, as PyTorch's cuDNN convolutions do by default.
    F32,
    /// f32 with TF32 off on CUDA (the same as f32 elsewhere).
    F32Strict,
    /// bf16 autocast of the forward pass, f32 master weights and loss (CUDA, Metal).
    Bf16,
    /// f16 autocast with dynamic loss scaling, f32 master weights and loss (CUDA, Metal).
    F16,
}

/// `--augment`.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum AugmentArg {
    /// No augmentation (the seed recipe).
    None,
    /// Random resized crop 0.85–1, rotation ±10°, brightness/contrast ±0.1.
    Light,
    /// Random resized crop 0.6–1, rotation ±15°, brightness ±0.2, contrast ±0.4.
    Strong,
}

/// Recipe settings shared by `train` and `pipeline`. Unset values keep the base
/// settings: the model's recipe for a new run, the recorded settings on `--resume`. The
/// recipes: cnn = the seed study (15 epochs, Adam 1e-3, 28 px, no augmentation,
/// constant rate); resnet18 = fastai-style fine-tuning when pretrained (1 frozen + 5
/// epochs, AdamW 2e-3, discriminative rates ×100, one-cycle) or 10 epochs of AdamW
/// 1e-3 one-cycle with label smoothing 0.1 from scratch; both at 64 px with light
/// augmentation, keeping the last epoch.
#[derive(Debug, Args, Clone)]
pub struct RecipeArgs {
    /// Epochs (for resnet18: after the frozen ones, as fastai's `fine_tune(epochs)`).
    #[arg(long)]
    pub epochs: Option<usize>,
    /// Training batch size [default: 64].
    #[arg(long)]
    pub batch_size: Option<usize>,
    /// Learning rate (the head's peak rate under one-cycle).
    #[arg(long, allow_negative_numbers = true)]
    pub lr: Option<f64>,
    /// Optimizer.
    #[arg(long, value_enum)]
    pub optimizer: Option<OptimizerArg>,
    /// Weight decay (L2 for adam, decoupled for adamw).
    #[arg(long, allow_negative_numbers = true)]
    pub weight_decay: Option<f64>,
    /// Input size in pixels: npz data is resized (bilinear), folder data decoded at it.
    #[arg(long)]
    pub image_size: Option<usize>,
    /// Training augmentation.
    #[arg(long, value_enum)]
    pub augment: Option<AugmentArg>,
    /// Learning-rate schedule.
    #[arg(long, value_enum)]
    pub schedule: Option<ScheduleArg>,
    /// Which epoch's weights become the model (cnn: best by validation AUC; resnet18:
    /// last, where the one-cycle schedule ends).
    #[arg(long, value_enum)]
    pub keep: Option<KeepArg>,
    /// Mixup with Beta(α, α): each training batch blended with itself reversed, one λ
    /// per batch (0 = off) [default: off].
    #[arg(long, value_name = "ALPHA", allow_negative_numbers = true)]
    pub mixup: Option<f64>,
    /// Label smoothing ε: training targets become ε/2 and 1 − ε/2 (0 = off)
    /// [default: 0.1 for resnet18 from scratch, else 0].
    #[arg(long, value_name = "EPS", allow_negative_numbers = true)]
    pub label_smoothing: Option<f64>,
    /// An exponential moving average of the weights with this decay (e.g. 0.999),
    /// warmed up as TensorFlow's `ExponentialMovingAverage`; validation, the kept
    /// epoch and the model use the average (0 = off) [default: off].
    #[arg(long, value_name = "DECAY", allow_negative_numbers = true)]
    pub ema: Option<f64>,
    /// Progressive self-knowledge distillation (PS-KD) with this final weight α_T
    /// (e.g. 0.8): each training image's target moves towards the network's own
    /// prediction for it in the previous epoch, by α_T·(epoch + 1)/epochs (0 = off)
    /// [default: off].
    #[arg(long, value_name = "ALPHA", allow_negative_numbers = true)]
    pub self_distill: Option<f64>,
    /// resnet18: initial weights, `hub:owner/name[@rev]`, `PATH.safetensors` or `none`
    /// [default: hub:timm/resnet18.a1_in1k, falling back to `none` (loudly) when the
    /// hub cannot be reached; an explicit hub id fails instead].
    #[arg(long)]
    pub weights: Option<String>,
    /// resnet18: epochs with the body frozen before unfreezing (default 1 when
    /// pretrained, 0 from scratch).
    #[arg(long)]
    pub freeze_epochs: Option<usize>,
    /// resnet18: discriminative rates once unfrozen, earliest layers at lr / LR_MULT
    /// (default 100 when pretrained, 1 from scratch).
    #[arg(long, allow_negative_numbers = true)]
    pub lr_mult: Option<f64>,
    /// Run a learning-rate range test first and write lr_find.csv / lr_find.json.
    #[arg(long)]
    pub lr_find: bool,
    /// Leave out training images that duplicate a validation or test image, and
    /// repeated copies within train (validation and test stay as they are).
    #[arg(long)]
    pub exclude_duplicates: bool,
    /// For folder data: draw the validation split from train by patient — this fraction
    /// of each class's training images, patients labelled "any pneumonia", seeded by the
    /// run's seed — instead of using the given val split (Kaggle's has 16 images).
    #[arg(long, value_name = "FRACTION", allow_negative_numbers = true)]
    pub val_from_train: Option<f64>,
    /// Train even when a patient has images in more than one split (listed in the log,
    /// config.json and the data audit); without it such leakage stops training.
    #[arg(long)]
    pub allow_patient_overlap: bool,
    /// Use only this many training images per epoch (smoke runs).
    #[arg(long)]
    pub limit: Option<usize>,
    /// Device: `cpu`, `cuda[:N]`, `metal` or `auto` (CUDA, then Metal, then CPU)
    /// [default: cpu].
    #[arg(long)]
    pub device: Option<String>,
    /// Forward-pass precision; bf16 and f16 need a CUDA or Metal device [default: f32].
    #[arg(long, value_enum)]
    pub precision: Option<PrecisionArg>,
}

/// `train`.
#[derive(Debug, Args)]
pub struct TrainArgs {
    /// The network [default: cnn].
    #[arg(long, value_enum)]
    pub model: Option<ModelArg>,
    /// Seed for weights, shuffling and augmentation [default: 0].
    #[arg(long)]
    pub seed: Option<u64>,
    /// Run folder (default `runs/<timestamp>-<model>/`).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Continue the run in --out from its last checkpoint, with the settings and data
    /// recorded in its config.json (flags other than --epochs must agree with them;
    /// --epochs extends the run).
    #[arg(long, requires = "out")]
    pub resume: bool,
    /// Recipe settings.
    #[command(flatten)]
    pub recipe: RecipeArgs,
    /// The data.
    #[command(flatten)]
    pub data: DataArgs,
}

/// `pipeline`.
#[derive(Debug, Args)]
pub struct PipelineArgs {
    /// Models to train.
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "cnn,resnet18"
    )]
    pub models: Vec<ModelArg>,
    /// Seeds of the CNN (one run folder each).
    #[arg(long, value_delimiter = ',', default_value = "0,1,2")]
    pub seeds: Vec<u64>,
    /// Seeds of ResNet18 (one run folder each).
    #[arg(long, value_delimiter = ',', default_value = "0")]
    pub resnet_seeds: Vec<u64>,
    /// Output folder (default `runs/<timestamp>/`).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Train only shard K of N of the runs (run i goes to shard i mod N + 1), into
    /// `--out` (required): one task of a Slurm job array or Kubernetes Indexed Job each;
    /// `cxr report --run OUT` then writes the comparison over every run folder.
    #[arg(long)]
    pub shard: Option<cxr_predict::Shard>,
    /// Runs in the headline model. 1: the pipeline's first ResNet18 run is the
    /// headline. 2 or more: an ensemble of that run and this many minus one more with
    /// the same recipe and seeds 1000, 2000, … above it (trained into
    /// `headline-members/`), audited and reported in `headline/` (it did not beat one
    /// run in the ablation of docs/headline.md, and costs a training run per member).
    #[arg(long, default_value_t = 1)]
    pub headline_members: usize,
    /// An ablation.json written by `cxr ablation`, shown in the pipeline report as the
    /// measurement behind the recipe (copied into the pipeline folder; `cargo xtask
    /// pipeline` gives the checkout's docs/ablation.json).
    #[arg(long)]
    pub ablation: Option<PathBuf>,
    /// Recipe settings (the ResNet-only ones do not apply to the CNN runs).
    #[command(flatten)]
    pub recipe: RecipeArgs,
    /// The data.
    #[command(flatten)]
    pub data: DataArgs,
}

/// `ensemble`.
#[derive(Debug, Args)]
pub struct EnsembleArgs {
    /// The member run folders (at least two).
    #[arg(required = true, num_args = 2..)]
    pub runs: Vec<PathBuf>,
    /// The ensemble's run folder (default `runs/<timestamp>-ensemble/`).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// The data (default: the data recorded in the first member's config.json).
    #[command(flatten)]
    pub data: DataArgs,
}

/// `--dicom-window`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DicomWindowArg {
    /// The file's VOI LUT, else its window centre/width, else the full range of the
    /// stored bits (an 8-bit DICOM maps as the same PNG does).
    Auto,
    /// Each frame's own minimum to maximum.
    Minmax,
}

/// `predict`.
#[derive(Debug, Args)]
pub struct PredictArgs {
    /// The run folder whose model to apply (its model.json and model.safetensors).
    #[arg(long)]
    pub run: PathBuf,
    /// Image files, DICOM files and folders (walked recursively), in any mix.
    #[arg(required = true)]
    pub inputs: Vec<PathBuf>,
    /// The prediction folder (default `RUN/predictions/<UTC timestamp>/`).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Decision threshold: `youden` (the default, chosen on validation),
    /// `sensitivity_0.95`, `default_0.5`, or a number in [0, 1].
    #[arg(long)]
    pub operating_point: Option<String>,
    /// Fail (after writing the folder) when any input cannot be read.
    #[arg(long)]
    pub strict: bool,
    /// Write Grad-CAM and occlusion overlays of the highest-probability images.
    #[arg(long)]
    pub explain: bool,
    /// With --explain: how many images, by probability (0 = every image).
    #[arg(long, default_value_t = 16)]
    pub explain_top: usize,
    /// Adapt probabilities and the threshold to the prevalence the site check
    /// estimates (EM prior adjustment); off by default.
    #[arg(long)]
    pub adapt_prior: bool,
    /// How DICOM pixel values map to 8-bit gray.
    #[arg(long, value_enum, default_value = "auto")]
    pub dicom_window: DicomWindowArg,
    /// Device: `cpu`, `cuda[:N]`, `metal` or `auto`.
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// Inference batch size [default: the model card's].
    #[arg(long)]
    pub batch_size: Option<usize>,
    /// Seed of the site check's bootstrap.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Predict only shard K of N of the input files (file i goes to shard i mod N + 1)
    /// into `--out/shard-K-of-N/` (`--out` required); `cxr report --run OUT` merges the
    /// shards.
    #[arg(long)]
    pub shard: Option<cxr_predict::Shard>,
}

/// `evaluate`.
#[derive(Debug, Args)]
pub struct EvaluateArgs {
    /// The run folder whose model to evaluate.
    #[arg(long)]
    pub run: PathBuf,
    /// The labelled set: an npz file, a folder with train/ val/ test/, or a folder
    /// holding NORMAL/ and PNEUMONIA/.
    #[arg(long)]
    pub data: PathBuf,
    /// The split of a set with splits: `train`, `val` or `test` [default: test].
    #[arg(long)]
    pub split: Option<String>,
    /// The evaluation folder (default `RUN/evaluations/<UTC timestamp>/`).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// A metadata table (.csv or .parquet) with one row per image.
    #[arg(long)]
    pub metadata: Option<PathBuf>,
    /// The metadata column holding each image's key.
    #[arg(long)]
    pub join_on: Option<String>,
    /// What the key is: `path` (relative to --data, `/`-separated), `file` (file name)
    /// or `index` (position in the npz split) [default: index for npz, else path].
    #[arg(long)]
    pub join_key: Option<cxr_evaluate::JoinKey>,
    /// Metadata columns to report subgroups of (comma-separated); numeric columns with
    /// more than ten values are cut into quantile bins.
    #[arg(long, value_delimiter = ',')]
    pub group_by: Vec<String>,
    /// Groups with fewer images are reported as too small.
    #[arg(long, default_value_t = 30)]
    pub min_group_size: usize,
    /// Quantile bins of a numeric --group-by column.
    #[arg(long, default_value_t = 4)]
    pub bins: usize,
    /// Operating point of the subgroup tables and the comparison: `youden` (the
    /// default), `sensitivity_0.95`, `default_0.5`, or a number in [0, 1].
    #[arg(long)]
    pub operating_point: Option<String>,
    /// A second run folder to compare with on the same images (paired DeLong test,
    /// McNemar's test).
    #[arg(long)]
    pub compare: Option<PathBuf>,
    /// Bootstrap resamples.
    #[arg(long, default_value_t = 2000)]
    pub resamples: usize,
    /// Seed of the bootstrap.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// How DICOM pixel values map to 8-bit gray.
    #[arg(long, value_enum, default_value = "auto")]
    pub dicom_window: DicomWindowArg,
    /// Device: `cpu`, `cuda[:N]`, `metal` or `auto`.
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// Inference batch size [default: the model card's].
    #[arg(long)]
    pub batch_size: Option<usize>,
}

/// `ablation`.
#[derive(Debug, Args)]
pub struct AblationArgs {
    /// A change and its pair of run folders, without it and with it (repeat per seed
    /// and per change; pairs with the same CHANGE form one row, rows keep their order).
    #[arg(long, num_args = 3, value_names = ["CHANGE", "BEFORE", "AFTER"], required = true)]
    pub pair: Vec<String>,
    /// The labelled set: an npz file or a folder with train/ val/ test/.
    #[arg(long)]
    pub data: PathBuf,
    /// The split of a set with splits: `train`, `val` or `test` [default: test].
    #[arg(long)]
    pub split: Option<String>,
    /// The ablation folder (created; it must not hold an ablation yet).
    #[arg(long)]
    pub out: PathBuf,
    /// An earlier ablation.json of the same images to extend: its rows come first,
    /// the new pairs are added after them (a change it already has is refused).
    #[arg(long, value_name = "ABLATION_JSON")]
    pub extend: Option<PathBuf>,
    /// Bootstrap resamples of each pair's evaluation.
    #[arg(long, default_value_t = 2000)]
    pub resamples: usize,
    /// Device: `cpu`, `cuda[:N]`, `metal` or `auto`.
    #[arg(long, default_value = "cpu")]
    pub device: String,
}

/// `audit`.
#[derive(Debug, Args)]
pub struct AuditArgs {
    /// The run folder (with config.json and model.safetensors).
    #[arg(long)]
    pub run: PathBuf,
    /// Images per gallery group (false positives, false negatives, confident hits).
    #[arg(long, default_value_t = 8)]
    pub gallery_k: usize,
    /// Seed of the robustness sweep's corruptions.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Skip the robustness sweep (6 corruptions × 5 severities).
    #[arg(long)]
    pub no_robustness: bool,
    /// The data (default: the data recorded in the run's config.json).
    #[command(flatten)]
    pub data: DataArgs,
}
