//! Billing: settings, contracts, rating, invoices, billing runs, PDFs and the email outbox.
//!
//! The pure parts (what is owed and how it is rounded) are [`lines`], [`rating`], [`totals`] and
//! [`currency`]; the rest reads and writes the database around them.

pub mod calendar;
pub mod contracts;
pub mod currency;
pub mod invoices;
pub mod lines;
pub mod outbox;
pub mod pdf;
pub mod preview;
pub mod rating;
pub mod run;
pub mod scheduler;
pub mod settings;
pub mod totals;
