//! What every request passes before its handler, as axum middleware (the router in the parent
//! module stacks them): [`count_request`] (metrics by route and status), [`require_token`] (the
//! bearer token, when one is configured) and [`buffer_body`] (the whole body read first, within
//! the size and time limits).

use std::sync::Arc;
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::api_error::ApiError;
use super::{page, AppState};

/// 401 without the bearer token (health stays open for probes). The body of a refused request
/// is read and dropped chunk by chunk (up to the body limit and time), so the client reads the
/// 401 instead of a broken pipe, without the server holding the body.
pub async fn require_token(
    State(state): State<Arc<AppState>>,
    request: Request,
    next: Next,
) -> Response {
    if let Some(token) = &state.token {
        let sent = request
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(bearer_token);
        let path = request.uri().path();
        let open = path == "/v1/health" || page::is_public(path) || super::v2::is_public(path);
        if !open && !sent.is_some_and(|s| constant_time_eq(s.as_bytes(), token.as_bytes())) {
            let limits = state.limits;
            let _ = tokio::time::timeout(
                limits.body_timeout,
                discard_body(request.into_body(), limits.max_body),
            )
            .await;
            let mut response = ApiError::new(
                StatusCode::UNAUTHORIZED,
                "missing or wrong 'Authorization: Bearer <token>' header",
            )
            .into_response();
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            return response;
        }
    }
    next.run(request).await
}

/// Reads `body` to its end or past `limit` bytes, keeping nothing.
async fn discard_body(mut body: axum::body::Body, limit: usize) {
    use axum::body::HttpBody;
    let mut read = 0usize;
    while read <= limit {
        let frame = std::future::poll_fn(|cx| std::pin::Pin::new(&mut body).poll_frame(cx));
        match frame.await {
            Some(Ok(frame)) => read += frame.data_ref().map_or(0, |d| d.len()),
            _ => break,
        }
    }
}

/// Reads the whole body (up to the body limit, else 413) before any handler runs. A server
/// that answers early and closes makes clients still writing fail with a broken pipe instead
/// of reading the answer; buffering first lets every error message reach the client.
pub async fn buffer_body(
    State(state): State<Arc<AppState>>,
    request: Request,
    next: Next,
) -> Response {
    let (parts, body) = request.into_parts();
    let read = tokio::time::timeout(
        state.limits.body_timeout,
        axum::body::to_bytes(body, state.limits.max_body),
    );
    let Ok(read) = read.await else {
        return ApiError::new(
            StatusCode::REQUEST_TIMEOUT,
            format!(
                "the request body was not received within the server's {} ms",
                state.limits.body_timeout.as_millis()
            ),
        )
        .into_response();
    };
    match read {
        Ok(bytes) => {
            next.run(Request::from_parts(parts, axum::body::Body::from(bytes)))
                .await
        }
        Err(e) => {
            let text = e.to_string();
            let error = if text.contains("length limit") {
                ApiError::too_large(format!(
                    "the request body is above the server's limit of {} bytes",
                    state.limits.max_body
                ))
            } else {
                ApiError::bad_request(format!("reading the request body: {text}"))
            };
            error.into_response()
        }
    }
}

/// The token of an `Authorization` value `<scheme> <token>` whose scheme is `Bearer`, in any
/// case (RFC 9110: the scheme is case-insensitive).
fn bearer_token(value: &str) -> Option<&str> {
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim_start_matches(' '))
}

/// Compares without an early exit on the first differing byte.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Counts every answer by route pattern and status, with its latency.
pub async fn count_request(
    State(state): State<Arc<AppState>>,
    request: Request,
    next: Next,
) -> Response {
    let started = Instant::now();
    let path = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "unmatched".to_string());
    let response = next.run(request).await;
    state.metrics.observe_request(
        &path,
        response.status().as_u16(),
        started.elapsed().as_secs_f64(),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bearer_scheme_is_case_insensitive() {
        assert_eq!(bearer_token("Bearer abc"), Some("abc"));
        assert_eq!(bearer_token("bearer abc"), Some("abc"));
        assert_eq!(bearer_token("BEARER  abc"), Some("abc"));
        assert_eq!(bearer_token("Basic abc"), None);
        assert_eq!(bearer_token("Bearerabc"), None);
    }

    #[test]
    fn token_comparison_is_exact() {
        assert!(constant_time_eq(b"secret", b"secret"));
        assert!(!constant_time_eq(b"secret", b"secreT"));
        assert!(!constant_time_eq(b"secret", b"secret2"));
    }
}
