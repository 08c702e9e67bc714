//! Cursor pagination: `?limit=N&starting_after=<id>`. Ids are time-ordered, so "after" is "newer".

use serde::Deserialize;

use crate::web::error::ApiError;

pub use crate::domain::page::{page, Page, PageRequest, DEFAULT_PAGE, MAX_PAGE};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListParams {
    pub limit: Option<i64>,
    pub starting_after: Option<String>,
}

impl ListParams {
    pub fn limit(&self) -> Result<i64, ApiError> {
        match self.limit {
            None => Ok(DEFAULT_PAGE),
            Some(n) if (1..=MAX_PAGE).contains(&n) => Ok(n),
            Some(_) => Err(ApiError::bad_request(
                Some("limit".into()),
                "invalid_limit",
                format!("limit must be between 1 and {MAX_PAGE}"),
            )),
        }
    }

    /// The cursor, or "" (smaller than every id) for the first page.
    pub fn after(&self) -> &str {
        self.starting_after.as_deref().unwrap_or("")
    }

    /// The page the domain is asked for (the limit checked).
    pub fn request(&self) -> Result<PageRequest, ApiError> {
        Ok(PageRequest {
            limit: self.limit()?,
            after: self.after().to_string(),
        })
    }
}
