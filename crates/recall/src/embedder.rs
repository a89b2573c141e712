//! [`Embedder`]: what turns text into vectors (the app's model, or [`HashEmbedder`]).

use persist_core::raw::BoxFuture;
use persist_core::search::words;
use persist_core::{PersistError, Result};

/// Turns texts into vectors: the app's embedding model (a provider's API, a local model), which
/// persist calls and never ships.
///
/// # Example
///
/// ```
/// use persist::raw::BoxFuture;
/// use persist::recall::Embedder;
///
/// /// Calls a provider (here: a stand-in that counts letters).
/// struct Letters;
///
/// impl Embedder for Letters {
///     fn model(&self) -> &str {
///         "letters-v1"
///     }
///
///     fn embed<'a>(&'a self, texts: &'a [String]) -> BoxFuture<'a, persist::Result<Vec<Vec<f32>>>> {
///         Box::pin(async move {
///             Ok(texts.iter().map(|t| vec![t.len() as f32, t.matches('a').count() as f32 + 1.0]).collect())
///         })
///     }
/// }
/// ```
pub trait Embedder: Send + Sync + 'static {
    /// The model's id, stored with every vector it made: vectors of one model are compared with
    /// each other only.
    fn model(&self) -> &str;

    /// One vector per text, in order, all of one length.
    ///
    /// # Errors
    ///
    /// Whatever the model answers (a provider's error, a time-out): the caller reports it.
    fn embed<'a>(&'a self, texts: &'a [String]) -> BoxFuture<'a, Result<Vec<Vec<f32>>>>;
}

impl<E: Embedder + ?Sized> Embedder for std::sync::Arc<E> {
    fn model(&self) -> &str {
        (**self).model()
    }

    fn embed<'a>(&'a self, texts: &'a [String]) -> BoxFuture<'a, Result<Vec<Vec<f32>>>> {
        (**self).embed(texts)
    }
}

/// A deterministic embedder for tests and examples, with no model: feature hashing. Each word
/// (as full-text search splits and lowercases them) adds 1 to one of `dimensions` buckets, and
/// each of its three-letter pieces adds ½, with a sign, both chosen by a fixed hash (FNV-1a), so
/// the same text gives the same vector on every machine and texts sharing words (or word stems)
/// are close. It knows nothing of meaning: "car" is not near "automobile".
///
/// # Example
///
/// ```
/// use persist::recall::{Embedder, HashEmbedder};
/// use persist::vector::{Embedding, similarity};
///
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// let embedder = HashEmbedder::new(256);
/// let texts = ["Lisbon in May".to_owned(), "May in Lisbon?".to_owned(), "rust compile times".to_owned()];
/// let vectors = embedder.embed(&texts).await?;
/// let unit = |v: &Vec<f32>| Embedding::new(embedder.model(), v.clone()).unit().unwrap();
/// assert!(similarity(&unit(&vectors[0]), &unit(&vectors[1])) > 0.99);
/// assert!(similarity(&unit(&vectors[0]), &unit(&vectors[2])) < 0.3);
/// # Ok::<_, persist::PersistError>(())
/// # }).unwrap();
/// ```
#[derive(Debug, Clone)]
pub struct HashEmbedder {
    dimensions: usize,
    model: String,
}

impl HashEmbedder {
    /// An embedder of `dimensions` buckets (at least 1), whose model id is
    /// `persist-hash-v1-{dimensions}`.
    pub fn new(dimensions: usize) -> Self {
        let dimensions = dimensions.max(1);
        Self { dimensions, model: format!("persist-hash-v1-{dimensions}") }
    }

    /// The vector of one text.
    ///
    /// # Errors
    ///
    /// `InvalidInput` naming `text` when it holds no word (its vector would have no direction).
    pub fn vector(&self, text: &str) -> Result<Vec<f32>> {
        let mut vector = vec![0.0f32; self.dimensions];
        let mut add = |piece: &str, weight: f32| {
            let hash = fnv1a(piece.as_bytes());
            let bucket = (hash % self.dimensions as u64) as usize;
            vector[bucket] += if hash >> 63 == 0 { weight } else { -weight };
        };
        let mut any = false;
        for range in words(text) {
            let word = text[range].to_lowercase();
            any = true;
            add(&word, 1.0);
            let chars: Vec<char> = word.chars().collect();
            for piece in chars.windows(3) {
                add(&format!("#{}", piece.iter().collect::<String>()), 0.5);
            }
        }
        if !any || vector.iter().all(|&x| x == 0.0) {
            return Err(PersistError::invalid("text", "holds no word to embed"));
        }
        Ok(vector)
    }
}

impl Embedder for HashEmbedder {
    fn model(&self) -> &str {
        &self.model
    }

    fn embed<'a>(&'a self, texts: &'a [String]) -> BoxFuture<'a, Result<Vec<Vec<f32>>>> {
        Box::pin(async move { texts.iter().map(|text| self.vector(text)).collect() })
    }
}

/// FNV-1a, 64 bits: fixed on every machine and every run (std's hasher is seeded per process).
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, &b| (hash ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_text_gives_the_same_vector_everywhere() {
        let embedder = HashEmbedder::new(8);
        let vector = embedder.vector("Hello, hello world").unwrap();
        // Fixed by FNV-1a: a change of the hash or the weights changes every stored vector.
        assert_eq!(vector.len(), 8);
        assert_eq!(vector, embedder.vector("hello HELLO world").unwrap());
        assert_ne!(vector, embedder.vector("hello world").unwrap());
        assert_eq!(fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert!(embedder.vector(" ,.! ").is_err());
        assert_eq!(embedder.model(), "persist-hash-v1-8");
    }
}
