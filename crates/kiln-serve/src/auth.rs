//! Bearer-token auth. Tokens are compared as sha256 digests in constant time,
//! so neither a token's content nor its length leaks through response timing.

use axum::extract::{Request, State};
use axum::http::header::AUTHORIZATION;
use axum::middleware::Next;
use axum::response::Response;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::AppState;
use crate::error::ApiError;
use std::sync::Arc;

pub struct Tokens(Vec<[u8; 32]>);

impl Tokens {
    pub fn new(tokens: &[String]) -> Self {
        Self(tokens.iter().map(|token| digest(token)).collect())
    }

    pub fn required(&self) -> bool {
        !self.0.is_empty()
    }

    /// Whether `given` is one of the tokens; checks every token, whatever matches.
    pub fn allows(&self, given: &str) -> bool {
        let given = digest(given);
        self.0.iter().fold(subtle::Choice::from(0), |found, token| found | token.ct_eq(&given)).into()
    }
}

fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// Lets a request through when no tokens are configured or it carries one.
pub async fn require_token(
    State(state): State<Arc<AppState>>,
    request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    if !state.tokens.required() {
        return Ok(next.run(request).await);
    }
    let header = request.headers().get(AUTHORIZATION).and_then(|value| value.to_str().ok());
    let Some(header) = header else {
        return Err(ApiError::unauthorized("this endpoint needs an `Authorization: Bearer <token>` header"));
    };
    let token = header.strip_prefix("Bearer ").or_else(|| header.strip_prefix("bearer ")).map(str::trim);
    match token {
        Some(token) if state.tokens.allows(token) => Ok(next.run(request).await),
        Some(_) => Err(ApiError::unauthorized("the bearer token is not valid")),
        None => Err(ApiError::unauthorized("the Authorization header must be `Bearer <token>`")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_configured_tokens_are_allowed() {
        let tokens = Tokens::new(&["alpha".into(), "beta-2".into()]);
        assert!(tokens.required());
        assert!(tokens.allows("alpha") && tokens.allows("beta-2"));
        assert!(!tokens.allows("alph") && !tokens.allows("alpha ") && !tokens.allows(""));
        assert!(!Tokens::new(&[]).required());
    }
}
