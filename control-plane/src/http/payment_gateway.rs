//! `/billing/gateway`: which payment provider charges invoices, and its credentials.

use axum::extract::State;
use axum::Json;

use super::api_doc::ErrorBody;
use crate::domain::payments::config::{self, FieldView, GatewayInput, GatewayView, SecretView};
use crate::state::AppState;
use crate::web::error::ApiResult;
use crate::web::extract::JsonBody;

#[utoipa::path(
    get,
    path = "/admin/api/v1/billing/gateway",
    tag = "payments",
    responses(
        (status = 200, description = "The gateway settings (secrets shown as set/last4)", body = GatewayView),
        (status = 401, body = ErrorBody),
        (status = 429, body = ErrorBody),
    ),
    security(("admin_token" = []))
)]
pub async fn get(State(s): State<AppState>) -> ApiResult<Json<GatewayView>> {
    Ok(Json(config::public_view(&s.pool).await?))
}

/// Replaces the gateway settings (all fields of the chosen type). 422 on invalid input, 409 without a
/// master key; nothing is stored in either case.
#[utoipa::path(
    put,
    path = "/admin/api/v1/billing/gateway",
    tag = "payments",
    request_body = GatewayInput,
    responses(
        (status = 200, description = "Stored; `warning` after a switch of provider", body = GatewayView),
        (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody),
        (status = 409, description = "`master_key_required`, or a stored billing currency Tollgate does not know", body = ErrorBody),
        (status = 422, body = ErrorBody),
        (status = 429, body = ErrorBody),
    ),
    security(("admin_token" = []))
)]
pub async fn put(
    State(s): State<AppState>,
    actor: crate::domain::audit::Actor,
    JsonBody(input): JsonBody<GatewayInput>,
) -> ApiResult<Json<GatewayView>> {
    Ok(Json(
        config::save(&s.pool, s.master_key.as_deref(), &actor, input).await?,
    ))
}

