//! ResNet18: parity with torchvision (`resnet18_io.safetensors`), BatchNorm training
//! semantics, weight loading errors and offline hub loading.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};
use cxr_models::{
    CnnConfig, HubOptions, ModelError, ResNet18, ResNetConfig, TensorRole, WeightsSource,
    fetch_hub_file, init_resnet18, init_seed_cnn, load_resnet18_weights, normal,
};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

/// The fixture folder holding the ResNet18 files (`CXR_FIXTURES` or the shared
/// folder); `None` (test skipped) only outside CI.
fn resnet_fixtures() -> Option<PathBuf> {
    let random = cxr_testkit::fixture("resnet18_random.safetensors")?;
    cxr_testkit::fixture("resnet18_io.safetensors")?;
    random.parent().map(PathBuf::from)
}

fn max_abs_err(a: &Tensor, b: &Tensor) -> f32 {
    assert_eq!(a.dims(), b.dims());
    let a: Vec<f32> = a.flatten_all().unwrap().to_vec1().unwrap();
    let b: Vec<f32> = b.flatten_all().unwrap().to_vec1().unwrap();
    a.iter()
        .zip(&b)
        .fold(0.0f32, |m, (x, y)| m.max((x - y).abs()))
}

fn model(varmap: &VarMap, cfg: &ResNetConfig) -> ResNet18 {
    ResNet18::new(
        VarBuilder::from_varmap(varmap, DType::F32, &Device::Cpu),
        cfg,
    )
    .unwrap()
}

fn var_values(varmap: &VarMap, name: &str) -> Vec<f32> {
    varmap.data().lock().unwrap()[name]
        .as_tensor()
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap()
}

/// Eval-mode logits of torchvision's resnet18 (randomised BatchNorm statistics) for
/// 224 px and 64 px inputs, with the checkpoint's own 1000-class `fc`.
#[test]
fn resnet18_logits_match_torchvision() {
    let Some(dir) = resnet_fixtures() else { return };
    let cfg = ResNetConfig { num_classes: 1000 };
    let varmap = VarMap::new();
    init_resnet18(&varmap, &cfg, 0, &Device::Cpu).unwrap();
    let report =
        load_resnet18_weights(&varmap, &cfg, &dir.join("resnet18_random.safetensors")).unwrap();
    assert!(report.head_loaded);
    assert_eq!(report.loaded, 102);
    let net = model(&varmap, &cfg);
    let io =
        candle_core::safetensors::load(dir.join("resnet18_io.safetensors"), &Device::Cpu).unwrap();
    for size in [224, 64] {
        let logits = net.forward(&io[&format!("input_{size}")]).unwrap();
        let want = &io[&format!("logits_{size}")];
        let err = max_abs_err(&logits, want);
        eprintln!("resnet18 parity at {size} px: max abs error {err:e}");
        assert!(err <= 1e-4, "{size} px: max abs error {err:e} > 1e-4");
    }
}

/// The ImageNet checkpoint loads into the one-logit model: body from the file, `fc`
/// skipped (kept from initialisation).
#[test]
fn imagenet_checkpoint_loads_with_new_head() {
    let Some(dir) = resnet_fixtures() else { return };
    let cfg = ResNetConfig::default();
    let varmap = VarMap::new();
    init_resnet18(&varmap, &cfg, 3, &Device::Cpu).unwrap();
    let head_before = var_values(&varmap, "fc.weight");
    let path = dir.join("resnet18_random.safetensors");
    let report = load_resnet18_weights(&varmap, &cfg, &path).unwrap();
    assert!(!report.head_loaded);
    assert_eq!(report.loaded, 100);
    assert_eq!(
        report.skipped,
        vec!["fc.bias".to_string(), "fc.weight".to_string()]
    );
    assert_eq!(var_values(&varmap, "fc.weight"), head_before);
    let file = candle_core::safetensors::load(&path, &Device::Cpu).unwrap();
    let want: Vec<f32> = file["layer4.1.bn2.running_var"].to_vec1().unwrap();
    assert_eq!(var_values(&varmap, "layer4.1.bn2.running_var"), want);
    let x = Tensor::zeros((2, 3, 64, 64), DType::F32, &Device::Cpu).unwrap();
    assert_eq!(model(&varmap, &cfg).forward(&x).unwrap().dims(), &[2]);
}

