//! Distance-guided anomaly synthesis (spec section 1, row "synthesis"), training only.
//!
//! Inputs: adapted features f [N, D] (N = B*P rows of one batch), their aligned centers
//! R [N, D] and Gaussian noise n [N, D] ~ N(0, sigma^2). Output: fake features [N, D]:
//! `s_i = |n_i| / |f_i - R_i|`, `s /= mean(s)` over all N rows, `s = (s - 1) k + 1`,
//! `fake_i = f_i + stopgrad(s_i n_i)`. With k = 0 the noise is used unscaled.

use candle_core::{DType, Device, Tensor, D};
use rand_distr::{Distribution, Normal};

use crate::Result;

/// Fake features from true ones. `k` is the reference's scale exponent-free mixing factor.
pub fn synthesize(f: &Tensor, r: &Tensor, noise: &Tensor, k: f64) -> Result<Tensor> {
    let f32_ = |t: &Tensor| t.to_dtype(DType::F32);
    let dist = (f32_(f)?.detach() - f32_(r)?)?
        .sqr()?
        .sum_keepdim(D::Minus1)?
        .sqrt()?
        .maximum(1e-12)?; // [N, 1]; guards a patch exactly on its center
    let noise = f32_(noise)?;
    let nnorm = noise.sqr()?.sum_keepdim(D::Minus1)?.sqrt()?;
    let s = (nnorm / dist)?;
    let s = s.broadcast_div(&s.mean_all()?)?;
    let s = ((s - 1.0)? * k)? + 1.0;
    let shift = noise.broadcast_mul(&s?)?.detach();
    Ok((f + shift.to_dtype(f.dtype())?)?)
}

/// Gaussian noise [rows, dims] with standard deviation `sigma` from a seeded host RNG (the same
/// seed gives the same noise on every device), placed on `device`.
pub fn gaussian_noise(
    rng: &mut impl rand::Rng,
    rows: usize,
    dims: usize,
    sigma: f64,
    device: &Device,
) -> Result<Tensor> {
    let normal =
        Normal::new(0.0f32, sigma as f32).map_err(|e| crate::Error::Other(e.to_string()))?;
    let v: Vec<f32> = (0..rows * dims).map(|_| normal.sample(rng)).collect();
    Ok(Tensor::from_vec(v, (rows, dims), device)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha12Rng as StdRng;

    #[test]
    fn scale_is_normalised_and_mixed_by_k() {
        let dev = Device::Cpu;
        // Two rows at distances 1 and 3 from their centers, noise of norm 2 each.
        let f = Tensor::new(&[[1f32, 0.], [3., 0.]], &dev).unwrap();
        let r = Tensor::zeros((2, 2), DType::F32, &dev).unwrap();
        let n = Tensor::new(&[[0f32, 2.], [0., 2.]], &dev).unwrap();
        // s = [2, 2/3], mean 4/3 -> [1.5, 0.5]; k = 0.5 -> [1.25, 0.75]
        let fake = synthesize(&f, &r, &n, 0.5).unwrap();
        let got: Vec<Vec<f32>> = fake.to_vec2().unwrap();
        assert!((got[0][1] - 2.5).abs() < 1e-6, "{got:?}");
        assert!((got[1][1] - 1.5).abs() < 1e-6, "{got:?}");
        // k = 0: plain noise
        let fake0: Vec<Vec<f32>> = synthesize(&f, &r, &n, 0.0).unwrap().to_vec2().unwrap();
        assert!((fake0[0][1] - 2.0).abs() < 1e-6 && (fake0[1][1] - 2.0).abs() < 1e-6);
    }

    #[test]
    fn noise_is_seeded() {
        let dev = Device::Cpu;
        let a = gaussian_noise(&mut StdRng::seed_from_u64(3), 4, 8, 0.1, &dev).unwrap();
        let b = gaussian_noise(&mut StdRng::seed_from_u64(3), 4, 8, 0.1, &dev).unwrap();
        let c = gaussian_noise(&mut StdRng::seed_from_u64(4), 4, 8, 0.1, &dev).unwrap();
        let (a, b, c): (Vec<f32>, Vec<f32>, Vec<f32>) = (
            a.flatten_all().unwrap().to_vec1().unwrap(),
            b.flatten_all().unwrap().to_vec1().unwrap(),
            c.flatten_all().unwrap().to_vec1().unwrap(),
        );
        assert_eq!(a, b);
        assert_ne!(a, c);
    }
}
