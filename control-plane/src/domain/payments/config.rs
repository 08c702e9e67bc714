//! The payment gateway's settings (`PUT/GET /admin/api/v1/billing/gateway`): one provider at a
//! time, public fields in clear, secrets sealed with the master key (`TOLLGATE_MASTER_KEY`), never
//! returned (GET shows which are set and their last 4 characters).
//!
//! Switching provider: cards are stored at the provider, under the account's customer there, so they
//! do not move. After a switch, charging uses only the new provider's cards; developers add a card
//! again (the old provider's customers are kept, unused, in `payment_customers`). The PUT answer
//! carries a `warning` saying so.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use super::units::UnitError;
use super::ProviderKind;
use crate::domain::audit::{self, Actor, Changes, Object};
use crate::domain::billing::currency::Currency;

use crate::domain::{DomainError, DomainResult};
use crate::secrets::{open, open_v1, seal, SealedAt, SEALED_V2_PREFIX};
use crate::store::{now, Pool};

/// The process's master key, for work that runs outside a request (the daily charging).
static MASTER_KEY: std::sync::OnceLock<[u8; 32]> = std::sync::OnceLock::new();

pub fn set_master_key(key: [u8; 32]) {
    let _ = MASTER_KEY.set(key);
}

pub fn master_key() -> Option<&'static [u8; 32]> {
    MASTER_KEY.get()
}

/// Longest field accepted (keys and ids are far shorter).
pub const MAX_FIELD_CHARS: usize = 500;
/// Most Braintree merchant accounts (one per currency) in the gateway settings: more than the
/// currencies Braintree presents charges in, and a bound on the stored document.
pub const MAX_MERCHANT_ACCOUNTS: usize = 100;

/// Braintree's merchant account per currency. A Braintree charge is made in the currency of the
/// merchant account it names (`merchantAccountId`; without one, the default account's currency,
/// whatever the invoice says), so Tollgate always names the invoice currency's account and refuses
/// a charge in a currency that has none.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MerchantAccounts(BTreeMap<&'static str, String>);

impl MerchantAccounts {
    /// The merchant account that charges in `currency`, if one is configured.
    pub fn for_currency(&self, currency: Currency) -> Option<&str> {
        self.0.get(currency.code).map(String::as_str)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    fn to_json(&self) -> Value {
        Value::Object(
            self.0
                .iter()
                .map(|(code, id)| (code.to_string(), json!(id)))
                .collect(),
        )
    }

    /// Validates `{"EUR": "<merchant account id>", ...}`: known ISO 4217 codes Braintree charges
    /// in, ids as any other field, at most [`MAX_MERCHANT_ACCOUNTS`].
    pub fn parse(v: &BTreeMap<String, String>) -> DomainResult<MerchantAccounts> {
        if v.len() > MAX_MERCHANT_ACCOUNTS {
            return Err(DomainError::invalid(
                "merchant_accounts",
                "too_many_merchant_accounts",
                format!("at most {MAX_MERCHANT_ACCOUNTS} merchant accounts"),
            ));
        }
        let mut out = BTreeMap::new();
        for (code, id) in v {
            let param = format!("merchant_accounts.{code}");
            let currency = Currency::parse(code).ok_or_else(|| {
                DomainError::invalid(
                    param.clone(),
                    "invalid_currency",
                    "an ISO 4217 currency code like \"EUR\"",
                )
            })?;
            super::units::check(ProviderKind::Braintree, currency).map_err(|_| {
                DomainError::invalid(
                    param.clone(),
                    "currency_not_supported_by_provider",
                    format!("braintree cannot charge in {code}"),
                )
            })?;
            let id = field(&param, Some(id.clone()), None)?;
            out.insert(currency.code, id);
        }
        Ok(MerchantAccounts(out))
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum GatewayConfig {
    Stripe {
        secret_key: String,
        publishable_key: String,
        webhook_secret: String,
        api_base: Option<String>,
        /// Where browsers load Stripe.js (default [`STRIPE_JS_URL`]; tests: localstripe's shim).
        js_url: Option<String>,
    },
    Braintree {
        merchant_id: String,
        public_key: String,
        private_key: String,
        environment: BraintreeEnvironment,
        api_base: Option<String>,
        /// Base URL of the Braintree web SDK (default [`BRAINTREE_JS_URL`]).
        js_url: Option<String>,
        /// Empty in a configuration stored before merchant accounts existed: every charge is then
        /// refused (`currency_has_no_merchant_account`) until they are entered.
        merchant_accounts: MerchantAccounts,
    },
}

/// Which Braintree the credentials are for (its API host, unless `api_base` names another).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BraintreeEnvironment {
    Sandbox,
    Production,
}

impl BraintreeEnvironment {
    pub fn as_str(self) -> &'static str {
        match self {
            BraintreeEnvironment::Sandbox => "sandbox",
            BraintreeEnvironment::Production => "production",
        }
    }

    pub fn parse(s: &str) -> Option<BraintreeEnvironment> {
        match s {
            "sandbox" => Some(BraintreeEnvironment::Sandbox),
            "production" => Some(BraintreeEnvironment::Production),
            _ => None,
        }
    }
}

/// Stripe.js, as Stripe requires it to be loaded (never self-hosted).
pub const STRIPE_JS_URL: &str = "https://js.stripe.com/v3/";
/// Braintree's web SDK (client + hosted-fields), version 3.x, on Braintree's CDN.
pub const BRAINTREE_JS_URL: &str = "https://js.braintreegateway.com/web/3.111.0/js/";

impl GatewayConfig {
    pub fn kind(&self) -> ProviderKind {
        match self {
            GatewayConfig::Stripe { .. } => ProviderKind::Stripe,
            GatewayConfig::Braintree { .. } => ProviderKind::Braintree,
        }
    }

