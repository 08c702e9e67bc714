//! The account's customer at the configured provider and the cards stored there. Card numbers
//! never reach Tollgate: the browser hands over the provider's id (Stripe PaymentMethod) or a
//! one-time nonce (Braintree), and Tollgate keeps only the customer's id and which card is the
//! default (`payment_customers`).

use serde::{Deserialize, Serialize};

use super::provider::{pay_error, provider, Provider};
use super::{Card, PayError, ProviderKind};
use crate::domain::{DomainError, DomainResult, Page};
use crate::store::{now, Pool};

/// The account's customer at a provider.
#[derive(Clone, Debug, sqlx::FromRow)]
pub struct Customer {
    /// The provider's customer id.
    pub customer_ref: String,
    /// The card charged when none is chosen.
    pub default_method_ref: Option<String>,
}

#[derive(sqlx::FromRow)]
struct Contact {
    email: String,
    name: String,
}

async fn stored_customer(
    pool: &Pool,
    p: &Provider,
    account_id: &str,
) -> DomainResult<Option<Customer>> {
    Ok(sqlx::query_as(
        "SELECT customer_ref, default_method_ref FROM payment_customers WHERE account_id = $1 AND provider = $2",
    )
    .bind(account_id)
    .bind(p.name())
    .fetch_optional(pool)
    .await?)
}

/// The account's customer at the provider; with `create`, made there (and recorded) when there
/// is none yet.
pub async fn customer(
    pool: &Pool,
    p: &Provider,
    account_id: &str,
    create: bool,
) -> DomainResult<Option<Customer>> {
    let row = stored_customer(pool, p, account_id).await?;
    if row.is_some() || !create {
        return Ok(row);
    }
    let contact: Contact = sqlx::query_as("SELECT email, name FROM accounts WHERE id = $1")
        .bind(account_id)
        .fetch_optional(pool)
        .await?
        .ok_or_else(|| DomainError::not_found("account", account_id))?;
    let id = match p {
        Provider::Stripe(s) => s
            .create_customer(account_id, &contact.email, &contact.name)
            .await
            .map_err(pay_error)?,
        Provider::Braintree(b) => b
            .create_customer(&contact.email, &contact.name)
            .await
            .map_err(pay_error)?,
    };
    sqlx::query(
        "INSERT INTO payment_customers (account_id, provider, customer_ref, default_method_ref, created_at) VALUES ($1, $2, $3, NULL, $4) ON CONFLICT (account_id, provider) DO NOTHING",
    )
    .bind(account_id)
    .bind(p.name())
    .bind(&id)
    .bind(now())
    .execute(pool)
    .await?;
    // A concurrent request may have won: use what is stored.
    stored_customer(pool, p, account_id).await
}

/// The customer of the account, created at the provider if needed (an internal error if it is
/// still not there: the insert above always leaves one).
async fn ensured_customer(pool: &Pool, p: &Provider, account_id: &str) -> DomainResult<Customer> {
    customer(pool, p, account_id, true)
        .await?
        .ok_or_else(|| DomainError::Internal("customer not created".into()))
}

pub async fn set_default(
    pool: &Pool,
    p: &Provider,
    account_id: &str,
    method: Option<&str>,
) -> DomainResult<()> {
    sqlx::query("UPDATE payment_customers SET default_method_ref = $3 WHERE account_id = $1 AND provider = $2")
        .bind(account_id)
        .bind(p.name())
        .bind(method)
        .execute(pool)
        .await?;
    Ok(())
}

/// The cards of `customer` at the provider.
pub async fn cards(p: &Provider, customer: &str) -> DomainResult<Vec<Card>> {
    match p {
        Provider::Stripe(s) => s.list_cards(customer).await.map_err(pay_error),
        Provider::Braintree(b) => b.list_cards(customer).await.map_err(pay_error),
    }
}

/// A provider failure on a card operation the caller may simply retry.
fn unavailable(e: PayError) -> DomainError {
    DomainError::Unavailable(format!("{e:?}"))
}

/// The account's cards at `p` and its default card (none without a customer there).
pub async fn list(
    pool: &Pool,
    p: &Provider,
    account_id: &str,
) -> DomainResult<(Option<String>, Vec<Card>)> {
    let Some(c) = customer(pool, p, account_id, false).await? else {
        return Ok((None, Vec::new()));
    };
    Ok((c.default_method_ref, cards(p, &c.customer_ref).await?))
}

