//! Where log lines go and how they look: for a person (`text`), or one JSON
//! object per line (`json`) for Filebeat, Vector or Promtail to ship to ELK or
//! Loki as it is. Both go to stderr; stdout carries only a command's result.

use std::fmt;

use kiln_config::LogFormat;
use serde_json::{Map, Value};
use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::time::{FormatTime, SystemTime};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

/// Logs to stderr in `format`; `RUST_LOG` refines the level (default: info,
/// or warn with --quiet).
pub fn init(stage: &str, quiet: bool, format: LogFormat) {
    let default = if quiet { "warn" } else { "info" };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Text => builder
            .with_target(false)
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .without_time()
            .try_init(),
        LogFormat::Json => builder.event_format(JsonLines { stage: stage.to_owned() }).try_init(),
    };
}

/// One object per event: `timestamp` (RFC 3339, UTC), `level` (lower case),
/// `stage` (the binary), `message`, `fields` (the event's other fields, typed
/// as logged) and `target` (the module that logged it).
pub struct JsonLines {
    pub stage: String,
}

impl<S, N> FormatEvent<S, N> for JsonLines
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(&self, _: &FmtContext<'_, S, N>, mut writer: Writer<'_>, event: &Event<'_>) -> fmt::Result {
        let mut fields = Fields::default();
        event.record(&mut fields);
        let metadata = event.metadata();
        let level = metadata.level().as_str().to_ascii_lowercase();
        let line = json_line(&self.stage, &level, &fields.message, fields.others.into(), metadata.target());
        writeln!(writer, "{line}")
    }
}

/// One log line as JSON: an event's, or a line that is no event (a stage's final error, target `kiln_stage`).
pub fn json_line(stage: &str, level: &str, message: &str, fields: Value, target: &str) -> String {
    let mut timestamp = String::new();
    let _ = SystemTime.format_time(&mut Writer::new(&mut timestamp));
    serde_json::json!({
        "timestamp": timestamp,
        "level": level,
        "stage": stage,
        "message": message,
        "fields": fields,
        "target": target,
    })
    .to_string()
}

/// An event's fields: `message` apart, the others as JSON values of their type.
#[derive(Default)]
struct Fields {
    message: String,
    others: Map<String, Value>,
}

impl Fields {
    fn put(&mut self, field: &Field, value: Value) {
        if field.name() == "message" {
            self.message = match value {
                Value::String(text) => text,
                other => other.to_string(),
            };
        } else {
            self.others.insert(field.name().to_owned(), value);
        }
    }
}

impl Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.put(field, Value::String(format!("{value:?}")));
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        self.put(field, Value::String(value.to_owned()));
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.put(field, value.into());
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.put(field, value.into());
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        // NaN and infinities are not JSON numbers: they stay readable as text.
        self.put(
            field,
            serde_json::Number::from_f64(value).map_or_else(|| Value::String(value.to_string()), Value::Number),
        );
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.put(field, value.into());
    }
}