    /// The provider's name as stored.
    pub fn provider(&self) -> &'static str {
        self.kind().as_str()
    }

    /// Whether this gateway can charge in `currency` (see [`super::units::check_gateway`]): the
    /// one currency check, used when the gateway is saved and before every charge.
    pub fn check_currency(&self, currency: Currency) -> Result<(), UnitError> {
        let none = MerchantAccounts::default();
        let accounts = match self {
            GatewayConfig::Braintree {
                merchant_accounts, ..
            } => merchant_accounts,
            GatewayConfig::Stripe { .. } => &none,
        };
        super::units::check_gateway(self.kind(), accounts, currency)
    }
}

/// `PUT /billing/gateway`: all fields of the chosen `type` (secrets are write-only).
#[derive(Deserialize, Default, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct GatewayInput {
    /// `stripe` or `braintree` (checked by [`GatewayInput::validate`], so that an unknown value
    /// is the 422 `invalid_gateway`, not a 400).
    #[serde(rename = "type")]
    pub kind: Option<String>,
    /// Stripe: `sk_...`.
    pub secret_key: Option<String>,
    /// Stripe: `pk_...`.
    pub publishable_key: Option<String>,
    /// Stripe: `whsec_...`.
    pub webhook_secret: Option<String>,
    /// Braintree.
    pub merchant_id: Option<String>,
    /// Braintree.
    pub public_key: Option<String>,
    /// Braintree.
    pub private_key: Option<String>,
    /// Braintree: `sandbox` (default) or `production`.
    pub environment: Option<String>,
    /// The provider's API base URL (https; tests: a local fake).
    pub api_base: Option<String>,
    /// Where browsers load the provider's script.
    pub js_url: Option<String>,
    /// Braintree only: `{"EUR": "<merchant account id>", ...}`.
    pub merchant_accounts: Option<BTreeMap<String, String>>,
}

const SECRETS: &[&str] = &["secret_key", "webhook_secret", "private_key"];

/// The table holding the gateway settings, and its one row's key.
const TABLE: &str = "payment_gateway";
const ROW: &str = "1";

/// Where the secret `field` of the gateway settings is sealed: a value sealed for one field (or
/// lifted from another table) does not open as another.
fn sealed_at(field: &str) -> SealedAt<'_> {
    SealedAt {
        table: TABLE,
        field,
        row: ROW,
    }
}

