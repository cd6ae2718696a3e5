//! `[model.price]`: prices a typo would produce (negative, NaN) are refused.

use super::super::error::SpecError;
use super::super::price::PriceSpec;

impl PriceSpec {
    /// Rejects prices a typo would produce (negative, NaN).
    pub fn validate(&self) -> Result<(), SpecError> {
        let fields = [
            ("input_per_million", Some(self.input_per_million)),
            ("output_per_million", Some(self.output_per_million)),
            ("batch_input_per_million", self.batch_input_per_million),
            ("batch_output_per_million", self.batch_output_per_million),
        ];
        for (name, value) in fields {
            if let Some(v) = value {
                if !v.is_finite() || v < 0.0 {
                    return Err(SpecError::invalid(
                        format!("model.price.{name}"),
                        format!("{v} is not a price; give a number ≥ 0 (per million tokens)"),
                    ));
                }
            }
        }
        if self.currency.trim().is_empty() {
            return Err(SpecError::invalid(
                "model.price.currency",
                "must not be empty when set (e.g. \"USD\")",
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn price() -> PriceSpec {
        PriceSpec {
            input_per_million: 0.15,
            output_per_million: 0.60,
            batch_input_per_million: None,
            batch_output_per_million: None,
            currency: "USD".into(),
        }
    }

    #[test]
    fn negative_prices_are_refused() {
        let mut p = price();
        p.output_per_million = -1.0;
        let e = p.validate().unwrap_err().to_string();
        assert!(e.contains("model.price.output_per_million"), "{e}");
    }
}
