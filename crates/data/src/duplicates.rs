//! Exact and near-duplicate images within and across splits.

use std::collections::HashMap;

use rayon::prelude::*;

use crate::ImageSet;

/// Default Hamming-distance limit for near-duplicate candidates by [`dhash`].
pub const NEAR_DUPLICATE_HAMMING: u32 = 4;

/// Default pixel correlation a [`dhash`] candidate pair needs to count as a near
/// duplicate. On 28-px chest X-rays a dHash match alone is weak evidence (thorax
/// images share their coarse gradients: in PneumoniaMNIST most val images have a
/// train image within Hamming distance 4), while re-encoded, brightened or
/// contrast-changed copies keep a pixel correlation near 1.
pub const NEAR_DUPLICATE_CORRELATION: f64 = 0.98;

/// 64-bit FNV-1a hash of an image's pixels (exact duplicates share it; equal hashes
/// are confirmed byte by byte by [`find_duplicates`]).
pub fn pixel_hash(img: &[u8]) -> u64 {
    let mut h = 0xcbf2_9ce4_8422_2325u64;
    for &b in img {
        h ^= b as u64;
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// 64-bit difference hash (dHash) of an `h × w` row-major image: the image is
/// area-averaged down to 9 columns × 8 rows, and bit `8·r + c` is set when cell
/// `(r, c)` is darker than its right neighbour `(r, c + 1)`. Small changes in
/// brightness, contrast, scale or compression leave most bits unchanged; compare
/// hashes with `(a ^ b).count_ones()`. An image with fewer pixels than `h·w` (or
/// an empty one) hashes to 0.
pub fn dhash(img: &[u8], h: usize, w: usize) -> u64 {
    if h == 0 || w == 0 || img.len() < h * w {
        return 0;
    }
    let rows = area_weights(h, 8);
    let cols = area_weights(w, 9);
    let mut cells = [[0.0f64; 9]; 8];
    for (r, rw) in rows.iter().enumerate() {
        for (c, cw) in cols.iter().enumerate() {
            let mut acc = 0.0;
            for &(y, wy) in rw {
                for &(x, wx) in cw {
                    acc += wy * wx * img[y * w + x] as f64;
                }
            }
            cells[r][c] = acc;
        }
    }
    let mut hash = 0u64;
    for (r, row) in cells.iter().enumerate() {
        for c in 0..8 {
            if row[c] < row[c + 1] {
                hash |= 1 << (8 * r + c);
            }
        }
    }
    hash
}

/// For each of `out` cells along an axis of `n` pixels, the pixels it overlaps and
/// the overlap lengths (cell width `n / out` in pixel units).
fn area_weights(n: usize, out: usize) -> Vec<Vec<(usize, f64)>> {
    let step = n as f64 / out as f64;
    (0..out)
        .map(|o| {
            let (lo, hi) = (o as f64 * step, (o + 1) as f64 * step);
            let first = lo.floor() as usize;
            let last = (hi.ceil() as usize).min(n);
            (first..last)
                .filter_map(|i| {
                    let overlap = (hi.min(i as f64 + 1.0) - lo.max(i as f64)).max(0.0);
                    (overlap > 0.0).then_some((i, overlap))
                })
                .collect()
        })
        .collect()
}

/// Duplicate counts between two splits (or within one, when `a == b`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DuplicateCount {
    /// First split's name.
    pub a: String,
    /// Second split's name (equal to `a` for duplicates within a split).
    pub b: String,
    /// Matching pairs: `(i, j)` with `i` in `a`, `j` in `b` (within a split, `i < j`).
    pub pairs: usize,
    /// Candidate pairs before confirmation: for near duplicates, the pairs within
    /// the dHash Hamming limit (whatever their correlation); for exact ones, equal
    /// to `pairs`.
    pub candidates: usize,
    /// Images of `a` with at least one match in `b` (within a split: images with
    /// at least one other match).
    pub images_a: usize,
    /// Images of `b` with at least one match in `a`.
    pub images_b: usize,
    /// Up to [`DuplicateReport::MAX_EXAMPLES`] matching pairs `(i, j)`, lowest `i`
    /// first.
    pub examples: Vec<(usize, usize)>,
}

/// Exact and near duplicates within and across named splits.
#[derive(Debug, Clone, PartialEq)]
pub struct DuplicateReport {
    /// Exact duplicates (identical pixels) within each split, in input order.
    pub exact_within: Vec<DuplicateCount>,
    /// Exact duplicates across each pair of splits `(a, b)` with `a` before `b`.
    pub exact_across: Vec<DuplicateCount>,
    /// Near duplicates ([`dhash`] Hamming distance ≤ the limit and pixel
    /// correlation ≥ the minimum; exact ones included) within each split.
    pub near_within: Vec<DuplicateCount>,
    /// Near duplicates across each pair of splits.
    pub near_across: Vec<DuplicateCount>,
    /// The Hamming-distance limit used.
    pub max_hamming: u32,
    /// The minimum pixel correlation used.
    pub min_correlation: f64,
}

impl DuplicateReport {
    /// Most example pairs kept per count.
    pub const MAX_EXAMPLES: usize = 20;
}

/// Finds exact duplicates (equal pixels: hashed, then compared byte by byte) and
/// near duplicates within each named split and across every pair of them. A near
/// duplicate is a pair whose [`dhash`]es differ in at most `max_hamming` bits (all
/// pairs compared, in parallel) and whose pixels have a Pearson correlation of at
/// least `min_correlation`; exact duplicates of non-constant images are near
/// duplicates too. Images of different sizes are never duplicates.
pub fn find_duplicates(
    sets: &[(&str, &ImageSet)],
    max_hamming: u32,
    min_correlation: f64,
) -> DuplicateReport {
    let index: Vec<SplitIndex> = sets.iter().map(|(_, s)| SplitIndex::new(s)).collect();
    let mut report = DuplicateReport {
        exact_within: Vec::new(),
        exact_across: Vec::new(),
        near_within: Vec::new(),
        near_across: Vec::new(),
        max_hamming,
        min_correlation,
    };
    for (ia, (na, sa)) in sets.iter().enumerate() {
        for (ib, (nb, sb)) in sets.iter().enumerate().skip(ia) {
            let within = ia == ib;
            let m = matches(
                (sa, &index[ia]),
                (sb, &index[ib]),
                within,
                max_hamming,
                min_correlation,
            );
            let e = count(na, nb, &m.exact, within, m.exact.len());
            let n = count(na, nb, &m.near, within, m.candidates);
            if within {
                report.exact_within.push(e);
                report.near_within.push(n);
            } else {
                report.exact_across.push(e);
                report.near_across.push(n);
            }
        }
    }
    report
}

/// Per-image dHashes and standardised pixels of one split.
struct SplitIndex {
    hashes: Vec<u64>,
    unit: Vec<Vec<f32>>,
}

impl SplitIndex {
    fn new(s: &ImageSet) -> Self {
        Self {
            hashes: (0..s.len())
                .into_par_iter()
                .map(|i| dhash(pixels(s, i), s.height, s.width))
                .collect(),
            unit: (0..s.len())
                .into_par_iter()
                .map(|i| standardised(pixels(s, i)))
                .collect(),
        }
    }
}

/// Matching pairs between two splits (within one: `i < j`).
struct Matches {
    exact: Vec<(usize, usize)>,
    near: Vec<(usize, usize)>,
    candidates: usize,
}

fn matches(
    (sa, xa): (&ImageSet, &SplitIndex),
    (sb, xb): (&ImageSet, &SplitIndex),
    within: bool,
    max_hamming: u32,
    min_correlation: f64,
) -> Matches {
    let same_size = sa.height == sb.height && sa.width == sb.width;
    let exact = exact_pairs(sa, sb, within && same_size, same_size);
    let (ha, hb) = (&xa.hashes, &xb.hashes);
    let candidates: Vec<(usize, usize)> = if same_size {
        (0..ha.len())
            .into_par_iter()
            .flat_map_iter(|i| {
                let start = if within { i + 1 } else { 0 };
                (start..hb.len())
                    .filter(move |&j| (ha[i] ^ hb[j]).count_ones() <= max_hamming)
                    .map(move |j| (i, j))
            })
            .collect()
    } else {
        Vec::new()
    };
    let (ua, ub) = (&xa.unit, &xb.unit);
    let near: Vec<(usize, usize)> = candidates
        .par_iter()
        .copied()
        .filter(|&(i, j)| {
            let r: f32 = ua[i].iter().zip(&ub[j]).map(|(x, y)| x * y).sum();
            r as f64 >= min_correlation
        })
        .collect();
    Matches {
        exact,
        near,
        candidates: candidates.len(),
    }
}

/// Training images to leave out so that training shares no image with evaluation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DuplicateExclusion {
    /// Indices into the training split to drop, ascending.
    pub removed: Vec<usize>,
    /// Of those, images that duplicate (exactly or nearly) an image of a held-out
    /// split.
    pub across: usize,
    /// Of those, later copies of a duplicate within the training split (the first
    /// copy is kept) that are not already counted in `across`.
    pub within: usize,
}

