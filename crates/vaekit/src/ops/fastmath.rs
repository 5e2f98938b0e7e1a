//! `exp`, `softplus` and `sigmoid` for f32 from plain arithmetic, so loops over them vectorise.
//!
//! The C library's `expf` and `logf` are one call per element; in the Bernoulli likelihood's
//! loops they were most of the time. These are branch-free polynomials (Cephes' `expf`, and an
//! `atanh` series for `ln(1 + t)`), within a few units in the last place of the library's result
//! (tests below). [`simd_dispatch!`] compiles a loop three times, for AVX-512, AVX2+FMA and the
//! baseline, and picks one at run time.

/// `e^x` for `x` in [-87.3, 88.3] (clamped there): `2^n e^r` with `|r| <= ln(2) / 2` and a
/// degree-7 polynomial for `e^r` (Cephes `expf`); relative error under 3e-7.
#[inline(always)]
pub fn exp(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    // ln 2 in two parts, so that n * LN2_HI is exact.
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    // Adding 1.5 * 2^23 rounds to the nearest integer without a call to `round`.
    const ROUND: f32 = 12_582_912.0;
    let x = x.clamp(-87.3, 88.3);
    let t = x * LOG2E + ROUND;
    let n = t - ROUND;
    let r = x - n * LN2_HI - n * LN2_LO;
    let p = 1.987_569_1e-4;
    let p = p * r + 1.398_199_9e-3;
    let p = p * r + 8.333_452e-3;
    let p = p * r + 4.166_579_6e-2;
    let p = p * r + 1.666_666_5e-1;
    let p = p * r + 0.5;
    let er = p * r * r + r + 1.0;
    // 2^n from its exponent bits (n is in [-126, 127] after the clamp). t = 1.5 * 2^23 + n has
    // an ulp of 1, so its low bits hold n: read that way, not with `n as i32`, whose saturating
    // conversion LLVM does not vectorise (it made every loop calling exp scalar, ~2.6 ns per
    // element).
    let n_bits = t.to_bits().wrapping_sub(ROUND.to_bits());
    let two_n = f32::from_bits(n_bits.wrapping_add(127) << 23);
    er * two_n
}

/// `ln(1 + t)` for `t` in [0, 1]: `2 atanh(s)` with `s = t / (2 + t) <= 1/3`, nine odd terms
/// of the series (the next is below 3e-10 relative); accurate for tiny `t` too.
#[inline(always)]
pub fn ln_1p_unit(t: f32) -> f32 {
    let s = t / (2.0 + t);
    let s2 = s * s;
    let mut p = 1.0 / 17.0;
    for k in [15.0f32, 13.0, 11.0, 9.0, 7.0, 5.0, 3.0, 1.0] {
        p = p * s2 + 1.0 / k;
    }
    2.0 * s * p
}

/// `ln(1 + e^l) = max(l, 0) + ln(1 + e^-|l|)`, finite for every finite `l`.
#[inline(always)]
pub fn softplus(l: f32) -> f32 {
    l.max(0.0) + ln_1p_unit(exp(-l.abs()))
}

/// `1 / (1 + e^-l)`.
#[inline(always)]
pub fn sigmoid(l: f32) -> f32 {
    1.0 / (1.0 + exp(-l))
}

/// `fn $name($args) -> $ret { $body }`, with `$body` compiled for AVX-512, for AVX2+FMA and for
/// the baseline, the best the CPU has chosen at run time (std caches the detection).
macro_rules! simd_dispatch {
    ($(#[$meta:meta])* $vis:vis fn $name:ident($($arg:ident: $ty:ty),* $(,)?) -> $ret:ty $body:block) => {
        $(#[$meta])*
        $vis fn $name($($arg: $ty),*) -> $ret {
            #[inline(always)]
            fn generic($($arg: $ty),*) -> $ret $body
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx512f,avx2,fma")]
                fn avx512($($arg: $ty),*) -> $ret { generic($($arg),*) }
                #[target_feature(enable = "avx2,fma")]
                fn avx2($($arg: $ty),*) -> $ret { generic($($arg),*) }
                if std::arch::is_x86_feature_detected!("avx512f") {
                    // SAFETY: the CPU has the features the function was compiled for.
                    return unsafe { avx512($($arg),*) };
                }
                if std::arch::is_x86_feature_detected!("avx2")
                    && std::arch::is_x86_feature_detected!("fma")
                {
                    // SAFETY: as above.
                    return unsafe { avx2($($arg),*) };
                }
            }
            generic($($arg),*)
        }
    };
}
pub(crate) use simd_dispatch;

#[cfg(test)]
mod tests {
    use super::*;

    /// `|a - b| <= tol * |b|` (plus 1e-38 for results that underflow).
    fn close(a: f32, b: f64, tol: f64) -> bool {
        (a as f64 - b).abs() <= tol * b.abs() + 1e-38
    }

    #[test]
    fn exp_is_within_3e7_relative_of_f64_exp() {
        for i in -87_000..=88_000 {
            let x = i as f32 * 1e-3;
            let want = (x as f64).exp();
            assert!(
                close(exp(x), want, 3e-7),
                "exp({x}) = {} want {want}",
                exp(x)
            );
        }
        assert_eq!(exp(0.0), 1.0);
        // Clamped, never inf or NaN.
        assert!(exp(1000.0).is_finite() && exp(-1000.0) >= 0.0);
        assert!(exp(f32::NAN).is_nan());
    }

    #[test]
    fn ln_1p_is_within_2e7_relative_on_the_unit_interval() {
        for t in (0..=10_000)
            .map(|i| i as f32 * 1e-4)
            .chain([1e-30, 1e-12, 3e-8, 1e-5])
        {
            let want = (t as f64).ln_1p();
            assert!(
                close(ln_1p_unit(t), want, 2e-7),
                "ln_1p({t}) = {} want {want}",
                ln_1p_unit(t)
            );
        }
    }

    #[test]
    fn softplus_and_sigmoid_match_their_definitions() {
        for i in -4000..=4000 {
            let l = i as f32 * 0.025; // -100 to 100
            let lf = l as f64;
            let sp = lf.max(0.0) + (-lf.abs()).exp().ln_1p();
            assert!(
                (softplus(l) as f64 - sp).abs() <= 4e-7 * sp.max(1.0),
                "softplus({l})"
            );
            let sg = 1.0 / (1.0 + (-lf).exp());
            assert!((sigmoid(l) as f64 - sg).abs() <= 4e-7, "sigmoid({l})");
        }
        assert!((softplus(0.0) - std::f32::consts::LN_2).abs() <= 1e-7);
    }

    simd_dispatch! {
        fn sum_of_softplus(v: &[f32]) -> f32 {
            v.iter().map(|&l| softplus(l)).sum()
        }
    }

    #[test]
    fn dispatched_code_agrees_with_the_baseline() {
        let v: Vec<f32> = (0..1000).map(|i| (i as f32 * 0.37).sin() * 20.0).collect();
        let base: f32 = v.iter().map(|&l| softplus(l)).sum();
        let fast = sum_of_softplus(&v);
        assert!((fast - base).abs() <= 1e-5 * base, "{fast} vs {base}");
    }
}
