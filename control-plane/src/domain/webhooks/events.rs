//! The event catalogue: every event Tollgate sends, its wire name and its payload type.
//!
//! One line of [`catalogue!`] per event makes both the [`Event`] (what the writer of a fact
//! enqueues, with its data) and the [`EventType`] (what an endpoint subscribes to, by name).
//! Adding `usage.threshold_reached`, `wallet.low_balance` or `wallet.depleted` is one line each
//! here plus its data struct (with its [`EventData`] impl naming the account), then an
//! [`super::enqueue`] call in the transaction that makes the fact.
//!
//! The body sent is `{"type": "<name>", "timestamp": "<RFC 3339 UTC>", "data": {...}}`, the shape
//! the Standard Webhooks specification recommends; `data` is the variant's payload.

use serde::Serialize;
use serde_json::json;

use crate::domain::billing::calendar::{day_of, format_date};
use crate::domain::billing::currency::Currency;
use crate::domain::billing::invoices::{Invoice, InvoiceState, IssuePlan};

macro_rules! catalogue {
    ($($(#[$doc:meta])* $variant:ident($data:ty) = $name:literal),+ $(,)?) => {
        /// An event with its data, as the writer of the fact enqueues it.
        #[derive(Clone, Debug, PartialEq)]
        pub enum Event {
            $($(#[$doc])* $variant($data),)+
        }

        /// The kinds of [`Event`], by wire name.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum EventType {
            $($(#[$doc])* $variant,)+
        }

        impl EventType {
            /// Every event type, in catalogue order.
            pub const ALL: &'static [EventType] = &[$(EventType::$variant,)+];

            /// The wire name (`invoice.paid`).
            pub fn as_str(self) -> &'static str {
                match self {
                    $(EventType::$variant => $name,)+
                }
            }
        }

        impl Event {
            pub fn event_type(&self) -> EventType {
                match self {
                    $(Event::$variant(_) => EventType::$variant,)+
                }
            }

            /// The payload as JSON (`data` of the body).
            fn data_json(&self) -> serde_json::Value {
                match self {
                    $(Event::$variant(d) => serde_json::to_value(d).unwrap_or_default(),)+
                }
            }

            /// The account the event is about: its endpoints receive it (the admin's receive
            /// all). `None`: no account's (delivered only where it is addressed).
            pub fn account_id(&self) -> Option<&str> {
                match self {
                    $(Event::$variant(d) => EventData::account_id(d),)+
                }
            }
        }
    };
}

catalogue! {
    /// An invoice was issued (numbered, frozen, awaiting payment; or paid at once when zero).
    InvoiceIssued(InvoiceData) = "invoice.issued",
    /// An invoice was paid (a charge succeeded, an admin marked it paid, or it was zero).
    InvoicePaid(InvoiceData) = "invoice.paid",
    /// A charge of an invoice failed; `data.failure` says why.
    InvoicePaymentFailed(InvoiceData) = "invoice.payment_failed",
    /// The last attempt dunning makes failed: the invoice is `failed` (and, with
    /// `suspend_on_failure`, the account's applications are suspended for non-payment).
    InvoiceOverdue(InvoiceData) = "invoice.overdue",
    /// An application was created (with its first key, which also sends `key.created`).
    ApplicationCreated(ApplicationData) = "application.created",
    /// An application went from live to suspended (by an admin or for non-payment).
    ApplicationSuspended(ApplicationData) = "application.suspended",
    /// A suspended application is live again.
    ApplicationResumed(ApplicationData) = "application.resumed",
    /// An API key was made for an application.
    KeyCreated(KeyData) = "key.created",
    /// An API key was replaced by a new one (the old one works until `replaced_key_expires_at`).
    KeyRotated(KeyData) = "key.rotated",
    /// An API key was revoked (refused from the gateways' next snapshot on).
    KeyRevoked(KeyData) = "key.revoked",
    /// An application moved to another plan (or to its own customized copy).
    PlanChanged(PlanChangedData) = "plan.changed",
    /// An application's usage in the current window of a limit reached a threshold (a percentage
    /// of the limit); once per application, metric, period, window and threshold.
    UsageThresholdReached(UsageThresholdData) = "usage.threshold_reached",
    /// `POST …/webhook_endpoints/{id}/test`: sent to that endpoint only, whatever it subscribes to.
    WebhookTest(TestData) = "webhook.test",
}

impl EventType {
    /// The type named `s`, if any.
    pub fn parse(s: &str) -> Option<EventType> {
        EventType::ALL.iter().copied().find(|t| t.as_str() == s)
    }

    /// Whether an endpoint may subscribe to it (`webhook.test` goes only where it is asked for).
    pub fn subscribable(self) -> bool {
        self != EventType::WebhookTest
    }

    /// The names an endpoint may subscribe to, for error messages and the documentation.
    pub fn subscribable_names() -> Vec<&'static str> {
        EventType::ALL
            .iter()
            .filter(|t| t.subscribable())
            .map(|t| t.as_str())
            .collect()
    }
}

impl Event {
    /// The body sent: `{"type", "timestamp", "data"}` (`at`: Unix seconds of the event).
    pub fn body(&self, at: i64) -> String {
        json!({
            "type": self.event_type().as_str(),
            "timestamp": rfc3339(at),
            "data": self.data_json(),
        })
        .to_string()
    }
}

/// What every payload type says for routing: the account it is about.
pub trait EventData {
    fn account_id(&self) -> Option<&str>;
}

impl EventData for InvoiceData {
    fn account_id(&self) -> Option<&str> {
        Some(&self.account_id)
    }
}

impl EventData for ApplicationData {
    fn account_id(&self) -> Option<&str> {
        Some(&self.account_id)
    }
}

impl EventData for KeyData {
    fn account_id(&self) -> Option<&str> {
        Some(&self.account_id)
    }
}

impl EventData for PlanChangedData {
    fn account_id(&self) -> Option<&str> {
        Some(&self.account_id)
    }
}

impl EventData for UsageThresholdData {
    fn account_id(&self) -> Option<&str> {
        Some(&self.account_id)
    }
}

/// `webhook.test` is addressed to one endpoint, no account's.
impl EventData for TestData {
    fn account_id(&self) -> Option<&str> {
        None
    }
}

/// `2026-12-06T20:31:05Z`.
pub fn rfc3339(unix: i64) -> String {
    let secs = unix.rem_euclid(86_400);
    format!(
        "{}T{:02}:{:02}:{:02}Z",
        format_date(day_of(unix)),
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

/// Why a charge failed (`invoice.payment_failed`, `invoice.overdue`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct PaymentFailure {
    /// The provider's code (`card_declined`), when it gave one.
    pub code: Option<String>,
    pub message: Option<String>,
    /// Failed attempts so far on this invoice.
    pub failed_attempts: i64,
    /// The date (`YYYY-MM-DD`) of the next attempt; `null` after the last.
    pub next_attempt_on: Option<String>,
}

/// `data` of the `invoice.*` events.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct InvoiceData {
    pub invoice_id: String,
    pub account_id: String,
    /// `YYYY-MM-XXXXXXXX` (or yearly); set once issued.
    pub number: Option<String>,
    /// The invoice's state after the change (`pending`, `paid`, `unpaid`, `failed`).
    pub state: String,
    /// ISO 4217.
    pub currency: String,
    /// A decimal string in the currency's minor unit (`"30.00"`), never a float.
    pub total: String,
    /// `YYYY-MM-DD`.
    pub due_on: Option<String>,
    /// On `invoice.payment_failed` and `invoice.overdue`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failure: Option<PaymentFailure>,
}

impl InvoiceData {
    /// The data of invoice `inv` as it is now, its state replaced by `state` (the caller has just
    /// written it).
    pub fn of(inv: &Invoice, state: &str) -> InvoiceData {
        InvoiceData {
            invoice_id: inv.id.clone(),
            account_id: inv.account_id.clone(),
            number: inv.number.clone(),
            state: state.to_string(),
            currency: inv.currency.code.to_string(),
            total: inv.currency.format(inv.total),
            due_on: inv.due_on.map(format_date),
            failure: None,
        }
    }
}

/// The `invoice.issued` event of an invoice just issued, and `invoice.paid` after it when issuing
/// paid it (a zero total).
pub fn issued_events(
    invoice_id: &str,
    account_id: &str,
    number: &str,
    plan: &IssuePlan,
    currency: Currency,
) -> Vec<Event> {
    let data = InvoiceData {
        invoice_id: invoice_id.to_string(),
        account_id: account_id.to_string(),
        number: Some(number.to_string()),
        state: plan.state.as_str().to_string(),
        currency: currency.code.to_string(),
        total: currency.format(plan.settlement.totals.total),
        due_on: Some(format_date(plan.due_on)),
        failure: None,
    };
    if plan.state == InvoiceState::Paid {
        vec![Event::InvoiceIssued(data.clone()), Event::InvoicePaid(data)]
    } else {
        vec![Event::InvoiceIssued(data)]
    }
}

/// `data` of the `application.*` events.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct ApplicationData {
    pub application_id: String,
    pub account_id: String,
    pub plan_id: String,
    pub name: String,
    /// `live` or `suspended`, after the change.
    pub state: String,
    /// While suspended: `admin` or `non_payment`.
    pub state_reason: Option<String>,
}

/// `data` of the `key.*` events (never the key itself: its id and first characters).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct KeyData {
    pub key_id: String,
    pub application_id: String,
    pub account_id: String,
    /// The key's first characters (`tg_AbC1`); on `key.revoked`, `null`.
    pub prefix: Option<String>,
    /// On `key.rotated`: the key it replaces, and when that one stops working (Unix seconds).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replaced_key_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replaced_key_expires_at: Option<i64>,
}

/// `data` of `plan.changed`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct PlanChangedData {
    pub application_id: String,
    pub account_id: String,
    pub previous_plan_id: String,
    pub plan_id: String,
}