fn field(param: &str, v: Option<String>, prefix: Option<&str>) -> DomainResult<String> {
    let v = v.unwrap_or_default();
    let v = v.trim();
    if v.is_empty() {
        return Err(DomainError::invalid(
            param,
            "missing_field",
            format!("{param} is required"),
        ));
    }
    if v.chars().count() > MAX_FIELD_CHARS || v.chars().any(|c| c.is_whitespace() || c.is_control())
    {
        return Err(DomainError::invalid(
            param,
            "invalid_field",
            "printable characters without spaces",
        ));
    }
    if let Some(p) = prefix {
        if !v.starts_with(p) {
            return Err(DomainError::invalid(
                param,
                "invalid_field",
                format!("expected a value starting with {p:?}"),
            ));
        }
    }
    Ok(v.to_string())
}

fn api_base(v: Option<String>) -> DomainResult<Option<String>> {
    url("api_base", v)
}

/// An optional http(s) URL, stored with a trailing `/` (both uses append paths to it).
fn url(param: &str, v: Option<String>) -> DomainResult<Option<String>> {
    match v.as_deref().map(str::trim) {
        None | Some("") => Ok(None),
        Some(u) if u.len() <= MAX_FIELD_CHARS => {
            // The one outbound-URL rule (https to a public host; loopback only when opted in).
            crate::outbound::check(u).map_err(|m| DomainError::invalid(param, "invalid_url", m))?;
            Ok(Some(if u.ends_with('/') {
                u.to_string()
            } else {
                format!("{u}/")
            }))
        }
        Some(_) => Err(DomainError::invalid(
            param,
            "invalid_url",
            "an https URL of a public host",
        )),
    }
}

impl GatewayInput {
    pub fn validate(self) -> DomainResult<GatewayConfig> {
        match self.kind.as_deref() {
            Some("stripe") if self.merchant_accounts.is_some() => Err(DomainError::invalid(
                "merchant_accounts",
                "invalid_field",
                "merchant accounts are a Braintree setting",
            )),
            Some("stripe") => Ok(GatewayConfig::Stripe {
                secret_key: field("secret_key", self.secret_key, Some("sk_"))?,
                publishable_key: field("publishable_key", self.publishable_key, Some("pk_"))?,
                webhook_secret: field("webhook_secret", self.webhook_secret, Some("whsec_"))?,
                api_base: api_base(self.api_base)?,
                js_url: url("js_url", self.js_url)?,
            }),
            Some("braintree") => {
                let environment =
                    BraintreeEnvironment::parse(self.environment.as_deref().unwrap_or("sandbox"))
                        .ok_or_else(|| {
                        DomainError::invalid(
                            "environment",
                            "invalid_environment",
                            "sandbox or production",
                        )
                    })?;
                Ok(GatewayConfig::Braintree {
                    merchant_id: field("merchant_id", self.merchant_id, None)?,
                    public_key: field("public_key", self.public_key, None)?,
                    private_key: field("private_key", self.private_key, None)?,
                    environment,
                    api_base: api_base(self.api_base)?,
                    js_url: url("js_url", self.js_url)?,
                    merchant_accounts: MerchantAccounts::parse(
                        &self.merchant_accounts.unwrap_or_default(),
                    )?,
                })
            }
            _ => Err(DomainError::invalid(
                "type",
                "invalid_gateway",
                "\"stripe\" or \"braintree\"",
            )),
        }
    }
}

fn fields(c: &GatewayConfig) -> Vec<(&'static str, Option<String>)> {
    match c {
        GatewayConfig::Stripe {
            secret_key,
            publishable_key,
            webhook_secret,
            api_base,
            js_url,
        } => vec![
            ("secret_key", Some(secret_key.clone())),
            ("publishable_key", Some(publishable_key.clone())),
            ("webhook_secret", Some(webhook_secret.clone())),
            ("api_base", api_base.clone()),
            ("js_url", js_url.clone()),
        ],
        GatewayConfig::Braintree {
            merchant_id,
            public_key,
            private_key,
            environment,
            api_base,
            js_url,
            ..
        } => vec![
            ("merchant_id", Some(merchant_id.clone())),
            ("public_key", Some(public_key.clone())),
            ("private_key", Some(private_key.clone())),
            ("environment", Some(environment.as_str().to_string())),
            ("api_base", api_base.clone()),
            ("js_url", js_url.clone()),
        ],
    }
}

