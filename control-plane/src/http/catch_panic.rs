//! A panic in one request's handler answers that request 500 with the error object, and the
//! process goes on serving every other request.
//!
//! Handlers do not panic (clippy denies `unwrap`, `expect` and `panic!` outside tests); this is
//! the net for the bug that slips through anyway. It needs the unwinding release profile of the
//! workspace's Cargo.toml: under `panic = "abort"` the whole process would end instead.

use std::any::Any;

use axum::response::{IntoResponse, Response};
use tower_http::catch_panic::CatchPanicLayer;

use crate::web::error::ApiError;

/// The layer [`super::router`] puts around everything (outermost, so a panic in a middleware is
/// caught too).
pub fn layer() -> CatchPanicLayer<fn(Box<dyn Any + Send + 'static>) -> Response> {
    CatchPanicLayer::custom(answer as fn(Box<dyn Any + Send + 'static>) -> Response)
}

/// The generic internal error (the panic's message goes to the log, never to the client).
fn answer(panic: Box<dyn Any + Send + 'static>) -> Response {
    let message = panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".into());
    ApiError::Internal(format!("a request handler panicked: {message}")).into_response()
}

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use axum::http::{Request, StatusCode};
    use axum::routing::get;
    use axum::Router;
    use tower::ServiceExt;

    async fn boom() -> &'static str {
        panic!("secret detail of a bug")
    }

    #[tokio::test]
    async fn a_panicking_handler_answers_500_with_the_error_object_and_the_router_goes_on() {
        let app = Router::new()
            .route("/boom", get(boom))
            .route("/fine", get(|| async { "fine" }))
            .layer(super::layer());
        let get = |path: &str| Request::get(path).body(Body::empty()).unwrap();

        let r = app.clone().oneshot(get("/boom")).await.unwrap();
        assert_eq!(r.status(), StatusCode::INTERNAL_SERVER_ERROR);
        let body = axum::body::to_bytes(r.into_body(), 64 * 1024)
            .await
            .unwrap();
        let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(body["error"]["type"], "api_error");
        assert_eq!(body["error"]["code"], "internal_error");
        assert!(!body.to_string().contains("secret detail"), "{body}");

        // The same service answers the next request: nothing was torn down.
        let r = app.oneshot(get("/fine")).await.unwrap();
        assert_eq!(r.status(), StatusCode::OK);
    }
}
