//! `simd_fn!`: a function compiled twice, for the baseline CPU and with AVX-512 + FMA,
//! the second called where the CPU has both. The crate is built for the baseline x86-64
//! CPU (SSE2), so without this its element-wise kernels would use 128-bit vectors at best.

/// Defines `fn $name` whose body is compiled twice: for the baseline CPU and, called
/// where the CPU has them, with AVX-512 and FMA enabled, so that LLVM turns its loops over
/// 16-lane arrays into 512-bit vector instructions and `mul_add` into one instruction.
/// The body and everything it calls must be `#[inline(always)]` for that (a function
/// that is not inlined is compiled for the baseline CPU). Results are the same either
/// way (the same operations in the same order; `mul_add` is fused in both).
macro_rules! simd_fn {
    ($(#[$m:meta])* fn $name:ident($($arg:ident: $ty:ty),* $(,)?) $(-> $ret:ty)? $body:block) => {
        $(#[$m])*
        // `unsafe` only to call the fast copy after detecting its features.
        #[allow(unsafe_code)]
        fn $name($($arg: $ty),*) $(-> $ret)? {
            #[inline(always)]
            fn body($($arg: $ty),*) $(-> $ret)? $body
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx512f,fma")]
                fn fast($($arg: $ty),*) $(-> $ret)? {
                    body($($arg),*)
                }
                if $crate::simd::simd_available() {
                    // SAFETY: `fast` needs only the `avx512f` and `fma` target features,
                    // both detected on this CPU by `simd_available`.
                    return unsafe { fast($($arg),*) };
                }
            }
            body($($arg),*)
        }
    };
}

/// Whether this CPU has AVX-512 (`avx512f`) and FMA, the features of `simd_fn!`'s fast
/// copies (detected once).
#[cfg(target_arch = "x86_64")]
pub(crate) fn simd_available() -> bool {
    static HAS: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *HAS.get_or_init(|| {
        std::arch::is_x86_feature_detected!("avx512f") && std::arch::is_x86_feature_detected!("fma")
    })
}