/// The secrets of `c` as (name, plaintext): the admin portal keeps a stored secret when its
/// write-only field is left empty.
pub fn secrets_of(c: &GatewayConfig) -> Vec<(String, String)> {
    fields(c)
        .into_iter()
        .filter(|(name, _)| SECRETS.contains(name))
        .filter_map(|(name, v)| v.map(|v| (name.to_string(), v)))
        .collect()
}

/// Whether `form_api_base` (as typed; empty = the provider's default) names the `api_base` stored
/// in `c`.
pub fn same_api_base(c: &GatewayConfig, form_api_base: &str) -> bool {
    let stored = match c {
        GatewayConfig::Stripe { api_base, .. } | GatewayConfig::Braintree { api_base, .. } => {
            api_base.as_deref().unwrap_or("")
        }
    };
    let typed = form_api_base.trim();
    stored.trim_end_matches('/') == typed.trim_end_matches('/')
}

/// The stored gateway row.
#[derive(sqlx::FromRow)]
struct GatewayRow {
    kind: String,
    config: String,
}

/// One field of the stored settings document: a public value in clear, or a sealed secret with
/// its last 4 characters.
#[derive(Deserialize)]
#[serde(untagged)]
enum StoredField {
    Plain(String),
    Sealed {
        sealed: String,
        #[serde(default)]
        last4: Option<String>,
    },
}

/// The stored settings document (`payment_gateway.config`), as [`store`] writes it. Fields it
/// does not know are passed over (a later version may add some).
#[derive(Deserialize, Default)]
struct StoredDoc {
    secret_key: Option<StoredField>,
    publishable_key: Option<StoredField>,
    webhook_secret: Option<StoredField>,
    merchant_id: Option<StoredField>,
    public_key: Option<StoredField>,
    private_key: Option<StoredField>,
    environment: Option<StoredField>,
    api_base: Option<StoredField>,
    js_url: Option<StoredField>,
    /// Absent in a Braintree configuration stored before merchant accounts existed.
    merchant_accounts: Option<BTreeMap<String, String>>,
}

/// The stored gateway, read once: its provider and its document.
struct StoredGateway {
    kind: ProviderKind,
    doc: StoredDoc,
}

impl TryFrom<GatewayRow> for StoredGateway {
    type Error = DomainError;

    fn try_from(r: GatewayRow) -> DomainResult<StoredGateway> {
        Ok(StoredGateway {
            kind: ProviderKind::stored(&r.kind)?,
            doc: serde_json::from_str(&r.config)
                .map_err(|e| DomainError::Internal(format!("gateway settings unreadable: {e}")))?,
        })
    }
}

impl StoredGateway {
    /// The merchant accounts (empty when none are stored: stored before they existed, or a
    /// Stripe gateway).
    fn merchant_accounts(&self) -> DomainResult<MerchantAccounts> {
        match &self.doc.merchant_accounts {
            None => Ok(MerchantAccounts::default()),
            Some(map) => MerchantAccounts::parse(map).map_err(|e| {
                DomainError::Internal(format!("stored merchant accounts invalid: {e:?}"))
            }),
        }
    }
}

const SELECT_GATEWAY: &str = "SELECT kind, config FROM payment_gateway WHERE id = 1";

async fn stored<'c>(
    db: impl sqlx::Executor<'c, Database = sqlx::Any>,
) -> DomainResult<Option<StoredGateway>> {
    let row: Option<GatewayRow> = sqlx::query_as(SELECT_GATEWAY).fetch_optional(db).await?;
    row.map(StoredGateway::try_from).transpose()
}

