//! [`Embedding`]: a vector and the model that made it, as data (see `persist::vector`, which
//! re-exports it with the requests that write and read it).

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::error::{PersistError, Result};

/// The most dimensions a vector may have.
pub const MAX_DIMENSIONS: usize = 4096;

/// The longest model id accepted, in bytes.
pub const MAX_MODEL_BYTES: usize = 255;

/// A vector and the model that made it.
///
/// # Example
///
/// ```
/// use persist::vector::Embedding;
///
/// let embedding = Embedding::new("text-embedding-3-small", vec![3.0, 4.0]);
/// assert_eq!(embedding.dimensions(), 2);
/// assert_eq!(embedding.unit()?, vec![0.6, 0.8]);
/// assert!(Embedding::new("m", vec![0.0, 0.0]).validate().is_err());
/// # Ok::<_, persist::PersistError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Embedding {
    model: String,
    vector: Arc<[f32]>,
}

impl Embedding {
    /// `vector`, made by `model`.
    pub fn new(model: impl Into<String>, vector: impl Into<Arc<[f32]>>) -> Self {
        Self { model: model.into(), vector: vector.into() }
    }

    /// The model's id.
    pub fn model(&self) -> &str {
        &self.model
    }

    /// The vector.
    pub fn vector(&self) -> &[f32] {
        &self.vector
    }

    /// The vector's length.
    pub fn dimensions(&self) -> usize {
        self.vector.len()
    }

    /// Checks the embedding: a model id of 1 to [`MAX_MODEL_BYTES`] bytes without control
    /// characters, 1 to [`MAX_DIMENSIONS`] dimensions, every number finite, not all zero (a zero
    /// vector has no direction to compare).
    ///
    /// # Errors
    ///
    /// [`PersistError::InvalidInput`] naming `embedding`.
    pub fn validate(&self) -> Result<()> {
        let invalid = |reason: String| Err(PersistError::invalid("embedding", reason));
        if self.model.is_empty() || self.model.len() > MAX_MODEL_BYTES {
            return invalid(format!("its model id must be 1 to {MAX_MODEL_BYTES} bytes, got {}", self.model.len()));
        }
        if self.model.chars().any(char::is_control) {
            return invalid("its model id holds a control character".into());
        }
        if self.vector.is_empty() || self.vector.len() > MAX_DIMENSIONS {
            return invalid(format!("must have 1 to {MAX_DIMENSIONS} dimensions, got {}", self.vector.len()));
        }
        if let Some(at) = self.vector.iter().position(|x| !x.is_finite()) {
            return invalid(format!("dimension {at} is not a finite number"));
        }
        if self.vector.iter().all(|&x| x == 0.0) {
            return invalid("is all zeros: it has no direction to compare".into());
        }
        Ok(())
    }

    /// The vector scaled to length 1 (what stores keep and compare), computed in `f64`. A vector
    /// of length 1 already, to `f32` precision, is answered as it is: what this answered, or a
    /// store keeps, written again (a copy of a store) is stored with the same numbers.
    ///
    /// # Errors
    ///
    /// As [`validate`](Self::validate).
    pub fn unit(&self) -> Result<Vec<f32>> {
        self.validate()?;
        let norm = self.vector.iter().map(|&x| f64::from(x) * f64::from(x)).sum::<f64>().sqrt();
        // Each number of a unit vector rounded to `f32` moves its length by less than
        // `f32::EPSILON / 2`; dividing by that length again would move some numbers by one unit
        // in the last place, and a copy would differ from its source.
        if (norm - 1.0).abs() <= f64::from(f32::EPSILON) {
            return Ok(self.vector.to_vec());
        }
        Ok(self.vector.iter().map(|&x| (f64::from(x) / norm) as f32).collect())
    }
}
