//! Machine probes that kernel speeds are reported against, measured in the same run: how fast memory
//! can be read (a streaming sum over a buffer far larger than the last-level cache) and how many f32
//! FLOPs the cores retire (independent fused multiply-adds).

use rayon::prelude::*;

/// Sums `buf` as little-endian `u64` words on the current rayon pool, touching every byte once.
/// The result only exists so the reads cannot be optimised away.
pub fn stream_sum(buf: &[u8]) -> u64 {
    const CHUNK: usize = 1 << 20;
    buf.par_chunks(CHUNK)
        .map(|c| {
            // Eight independent lanes: the compiler keeps them in vector registers.
            let mut acc = [0u64; 8];
            let mut words = c.chunks_exact(64);
            for w in &mut words {
                for (l, a) in acc.iter_mut().enumerate() {
                    let b: [u8; 8] = w[l * 8..l * 8 + 8].try_into().unwrap_or_default();
                    *a = a.wrapping_add(u64::from_le_bytes(b));
                }
            }
            let tail: u64 = words.remainder().iter().map(|&b| b as u64).sum();
            acc.iter().fold(tail, |s, &a| s.wrapping_add(a))
        })
        .reduce(|| 0, u64::wrapping_add)
}

/// Runs `iters` rounds of independent f32 multiply-adds on every thread of the current rayon pool
/// and returns the number of floating-point operations done (2 per multiply-add).
pub fn fma_flops(iters: usize) -> f64 {
    let per_thread: Vec<f64> = rayon::broadcast(|_| fma_thread(iters));
    per_thread.iter().sum()
}

/// FLOPs per iteration of [`fma_flops`] on one thread, for the tier this CPU uses.
pub fn fma_flops_per_iter() -> f64 {
    #[cfg(target_arch = "x86_64")]
    {
        if crate::x86_64::avx2_supported() {
            return (10 * 8 * 2) as f64;
        }
    }
    (32 * 2) as f64
}

fn fma_thread(iters: usize) -> f64 {
    #[cfg(target_arch = "x86_64")]
    {
        if crate::x86_64::avx2_supported() {
            // SAFETY: AVX2 and FMA were just detected on this CPU.
            return unsafe { fma_avx2(iters) };
        }
    }
    fma_portable(iters)
}

/// Ten independent 8-wide FMA chains: enough to cover FMA latency on two ports.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn fma_avx2(iters: usize) -> f64 {
    use std::arch::x86_64::*;
    let a = _mm256_set1_ps(0.999_999);
    let b = _mm256_set1_ps(1e-7);
    let mut acc = [_mm256_set1_ps(1.0); 10];
    for _ in 0..iters {
        for x in acc.iter_mut() {
            *x = _mm256_fmadd_ps(*x, a, b);
        }
    }
    let mut s = [0f32; 8];
    let mut t = acc[0];
    for x in &acc[1..] {
        t = _mm256_add_ps(t, *x);
    }
    // SAFETY: `s` holds 8 f32s; storeu has no alignment requirement.
    unsafe { _mm256_storeu_ps(s.as_mut_ptr(), t) };
    std::hint::black_box(s);
    (iters * 10 * 8 * 2) as f64
}

fn fma_portable(iters: usize) -> f64 {
    let mut acc = [1f32; 32];
    for _ in 0..iters {
        for x in acc.iter_mut() {
            *x = x.mul_add(0.999_999, 1e-7);
        }
    }
    std::hint::black_box(acc);
    (iters * 32 * 2) as f64
}
