//! Endpoints as the server stores them: the wire shapes and their rules are the model's
//! ([`crate::model::endpoint`]); this adds the stored form and its size limit.

pub use crate::model::endpoint::*;

use super::error::ApiError;

/// The stored form of `e`, with the size limit checked. `field` names the endpoint in errors.
pub fn to_stored(e: &Endpoint, field: &str) -> Result<String, ApiError> {
    let text = serde_json::to_string(e).map_err(|e| ApiError::internal(&e))?;
    if text.len() > MAX_ENDPOINT_BYTES {
        return Err(ApiError::bad_request(format!(
            "{field}: an endpoint is at most 15 KB ({MAX_ENDPOINT_BYTES} bytes); this one would be {}",
            text.len()
        )));
    }
    Ok(text)
}
