//! [`OpenAiEmbedder`]: an OpenAI-compatible embeddings endpoint (feature `openai`).

use std::fmt;
use std::time::Duration;

use persist_core::raw::BoxFuture;
use persist_core::{PersistError, Result};
use serde_json::{Value, json};

use crate::embedder::Embedder;

/// The most texts one request carries (OpenAI's limit per request); more are sent in several.
pub const MAX_INPUTS_PER_REQUEST: usize = 2048;

/// How long a request may take by default, from its start to the last byte of its answer.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// The most characters of an endpoint's answer an error quotes, when it holds no JSON message.
const QUOTED_CHARS: usize = 200;

/// An [`Embedder`] calling an OpenAI-compatible embeddings endpoint: OpenAI's, or any server
/// that answers its `POST /embeddings` (vLLM, Ollama's `/v1`, LiteLLM, text-embeddings-inference,
/// Azure's OpenAI-compatible routes).
///
/// Each call sends `{"model", "input": [texts…], "encoding_format": "float"}` (and
/// `"dimensions"` when [`with_dimensions`](Self::with_dimensions) asked for them) to
/// `{base_url}/embeddings`, with the key as `Authorization: Bearer KEY`, and answers the
/// vectors in the order of the texts (by each one's `index`, whatever the order of `data`).
/// Every answer is checked: one vector per text, all of one length (the length asked for,
/// when one was), finite numbers only. No text, no request.
///
/// Errors are [`PersistError`]s a caller can act on: an endpoint that cannot be reached, does
/// not answer within the timeout, answers 408, 429 or a 5xx is
/// [`Temporary`](PersistError::Temporary) (a retry may succeed); another 4xx is a
/// [`Backend`](PersistError::Backend) error naming the status and the endpoint's
/// `error.message` (a model it does not serve, a key it refuses); so is an answer that is not
/// what the API answers. Under [`AutoEmbedLayer`](crate::AutoEmbedLayer) a failure is logged and
/// the message is written without a vector: the write never fails for it.
///
/// The key is never logged, and its [`Debug`] shows whether there is one only.
///
/// # Example
///
/// ```no_run
/// use std::time::Duration;
///
/// use persist::memory::MemoryBackend;
/// use persist::recall::{AutoEmbedLayer, OpenAiEmbedder, Recall, RecallExt};
/// use persist::{args::Add, Content, Pipeline, Role, ThreadId};
///
/// # async fn run() -> persist::Result<()> {
/// let embedder = OpenAiEmbedder::new("https://api.openai.com/v1", "text-embedding-3-small")?
///     .with_api_key(std::env::var("OPENAI_API_KEY").unwrap_or_default())
///     .with_dimensions(512)
///     .with_timeout(Duration::from_secs(10));
/// let pipeline = Pipeline::builder().layer(AutoEmbedLayer::new(embedder.clone())).build(MemoryBackend::new());
/// let thread = ThreadId::new("t1")?;
/// pipeline.add(Add::new(thread, Role::User, Content::text("My sister lives in Lisbon"))).await?;
/// let found = pipeline.recall(&embedder, Recall::new("where does my sister live?").with_limit(3)).await?;
/// println!("{:?}", found.hits.first().map(|hit| hit.message.content.to_text()));
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct OpenAiEmbedder {
    client: reqwest::Client,
    endpoint: reqwest::Url,
    model: String,
    api_key: Option<String>,
    dimensions: Option<usize>,
    timeout: Duration,
}

impl fmt::Debug for OpenAiEmbedder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OpenAiEmbedder")
            .field("endpoint", &self.endpoint.as_str())
            .field("model", &self.model)
            .field("api_key", &self.api_key.as_ref().map(|_| "<redacted>"))
            .field("dimensions", &self.dimensions)
            .field("timeout", &self.timeout)
            .finish()
    }
}

impl OpenAiEmbedder {
    /// Embeds with `model` at `base_url` (as the `openai` SDKs take it:
    /// `https://api.openai.com/v1`, a trailing `/` or not), calling `{base_url}/embeddings`,
    /// without a key, within 30 seconds a request.
    ///
    /// # Errors
    ///
    /// `InvalidInput` naming `base_url` when it is not an `http` or `https` URL (or holds a
    /// query or a fragment), naming `model` when it is empty; `Backend` when the HTTP client
    /// cannot be made (its TLS set-up failed).
    pub fn new(base_url: impl AsRef<str>, model: impl Into<String>) -> Result<Self> {
        let base_url = base_url.as_ref().trim();
        let model = model.into();
        if model.trim().is_empty() {
            return Err(PersistError::invalid("model", "is empty: name the embedding model"));
        }
        let endpoint = reqwest::Url::parse(base_url)
            .ok()
            .filter(|url| matches!(url.scheme(), "http" | "https") && url.host_str().is_some_and(|h| !h.is_empty()))
            .filter(|url| url.query().is_none() && url.fragment().is_none())
            .map(|mut url| {
                let path = format!("{}/embeddings", url.path().trim_end_matches('/'));
                url.set_path(&path);
                url
            })
            .ok_or_else(|| {
                PersistError::invalid(
                    "base_url",
                    format!("is not an http(s) URL such as https://api.openai.com/v1: {base_url:?}"),
                )
            })?;
        let client = reqwest::Client::builder()
            .build()
            .map_err(|error| PersistError::backend("making the embeddings endpoint's HTTP client", error))?;
        Ok(Self { client, endpoint, model, api_key: None, dimensions: None, timeout: DEFAULT_TIMEOUT })
    }

