//! Embeddings and nearest-neighbour queries: validation, bytes and cosines.

use persist_core::vector::{
    Embedding, MAX_DIMENSIONS, MAX_NEAREST, Nearest, from_bytes, similarity, similarity_to_bytes, to_bytes,
};
use persist_core::{PersistError, Result, Timestamp};

fn field(result: Result<()>) -> &'static str {
    match result.unwrap_err() {
        PersistError::InvalidInput { field, .. } => field,
        other => panic!("{other:?}"),
    }
}

#[test]
fn bad_vectors_are_refused_by_name() {
    assert!(Embedding::new("m", vec![1.0]).validate().is_ok());
    for bad in [
        Embedding::new("", vec![1.0]),
        Embedding::new("m\n", vec![1.0]),
        Embedding::new("m".repeat(256), vec![1.0]),
        Embedding::new("m", Vec::new()),
        Embedding::new("m", vec![1.0; MAX_DIMENSIONS + 1]),
        Embedding::new("m", vec![1.0, f32::NAN]),
        Embedding::new("m", vec![f32::INFINITY]),
        Embedding::new("m", vec![0.0, -0.0]),
    ] {
        assert_eq!(field(bad.validate()), "embedding", "{bad:?}");
    }
    let query = Nearest::new(Embedding::new("m", vec![1.0]));
    assert_eq!(field(query.clone().with_limit(0).validate()), "limit");
    assert_eq!(field(query.clone().with_limit(MAX_NEAREST + 1).validate()), "limit");
    let at = Timestamp::from_micros(5);
    assert_eq!(field(query.since(at).until(at).validate()), "until");
}

#[test]
fn vectors_round_trip_as_bytes_and_compare_as_cosines() {
    let unit = Embedding::new("m", vec![3.0, -4.0, 0.0]).unit().unwrap();
    assert_eq!(from_bytes(&to_bytes(&unit)).unwrap(), unit);
    assert!(from_bytes(&[0, 1, 2]).is_none());
    assert!((similarity(&unit, &unit) - 1.0).abs() < 1e-6);
    let opposite: Vec<f32> = unit.iter().map(|x| -x).collect();
    assert!((similarity(&unit, &opposite) + 1.0).abs() < 1e-6);
    assert_eq!(similarity_to_bytes(&unit, &to_bytes(&opposite)), Some(similarity(&unit, &opposite)));
    assert_eq!(similarity_to_bytes(&unit, &[0; 8]), None);
}
