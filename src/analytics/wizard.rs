//! The setup wizard and its A/B test (seed "Failure 2"). Two variants: `quick` (two steps: add a
//! document or skip to the sample data, then run a query) and `guided` (upload your own
//! document, run a query, create an integration key, make a first call with it). A tenant's
//! variant comes from its id and `WIZARD_SPLIT`, is stored at signup (or, for tenants older
//! than the wizard, the first time it is needed), and is kept even if the split changes. A step is done when the server saw the real action; a skip
//! is recorded.

use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::domain::TenantId;
use crate::store::{Store, StoreResult, now_ms};
use crate::{with_pool, with_reader};

/// A wizard variant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Variant {
    Quick,
    Guided,
}

impl Variant {
    pub fn as_str(self) -> &'static str {
        match self {
            Variant::Quick => "quick",
            Variant::Guided => "guided",
        }
    }

    pub fn parse(s: &str) -> Option<Variant> {
        match s {
            "quick" => Some(Variant::Quick),
            "guided" => Some(Variant::Guided),
            _ => None,
        }
    }

    /// The variant an anonymous caller sees (the seed's curl).
    pub const DEFAULT: Variant = Variant::Quick;

    /// The variant of `tenant` under a split of `quick_percent`: a stable hash of the id, so
    /// the same tenant always lands on the same side.
    pub fn assign(tenant: &TenantId, quick_percent: u32) -> Variant {
        let digest = Sha256::digest(tenant.as_str().as_bytes());
        let bucket = u32::from(u16::from_be_bytes([digest[0], digest[1]])) % 100;
        if bucket < quick_percent {
            Variant::Quick
        } else {
            Variant::Guided
        }
    }

    /// The variant's steps, in order (numbered from 1).
    pub fn steps(self) -> &'static [StepDef] {
        match self {
            Variant::Quick => &QUICK,
            Variant::Guided => &GUIDED,
        }
    }
}

/// What completes a step, as the server sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Completion {
    /// Any document of the tenant's own (a skip counts: the sample data is there).
    Document,
    Query,
    /// A key the tenant created itself.
    OwnKey,
    /// A `/v1` call made with such a key (`integration_configured`).
    Integration,
}

/// One step as defined.
#[derive(Debug)]
pub struct StepDef {
    pub title: &'static str,
    pub description: &'static str,
    /// The API call that completes it.
    pub action: &'static str,
    pub completion: Completion,
}

const QUICK: [StepDef; 2] = [
    StepDef {
        title: "Add a document",
        description: "Upload one of your own documents, or skip this step and use the sample documents already in your workspace.",
        action: "POST /v1/documents",
        completion: Completion::Document,
    },
    StepDef {
        title: "Run your first query",
        description: "Ask a question in plain words and get the most relevant passages back.",
        action: "POST /v1/query",
        completion: Completion::Query,
    },
];

const GUIDED: [StepDef; 4] = [
    StepDef {
        title: "Upload your own document",
        description: "Send a document of your own as JSON or plain text; it is chunked and embedded for search.",
        action: "POST /v1/documents",
        completion: Completion::Document,
    },
    StepDef {
        title: "Run a query",
        description: "Query your workspace and check that your document comes back first.",
        action: "POST /v1/query",
        completion: Completion::Query,
    },
    StepDef {
        title: "Create an integration key",
        description: "Create a key for your application with only the scopes it needs.",
        action: "POST /v1/api-keys",
        completion: Completion::OwnKey,
    },
    StepDef {
        title: "Make a first call with it",
        description: "Call the API from your application with the new key.",
        action: "POST /v1/query (with the new key)",
        completion: Completion::Integration,
    },
];

/// A step as a caller sees it (seed fields, plus its number and state).
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Step {
    /// 1-based.
    pub step: u32,
    pub title: &'static str,
    pub description: &'static str,
    pub action: &'static str,
    /// `pending`, `done` or `skipped`; absent for an anonymous caller.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub state: Option<&'static str>,
}

/// A wizard as shown to a caller.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Wizard {
    pub variant: Variant,
    pub steps: Vec<Step>,
}

/// The anonymous wizard: the default variant's steps without states.
pub fn anonymous() -> Wizard {
    Wizard {
        variant: Variant::DEFAULT,
        steps: Variant::DEFAULT
            .steps()
            .iter()
            .enumerate()
            .map(|(i, d)| Step {
                step: i as u32 + 1,
                title: d.title,
                description: d.description,
                action: d.action,
                state: None,
            })
            .collect(),
    }
}

/// The tenant's progress facts that decide the states.
#[derive(Debug, Default, sqlx::FromRow)]
struct Progress {
    first_document_at: Option<i64>,
    first_query_at: Option<i64>,
    integration_at: Option<i64>,
    own_keys: i64,
}

