//! Integration tests for cxr-evaluate: a run evaluated on its own test split gives its
//! own test figures; metadata joins count what does not match; subgroups, the
//! comparison and every documented bad input.

mod bad_inputs;
mod metadata;
mod reproduce;

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use cxr_runfolder::TrainConfig;

/// The PneumoniaMNIST data and two seed-CNN runs trained on it for one epoch (seeds 0
/// and 1), shared by the tests; `None` without the data.
pub struct Shared {
    /// The npz file.
    pub npz: PathBuf,
    /// Its contents.
    pub data: cxr_data::Dataset,
    /// The seed-0 run.
    pub run_a: PathBuf,
    /// The seed-1 run.
    pub run_b: PathBuf,
    _dir: tempfile::TempDir,
}

/// The shared data and runs, trained on first use.
pub fn shared() -> Option<&'static Shared> {
    static SHARED: OnceLock<Option<Shared>> = OnceLock::new();
    SHARED
        .get_or_init(|| {
            let npz = cxr_testkit::pneumoniamnist()?;
            let data = cxr_data::load_npz(&npz).unwrap();
            let dir = tempfile::tempdir().unwrap();
            let train = |seed: u64, name: &str| {
                let cfg = TrainConfig {
                    epochs: 1,
                    seed,
                    ..TrainConfig::default()
                };
                let run = dir.path().join(name);
                cxr_train::train(&cfg, &data, &run, &cxr_train::RunOptions::default()).unwrap();
                run
            };
            let run_a = train(0, "cnn-seed0");
            let run_b = train(1, "cnn-seed1");
            Some(Shared {
                npz,
                data,
                run_a,
                run_b,
                _dir: dir,
            })
        })
        .as_ref()
}

/// Options writing to `out`, with a small bootstrap.
pub fn options(out: &Path) -> cxr_evaluate::EvaluateOptions {
    cxr_evaluate::EvaluateOptions {
        out: Some(out.to_path_buf()),
        resamples: 200,
        ..cxr_evaluate::EvaluateOptions::default()
    }
}

/// Writes images of `set` (indices `which`) as PNGs under `root/NORMAL` and
/// `root/PNEUMONIA`, named `img_<index>.png`.
pub fn write_folder(set: &cxr_data::ImageSet, which: &[usize], root: &Path) {
    for class in ["NORMAL", "PNEUMONIA"] {
        std::fs::create_dir_all(root.join(class)).unwrap();
    }
    for &i in which {
        let class = if set.labels[i] == 1 {
            "PNEUMONIA"
        } else {
            "NORMAL"
        };
        let img =
            image::GrayImage::from_raw(set.width as u32, set.height as u32, set.image(i).to_vec())
                .unwrap();
        img.save(root.join(class).join(format!("img_{i:04}.png")))
            .unwrap();
    }
}
