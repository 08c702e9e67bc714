//! Services: what gateways protect. Each has the metric `hits` from birth (methods roll up into
//! it), its other metrics ([`super::metrics`]) and its mapping rules ([`super::mapping_rules`]).

use serde::{Deserialize, Serialize};

use super::{check_name, revision, Deleted};
use crate::domain::audit::{self, Actor, Changes, Object};
use crate::domain::page::page;
use crate::domain::{DomainError, DomainResult, Page, PageRequest};
use crate::secrets::new_id;
use crate::store::{begin_write, is_unique_violation, now, Pool};

/// A service as the admin API shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Service {
    /// Always `"service"`.
    pub object: &'static str,
    pub id: String,
    pub name: String,
    pub created_at: i64,
    pub updated_at: i64,
}

#[derive(sqlx::FromRow)]
struct ServiceRow {
    id: String,
    name: String,
    created_at: i64,
    updated_at: i64,
}

impl From<ServiceRow> for Service {
    fn from(r: ServiceRow) -> Self {
        Service {
            object: "service",
            id: r.id,
            name: r.name,
            created_at: r.created_at,
            updated_at: r.updated_at,
        }
    }
}

/// Creating or renaming a service.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ServiceInput {
    /// 1-200 characters, unique.
    pub name: Option<String>,
}

const SERVICE_SELECT: &str = "SELECT id, name, created_at, updated_at FROM services";

pub async fn get_service<'e>(
    pool: impl sqlx::Executor<'e, Database = sqlx::Any>,
    id: &str,
) -> DomainResult<Service> {
    sqlx::query_as::<_, ServiceRow>(&format!("{SERVICE_SELECT} WHERE id = $1"))
        .bind(id)
        .fetch_optional(pool)
        .await?
        .map(Service::from)
        .ok_or_else(|| DomainError::not_found("service", id))
}

pub async fn list_services(pool: &Pool, req: &PageRequest) -> DomainResult<Page<Service>> {
    let rows: Vec<ServiceRow> = sqlx::query_as(&format!(
        "{SERVICE_SELECT} WHERE id > $1 ORDER BY id LIMIT $2"
    ))
    .bind(&req.after)
    .bind(req.limit + 1)
    .fetch_all(pool)
    .await?;
    let services = rows.into_iter().map(Service::from).collect();
    Ok(page(services, req.limit, |s: &Service| &s.id))
}

fn name_taken(name: &str) -> DomainError {
    DomainError::Conflict {
        code: "name_taken",
        message: format!("a service named {name:?} exists"),
        param: Some("name".into()),
    }
}

/// A new service with its `hits` metric.
pub async fn create_service(
    pool: &Pool,
    actor: &Actor,
    input: &ServiceInput,
) -> DomainResult<Service> {
    let name = check_name("name", input.name.as_deref().unwrap_or(""))?;
    let id = new_id("svc");
    let t = now();
    let mut tx = begin_write(pool).await?;
    let inserted = sqlx::query(
        "INSERT INTO services (id, name, created_at, updated_at) VALUES ($1, $2, $3, $3)",
    )
    .bind(&id)
    .bind(&name)
    .bind(t)
    .execute(&mut *tx)
    .await;
    match inserted {
        Err(e) if is_unique_violation(&e) => return Err(name_taken(&name)),
        other => {
            other?;
        }
    }
    // Every service has `hits`, the metric methods roll up into (3scale's model).
    sqlx::query("INSERT INTO metrics (id, service_id, name, unit, parent_id, created_at) VALUES ($1, $2, 'hits', 'hit', NULL, $3)")
        .bind(new_id("met"))
        .bind(&id)
        .bind(t)
        .execute(&mut *tx)
        .await?;
    let service = Service {
        object: "service",
        id,
        name,
        created_at: t,
        updated_at: t,
    };
    let changes = Changes::between(None, Some(&service))?;
    let object = Object {
        kind: "service",
        id: &service.id,
    };
    audit::record(&mut tx, actor, "service.created", object, &changes).await?;
    revision::bump(&mut tx).await?;
    tx.commit().await?;
    Ok(service)
}

/// Renames a service (a missing name changes nothing).
pub async fn update_service(
    pool: &Pool,
    actor: &Actor,
    id: &str,
    input: &ServiceInput,
) -> DomainResult<Service> {
    get_service(pool, id).await?;
    if let Some(name) = &input.name {
        let name = check_name("name", name)?;
        let mut tx = begin_write(pool).await?;
        let before = get_service(&mut *tx, id).await?;
        let r = sqlx::query("UPDATE services SET name = $2, updated_at = $3 WHERE id = $1")
            .bind(id)
            .bind(&name)
            .bind(now())
            .execute(&mut *tx)
            .await;
        match r {
            Err(e) if is_unique_violation(&e) => return Err(name_taken(&name)),
            other => {
                other?;
            }
        }
        let after = get_service(&mut *tx, id).await?;
        let changes = Changes::between(Some(&before), Some(&after))?;
        let object = Object {
            kind: "service",
            id,
        };
        audit::record(&mut tx, actor, "service.updated", object, &changes).await?;
        revision::bump(&mut tx).await?;
        tx.commit().await?;
    }
    get_service(pool, id).await
}

/// Deletes a service with its metrics and mapping rules; refused while plans use it.
pub async fn delete_service(pool: &Pool, actor: &Actor, id: &str) -> DomainResult<Deleted> {
    get_service(pool, id).await?;
    let mut tx = begin_write(pool).await?;
    let before = get_service(&mut *tx, id).await?;
    let plans: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM plans WHERE service_id = $1")
        .bind(id)
        .fetch_one(&mut *tx)
        .await?;
    if plans > 0 {
        return Err(DomainError::conflict(
            "service_in_use",
            format!("the service has {plans} plan(s); delete them first"),
        ));
    }
    // Methods before the metrics they point at.
    for sql in [
        "DELETE FROM mapping_rules WHERE service_id = $1",
        "DELETE FROM metrics WHERE service_id = $1 AND parent_id IS NOT NULL",
        "DELETE FROM metrics WHERE service_id = $1",
        "DELETE FROM services WHERE id = $1",
    ] {
        sqlx::query(sql).bind(id).execute(&mut *tx).await?;
    }
    let changes = Changes::between(Some(&before), None)?;
    let object = Object {
        kind: "service",
        id,
    };
    audit::record(&mut tx, actor, "service.deleted", object, &changes).await?;
    revision::bump(&mut tx).await?;
    tx.commit().await?;
    Ok(Deleted::new("service", id))
}
