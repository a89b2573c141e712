//! [`Params`]: a request's query string, as the routes read it.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;

use super::error::ApiError;

/// A request's query string as its pairs, repeated keys (`include[]=a&include[]=b`) included,
/// which a struct of fields cannot take.
#[derive(Debug)]
pub(crate) struct Params(Vec<(String, String)>);

impl<S: Send + Sync> FromRequestParts<S> for Params {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        serde_urlencoded::from_str(parts.uri.query().unwrap_or(""))
            .map(Self)
            .map_err(|_| ApiError::invalid("query", "The query string is malformed."))
    }
}

impl Params {
    /// Refuses a parameter not in `known` (400 naming it): an extension's parameters are its
    /// own, and one misspelt or of another API (`cursor=` for `after=`) would be ignored and
    /// page 1 answered forever.
    pub(crate) fn only(&self, known: &[&str]) -> Result<&Self, ApiError> {
        match self.0.iter().find(|(key, _)| !known.contains(&key.as_str())) {
            Some((key, _)) => Err(ApiError::unknown_parameter(key)),
            None => Ok(self),
        }
    }

    /// Every pair, in the query's order.
    pub(crate) fn pairs(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(key, value)| (key.as_str(), value.as_str()))
    }

    /// The last value given for `name`.
    pub(crate) fn get(&self, name: &str) -> Option<&str> {
        self.0.iter().rev().find(|(key, _)| key == name).map(|(_, value)| value.as_str())
    }

    /// `limit`: 1 to 100, 20 when absent.
    pub(crate) fn limit(&self) -> Result<u32, ApiError> {
        match self.get("limit") {
            None => Ok(20),
            Some(text) => text.parse::<u32>().ok().filter(|limit| (1..=100).contains(limit)).ok_or_else(|| {
                ApiError::invalid("limit", format!("Invalid 'limit': '{text}'. Expected an integer from 1 to 100."))
            }),
        }
    }
}