/// Direct 7×7/stride-2/pad-3 convolution without bias, `[N, 3, H, W]` → `[N, 64, H', W']`,
/// by plain loops (f64 accumulation).
fn conv1_reference(x: &[f32], n: usize, h: usize, w: usize, k: &[f32]) -> (Vec<f64>, usize, usize) {
    let (co, ci, ks, stride, pad) = (64usize, 3usize, 7usize, 2usize, 3isize);
    let ho = (h + 6 - ks) / stride + 1;
    let wo = (w + 6 - ks) / stride + 1;
    let mut out = vec![0.0f64; n * co * ho * wo];
    for b in 0..n {
        for o in 0..co {
            for i in 0..ho {
                for j in 0..wo {
                    let mut acc = 0.0f64;
                    for c in 0..ci {
                        for di in 0..ks {
                            for dj in 0..ks {
                                let (y, xx) = (
                                    (stride * i + di) as isize - pad,
                                    (stride * j + dj) as isize - pad,
                                );
                                if y < 0 || xx < 0 || y >= h as isize || xx >= w as isize {
                                    continue;
                                }
                                let xv = x[((b * ci + c) * h + y as usize) * w + xx as usize];
                                let kv = k[((o * ci + c) * ks + di) * ks + dj];
                                acc += xv as f64 * kv as f64;
                            }
                        }
                    }
                    out[((b * co + o) * ho + i) * wo + j] = acc;
                }
            }
        }
    }
    (out, ho, wo)
}

/// One training-mode forward updates `bn1`'s running statistics exactly as PyTorch's
/// momentum 0.1 does (new = 0.9·old + 0.1·batch, unbiased batch variance), computed
/// here independently from a loop convolution; eval mode leaves them alone; a
/// backward pass reaches every parameter and no buffer.
#[test]
fn train_mode_updates_batchnorm_running_stats_like_pytorch() {
    let cfg = ResNetConfig::default();
    let varmap = VarMap::new();
    init_resnet18(&varmap, &cfg, 11, &Device::Cpu).unwrap();
    let mut rng = ChaCha8Rng::seed_from_u64(42);
    // non-trivial starting statistics, so both terms of the update matter
    let rm0: Vec<f32> = normal(&mut rng, 64, 0.5);
    let rv0: Vec<f32> = normal(&mut rng, 64, 0.3)
        .iter()
        .map(|v| 1.0 + v.abs())
        .collect();
    {
        let data = varmap.data().lock().unwrap();
        data["bn1.running_mean"]
            .set(&Tensor::new(rm0.as_slice(), &Device::Cpu).unwrap())
            .unwrap();
        data["bn1.running_var"]
            .set(&Tensor::new(rv0.as_slice(), &Device::Cpu).unwrap())
            .unwrap();
    }
    let net = model(&varmap, &cfg);
    let (n, h, w) = (3usize, 20usize, 18usize);
    let xv = normal(&mut rng, n * 3 * h * w, 1.0);
    let x = Tensor::from_vec(xv.clone(), (n, 3, h, w), &Device::Cpu).unwrap();

    // eval: no change
    net.forward_t(&x, false).unwrap();
    assert_eq!(var_values(&varmap, "bn1.running_mean"), rm0);
    let deep_before = var_values(&varmap, "layer4.1.bn2.running_mean");

    // train: one update
    let (features, logits) = net.forward_with_features_t(&x, true).unwrap();
    assert_eq!(logits.dims(), &[n]);
    assert_eq!(features.dims()[..2], [n, 512]);
    let k = var_values(&varmap, "conv1.weight");
    let (conv, ho, wo) = conv1_reference(&xv, n, h, w, &k);
    let count = (n * ho * wo) as f64;
    let got_rm = var_values(&varmap, "bn1.running_mean");
    let got_rv = var_values(&varmap, "bn1.running_var");
    for c in 0..64 {
        let vals: Vec<f64> = (0..n)
            .flat_map(|b| {
                let start = (b * 64 + c) * ho * wo;
                conv[start..start + ho * wo].to_vec()
            })
            .collect();
        let mean = vals.iter().sum::<f64>() / count;
        let var_unbiased = vals.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (count - 1.0);
        let want_rm = 0.9 * rm0[c] as f64 + 0.1 * mean;
        let want_rv = 0.9 * rv0[c] as f64 + 0.1 * var_unbiased;
        // f32 arithmetic in the model: tolerance 1e-5 relative to the magnitude
        assert!(
            (got_rm[c] as f64 - want_rm).abs() <= 1e-5 * (1.0 + want_rm.abs()),
            "channel {c}: running_mean {} vs {want_rm}",
            got_rm[c]
        );
        assert!(
            (got_rv[c] as f64 - want_rv).abs() <= 1e-5 * (1.0 + want_rv.abs()),
            "channel {c}: running_var {} vs {want_rv}",
            got_rv[c]
        );
    }
    assert_ne!(
        var_values(&varmap, "layer4.1.bn2.running_mean"),
        deep_before
    );

    // gradients: every trainable parameter gets one, no buffer does
    let groups = ResNet18::param_groups(&varmap, &cfg).unwrap();
    let grads = logits.sum_all().unwrap().backward().unwrap();
    for (name, var) in groups.trainable() {
        assert!(
            grads.get(var.as_tensor()).is_some(),
            "no gradient for {name}"
        );
    }
    for (name, var) in &groups.buffers {
        assert!(
            grads.get(var.as_tensor()).is_none(),
            "gradient for buffer {name}"
        );
    }
    assert_eq!(
        groups.body_conv.len() + groups.body_norm.len() + groups.head.len(),
        62
    );
    assert_eq!(groups.buffers.len(), 40);
    assert_eq!(groups.frozen_body_trainable().len(), 42);
    let [g0, g1, g2] = groups.by_lr_group();
    assert_eq!(g2.len(), 2);
    assert!(g0.iter().any(|(n, _)| n == "layer2.1.conv2.weight"));
    assert!(g1.iter().any(|(n, _)| n == "layer3.0.downsample.1.bias"));
    assert_eq!(g0.len() + g1.len(), 60);
}

