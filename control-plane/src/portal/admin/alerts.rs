//! Admin portal: usage alert thresholds (docs/operations.md, "Usage alerts"). A plan's are a
//! section of the plan's page; an application's override has a page of its own, linked from its
//! account's page. Both go through one form and the domain functions the admin API calls
//! (`domain::metering::alerts`).

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;

use super::access::{AdminSession, Fields, WriteForm};
use super::forms::{
    error_for, general_error, get, not_found, refused, seg, show, write_form, FormError,
};
use crate::domain::accounts::applications;
use crate::domain::audit::Actor;
use crate::domain::metering::alerts::{
    self, AlertThresholds, ThresholdSource, ThresholdsInput, DEFAULT_THRESHOLDS,
};
use crate::domain::{DomainError, DomainResult};
use crate::portal::html::{html, input, notice, post_button, Markup};
use crate::state::AppState;

/// Whose thresholds a form changes.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Owner {
    Plan,
    Application,
}

impl Owner {
    /// The portal path of the owner's thresholds form.
    fn action(self, id: &str) -> String {
        match self {
            Owner::Plan => format!("/admin/plans/{}/alert_thresholds", seg(id)),
            Owner::Application => format!("/admin/applications/{}/alert_thresholds", seg(id)),
        }
    }

    async fn set(
        self,
        s: &AppState,
        actor: &Actor,
        id: &str,
        input: &ThresholdsInput,
    ) -> DomainResult<()> {
        match self {
            Owner::Plan => alerts::set_for_plan(&s.pool, actor, id, input).await,
            Owner::Application => alerts::set_for_application(&s.pool, actor, id, input).await,
        }
        .map(|_| ())
    }

    async fn reset(self, s: &AppState, actor: &Actor, id: &str) -> DomainResult<()> {
        match self {
            Owner::Plan => alerts::reset_plan(&s.pool, actor, id).await,
            Owner::Application => alerts::reset_application(&s.pool, actor, id).await,
        }
        .map(|_| ())
    }

    /// The owner's page again, with `done` above it or the refusal `e` on the form.
    #[allow(clippy::too_many_arguments)]
    async fn page(
        self,
        s: &AppState,
        admin: &AdminSession,
        id: &str,
        f: &Fields,
        e: &FormError,
        done: Markup,
        status: StatusCode,
    ) -> Response {
        match self {
            Owner::Plan => {
                super::catalog::plan_page(s, admin, id, &Fields::new(), f, e, done, status).await
            }
            Owner::Application => application_page(s, admin, id, f, e, done, status).await,
        }
    }
}

/// `"50, 80, 90"` as the thresholds the API takes; a word that is not a whole number is refused
/// as the API refuses it, on the form's field.
fn parse(text: &str) -> Result<ThresholdsInput, DomainError> {
    let thresholds = text
        .split([',', ' '])
        .filter(|t| !t.is_empty())
        .map(|t| {
            t.parse::<i64>().map_err(|_| {
                DomainError::invalid(
                    "thresholds",
                    "invalid_threshold",
                    format!(
                        "{t:?} is not a whole number of percent (1 to {})",
                        alerts::MAX_THRESHOLD_PERCENT
                    ),
                )
            })
        })
        .collect::<Result<Vec<i64>, _>>()?;
    Ok(ThresholdsInput { thresholds })
}

/// A refusal on the form's one field (the API names `thresholds[2]`).
fn refusal(e: DomainError) -> (StatusCode, FormError) {
    let (status, e) = refused(e);
    let e = e.map(|(param, message)| {
        if param.starts_with("thresholds") {
            ("thresholds".to_string(), message)
        } else {
            (param, message)
        }
    });
    (status, e)
}