    /// Sends `key` as `Authorization: Bearer KEY` (an empty key sends none).
    pub fn with_api_key(mut self, key: impl Into<String>) -> Self {
        let key = key.into();
        self.api_key = (!key.trim().is_empty()).then(|| key.trim().to_owned());
        self
    }

    /// Asks for vectors of `dimensions` numbers (`"dimensions"`, which OpenAI's
    /// `text-embedding-3` models take), and refuses an answer with another length.
    pub fn with_dimensions(mut self, dimensions: usize) -> Self {
        self.dimensions = Some(dimensions);
        self
    }

    /// Gives each request `timeout`, from its start (connecting included) to the last byte of
    /// its answer (30 seconds by default); one that takes longer is a `Temporary` error.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The URL it posts to: `{base_url}/embeddings`.
    pub fn endpoint(&self) -> &str {
        self.endpoint.as_str()
    }

    /// One request's vectors, in the order of `texts`.
    async fn request(&self, texts: &[String]) -> Result<Vec<Vec<f32>>> {
        let mut body = json!({"model": self.model, "input": texts, "encoding_format": "float"});
        if let Some(dimensions) = self.dimensions {
            body["dimensions"] = dimensions.into();
        }
        let mut request = self
            .client
            .post(self.endpoint.clone())
            .timeout(self.timeout)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header(reqwest::header::ACCEPT, "application/json")
            .body(body.to_string());
        if let Some(key) = &self.api_key {
            request = request.bearer_auth(key);
        }
        let answered = async {
            let response = request.send().await?;
            let status = response.status();
            Ok::<_, reqwest::Error>((status, response.bytes().await?))
        };
        let (status, bytes) = answered.await.map_err(|error| self.unreachable(error))?;
        if !status.is_success() {
            return Err(self.refused(status, &bytes));
        }
        let answer: Value = serde_json::from_slice(&bytes)
            .map_err(|error| self.malformed(format!("its answer is not JSON ({error})")))?;
        self.vectors(&answer, texts.len())
    }

    /// The error of a request that got no answer: `Temporary`, whatever the cause (the
    /// endpoint down, unreachable, slower than the timeout, the connection cut).
    fn unreachable(&self, error: reqwest::Error) -> PersistError {
        let message = if error.is_timeout() {
            format!("the embeddings endpoint {} did not answer within {} ms", self.endpoint, self.timeout.as_millis())
        } else if error.is_connect() {
            format!("the embeddings endpoint {} cannot be reached", self.endpoint)
        } else {
            format!("the request to the embeddings endpoint {} failed", self.endpoint)
        };
        // The URL is the message's already (it holds no key).
        PersistError::Temporary { message: message.into(), source: Some(Box::new(error.without_url())) }
    }

    /// The error of an answer that is not a success: `Temporary` for 408, 429 and 5xx, else
    /// `Backend`, each naming the status and what the endpoint said.
    fn refused(&self, status: reqwest::StatusCode, bytes: &[u8]) -> PersistError {
        let said = serde_json::from_slice::<Value>(bytes).ok().and_then(|answer| {
            let error = answer.get("error")?;
            error.get("message").and_then(Value::as_str).or_else(|| error.as_str()).map(str::to_owned)
        });
        let said = said.unwrap_or_else(|| {
            let text = String::from_utf8_lossy(bytes);
            let text = text.trim();
            let quoted: String = text.chars().take(QUOTED_CHARS).collect();
            if quoted.len() < text.len() { format!("{quoted}…") } else { quoted }
        });
        let mut message = format!("the embeddings endpoint {} answered {status}", self.endpoint);
        if !said.is_empty() {
            message.push_str(": ");
            message.push_str(&said);
        }
        let temporary = matches!(status.as_u16(), 408 | 429) || status.is_server_error();
        match temporary {
            true => PersistError::Temporary { message: message.into(), source: None },
            false => PersistError::Backend { message: message.into(), source: None },
        }
    }

    fn malformed(&self, why: impl fmt::Display) -> PersistError {
        PersistError::Backend {
            message: format!(
                "the embeddings endpoint {} answered what is not an embeddings list: {why}",
                self.endpoint
            )
            .into(),
            source: None,
        }
    }

