//! What `deploy/`, the `Containerfile` and the CI workflow ship, checked with
//! the real tools `make test` installs: podman and buildah (the image, built
//! and serving), Prometheus and promtool (config, alert rules and their unit
//! tests, a live scrape), kubectl's kustomize and the Kubernetes schemas (every
//! manifest), and actionlint (the workflow). Only podman/buildah and
//! Prometheus may be missing, where apt could not install them (not root):
//! those tests are then counted as skipped.

use std::collections::BTreeSet;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use kiln_model::{DeviceSpec, Predictor};
use serde_json::{Value, json};

use crate::common::{Server, repo};

/// A command `scripts/setup.sh deploy` installed into .venv-deploy.
fn deploy_tool(name: &str) -> Command {
    let path = repo().join(".venv-deploy/bin").join(name);
    assert!(path.exists(), "no {}: run `scripts/setup.sh deploy` (make test does)", path.display());
    Command::new(path)
}

fn succeeded(what: &str, output: Output) -> String {
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(output.status.success(), "{what} failed:\n{stdout}\n{}", String::from_utf8_lossy(&output.stderr));
    stdout
}

/// YAML documents as JSON, read by PyYAML (installed with the deploy tools).
fn yaml_documents(path: &Path) -> Vec<Value> {
    let script = "import json, sys, yaml; print(json.dumps([d for d in yaml.safe_load_all(open(sys.argv[1])) if d]))";
    let output = deploy_tool("python").args(["-c", script]).arg(path).output().expect("python runs");
    serde_json::from_str(&succeeded(&format!("reading {}", path.display()), output)).expect("JSON")
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").expect("a free port").local_addr().expect("address").port()
}

