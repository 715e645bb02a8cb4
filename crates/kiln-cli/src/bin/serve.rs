//! `serve`: the model behind an HTTP API.

use std::process::ExitCode;

use clap::Parser;
use kiln_config::ServeArgs;
use kiln_stage::CommonArgs;

/// Serve a model over HTTP: POST /v1/predict (one text or a batch, batched
/// dynamically across requests), GET /v1/model, POST /v1/feedback, GET /metrics
/// (Prometheus), GET /openapi.json, GET /healthz and /readyz, POST /admin/reload,
/// and a page to try the model at /. Every setting is a flag, an env var
/// (KILN_*) and a key of the config's [serve] section. Stops gracefully on
/// SIGTERM or Ctrl-C: in-flight requests finish and the prediction log is completed.
#[derive(Debug, Parser)]
#[command(name = "serve", version)]
struct Cli {
    #[command(flatten)]
    common: CommonArgs,
    #[command(flatten)]
    settings: ServeArgs,
}

fn main() -> ExitCode {
    let Cli { common, settings } = Cli::parse();
    kiln_stage::run_stage(
        "serve",
        &common,
        |config| settings.apply(&mut config.serve),
        |config, _progress| kiln_serve::run(config.serve.clone()),
    )
}