/// Plans the `--exclude-duplicates` option: every training image that is an exact
/// or near duplicate (see [`find_duplicates`]) of an image in one of `held_out`
/// (validation, test) is dropped, and of each group of duplicates within `train`
/// only the lowest index is kept. Held-out splits are never changed, so their
/// metrics stay comparable with the official splits.
pub fn plan_duplicate_exclusion(
    train: &ImageSet,
    held_out: &[&ImageSet],
    max_hamming: u32,
    min_correlation: f64,
) -> DuplicateExclusion {
    let xt = SplitIndex::new(train);
    let mut drop = vec![false; train.len()];
    for other in held_out {
        let xo = SplitIndex::new(other);
        let m = matches(
            (train, &xt),
            (other, &xo),
            false,
            max_hamming,
            min_correlation,
        );
        for &(i, _) in m.exact.iter().chain(&m.near) {
            drop[i] = true;
        }
    }
    let across = drop.iter().filter(|&&d| d).count();
    let m = matches(
        (train, &xt),
        (train, &xt),
        true,
        max_hamming,
        min_correlation,
    );
    for &(_, j) in m.exact.iter().chain(&m.near) {
        drop[j] = true; // i < j: the later copy goes
    }
    let removed: Vec<usize> = (0..train.len()).filter(|&i| drop[i]).collect();
    DuplicateExclusion {
        within: removed.len() - across,
        across,
        removed,
    }
}

