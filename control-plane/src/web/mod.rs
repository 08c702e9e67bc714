//! The web plumbing the JSON APIs (`http/`) and the portals (`portal/`) share: the one mapping of
//! a [`crate::domain::DomainError`] to an HTTP status and the JSON error object ([`error`]), the
//! JSON body reader whose errors name the field ([`extract`]), an invoice PDF as an answer ([`pdf`]), an export as a streamed CSV answer ([`csv`]), and the client's address as the
//! abuse limits see it ([`client_ip`]). Routes and handlers live in `http/` and `portal/`.

pub mod client_ip;
pub mod csv;
pub mod error;
pub mod extract;
pub mod pdf;

/// Largest request body accepted by any route (a plan with hundreds of rules fits easily).
pub const MAX_BODY_BYTES: usize = 1024 * 1024;
