//! The search space: `[tune.space]` parsed and checked against the settings it
//! names, and a trial's settings applied to a pipeline config.

use std::collections::BTreeMap;

use anyhow::{Context, Result};
use kiln_config::{ConfigError, ParamSpec, PipelineConfig};
use serde_json::Value;

/// A trial's settings: setting name to value, as the journal stores them.
pub type Params = BTreeMap<String, Value>;

/// The one `[tokenize]` setting a space may name.
pub const MAX_LENGTH: &str = "max_length";

/// `[train]` keys that are not hyper-parameters: where things are, how the
/// process runs, and what `tune` itself sets.
const NOT_TUNABLE: [&str; 10] = [
    "input_dir",
    "model_dir",
    "output_dir",
    "run_dir",
    "device",
    "threads",
    "precision",
    "resume",
    "metric",
    "data_fraction",
];

/// A setting's range, in the form the samplers work on.
#[derive(Debug, Clone, PartialEq)]
pub enum Domain {
    Float { low: f64, high: f64, log: bool },
    Int { low: i64, high: i64, log: bool },
    Choice(Vec<Value>),
}

impl Domain {
    /// The interval the samplers draw in: the log of the value for log ranges,
    /// and integers widened by half a step each side so each is as likely.
    /// `None` for choices.
    pub fn internal_bounds(&self) -> Option<(f64, f64)> {
        match *self {
            Self::Float { low, high, log: false } => Some((low, high)),
            Self::Float { low, high, log: true } => Some((low.ln(), high.ln())),
            Self::Int { low, high, log: false } => Some((low as f64 - 0.5, high as f64 + 0.5)),
            Self::Int { low, high, log: true } => Some(((low as f64 - 0.5).ln(), (high as f64 + 0.5).ln())),
            Self::Choice(_) => None,
        }
    }

    /// The value at internal point `x` (for choices, `x` is the index).
    pub fn decode(&self, x: f64) -> Value {
        match self {
            Self::Float { low, high, log } => {
                let value = if *log { x.exp() } else { x };
                Value::from(value.clamp(*low, *high))
            }
            Self::Int { low, high, log } => {
                let value = if *log { x.exp() } else { x };
                Value::from((value.round() as i64).clamp(*low, *high))
            }
            Self::Choice(choices) => choices[(x as usize).min(choices.len() - 1)].clone(),
        }
    }

    /// Where `value` sits in the internal interval (for choices, its index);
    /// `None` when it is not in this domain (a trial from another space).
    pub fn encode(&self, value: &Value) -> Option<f64> {
        match self {
            Self::Float { log, .. } => value.as_f64().map(|v| if *log { v.ln() } else { v }),
            Self::Int { log, .. } => value.as_f64().map(|v| if *log { v.ln() } else { v }),
            Self::Choice(choices) => choices.iter().position(|c| c == value).map(|i| i as f64),
        }
    }