fn pixels(s: &ImageSet, i: usize) -> &[u8] {
    let n = s.height * s.width;
    s.images.get(i * n..(i + 1) * n).unwrap_or(&[])
}

/// Pairs with identical pixels, sorted; `within` keeps `i < j` only.
fn exact_pairs(a: &ImageSet, b: &ImageSet, within: bool, same_size: bool) -> Vec<(usize, usize)> {
    if !same_size {
        return Vec::new();
    }
    let mut index: HashMap<u64, Vec<usize>> = HashMap::new();
    for i in 0..a.len() {
        index.entry(pixel_hash(pixels(a, i))).or_default().push(i);
    }
    let mut out = Vec::new();
    for j in 0..b.len() {
        let pj = pixels(b, j);
        if let Some(candidates) = index.get(&pixel_hash(pj)) {
            for &i in candidates {
                if (!within || i < j) && pixels(a, i) == pj {
                    out.push((i, j));
                }
            }
        }
    }
    out.sort_unstable();
    out
}

/// The image's pixels minus their mean, scaled to unit length (all zeros for a
/// constant image), so a dot product is the Pearson correlation.
fn standardised(img: &[u8]) -> Vec<f32> {
    if img.is_empty() {
        return Vec::new();
    }
    let mean = img.iter().map(|&p| p as f64).sum::<f64>() / img.len() as f64;
    let norm = img
        .iter()
        .map(|&p| (p as f64 - mean).powi(2))
        .sum::<f64>()
        .sqrt();
    if norm == 0.0 {
        return vec![0.0; img.len()];
    }
    img.iter()
        .map(|&p| ((p as f64 - mean) / norm) as f32)
        .collect()
}

