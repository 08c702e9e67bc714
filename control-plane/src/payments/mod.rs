//! Payments: the payment gateway's settings, and (with the providers) cards and charging.

pub mod config;