/// `data` of `usage.threshold_reached`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct UsageThresholdData {
    pub application_id: String,
    pub account_id: String,
    /// The metric's name.
    pub metric: String,
    /// The limit's period: `hour`, `day`, `week`, `month`, `year` or `eternity`.
    pub period: String,
    /// Unix seconds: the start of the window (calendar-aligned in UTC; 0 for `eternity`).
    pub window_start: i64,
    /// The limit's value.
    pub limit: i64,
    /// The threshold reached, in percent of the limit (the highest, when usage passed several
    /// between two detector passes).
    pub threshold_percent: i64,
    /// Usage in the window when the crossing was detected.
    pub usage: i64,
}

/// `data` of `webhook.test`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct TestData {
    pub endpoint_id: String,
    pub message: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_round_trip() {
        let mut names: Vec<&str> = EventType::ALL.iter().map(|t| t.as_str()).collect();
        for n in &names {
            assert_eq!(EventType::parse(n).map(|t| t.as_str()), Some(*n));
        }
        names.sort();
        names.dedup();
        assert_eq!(names.len(), EventType::ALL.len());
        assert!(!EventType::subscribable_names().contains(&"webhook.test"));
        assert_eq!(EventType::parse("invoice.Paid"), None);
    }

    #[test]
    fn the_body_has_type_timestamp_and_data() {
        let e = Event::WebhookTest(TestData {
            endpoint_id: "we_1".into(),
            message: "hi".into(),
        });
        let body: serde_json::Value = serde_json::from_str(&e.body(1_614_265_330)).unwrap();
        assert_eq!(
            body,
            json!({"type": "webhook.test", "timestamp": "2021-02-25T15:02:10Z",
                   "data": {"endpoint_id": "we_1", "message": "hi"}})
        );
    }
}
