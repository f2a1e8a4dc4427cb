//! Output buffers of the CPU fast path.

use rayon::prelude::*;

/// Buffers of at least this many values are zero-filled by rayon's threads.
const PAR_MIN: usize = 1 << 16;

/// A zero-filled `Vec<f32>` of `len` values. Long ones (activations and their gradients,
/// megabytes each) are filled by all of rayon's threads instead of one serial `memset`
/// between two parallel kernels.
pub(crate) fn zeroed(len: usize) -> Vec<f32> {
    if len < PAR_MIN {
        return vec![0f32; len];
    }
    let mut v = Vec::with_capacity(len);
    v.par_extend(rayon::iter::repeat_n(0f32, len));
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zeroed_has_the_length_and_only_zeros() {
        for len in [0, 1, PAR_MIN - 1, PAR_MIN, 3 * PAR_MIN + 17] {
            let v = zeroed(len);
            assert_eq!(v.len(), len);
            assert!(v.iter().all(|&x| x.to_bits() == 0), "len {len}");
        }
    }
}
