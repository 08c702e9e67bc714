//! HTML for both portals: the page layouts and the small pieces every page shares (labelled inputs
//! with their errors, selects, CSRF fields, one-button forms, sortable tables, notices). The pages
//! themselves are in `developer/` and `admin/`, one file per page group.
//!
//! Pages are written with [maud]'s `html!` templates. Every value interpolated into a template is
//! escaped when the page is rendered — text and attribute values alike — unless it is already
//! [`Markup`], which only a template produces (`maud::PreEscaped`, which would wrap raw text, is
//! used nowhere in the portals). So escaping
//! cannot be forgotten: a `&str` from the database or a form always comes out as text.
//!
//! Why maud rather than askama or minijinja: these pages are built from small shared pieces (a
//! field with its error, a table of cells, a form wrapper) that take other fragments as arguments.
//! In maud a fragment is a typed `Markup` value, so composing pieces needs no "mark as safe" step;
//! in askama or minijinja every fragment handed to another template must pass through `|safe`,
//! which is exactly the manual step that can go wrong. maud is also checked at compile time (a
//! misspelled variable or an unclosed element does not build) and needs no template files to be
//! found at run time.
//!
//! The pages carry no inline script or style (the Content-Security-Policy forbids both): the style
//! sheet and scripts are [`assets`](super::assets) served by the control plane.

use maud::DOCTYPE;
pub use maud::{html, Markup};

use super::assets;

/// The whole document around a page's navigation and body.
fn document(title: &str, site: &str, nav: Markup, body: Markup) -> String {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width,initial-scale=1";
                title { (title) " · " (site) }
                link rel="stylesheet" href=(assets::STYLE.url());
            }
            body {
                (nav)
                main { h1 { (title) } (body) }
                script src=(assets::SORT.url()) {}
            }
        }
    }
    .into_string()
}

/// A developer portal page. `csrf` (when signed in) makes the navigation's sign-out form.
pub fn page(title: &str, signed_in_csrf: Option<&str>, body: Markup) -> String {
    let nav = html! {
        nav aria-label="Portal" {
            @if let Some(csrf) = signed_in_csrf {
                a href="/portal/applications" { "Applications" }
                a href="/portal/billing" { "Billing and usage" }
                a href="/portal/webhooks" { "Webhooks" }
                form method="post" action="/portal/sign_out" {
                    (csrf_input(csrf))
                    button type="submit" { "Sign out" }
                }
            } @else {
                a href="/portal/sign_in" { "Sign in" }
                a href="/portal/sign_up" { "Sign up" }
            }
        }
    };
    document(title, "Tollgate", nav, body)
}

/// An admin portal page; `csrf` (when signed in) makes the navigation.
pub fn admin_page(title: &str, signed_in_csrf: Option<&str>, body: Markup) -> String {
    let nav = html! {
        @if let Some(csrf) = signed_in_csrf {
            nav aria-label="Admin" {
                a href="/admin" { "Dashboard" }
                a href="/admin/services" { "Services" }
                a href="/admin/plans" { "Plans" }
                a href="/admin/accounts" { "Accounts" }
                a href="/admin/invoices" { "Invoices" }
                a href="/admin/billing" { "Billing settings" }
                a href="/admin/gateway" { "Payment gateway" }
                a href="/admin/tokens" { "Tokens" }
                a href="/admin/webhooks" { "Webhooks" }
                form method="post" action="/admin/sign_out" {
                    (csrf_input(csrf))
                    button type="submit" { "Sign out" }
                }
            }
        }
    };
    document(title, "Tollgate admin", nav, body)
}

/// A required labelled input with its error (if any) next to it, linked for screen readers.
pub fn field(name: &str, label: &str, kind: &str, value: &str, error: Option<&str>) -> Markup {
    input(name, label, kind, value, error, true)
}

/// The error text next to a field's label (nothing when there is none).
pub fn error_span(name: &str, error: Option<&str>) -> Markup {
    html! {
        @if let Some(e) = error {
            span class="error" id={ (name) "-error" } { (e) }
        }
    }
}

/// A labelled input; `required` adds the attribute (the server validates either way).
pub fn input(
    name: &str,
    label: &str,
    kind: &str,
    value: &str,
    error: Option<&str>,
    required: bool,
) -> Markup {
    html! {
        label for=(name) { (label) (error_span(name, error)) }
        input id=(name) name=(name) type=(kind) value=(value)
            aria-invalid=[error.map(|_| "true")]
            aria-describedby=[error.map(|_| format!("{name}-error"))]
            required[required];
    }
}

