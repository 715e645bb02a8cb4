//! Rules that turn a numeric score into a label, written as `"positive > 0"` or
//! `"neutral >= -1 and <= 1"`: readable in a config and on a command line alike.

use std::fmt;
use std::str::FromStr;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScoreOp {
    Lt,
    Le,
    Gt,
    Ge,
}

impl ScoreOp {
    fn holds(self, score: f64, bound: f64) -> bool {
        match self {
            Self::Lt => score < bound,
            Self::Le => score <= bound,
            Self::Gt => score > bound,
            Self::Ge => score >= bound,
        }
    }

    fn symbol(self) -> &'static str {
        match self {
            Self::Lt => "<",
            Self::Le => "<=",
            Self::Gt => ">",
            Self::Ge => ">=",
        }
    }
}

/// A label and the conditions (all must hold) a score must meet to get it.
#[derive(Debug, Clone, PartialEq)]
pub struct ScoreRule {
    pub label: String,
    pub conditions: Vec<(ScoreOp, f64)>,
}

impl ScoreRule {
    pub fn matches(&self, score: f64) -> bool {
        !score.is_nan() && self.conditions.iter().all(|&(op, bound)| op.holds(score, bound))
    }

    /// The label of the first rule that matches, if any.
    pub fn label_for(rules: &[Self], score: f64) -> Option<&str> {
        rules.iter().find(|rule| rule.matches(score)).map(|rule| rule.label.as_str())
    }
}

impl FromStr for ScoreRule {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let expected = || format!("rule '{text}' should look like \"positive > 0\" or \"neutral >= -1 and <= 1\"");
        let mut words = text.split_whitespace();
        let label = words.next().ok_or_else(expected)?.to_owned();
        let mut conditions = Vec::new();
        loop {
            let op = match words.next().ok_or_else(expected)? {
                "<" => ScoreOp::Lt,
                "<=" => ScoreOp::Le,
                ">" => ScoreOp::Gt,
                ">=" => ScoreOp::Ge,
                _ => return Err(expected()),
            };
            let bound: f64 = words.next().ok_or_else(expected)?.parse().map_err(|_| expected())?;
            if bound.is_nan() {
                return Err(expected());
            }
            conditions.push((op, bound));
            match words.next() {
                None => break,
                Some("and") => continue,
                Some(_) => return Err(expected()),
            }
        }
        Ok(Self { label, conditions })
    }
}

impl fmt::Display for ScoreRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.label)?;
        for (i, (op, bound)) in self.conditions.iter().enumerate() {
            let joiner = if i == 0 { " " } else { " and " };
            write!(f, "{joiner}{} {bound}", op.symbol())?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(texts: &[&str]) -> Vec<ScoreRule> {
        texts.iter().map(|t| t.parse().expect(t)).collect()
    }

    #[test]
    fn thresholds_split_scores_like_the_default_dataset() {
        let rules = rules(&["positive > 0", "negative < 0"]);
        assert_eq!(ScoreRule::label_for(&rules, 2.27), Some("positive"));
        assert_eq!(ScoreRule::label_for(&rules, -0.6), Some("negative"));
        assert_eq!(ScoreRule::label_for(&rules, 0.0), None, "zero is dropped");
        assert_eq!(ScoreRule::label_for(&rules, f64::NAN), None);
    }

    #[test]
    fn ranges_and_first_match_wins() {
        let rules = rules(&["neutral >= -1 and <= 1", "positive > 0", "negative < 0"]);
        assert_eq!(ScoreRule::label_for(&rules, 0.5), Some("neutral"));
        assert_eq!(ScoreRule::label_for(&rules, 1.0), Some("neutral"));
        assert_eq!(ScoreRule::label_for(&rules, 1.01), Some("positive"));
        assert_eq!(ScoreRule::label_for(&rules, -3.0), Some("negative"));
    }

    #[test]
    fn bad_rules_are_rejected() {
        for bad in ["", "positive", "positive >", "positive => 0", "positive > x", "p > 0 or < 1", "p > NaN"] {
            assert!(bad.parse::<ScoreRule>().is_err(), "{bad:?} should be rejected");
        }
    }

    #[test]
    fn display_round_trips() {
        let rule: ScoreRule = "neutral >= -1.5 and < 2".parse().expect("parses");
        assert_eq!(rule.to_string().parse::<ScoreRule>().expect("again"), rule);
    }
}