impl crate::store::Tx {
    /// Assigns a new tenant its variant (at signup, so every tenant of the A/B test has one).
    pub async fn assign_wizard_variant(
        &mut self,
        tenant: &TenantId,
        quick_percent: u32,
    ) -> StoreResult<()> {
        crate::with_conn!(&mut *self, |conn| {
            sqlx::query(
                "UPDATE tenant_activation SET variant = COALESCE(variant, $1) WHERE tenant_id = $2",
            )
            .bind(Variant::assign(tenant, quick_percent).as_str())
            .bind(tenant.as_str())
            .execute(&mut *conn)
            .await?;
        });
        Ok(())
    }
}

impl Store {
    /// The tenant's variant, assigned now under `quick_percent` if it has none yet.
    pub async fn wizard_variant(
        &self,
        tenant: &TenantId,
        quick_percent: u32,
    ) -> StoreResult<Variant> {
        let held: Option<Option<String>> = with_reader!(self, |pool| {
            sqlx::query_scalar("SELECT variant FROM tenant_activation WHERE tenant_id = $1")
                .bind(tenant.as_str())
                .fetch_optional(pool)
                .await?
        });
        if let Some(v) = held.flatten().as_deref().and_then(Variant::parse) {
            return Ok(v);
        }
        let assigned = Variant::assign(tenant, quick_percent);
        let stored: Option<Option<String>> = with_pool!(self, |pool| {
            sqlx::query_scalar(
                "UPDATE tenant_activation SET variant = COALESCE(variant, $1) WHERE tenant_id = $2 RETURNING variant",
            )
            .bind(assigned.as_str())
            .bind(tenant.as_str())
            .fetch_optional(pool)
            .await?
        });
        Ok(stored
            .flatten()
            .as_deref()
            .and_then(Variant::parse)
            .unwrap_or(assigned))
    }

    /// The tenant's wizard with each step's state.
    pub async fn wizard(&self, tenant: &TenantId, quick_percent: u32) -> StoreResult<Wizard> {
        let variant = self.wizard_variant(tenant, quick_percent).await?;
        let progress: Progress = with_reader!(self, |pool| {
            sqlx::query_as(
                "SELECT a.first_document_at, a.first_query_at, a.integration_at, \
                 (SELECT COUNT(*) FROM api_keys k WHERE k.tenant_id = a.tenant_id \
                  AND k.name NOT IN ('Default key', 'provisioning: sample data')) AS own_keys \
                 FROM tenant_activation a WHERE a.tenant_id = $1",
            )
            .bind(tenant.as_str())
            .fetch_optional(pool)
            .await?
        })
        .unwrap_or_default();
        let skipped: Vec<i64> = with_reader!(self, |pool| {
            sqlx::query_scalar(
                "SELECT step FROM wizard_skips WHERE tenant_id = $1 AND variant = $2",
            )
            .bind(tenant.as_str())
            .bind(variant.as_str())
            .fetch_all(pool)
            .await?
        });
        let steps = variant
            .steps()
            .iter()
            .enumerate()
            .map(|(i, d)| {
                let n = i as u32 + 1;
                let done = match d.completion {
                    Completion::Document => progress.first_document_at.is_some(),
                    Completion::Query => progress.first_query_at.is_some(),
                    Completion::OwnKey => progress.own_keys > 0,
                    Completion::Integration => progress.integration_at.is_some(),
                };
                let state = if done {
                    "done"
                } else if skipped.contains(&i64::from(n)) {
                    "skipped"
                } else {
                    "pending"
                };
                Step {
                    step: n,
                    title: d.title,
                    description: d.description,
                    action: d.action,
                    state: Some(state),
                }
            })
            .collect();
        Ok(Wizard { variant, steps })
    }