    /// Whether values are compared on a log scale (plots).
    pub fn is_log(&self) -> bool {
        matches!(self, Self::Float { log: true, .. } | Self::Int { log: true, .. })
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Param {
    pub name: String,
    pub domain: Domain,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Space {
    /// In name order: the order every sampler draws them in.
    pub params: Vec<Param>,
}

impl Space {
    /// `[tune.space]`, or [`default_space`] when it is empty, each range
    /// checked against the setting it names.
    pub fn from_config(config: &PipelineConfig) -> Result<Self, ConfigError> {
        let specs = if config.tune.space.is_empty() { default_space() } else { config.tune.space.clone() };
        let params = specs
            .iter()
            .map(|(name, spec)| {
                let param = Param { name: name.clone(), domain: domain(name, spec)? };
                check_applies(config, &param)?;
                Ok(param)
            })
            .collect::<Result<Vec<_>, ConfigError>>()?;
        Ok(Self { params })
    }

    /// The specs this space came from, as the journal records them.
    pub fn specs(config: &PipelineConfig) -> BTreeMap<String, ParamSpec> {
        if config.tune.space.is_empty() { default_space() } else { config.tune.space.clone() }
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.params.iter().map(|p| p.name.as_str())
    }
}

/// The usual ranges for fine-tuning a BERT (the BERT paper's appendix, and
/// what `Trainer.hyperparameter_search` users search): learning rate 1e-5..1e-4
/// (log), batch 16 or 32, 2..5 epochs, warm-up 0..10%, weight decay 0..0.1.
pub fn default_space() -> BTreeMap<String, ParamSpec> {
    BTreeMap::from([
        ("learning_rate".into(), ParamSpec { log_uniform: Some([1e-5, 1e-4]), ..ParamSpec::default() }),
        (
            "batch_size".into(),
            ParamSpec {
                choices: Some(vec![toml::Value::Integer(16), toml::Value::Integer(32)]),
                ..ParamSpec::default()
            },
        ),
        ("epochs".into(), ParamSpec { int: Some([2, 5]), ..ParamSpec::default() }),
        ("warmup_ratio".into(), ParamSpec { uniform: Some([0.0, 0.1]), ..ParamSpec::default() }),
        ("weight_decay".into(), ParamSpec { uniform: Some([0.0, 0.1]), ..ParamSpec::default() }),
    ])
}

fn invalid(name: &str, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid { key: format!("tune.space.{name}"), message: message.into() }
}

/// The one range a spec gives, checked on its own.
fn domain(name: &str, spec: &ParamSpec) -> Result<Domain, ConfigError> {
    let given = [spec.log_uniform.is_some(), spec.uniform.is_some(), spec.int.is_some(), spec.log_int.is_some()]
        .into_iter()
        .chain([spec.choices.is_some()])
        .filter(|&g| g)
        .count();
    if given != 1 {
        return Err(invalid(
            name,
            format!(
                "give exactly one of log_uniform, uniform, int, log_int or choices (got {given}), e.g. {{ \
                 uniform = [0.0, 0.1] }}"
            ),
        ));
    }
    let ordered = |low: f64, high: f64| {
        if !(low.is_finite() && high.is_finite()) {
            Err(invalid(name, "bounds must be finite numbers"))
        } else if low > high {
            Err(invalid(name, format!("low {low} is above high {high}")))
        } else {
            Ok(())
        }
    };
    if let Some([low, high]) = spec.log_uniform {
        ordered(low, high)?;
        if low <= 0.0 {
            return Err(invalid(name, format!("a log range needs positive bounds, got low {low}")));
        }
        return Ok(Domain::Float { low, high, log: true });
    }
    if let Some([low, high]) = spec.uniform {
        ordered(low, high)?;
        return Ok(Domain::Float { low, high, log: false });
    }
    if let Some([low, high]) = spec.int {
        ordered(low as f64, high as f64)?;
        return Ok(Domain::Int { low, high, log: false });
    }
    if let Some([low, high]) = spec.log_int {
        ordered(low as f64, high as f64)?;
        if low < 1 {
            return Err(invalid(name, format!("a log range needs bounds of at least 1, got low {low}")));
        }
        return Ok(Domain::Int { low, high, log: true });
    }
    let choices = spec.choices.as_deref().unwrap_or_default();
    if choices.is_empty() {
        return Err(invalid(name, "choices is empty: give at least one value"));
    }
    let values = choices
        .iter()
        .map(|c| serde_json::to_value(c).map_err(|e| invalid(name, format!("choice {c} is not a plain value: {e}"))))
        .collect::<Result<Vec<_>, _>>()?;
    for (i, value) in values.iter().enumerate() {
        if values[..i].contains(value) {
            return Err(invalid(name, format!("choice {value} is listed twice")));
        }
        if value.is_array() || value.is_object() {
            return Err(invalid(name, format!("choice {value} is not a single value")));
        }
    }
    Ok(Domain::Choice(values))
}

/// Fails unless `param` names a tunable setting and every value of its range
/// is one that setting takes (type and validation): bad specs fail when the
/// study starts, not in trial 7.
fn check_applies(config: &PipelineConfig, param: &Param) -> Result<(), ConfigError> {
    let name = param.name.as_str();
    let train_keys = train_keys();
    if name != MAX_LENGTH && !train_keys.iter().any(|k| k == name) {
        let tunable: Vec<&str> = train_keys.iter().map(String::as_str).chain([MAX_LENGTH]).collect();
        return Err(invalid(
            name,
            format!("not a setting tune can search; these are: {} (max_length is [tokenize]'s)", tunable.join(", ")),
        ));
    }
    let extremes: Vec<Value> = match &param.domain {
        Domain::Choice(choices) => choices.clone(),
        domain => {
            let (low, high) = domain.internal_bounds().unwrap_or_default();
            vec![domain.decode(low), domain.decode(high)]
        }
    };
    for value in extremes {
        let applied = apply(config, &Params::from([(name.to_owned(), value.clone())]))
            .map_err(|e| invalid(name, format!("{value} does not fit: {e:#}")))?;
        let checked = if name == MAX_LENGTH { applied.tokenize.validate() } else { applied.train.validate() };
        checked.map_err(|e| invalid(name, format!("{value} is not a valid value: {e}")))?;
    }
    Ok(())
}

/// `[train]`'s keys that a space may name.
fn train_keys() -> Vec<String> {
    match serde_json::to_value(kiln_config::TrainConfig::default()) {
        Ok(Value::Object(map)) => map.keys().filter(|k| !NOT_TUNABLE.contains(&k.as_str())).cloned().collect(),
        _ => Vec::new(),
    }
}

/// `config` with `params` set: `max_length` in `[tokenize]`, the rest in
/// `[train]`. Goes through TOML, so a value of the wrong type is an error.
pub fn apply(config: &PipelineConfig, params: &Params) -> Result<PipelineConfig> {
    let mut table = toml::Table::try_from(config).context("the config as TOML")?;
    for (name, value) in params {
        let section = if name == MAX_LENGTH { "tokenize" } else { "train" };
        let value = toml::Value::try_from(value).with_context(|| format!("{name} = {value} as TOML"))?;
        table
            .get_mut(section)
            .and_then(toml::Value::as_table_mut)
            .with_context(|| format!("the config has no [{section}]"))?
            .insert(name.clone(), value);
    }
    let text = toml::to_string(&table).context("the config as TOML")?;
    Ok(PipelineConfig::from_toml(&text)?)
}

/// `params` as `key=value` pairs on one line, for logs and reports.
pub fn describe(params: &Params) -> String {
    params.iter().map(|(k, v)| format!("{k}={}", short(v))).collect::<Vec<_>>().join(" ")
}

/// A value as a person reads it: floats to 4 significant figures.
pub fn short(value: &Value) -> String {
    match value {
        Value::Number(n) if n.is_f64() => {
            let v = n.as_f64().unwrap_or_default();
            if v != 0.0 && (v.abs() < 1e-2 || v.abs() >= 1e4) { format!("{v:.3e}") } else { format!("{v:.4}") }
        }
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_space(toml: &str) -> PipelineConfig {
        PipelineConfig::from_toml(&format!("[tune.space]\n{toml}")).expect("parses")
    }

    fn error(toml: &str) -> String {
        Space::from_config(&with_space(toml)).expect_err(toml).to_string()
    }

    #[test]
    fn the_default_space_is_the_bert_fine_tuning_one() {
        let space = Space::from_config(&PipelineConfig::default()).expect("valid");
        let names: Vec<&str> = space.names().collect();
        assert_eq!(names, ["batch_size", "epochs", "learning_rate", "warmup_ratio", "weight_decay"]);
        assert_eq!(space.params[2].domain, Domain::Float { low: 1e-5, high: 1e-4, log: true });
    }

    #[test]
    fn the_shipped_configs_spaces_are_valid() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs");
        for name in ["default.toml", "banking77.toml", "wnut17.toml"] {
            let config = PipelineConfig::load(Some(&root.join(name))).expect(name);
            Space::from_config(&config).expect(name);
        }
    }

    #[test]
    fn every_bad_spec_names_its_key() {
        for (spec, needles) in [
            ("lerning_rate = { uniform = [0.1, 0.2] }", &["tune.space.lerning_rate", "learning_rate"][..]),
            ("run_dir = { choices = [\"a\"] }", &["tune.space.run_dir", "not a setting"]),
            ("learning_rate = { uniform = [0.2, 0.1] }", &["tune.space.learning_rate", "above"]),
            ("epochs = { int = [5, 2] }", &["tune.space.epochs", "above"]),
            ("batch_size = { choices = [] }", &["tune.space.batch_size", "empty"]),
            ("learning_rate = { log_uniform = [0.0, 0.1] }", &["tune.space.learning_rate", "positive"]),
            ("learning_rate = { }", &["tune.space.learning_rate", "exactly one"]),
            ("learning_rate = { uniform = [0.1, 0.2], int = [1, 2] }", &["exactly one"]),
            ("epochs = { uniform = [1.0, 3.0] }", &["tune.space.epochs", "does not fit"]),
            ("batch_size = { choices = [16, 0] }", &["tune.space.batch_size", "at least 1"]),
            ("warmup_ratio = { uniform = [0.0, 1.5] }", &["tune.space.warmup_ratio", "[0, 1)"]),
            ("max_length = { choices = [1] }", &["tune.space.max_length"]),
            ("batch_size = { choices = [16, 16] }", &["twice"]),
        ] {
            let message = error(spec);
            for needle in needles {
                assert!(message.contains(needle), "{spec}: {message}");
            }
        }
    }

    #[test]
    fn values_round_trip_through_their_domain() {
        let space = Space::from_config(&with_space(
            "learning_rate = { log_uniform = [1e-5, 1e-3] }\nepochs = { int = [2, 5] }\n\
             log_every_steps = { log_int = [1, 100] }\nloss = { choices = [\"cross_entropy\", \"focal\"] }\n\
             max_length = { choices = [32, 64] }\n",
        ))
        .expect("valid");
        for param in &space.params {
            let value = match &param.domain {
                Domain::Choice(c) => c[1].clone(),
                d => d.decode(d.internal_bounds().map(|(l, h)| (l + h) / 2.0).unwrap_or_default()),
            };
            let x = param.domain.encode(&value).expect("encodes");
            assert_eq!(param.domain.decode(x), value, "{}", param.name);
        }
        let params = Params::from([
            ("learning_rate".into(), Value::from(3e-4)),
            ("epochs".into(), Value::from(4)),
            ("loss".into(), Value::from("focal")),
            ("max_length".into(), Value::from(32)),
        ]);
        let applied = apply(&PipelineConfig::default(), &params).expect("applies");
        assert_eq!((applied.train.learning_rate, applied.train.epochs), (3e-4, 4));
        assert_eq!((applied.train.loss, applied.tokenize.max_length), (kiln_config::TrainLoss::Focal, 32));
    }
}
