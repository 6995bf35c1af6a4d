//! Subscription plans.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

use super::FieldError;

/// A plan a tenant subscribes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Plan {
    Starter,
    Pro,
    Enterprise,
}

impl Plan {
    pub const ALL: [Plan; 3] = [Plan::Starter, Plan::Pro, Plan::Enterprise];

    pub fn as_str(self) -> &'static str {
        match self {
            Plan::Starter => "starter",
            Plan::Pro => "pro",
            Plan::Enterprise => "enterprise",
        }
    }

    /// Enterprise deals go through sales instead of self-service checkout.
    pub fn is_sales_assisted(self) -> bool {
        matches!(self, Plan::Enterprise)
    }

    /// Monthly list price in US dollars (seed `example_data.json`).
    pub fn price_monthly_usd(self) -> u32 {
        PlanLimits::default_for(self).price_monthly
    }
}

/// What a plan allows. `None` means unlimited (the seed writes -1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct PlanLimits {
    pub max_documents: Option<u64>,
    /// Bytes of document content stored (sample documents do not count).
    pub max_bytes: Option<u64>,
    /// Chunks (vectors) stored, the measure of what a workspace costs to search.
    pub max_chunks: Option<u64>,
    pub max_queries_per_month: Option<u64>,
    pub max_users: Option<u64>,
    pub price_monthly: u32,
}

impl PlanLimits {
    /// The seed's `example_data.json` `plan_configs`, plus our storage limits (the seed has
    /// none): starter 100 MiB and 50,000 chunks, pro 1 GiB and 500,000, enterprise unlimited.
    pub const fn default_for(plan: Plan) -> Self {
        match plan {
            Plan::Starter => PlanLimits {
                max_documents: Some(1_000),
                max_bytes: Some(100 * 1024 * 1024),
                max_chunks: Some(50_000),
                max_queries_per_month: Some(10_000),
                max_users: Some(3),
                price_monthly: 49,
            },
            Plan::Pro => PlanLimits {
                max_documents: Some(10_000),
                max_bytes: Some(1024 * 1024 * 1024),
                max_chunks: Some(500_000),
                max_queries_per_month: Some(100_000),
                max_users: Some(10),
                price_monthly: 199,
            },
            Plan::Enterprise => PlanLimits {
                max_documents: None,
                max_bytes: None,
                max_chunks: None,
                max_queries_per_month: None,
                max_users: None,
                price_monthly: 999,
            },
        }
    }
}

/// The plan table: every plan's limits, the seed's values unless configured otherwise.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlanTable {
    limits: [PlanLimits; 3],
}

impl Default for PlanTable {
    fn default() -> Self {
        Self {
            limits: Plan::ALL.map(PlanLimits::default_for),
        }
    }
}

impl PlanTable {
    pub fn limits(&self, plan: Plan) -> PlanLimits {
        self.limits[plan as usize]
    }

    /// Applies overrides written `plan.field=value` separated by commas, e.g.
    /// `starter.max_documents=2000,pro.max_queries_per_month=-1` (-1 = unlimited).
    pub fn with_overrides(mut self, spec: &str) -> Result<Self, String> {
        for item in spec.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let (key, value) = item
                .split_once('=')
                .ok_or_else(|| format!("'{item}' is not plan.field=value"))?;
            let (plan, field) = key
                .trim()
                .split_once('.')
                .ok_or_else(|| format!("'{key}' is not plan.field"))?;
            let plan: Plan = plan.parse().map_err(|e: FieldError| e.message)?;
            let value: i64 = value
                .trim()
                .parse()
                .map_err(|_| format!("'{}' in '{item}' is not a whole number", value.trim()))?;
            let limit = match value {
                -1 => None,
                v if v >= 0 => Some(v as u64),
                _ => return Err(format!("'{item}': use -1 for unlimited, or a number ≥ 0")),
            };
            let l = &mut self.limits[plan as usize];
            match field.trim() {
                "max_documents" => l.max_documents = limit,
                "max_bytes" => l.max_bytes = limit,
                "max_chunks" => l.max_chunks = limit,
                "max_queries_per_month" => l.max_queries_per_month = limit,
                "max_users" => l.max_users = limit,
                "price_monthly" => {
                    l.price_monthly = limit
                        .and_then(|v| u32::try_from(v).ok())
                        .ok_or_else(|| format!("'{item}': a price must be a number ≥ 0"))?
                }
                other => {
                    return Err(format!(
                        "unknown plan field '{other}': use max_documents, max_bytes, max_chunks, max_queries_per_month, max_users or price_monthly"
                    ));
                }
            }
        }
        Ok(self)
    }

    /// The cheapest plan whose `pick` limit is above `needed` (None = no plan lifts it).
    pub fn plan_lifting(
        &self,
        needed: u64,
        pick: impl Fn(&PlanLimits) -> Option<u64>,
    ) -> Option<Plan> {
        Plan::ALL
            .into_iter()
            .find(|p| pick(&self.limits(*p)).is_none_or(|max| max > needed))
    }
}

