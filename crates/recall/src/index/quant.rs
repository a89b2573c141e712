//! The index's arithmetic beside the stores' `similarity`: vectors as int8 codes (a quarter of
//! the bytes, whole-number dot products) for approximate ranking, and a fast `f32` dot product
//! for centroids.

/// `vector` as whole numbers from -127 to 127 in `codes`, and the scale that brings them back.
pub(super) fn quantize(vector: &[f32], codes: &mut [i8]) -> f32 {
    let largest = vector.iter().fold(0.0_f32, |m, x| m.max(x.abs()));
    let scale = if largest > 0.0 { largest / 127.0 } else { 1.0 };
    for (code, x) in codes.iter_mut().zip(vector) {
        *code = (x / scale).round().clamp(-127.0, 127.0) as i8;
    }
    scale
}

/// The dot product of two quantized vectors, in whole numbers: sixteen running sums, which the
/// compiler keeps in vector registers (twice the speed of one sum, measured).
pub(super) fn dot(a: &[i8], b: &[i8]) -> i32 {
    let mut sums = [0_i32; 16];
    let (pairs_a, pairs_b) = (a.chunks_exact(16), b.chunks_exact(16));
    let tail: i32 =
        pairs_a.remainder().iter().zip(pairs_b.remainder()).map(|(&x, &y)| i32::from(x) * i32::from(y)).sum();
    for (x, y) in pairs_a.zip(pairs_b) {
        for lane in 0..16 {
            sums[lane] += i32::from(x[lane]) * i32::from(y[lane]);
        }
    }
    sums.iter().sum::<i32>() + tail
}

/// The dot product of two `f32` vectors in sixteen running sums (vector registers).
pub(super) fn dot_f32(a: &[f32], b: &[f32]) -> f32 {
    let mut sums = [0.0_f32; 16];
    let (chunks_a, chunks_b) = (a.chunks_exact(16), b.chunks_exact(16));
    let tail: f32 = chunks_a.remainder().iter().zip(chunks_b.remainder()).map(|(x, y)| x * y).sum();
    for (x, y) in chunks_a.zip(chunks_b) {
        for lane in 0..16 {
            sums[lane] += x[lane] * y[lane];
        }
    }
    sums.iter().sum::<f32>() + tail
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantized_dot_products_are_whole_sums_of_any_length() {
        for len in [1, 15, 16, 17, 40, 384] {
            let a: Vec<i8> = (0..len).map(|i| (i * 37 % 255) as u8 as i8).collect();
            let b: Vec<i8> = (0..len).map(|i| (i * 91 % 255) as u8 as i8).collect();
            let plain: i32 = a.iter().zip(&b).map(|(&x, &y)| i32::from(x) * i32::from(y)).sum();
            assert_eq!(dot(&a, &b), plain, "{len}");
        }
        let mut codes = [0_i8; 3];
        let scale = quantize(&[0.5, -0.25, 0.0], &mut codes);
        assert_eq!(codes, [127, -64, 0]);
        assert!((f32::from(codes[0]) * scale - 0.5).abs() < 1e-6);
    }

    #[test]
    fn float_dot_products_match_the_plain_sum() {
        for len in [1, 15, 16, 17, 384] {
            let a: Vec<f32> = (0..len).map(|i| ((i * 37 % 101) as f32 - 50.0) / 50.0).collect();
            let b: Vec<f32> = (0..len).map(|i| ((i * 91 % 101) as f32 - 50.0) / 50.0).collect();
            let plain: f32 = a.iter().zip(&b).map(|(x, y)| x * y).sum();
            assert!((dot_f32(&a, &b) - plain).abs() < 1e-4, "{len}");
        }
    }
}
