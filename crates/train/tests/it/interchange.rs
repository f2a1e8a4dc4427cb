//! PyTorch interchange: the `model.safetensors` that training writes holds exactly the
//! tensors of the PyTorch module's `state_dict` — names, dtypes, shapes, nothing more —
//! so that `load_state_dict(strict=True)` accepts it, and `model.json` parses. The
//! lists are written by `make_torchvision_keys.py` from torchvision's
//! `resnet18(num_classes=1)` and from the `SeedCnn` class of `docs/pytorch.md`.

use std::collections::BTreeMap;
use std::path::Path;

use cxr_runfolder::{ModelCard, ModelKind, names};
use cxr_train::{RunOptions, TrainConfig, train};
use safetensors::{Dtype, SafeTensors};

use crate::tiny_dataset;

/// `name → (dtype, shape)` from a `name dtype [d0,d1,…]` list.
fn expected(list: &str) -> BTreeMap<String, (String, Vec<usize>)> {
    list.lines()
        .map(|line| {
            let mut f = line.split(' ');
            let (Some(name), Some(dtype), Some(shape), None) =
                (f.next(), f.next(), f.next(), f.next())
            else {
                panic!("bad line {line:?}");
            };
            let dims = shape
                .strip_prefix('[')
                .and_then(|s| s.strip_suffix(']'))
                .unwrap_or_else(|| panic!("bad shape in {line:?}"));
            let dims = dims
                .split(',')
                .filter(|d| !d.is_empty())
                .map(|d| d.parse().unwrap())
                .collect();
            (name.to_string(), (dtype.to_string(), dims))
        })
        .collect()
}

fn torch_dtype(d: Dtype) -> String {
    match d {
        Dtype::F32 => "float32".into(),
        Dtype::I64 => "int64".into(),
        other => format!("{other:?}"),
    }
}

/// Checks the run folder `dir`: `model.safetensors` against `list`, `model.json` for
/// `network`. Returns the file's bytes.
fn check_run(dir: &Path, list: &str, network: ModelKind) -> Vec<u8> {
    let want = expected(list);
    let bytes = std::fs::read(dir.join(names::MODEL)).unwrap();
    let file = SafeTensors::deserialize(&bytes).unwrap();
    let got: BTreeMap<String, (String, Vec<usize>)> = file
        .tensors()
        .into_iter()
        .map(|(name, t)| (name, (torch_dtype(t.dtype()), t.shape().to_vec())))
        .collect();
    let missing: Vec<&String> = want.keys().filter(|k| !got.contains_key(*k)).collect();
    let extra: Vec<&String> = got.keys().filter(|k| !want.contains_key(*k)).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "{network:?}: missing {missing:?}, not in the state_dict {extra:?}"
    );
    for (name, w) in &want {
        assert_eq!(&got[name], w, "{network:?}: {name} (dtype, shape)");
    }

    let card = ModelCard::read(&dir.join(names::MODEL_CARD)).unwrap();
    assert_eq!(card.network, network);
    assert_eq!(card.weights, names::MODEL);
    assert!(card.derived.is_none());
    assert!(card.temperature.is_finite() && card.temperature > 0.0);
    bytes
}

#[test]
fn resnet18_weights_have_torchvisions_state_dict() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = TrainConfig {
        epochs: 1,
        batch_size: 4,
        eval_batch_size: 8,
        image_size: 28,
        augment: cxr_runfolder::AugmentPreset::None,
        ..TrainConfig::resnet18("none")
    };
    train(&cfg, &tiny_dataset(), tmp.path(), &RunOptions::default()).unwrap();
    let bytes = check_run(
        tmp.path(),
        include_str!("torchvision_resnet18_keys.txt"),
        ModelKind::Resnet18,
    );
    // num_batches_tracked counts the training batches up to the kept epoch: one
    // epoch of 8 images in batches of 4.
    let file = SafeTensors::deserialize(&bytes).unwrap();
    let counts: Vec<(String, i64)> = file
        .tensors()
        .into_iter()
        .filter(|(name, _)| name.ends_with(".num_batches_tracked"))
        .map(|(name, t)| (name, i64::from_le_bytes(t.data().try_into().unwrap())))
        .collect();
    assert_eq!(counts.len(), 20);
    for (name, n) in counts {
        assert_eq!(n, 2, "{name}");
    }
}

#[test]
fn cnn_weights_have_the_pytorch_classs_state_dict() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = TrainConfig {
        epochs: 1,
        ..TrainConfig::default()
    };
    train(&cfg, &tiny_dataset(), tmp.path(), &RunOptions::default()).unwrap();
    check_run(tmp.path(), include_str!("cnn_keys.txt"), ModelKind::Cnn);
}
