//! Small pieces every admin portal page shares: reading a form into the API's input type and a
//! refusal back onto the form field it names, path segments, and the "write scope only" form
//! wrapper.

use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::access::{AdminSession, Fields};
use crate::domain::access::tokens::Scope;
use crate::domain::DomainError;
use crate::portal::html::{admin_page, alert, csrf_input, html, Markup};
use crate::web::error::ApiError;

/// An API error as `(param, message)`; `param` is the API's field path (`limits[2].value`).
pub type FormError = Option<(String, String)>;

/// The form field an API error path points at: its last segment (`limits[2].value` -> `value`,
/// `seller.name` stays whole when the form uses dotted names).
fn field_of(param: &str) -> &str {
    param.rsplit('.').next().unwrap_or(param)
}

/// The error message for form field `name`, if the API named it.
pub fn error_for<'a>(e: &'a FormError, name: &str) -> Option<&'a str> {
    e.as_ref()
        .filter(|(p, _)| p == name || field_of(p) == name)
        .map(|(_, m)| m.as_str())
}

/// An alert for an error that names none of `fields` (shown above the form).
pub fn general_error(e: &FormError, fields: &[&str]) -> Markup {
    match e {
        Some((p, m)) if !fields.iter().any(|f| p == f || field_of(p) == *f) => {
            if p.is_empty() {
                alert(m)
            } else {
                alert(&format!("{p}: {m}"))
            }
        }
        _ => html! {},
    }
}

/// Percent-encodes one path segment of a portal link or an in-process API call, so an id taken
/// from a portal URL can never reach another route.
pub fn seg(id: &str) -> String {
    let mut out = String::with_capacity(id.len());
    for b in id.bytes() {
        if b.is_ascii_alphanumeric() || b == b'_' || b == b'-' {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A post form for write sessions; read-only sessions see nothing (the server refuses anyway).
pub fn write_form(
    admin: &AdminSession,
    action: &str,
    title: &str,
    inner: Markup,
    submit: &str,
) -> Markup {
    html! {
        @if admin.scope == Scope::Write {
            form method="post" action=(action) {
                fieldset {
                    legend { (title) }
                    (csrf_input(&admin.csrf))
                    (inner)
                    button type="submit" { (submit) }
                }
            }
        }
    }
}

/// A trimmed form field ("" when absent).
pub fn get(f: &Fields, name: &str) -> String {
    f.get(name)
        .map(|v| v.trim().to_string())
        .unwrap_or_default()
}

/// An admin page with the navigation.
pub fn show(admin: &AdminSession, title: &str, status: StatusCode, body: Markup) -> Response {
    (status, Html(admin_page(title, Some(&admin.csrf), body))).into_response()
}

/// A form's fields, gathered as the JSON body an admin would send the API, read into the API's
/// input type by the API's own reader: a field of the wrong shape (`"trial_days": "ten"`) is
/// refused with the words, field path and 400 the API answers.
pub fn parsed<T: DeserializeOwned>(body: &Value) -> Result<T, DomainError> {
    crate::web::extract::parse(body.to_string().as_bytes()).map_err(|e| match e {
        ApiError::BadRequest {
            code,
            message,
            param,
        } => DomainError::Malformed {
            code,
            message,
            param,
        },
        other => DomainError::Internal(format!("reading a form: {other:?}")),
    })
}

/// A domain refusal as a form shows it: the status the API answers it with and `(param,
/// message)` as the API's error object carries them (`param` empty when it names no field).
pub fn refused(e: DomainError) -> (StatusCode, FormError) {
    let param = match &e {
        DomainError::Malformed { param, .. }
        | DomainError::Conflict { param, .. }
        | DomainError::Invalid { param, .. } => param.clone().unwrap_or_default(),
        DomainError::NotFound { .. } => "id".to_string(),
        _ => String::new(),
    };
    let message = e.to_string();
    // The one mapping of domain errors to statuses (http/error.rs); it also logs internal errors.
    let status = e.into_response().status();
    (status, Some((param, message)))
}

pub fn not_found(admin: &AdminSession) -> Response {
    show(
        admin,
        "Not found",
        StatusCode::NOT_FOUND,
        html! { p { "There is no such object." } },
    )
}

/// A text cell linking to `href`.
pub fn link(href: &str, text: &str) -> Markup {
    html! { a href=(href) { (text) } }
}

/// `<select>` options whose value is their label.
pub fn options(values: &[&str]) -> Vec<(String, String)> {
    values
        .iter()
        .map(|v| (v.to_string(), v.to_string()))
        .collect()
}

/// A JSON value shown as text (strings without quotes, null as empty).
pub fn text(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Null => String::new(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_land_on_their_field() {
        let e: FormError = Some(("limits[1].value".into(), "too big".into()));
        assert_eq!(error_for(&e, "value"), Some("too big"));
        assert_eq!(error_for(&e, "metric"), None);
        assert_eq!(general_error(&e, &["value"]).into_string(), "");
        assert!(general_error(&e, &["metric"])
            .into_string()
            .contains("too big"));
    }

    #[test]
    fn segments_cannot_escape() {
        assert_eq!(seg("plan_01AB-x"), "plan_01AB-x");
        assert_eq!(seg("../tokens?x=1"), "%2E%2E%2Ftokens%3Fx%3D1");
    }
}
