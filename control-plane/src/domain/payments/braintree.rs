//! Braintree through its GraphQL API over HTTP (reqwest): a customer per account, a client token
//! for Hosted Fields / Drop-in, nonces vaulted as payment methods, `chargePaymentMethod` for charges.
//!
//! GraphQL has no idempotency key, so the `orderId` of a charge is the attempt key
//! (`<invoice id>-<attempt>`), and an attempt whose outcome is unknown is first searched by that
//! order id before anything is charged again. Declines are data (a transaction with status
//! PROCESSOR_DECLINED / GATEWAY_REJECTED / FAILED), not errors. Card charges get no webhooks.
//!
//! Currency: a Braintree transaction is in the currency of its merchant account, never of the
//! amount, so every charge names the merchant account of the invoice's currency
//! (`merchantAccountId`, from the gateway settings' `merchant_accounts`); a currency without one is
//! refused before any call.

use std::time::Duration;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde_json::{json, Value};

use super::config::{BraintreeEnvironment, MerchantAccounts};
use super::{Card, ChargeOutcome, ChargeRequest, PayError};

/// The API version sent in `Braintree-Version`.
pub const API_VERSION: &str = "2019-01-01";
pub const SANDBOX_URL: &str = "https://payments.sandbox.braintree-api.com/graphql";
pub const PRODUCTION_URL: &str = "https://payments.braintree-api.com/graphql";
/// Longest wait for one call (`TOLLGATE_PAYMENT_TIMEOUT_MS` overrides it, as for Stripe).
pub const CALL_TIMEOUT: Duration = Duration::from_secs(20);
/// Cards listed per customer.
pub const MAX_CARDS: usize = 50;

pub struct Braintree {
    http: reqwest::Client,
    endpoint: String,
    authorization: String,
    /// Base URL of the web SDK browsers load ([`super::config::BRAINTREE_JS_URL`] unless set).
    pub js_url: String,
    /// The merchant account per currency that charges are made on.
    pub merchant_accounts: MerchantAccounts,
}

/// Braintree's legacy codes for a merchant account id that is unknown or suspended: a
/// configuration error (nothing was charged), never a decline of the card.
const MERCHANT_ACCOUNT_CODES: &[&str] = &["91513", "91514"];

const CARD_FIELDS: &str = "id details { __typename ... on CreditCardDetails { brandCode last4 expirationMonth expirationYear } }";
const TRANSACTION_FIELDS: &str = "id status statusHistory { status ... on ProcessorDeclinedEvent { processorResponse { legacyCode message } } ... on GatewayRejectedEvent { gatewayRejectionReason } ... on FailedEvent { processorResponse { legacyCode message } } }";

fn timeout() -> Duration {
    std::env::var("TOLLGATE_PAYMENT_TIMEOUT_MS")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
        .filter(|ms| (100..=120_000).contains(ms))
        .map_or(CALL_TIMEOUT, Duration::from_millis)
}

fn card(node: &Value) -> Card {
    let d = &node["details"];
    let num = |v: &Value| {
        v.as_str()
            .and_then(|s| s.parse::<i64>().ok())
            .or_else(|| v.as_i64())
            .unwrap_or(0)
    };
    Card {
        id: node["id"].as_str().unwrap_or_default().to_string(),
        brand: d["brandCode"].as_str().unwrap_or_default().to_lowercase(),
        last4: d["last4"].as_str().unwrap_or_default().to_string(),
        exp_month: num(&d["expirationMonth"]),
        exp_year: num(&d["expirationYear"]),
    }
}

fn outcome(tx: &Value) -> ChargeOutcome {
    let reference = tx["id"].as_str().unwrap_or_default().to_string();
    match tx["status"].as_str().unwrap_or_default() {
        "SUBMITTED_FOR_SETTLEMENT"
        | "SETTLING"
        | "SETTLED"
        | "SETTLEMENT_PENDING"
        | "SETTLEMENT_CONFIRMED"
        | "AUTHORIZED"
        | "AUTHORIZING" => ChargeOutcome::Succeeded { reference },
        status => {
            let last = tx["statusHistory"]
                .as_array()
                .and_then(|h| h.first())
                .cloned()
                .unwrap_or(Value::Null);
            let code = last["processorResponse"]["legacyCode"]
                .as_str()
                .map(|c| format!("processor_{c}"))
                .or_else(|| {
                    last["gatewayRejectionReason"]
                        .as_str()
                        .map(|r| format!("gateway_rejected_{}", r.to_lowercase()))
                })
                .unwrap_or_else(|| status.to_lowercase());
            let message = last["processorResponse"]["message"]
                .as_str()
                .unwrap_or(status)
                .to_string();
            ChargeOutcome::Declined {
                reference: Some(reference),
                code,
                message,
            }
        }
    }
}

