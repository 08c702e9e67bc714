//! The access domain over a fresh in-memory database: tokens are found by their secret only
//! while live, their answers keep the JSON the API has always sent, sessions end with their token.

use serde_json::json;

use super::tokens::{Scope, TokenCheck};
use super::{account_tokens, sessions, tokens};
use crate::domain::audit::Actor;
use crate::domain::DomainError;
use crate::store::{self, Pool};

async fn pool() -> Pool {
    let pool = store::connect_in_memory()
        .await
        .expect("in-memory database");
    store::migrate(&pool).await.expect("migrations");
    pool
}

#[tokio::test]
async fn admin_tokens_are_checked_by_their_secret_while_live() {
    let pool = pool().await;
    let created = tokens::insert(
        &pool,
        &crate::domain::audit::Actor::cli(),
        "ci",
        Scope::Read,
        None,
    )
    .await
    .unwrap();
    let id = created.admin_token.id.clone();
    assert_eq!(
        tokens::check(&pool, None, &created.token).await.unwrap(),
        TokenCheck::Valid {
            id: id.clone(),
            scope: Scope::Read
        }
    );
    assert_eq!(
        tokens::check(&pool, Some(&crate::secrets::sha256_hex("boot")), "boot")
            .await
            .unwrap(),
        TokenCheck::Valid {
            id: "env".into(),
            scope: Scope::Write
        }
    );
    sqlx::query("UPDATE admin_tokens SET expires_at = 1")
        .execute(&pool)
        .await
        .unwrap();
    assert_eq!(
        tokens::check(&pool, None, &created.token).await.unwrap(),
        TokenCheck::Expired
    );
    tokens::revoke(&pool, &crate::domain::audit::Actor::cli(), id.clone())
        .await
        .unwrap();
    assert_eq!(
        tokens::check(&pool, None, &created.token).await.unwrap(),
        TokenCheck::Unknown
    );
    assert!(matches!(
        tokens::revoke(&pool, &crate::domain::audit::Actor::cli(), id).await,
        Err(DomainError::NotFound { .. })
    ));
}

/// A scope the database holds that Tollgate never wrote is an internal error, not read-only.
#[tokio::test]
async fn a_corrupt_stored_scope_is_an_error() {
    let pool = pool().await;
    let created = tokens::insert(
        &pool,
        &crate::domain::audit::Actor::cli(),
        "ci",
        Scope::Write,
        None,
    )
    .await
    .unwrap();
    sqlx::query("UPDATE admin_tokens SET scope = 'admin'")
        .execute(&pool)
        .await
        .unwrap();
    assert!(matches!(
        tokens::check(&pool, None, &created.token).await,
        Err(DomainError::Internal(_))
    ));
}

#[tokio::test]
async fn admin_sessions_end_with_their_token() {
    let pool = pool().await;
    let created = tokens::insert(
        &pool,
        &crate::domain::audit::Actor::cli(),
        "ci",
        Scope::Write,
        None,
    )
    .await
    .unwrap();
    let id = created.admin_token.id.clone();
    let cookie = sessions::start_admin(&pool, &id, Scope::Write, None)
        .await
        .unwrap();
    let grant = sessions::current_admin(&pool, &cookie, None).await.unwrap();
    assert_eq!(
        grant.map(|g| (g.token_id, g.scope)),
        Some((id.clone(), Scope::Write))
    );
    tokens::revoke(&pool, &crate::domain::audit::Actor::cli(), id)
        .await
        .unwrap();
    assert!(sessions::current_admin(&pool, &cookie, None)
        .await
        .unwrap()
        .is_none());
    // A session of TOLLGATE_ADMIN_TOKEN lasts only while the variable holds the same token.
    let env = crate::secrets::sha256_hex("boot");
    let cookie = sessions::start_admin(&pool, "env", Scope::Write, Some(&env))
        .await
        .unwrap();
    assert!(sessions::current_admin(&pool, &cookie, Some(&env))
        .await
        .unwrap()
        .is_some());
    assert!(sessions::current_admin(&pool, &cookie, Some("other"))
        .await
        .unwrap()
        .is_none());
}

#[tokio::test]
async fn account_tokens_keep_their_json_and_their_account() {
    let pool = pool().await;
    sqlx::query("INSERT INTO accounts (id, name, email, billing_address, vat_rate, vat_code, created_at, updated_at) VALUES ('acct_1', 'A', 'a@example.com', '{}', '0', NULL, 1, 1)")
        .execute(&pool)
        .await
        .unwrap();
    let missing = account_tokens::create(&pool, &Actor::cli(), "acct_2", Default::default()).await;
    assert!(matches!(missing, Err(DomainError::NotFound { .. })));
    let created = account_tokens::create(&pool, &Actor::cli(), "acct_1", Default::default())
        .await
        .unwrap();
    let body = serde_json::to_value(&created).unwrap();
    let id = body["id"].as_str().unwrap().to_string();
    assert_eq!(
        body,
        json!({"object": "account_token", "id": id, "account_id": "acct_1", "name": "developer",
               "token": created.token, "created_at": body["created_at"], "expires_at": null})
    );
    assert_eq!(
        account_tokens::check(&pool, &created.token).await.unwrap(),
        account_tokens::AccountTokenCheck::Valid {
            account_id: "acct_1".into()
        }
    );
    let listed =
        serde_json::to_value(account_tokens::list(&pool, "acct_1").await.unwrap()).unwrap();
    assert_eq!(listed["data"][0]["id"], json!(id));
    assert_eq!(listed["has_more"], json!(false));
    assert_eq!(listed["next_cursor"], json!(null));
    assert!(
        account_tokens::revoke(&pool, &Actor::cli(), "acct_2", id.clone())
            .await
            .is_err()
    );
    let deleted = account_tokens::revoke(&pool, &Actor::cli(), "acct_1", id.clone())
        .await
        .unwrap();
    assert_eq!(
        serde_json::to_value(deleted).unwrap(),
        json!({"object": "account_token", "id": id, "deleted": true})
    );
    assert_eq!(
        account_tokens::check(&pool, &created.token).await.unwrap(),
        account_tokens::AccountTokenCheck::Unknown
    );
}
