//! Comparing the wizard's variants: activation (first query) per variant, and a two-proportion
//! z-test of the difference with its two-sided p-value and a verdict in plain words.

use serde::Serialize;

/// Fewer tenants than this in either variant: too early to say.
pub const MIN_TENANTS: i64 = 30;
/// The significance level of the verdict.
pub const ALPHA: f64 = 0.05;

/// The standard normal distribution's CDF.
fn normal_cdf(z: f64) -> f64 {
    0.5 * libm::erfc(-z / std::f64::consts::SQRT_2)
}

/// A two-proportion z-test of `x1/n1` against `x2/n2` (pooled standard error): the z score and
/// the two-sided p-value. `None` when either sample is empty or nobody (or everybody) converted.
pub fn two_proportion_z(x1: i64, n1: i64, x2: i64, n2: i64) -> Option<(f64, f64)> {
    if n1 <= 0 || n2 <= 0 {
        return None;
    }
    let (p1, p2) = (x1 as f64 / n1 as f64, x2 as f64 / n2 as f64);
    let pooled = (x1 + x2) as f64 / (n1 + n2) as f64;
    let se = (pooled * (1.0 - pooled) * (1.0 / n1 as f64 + 1.0 / n2 as f64)).sqrt();
    if se == 0.0 {
        return None;
    }
    let z = (p1 - p2) / se;
    Some((z, 2.0 * (1.0 - normal_cdf(z.abs()))))
}

/// One variant's activation.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct VariantResult {
    pub variant: String,
    pub tenants: i64,
    pub activated: i64,
    /// Percent, one decimal.
    pub activation_rate: f64,
    /// Tenants that skipped each step (index 0 = step 1).
    pub skips_by_step: Vec<i64>,
    /// Tenants shown each step as their next one.
    pub views_by_step: Vec<i64>,
    /// Tenants that did each step.
    pub completions_by_step: Vec<i64>,
}

/// The comparison of the two variants.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Comparison {
    pub variants: Vec<VariantResult>,
    pub z: Option<f64>,
    pub p_value: Option<f64>,
    /// "not enough data yet", "quick is better, p = 0.01", or "no clear difference yet, p = 0.34".
    pub verdict: String,
}

/// The verdict on `a` against `b` (activated, tenants).
pub fn compare(a: &VariantResult, b: &VariantResult) -> (Option<f64>, Option<f64>, String) {
    if a.tenants < MIN_TENANTS || b.tenants < MIN_TENANTS {
        return (
            None,
            None,
            format!("not enough data yet (at least {MIN_TENANTS} tenants per variant)"),
        );
    }
    let Some((z, p)) = two_proportion_z(a.activated, a.tenants, b.activated, b.tenants) else {
        return (
            None,
            None,
            "not enough data yet (no difference to test)".into(),
        );
    };
    let rounded = (p * 1000.0).round() / 1000.0;
    let shown = if rounded < 0.001 {
        "p < 0.001".to_string()
    } else {
        format!("p = {rounded}")
    };
    let verdict = if p < ALPHA {
        let better = if z > 0.0 { &a.variant } else { &b.variant };
        format!("{better} is better, {shown}")
    } else {
        format!("no clear difference yet, {shown}")
    };
    (Some((z * 1000.0).round() / 1000.0), Some(rounded), verdict)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(name: &str, activated: i64, tenants: i64) -> VariantResult {
        VariantResult {
            variant: name.into(),
            tenants,
            activated,
            activation_rate: 0.0,
            skips_by_step: vec![],
            views_by_step: vec![],
            completions_by_step: vec![],
        }
    }

    #[test]
    fn the_z_test_matches_a_hand_computed_value() {
        // 60/100 against 40/100: pooled p = 0.5, se = sqrt(0.25 × 0.02) = 0.070711,
        // z = 0.2 / 0.070711 = 2.828427, two-sided p = 2 × (1 − Φ(2.828427)) = 0.004678.
        let (z, p) = two_proportion_z(60, 100, 40, 100).unwrap();
        assert!((z - 2.828427).abs() < 1e-6, "{z}");
        assert!((p - 0.004678).abs() < 1e-5, "{p}");
        let (z2, p2) = two_proportion_z(40, 100, 60, 100).unwrap();
        assert!((z2 + z).abs() < 1e-12 && (p2 - p).abs() < 1e-12);
        assert_eq!(two_proportion_z(0, 10, 0, 10), None);
        assert_eq!(two_proportion_z(1, 0, 1, 10), None);
    }

    #[test]
    fn verdicts_in_plain_words() {
        assert!(
            compare(&v("quick", 5, 10), &v("guided", 1, 10))
                .2
                .starts_with("not enough data yet")
        );
        assert_eq!(
            compare(&v("quick", 60, 100), &v("guided", 40, 100)).2,
            "quick is better, p = 0.005"
        );
        assert_eq!(
            compare(&v("quick", 40, 100), &v("guided", 60, 100)).2,
            "guided is better, p = 0.005"
        );
        assert!(
            compare(&v("quick", 50, 100), &v("guided", 47, 100))
                .2
                .starts_with("no clear difference yet, p = 0.")
        );
    }
}