impl Braintree {
    pub fn new(
        public_key: &str,
        private_key: &str,
        environment: BraintreeEnvironment,
        api_base: Option<&str>,
        merchant_accounts: MerchantAccounts,
    ) -> Result<Braintree, PayError> {
        if let Some(base) = api_base {
            // A stored URL is checked again where it is used (the database may hold an older one).
            crate::outbound::check(base).map_err(|m| PayError::Config(format!("api_base: {m}")))?;
        }
        let endpoint = match api_base {
            Some(base) => format!("{base}graphql"),
            None if environment == BraintreeEnvironment::Production => PRODUCTION_URL.into(),
            None => SANDBOX_URL.into(),
        };
        // The outbound-URL rule at connect time (no private or loopback address, no redirects).
        let http = crate::outbound::http_client()
            .timeout(timeout())
            .build()
            .map_err(|e| PayError::Config(e.to_string()))?;
        Ok(Braintree {
            http,
            endpoint,
            authorization: format!(
                "Basic {}",
                STANDARD.encode(format!("{public_key}:{private_key}"))
            ),
            js_url: super::config::BRAINTREE_JS_URL.into(),
            merchant_accounts,
        })
    }

    /// One GraphQL call: `data`, or the first error as a `PayError`.
    async fn call(&self, query: &str, variables: Value) -> Result<Value, PayError> {
        let resp = self
            .http
            .post(&self.endpoint)
            .header("Authorization", &self.authorization)
            .header("Braintree-Version", API_VERSION)
            .header("Accept", "application/json")
            .json(&json!({"query": query, "variables": variables}))
            .send()
            .await
            .map_err(|e| {
                PayError::Unavailable(format!("Braintree: {}", crate::outbound::describe(e)))
            })?;
        let status = resp.status().as_u16();
        match status {
            401 | 403 => {
                return Err(PayError::Config(format!(
                    "Braintree refused the credentials ({status})"
                )))
            }
            200 => {}
            _ => {
                return Err(PayError::Unavailable(format!(
                    "Braintree answered {status}"
                )))
            }
        }
        let body: Value = resp.json().await.map_err(|e| {
            PayError::Unavailable(format!(
                "Braintree: bad JSON: {}",
                crate::outbound::describe(e)
            ))
        })?;
        if let Some(err) = body["errors"].as_array().and_then(|e| e.first()) {
            let class = err["extensions"]["errorClass"]
                .as_str()
                .unwrap_or("UNKNOWN");
            let code = err["extensions"]["legacyCode"].as_str().map_or_else(
                || class.to_lowercase(),
                |c| format!("{}_{c}", class.to_lowercase()),
            );
            let message = err["message"].as_str().unwrap_or_default().to_string();
            let legacy = err["extensions"]["legacyCode"].as_str().unwrap_or_default();
            return Err(match class {
                "AUTHENTICATION" | "AUTHORIZATION" => PayError::Config(message),
                "VALIDATION" if MERCHANT_ACCOUNT_CODES.contains(&legacy) => {
                    PayError::Config(format!("Braintree merchant account: {message}"))
                }
                "INTERNAL" | "SERVICE_AVAILABILITY" | "RESOURCE_LIMIT" => {
                    PayError::Unavailable(message)
                }
                _ => PayError::Provider {
                    status,
                    code,
                    message,
                },
            });
        }
        Ok(body["data"].clone())
    }