fn save(tensors: &HashMap<String, Tensor>, path: &Path) {
    candle_core::safetensors::save(tensors, path).unwrap();
}

fn resnet_tensors(seed: u64) -> HashMap<String, Tensor> {
    let varmap = VarMap::new();
    init_resnet18(&varmap, &ResNetConfig::default(), seed, &Device::Cpu).unwrap();
    let data = varmap.data().lock().unwrap();
    data.iter()
        .map(|(k, v)| (k.clone(), v.as_tensor().clone()))
        .collect()
}

/// Missing keys, wrong shapes, foreign tensors and the seed CNN's checkpoint are typed
/// errors naming the file and key, and leave the model untouched.
#[test]
fn bad_weights_are_typed_errors_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = ResNetConfig::default();
    let varmap = VarMap::new();
    init_resnet18(&varmap, &cfg, 1, &Device::Cpu).unwrap();
    let before = var_values(&varmap, "layer1.0.conv1.weight");

    let mut missing = resnet_tensors(2);
    missing.remove("layer3.1.bn2.running_var");
    let p = dir.path().join("missing.safetensors");
    save(&missing, &p);
    match load_resnet18_weights(&varmap, &cfg, &p) {
        Err(ModelError::MissingTensor { path, key }) => {
            assert_eq!(key, "layer3.1.bn2.running_var");
            assert_eq!(path, p);
        }
        other => panic!("expected MissingTensor, got {other:?}"),
    }

    let mut wrong = resnet_tensors(2);
    wrong.insert(
        "layer2.0.downsample.0.weight".into(),
        Tensor::zeros((128, 64, 3, 3), DType::F32, &Device::Cpu).unwrap(),
    );
    let p = dir.path().join("wrong.safetensors");
    save(&wrong, &p);
    match load_resnet18_weights(&varmap, &cfg, &p) {
        Err(ModelError::ShapeMismatch {
            key,
            expected,
            actual,
            ..
        }) => {
            assert_eq!(key, "layer2.0.downsample.0.weight");
            assert_eq!(expected, vec![128, 64, 1, 1]);
            assert_eq!(actual, vec![128, 64, 3, 3]);
        }
        other => panic!("expected ShapeMismatch, got {other:?}"),
    }

    // a deeper ResNet has every ResNet18 tensor plus more
    let mut deeper = resnet_tensors(2);
    deeper.insert(
        "layer1.2.conv1.weight".into(),
        Tensor::zeros((64, 64, 3, 3), DType::F32, &Device::Cpu).unwrap(),
    );
    let p = dir.path().join("deeper.safetensors");
    save(&deeper, &p);
    match load_resnet18_weights(&varmap, &cfg, &p) {
        Err(ModelError::UnexpectedTensor { key, .. }) => assert_eq!(key, "layer1.2.conv1.weight"),
        other => panic!("expected UnexpectedTensor, got {other:?}"),
    }

    // the seed CNN's checkpoint: its conv1 has a bias ResNet18 lacks
    let cnn = VarMap::new();
    init_seed_cnn(&cnn, &CnnConfig::default(), 0, &Device::Cpu).unwrap();
    let p = dir.path().join("cnn.safetensors");
    cnn.save(&p).unwrap();
    let err = load_resnet18_weights(&varmap, &cfg, &p).unwrap_err();
    assert!(
        matches!(&err, ModelError::UnexpectedTensor { key, .. } if key == "conv1.bias"),
        "{err:?}"
    );
    assert!(err.to_string().contains("cnn.safetensors"), "{err}");
    assert!(!err.is_hub_unavailable());
    // without the foreign tensors the shape check names conv1.weight
    let cnn_convs: HashMap<String, Tensor> = HashMap::from([(
        "conv1.weight".to_string(),
        cnn.data().lock().unwrap()["conv1.weight"]
            .as_tensor()
            .clone(),
    )]);
    let p = dir.path().join("cnn_conv1.safetensors");
    save(&cnn_convs, &p);
    match load_resnet18_weights(&varmap, &cfg, &p) {
        Err(ModelError::ShapeMismatch { key, actual, .. }) => {
            assert_eq!(key, "conv1.weight");
            assert_eq!(actual, vec![32, 1, 3, 3]);
        }
        other => panic!("expected ShapeMismatch, got {other:?}"),
    }

    // not a safetensors file, and no file at all
    let p = dir.path().join("garbage.safetensors");
    std::fs::write(&p, b"not a safetensors file").unwrap();
    assert!(matches!(
        load_resnet18_weights(&varmap, &cfg, &p),
        Err(ModelError::Weights { path, .. }) if path == p
    ));
    let p = dir.path().join("absent.safetensors");
    assert!(matches!(
        load_resnet18_weights(&varmap, &cfg, &p),
        Err(ModelError::Weights { .. })
    ));

    assert_eq!(var_values(&varmap, "layer1.0.conv1.weight"), before);

    // num_batches_tracked (torchvision state dicts) is accepted and skipped
    let mut tracked = resnet_tensors(2);
    tracked.insert(
        "layer1.0.bn1.num_batches_tracked".into(),
        Tensor::new(&[5i64], &Device::Cpu).unwrap(),
    );
    let p = dir.path().join("tracked.safetensors");
    save(&tracked, &p);
    let report = load_resnet18_weights(&varmap, &cfg, &p).unwrap();
    assert!(report.head_loaded);
    assert_eq!(
        report.skipped,
        vec!["layer1.0.bn1.num_batches_tracked".to_string()]
    );
    assert_eq!(
        var_values(&varmap, "layer1.0.conv1.weight"),
        tracked["layer1.0.conv1.weight"]
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap()
    );
}