impl fmt::Display for Plan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

impl FromStr for Plan {
    type Err = FieldError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "starter" => Ok(Plan::Starter),
            "pro" => Ok(Plan::Pro),
            "enterprise" => Ok(Plan::Enterprise),
            _ => Err(FieldError::new(
                "plan",
                "invalid_plan",
                format!("unknown plan '{s}': choose one of starter, pro, enterprise"),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_known_plans_case_insensitively() {
        assert_eq!("Pro".parse::<Plan>().unwrap(), Plan::Pro);
        assert_eq!("starter".parse::<Plan>().unwrap(), Plan::Starter);
        assert_eq!(" ENTERPRISE ".parse::<Plan>().unwrap(), Plan::Enterprise);
    }

    #[test]
    fn refuses_unknown_plan_naming_the_field() {
        let err = "gold".parse::<Plan>().unwrap_err();
        assert_eq!(err.field, "plan");
        assert!(err.message.contains("gold"));
    }

    #[test]
    fn defaults_are_the_seed_plan_configs() {
        let seed: serde_json::Value = serde_json::from_str(include_str!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/data/plan_configs.json"
        )))
        .unwrap();
        let table = PlanTable::default();
        let opt = |v: &serde_json::Value| match v.as_i64().unwrap() {
            -1 => None,
            n => Some(n as u64),
        };
        for p in Plan::ALL {
            let s = &seed[p.as_str()];
            let l = table.limits(p);
            assert_eq!(l.max_documents, opt(&s["max_documents"]), "{p}");
            assert_eq!(
                l.max_queries_per_month,
                opt(&s["max_queries_per_month"]),
                "{p}"
            );
            assert_eq!(l.max_users, opt(&s["max_users"]), "{p}");
            assert_eq!(
                i64::from(l.price_monthly),
                s["price_monthly"].as_i64().unwrap()
            );
        }
    }

    #[test]
    fn overrides_change_one_field_and_refuse_nonsense() {
        let t = PlanTable::default()
            .with_overrides("starter.max_documents=2, pro.max_queries_per_month=-1")
            .unwrap();
        assert_eq!(t.limits(Plan::Starter).max_documents, Some(2));
        assert_eq!(t.limits(Plan::Starter).max_queries_per_month, Some(10_000));
        assert_eq!(t.limits(Plan::Pro).max_queries_per_month, None);
        let t = PlanTable::default()
            .with_overrides("starter.max_bytes=4096,pro.max_chunks=-1")
            .unwrap();
        assert_eq!(t.limits(Plan::Starter).max_bytes, Some(4096));
        assert_eq!(t.limits(Plan::Pro).max_chunks, None);
        for bad in [
            "starter",
            "gold.max_documents=1",
            "starter.colour=1",
            "starter.max_documents=x",
            "pro.max_users=-5",
        ] {
            assert!(PlanTable::default().with_overrides(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_lifting_plan_is_the_cheapest_with_room() {
        let t = PlanTable::default();
        assert_eq!(t.plan_lifting(1_000, |l| l.max_documents), Some(Plan::Pro));
        assert_eq!(
            t.plan_lifting(10_000, |l| l.max_documents),
            Some(Plan::Enterprise)
        );
        let capped = t.with_overrides("enterprise.max_documents=5").unwrap();
        assert_eq!(capped.plan_lifting(20_000, |l| l.max_documents), None);
    }

    #[test]
    fn round_trips_through_as_str() {
        for p in Plan::ALL {
            assert_eq!(p.as_str().parse::<Plan>().unwrap(), p);
        }
    }
}
