//! The developer portal's pages, one file per page group: signing up and in (`access`), the
//! account's applications (`applications`), billing and payments (`billing`) and the card pages
//! that run the payment provider's script (`cards`), and the account's webhook endpoints
//! (`webhooks`).

pub mod access;
pub mod applications;
pub mod billing;
pub mod cards;
pub mod webhooks;
