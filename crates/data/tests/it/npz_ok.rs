//! Valid npz files: the real PneumoniaMNIST file and small written ones.

use candle_core::Device;
use cxr_data::{Batcher, BatcherConfig, Split, load_npz};

use crate::{Arr, real_npz, valid_arrays, write_npz};

#[test]
fn real_pneumoniamnist_loads_with_official_split_sizes() {
    let Some(p) = real_npz() else { return };
    let d = load_npz(&p).unwrap();
    assert_eq!((d.train.len(), d.val.len(), d.test.len()), (4708, 524, 624));
    assert_eq!(d.train.class_counts(), [1214, 3494]);
    assert_eq!(d.val.class_counts(), [135, 389]);
    assert_eq!(d.test.class_counts(), [234, 390]);
    for s in Split::ALL {
        let set = d.split(s);
        assert_eq!((set.height, set.width), (28, 28), "{}", s.as_str());
        assert_eq!(set.images.len(), set.len() * 28 * 28);
    }
    assert_eq!(d.sha256, cxr_data::sha256_file(&p).unwrap());
    assert_eq!(d.source, p);

    // a smoke batch straight from the real data: shapes, range [-1, 1] (tolerance 1e-6)
    let cfg = BatcherConfig {
        batch_size: 32,
        shuffle: true,
        seed: 7,
        limit: Some(100),
        augment: Some(cxr_data::Augment::light()),
        ..BatcherConfig::default()
    };
    let batches: Vec<_> = Batcher::new(&d.train, cfg, &Device::Cpu)
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(batches.len(), 4);
    assert_eq!(batches[0].x.dims(), &[32, 1, 28, 28]);
    assert_eq!(batches[3].y.dims(), &[4]);
    let x: Vec<f32> = batches[0].x.flatten_all().unwrap().to_vec1().unwrap();
    assert!(x.iter().all(|v| (-1.0 - 1e-6..=1.0 + 1e-6).contains(v)));

    // resizing to 64 keeps labels and yields 64×64 images
    let big = d.test.resized(64).unwrap();
    assert_eq!((big.len(), big.height, big.width), (624, 64, 64));
    assert_eq!(big.labels, d.test.labels);
}

#[test]
fn stored_and_deflated_npz_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    for deflate in [false, true] {
        let p = dir.path().join(format!("ok-{deflate}.npz"));
        let arrays = valid_arrays(3, 64);
        write_npz(&p, &arrays, deflate);
        let d = load_npz(&p).unwrap();
        assert_eq!(d.test.len(), 3);
        assert_eq!(d.test.height, 64);
        assert_eq!(d.test.images, arrays[4].data);
        assert_eq!(d.train.labels, vec![0, 1, 0]);
        assert_eq!(d.split(Split::Val).len(), 3);
    }
}

#[test]
fn flat_labels_other_sizes_and_extra_arrays_are_accepted() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("flat.npz");
    let mut arrays = valid_arrays(2, 16); // 16 is no MedMNIST size: loads with a warning
    for a in arrays.iter_mut().filter(|a| a.name.ends_with("labels")) {
        a.shape = vec![2];
        a.descr = "u1".into();
    }
    arrays.push(Arr {
        name: "extra".into(),
        descr: "<f8".into(),
        fortran: false,
        shape: vec![1],
        data: vec![0; 8],
    });
    write_npz(&p, &arrays, true);
    let d = load_npz(&p).unwrap();
    assert_eq!((d.train.len(), d.train.height), (2, 16));
    assert_eq!(d.val.labels, vec![0, 1]);
}

/// PneumoniaMNIST has val images that also occur in train: counted exactly; the
/// near-duplicate check (dHash candidates confirmed by pixel correlation) finds no
/// others.
#[test]
fn real_pneumoniamnist_duplicates() {
    let Some(p) = real_npz() else { return };
    let d = load_npz(&p).unwrap();
    let sets = [("train", &d.train), ("val", &d.val), ("test", &d.test)];
    let t0 = std::time::Instant::now();
    let r = cxr_data::find_duplicates(
        &sets,
        cxr_data::NEAR_DUPLICATE_HAMMING,
        cxr_data::NEAR_DUPLICATE_CORRELATION,
    );
    eprintln!("duplicates in {:.2} s", t0.elapsed().as_secs_f64());
    for c in r.exact_within.iter().chain(&r.exact_across) {
        eprintln!(
            "exact {}-{}: {} pairs, {} / {} images",
            c.a, c.b, c.pairs, c.images_a, c.images_b
        );
    }
    for c in r.near_within.iter().chain(&r.near_across) {
        eprintln!(
            "near {}-{}: {} pairs ({} dHash candidates), {} / {} images",
            c.a, c.b, c.pairs, c.candidates, c.images_a, c.images_b
        );
    }
    // measured on ../shared/data/pneumoniamnist.npz (MedMNIST v2 arrays): 10 train–val
    // pairs covering 8 val images; 18 pairs within train, 3 within test, none
    // between test and the other splits
    let tv = &r.exact_across[0];
    assert_eq!((tv.a.as_str(), tv.b.as_str()), ("train", "val"));
    assert_eq!((tv.pairs, tv.images_a, tv.images_b), (10, 10, 8));
    let within: Vec<usize> = r.exact_within.iter().map(|c| c.pairs).collect();
    assert_eq!(within, vec![18, 0, 3]);
    assert_eq!((r.exact_across[1].pairs, r.exact_across[2].pairs), (0, 0));
    // the next most similar cross-split pairs correlate below 0.98: near = exact here
    for (e, n) in r.exact_across.iter().zip(&r.near_across) {
        assert_eq!(n.pairs, e.pairs, "{}-{}", n.a, n.b);
        assert!(n.candidates > n.pairs);
    }
    for (i, j) in &tv.examples {
        assert_eq!(d.train.image(*i), d.val.image(*j));
    }
}

#[test]
fn npz_from_memory_equals_npz_from_file() {
    let dir = tempfile::tempdir().unwrap();
    for deflate in [false, true] {
        let p = dir.path().join(format!("small-{deflate}.npz"));
        write_npz(&p, &valid_arrays(3, 28), deflate);
        let a = load_npz(&p).unwrap();
        let b = cxr_data::load_npz_bytes(&std::fs::read(&p).unwrap(), &p).unwrap();
        assert_eq!(a.train.images, b.train.images);
        assert_eq!(a.test.labels, b.test.labels);
        assert_eq!(a.sha256, b.sha256);
        assert_eq!(a.source, b.source);
    }
}