/// Lays out `file` in `cache` as the hub client does: the blob under `blobs/<etag>`,
/// a relative symlink from `snapshots/<commit>/model.safetensors`, and `refs/main`
/// holding the commit.
fn fake_hub_cache(cache: &Path, repo: &str, commit: &str, file: &Path) -> PathBuf {
    let folder = cache.join(format!("models--{}", repo.replace('/', "--")));
    let etag = "4c2b5e1f0a9d8c7b6a5f4e3d2c1b0a9f8e7d6c5b4a3f2e1d0c9b8a7f6e5d4c3b";
    std::fs::create_dir_all(folder.join("blobs")).unwrap();
    std::fs::create_dir_all(folder.join("refs")).unwrap();
    let snap = folder.join("snapshots").join(commit);
    std::fs::create_dir_all(&snap).unwrap();
    std::fs::copy(file, folder.join("blobs").join(etag)).unwrap();
    #[cfg(unix)]
    std::os::unix::fs::symlink(
        format!("../../blobs/{etag}"),
        snap.join("model.safetensors"),
    )
    .unwrap();
    #[cfg(not(unix))]
    std::fs::copy(file, snap.join("model.safetensors")).unwrap();
    std::fs::write(folder.join("refs").join("main"), commit).unwrap();
    snap.join("model.safetensors")
}

