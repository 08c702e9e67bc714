//! Developer portal users: one per account created by signing up, identified by email (stored
//! lower-case), with an Argon2id password hash.
//!
//! Sign-up does not tell whether an email already has an account: a taken email gets the same
//! answer (a session cookie value) after the same work (an Argon2 hash, one write transaction)
//! as a new one. For a taken email the value is a random token no session has, and the account's
//! owner is told by email that someone tried to sign up with the address (at most one such email
//! a day).

use super::passwords::{hash_password, verify_password, DUMMY_HASH};
use super::sessions;
use crate::domain::billing::{calendar, outbox};
use crate::domain::DomainResult;
use crate::rate_limit::Limiter;
use crate::secrets::{new_id, new_session_token};
use crate::store::{begin_write, now, Pool};

/// A checked sign-up: the account's name, the email (lower-case), a password of allowed length.
pub struct SignUp {
    pub name: String,
    pub email: String,
    pub password: String,
}

/// Signs up: a new account with its user, signed in (the session's cookie value), or for a taken
/// email the same kind of answer and the owner warned (see the module's documentation).
pub async fn sign_up(pool: &Pool, limits: &Limiter, s: SignUp) -> DomainResult<String> {
    let taken: Option<String> = sqlx::query_scalar("SELECT id FROM portal_users WHERE email = $1")
        .bind(&s.email)
        .fetch_optional(pool)
        .await?;
    match taken {
        None => create_user(pool, limits, s).await,
        Some(_) => sign_up_taken(pool, limits, &s.email, s.password).await,
    }
}

async fn create_user(pool: &Pool, limits: &Limiter, s: SignUp) -> DomainResult<String> {
    let hash = hash_password(limits, s.password).await?;
    let account_id = new_id("acct");
    let user_id = new_id("usr");
    let t = now();
    let mut tx = begin_write(pool).await?;
    sqlx::query(
        "INSERT INTO accounts (id, name, email, billing_address, vat_rate, vat_code, created_at, updated_at) VALUES ($1, $2, $3, '{}', '0', NULL, $4, $4)",
    )
    .bind(&account_id)
    .bind(&s.name)
    .bind(&s.email)
    .bind(t)
    .execute(&mut *tx)
    .await?;
    sqlx::query("INSERT INTO portal_users (id, account_id, email, password_hash, created_at) VALUES ($1, $2, $3, $4, $5)")
        .bind(&user_id)
        .bind(&account_id)
        .bind(&s.email)
        .bind(hash)
        .bind(t)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    sessions::start(pool, &user_id).await
}

/// A sign-up with an email that has an account: the same work as [`create_user`] (an Argon2 hash
/// of the password, one write transaction) and a cookie value of the same form, but it opens no
/// session. The owner gets an email (one a day at most, by its dedupe key) saying someone tried.
async fn sign_up_taken(
    pool: &Pool,
    limits: &Limiter,
    email: &str,
    password: String,
) -> DomainResult<String> {
    hash_password(limits, password).await?;
    let t = now();
    let mut tx = begin_write(pool).await?;
    let notice = outbox::Email {
        dedupe_key: format!("sign_up_taken:{email}:{}", calendar::day_of(t)),
        kind: outbox::EmailKind::SignUpTaken,
        recipient: email.to_string(),
        subject: "Someone tried to sign up with your email".into(),
        body: format!(
            "Hello,\n\nsomeone tried to create a developer account with {email}, which already has \
             one. If it was you, sign in with your password instead.\nIf it was not you, nothing \
             changed: no one got access to your account.\n"
        ),
        invoice_id: None,
    };
    outbox::enqueue(&mut tx, &notice, t).await?;
    tx.commit().await?;
    Ok(new_session_token())
}

#[derive(sqlx::FromRow)]
struct Credentials {
    id: String,
    password_hash: String,
}

/// The user whose email and password these are, if any. An unknown email and a wrong password
/// look the same, and take the same time (a dummy verification), so sign-in does not tell which
/// emails have accounts.
pub async fn authenticate(
    pool: &Pool,
    limits: &Limiter,
    email: &str,
    password: String,
) -> DomainResult<Option<String>> {
    let found: Option<Credentials> =
        sqlx::query_as("SELECT id, password_hash FROM portal_users WHERE email = $1")
            .bind(email)
            .fetch_optional(pool)
            .await?;
    let (user_id, stored) = match found {
        Some(c) => (Some(c.id), c.password_hash),
        None => (None, DUMMY_HASH.to_string()),
    };
    let ok = verify_password(limits, password, stored).await?;
    Ok(user_id.filter(|_| ok))
}