fn count(
    a: &str,
    b: &str,
    pairs: &[(usize, usize)],
    within: bool,
    candidates: usize,
) -> DuplicateCount {
    let mut ia: Vec<usize> = pairs.iter().map(|p| p.0).collect();
    let mut ib: Vec<usize> = pairs.iter().map(|p| p.1).collect();
    if within {
        ia.extend(&ib);
        ib = ia.clone();
    }
    let distinct = |v: &mut Vec<usize>| {
        v.sort_unstable();
        v.dedup();
        v.len()
    };
    DuplicateCount {
        a: a.to_string(),
        b: b.to_string(),
        pairs: pairs.len(),
        candidates,
        images_a: distinct(&mut ia),
        images_b: distinct(&mut ib),
        examples: pairs
            .iter()
            .take(DuplicateReport::MAX_EXAMPLES)
            .copied()
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn img(seed: u64) -> Vec<u8> {
        (0..28 * 28u64)
            .map(|i| {
                let (y, x) = ((i / 28) as f64, (i % 28) as f64);
                let s = seed as f64;
                (128.0 + 100.0 * ((x * (0.2 + 0.1 * s)).sin() * (y * (0.3 + 0.07 * s)).cos())) as u8
            })
            .collect()
    }

    fn set(images: Vec<Vec<u8>>) -> ImageSet {
        let n = images.len();
        ImageSet {
            images: images.concat(),
            labels: vec![0; n],
            height: 28,
            width: 28,
        }
    }

    #[test]
    fn dhash_is_stable_under_small_changes_and_differs_between_images() {
        let a = img(1);
        let brighter: Vec<u8> = a.iter().map(|&p| p.saturating_add(3)).collect();
        let ha = dhash(&a, 28, 28);
        assert!((ha ^ dhash(&brighter, 28, 28)).count_ones() <= 2);
        for s in 2..6 {
            let d = (ha ^ dhash(&img(s), 28, 28)).count_ones();
            assert!(d > NEAR_DUPLICATE_HAMMING, "seed {s}: distance {d}");
        }
        // a left-to-right ramp sets every bit; its mirror none
        let ramp: Vec<u8> = (0..28 * 28).map(|i| (i % 28 * 9) as u8).collect();
        assert_eq!(dhash(&ramp, 28, 28), u64::MAX);
        let mirror: Vec<u8> = (0..28 * 28).map(|i| (255 - i % 28 * 9) as u8).collect();
        assert_eq!(dhash(&mirror, 28, 28), 0);
        assert_eq!(dhash(&[], 0, 0), 0);
    }

    #[test]
    fn area_weights_cover_every_pixel_once() {
        for (n, out) in [(28, 9), (28, 8), (5, 9), (224, 9)] {
            let w = area_weights(n, out);
            let mut total = vec![0.0; n];
            for cell in &w {
                for &(i, v) in cell {
                    total[i] += v;
                }
            }
            assert!(total.iter().all(|t| (t - 1.0).abs() < 1e-12), "{n}→{out}");
        }
    }

    #[test]
    fn finds_exact_and_near_pairs_within_and_across() {
        let near = |v: &[u8]| v.iter().map(|&p| p.saturating_add(2)).collect::<Vec<_>>();
        // train: 0, 1, 0 (exact dup within), 2 ; val: 1 (exact of train 1), near(2), 3
        let train = set(vec![img(1), img(2), img(1), img(3)]);
        let val = set(vec![img(2), near(&img(3)), img(4)]);
        let r = find_duplicates(&[("train", &train), ("val", &val)], 4, 0.98);
        let ew = &r.exact_within[0];
        assert_eq!((ew.a.as_str(), ew.pairs, ew.images_a), ("train", 1, 2));
        assert_eq!(ew.examples, vec![(0, 2)]);
        assert_eq!(r.exact_within[1].pairs, 0);
        let ea = &r.exact_across[0];
        assert_eq!((ea.a.as_str(), ea.b.as_str()), ("train", "val"));
        assert_eq!((ea.pairs, ea.images_a, ea.images_b), (1, 1, 1));
        assert_eq!(ea.examples, vec![(1, 0)]);
        let na = &r.near_across[0];
        assert_eq!(na.examples, vec![(1, 0), (3, 1)]);
        assert_eq!(r.near_within[0].pairs, 1);
        assert_eq!(r.max_hamming, 4);
        // a correlation limit above 1 keeps the dHash candidates but confirms none
        let strict = find_duplicates(&[("train", &train), ("val", &val)], 4, 1.01);
        assert_eq!(strict.near_across[0].pairs, 0);
        assert_eq!(strict.near_across[0].candidates, 2);
        assert_eq!(strict.exact_across[0].pairs, 1);
    }

    #[test]
    fn exclusion_drops_leaked_and_repeated_training_images() {
        // train: 0 = a, 1 = b, 2 = a again, 3 = c (also in test), 4 = d
        let train = set(vec![img(1), img(2), img(1), img(3), img(4)]);
        let test = set(vec![img(3), img(5)]);
        let val = set(vec![img(6)]);
        let plan = plan_duplicate_exclusion(
            &train,
            &[&val, &test],
            NEAR_DUPLICATE_HAMMING,
            NEAR_DUPLICATE_CORRELATION,
        );
        assert_eq!(plan.removed, vec![2, 3]);
        assert_eq!((plan.across, plan.within), (1, 1));
        let none = plan_duplicate_exclusion(&val, &[&set(vec![img(7)])], 4, 0.98);
        assert!(none.removed.is_empty());
    }
}
