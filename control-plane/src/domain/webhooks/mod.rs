//! Outbound webhooks (docs/webhooks.md), per the Standard Webhooks specification.
//!
//! - [`events`]: the catalogue (wire names and payloads).
//! - [`endpoints`]: where events go (admin's or an account's), secrets sealed at rest.
//! - [`outbox`]: [`outbox::enqueue`] / [`outbox::enqueue_many`], called by the single writer of
//!   each fact inside its own transaction; the delivery log and replay.
//! - [`deliver`]: the sender (claims with leases, signed POSTs, retries, disabling).
//! - [`signing`]: signatures, secrets and the retry schedule (pure).

pub mod deliver;
pub mod endpoints;
pub mod events;
pub mod outbox;
pub mod signing;

pub use events::Event;
pub use outbox::{enqueue, enqueue_many};
