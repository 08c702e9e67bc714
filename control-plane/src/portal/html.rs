//! HTML for the portal: escaping and the page layout. Pages are plain server-rendered HTML with
//! forms that work without JavaScript; every form carries the CSRF token.

/// Escapes text for HTML element content and attribute values.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

const STYLE: &str = "body{font:16px/1.5 system-ui,sans-serif;max-width:60rem;margin:0 auto;padding:1rem;color:#1b1b1b}\
nav{display:flex;flex-wrap:wrap;gap:.5rem 1rem;align-items:center;border-bottom:1px solid #ccc;padding-bottom:.5rem;margin-bottom:1rem}\
nav form{margin-left:auto}label{display:block;margin-top:.75rem;font-weight:600}\
input,select{font:inherit;padding:.35rem;min-width:18rem}button{font:inherit;padding:.4rem 1rem;margin-top:1rem}\
.error{color:#a40000;font-weight:normal;display:block}.notice{background:#eef7ee;border:1px solid #9c9;padding:.75rem}\
table{border-collapse:collapse;width:100%}th,td{text-align:left;padding:.4rem;border-bottom:1px solid #ddd}code{word-break:break-all}\
form.inline{display:inline}form.inline button{margin:0 .25rem 0 0;padding:.2rem .6rem}textarea{font:inherit;width:100%}\
table.sortable th{cursor:pointer}th[aria-sort=ascending]::after{content:\" \\25B2\"}th[aria-sort=descending]::after{content:\" \\25BC\"}\
section{margin-top:2rem}fieldset{border:1px solid #ccc;margin-top:1rem}fieldset>button{display:block}.empty{color:#555}";

/// Sorts `table.sortable` by the clicked (or Enter-pressed) column; numbers compare as numbers.
const SORT_SCRIPT: &str = "document.querySelectorAll('table.sortable th').forEach(function(th,i){th.tabIndex=0;\
var go=function(){var t=th.closest('table'),b=t.tBodies[0],asc=th.getAttribute('aria-sort')!=='ascending';\
t.querySelectorAll('th').forEach(function(h){h.removeAttribute('aria-sort')});th.setAttribute('aria-sort',asc?'ascending':'descending');\
var v=function(r){return r.cells[i]?r.cells[i].textContent.trim():''};\
Array.prototype.slice.call(b.rows).sort(function(a,c){var x=v(a),y=v(c),nx=parseFloat(x),ny=parseFloat(y);\
var r=(!isNaN(nx)&&!isNaN(ny)&&/^-?[0-9.]/.test(x)&&/^-?[0-9.]/.test(y))?nx-ny:x.localeCompare(y);return asc?r:-r})\
.forEach(function(r){b.appendChild(r)})};th.addEventListener('click',go);\
th.addEventListener('keydown',function(e){if(e.key==='Enter')go()})});";

/// A whole page. `csrf` (when signed in) makes the navigation's sign-out form.
pub fn page(title: &str, signed_in_csrf: Option<&str>, body: &str) -> String {
    let nav = match signed_in_csrf {
        Some(csrf) => format!(
            "<nav aria-label=\"Portal\"><a href=\"/portal/applications\">Applications</a><a href=\"/portal/billing\">Billing and usage</a>\
             <form method=\"post\" action=\"/portal/sign_out\"><input type=\"hidden\" name=\"csrf\" value=\"{}\">\
             <button type=\"submit\">Sign out</button></form></nav>",
            esc(csrf)
        ),
        None => "<nav aria-label=\"Portal\"><a href=\"/portal/sign_in\">Sign in</a><a href=\"/portal/sign_up\">Sign up</a></nav>".to_string(),
    };
    format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">\
         <title>{} · Tollgate</title><style>{STYLE}</style></head><body>{nav}<main><h1>{}</h1>{body}</main><script>{SORT_SCRIPT}</script></body></html>",
        esc(title),
        esc(title)
    )
}

