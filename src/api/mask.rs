//! `POST …/mask`: `{"text": "..."}` → `{"text": "<masked>"}` with the global mask set.
//!
//! Rate-limited (a token bucket shared by all callers), so the route cannot become an
//! oracle for guessing short values one request at a time. Fails closed: if the text cannot
//! be masked, it is not returned.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::Json;
use axum::extract::State;
use serde_json::{Value, json};

use super::extract::{JsonBody, PathParams};
use crate::error::ApiError;
use crate::state::AppState;

/// A token bucket: `rate` requests per second, bursts up to `burst`.
pub struct RateLimit {
    rate: f64,
    burst: f64,
    // std lock: a few arithmetic operations, never held across `.await`.
    bucket: Mutex<(f64, Instant)>,
}

impl RateLimit {
    /// A full bucket.
    pub fn new(rate_per_second: u32) -> Self {
        let rate = f64::from(rate_per_second.max(1));
        Self { rate, burst: rate * 2.0, bucket: Mutex::new((rate * 2.0, Instant::now())) }
    }

    /// Takes a token, or says how long until one is available.
    pub fn take(&self) -> Result<(), Duration> {
        let mut b = self.bucket.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        b.0 = (b.0 + now.duration_since(b.1).as_secs_f64() * self.rate).min(self.burst);
        b.1 = now;
        if b.0 >= 1.0 {
            b.0 -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - b.0) / self.rate))
        }
    }
}

/// `POST /api/conversations/{id}/mask` and `POST /api/mask`.
pub async fn mask(
    State(state): State<AppState>,
    params: PathParams,
    JsonBody(body): JsonBody,
) -> Result<Json<Value>, ApiError> {
    params.scope()?;
    let text = match body.get("text") {
        Some(Value::String(t)) => t,
        _ => return Err(ApiError::Unprocessable("text: must be a string".into())),
    };
    state.mask_rate.take().map_err(|wait| ApiError::TooMany {
        message: "too many mask requests".into(),
        retry_after: wait.max(Duration::from_secs(1)),
    })?;
    let masked = state.masks.masker().mask(text.as_bytes()).map_err(|_| ApiError::Unavailable)?;
    Ok(Json(json!({"text": String::from_utf8_lossy(&masked)})))
}