    /// The vectors of an answer (`{"data": [{"index", "embedding"}, …]}`) for `count` texts, in
    /// the texts' order, checked.
    fn vectors(&self, answer: &Value, count: usize) -> Result<Vec<Vec<f32>>> {
        let data =
            answer.get("data").and_then(Value::as_array).ok_or_else(|| self.malformed("it has no `data` list"))?;
        if data.len() != count {
            return Err(self.malformed(format!("{} vectors for {count} texts", data.len())));
        }
        let mut vectors: Vec<Option<Vec<f32>>> = vec![None; count];
        let mut length = self.dimensions;
        for (at, entry) in data.iter().enumerate() {
            let index = entry
                .get("index")
                .and_then(Value::as_u64)
                .and_then(|index| usize::try_from(index).ok())
                .filter(|&index| index < count)
                .ok_or_else(|| self.malformed(format!("data[{at}] has no `index` below {count}")))?;
            let numbers = entry.get("embedding").and_then(Value::as_array).ok_or_else(|| {
                self.malformed(format!("data[{at}].embedding is not a list of numbers (encoding_format float)"))
            })?;
            let vector: Vec<f32> = numbers
                .iter()
                .map(|number| number.as_f64().map(|x| x as f32).filter(|x| x.is_finite()))
                .collect::<Option<_>>()
                .ok_or_else(|| self.malformed(format!("data[{at}].embedding holds what is not a finite number")))?;
            if vector.is_empty() {
                return Err(self.malformed(format!("data[{at}].embedding is empty")));
            }
            match length {
                Some(length) if vector.len() != length => {
                    let asked = if self.dimensions.is_some() { "asked for" } else { "of the others" };
                    return Err(self.malformed(format!(
                        "data[{at}].embedding has {} numbers, not the {length} {asked}",
                        vector.len()
                    )));
                }
                _ => length = Some(vector.len()),
            }
            if vectors[index].replace(vector).is_some() {
                return Err(self.malformed(format!("two vectors have index {index}")));
            }
        }
        // `count` entries with distinct indices below `count`: every slot is filled.
        vectors.into_iter().map(|vector| vector.ok_or_else(|| self.malformed("a text has no vector"))).collect()
    }
}

impl Embedder for OpenAiEmbedder {
    fn model(&self) -> &str {
        &self.model
    }

    fn embed<'a>(&'a self, texts: &'a [String]) -> BoxFuture<'a, Result<Vec<Vec<f32>>>> {
        Box::pin(async move {
            let mut vectors = Vec::with_capacity(texts.len());
            for chunk in texts.chunks(MAX_INPUTS_PER_REQUEST) {
                vectors.extend(self.request(chunk).await?);
            }
            Ok(vectors)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_endpoint_is_the_base_url_and_embeddings() {
        for base in ["https://api.openai.com/v1", "https://api.openai.com/v1/", " http://127.0.0.1:8080/v1// "] {
            let embedder = OpenAiEmbedder::new(base, "m").unwrap();
            assert!(embedder.endpoint().ends_with("/v1/embeddings"), "{base}: {}", embedder.endpoint());
        }
        for bad in ["", "api.openai.com/v1", "ftp://host/v1", "https://host/v1?x=1", "http://"] {
            let error = OpenAiEmbedder::new(bad, "m").unwrap_err();
            assert!(matches!(error, PersistError::InvalidInput { field: "base_url", .. }), "{bad}: {error}");
        }
        assert!(matches!(
            OpenAiEmbedder::new("https://api.openai.com/v1", " ").unwrap_err(),
            PersistError::InvalidInput { field: "model", .. }
        ));
    }

    #[test]
    fn the_key_is_never_printed() {
        let embedder =
            OpenAiEmbedder::new("https://api.openai.com/v1", "m").unwrap().with_api_key("sk-secret-0123456789");
        let printed = format!("{embedder:?}");
        assert!(!printed.contains("sk-secret"), "{printed}");
        assert!(printed.contains("<redacted>"), "{printed}");
    }

    #[test]
    fn answers_are_checked() {
        let embedder = OpenAiEmbedder::new("http://127.0.0.1:1/v1", "m").unwrap();
        let answer = json!({"data": [{"index": 1, "embedding": [3.0, 4.0]}, {"index": 0, "embedding": [1.0, 2.0]}]});
        assert_eq!(embedder.vectors(&answer, 2).unwrap(), [[1.0, 2.0], [3.0, 4.0]]);
        for (answer, why) in [
            (json!({}), "no `data`"),
            (json!({"data": [{"index": 0, "embedding": [1.0]}]}), "1 vectors for 2 texts"),
            (json!({"data": [{"index": 0, "embedding": [1.0]}, {"index": 0, "embedding": [2.0]}]}), "two vectors"),
            (json!({"data": [{"index": 0, "embedding": [1.0]}, {"index": 2, "embedding": [2.0]}]}), "`index` below"),
            (json!({"data": [{"index": 0, "embedding": [1.0]}, {"index": 1, "embedding": [2.0, 3.0]}]}), "others"),
            (json!({"data": [{"index": 0, "embedding": "AAAA"}, {"index": 1, "embedding": [2.0]}]}), "float"),
            (json!({"data": [{"index": 0, "embedding": [1e300]}, {"index": 1, "embedding": [2.0]}]}), "finite"),
            (json!({"data": [{"index": 0, "embedding": []}, {"index": 1, "embedding": []}]}), "empty"),
        ] {
            let error = embedder.vectors(&answer, 2).unwrap_err();
            assert!(matches!(error, PersistError::Backend { .. }), "{error}");
            assert!(error.to_string().contains(why), "{why}: {error}");
        }
    }
}