/// Stores `config`, secrets sealed, with its audit event (the public views before and after:
/// secrets by name only, see `audit::REDACTED_FIELDS`). Returns the previous provider, if another.
pub async fn store(
    pool: &Pool,
    master_key: Option<&[u8; 32]>,
    actor: &Actor,
    config: &GatewayConfig,
) -> DomainResult<Option<String>> {
    let Some(key) = master_key else {
        return Err(DomainError::conflict(
            "master_key_required",
            "set TOLLGATE_MASTER_KEY (at least 32 characters) on the server before storing gateway secrets",
        ));
    };
    let mut doc = Map::new();
    for (name, value) in fields(config) {
        let Some(value) = value else { continue };
        if SECRETS.contains(&name) {
            let last4: String = value
                .chars()
                .rev()
                .take(4)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect();
            doc.insert(
                name.into(),
                json!({"sealed": seal(key, value.as_bytes(), sealed_at(name)), "last4": last4}),
            );
        } else {
            doc.insert(name.into(), json!(value));
        }
    }
    if let GatewayConfig::Braintree {
        merchant_accounts, ..
    } = config
    {
        doc.insert("merchant_accounts".into(), merchant_accounts.to_json());
    }
    let mut tx = crate::store::begin_write(pool).await?;
    // Locked (PostgreSQL) when stored: a concurrent save waits, and its before image is this
    // one's after.
    let previous: Option<(String,)> = sqlx::query_as(&format!(
        "SELECT kind FROM payment_gateway WHERE id = 1{}",
        crate::store::for_update()
    ))
    .fetch_optional(&mut *tx)
    .await?;
    let before = view(stored(&mut *tx).await?)?;
    let doc = Value::Object(doc).to_string();
    let sql = if previous.is_some() {
        "UPDATE payment_gateway SET kind = $1, config = $2, updated_at = $3 WHERE id = 1"
    } else {
        "INSERT INTO payment_gateway (id, kind, config, updated_at) VALUES (1, $1, $2, $3)"
    };
    sqlx::query(sql)
        .bind(config.provider())
        .bind(doc)
        .bind(now())
        .execute(&mut *tx)
        .await?;
    let after = view(stored(&mut *tx).await?)?;
    let changes = Changes::between(Some(&before), Some(&after))?;
    let object = Object {
        kind: "payment_gateway",
        id: "payment_gateway",
    };
    audit::record(&mut tx, actor, "payment_gateway.updated", object, &changes).await?;
    tx.commit().await?;
    Ok(previous.map(|p| p.0).filter(|p| p != config.provider()))
}

/// A secret as the settings show it: whether it is set, and its last 4 characters.
#[derive(Serialize, utoipa::ToSchema)]
pub struct SecretView {
    pub set: bool,
    pub last4: Option<String>,
}

/// A stored field as the settings show it: a public value, or a secret's [`SecretView`].
#[derive(Serialize, utoipa::ToSchema)]
#[serde(untagged)]
pub enum FieldView {
    Value(String),
    Secret(SecretView),
}

impl From<StoredField> for FieldView {
    fn from(f: StoredField) -> FieldView {
        match f {
            StoredField::Plain(v) => FieldView::Value(v),
            StoredField::Sealed { last4, .. } => FieldView::Secret(SecretView { set: true, last4 }),
        }
    }
}

/// The gateway settings as the API shows them (`GET/PUT /billing/gateway`): which provider, its
/// public fields, and for each secret whether it is set and its last 4 characters. Only the
/// fields stored for the provider appear; `type` is null when none is configured.
#[derive(Serialize, utoipa::ToSchema)]
pub struct GatewayView {
    /// `payment_gateway`.
    pub object: &'static str,
    #[serde(rename = "type")]
    pub kind: Option<ProviderKind>,
    /// A Braintree configuration without merchant accounts, or (PUT) a switch of provider.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub warning: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret_key: Option<FieldView>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub publishable_key: Option<FieldView>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub webhook_secret: Option<FieldView>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub merchant_id: Option<FieldView>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub public_key: Option<FieldView>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub private_key: Option<FieldView>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub environment: Option<FieldView>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub api_base: Option<FieldView>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub js_url: Option<FieldView>,
    /// Braintree: `{"EUR": "<merchant account id>", ...}`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub merchant_accounts: Option<BTreeMap<String, String>>,
}