/// A labelled `<select>`: `options` are (value, label).
pub fn select(
    name: &str,
    label: &str,
    options: &[(String, String)],
    current: &str,
    error: Option<&str>,
) -> Markup {
    html! {
        label for=(name) { (label) (error_span(name, error)) }
        select id=(name) name=(name) {
            @for (v, l) in options {
                option value=(v) selected[v == current] { (l) }
            }
        }
    }
}

/// The hidden CSRF field every form carries.
pub fn csrf_input(csrf: &str) -> Markup {
    html! { input type="hidden" name="csrf" value=(csrf); }
}

/// A one-button form posting to `action` (suspend, revoke, delete ...).
pub fn post_button(action: &str, csrf: &str, label: &str) -> Markup {
    html! {
        form method="post" action=(action) class="inline" {
            (csrf_input(csrf))
            button type="submit" { (label) }
        }
    }
}

/// A one-button form shown inline in a table cell, without the compact button style of
/// [`post_button`] (the developer portal's card and invoice buttons).
pub fn plain_post_button(action: &str, csrf: &str, label: &str) -> Markup {
    html! {
        form method="post" action=(action) class="plain" {
            (csrf_input(csrf))
            button type="submit" { (label) }
        }
    }
}

/// A table whose columns sort on click (progressive: without JavaScript it is a plain table).
pub fn table(label: &str, headers: &[&str], rows: &[Vec<Markup>]) -> Markup {
    html! {
        @if rows.is_empty() {
            p class="empty" { "No " (label) " yet." }
        } @else {
            table class="sortable" aria-label=(label) {
                thead { tr { @for h in headers { th scope="col" { (h) } } } }
                tbody {
                    @for r in rows {
                        tr { @for cell in r { td { (cell) } } }
                    }
                }
            }
        }
    }
}

/// A status line after an action (`role=status`).
pub fn notice(text: &str) -> Markup {
    html! { p class="notice" role="status" { (text) } }
}

/// An error line above a form or table (`role=alert`).
pub fn alert(text: &str) -> Markup {
    html! { p class="error" role="alert" { (text) } }
}

/// A secret or key shown once, right after it was made, with the sentence `before` it.
pub fn shown_once(before: &str, code_id: &str, secret: &str) -> Markup {
    html! {
        div class="notice" role="status" {
            p { (before) }
            p { code id=(code_id) { (secret) } }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_escaped_in_text_and_attributes() {
        let f = field(
            "email",
            "<b>Email</b>",
            "email",
            "\"><script>",
            Some("<i>bad</i>"),
        )
        .into_string();
        assert!(f.contains("value=\"&quot;&gt;&lt;script&gt;\""), "{f}");
        assert!(f.contains("&lt;b&gt;Email&lt;/b&gt;") && f.contains("&lt;i&gt;bad&lt;/i&gt;"));
        assert!(f.contains("aria-invalid=\"true\" aria-describedby=\"email-error\" required"));
        let page = page(
            "<script>alert(1)</script>",
            Some("\"onmouseover=x"),
            html! {},
        );
        assert!(!page.contains("<script>alert") && page.contains("&lt;script&gt;alert(1)"));
        assert!(page.contains("value=\"&quot;onmouseover=x\""));
    }

    #[test]
    fn the_layout_has_no_inline_script_or_style() {
        let page = admin_page("Dashboard", Some("t"), html! { p { "x" } });
        assert!(!page.contains("<style") && !page.contains(" style="));
        assert!(page.contains("<script src=\"/portal/assets/sort.js?v="));
        assert!(!page.contains("<script>"));
    }

    #[test]
    fn tables_and_selects() {
        let t = table("things", &["A"], &[vec![html! { "<x>" }]]).into_string();
        assert_eq!(
            t,
            "<table class=\"sortable\" aria-label=\"things\"><thead><tr><th scope=\"col\">A</th></tr></thead><tbody><tr><td>&lt;x&gt;</td></tr></tbody></table>"
        );
        assert_eq!(
            table("things", &["A"], &[]).into_string(),
            "<p class=\"empty\">No things yet.</p>"
        );
        let s = select(
            "m",
            "Mode",
            &[("a".into(), "A".into()), ("b".into(), "B".into())],
            "b",
            None,
        )
        .into_string();
        assert!(s.contains("<option value=\"b\" selected>B</option>"), "{s}");
    }
}
