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
nav{display:flex;gap:1rem;align-items:center;border-bottom:1px solid #ccc;padding-bottom:.5rem;margin-bottom:1rem}\
nav form{margin-left:auto}label{display:block;margin-top:.75rem;font-weight:600}\
input,select{font:inherit;padding:.35rem;min-width:18rem}button{font:inherit;padding:.4rem 1rem;margin-top:1rem}\
.error{color:#a40000;font-weight:normal;display:block}.notice{background:#eef7ee;border:1px solid #9c9;padding:.75rem}\
table{border-collapse:collapse;width:100%}th,td{text-align:left;padding:.4rem;border-bottom:1px solid #ddd}code{word-break:break-all}";

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
         <title>{} · Tollgate</title><style>{STYLE}</style></head><body>{nav}<main><h1>{}</h1>{body}</main></body></html>",
        esc(title),
        esc(title)
    )
}

/// An admin portal page; `csrf` (when signed in) makes the navigation.
pub fn admin_page(title: &str, signed_in_csrf: Option<&str>, body: &str) -> String {
    let nav = match signed_in_csrf {
        Some(csrf) => format!(
            "<nav aria-label=\"Admin\"><a href=\"/admin\">Dashboard</a><a href=\"/admin/invoices\">Invoices</a><a href=\"/admin/billing\">Billing settings</a>\
             <form method=\"post\" action=\"/admin/sign_out\"><input type=\"hidden\" name=\"csrf\" value=\"{}\">\
             <button type=\"submit\">Sign out</button></form></nav>",
            esc(csrf)
        ),
        None => String::new(),
    };
    format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">\
         <title>{} · Tollgate admin</title><style>{STYLE}</style></head><body>{nav}<main><h1>{}</h1>{body}</main></body></html>",
        esc(title),
        esc(title)
    )
}

/// A labelled input with its error (if any) next to it, linked for screen readers.
pub fn field(name: &str, label: &str, kind: &str, value: &str, error: Option<&str>) -> String {
    let err = error
        .map(|e| {
            format!(
                "<span class=\"error\" id=\"{name}-error\">{}</span>",
                esc(e)
            )
        })
        .unwrap_or_default();
    let described = if error.is_some() {
        format!(" aria-invalid=\"true\" aria-describedby=\"{name}-error\"")
    } else {
        String::new()
    };
    format!(
        "<label for=\"{name}\">{}{err}</label><input id=\"{name}\" name=\"{name}\" type=\"{kind}\" value=\"{}\"{described} required>",
        esc(label),
        esc(value)
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