    /// Records, once per tenant, that it was shown the wizard (`wizard_step_viewed` for the
    /// first step still pending) and each step it has done (`wizard_step_completed`): a bit per
    /// step on the tenant's row (which the rollups count, so they survive event retention), and
    /// the event. Nothing is written when every bit is already set.
    pub async fn note_wizard_progress(
        &self,
        tenant: &TenantId,
        wizard: &Wizard,
    ) -> StoreResult<()> {
        let variant = wizard.variant.as_str();
        let bit = |step: u32| 1_i64 << (step - 1);
        let completed: i64 = wizard
            .steps
            .iter()
            .filter(|s| s.state == Some("done"))
            .map(|s| bit(s.step))
            .sum();
        let viewed = wizard
            .steps
            .iter()
            .find(|s| s.state == Some("pending"))
            .map_or(0, |s| bit(s.step));
        let held: Option<(i64, i64)> = with_reader!(self, |pool| {
            sqlx::query_as(
                "SELECT wizard_viewed, wizard_completed FROM tenant_activation WHERE tenant_id = $1",
            )
            .bind(tenant.as_str())
            .fetch_optional(pool)
            .await?
        });
        let Some((held_viewed, held_completed)) = held else {
            return Ok(());
        };
        let (new_viewed, new_completed) = (viewed & !held_viewed, completed & !held_completed);
        if new_viewed == 0 && new_completed == 0 {
            return Ok(());
        }
        let now = now_ms();
        let mut tx = self.begin().await?;
        crate::with_conn!(&mut tx, |conn| {
            sqlx::query(
                "UPDATE tenant_activation SET wizard_viewed = wizard_viewed | $1, \
                 wizard_completed = wizard_completed | $2 WHERE tenant_id = $3",
            )
            .bind(new_viewed)
            .bind(new_completed)
            .bind(tenant.as_str())
            .execute(&mut *conn)
            .await?;
            for (kind, bits) in [("viewed", new_viewed), ("completed", new_completed)] {
                for step in (1..=wizard.steps.len() as u32).filter(|s| bits & bit(*s) != 0) {
                    sqlx::query(sqlx::AssertSqlSafe(format!(
                        "{} ON CONFLICT (tenant_id, client_event_id) DO NOTHING",
                        super::INSERT_EVENT_SQL
                    )))
                    .bind(format!("aev_{}", ulid::Ulid::new()))
                    .bind(tenant.as_str())
                    .bind(format!("wizard_step_{kind}"))
                    .bind("server")
                    .bind(format!("wizard:{kind}:{variant}:{step}"))
                    .bind(serde_json::json!({"step": step, "variant": variant}).to_string())
                    .bind(0_i64)
                    .bind(now)
                    .execute(&mut *conn)
                    .await?;
                }
            }
        });
        tx.commit().await?;
        Ok(())
    }

    /// Records that the tenant skipped step `step` of its variant (once), with its
    /// `wizard_step_skipped` event. False when the variant has no such step.
    pub async fn skip_wizard_step(
        &self,
        tenant: &TenantId,
        quick_percent: u32,
        step: u32,
    ) -> StoreResult<bool> {
        let variant = self.wizard_variant(tenant, quick_percent).await?;
        if step == 0 || step as usize > variant.steps().len() {
            return Ok(false);
        }
        let now = now_ms();
        let mut tx = self.begin().await?;
        crate::with_conn!(&mut tx, |conn| {
            let n = sqlx::query(
                "INSERT INTO wizard_skips (tenant_id, variant, step, at) VALUES ($1, $2, $3, $4) \
                 ON CONFLICT (tenant_id, variant, step) DO NOTHING",
            )
            .bind(tenant.as_str())
            .bind(variant.as_str())
            .bind(i64::from(step))
            .bind(now)
            .execute(&mut *conn)
            .await?
            .rows_affected();
            if n == 1 {
                sqlx::query(
                    "UPDATE tenant_activation SET wizard_skipped = wizard_skipped | $1 WHERE tenant_id = $2",
                )
                .bind(1_i64 << (step - 1))
                .bind(tenant.as_str())
                .execute(&mut *conn)
                .await?;
                sqlx::query(super::INSERT_EVENT_SQL)
                    .bind(format!("aev_{}", ulid::Ulid::new()))
                    .bind(tenant.as_str())
                    .bind("wizard_step_skipped")
                    .bind("server")
                    .bind(None::<String>)
                    .bind(
                        serde_json::json!({"step": step, "variant": variant.as_str()}).to_string(),
                    )
                    .bind(0_i64)
                    .bind(now)
                    .execute(&mut *conn)
                    .await?;
            }
        });
        tx.commit().await?;
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn assignment_is_stable_and_follows_the_split() {
        let ids: Vec<TenantId> = (0..2000).map(|_| TenantId::generate()).collect();
        for id in &ids[..20] {
            assert_eq!(Variant::assign(id, 50), Variant::assign(id, 50));
            assert_eq!(Variant::assign(id, 0), Variant::Guided);
            assert_eq!(Variant::assign(id, 100), Variant::Quick);
        }
        let quick = ids
            .iter()
            .filter(|id| Variant::assign(id, 50) == Variant::Quick)
            .count();
        assert!((850..=1150).contains(&quick), "about half: {quick} of 2000");
        let quick = ids
            .iter()
            .filter(|id| Variant::assign(id, 20) == Variant::Quick)
            .count();
        assert!(
            (300..=500).contains(&quick),
            "about a fifth: {quick} of 2000"
        );
    }

    #[test]
    fn the_variants_have_their_steps() {
        assert_eq!(Variant::Quick.steps().len(), 2);
        assert_eq!(Variant::Guided.steps().len(), 4);
        let anon = anonymous();
        assert_eq!(anon.variant, Variant::Quick);
        assert!(anon.steps.iter().all(|s| s.state.is_none()));
        assert_eq!(anon.steps[1].action, "POST /v1/query");
    }
}