/// An admin portal page; `csrf` (when signed in) makes the navigation.
pub fn admin_page(title: &str, signed_in_csrf: Option<&str>, body: &str) -> String {
    let nav = match signed_in_csrf {
        Some(csrf) => format!(
            "<nav aria-label=\"Admin\"><a href=\"/admin\">Dashboard</a><a href=\"/admin/services\">Services</a><a href=\"/admin/plans\">Plans</a>\
             <a href=\"/admin/accounts\">Accounts</a><a href=\"/admin/invoices\">Invoices</a><a href=\"/admin/billing\">Billing settings</a>\
             <a href=\"/admin/gateway\">Payment gateway</a><a href=\"/admin/tokens\">Tokens</a>\
             <form method=\"post\" action=\"/admin/sign_out\"><input type=\"hidden\" name=\"csrf\" value=\"{}\">\
             <button type=\"submit\">Sign out</button></form></nav>",
            esc(csrf)
        ),
        None => String::new(),
    };
    format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">\
         <title>{} · Tollgate admin</title><style>{STYLE}</style></head><body>{nav}<main><h1>{}</h1>{body}</main><script>{SORT_SCRIPT}</script></body></html>",
        esc(title),
        esc(title)
    )
}

/// A required labelled input with its error (if any) next to it, linked for screen readers.
pub fn field(name: &str, label: &str, kind: &str, value: &str, error: Option<&str>) -> String {
    input(name, label, kind, value, error, true)
}

/// The error text next to a field's label (empty when there is none).
fn error_span(name: &str, error: Option<&str>) -> String {
    error
        .map(|e| {
            format!(
                "<span class=\"error\" id=\"{name}-error\">{}</span>",
                esc(e)
            )
        })
        .unwrap_or_default()
}

/// A labelled `<select>`: `options` are (value, label).
pub fn select(
    name: &str,
    label: &str,
    options: &[(String, String)],
    current: &str,
    error: Option<&str>,
) -> String {
    let opts: String = options
        .iter()
        .map(|(v, l)| {
            format!(
                "<option value=\"{}\"{}>{}</option>",
                esc(v),
                if v == current { " selected" } else { "" },
                esc(l)
            )
        })
        .collect();
    format!(
        "<label for=\"{name}\">{}{}</label><select id=\"{name}\" name=\"{name}\">{opts}</select>",
        esc(label),
        error_span(name, error)
    )
}

/// The hidden CSRF field every form carries.
pub fn csrf_input(csrf: &str) -> String {
    format!(
        "<input type=\"hidden\" name=\"csrf\" value=\"{}\">",
        esc(csrf)
    )
}

/// A one-button form posting to `action` (suspend, revoke, delete ...).
pub fn post_button(action: &str, csrf: &str, label: &str) -> String {
    format!(
        "<form method=\"post\" action=\"{}\" class=\"inline\">{}<button type=\"submit\">{}</button></form>",
        esc(action),
        csrf_input(csrf),
        esc(label)
    )
}

/// A table whose columns sort on click (progressive: without JavaScript it is a plain table).
/// Cells are HTML the caller escaped.
pub fn table(label: &str, headers: &[&str], rows: &[Vec<String>]) -> String {
    if rows.is_empty() {
        return format!("<p class=\"empty\">No {} yet.</p>", esc(label));
    }
    let head: String = headers
        .iter()
        .map(|h| format!("<th scope=\"col\">{}</th>", esc(h)))
        .collect();
    let body: String = rows
        .iter()
        .map(|r| format!("<tr><td>{}</td></tr>", r.join("</td><td>")))
        .collect();
    format!(
        "<table class=\"sortable\" aria-label=\"{}\"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>",
        esc(label)
    )
}

/// A status line after an action (`role=status`), or an error (`role=alert`).
pub fn notice(text: &str) -> String {
    format!("<p class=\"notice\" role=\"status\">{}</p>", esc(text))
}

pub fn alert(text: &str) -> String {
    format!("<p class=\"error\" role=\"alert\">{}</p>", esc(text))
}

/// A labelled input; `required` adds the attribute (the server validates either way).
pub fn input(
    name: &str,
    label: &str,
    kind: &str,
    value: &str,
    error: Option<&str>,
    required: bool,
) -> String {
    let err = error_span(name, error);
    let described = if error.is_some() {
        format!(" aria-invalid=\"true\" aria-describedby=\"{name}-error\"")
    } else {
        String::new()
    };
    format!(
        "<label for=\"{name}\">{}{err}</label><input id=\"{name}\" name=\"{name}\" type=\"{kind}\" value=\"{}\"{described}{}>",
        esc(label),
        esc(value),
        if required { " required" } else { "" }
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes() {
        assert_eq!(
            esc("<a href=\"x\">'&'</a>"),
            "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;"
        );
        assert!(field("email", "Email", "email", "\"><script>", Some("bad"))
            .contains("&quot;&gt;&lt;script&gt;"));
    }
}