/// The public view: which provider, public fields, and for each secret whether it is set and its
/// last 4 characters.
pub async fn public_view(pool: &Pool) -> DomainResult<GatewayView> {
    view(stored(pool).await?)
}

/// The view of the stored gateway `g` (`None`: none is configured).
fn view(g: Option<StoredGateway>) -> DomainResult<GatewayView> {
    let Some(g) = g else {
        return Ok(GatewayView {
            object: "payment_gateway",
            kind: None,
            warning: None,
            secret_key: None,
            publishable_key: None,
            webhook_secret: None,
            merchant_id: None,
            public_key: None,
            private_key: None,
            environment: None,
            api_base: None,
            js_url: None,
            merchant_accounts: None,
        });
    };
    let warning = (g.kind == ProviderKind::Braintree && g.merchant_accounts()?.is_empty())
        .then(|| NO_MERCHANT_ACCOUNTS.to_string());
    let d = g.doc;
    Ok(GatewayView {
        object: "payment_gateway",
        kind: Some(g.kind),
        warning,
        secret_key: d.secret_key.map(Into::into),
        publishable_key: d.publishable_key.map(Into::into),
        webhook_secret: d.webhook_secret.map(Into::into),
        merchant_id: d.merchant_id.map(Into::into),
        public_key: d.public_key.map(Into::into),
        private_key: d.private_key.map(Into::into),
        environment: d.environment.map(Into::into),
        api_base: d.api_base.map(Into::into),
        js_url: d.js_url.map(Into::into),
        merchant_accounts: d.merchant_accounts,
    })
}

/// `PUT /billing/gateway`: validates `input` (422), checks that the billing currency is one the
/// new provider can charge (422; for Braintree the error names the missing merchant account),
/// stores it (409 without a master key) and returns the view, with a warning after a switch of
/// provider. Nothing is stored when any check fails.
pub async fn save(
    pool: &Pool,
    master_key: Option<&[u8; 32]>,
    actor: &Actor,
    input: GatewayInput,
) -> DomainResult<GatewayView> {
    let cfg = input.validate()?;
    let billing = crate::domain::billing::settings::load(pool).await?;
    cfg.check_currency(billing.currency()?)
        .map_err(|e| match e {
            UnitError::NoMerchantAccount { currency } => DomainError::invalid(
                format!("merchant_accounts.{currency}"),
                "currency_has_no_merchant_account",
                format!(
                    "the billing currency is {currency}: merchant_accounts needs an account in it"
                ),
            ),
            e => e.into(),
        })?;
    let previous = store(pool, master_key, actor, &cfg).await?;
    let mut view = public_view(pool).await?;
    if let Some(previous) = previous {
        view.warning = Some(format!(
            "switched from {previous} to {}: cards stored at {previous} are not used any more; developers must add a card again",
            cfg.provider()
        ));
    }
    Ok(view)
}

/// Shown on a Braintree configuration stored before merchant accounts existed.
pub const NO_MERCHANT_ACCOUNTS: &str = "no merchant accounts are configured: every Braintree charge is refused until merchant_accounts names one per currency charged";

/// Whether the stored gateway (if any) can charge in `currency`: the provider's units and, for
/// Braintree, a merchant account in it. Reads public fields only (no master key needed).
pub async fn check_stored(tx: &mut crate::store::Tx, currency: Currency) -> DomainResult<()> {
    let row: Option<GatewayRow> = sqlx::query_as(SELECT_GATEWAY)
        .fetch_optional(&mut **tx)
        .await?;
    if let Some(g) = row.map(StoredGateway::try_from).transpose()? {
        super::units::check_gateway(g.kind, &g.merchant_accounts()?, currency)?;
    }
    Ok(())
}

