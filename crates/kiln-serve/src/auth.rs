//! Who is calling, and may they: bearer tokens with names and scopes, and a
//! rate limit per client.
//!
//! Tokens are compared as sha256 digests in constant time, so neither a
//! token's content nor its length leaks through response timing. Every
//! request that passes carries its [`Client`] (the token's name, never the
//! token), which the prediction log records and request ids are signed for.

use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::header::AUTHORIZATION;
use axum::middleware::Next;
use axum::response::Response;
use governor::clock::Clock;
use governor::{DefaultKeyedRateLimiter, Quota};
use kiln_config::{ApiToken, Scope, ServeConfig};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::AppState;
use crate::error::ApiError;

/// The caller of a request, as the logs name it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Client {
    /// The token's name; `anonymous` when the server runs without tokens.
    pub name: Arc<str>,
}

/// The client name of every request to a server without tokens.
pub const ANONYMOUS: &str = "anonymous";

struct Entry {
    digest: [u8; 32],
    name: Arc<str>,
    scopes: Vec<Scope>,
}

pub struct Tokens(Vec<Entry>);

impl Tokens {
    pub fn new(tokens: &[ApiToken]) -> Self {
        Self(
            tokens
                .iter()
                .map(|token| Entry {
                    digest: digest(&token.token),
                    name: Arc::from(token.name.as_str()),
                    scopes: token.scopes.clone(),
                })
                .collect(),
        )
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The entry whose token is `given`; checks every token, whatever matches.
    fn find(&self, given: &str) -> Option<&Entry> {
        let given = digest(given);
        let mut found = None;
        for entry in &self.0 {
            if bool::from(entry.digest.ct_eq(&given)) {
                found = Some(entry);
            }
        }
        found
    }
}

fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// The scope a route needs; `None` for the open ones (page, health).
pub fn scope_of(path: &str) -> Option<Scope> {
    match path {
        "/v1/feedback" => Some(Scope::Feedback),
        "/admin/reload" => Some(Scope::Admin),
        "/" | "/healthz" | "/readyz" => None,
        _ => Some(Scope::Predict),
    }
}

/// Requests a second per client, for predict and feedback apart.
pub struct RateLimits {
    predict: Option<DefaultKeyedRateLimiter<Arc<str>>>,
    feedback: Option<DefaultKeyedRateLimiter<Arc<str>>>,
}

impl RateLimits {
    pub fn new(config: &ServeConfig) -> Self {
        let burst = NonZeroU32::new(config.rate_limit_burst).unwrap_or(NonZeroU32::MIN);
        let limiter = |per_second: f64| {
            (per_second > 0.0)
                .then(|| Quota::with_period(Duration::from_secs_f64(1.0 / per_second)))
                .flatten()
                .map(|quota| DefaultKeyedRateLimiter::keyed(quota.allow_burst(burst)))
        };
        Self { predict: limiter(config.predict_rate_limit), feedback: limiter(config.feedback_rate_limit) }
    }

    /// Ok, or how long `client` must wait before its next `scope` request.
    fn check(&self, scope: Scope, client: &Arc<str>) -> Result<(), Duration> {
        let limiter = match scope {
            Scope::Predict => &self.predict,
            Scope::Feedback => &self.feedback,
            Scope::Admin => &None,
        };
        let Some(limiter) = limiter else { return Ok(()) };
        limiter.check_key(client).map_err(|not_until| not_until.wait_time_from(limiter.clock().now()))
    }