/// Kills (and reaps) a helper process when the test ends, passed or not.
struct Reaped(Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = Command::new("kill").args(["-TERM", &self.0.id().to_string()]).status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if self.0.try_wait().ok().flatten().is_some() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `command` quietly, to be reaped when the test ends.
fn spawn_reaped(command: &mut Command, what: &str) -> Reaped {
    Reaped(command.stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap_or_else(|e| panic!("{what}: {e}")))
}

/// Polls `check` until it gives a value, or fails after `seconds`.
fn wait_for<T>(what: &str, seconds: u64, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(seconds);
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(Instant::now() < deadline, "{what} within {seconds} s");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Both overlays render with kustomize and every object they hold, and both
/// batch Jobs, pass the Kubernetes 1.37 schemas in strict mode (unknown
/// fields are errors); only the PodMonitor, a Prometheus Operator CRD, has no
/// schema there. The loop's ConfigMap is a valid kiln config, the Jobs'
/// shard counts agree, and serve runs as the image's non-root user.
#[test]
fn the_kubernetes_manifests_render_and_pass_the_schemas() {
    let repo = repo();
    let out = tempfile::tempdir().expect("tempdir");
    let mut rendered = Vec::new();
    for overlay in ["cpu", "gpu"] {
        let output = deploy_tool("kubectl")
            .args(["kustomize"])
            .arg(repo.join("deploy/k8s/overlays").join(overlay))
            .output()
            .expect("kubectl runs");
        let path = out.path().join(format!("{overlay}.yaml"));
        std::fs::write(&path, succeeded(&format!("kustomize build of the {overlay} overlay"), output)).expect("write");
        rendered.push(path);
    }
    let jobs = ["predict-shards.yaml", "predict-merge.yaml", "tune-workers.yaml", "tune-report.yaml"]
        .map(|name| repo.join("deploy/k8s/jobs").join(name));
    let output = deploy_tool("kubernetes-validate")
        .args(["--strict", "--kubernetes-version", "1.37.0"])
        .args(&rendered)
        .args(&jobs)
        .output()
        .expect("kubernetes-validate runs");
    let report = succeeded("kubernetes-validate --strict", output);
    let passed = report.lines().filter(|line| line.contains(" passed for resource ")).count();
    let warnings: Vec<&str> = report.lines().filter(|line| !line.contains(" passed for resource ")).collect();
    assert!(warnings.iter().all(|line| line.contains("PodMonitor")), "only the CRD lacks a schema: {warnings:?}");
    assert_eq!(passed, 2 * 9 + 4, "nine objects per overlay and four Jobs validated:\n{report}");

    let kinds = |path: &Path| -> BTreeSet<String> {
        yaml_documents(path).iter().map(|d| d["kind"].as_str().expect("kind").to_owned()).collect()
    };
    let expected: BTreeSet<String> = [
        "ConfigMap",
        "CronJob",
        "Deployment",
        "HorizontalPodAutoscaler",
        "Namespace",
        "PersistentVolumeClaim",
        "PodDisruptionBudget",
        "PodMonitor",
        "Service",
    ]
    .map(String::from)
    .into();
    assert_eq!(kinds(&rendered[0]), expected);
    let gpu = yaml_documents(&rendered[1]);
    let serve = gpu.iter().find(|d| d["kind"] == "Deployment").expect("serve");
    let container = &serve["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(container["resources"]["limits"]["nvidia.com/gpu"], 1, "{container}");
    assert!(container["image"].as_str().is_some_and(|i| i.ends_with(":cuda")), "{container}");
    assert_eq!(container["readinessProbe"]["httpGet"]["path"], "/readyz");
    assert_eq!(container["livenessProbe"]["httpGet"]["path"], "/healthz");
    assert_eq!(container["securityContext"]["readOnlyRootFilesystem"], true);
    assert_eq!(serve["spec"]["template"]["spec"]["securityContext"]["runAsUser"], 10001, "the image's user");
    // Closed by default: the tokens come from a Secret the pod cannot start without.
    let env = container["env"].as_array().expect("env");
    let tokens_file = env.iter().find(|e| e["name"] == "KILN_API_TOKENS_FILE").expect("a tokens file");
    let mount = container["volumeMounts"]
        .as_array()
        .expect("mounts")
        .iter()
        .find(|m| tokens_file["value"].as_str().is_some_and(|f| f.starts_with(m["mountPath"].as_str().unwrap_or("-"))))
        .expect("the tokens file is on a mounted volume");
    let volume = serve["spec"]["template"]["spec"]["volumes"]
        .as_array()
        .expect("volumes")
        .iter()
        .find(|v| v["name"] == mount["name"])
        .expect("the mounted volume");
    assert_eq!(volume["secret"]["secretName"], "kiln-api-tokens", "{volume}");
    assert_ne!(volume["secret"]["optional"], json!(true), "the Secret is required: {volume}");
    assert!(
        env.iter().all(|e| e["name"] != "KILN_ALLOW_UNAUTHENTICATED" && e["name"] != "KILN_API_TOKENS"),
        "no open serving, no token in the pod spec: {env:?}"
    );

    let config = repo.join("deploy/k8s/base/kiln.toml");
    let loaded = kiln_config::PipelineConfig::load(Some(&config)).expect("the ConfigMap is a valid kiln config");
    assert_eq!(loaded.serve.model_dir, loaded.registry.dir.join("production"), "serve follows the registry");
    assert_eq!(loaded.retrain.init, kiln_config::RetrainInit::Production, "the cluster retrains warm");

    let shards = &yaml_documents(&jobs[0])[0]["spec"];
    assert_eq!(shards["completionMode"], "Indexed");
    let env = &shards["template"]["spec"]["containers"][0]["env"];
    let count = env.as_array().expect("env").iter().find(|e| e["name"] == "KILN_SHARD_COUNT").expect("shard count");
    assert_eq!(count["value"].as_str().and_then(|v| v.parse::<u64>().ok()), shards["completions"].as_u64());
    let merge_args = &yaml_documents(&jobs[1])[0]["spec"]["template"]["spec"]["containers"][0]["args"];
    assert!(
        merge_args
            .as_array()
            .expect("args")
            .contains(&json!(format!("--shard-count={}", count["value"].as_str().expect("count"))))
    );
    // The tune workers share one study on the volume; the report reads the same one.
    let args = |doc: &Value| -> Vec<String> {
        let container = &doc["spec"]["template"]["spec"]["containers"][0];
        container["args"].as_array().expect("args").iter().map(|a| a.as_str().expect("arg").to_owned()).collect()
    };
    let (workers, report) = (&yaml_documents(&jobs[2])[0], &yaml_documents(&jobs[3])[0]);
    assert_eq!(workers["spec"]["completionMode"], "Indexed");
    assert!(args(workers).contains(&"--worker".to_owned()) && args(report).contains(&"--report".to_owned()));
    let shared = |args: Vec<String>| {
        args.into_iter().filter(|a| !a.starts_with("--worker") && !a.starts_with("--report")).collect::<Vec<_>>()
    };
    assert_eq!(shared(args(workers)), shared(args(report)), "the same study");
}

/// The workflow passes actionlint, and CI and `.ci/run` both run the README's test command.
#[test]
fn the_ci_workflow_passes_actionlint_and_runs_the_readme_test_command() {
    let repo = repo();
    let workflow = repo.join(".github/workflows/ci.yml");
    succeeded(
        "actionlint",
        deploy_tool("actionlint").arg(&workflow).current_dir(&repo).output().expect("actionlint runs"),
    );
    let readme = std::fs::read_to_string(repo.join("README.md")).expect("README");
    let is_test_command = |line: &str| line.split('#').next().is_some_and(|command| command.trim() == "make test");
    assert!(readme.lines().any(is_test_command), "the README's test command is `make test`");
    let ci_run = std::fs::read_to_string(repo.join(".ci/run")).expect(".ci/run");
    assert!(ci_run.lines().any(is_test_command), ".ci/run calls it");
    let steps: Vec<String> = yaml_documents(&workflow)[0]["jobs"]["test"]["steps"]
        .as_array()
        .expect("steps")
        .iter()
        .filter_map(|step| step["run"].as_str().map(str::to_owned))
        .collect();
    for command in ["make lint", "make test", "make repro"] {
        assert!(steps.iter().any(|run| run.trim_end().ends_with(command)), "the workflow runs {command}: {steps:?}");
    }
}

/// The compose stack's mounts exist, and Prometheus scrapes the service compose names.
#[test]
fn the_compose_stack_mounts_what_the_repo_holds() {
    let deploy = repo().join("deploy");
    let compose = &yaml_documents(&deploy.join("compose.yaml"))[0];
    let services = compose["services"].as_object().expect("services");
    let names: BTreeSet<&str> = services.keys().map(String::as_str).collect();
    assert_eq!(names, BTreeSet::from(["grafana", "mlflow", "node-exporter", "prometheus", "serve"]));
    for (name, service) in services {
        for volume in service["volumes"].as_array().into_iter().flatten() {
            let source = volume.as_str().expect("short syntax").split(':').next().expect("source");
            if source.starts_with('.') && !source.starts_with("../artifacts") {
                assert!(deploy.join(source).exists(), "{name} mounts {source}, which is missing");
            }
        }
    }
    assert_eq!(services["serve"]["build"]["dockerfile"], "Containerfile");
    // Closed: the tokens come from an env file the stack needs (an example ships), never inline.
    assert_eq!(services["serve"]["env_file"], json!(["kiln.env"]));
    let example = std::fs::read_to_string(deploy.join("kiln.env.example")).expect("an example env file");
    assert!(example.lines().any(|line| line.starts_with("KILN_API_TOKENS=")));
    let environment = services["serve"]["environment"].as_object().expect("environment");
    assert!(!environment.contains_key("KILN_API_TOKENS") && !environment.contains_key("KILN_ALLOW_UNAUTHENTICATED"));
    // Prometheus scrapes the metrics port, which needs no token and is not published.
    let metrics_port = environment["KILN_METRICS_PORT"].as_str().expect("a metrics port");
    assert!(
        services["serve"]["ports"]
            .as_array()
            .expect("ports")
            .iter()
            .all(|p| !p.as_str().unwrap_or("").contains(metrics_port))
    );
    let prometheus = &yaml_documents(&deploy.join("prometheus/prometheus.yml"))[0];
    assert_eq!(
        prometheus["scrape_configs"][0]["static_configs"][0]["targets"][0],
        json!(format!("serve:{metrics_port}"))
    );
}

/// Prometheus's tools, where apt could install them; else the test is skipped.
fn prometheus_tool(test: &str, name: &str) -> Option<Command> {
    if let Some(why) = kiln_testing::unavailable("promtool") {
        kiln_testing::skipped(test, &why);
        return None;
    }
    Some(Command::new(name))
}

/// promtool accepts the config and the rules, and every alert's unit test
/// (deploy/prometheus/alerts_test.yml) passes.
#[test]
fn promtool_checks_the_config_and_every_alert_passes_its_unit_test() {
    let Some(mut promtool) = prometheus_tool("promtool_checks", "promtool") else { return };
    let dir = repo().join("deploy/prometheus");
    succeeded(
        "promtool check config",
        promtool.args(["check", "config"]).arg(dir.join("prometheus.yml")).output().expect("runs"),
    );
    let rules = succeeded(
        "promtool check rules",
        Command::new("promtool").args(["check", "rules"]).arg(dir.join("alerts.yml")).output().expect("runs"),
    );
    assert!(rules.contains("SUCCESS: 13 rules found"), "{rules}");
    let tested =
        Command::new("promtool").args(["test", "rules", "alerts_test.yml"]).current_dir(&dir).output().expect("runs");
    assert!(succeeded("promtool test rules", tested).contains("SUCCESS"));
    let tests = std::fs::read_to_string(dir.join("alerts_test.yml")).expect("tests");
    for alert in regex::Regex::new(r"- alert: (\w+)")
        .expect("regex")
        .captures_iter(&std::fs::read_to_string(dir.join("alerts.yml")).expect("rules"))
    {
        assert!(tests.contains(&format!("alertname: {}", &alert[1])), "alert {} has no unit test", &alert[1]);
    }
}

/// Every `kiln_*` metric the dashboard and the alert rules name is one
/// `serve` exports (read from a running server's /metrics) or `monitor`
/// writes; a real Prometheus scrapes a running `serve` and answers a query
/// for its series; and every alert rule evaluates without error on them.
#[test]
fn prometheus_scrapes_serve_and_the_dashboard_names_only_exported_metrics() {
    let Some(mut prometheus) = prometheus_tool("prometheus_scrapes_serve", "prometheus") else { return };
    let dir = tempfile::tempdir().expect("tempdir");
    let model = dir.path().join("model");
    kiln_testing::classifier_folder(&model, &["billing", "cards"], 5).expect("model");
    let server = Server::start(&model, &dir.path().join("log"), &[], &[]);
    for text in ["my card is lost", "refund my fee", "card declined"] {
        assert!(server.post("/v1/predict", &json!({ "text": text })).status().is_success());
    }
    let exposition = server.get("/metrics").text().expect("metrics");
    let mut exported: BTreeSet<String> = kiln_monitor::report::metric_names().into_iter().collect();
    for line in exposition.lines().filter_map(|line| line.strip_prefix("# TYPE ")) {
        let (name, kind) = line.split_once(' ').expect("# TYPE name kind");
        exported.insert(name.to_owned());
        if kind == "histogram" {
            exported.extend(["_bucket", "_sum", "_count"].map(|suffix| format!("{name}{suffix}")));
        }
    }
    let deploy = repo().join("deploy");
    let named = regex::Regex::new(r"\bkiln_[a-z0-9_]+").expect("regex");
    let dashboard: Value =
        serde_json::from_str(&std::fs::read_to_string(deploy.join("grafana/dashboards/kiln.json")).expect("dashboard"))
            .expect("JSON");
    let panels = dashboard["panels"].as_array().expect("panels");
    assert!(panels.len() >= 10, "the dashboard's panels: {}", panels.len());
    let mut in_dashboard = BTreeSet::new();
    for target in panels.iter().flat_map(|p| p["targets"].as_array().expect("targets")) {
        in_dashboard.extend(named.find_iter(target["expr"].as_str().expect("expr")).map(|m| m.as_str().to_owned()));
    }
    let rules = std::fs::read_to_string(deploy.join("prometheus/alerts.yml")).expect("rules");
    let in_rules: BTreeSet<String> = named.find_iter(&rules).map(|m| m.as_str().to_owned()).collect();
    for (what, names) in [("dashboard", &in_dashboard), ("alert rules", &in_rules)] {
        let unknown: Vec<&String> = names.difference(&exported).collect();
        assert!(unknown.is_empty(), "the {what} name metrics nothing exports: {unknown:?}");
    }
    for family in [
        "kiln_requests_total",
        "kiln_request_duration_seconds_bucket",
        "kiln_queue_depth",
        "kiln_batch_size_bucket",
        "kiln_predictions_total",
        "kiln_model_info",
        "kiln_reloads_total",
        "kiln_prediction_log_dropped",
        "kiln_monitor_status",
    ] {
        assert!(in_dashboard.contains(family), "the dashboard shows {family}");
    }

    let port = free_port();
    let target = server.base.trim_start_matches("http://").to_owned();
    let config = dir.path().join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global: {{scrape_interval: 1s, evaluation_interval: 1s}}\nrule_files: [{}]\nscrape_configs:\n  - job_name: kiln-serve\n    static_configs: [{{targets: ['{target}']}}]\n",
            deploy.join("prometheus/alerts.yml").display()
        ),
    )
    .expect("config");
    let _prometheus = spawn_reaped(
        prometheus
            .arg(format!("--config.file={}", config.display()))
            .arg(format!("--storage.tsdb.path={}", dir.path().join("tsdb").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}")),
        "prometheus starts",
    );
    let client = reqwest::blocking::Client::new();
    let api = |path: &str, query: &[(&str, &str)]| -> Option<Value> {
        let response = client.get(format!("http://127.0.0.1:{port}{path}")).query(query).send().ok()?;
        response.json::<Value>().ok().filter(|body| body["status"] == "success")
    };
    let version =
        server.get("/v1/model").json::<Value>().expect("model")["version"].as_str().expect("version").to_owned();
    let series = wait_for("Prometheus scraped serve", 60, || {
        let body = api("/api/v1/query", &[("query", "kiln_model_info == 1")])?;
        body["data"]["result"].as_array().filter(|r| !r.is_empty()).cloned()
    });
    assert_eq!(series[0]["metric"]["version"], version.as_str(), "{series:?}");
    let predicted = wait_for("the prediction counter", 30, || {
        let body = api("/api/v1/query", &[("query", "sum(kiln_predictions_total)")])?;
        body["data"]["result"][0]["value"][1].as_str().map(str::to_owned)
    });
    assert_eq!(predicted, "3");
    let rules = wait_for("every rule evaluated", 30, || {
        let body = api("/api/v1/rules", &[])?;
        let rules: Vec<Value> = body["data"]["groups"]
            .as_array()?
            .iter()
            .flat_map(|g| g["rules"].as_array().cloned().unwrap_or_default())
            .collect();
        (rules.len() == 13
            && rules.iter().all(|r| r["lastEvaluation"].as_str().is_some_and(|t| !t.starts_with("0001"))))
        .then_some(rules)
    });
    for rule in &rules {
        assert_eq!(rule["health"], "ok", "{rule}");
    }
    let firing: Vec<&str> =
        rules.iter().filter(|r| r["state"] == "firing").filter_map(|r| r["name"].as_str()).collect();
    assert!(firing.is_empty(), "a healthy serve sets off nothing: {firing:?}");
}

/// The image: podman builds the `runtime-prebuilt` target from the binaries
/// this test run built (on a Debian base made locally: no registry is
/// reachable), it stays under 1 GB, and `serve` started inside it with
/// buildah (podman cannot start containers here) answers on loopback with
/// the same prediction as the host's model, as the unprivileged user.
#[test]
fn the_image_builds_under_a_gigabyte_and_serves_from_inside() {
    for tool in ["podman", "buildah", "base-image"] {
        if let Some(why) = kiln_testing::unavailable(tool) {
            kiln_testing::skipped("the_image_builds", &why);
            return;
        }
    }
    let repo = repo();
    let conf = repo.join(".cache/containers.conf");
    assert!(conf.exists(), "no {}: run `scripts/setup.sh containers` (make test does)", conf.display());
    let container = |program: &str| {
        let mut command = Command::new(program);
        command.env("CONTAINERS_CONF", &conf).current_dir(&repo);
        command
    };
    let bin = Path::new(env!("CARGO_BIN_EXE_serve")).parent().expect("bin dir").to_owned();
    succeeded(
        "scripts/make/image_root.sh",
        Command::new(repo.join("scripts/make/image_root.sh"))
            .env("BIN", &bin)
            .current_dir(&repo)
            .output()
            .expect("runs"),
    );
    let tag = format!("localhost/kiln-test:{}", std::process::id());
    let built = container("podman")
        .args(["build", "--isolation", "chroot", "--target", "runtime-prebuilt", "--build-arg"])
        .arg("BASE_IMAGE=localhost/kiln-base-bookworm")
        .args(["-t", &tag, "-f", "Containerfile", "."])
        .output()
        .expect("podman runs");
    succeeded("podman build", built);
    struct Image(PathBuf, String);
    impl Drop for Image {
        fn drop(&mut self) {
            let _ = Command::new("podman").env("CONTAINERS_CONF", &self.0).args(["rmi", "--force", &self.1]).output();
        }
    }
    let _image = Image(conf.clone(), tag.clone());
    let size: u64 = succeeded(
        "podman image inspect",
        container("podman").args(["image", "inspect", &tag, "--format", "{{.Size}}"]).output().expect("runs"),
    )
    .trim()
    .parse()
    .expect("a size");
    let libraries: u64 = std::fs::read_dir(repo.join(".cache/image-root/lib"))
        .expect("lib")
        .map(|e| e.expect("entry").metadata().expect("metadata").len())
        .sum();
    kiln_testing::figure(&format!(
        "image: runtime {:.0} MB, of which LibTorch {:.0} MB",
        size as f64 / 1e6,
        libraries as f64 / 1e6
    ));
    assert!(size < 1_000_000_000, "the CPU image is {size} bytes, over 1 GB");

    let working =
        succeeded("buildah from", container("buildah").args(["from", &tag]).output().expect("runs")).trim().to_owned();
    struct WorkingContainer(PathBuf, String);
    impl Drop for WorkingContainer {
        fn drop(&mut self) {
            let _ = Command::new("buildah").env("CONTAINERS_CONF", &self.0).args(["rm", &self.1]).output();
        }
    }
    let _working = WorkingContainer(conf.clone(), working.clone());
    let inside = |args: &[&str]| -> String {
        let output = container("buildah")
            .args(["run", "--isolation", "chroot", &working, "--"])
            .args(args)
            .output()
            .expect("runs");
        succeeded(&format!("{args:?} in the image"), output)
    };
    assert_eq!(inside(&["id", "-u"]).trim(), "10001", "the image runs as its unprivileged user");
    let shipped: BTreeSet<String> = inside(&["ls", "/opt/kiln/lib"]).lines().map(str::to_owned).collect();
    assert!(
        shipped.contains("libtorch_cpu.so") && !shipped.contains("libtorch.so"),
        "only loaded libraries: {shipped:?}"
    );

    let dir = tempfile::tempdir().expect("tempdir");
    let model = dir.path().join("model");
    kiln_testing::classifier_folder(&model, &["billing", "cards"], 9).expect("model");
    // The container's user reads the model through the mount.
    for path in [dir.path(), model.as_path()] {
        std::fs::set_permissions(path, std::os::unix::fs::PermissionsExt::from_mode(0o755)).expect("chmod");
    }
    let port = free_port();
    let _serve = spawn_reaped(
        container("buildah")
            .args(["run", "--isolation", "chroot", "--volume"])
            .arg(format!("{}:/models:ro", model.display()))
            .args(["--env", "KILN_HOST=127.0.0.1", "--env", &format!("KILN_PORT={port}"), "--env", "KILN_THREADS=1"])
            .args([&working, "--", "/opt/kiln/bin/serve"]),
        "buildah runs serve",
    );
    let client = reqwest::blocking::Client::new();
    let base = format!("http://127.0.0.1:{port}");
    wait_for("serve in the image became ready", 120, || {
        client.get(format!("{base}/readyz")).send().ok().filter(|r| r.status().is_success())
    });
    let text = "my card was declined twice";
    let answer: Value = client
        .post(format!("{base}/v1/predict"))
        .json(&json!({ "text": text }))
        .send()
        .expect("answers")
        .json()
        .expect("JSON");
    let predictor = Predictor::load(&model, &DeviceSpec::Cpu.device()).expect("loads");
    let examples = predictor.encode(&[text]).expect("encodes");
    let probabilities = &predictor.probabilities_batched(&examples, 1).expect("predicts")[0];
    let best =
        (0..probabilities.len()).max_by(|&a, &b| probabilities[a].total_cmp(&probabilities[b])).expect("a class");
    assert_eq!(answer["label"], predictor.labels.labels()[best].as_str(), "{answer}");
    let score = answer["score"].as_f64().expect("score");
    assert!((score - f64::from(probabilities[best])).abs() < 1e-5, "{score} vs {}", probabilities[best]);
}