/// The configured gateway with its secrets opened, or `None` when none is configured.
pub async fn load(
    pool: &Pool,
    master_key: Option<&[u8; 32]>,
) -> DomainResult<Option<GatewayConfig>> {
    let Some(g) = stored(pool).await? else {
        return Ok(None);
    };
    let merchant_accounts = g.merchant_accounts()?;
    let d = g.doc;
    let get = |name: &str, f: Option<StoredField>| -> DomainResult<Option<String>> {
        match f {
            None => Ok(None),
            Some(StoredField::Plain(s)) => Ok(Some(s)),
            Some(StoredField::Sealed { sealed, .. }) => {
                let key = master_key.ok_or_else(|| {
                    DomainError::Internal(
                        "TOLLGATE_MASTER_KEY is not set: gateway secrets cannot be opened".into(),
                    )
                })?;
                let plain = open(key, &sealed, sealed_at(name)).map_err(|e| {
                    // Never fall back to using it: a value moved here from another field would
                    // be sent as this one.
                    tracing::error!(field = name, "gateway secret {name} refused: {e}");
                    DomainError::Internal(format!("gateway secret {name} {e}"))
                })?;
                Ok(Some(String::from_utf8_lossy(&plain).into_owned()))
            }
        }
    };
    let req = |name: &str, f: Option<StoredField>| -> DomainResult<String> {
        get(name, f)?
            .ok_or_else(|| DomainError::Internal(format!("gateway setting {name} missing")))
    };
    Ok(Some(match g.kind {
        ProviderKind::Stripe => GatewayConfig::Stripe {
            secret_key: req("secret_key", d.secret_key)?,
            publishable_key: req("publishable_key", d.publishable_key)?,
            webhook_secret: req("webhook_secret", d.webhook_secret)?,
            api_base: get("api_base", d.api_base)?,
            js_url: get("js_url", d.js_url)?,
        },
        ProviderKind::Braintree => GatewayConfig::Braintree {
            merchant_id: req("merchant_id", d.merchant_id)?,
            public_key: req("public_key", d.public_key)?,
            private_key: req("private_key", d.private_key)?,
            environment: {
                let e = req("environment", d.environment)?;
                BraintreeEnvironment::parse(&e).ok_or_else(|| {
                    DomainError::Internal(format!("unknown stored Braintree environment {e:?}"))
                })?
            },
            api_base: get("api_base", d.api_base)?,
            js_url: get("js_url", d.js_url)?,
            merchant_accounts,
        },
    }))
}

/// Re-seals gateway secrets still in the first sealed format (no associated data) in the current
/// one, bound to their field; run at start-up, before anything opens them. Returns how many were
/// re-sealed. A value that does not open with this key is left as it is (and refused when used).
/// The row is replaced only if nobody changed it meanwhile (another replica starting, an admin
/// saving the settings).
pub async fn reseal_first_format(pool: &Pool, key: &[u8; 32]) -> Result<usize, sqlx::Error> {
    let row: Option<(String,)> = sqlx::query_as("SELECT config FROM payment_gateway WHERE id = 1")
        .fetch_optional(pool)
        .await?;
    let Some((config,)) = row else { return Ok(0) };
    let Ok(Value::Object(mut doc)) = serde_json::from_str::<Value>(&config) else {
        return Ok(0);
    };
    let mut resealed = 0;
    for name in SECRETS {
        let Some(slot) = doc.get_mut(*name).and_then(|v| v.get_mut("sealed")) else {
            continue;
        };
        let Some(sealed) = slot.as_str().filter(|s| !s.starts_with(SEALED_V2_PREFIX)) else {
            continue;
        };
        match open_v1(key, sealed) {
            Some(plain) => {
                *slot = json!(seal(key, &plain, sealed_at(name)));
                resealed += 1;
            }
            None => tracing::error!(
                field = name,
                "gateway secret {name} (first sealed format) does not open with this TOLLGATE_MASTER_KEY; left as it is"
            ),
        }
    }
    if resealed > 0 {
        let done =
            sqlx::query("UPDATE payment_gateway SET config = $1 WHERE id = 1 AND config = $2")
                .bind(Value::Object(doc).to_string())
                .bind(&config)
                .execute(pool)
                .await?;
        if done.rows_affected() == 0 {
            return Ok(0);
        }
    }
    Ok(resealed)
}