    /// Forgets clients that have been quiet long enough to be back at their full
    /// burst (open servers key by address, which a caller can vary).
    pub fn forget_quiet_clients(&self) {
        for limiter in [&self.predict, &self.feedback].into_iter().flatten() {
            limiter.retain_recent();
            limiter.shrink_to_fit();
        }
    }
}

/// Lets a request through when its token may call the route (or the server
/// runs without tokens), within its rate; names the client for the handlers.
pub async fn require_token(
    State(state): State<Arc<AppState>>,
    mut request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let path = request.uri().path().to_owned();
    let Some(scope) = scope_of(&path) else {
        return Ok(next.run(request).await);
    };
    let tokens = state.tokens.load();
    let (client, rate_key) = if !tokens.is_empty() {
        let header = request.headers().get(AUTHORIZATION).and_then(|value| value.to_str().ok());
        let Some(header) = header else {
            return Err(ApiError::unauthorized("this endpoint needs an `Authorization: Bearer <token>` header"));
        };
        let Some(token) = header.strip_prefix("Bearer ").or_else(|| header.strip_prefix("bearer ")).map(str::trim)
        else {
            return Err(ApiError::unauthorized("the Authorization header must be `Bearer <token>`"));
        };
        let Some(entry) = tokens.find(token) else {
            return Err(ApiError::unauthorized("the bearer token is not valid"));
        };
        if !entry.scopes.contains(&scope) {
            let scopes: Vec<&str> = entry.scopes.iter().map(|s| s.name()).collect();
            return Err(ApiError::forbidden(format!(
                "the token '{}' may not call {path}: it has the scopes {}, and this endpoint needs `{}`",
                entry.name,
                scopes.join(", "),
                scope.name()
            )));
        }
        (Client { name: entry.name.clone() }, entry.name.clone())
    } else {
        // Open: one client to the logs, a rate per address.
        let address = request.extensions().get::<ConnectInfo<SocketAddr>>().map(|info| info.0.ip().to_string());
        (Client { name: Arc::from(ANONYMOUS) }, Arc::from(address.unwrap_or_else(|| ANONYMOUS.into()).as_str()))
    };
    if let Err(wait) = state.rate_limits.check(scope, &rate_key) {
        state.metrics.rate_limited.with_label_values(&[scope.name()]).inc();
        return Err(ApiError::rate_limited(wait));
    }
    request.extensions_mut().insert(client);
    Ok(next.run(request).await)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token(entry: &str) -> ApiToken {
        ApiToken::parse(entry, "token-1").expect("valid")
    }

    #[test]
    fn only_configured_tokens_are_found_with_their_names_and_scopes() {
        let tokens = Tokens::new(&[token("app:alpha-alpha-alpha-1"), token("ops:beta-beta-beta-beta-2:admin")]);
        assert_eq!(tokens.len(), 2);
        let app = tokens.find("alpha-alpha-alpha-1").expect("app");
        assert_eq!((&*app.name, app.scopes.as_slice()), ("app", Scope::DEFAULT.as_slice()));
        assert_eq!(tokens.find("beta-beta-beta-beta-2").map(|e| e.scopes.clone()), Some(vec![Scope::Admin]));
        assert!(tokens.find("alpha-alpha-alpha-").is_none() && tokens.find("").is_none());
        assert!(Tokens::new(&[]).is_empty());
    }

    #[test]
    fn routes_need_their_scope() {
        assert_eq!(scope_of("/v1/predict"), Some(Scope::Predict));
        assert_eq!(scope_of("/metrics"), Some(Scope::Predict));
        assert_eq!(scope_of("/v1/feedback"), Some(Scope::Feedback));
        assert_eq!(scope_of("/admin/reload"), Some(Scope::Admin));
        assert_eq!(scope_of("/healthz"), None);
        assert_eq!(scope_of("/no/such/route"), Some(Scope::Predict), "unknown routes are not open");
    }

    #[test]
    fn a_client_over_its_rate_waits_and_others_do_not() {
        let config = ServeConfig { predict_rate_limit: 1.0, rate_limit_burst: 2, ..ServeConfig::default() };
        let limits = RateLimits::new(&config);
        let (a, b): (Arc<str>, Arc<str>) = (Arc::from("a"), Arc::from("b"));
        assert!(limits.check(Scope::Predict, &a).is_ok() && limits.check(Scope::Predict, &a).is_ok());
        let wait = limits.check(Scope::Predict, &a).expect_err("over the burst");
        assert!(wait > Duration::ZERO && wait <= Duration::from_secs(1), "{wait:?}");
        assert!(limits.check(Scope::Predict, &b).is_ok(), "another client has its own budget");
        assert!(limits.check(Scope::Admin, &a).is_ok(), "admin calls are not rate limited");
        let off = RateLimits::new(&ServeConfig { feedback_rate_limit: 0.0, ..ServeConfig::default() });
        assert!((0..1000).all(|_| off.check(Scope::Feedback, &a).is_ok()), "0 is no limit");
    }
}