#[derive(utoipa::OpenApi)]
#[openapi(
    paths(get, put),
    components(schemas(GatewayView, GatewayInput, FieldView, SecretView))
)]
pub struct PaymentGatewayApi;

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use axum::body::{to_bytes, Body};
    use axum::http::{Request, StatusCode};
    use serde_json::{json, Value};
    use tower::ServiceExt;

    use crate::http::router;
    use crate::state::AppState;

    const TOKEN: &str = "test-admin-token-0123456789abcdef0123456789abcdef";

    async fn app(master_key: Option<[u8; 32]>) -> axum::Router {
        let pool = crate::store::connect_in_memory().await.unwrap();
        crate::store::migrate(&pool).await.unwrap();
        let state = AppState::new(pool, Some(crate::secrets::sha256_hex(TOKEN).into()))
            .with_master_key(master_key);
        router(state)
    }

    async fn send(
        app: &axum::Router,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &str,
    ) -> (StatusCode, Value) {
        let mut req = Request::builder().method(method).uri(path);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let r = app
            .clone()
            .oneshot(req.body(Body::from(body.to_string())).unwrap())
            .await
            .unwrap();
        let status = r.status();
        let bytes = to_bytes(r.into_body(), usize::MAX).await.unwrap();
        (
            status,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        )
    }

    async fn admin(
        app: &axum::Router,
        method: &str,
        path: &str,
        body: Value,
    ) -> (StatusCode, Value) {
        let auth = format!("Bearer {TOKEN}");
        send(
            app,
            method,
            &format!("/admin/api/v1{path}"),
            &[
                ("authorization", &auth),
                ("content-type", "application/json"),
            ],
            &body.to_string(),
        )
        .await
    }

    fn stripe_settings() -> Value {
        json!({"type": "stripe", "secret_key": "sk_test_abcd1234", "publishable_key": "pk_test_x",
               "webhook_secret": "whsec_test_9876"})
    }

    #[tokio::test]
    async fn gateway_settings_show_public_fields_and_the_last_four_of_secrets() {
        let app = app(Some([7; 32])).await;
        let (st, none) = admin(&app, "GET", "/billing/gateway", Value::Null).await;
        assert_eq!(st, StatusCode::OK);
        assert_eq!(none, json!({"object": "payment_gateway", "type": null}));
        let (st, e) = admin(&app, "PUT", "/billing/gateway", json!({"type": "paypal"})).await;
        assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(e["error"]["code"], "invalid_gateway");
        let (st, v) = admin(&app, "PUT", "/billing/gateway", stripe_settings()).await;
        assert_eq!(st, StatusCode::OK, "{v}");
        assert_eq!(
            v,
            json!({"object": "payment_gateway", "type": "stripe",
                   "secret_key": {"set": true, "last4": "1234"}, "publishable_key": "pk_test_x",
                   "webhook_secret": {"set": true, "last4": "9876"}})
        );
        // A switch of provider says what it means for stored cards.
        let (st, v) = admin(
            &app,
            "PUT",
            "/billing/gateway",
            json!({"type": "braintree", "merchant_id": "m", "public_key": "p", "private_key": "secret",
                   "merchant_accounts": {"USD": "acct_usd", "EUR": "acct_eur"}}),
        )
        .await;
        assert_eq!(st, StatusCode::OK, "{v}");
        assert_eq!(v["type"], "braintree");
        assert_eq!(v["environment"], "sandbox");
        assert_eq!(v["private_key"], json!({"set": true, "last4": "cret"}));
        assert_eq!(
            v["merchant_accounts"],
            json!({"EUR": "acct_eur", "USD": "acct_usd"})
        );
        assert!(v["warning"]
            .as_str()
            .unwrap()
            .starts_with("switched from stripe to braintree"));
        let (_, again) = admin(&app, "GET", "/billing/gateway", Value::Null).await;
        assert!(again.get("warning").is_none(), "{again}");
    }

    #[tokio::test]
    async fn gateway_secrets_need_the_master_key() {
        let app = app(None).await;
        let (st, e) = admin(&app, "PUT", "/billing/gateway", stripe_settings()).await;
        assert_eq!(st, StatusCode::CONFLICT);
        assert_eq!(e["error"]["code"], "master_key_required");
    }

    #[tokio::test]
    async fn stripe_webhooks_are_verified_then_applied() {
        let app = app(Some([7; 32])).await;
        let event = r#"{"id":"evt_1","type":"customer.created","data":{"object":{}}}"#;
        let (st, e) = send(&app, "POST", "/webhooks/stripe", &[], event).await;
        assert_eq!(st, StatusCode::CONFLICT);
        assert_eq!(e["error"]["code"], "no_payment_gateway");
        admin(&app, "PUT", "/billing/gateway", stripe_settings()).await;
        let (st, e) = send(
            &app,
            "POST",
            "/webhooks/stripe",
            &[("stripe-signature", "t=1,v1=00")],
            event,
        )
        .await;
        assert_eq!(st, StatusCode::BAD_REQUEST);
        assert_eq!(e["error"]["code"], "invalid_signature");
        assert_eq!(e["error"]["param"], "Stripe-Signature");
        let t = crate::store::now();
        let mac = {
            use hmac::{Hmac, Mac};
            let mut m = Hmac::<sha2::Sha256>::new_from_slice(b"whsec_test_9876").unwrap();
            m.update(format!("{t}.{event}").as_bytes());
            m.finalize()
                .into_bytes()
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect::<String>()
        };
        let signature = format!("t={t},v1={mac}");
        let (st, v) = send(
            &app,
            "POST",
            "/webhooks/stripe",
            &[("stripe-signature", &signature)],
            event,
        )
        .await;
        assert_eq!(st, StatusCode::OK);
        assert_eq!(v, json!({"received": true, "result": "ignored"}));
    }

    #[test]
    fn the_generated_document_describes_the_payment_routes() {
        let doc = serde_json::to_value(crate::http::api_doc::generated()).unwrap();
        for path in [
            "/admin/api/v1/billing/gateway",
            "/admin/api/v1/invoices/{id}/charge",
            "/webhooks/stripe",
            "/api/v1/payment_methods",
            "/api/v1/payment_methods/setup",
            "/api/v1/payment_methods/{id}",
            "/api/v1/payment_methods/{id}/default",
            "/api/v1/invoices/{id}/pay",
        ] {
            assert!(doc["paths"].get(path).is_some(), "{path} missing");
        }
        let schemas = &doc["components"]["schemas"];
        for name in [
            "GatewayView",
            "Payment",
            "PaymentMethod",
            "CardSetup",
            "ChargedInvoice",
        ] {
            assert!(schemas.get(name).is_some(), "{name} missing");
        }
    }
}
