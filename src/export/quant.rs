//! The int8 rule of an exported graph (QDQ form): each backbone convolution's input is
//! quantized per tensor to uint8 with the range calibrated on training images
//! ([`crate::backbone::Int8Calibration`]), its weights per output channel to int8
//! (symmetric, from their own largest magnitude); the bias stays float32. Each is written as
//! `QuantizeLinear` / `DequantizeLinear` around the float Conv, which OpenVINO and ONNX Runtime
//! compile into integer convolutions. Everything else in the graph stays float32.

use super::graph::Graph;
use super::source::HostTensor;

/// Levels of a uint8 activation and of a symmetric int8 weight.
const U8_LEVELS: f32 = 255.0;
const I8_MAX: f32 = 127.0;

/// Scale and zero point of a uint8 tensor covering `[lo, hi]` (widened to hold 0, so that
/// zero padding and ReLU's zeros are exact).
pub fn activation_params(lo: f32, hi: f32) -> (f32, u8) {
    let (lo, hi) = (lo.min(0.0), hi.max(0.0));
    let scale = (hi - lo) / U8_LEVELS;
    if !(scale > 0.0 && scale.is_finite()) {
        return (1.0, 0);
    }
    let zero_point = (-lo / scale).round().clamp(0.0, U8_LEVELS) as u8;
    (scale, zero_point)
}

/// Per-output-channel symmetric int8 weights of `w` `[c_out, ...]`: the values and the scale
/// of each channel (a channel of zeros gets scale 1).
pub fn weight_per_channel(w: &HostTensor) -> (Vec<i8>, Vec<f32>) {
    let c_out = w.dims[0];
    let per = w.data.len() / c_out.max(1);
    let mut q = Vec::with_capacity(w.data.len());
    let mut scales = Vec::with_capacity(c_out);
    for ch in w.data.chunks(per.max(1)) {
        let m = ch.iter().fold(0f32, |a, v| a.max(v.abs()));
        let scale = if m > 0.0 { m / I8_MAX } else { 1.0 };
        q.extend(
            ch.iter()
                .map(|v| (v / scale).round().clamp(-I8_MAX, I8_MAX) as i8),
        );
        scales.push(scale);
    }
    (q, scales)
}

/// `x` quantized to uint8 over `[lo, hi]` and back (per tensor).
pub fn fake_quantize_activation(g: &mut Graph, x: &str, lo: f32, hi: f32) -> String {
    let (scale, zero_point) = activation_params(lo, hi);
    let s = g.scalar_f32("act_scale", scale);
    let z = g.init_u8("act_zero_point", &[], &[zero_point]);
    let q = g.quantize(x, &s, &z, None);
    g.dequantize(&q, &s, &z, None)
}

/// Weights `w` `[c_out, ...]` as an int8 initializer dequantized per output channel.
pub fn dequantized_weight(g: &mut Graph, name: &str, w: &HostTensor) -> String {
    let (q, scales) = weight_per_channel(w);
    let c_out = w.dims[0];
    let qw = g.init_i8(&format!("{name}.weight_int8"), &w.dims, &q);
    let s = g.init_f32(&format!("{name}.weight_scale"), &[c_out], &scales);
    let z = g.init_i8(
        &format!("{name}.weight_zero_point"),
        &[c_out],
        &vec![0; c_out],
    );
    g.dequantize(&qw, &s, &z, Some(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn activation_params_cover_the_range_and_keep_zero_exact() {
        let (s, z) = activation_params(0.0, 5.1);
        assert_eq!(z, 0);
        assert!((s - 0.02).abs() < 1e-7);
        let (s, z) = activation_params(-2.0, 2.0);
        assert!((s - 4.0 / 255.0).abs() < 1e-7);
        // 0 is a level (the zero point) and -2 lies within half a step of level 0.
        assert!((z as f32 * s - 2.0).abs() <= s / 2.0, "{z}");
        assert_eq!(activation_params(0.0, 0.0), (1.0, 0));
        // A range away from zero is widened to hold it.
        let (s, z) = activation_params(1.0, 2.55);
        assert_eq!((z, (s * 1e4).round()), (0, 100.0));
    }

    #[test]
    fn weights_round_trip_within_half_a_step_per_channel() {
        let w = HostTensor {
            dims: vec![2, 3],
            data: vec![0.5, -1.27, 0.01, 0.0, 0.0, 0.0],
        };
        let (q, scales) = weight_per_channel(&w);
        assert_eq!(scales, vec![0.01, 1.0]);
        assert_eq!(q, vec![50, -127, 1, 0, 0, 0]);
        for (i, (&qi, &wi)) in q.iter().zip(&w.data).enumerate() {
            let back = qi as f32 * scales[i / 3];
            assert!((back - wi).abs() <= scales[i / 3] / 2.0 + 1e-7);
        }
    }
}
