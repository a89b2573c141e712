//! `Embedding`: a vector's unit form.

use persist_core::vector::Embedding;

/// A vector read back from a store and written again is stored with the same bits.
#[test]
fn a_unit_vector_is_its_own_unit() {
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        ((state >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0) as f32
    };
    for dimensions in [1, 2, 3, 8, 384] {
        for _ in 0..2000 {
            let vector: Vec<f32> = (0..dimensions).map(|_| next()).collect();
            let unit = Embedding::new("m", vector).unit().unwrap();
            let again = Embedding::new("m", unit.clone()).unit().unwrap();
            let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&again), bits(&unit), "{dimensions} dimensions");
        }
    }
    assert_eq!(Embedding::new("m", vec![2.0, 0.0]).unit().unwrap(), [1.0, 0.0]);
}
