//! Cursor pagination over time-ordered ids: a page holds at most `limit` items and the cursor of
//! the next one. The HTTP layer parses `?limit=N&starting_after=<id>` into a [`PageRequest`].

use serde::Serialize;

/// Page size when none is asked for, and the most one page may hold.
pub const DEFAULT_PAGE: i64 = 20;
pub const MAX_PAGE: i64 = 100;

/// Which page to read: at most `limit` items with ids greater than `after` ("" = from the start).
#[derive(Clone, Debug)]
pub struct PageRequest {
    pub limit: i64,
    pub after: String,
}

impl Default for PageRequest {
    fn default() -> Self {
        PageRequest {
            limit: DEFAULT_PAGE,
            after: String::new(),
        }
    }
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Page<T> {
    /// Always `"list"`.
    pub object: &'static str,
    pub data: Vec<T>,
    pub has_more: bool,
    /// Pass as `starting_after` to get the next page.
    pub next_cursor: Option<String>,
}

impl<T> Page<T> {
    /// The same page with its items replaced (rendered elsewhere, e.g. with batched queries).
    pub fn with_data<U>(self, data: Vec<U>) -> Page<U> {
        Page {
            object: self.object,
            data,
            has_more: self.has_more,
            next_cursor: self.next_cursor,
        }
    }

    /// The same page with each item converted; the first conversion that fails is the answer.
    pub fn try_map<U, E>(self, f: impl Fn(&T) -> Result<U, E>) -> Result<Page<U>, E> {
        let data = self.data.iter().map(f).collect::<Result<_, E>>()?;
        Ok(self.with_data(data))
    }

    pub fn map<U>(self, f: impl Fn(&T) -> U) -> Page<U> {
        Page {
            object: self.object,
            data: self.data.iter().map(f).collect(),
            has_more: self.has_more,
            next_cursor: self.next_cursor,
        }
    }
}

/// Builds a page from `limit + 1` rows fetched in id order.
pub fn page<T>(mut rows: Vec<T>, limit: i64, id: impl Fn(&T) -> &str) -> Page<T> {
    let has_more = rows.len() as i64 > limit;
    rows.truncate(limit as usize);
    let next_cursor = if has_more {
        rows.last().map(|r| id(r).to_string())
    } else {
        None
    };
    Page {
        object: "list",
        data: rows,
        has_more,
        next_cursor,
    }
}