    pub async fn create_customer(&self, email: &str, name: &str) -> Result<String, PayError> {
        let data = self
            .call(
                "mutation CreateCustomer($input: CreateCustomerInput!) { createCustomer(input: $input) { customer { id } } }",
                json!({"input": {"customer": {"email": email, "company": name}}}),
            )
            .await?;
        data["createCustomer"]["customer"]["id"]
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| PayError::Unavailable("no customer id".into()))
    }

    pub async fn client_token(&self, customer: &str) -> Result<String, PayError> {
        let data = self
            .call(
                "mutation ClientToken($input: CreateClientTokenInput) { createClientToken(input: $input) { clientToken } }",
                json!({"input": {"clientToken": {"customerId": customer}}}),
            )
            .await?;
        data["createClientToken"]["clientToken"]
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| PayError::Unavailable("no client token".into()))
    }

    /// Vaults a nonce from Hosted Fields / Drop-in (verification on, Braintree's default).
    pub async fn vault(&self, customer: &str, nonce: &str) -> Result<Card, PayError> {
        let data = self
            .call(
                &format!("mutation Vault($input: VaultPaymentMethodInput!) {{ vaultPaymentMethod(input: $input) {{ paymentMethod {{ {CARD_FIELDS} }} verification {{ status processorResponse {{ legacyCode message }} gatewayRejectionReason }} }} }}"),
                json!({"input": {"paymentMethodId": nonce, "customerId": customer}}),
            )
            .await?;
        let result = &data["vaultPaymentMethod"];
        if result["paymentMethod"].is_object() {
            return Ok(card(&result["paymentMethod"]));
        }
        let v = &result["verification"];
        Err(PayError::Provider {
            status: 402,
            code: format!(
                "verification_{}",
                v["status"].as_str().unwrap_or("failed").to_lowercase()
            ),
            message: v["processorResponse"]["message"]
                .as_str()
                .unwrap_or("the card was not verified")
                .to_string(),
        })
    }

    pub async fn list_cards(&self, customer: &str) -> Result<Vec<Card>, PayError> {
        let data = self
            .call(
                &format!("query Cards($id: ID!) {{ node(id: $id) {{ ... on Customer {{ paymentMethods {{ edges {{ node {{ {CARD_FIELDS} }} }} }} }} }} }}"),
                json!({"id": customer}),
            )
            .await?;
        Ok(data["node"]["paymentMethods"]["edges"]
            .as_array()
            .map(|edges| {
                edges
                    .iter()
                    .take(MAX_CARDS)
                    .map(|e| card(&e["node"]))
                    .collect()
            })
            .unwrap_or_default())
    }

    pub async fn delete(&self, payment_method: &str) -> Result<(), PayError> {
        self.call(
            "mutation Delete($input: DeletePaymentMethodFromVaultInput!) { deletePaymentMethodFromVault(input: $input) { clientMutationId } }",
            json!({"input": {"paymentMethodId": payment_method}}),
        )
        .await
        .map(|_| ())
    }

    /// A charge of `req.amount`, written as Braintree wants it ([`super::units::braintree_amount`]),
    /// on the merchant account of `req.currency`.
    pub async fn charge(&self, req: &ChargeRequest<'_>) -> Result<ChargeOutcome, PayError> {
        let amount = super::units::braintree_amount(req.currency, req.amount)
            .map_err(|e| PayError::Config(format!("{e:?}")))?;
        // Checked before the attempt was claimed too; here so that no path charges without it.
        let account = self
            .merchant_accounts
            .for_currency(req.currency)
            .ok_or_else(|| {
                PayError::Config(format!(
                    "no Braintree merchant account in {}",
                    req.currency.code
                ))
            })?;
        let data = self
            .call(
                &format!("mutation Charge($input: ChargePaymentMethodInput!) {{ chargePaymentMethod(input: $input) {{ transaction {{ {TRANSACTION_FIELDS} }} }} }}"),
                json!({"input": {"paymentMethodId": req.payment_method,
                                 "transaction": {"amount": amount, "merchantAccountId": account, "orderId": req.attempt_key, "paymentInitiator": "UNSCHEDULED"}}}),
            )
            .await?;
        Ok(outcome(&data["chargePaymentMethod"]["transaction"]))
    }

    /// The transaction an earlier call made for `attempt_key` (its order id), if any.
    pub async fn find(&self, attempt_key: &str) -> Result<Option<ChargeOutcome>, PayError> {
        let data = self
            .call(
                &format!("query Find($input: TransactionSearchInput!) {{ search {{ transactions(input: $input) {{ edges {{ node {{ {TRANSACTION_FIELDS} }} }} }} }} }}"),
                json!({"input": {"orderId": {"is": attempt_key}}}),
            )
            .await?;
        Ok(data["search"]["transactions"]["edges"]
            .as_array()
            .and_then(|e| e.first())
            .map(|e| outcome(&e["node"])))
    }
}
