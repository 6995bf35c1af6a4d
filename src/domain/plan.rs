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
        match self {
            Plan::Starter => 49,
            Plan::Pro => 199,
            Plan::Enterprise => 999,
        }
    }
}

impl fmt::Display for Plan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
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
    fn round_trips_through_as_str() {
        for p in Plan::ALL {
            assert_eq!(p.as_str().parse::<Plan>().unwrap(), p);
        }
    }
}