/// The account's cards and its default card, when `id` is one of them; else 404 (another
/// account's card looks like no card).
pub async fn own_card(
    pool: &Pool,
    p: &Provider,
    account_id: &str,
    id: &str,
) -> DomainResult<(Option<String>, Vec<Card>)> {
    let (default, cards) = list(pool, p, account_id).await?;
    if !cards.iter().any(|c| c.id == id) {
        return Err(DomainError::not_found("payment method", id));
    }
    Ok((default, cards))
}

/// A card as the API shows it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct PaymentMethod {
    pub id: String,
    pub brand: String,
    pub last4: String,
    pub exp_month: i64,
    pub exp_year: i64,
    /// `payment_method`.
    pub object: &'static str,
    /// Whether it is the card charged when none is chosen.
    pub default: bool,
}

impl PaymentMethod {
    fn of(card: Card, default: Option<&str>) -> PaymentMethod {
        let default = Some(card.id.as_str()) == default;
        PaymentMethod {
            id: card.id,
            brand: card.brand,
            last4: card.last4,
            exp_month: card.exp_month,
            exp_year: card.exp_year,
            object: "payment_method",
            default,
        }
    }
}

/// The cards as one page (the provider lists them all at once).
fn page_of(cards: Vec<Card>, default: Option<&str>) -> Page<PaymentMethod> {
    Page {
        object: "list",
        data: cards
            .into_iter()
            .map(|c| PaymentMethod::of(c, default))
            .collect(),
        has_more: false,
        next_cursor: None,
    }
}

/// `GET /api/v1/payment_methods`: the account's cards at the configured provider.
pub async fn methods(
    pool: &Pool,
    master_key: Option<&[u8; 32]>,
    account_id: &str,
) -> DomainResult<Page<PaymentMethod>> {
    let p = provider(pool, master_key).await?;
    let (default, cards) = list(pool, &p, account_id).await?;
    Ok(page_of(cards, default.as_deref()))
}

/// What the browser needs to collect a card with the provider's script.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(untagged)]
pub enum CardSetup {
    Stripe(StripeSetup),
    Braintree(BraintreeSetup),
}

/// Stripe Elements: a SetupIntent's client secret and the publishable key.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct StripeSetup {
    /// `payment_method_setup`.
    pub object: &'static str,
    /// `stripe`.
    pub provider: ProviderKind,
    pub client_secret: String,
    pub publishable_key: String,
    /// Where Stripe.js is loaded.
    pub js_url: String,
}

/// Braintree Hosted Fields: a client token.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct BraintreeSetup {
    /// `payment_method_setup`.
    pub object: &'static str,
    /// `braintree`.
    pub provider: ProviderKind,
    pub client_token: String,
    /// Base URL of the Braintree web SDK.
    pub js_url: String,
}

/// `POST /api/v1/payment_methods/setup`: creates the account's customer at the provider if
/// needed, and a SetupIntent (Stripe) or client token (Braintree).
pub async fn setup(
    pool: &Pool,
    master_key: Option<&[u8; 32]>,
    account_id: &str,
) -> DomainResult<CardSetup> {
    let p = provider(pool, master_key).await?;
    let customer = ensured_customer(pool, &p, account_id).await?.customer_ref;
    Ok(match &p {
        Provider::Stripe(stripe) => CardSetup::Stripe(StripeSetup {
            object: "payment_method_setup",
            provider: ProviderKind::Stripe,
            client_secret: stripe.setup_intent(&customer).await.map_err(unavailable)?,
            publishable_key: stripe.publishable_key.clone(),
            js_url: stripe.js_url.clone(),
        }),
        Provider::Braintree(bt) => CardSetup::Braintree(BraintreeSetup {
            object: "payment_method_setup",
            provider: ProviderKind::Braintree,
            client_token: bt.client_token(&customer).await.map_err(unavailable)?,
            js_url: bt.js_url.clone(),
        }),
    })
}

