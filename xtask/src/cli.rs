use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// cxr: train and audit chest X-ray pneumonia classifiers.
#[derive(Debug, Parser)]
#[command(name = "cargo xtask", version, about)]
pub struct Cli {
    /// More log output (also: CXR_LOG=debug).
    #[arg(long, short, global = true)]
    pub verbose: bool,
    #[command(subcommand)]
    pub command: Command,
}

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
    /// Check a report.html in headless Chromium: screenshot, and every image loaded.
    /// Skips (exit 0, with a warning) when no Chromium is installed.
    ReportCheck(crate::report_check::ReportCheckArgs),
    /// Measure training and inference throughput (and PyTorch's, when available).
    Bench(BenchArgs),
    /// Run CI's checks: cargo fmt --check, clippy -D warnings, docs, the tests, and
    /// actionlint on the workflows when it is installed.
    Ci(CiArgs),
    /// Fuzz the decoders and run-folder readers (cargo-fuzz targets in fuzz/), one
    /// target after another with one job each; needs `cargo install cargo-fuzz`.
    Fuzz(crate::fuzz::FuzzArgs),
    /// Build cxr with CUDA on a machine without a GPU: installs nvcc, the CUDA headers
    /// and libraries from PyPI into target/cuda-toolchain (or uses --cuda-root), then
    /// `cargo build --features cuda` into target/cuda.
    CudaBuild(CudaBuildArgs),
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
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ModelArg {
    /// The seed study's 3-block CNN.
    Cnn,
    /// torchvision's ResNet18, fine-tuned fastai-style (or trained from scratch).
    Resnet18,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum ScheduleArg {
    /// One learning rate throughout.
    Constant,
    /// One-cycle: cosine warm-up over 30% of the steps, then cosine annealing.
    OneCycle,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum OptimizerArg {
    /// Adam (L2 weight decay).
    Adam,
    /// AdamW (decoupled weight decay).
    Adamw,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum PrecisionArg {
    /// f32 everywhere.
    F32,
    /// bf16 autocast of the forward pass, f32 master weights and loss (CUDA, Metal).
    Bf16,
    /// f16 autocast with dynamic loss scaling, f32 master weights and loss (CUDA, Metal).
    F16,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum AugmentArg {
    /// No augmentation (the seed recipe).
    None,
    /// Random resized crop 0.85–1, rotation ±10°, brightness/contrast ±0.1.
    Light,
}

/// Recipe settings shared by `train` and `pipeline`. Unset values take the model's
/// recipe: cnn = the seed study (15 epochs, Adam 1e-3, 28 px, no augmentation,
/// constant rate); resnet18 = fastai-style fine-tuning when pretrained (1 frozen + 5
/// epochs, AdamW 2e-3, discriminative rates ×100, one-cycle) or 10 epochs of AdamW
/// 1e-3 one-cycle from scratch; both at 64 px with light augmentation.
#[derive(Debug, Args, Clone)]
pub struct RecipeArgs {
    /// Epochs (for resnet18: after the frozen ones, as fastai's `fine_tune(epochs)`).
    #[arg(long)]
    pub epochs: Option<usize>,
    /// Training batch size.
    #[arg(long, default_value_t = 64)]
    pub batch_size: usize,
    /// Learning rate (the head's peak rate under one-cycle).
    #[arg(long)]
    pub lr: Option<f64>,
    /// Optimizer.
    #[arg(long, value_enum)]
    pub optimizer: Option<OptimizerArg>,
    /// Weight decay (L2 for adam, decoupled for adamw).
    #[arg(long)]
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
    #[arg(long)]
    pub lr_mult: Option<f64>,
    /// Run a learning-rate range test first and write lr_find.csv / lr_find.json.
    #[arg(long)]
    pub lr_find: bool,
    /// Leave out training images that duplicate a validation or test image, and
    /// repeated copies within train (validation and test stay as they are).
    #[arg(long)]
    pub exclude_duplicates: bool,
    /// Use only this many training images per epoch (smoke runs).
    #[arg(long)]
    pub limit: Option<usize>,
    /// Device: `cpu`, `cuda[:N]`, `metal` or `auto` (CUDA, then Metal, then CPU).
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// Forward-pass precision; bf16 and f16 need a CUDA or Metal device.
    #[arg(long, value_enum, default_value_t = PrecisionArg::F32)]
    pub precision: PrecisionArg,
}

#[derive(Debug, Args)]
pub struct TrainArgs {
    /// The network.
    #[arg(long, value_enum, default_value_t = ModelArg::Cnn)]
    pub model: ModelArg,
    /// Seed for weights, shuffling and augmentation.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Run folder (default `runs/<timestamp>-<model>/`).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Continue the run in --out from its last checkpoint.
    #[arg(long, requires = "out")]
    pub resume: bool,
    #[command(flatten)]
    pub recipe: RecipeArgs,
    #[command(flatten)]
    pub data: DataArgs,
}

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
    #[command(flatten)]
    pub recipe: RecipeArgs,
    #[command(flatten)]
    pub data: DataArgs,
}

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
    #[command(flatten)]
    pub data: DataArgs,
}

#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Training epochs per measurement.
    #[arg(long, default_value_t = 1)]
    pub epochs: usize,
    /// Repetitions; medians are reported.
    #[arg(long, default_value_t = 3)]
    pub repeats: usize,
    /// Threads for both cxr (RAYON_NUM_THREADS) and PyTorch.
    #[arg(long, default_value_t = 2)]
    pub threads: usize,
    /// Skip the PyTorch peer even if torch is installed.
    #[arg(long)]
    pub no_torch: bool,
    /// Python interpreter for the PyTorch peer.
    #[arg(long, default_value = "python3")]
    pub python: String,
    /// Input sizes of the ResNet18 step benchmark (each at least 28).
    #[arg(long, value_delimiter = ',', default_value = "64,128")]
    pub resnet_sizes: Vec<usize>,
    /// Skip the ResNet18 step benchmark.
    #[arg(long)]
    pub no_resnet: bool,
    /// Batch size of the ResNet18 step benchmark.
    #[arg(long, default_value_t = 32)]
    pub resnet_batch: usize,
    #[command(flatten)]
    pub data: DataArgs,
}

#[derive(Debug, Args)]
pub struct CiArgs {
    /// Also enable a GPU backend for clippy, docs and tests (Metal needs macOS; CUDA
    /// needs nvcc on PATH, see `cuda-build`).
    #[arg(long, value_enum)]
    pub features: Option<GpuFeature>,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum GpuFeature {
    /// candle's CUDA backend.
    Cuda,
    /// candle's Metal backend.
    Metal,
}

#[derive(Debug, Args)]
pub struct CudaBuildArgs {
    /// Use this CUDA toolkit (containing bin/nvcc, include/, lib64/) instead of
    /// installing one from PyPI, e.g. /usr/local/cuda.
    #[arg(long)]
    pub cuda_root: Option<PathBuf>,
    /// Where the PyPI toolchain goes (default target/cuda-toolchain).
    #[arg(long)]
    pub toolchain_dir: Option<PathBuf>,
    /// GPU compute capability to compile for (90: H100/H200; 80: A100; 89: L4/L40).
    #[arg(long, default_value = "90")]
    pub compute_cap: String,
    /// Cargo target folder (default `$CARGO_TARGET_DIR/cuda`, else target/cuda).
    #[arg(long)]
    pub target_dir: Option<PathBuf>,
    /// Build with the release profile.
    #[arg(long)]
    pub release: bool,
    /// Build every test binary of the workspace (`cargo test --no-run`) instead of the
    /// xtask binary.
    #[arg(long, conflicts_with = "run_tests")]
    pub tests: bool,
    /// Build and run the workspace's tests (needs a GPU for the CUDA tests to run;
    /// set CXR_REQUIRE_GPU=cuda to make them fail rather than skip without one).
    #[arg(long)]
    pub run_tests: bool,
    /// Python interpreter whose pip installs the toolchain.
    #[arg(long, default_value = "python3")]
    pub python: String,
}
