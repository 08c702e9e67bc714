//! The portals' style sheet and scripts, compiled into the binary and served at
//! `/portal/assets/{file}`, so the pages carry no inline script or style and the
//! Content-Security-Policy forbids both (`script-src` and `style-src` without `'unsafe-inline'`).
//! Page-specific values a script needs (a provider's publishable key, a client secret) travel in
//! `data-` attributes of its form, escaped like any other attribute.
//!
//! Each URL carries a digest of the file (`?v=`), so browsers may keep a file for
//! [`ASSET_MAX_AGE_SECS`] without asking again and still load a changed file after an upgrade.

use axum::extract::Path;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};

/// How long a browser keeps an asset (its URL changes with its content).
pub const ASSET_MAX_AGE_SECS: u64 = 7 * 24 * 3600;
/// Hex characters of the content digest in an asset's URL.
const VERSION_HEX_CHARS: usize = 12;

pub struct Asset {
    pub file: &'static str,
    content_type: &'static str,
    body: &'static str,
}

impl Asset {
    /// The URL to put in a page: the path and the content's version.
    pub fn url(&self) -> String {
        let digest = Sha256::digest(self.body.as_bytes());
        let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
        format!(
            "/portal/assets/{}?v={}",
            self.file,
            &hex[..VERSION_HEX_CHARS]
        )
    }
}

const CSS: &str = "text/css; charset=utf-8";
const JS: &str = "text/javascript; charset=utf-8";

pub const STYLE: Asset = Asset {
    file: "portal.css",
    content_type: CSS,
    body: include_str!("assets/portal.css"),
};
/// Sorts `table.sortable` by the clicked column.
pub const SORT: Asset = Asset {
    file: "sort.js",
    content_type: JS,
    body: include_str!("assets/sort.js"),
};
/// Card entry with Stripe Elements.
pub const STRIPE_CARD: Asset = Asset {
    file: "stripe-card.js",
    content_type: JS,
    body: include_str!("assets/stripe-card.js"),
};
/// Card entry with Braintree Hosted Fields.
pub const BRAINTREE_CARD: Asset = Asset {
    file: "braintree-card.js",
    content_type: JS,
    body: include_str!("assets/braintree-card.js"),
};
/// Confirming a payment the bank wants to authenticate (Stripe 3-D Secure).
pub const STRIPE_CONFIRM: Asset = Asset {
    file: "stripe-confirm.js",
    content_type: JS,
    body: include_str!("assets/stripe-confirm.js"),
};

const ALL: &[&Asset] = &[
    &STYLE,
    &SORT,
    &STRIPE_CARD,
    &BRAINTREE_CARD,
    &STRIPE_CONFIRM,
];

/// `GET /portal/assets/{file}`: the asset, cacheable; anything else is 404.
pub async fn serve(Path(file): Path<String>) -> Response {
    match ALL.iter().find(|a| a.file == file) {
        Some(a) => (
            [
                (header::CONTENT_TYPE, a.content_type.to_string()),
                (
                    header::CACHE_CONTROL,
                    format!("public, max-age={ASSET_MAX_AGE_SECS}, immutable"),
                ),
            ],
            a.body,
        )
            .into_response(),
        None => (StatusCode::NOT_FOUND, "no such asset").into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_carry_the_content_version() {
        let url = SORT.url();
        assert!(url.starts_with("/portal/assets/sort.js?v="), "{url}");
        assert_eq!(
            url.len(),
            "/portal/assets/sort.js?v=".len() + VERSION_HEX_CHARS
        );
        assert_ne!(STRIPE_CARD.url(), BRAINTREE_CARD.url());
    }
}
