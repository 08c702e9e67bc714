//! An invoice's PDF as an HTTP answer, for the admin API, the developer API and the developer
//! portal alike (each checks first that the caller may see the invoice).

use axum::http::header;
use axum::response::{IntoResponse, Response};

use super::error::ApiResult;
use crate::domain::billing::pdf;
use crate::store::Pool;

/// `application/pdf`, shown inline, named after the invoice's number.
pub async fn invoice(pool: &Pool, id: &str) -> ApiResult<Response> {
    let (stem, bytes) = pdf::invoice_pdf(pool, id).await?;
    Ok((
        [
            (header::CONTENT_TYPE, "application/pdf".to_string()),
            (
                header::CONTENT_DISPOSITION,
                format!("inline; filename=\"invoice-{stem}.pdf\""),
            ),
        ],
        bytes,
    )
        .into_response())
}