/// Offline hub loading from a local cache in the hub's own layout; a repository that
/// is not cached is `HubUnavailable` (the fallback case), never a network call.
#[test]
#[cfg(feature = "hub")]
fn hub_weights_load_offline_from_local_cache() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = ResNetConfig::default();
    let src = VarMap::new();
    init_resnet18(&src, &cfg, 21, &Device::Cpu).unwrap();
    let file = tmp.path().join("src.safetensors");
    src.save(&file).unwrap();
    let cache = tmp.path().join("hub");
    let commit = "0123456789abcdef0123456789abcdef01234567";
    let snap = fake_hub_cache(&cache, "timm/resnet18.a1_in1k", commit, &file);
    let hub = HubOptions {
        cache_dir: cache.clone(),
        offline: true,
    };

    let source = WeightsSource::default();
    let path = source.resolve(&hub).unwrap().unwrap();
    assert_eq!(path, snap);
    // by commit too
    let by_commit = fetch_hub_file(
        "timm/resnet18.a1_in1k",
        Some(commit),
        "model.safetensors",
        &hub,
    )
    .unwrap();
    assert_eq!(by_commit, snap);

    let dst = VarMap::new();
    init_resnet18(&dst, &cfg, 22, &Device::Cpu).unwrap();
    let report = load_resnet18_weights(&dst, &cfg, &path).unwrap();
    assert_eq!(report.loaded, 102);
    for spec in ResNet18::tensor_specs(&cfg) {
        assert_eq!(
            var_values(&dst, &spec.name),
            var_values(&src, &spec.name),
            "{}",
            spec.name
        );
    }

    // not in the cache, offline: the "fall back to scratch" error
    let err = "hub:timm/resnet50.a1_in1k"
        .parse::<WeightsSource>()
        .unwrap()
        .resolve(&hub)
        .unwrap_err();
    assert!(err.is_hub_unavailable(), "{err:?}");
    assert!(
        matches!(&err, ModelError::HubUnavailable { repo, .. } if repo == "timm/resnet50.a1_in1k")
    );
    // a revision the cache does not know
    let err = fetch_hub_file(
        "timm/resnet18.a1_in1k",
        Some("v2"),
        "model.safetensors",
        &hub,
    )
    .unwrap_err();
    assert!(err.is_hub_unavailable(), "{err:?}");
    // `none` needs no hub at all
    assert_eq!(WeightsSource::None.resolve(&hub).unwrap(), None);
    // a cached file that is not a ResNet18 checkpoint is a bad file, not a hub problem
    let cnn = VarMap::new();
    init_seed_cnn(&cnn, &CnnConfig::default(), 0, &Device::Cpu).unwrap();
    let cnn_file = tmp.path().join("cnn.safetensors");
    cnn.save(&cnn_file).unwrap();
    let other = fake_hub_cache(&cache, "someone/cnn", commit, &cnn_file);
    let p = WeightsSource::Hub {
        repo: "someone/cnn".into(),
        revision: None,
    }
    .resolve(&hub)
    .unwrap()
    .unwrap();
    assert_eq!(p, other);
    let err = load_resnet18_weights(&dst, &cfg, &p).unwrap_err();
    assert!(!err.is_hub_unavailable());
    assert!(matches!(err, ModelError::UnexpectedTensor { .. }));
}

/// Roles agree with names, so a trainer can filter any VarMap by name alone.
#[test]
fn roles_partition_a_varmap() {
    let cfg = ResNetConfig::default();
    let varmap = VarMap::new();
    init_resnet18(&varmap, &cfg, 0, &Device::Cpu).unwrap();
    let data = varmap.data().lock().unwrap();
    let mut buffers = 0;
    for name in data.keys() {
        let role = ResNet18::tensor_role(name).unwrap_or_else(|| panic!("{name} has no role"));
        if role == TensorRole::Buffer {
            assert!(name.ends_with("running_mean") || name.ends_with("running_var"));
            buffers += 1;
        }
    }
    assert_eq!(buffers, 40);
}