/// `POST /api/v1/payment_methods`: a card the provider's script confirmed.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AddMethod {
    /// Stripe: the PaymentMethod id Stripe.js confirmed.
    pub payment_method_id: Option<String>,
    /// Braintree: the nonce from Hosted Fields / Drop-in.
    pub payment_method_nonce: Option<String>,
    /// Make it the default card (the first card always becomes the default).
    #[serde(default)]
    pub default: bool,
}

/// The card just attached, and how many cards the account has now.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct AddedPaymentMethod {
    #[serde(flatten)]
    pub method: PaymentMethod,
    pub cards: usize,
}

/// Attaches a confirmed card to the account's customer (created if needed); the first card, or
/// one added with `default`, becomes the default. A card the provider refuses is 422
/// `invalid_payment_method`.
pub async fn add(
    pool: &Pool,
    master_key: Option<&[u8; 32]>,
    account_id: &str,
    input: AddMethod,
) -> DomainResult<AddedPaymentMethod> {
    let pm = input
        .payment_method_id
        .or(input.payment_method_nonce)
        .filter(|p| !p.trim().is_empty())
        .ok_or_else(|| {
            DomainError::invalid(
                "payment_method_id",
                "missing_field",
                "payment_method_id (Stripe) or payment_method_nonce (Braintree) is required",
            )
        })?;
    let p = provider(pool, master_key).await?;
    let c = ensured_customer(pool, &p, account_id).await?;
    let attached = match &p {
        Provider::Stripe(stripe) => stripe.attach(&c.customer_ref, &pm).await,
        Provider::Braintree(bt) => bt.vault(&c.customer_ref, &pm).await,
    };
    let card = attached.map_err(|e| match e {
        PayError::Provider { code, message, .. } => DomainError::invalid(
            "payment_method_id",
            "invalid_payment_method",
            format!("{code}: {message}"),
        ),
        other => unavailable(other),
    })?;
    if input.default || c.default_method_ref.is_none() {
        set_default(pool, &p, account_id, Some(&card.id)).await?;
    }
    // As the provider lists them now (the new card included).
    let (default, cards) = list(pool, &p, account_id).await?;
    Ok(AddedPaymentMethod {
        method: PaymentMethod::of(card, default.as_deref()),
        cards: cards.len(),
    })
}

/// `POST /api/v1/payment_methods/{id}/default`: makes one of the account's cards the default.
/// Returns the cards.
pub async fn make_default(
    pool: &Pool,
    master_key: Option<&[u8; 32]>,
    account_id: &str,
    id: &str,
) -> DomainResult<Page<PaymentMethod>> {
    make_default_at(pool, &provider(pool, master_key).await?, account_id, id).await
}

/// [`make_default`] at the provider `p`.
pub async fn make_default_at(
    pool: &Pool,
    p: &Provider,
    account_id: &str,
    id: &str,
) -> DomainResult<Page<PaymentMethod>> {
    let (_, cards) = own_card(pool, p, account_id, id).await?;
    set_default(pool, p, account_id, Some(id)).await?;
    Ok(page_of(cards, Some(id)))
}

/// A removed card.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct RemovedPaymentMethod {
    /// `payment_method`.
    pub object: &'static str,
    pub id: String,
    /// Always true.
    pub deleted: bool,
}

/// `DELETE /api/v1/payment_methods/{id}`: removes one of the account's cards at the provider
/// (and as the default, if it was).
pub async fn remove(
    pool: &Pool,
    master_key: Option<&[u8; 32]>,
    account_id: &str,
    id: &str,
) -> DomainResult<RemovedPaymentMethod> {
    remove_at(pool, &provider(pool, master_key).await?, account_id, id).await
}

/// [`remove`] at the provider `p`.
pub async fn remove_at(
    pool: &Pool,
    p: &Provider,
    account_id: &str,
    id: &str,
) -> DomainResult<RemovedPaymentMethod> {
    let (default, _) = own_card(pool, p, account_id, id).await?;
    match p {
        Provider::Stripe(stripe) => stripe.detach(id).await,
        Provider::Braintree(bt) => bt.delete(id).await,
    }
    .map_err(unavailable)?;
    if default.as_deref() == Some(id) {
        set_default(pool, p, account_id, None).await?;
    }
    Ok(RemovedPaymentMethod {
        object: "payment_method",
        id: id.to_string(),
        deleted: true,
    })
}