fn listed(thresholds: &[i64]) -> String {
    thresholds
        .iter()
        .map(i64::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// The "Usage alerts" section: the thresholds in effect and where they come from, the form that
/// replaces them, and (when they are the owner's own) the button that drops them.
fn section(
    admin: &AdminSession,
    owner: Owner,
    id: &str,
    current: DomainResult<AlertThresholds>,
    f: &Fields,
    e: &FormError,
) -> Markup {
    let action = owner.action(id);
    let current = match current {
        Ok(t) => t,
        Err(err) => {
            return html! { p class="error" role="alert" { "Thresholds unreadable: " (err.public_message()) } }
        }
    };
    let shown = if current.thresholds.is_empty() {
        "none (no alerts)".to_string()
    } else {
        format!("{} %", listed(&current.thresholds))
    };
    let from = current.source;
    let value = f
        .get("thresholds")
        .cloned()
        .unwrap_or_else(|| listed(&current.thresholds));
    let source = match from {
        ThresholdSource::Default => "the defaults",
        ThresholdSource::Plan => "the plan's",
        ThresholdSource::Application => "this application's own",
    };
    let own = from
        == match owner {
            Owner::Plan => ThresholdSource::Plan,
            Owner::Application => ThresholdSource::Application,
        };
    html! {
        section id="usage-alerts" {
            h2 { "Usage alerts" }
            p {
                "Alerts (an email to the account, a " code { "usage.threshold_reached" }
                " event, a banner in the portal) when usage in a window reaches "
                strong id="thresholds-in-effect" { (shown) } " of a limit: " (source) "."
            }
            (write_form(
                admin,
                &action,
                "Alert thresholds",
                input(
                    "thresholds",
                    &format!("Percent of each limit, comma-separated (empty: no alerts; defaults {})", listed(&DEFAULT_THRESHOLDS)),
                    "text",
                    &value,
                    error_for(e, "thresholds"),
                    false,
                ),
                "Save thresholds",
            ))
            @if own && admin.scope == crate::domain::access::tokens::Scope::Write {
                (post_button(&format!("{action}/reset"), &admin.csrf, "Drop these thresholds"))
            }
        }
    }
}

/// The plan page's section.
pub async fn plan_section(
    s: &AppState,
    admin: &AdminSession,
    plan_id: &str,
    f: &Fields,
    e: &FormError,
) -> Markup {
    let current = alerts::of_plan(&s.pool, plan_id).await;
    section(admin, Owner::Plan, plan_id, current, f, e)
}

async fn application_page(
    s: &AppState,
    admin: &AdminSession,
    id: &str,
    f: &Fields,
    e: &FormError,
    done: Markup,
    status: StatusCode,
) -> Response {
    let Ok(app) = applications::get(&s.pool, id).await else {
        return not_found(admin);
    };
    let current = alerts::of_application(&s.pool, id).await;
    let body = html! {
        (done)
        (general_error(e, &["thresholds"]))
        p {
            "Id " code { (id) } " · account "
            a href={ "/admin/accounts/" (seg(&app.account_id)) } { (app.account_id) }
            " · plan " a href={ "/admin/plans/" (seg(&app.plan_id)) } { (app.plan_id) }
        }
        (section(admin, Owner::Application, id, current, f, e))
    };
    show(admin, &format!("Application {}", app.name), status, body)
}

/// `GET /admin/applications/{id}/alert_thresholds`.
pub async fn application(
    State(s): State<AppState>,
    admin: AdminSession,
    Path(id): Path<String>,
) -> Response {
    application_page(
        &s,
        &admin,
        &id,
        &Fields::new(),
        &None,
        html! {},
        StatusCode::OK,
    )
    .await
}

async fn save(s: &AppState, owner: Owner, id: &str, admin: &AdminSession, f: &Fields) -> Response {
    let saved = match parse(&get(f, "thresholds")) {
        Ok(input) => owner.set(s, &admin.actor(), id, &input).await,
        Err(e) => Err(e),
    };
    match saved {
        Ok(()) => {
            let done = notice("Usage alert thresholds saved.");
            owner
                .page(s, admin, id, &Fields::new(), &None, done, StatusCode::OK)
                .await
        }
        Err(DomainError::NotFound { .. }) => not_found(admin),
        Err(e) => {
            let (status, e) = refusal(e);
            owner.page(s, admin, id, f, &e, html! {}, status).await
        }
    }
}

async fn reset(s: &AppState, owner: Owner, id: &str, admin: &AdminSession) -> Response {
    match owner.reset(s, &admin.actor(), id).await {
        Ok(()) => {
            let done = notice("Thresholds dropped: the ones they replaced apply again.");
            owner
                .page(s, admin, id, &Fields::new(), &None, done, StatusCode::OK)
                .await
        }
        Err(DomainError::NotFound { .. }) => not_found(admin),
        Err(e) => {
            let (status, e) = refusal(e);
            owner
                .page(s, admin, id, &Fields::new(), &e, html! {}, status)
                .await
        }
    }
}

/// `POST /admin/plans/{id}/alert_thresholds`.
pub async fn save_plan(
    State(s): State<AppState>,
    Path(id): Path<String>,
    WriteForm { admin, fields }: WriteForm,
) -> Response {
    save(&s, Owner::Plan, &id, &admin, &fields).await
}

/// `POST /admin/plans/{id}/alert_thresholds/reset`.
pub async fn reset_plan(
    State(s): State<AppState>,
    Path(id): Path<String>,
    WriteForm { admin, .. }: WriteForm,
) -> Response {
    reset(&s, Owner::Plan, &id, &admin).await
}

/// `POST /admin/applications/{id}/alert_thresholds`.
pub async fn save_application(
    State(s): State<AppState>,
    Path(id): Path<String>,
    WriteForm { admin, fields }: WriteForm,
) -> Response {
    save(&s, Owner::Application, &id, &admin, &fields).await
}

/// `POST /admin/applications/{id}/alert_thresholds/reset`.
pub async fn reset_application(
    State(s): State<AppState>,
    Path(id): Path<String>,
    WriteForm { admin, .. }: WriteForm,
) -> Response {
    reset(&s, Owner::Application, &id, &admin).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thresholds_are_read_from_commas_and_spaces() {
        assert_eq!(parse("50, 80 ,90").unwrap().thresholds, vec![50, 80, 90]);
        assert_eq!(parse("100 50").unwrap().thresholds, vec![100, 50]);
        assert!(parse("").unwrap().thresholds.is_empty());
        let e = parse("50, eighty").unwrap_err();
        assert!(
            matches!(&e, DomainError::Invalid { param: Some(p), .. } if p == "thresholds"),
            "{e:?}"
        );
    }
}
