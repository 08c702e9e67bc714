//! The admin portal acts through the admin API, in-process: each form post becomes the API call an
//! admin would make with their token (same validation, same snapshot bump for gateways, same error
//! objects), so the portal cannot drift from the API. Pages read through it too.

use axum::body::Body;
use axum::http::{header, Method, Request, StatusCode};
use serde_json::Value;
use tower::ServiceExt;

use crate::http::auth::Caller;
use crate::http::AppState;

/// Largest API answer the portal reads (a page of 100 objects is far below this).
const MAX_ANSWER_BYTES: usize = 8 * 1024 * 1024;

/// An API answer: its status and JSON body.
pub struct Answer {
    pub status: StatusCode,
    pub body: Value,
}

impl Answer {
    pub fn ok(&self) -> bool {
        self.status.is_success()
    }

    /// `(param, message)` of an error answer (`param` empty when the error names no field).
    pub fn error(&self) -> Option<(String, String)> {
        if self.ok() {
            return None;
        }
        let e = &self.body["error"];
        let message = e["message"]
            .as_str()
            .map(str::to_string)
            .unwrap_or_else(|| format!("the request failed ({})", self.status));
        Some((e["param"].as_str().unwrap_or("").to_string(), message))
    }

    /// The `data` array of a list answer (empty on errors).
    pub fn data(&self) -> &[Value] {
        self.body["data"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or(&[])
    }
}

fn internal(message: String) -> Answer {
    tracing::error!(%message, "admin portal: in-process API call failed");
    Answer {
        status: StatusCode::INTERNAL_SERVER_ERROR,
        body: serde_json::json!({"error": {"message": "internal error"}}),
    }
}

/// Calls `method path` of the admin API (path below `/admin/api/v1`) as `caller`.
pub async fn call(
    s: &AppState,
    caller: &Caller,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> Answer {
    let bytes = body.map(|b| b.to_string()).unwrap_or_default();
    let request = Request::builder()
        .method(method)
        .uri(path)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(bytes));
    let mut request = match request {
        Ok(r) => r,
        Err(e) => return internal(format!("{path}: {e}")),
    };
    request.extensions_mut().insert(caller.clone());
    let routes = crate::http::admin_routes(s).with_state(s.clone());
    let response = match routes.oneshot(request).await {
        Ok(r) => r,
        Err(e) => return internal(format!("{path}: {e}")),
    };
    let status = response.status();
    match axum::body::to_bytes(response.into_body(), MAX_ANSWER_BYTES).await {
        Ok(b) => Answer {
            status,
            body: serde_json::from_slice(&b).unwrap_or(Value::Null),
        },
        Err(e) => internal(format!("{path}: {e}")),
    }
}

pub async fn get(s: &AppState, caller: &Caller, path: &str) -> Answer {
    call(s, caller, Method::GET, path, None).await
}
