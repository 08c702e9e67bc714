//! Usage alert thresholds of plans and applications (docs/operations.md, "Usage alerts"); the
//! admin API's handlers over [`crate::domain::metering::alerts`]. Sub-resources of the plan and
//! the application: a threshold set is read, replaced whole, or dropped (the plan falls back to
//! the defaults, the application to its plan's). [`alert_thresholds_of!`] declares the three
//! handlers of each from one description.

use axum::extract::{Path, State};
use axum::Json;

use super::api_doc::ErrorBody;
use crate::domain::audit::Actor;
use crate::domain::metering::alerts::{self, AlertThresholds, ThresholdSource, ThresholdsInput};
use crate::state::AppState;
use crate::web::error::ApiResult;
use crate::web::extract::JsonBody;

#[derive(utoipa::OpenApi)]
#[openapi(
    paths(
        plan_thresholds,
        set_plan_thresholds,
        reset_plan_thresholds,
        application_thresholds,
        set_application_thresholds,
        reset_application_thresholds
    ),
    components(schemas(AlertThresholds, ThresholdSource, ThresholdsInput))
)]
pub struct UsageAlertsApi;

/// The GET, PUT and DELETE handlers of `/admin/api/v1/$path` (`$path` holds the owner's `{id}`),
/// reading with `$of`, replacing with `$set` and dropping with `$reset` (the writes recorded as the
/// caller's in the audit log); `$tag` and `$id` (the
/// id parameter's description) and each 200's description are the owner's.
macro_rules! alert_thresholds_of {
    (
        $path:tt, tag $tag:tt, id $id:tt;
        get $get:ident => $of:path, $got:tt;
        put $put:ident => $set:path, $replaced:tt;
        delete $delete:ident => $reset:path, $dropped:tt;
    ) => {
        #[utoipa::path(
            get,
            path = concat!("/admin/api/v1", $path),
            tag = $tag,
            params(("id" = String, Path, description = $id)),
            responses(
                (status = 200, description = $got, body = AlertThresholds),
                (status = 401, body = ErrorBody),
                (status = 404, body = ErrorBody),
                (status = 429, body = ErrorBody)
            ),
            security(("admin_token" = []))
        )]
        pub async fn $get(
            State(s): State<AppState>,
            Path(id): Path<String>,
        ) -> ApiResult<Json<AlertThresholds>> {
            Ok(Json($of(&s.pool, &id).await?))
        }

        #[utoipa::path(
            put,
            path = concat!("/admin/api/v1", $path),
            tag = $tag,
            params(("id" = String, Path, description = $id)),
            request_body = ThresholdsInput,
            responses(
                (status = 200, description = $replaced, body = AlertThresholds),
                (status = 400, body = ErrorBody),
                (status = 401, body = ErrorBody),
                (status = 403, body = ErrorBody),
                (status = 404, body = ErrorBody),
                (status = 409, description = "An idempotency key in flight", body = ErrorBody),
                (status = 422, description = "`invalid_threshold` (not an integer 1-100), `duplicate_threshold`, `too_many_thresholds` (more than 10)", body = ErrorBody),
                (status = 429, body = ErrorBody)
            ),
            security(("admin_token" = []))
        )]
        pub async fn $put(
            State(s): State<AppState>,
            actor: Actor,
            Path(id): Path<String>,
            JsonBody(input): JsonBody<ThresholdsInput>,
        ) -> ApiResult<Json<AlertThresholds>> {
            Ok(Json($set(&s.pool, &actor, &id, &input).await?))
        }

        #[utoipa::path(
            delete,
            path = concat!("/admin/api/v1", $path),
            tag = $tag,
            params(("id" = String, Path, description = $id)),
            responses(
                (status = 200, description = $dropped, body = AlertThresholds),
                (status = 401, body = ErrorBody),
                (status = 403, body = ErrorBody),
                (status = 404, body = ErrorBody),
                (status = 409, description = "An idempotency key in flight", body = ErrorBody),
                (status = 429, body = ErrorBody)
            ),
            security(("admin_token" = []))
        )]
        pub async fn $delete(
            State(s): State<AppState>,
            actor: Actor,
            Path(id): Path<String>,
        ) -> ApiResult<Json<AlertThresholds>> {
            Ok(Json($reset(&s.pool, &actor, &id).await?))
        }
    };
}

alert_thresholds_of! {
    "/plans/{id}/alert_thresholds", tag "plans", id "Plan id";
    get plan_thresholds => alerts::of_plan,
        "The plan's own thresholds, or the defaults (50, 80, 90, 100)";
    put set_plan_thresholds => alerts::set_for_plan,
        "The plan's thresholds, which its applications without an override alert on";
    delete reset_plan_thresholds => alerts::reset_plan,
        "The defaults, which apply again";
}

alert_thresholds_of! {
    "/applications/{id}/alert_thresholds", tag "applications", id "Application id";
    get application_thresholds => alerts::of_application,
        "The application's override, else its plan's thresholds";
    put set_application_thresholds => alerts::set_for_application,
        "The override, which replaces the plan's thresholds";
    delete reset_application_thresholds => alerts::reset_application,
        "The plan's thresholds, which apply again";
}
