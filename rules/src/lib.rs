//! The rules Tollgate's control plane and gateway filter both apply.
//!
//! The control plane refuses at write time what a gateway would refuse at load time, and counts
//! usage in the very windows a gateway enforces, so both sides run this one implementation:
//! - [`mapping`]: the mapping-rule pattern syntax, its parser and matcher, and the path and query
//!   normalization requests are matched on;
//! - [`periods`]: calendar-aligned UTC windows of limit periods (and the civil-date arithmetic
//!   billing uses);
//! - [`names`]: the metric-name rule and the per-application key bound.
//!
//! Why a crate of its own and not `tollgate-protocol`: the protocol crate is the wire contract
//! (serde types and the binary codec, which a third-party producer could re-implement); these are
//! the semantics both sides give that contract, with the filter's hot-path matcher among them.
//! Why not the filter crate: the control plane must not link the proxy-wasm filter to validate a
//! pattern. No dependency but the protocol types; nothing here touches a host.

pub mod error;
pub mod mapping;
pub mod names;
pub mod periods;
