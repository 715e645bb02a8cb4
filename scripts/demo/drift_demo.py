"""The continuous-training loop, end to end, on real data: `make drift-demo`.

1. Train a first model on a deliberately skewed slice of BANKING77: every
   intent of a chosen set, but a handful of examples of the "late" intents.
   Once, in <work>/base; each `--init` below starts from a copy of it.
2. Serve it (`serve --watch true`, the registry's production link).
3. Replay a stream of held-out real queries, one request each, from 2 clients,
   a share of them getting feedback. Part way the mix shifts to the late
   intents, which the model barely knows. Every `--init` gets the same stream.
4. Run `monitor` every `--monitor-every` predictions; on its first alert,
   `retrain` (with `retrain.init` = that run's `--init`) in the background
   while the stream goes on: the feedback joins the training data, the gate
   compares the new model with production on the test split plus held-back
   feedback, and a promotion swaps the served model.
5. Keep streaming until the new model answers, then some more.

Prints, and writes to <work>/<init>/drift_demo.json and report.md: the
detection delay (predictions after the shift before the first alert) and
false alerts before the shift; the recovery (seconds, and predictions served
at the degraded accuracy, from the first alert to the promoted model's first
answer) and retrain's own seconds; stream accuracy before the shift, after
it, and after the promotion; requests that failed (goal 0); the gate's
decision and figures; and stream.svg. <work>/report.md and comparison.json
put the `--init` runs side by side (the recovery speed-up, the difference in
accuracy after it).

    python scripts/demo/drift_demo.py --bin target/release --banking77 ../shared/data/banking77
    python scripts/demo/drift_demo.py --init production      # one of the two
"""
import argparse
import json
import random
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pandas as pd

from replay_traffic import post

ROOT = Path(__file__).resolve().parents[2]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def config_sections(work, args, pretrained):
    """Every stage's settings for the scenario, all under `work`. serve and the
    retraining share the machine: one LibTorch thread each (`--threads`), as
    an oversubscribed core slows both."""
    w = lambda p: str(work / p)
    return {
        "ingest": {"train_file": w("source/train.csv"), "test_file": w("source/test.csv"), "format": "csv",
                   "text_column": "text", "label_column": "category", "validation_fraction": 0.2,
                   "seed": 42, "output_dir": w("raw")},
        "clean": {"input_dir": w("raw"), "output_dir": w("interim")},
        "tokenize": {"input_dir": w("interim"), "output_dir": w("processed"), "model_dir": pretrained,
                     "max_length": 64},
        "profile": {"input_dir": w("interim"), "output_dir": w("profile")},
        "train": {"input_dir": w("processed"), "model_dir": pretrained, "output_dir": w("model"),
                  "run_dir": w("train"), "epochs": args.epochs, "batch_size": 16, "learning_rate": 1e-4,
                  "warmup_ratio": 0.1, "metric": "macro_f1", "device": args.device, "max_steps": args.max_steps,
                  "threads": args.threads},
        "eval": {"model_dir": w("model"), "input_dir": w("processed"), "output_dir": w("eval"),
                 "train_metrics": w("train/metrics.jsonl"), "device": args.device, "threads": args.threads},
        "export": {"model_dir": w("model"), "output_dir": w("export"), "eval_metrics": w("eval/metrics.json"),
                   "reference_predictions": w("eval/reference_predictions.json"),
                   "data_profile": w("profile/profile.json")},
        "registry": {"dir": w("registry"), "model_dir": w("export")},
        "track": {"runs_dir": w("runs")},
        "serve": {"model_dir": w("registry/production"), "log_dir": w("log"), "device": args.device},
        "monitor": {"output_dir": w("monitor"), "window_predictions": args.monitor_every,
                    "min_window_predictions": args.monitor_every, "min_feedback": 20},
        "gate": {"holdout": [w("interim/test.parquet")], "output_dir": w("gate"), "device": args.device,
                 "min_class_support": 10, "bootstrap_resamples": 300, "threads": args.threads},
        "retrain": {"output_dir": w("retrain"), "min_feedback": args.min_feedback, "holdout_share": 0.2},
    }


def write_toml(path, sections):
    """Top-level keys (a string or number value) first, then a table per section."""
    def line(key, value):
        if isinstance(value, bool):
            return f"{key} = {str(value).lower()}"
        if isinstance(value, (int, float)):
            return f"{key} = {value}"
        return f"{key} = {json.dumps(value)}"

    lines = [line(key, value) for key, value in sections.items() if not isinstance(value, dict)]
    for section, keys in sections.items():
        if isinstance(keys, dict):
            lines += [f"[{section}]", *(line(key, value) for key, value in keys.items()), ""]
    path.write_text("\n".join(lines))


def movie_reviews(path, rng):
    """The default data as the same kind of source: sentiment from the rating,
    train/test split 80/20; "intents" are (sentiment, length) groups, so the
    shift is to long reviews of a kind the first model hardly saw."""
    frame = pd.read_csv(path, sep="\t", quoting=3)
    frame = frame[frame["sentiment"] != 0]
    words = frame["text"].str.split().str.len()
    long = words > words.quantile(0.7)
    sentiment = frame["sentiment"].map(lambda s: "positive" if s > 0 else "negative")
    frame = pd.DataFrame({"text": frame["text"], "category": sentiment, "group": sentiment + long.map({True: "-long", False: "-short"})})
    frame = frame.sample(frac=1.0, random_state=rng.randrange(10**6))
    cut = int(len(frame) * 0.8)
    return frame.iloc[:cut], frame.iloc[cut:]


def prepare_data(args, work, rng):
    if args.dataset == "default":
        train, test = movie_reviews(ROOT / "data/external/movie-reviews/movieReviewSnippets_GroundTruth.txt", rng)
        late = {"negative-long", "positive-long"}
        parts = [train[train["group"].isin(late)].iloc[: args.late_examples * 20],
                 train[~train["group"].isin(late)].iloc[: args.early_examples * 20]]
        used = pd.concat(parts).index
        pool = train.drop(used)
        source = work / "source"
        source.mkdir(parents=True, exist_ok=True)
        pd.concat(parts)[["text", "category"]].to_csv(source / "train.csv", index=False)
        test[["text", "category"]].iloc[:400].to_csv(source / "test.csv", index=False)
        return pool[~pool["group"].isin(late)], pool[pool["group"].isin(late)], sorted(late)
    train = pd.read_csv(Path(args.banking77) / "train.csv")
    test = pd.read_csv(Path(args.banking77) / "test.csv")
    intents = sorted(train["category"].unique())
    rng.shuffle(intents)
    chosen = intents[: args.intents]
    late = set(chosen[: args.intents // 3])
    # A skewed training slice: most intents well covered, the late ones barely.
    parts, pool = [], []
    for intent in chosen:
        rows = train[train["category"] == intent].sample(frac=1.0, random_state=args.seed)
        keep = args.late_examples if intent in late else args.early_examples
        parts.append(rows.iloc[:keep])
        pool.append(rows.iloc[keep:])
    source = work / "source"
    source.mkdir(parents=True, exist_ok=True)
    pd.concat(parts).to_csv(source / "train.csv", index=False)
    test[test["category"].isin(chosen)].to_csv(source / "test.csv", index=False)
    pool = pd.concat(pool).sample(frac=1.0, random_state=args.seed)
    return pool[~pool["category"].isin(late)], pool[pool["category"].isin(late)], sorted(late)


class Stream:
    """Single-text requests from two clients; feedback for a share; results kept in order of sending."""

    def __init__(self, url, feedback_share, seed):
        self.url, self.feedback_share = url, feedback_share
        self.rng = random.Random(seed)
        self.lock = threading.Lock()
        self.results = []  # (index, phase, status, correct, version, answered at)

    def send(self, rows, phase):
        queue = list(rows.itertuples(index=False))
        start = len(self.results)
        cursor = {"next": 0}

        def client():
            while True:
                with self.lock:
                    i = cursor["next"]
                    cursor["next"] += 1
                if i >= len(queue):
                    return
                row = queue[i]
                status, answer = post(f"{self.url}/v1/predict", {"text": row.text})
                correct = status == 200 and answer["label"] == row.category
                version = answer["model_version"] if status == 200 else None
                if status == 200:
                    with self.lock:
                        give = self.rng.random() < self.feedback_share
                    if give:
                        post(f"{self.url}/v1/feedback", {"request_id": answer["request_id"], "label": row.category})
                with self.lock:
                    self.results.append((start + i, phase, status, correct, version, time.time()))

        threads = [threading.Thread(target=client) for _ in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()


def stream_plot(results, statuses, summary, window, path, quality="accuracy", score=None):
    """The stream's own accuracy (every answered request, not just those with
    feedback) per `window` predictions, with the shift, monitor's alerts and
    the first answer of the promoted model marked. `score(chunk)` computes
    another `quality` (a tagger's entity F1) from a chunk of results."""
    import matplotlib

    matplotlib.use("svg")
    import matplotlib.pyplot as plt

    answered = [r for r in results if r[2] == 200]
    xs, ys = [], []
    for start in range(0, len(answered), window):
        chunk = answered[start:start + window]
        xs.append(chunk[-1][0] + 1)
        ys.append(score(chunk) if score else sum(r[3] for r in chunk) / len(chunk))
    figure, axes = plt.subplots(figsize=(10, 4.2))
    axes.plot(xs, ys, marker="o", label=f"stream {quality} (per {window} predictions)")
    alerts = [at for at, status in statuses if status == "alert"]
    axes.scatter(alerts, [0.02] * len(alerts), marker="v", color="tab:red", label="monitor alert", zorder=3)
    axes.axvline(summary["shift_at"], color="black", linestyle="--", label="shift")
    promoted_at = next((r[0] for r in results if r[4] and r[4] != summary["first_version"]), None)
    if promoted_at is not None:
        axes.axvline(promoted_at, color="tab:green", linestyle="--", label="promoted model answers")
    axes.set_xlabel("predictions served")
    axes.set_ylabel(quality)
    axes.set_ylim(0, 1.05)
    axes.set_title(f"Drift scenario: the stream's {quality}, alerts and the swap")
    axes.legend(loc="lower left")
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)


def run_loop(bin_dir, quiet, work, args, make_stream, before, after, probe):
    """Serves the registry's production model and streams to it: `before(n)`
    rows for `args.before` predictions, then `after(n)` rows (the shift),
    running `monitor` every `args.monitor_every` predictions and, while it
    alerts, `retrain` in the background (it does nothing until there is
    `--min-feedback` feedback), until a retrained model is registered or
    `args.after` predictions; then waits for the new model to answer (sending
    `probe`) and streams `args.after_retraining` more, drawn by
    `after(n, rng)` from an RNG seeded the same in every arm: each arm's
    model answers the same requests after its swap, however soon it came.
    Returns the stream, monitor's statuses, where the shift and the first
    alert came, retrain's exit code and the first model's version."""
    port = free_port()
    serve = subprocess.Popen([str(bin_dir / "serve"), *quiet, "--port", str(port), "--watch", "true",
                              "--watch-interval-ms", "500", "--threads", "1", "--feedback-rate-limit", "0"],
                             stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(600):
            try:
                if urllib.request.urlopen(f"{url}/readyz", timeout=1).status == 200:
                    break
            except OSError:
                time.sleep(0.1)
        stream = make_stream(url)
        first_version = post(f"{url}/v1/predict", {"text": probe})[1]["model_version"]
        statuses = []  # (predictions so far, status)
        alert_time = retrain_started = retrain_seconds = timer = None

        def monitor():
            done = subprocess.run([str(bin_dir / "monitor"), *quiet, "--fail-on", "alert"])
            statuses.append((len(stream.results), {0: "ok/warn", 3: "alert"}.get(done.returncode, f"exit {done.returncode}")))
            return done.returncode == 3

        chunk = args.monitor_every
        for _ in range(args.before // chunk):
            stream.send(before(chunk), "before")
            monitor()
        shift_at = len(stream.results)
        alert_at = retrain = retrain_code = None
        finished = []  # when each retrain exited
        registered = lambda: len(json.loads((work / "registry/registry.json").read_text())["versions"])
        # As a schedule would: monitor every window; while it alerts, retrain.
        while len(stream.results) - shift_at < args.after:
            stream.send(after(chunk), "after")
            alerting = monitor()
            if alerting and alert_at is None:
                alert_at, alert_time = len(stream.results), time.time()
            if retrain is not None and retrain.poll() is not None:
                retrain_code = retrain.returncode
                retrain = None
                if registered() > 1:
                    break
            if alerting and retrain is None:
                retrain_started = time.time()
                retrain = subprocess.Popen([str(bin_dir / "retrain"), *quiet, "--new-labels", "drop"])
                # Timed by a thread: the loop only looks between monitoring windows.
                timer = threading.Thread(target=lambda p=retrain: (p.wait(), finished.append(time.time())))
                timer.start()
        if retrain is not None:
            retrain_code = retrain.wait()
        if retrain_started is not None:
            timer.join()
            retrain_seconds = round(finished[-1] - retrain_started, 1)
        # After the retraining: until the new model answers, then as much again.
        deadline = time.time() + 30
        while time.time() < deadline:
            answer = post(f"{url}/v1/predict", {"text": probe})[1]
            if answer and answer["model_version"] != first_version:
                break
            time.sleep(0.5)
        stream.send(after(args.after_retraining, random.Random(args.seed + 2)), "retrained")
    finally:
        serve.terminate()
        serve.wait(timeout=30)
    return {"stream": stream, "statuses": statuses, "shift_at": shift_at, "alert_at": alert_at,
            "alert_time": alert_time, "retrain_code": retrain_code, "retrain_seconds": retrain_seconds,
            "first_version": first_version}


def add_loop_arguments(parser, **defaults):
    """The settings both scenarios share (training, the stream, monitoring, retraining); `defaults` per scenario."""
    parser.add_argument("--bin", default=str(ROOT / "target/release"))
    parser.add_argument("--max-steps", type=int, default=0, help="cap each training (0: all epochs)")
    parser.add_argument("--work", help="the scenario's folder, emptied first")
    parser.add_argument("--pretrained", default=str(ROOT / "models/pretrained/all-MiniLM-L6-v2"))
    parser.add_argument("--epochs", type=int)
    parser.add_argument("--before", type=int, help="stream predictions before the shift")
    parser.add_argument("--after", type=int, help="most stream predictions after the shift")
    parser.add_argument("--late-share", type=float, help="share of the late kind after the shift")
    parser.add_argument("--after-retraining", type=int, default=2000,
                        help="predictions after the swap, the same requests in every arm")
    parser.add_argument("--feedback-share", type=float, default=0.4)
    parser.add_argument("--monitor-every", type=int, default=200, help="predictions per monitoring window and run")
    parser.add_argument("--min-feedback", type=int, help="retrain does nothing with less feedback")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=1, help="LibTorch threads of train, eval and gate (serve: 1)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--init", nargs="+", choices=["production", "pretrained"], default=["production", "pretrained"],
                        help="retrain.init of each run over the same stream (both: compared side by side)")
    parser.add_argument("--warm-epochs", type=int, help="retrain.warm_epochs (default: kiln's)")
    parser.add_argument("--replay-share", type=float, help="retrain.replay_share (default: kiln's)")
    parser.set_defaults(**defaults)


def fresh_work(args):
    """`--work`, emptied and made."""
    work = Path(args.work).resolve()
    subprocess.run(["rm", "-rf", str(work)], check=True)
    work.mkdir(parents=True)
    return work


def first_model(bin_dir, quiet):
    """ingest to export, then `registry add` (the first version goes to production); seconds taken."""
    t0 = time.time()
    for stage in ["ingest", "clean", "tokenize", "profile", "train", "eval", "export"]:
        subprocess.run([str(bin_dir / stage), *quiet], check=True)
    subprocess.run([str(bin_dir / "registry"), *quiet, "add"], check=True, stdout=subprocess.DEVNULL)
    return time.time() - t0


def write_outputs(work, run, args, quality, key, measure, gate_keys, extra, title, score=None):
    """drift_demo.json, stream.svg and report.md from `run_loop`'s result:
    the stream's `quality` (`measure(results, keep)`, `<key>_before_shift`
    ...) before and after the shift and after retraining, the detection
    delay, false alerts, failed requests and the gate's `gate_keys`; `extra`
    joins the summary."""
    results = sorted(run["stream"].results, key=lambda r: r[0])
    statuses, shift_at, alert_at = run["statuses"], run["shift_at"], run["alert_at"]
    decision_path = work / "retrain/gate/decision.json"
    decision = json.loads(decision_path.read_text()) if decision_path.exists() else None
    versions_after = {r[4] for r in results if r[1] == "retrained" and r[4]}
    seconds, predictions = recovery(results, run)
    summary = {
        "stream_predictions": len(results),
        "shift_at": shift_at,
        "first_alert_at": alert_at,
        "detection_delay_predictions": None if alert_at is None else alert_at - shift_at,
        "false_alerts_before_shift": sum(1 for at, s in statuses if at <= shift_at and s == "alert"),
        "monitor_runs": statuses,
        f"{key}_before_shift": measure(results, lambda r: r[1] == "before"),
        f"{key}_after_shift": measure(results, lambda r: r[1] == "after"),
        f"{key}_after_retraining": measure(results, lambda r: r[1] == "retrained"),
        "recovery_seconds": seconds,
        "recovery_predictions": predictions,
        "retrain_seconds": run["retrain_seconds"],
        "failed_requests": sum(1 for r in results if r[2] != 200),
        "retrain_exit": run["retrain_code"],
        "served_after": sorted(versions_after),
        "first_version": run["first_version"],
        "promoted": bool(versions_after - {run["first_version"]}),
        "gate": None if decision is None else {k: decision.get(k) for k in gate_keys},
        **extra,
    }
    (work / "drift_demo.json").write_text(json.dumps(summary, indent=2) + "\n")
    stream_plot(results, statuses, summary, args.monitor_every, work / "stream.svg", quality=quality, score=score)
    lines = [f"# {title}", ""]
    for name in ("shift_at", "first_alert_at", "detection_delay_predictions", "false_alerts_before_shift",
                 "recovery_seconds", "recovery_predictions", "retrain_seconds",
                 f"{key}_before_shift", f"{key}_after_shift", f"{key}_after_retraining", "failed_requests",
                 "promoted"):
        lines.append(f"- {name.replace('_', ' ')}: {summary[name]}")
    if decision:
        lines.append(f"- gate: {'promote' if decision['promote'] else 'refuse'}: {'; '.join(decision['reasons'])}")
    lines += ["", f"![the stream's {quality}, alerts and the swap](stream.svg)"]
    lines += ["", "Monitoring over the stream: [monitor report](monitor/report.md) (drift.svg, quality.svg).", ""]
    (work / "report.md").write_text("\n".join(lines))
    print(json.dumps({k: v for k, v in summary.items() if k != "monitor_runs"}, indent=2), flush=True)
    return summary


def recovery(results, run):
    """From the first alert to the promoted model's first answer: seconds, and
    predictions answered meanwhile (all at the degraded model's quality); None without both."""
    new = [r for r in results if r[2] == 200 and r[4] and r[4] != run["first_version"]]
    if run["alert_time"] is None or not new:
        return None, None
    first_answer = min(r[5] for r in new)
    served = sum(1 for r in results if run["alert_time"] < r[5] < first_answer)
    return round(first_answer - run["alert_time"], 1), served


def compare_inits(args, root, bin_dir, sections_for, loop, outputs, title):
    """The first model once (`root/base`), then per `--init` a copy of it, the
    same stream (`loop(arm, quiet)` reseeds it), the loop with `retrain.init`
    so, and the arm's outputs (`outputs(arm, run, extra)` returns its summary,
    `extra` joining it: the first model's seconds and the arm's init); then
    `root/comparison.json` and `root/report.md` side by side."""
    base = root / "base"
    write_toml(base / "drift.toml", sections_for(base))
    first_model_s = first_model(bin_dir, ["--config", str(base / "drift.toml"), "--quiet"])
    print(f"first model trained and registered in {first_model_s:.0f} s", flush=True)
    summaries = {}
    for init in args.init:
        arm = root / init
        shutil.copytree(base, arm, symlinks=True)
        sections = sections_for(arm)
        sections["retrain"].update({"init": init, **({"warm_epochs": args.warm_epochs} if args.warm_epochs else {}),
                                    **({"replay_share": args.replay_share} if args.replay_share else {})})
        write_toml(arm / "drift.toml", sections)
        print(f"retrain.init = {init}: streaming", flush=True)
        run = loop(arm, ["--config", str(arm / "drift.toml"), "--quiet"])
        summaries[init] = outputs(arm, run, {"first_model_seconds": round(first_model_s), "init": init})
    keys = [k for k in next(iter(summaries.values())) if k.endswith("_after_retraining")]
    rows = ["shift_at", "first_alert_at", "detection_delay_predictions", "recovery_seconds", "recovery_predictions",
            "retrain_seconds", *keys, "failed_requests", "promoted"]
    comparison = {"first_model_seconds": round(first_model_s), "arms": summaries}
    if {"production", "pretrained"} <= summaries.keys():
        warm, cold = summaries["production"], summaries["pretrained"]
        if warm["recovery_seconds"] and cold["recovery_seconds"]:
            comparison["recovery_speedup"] = round(cold["recovery_seconds"] / warm["recovery_seconds"], 2)
        if keys and warm[keys[0]] is not None and cold[keys[0]] is not None:
            comparison["after_retraining_difference_points"] = round(100 * (warm[keys[0]] - cold[keys[0]]), 2)
    (root / "comparison.json").write_text(json.dumps(comparison, indent=2) + "\n")
    lines = [f"# {title}: warm start against a start from pre-trained weights", "",
             "| | " + " | ".join(f"retrain.init = {init}" for init in summaries) + " |",
             "|---|" + "---|" * len(summaries)]
    lines += [f"| {row.replace('_', ' ')} | " + " | ".join(str(s.get(row)) for s in summaries.values()) + " |"
              for row in rows]
    for name in ("recovery_speedup", "after_retraining_difference_points"):
        if name in comparison:
            lines.append(f"\n{name.replace('_', ' ')}: {comparison[name]}")
    lines += ["", *(f"- [{init}]({init}/report.md)" for init in summaries), ""]
    (root / "report.md").write_text("\n".join(lines))
    print(json.dumps({k: v for k, v in comparison.items() if k != "arms"}, indent=2))


def accuracy(results, keep):
    kept = [r for r in results if keep(r) and r[2] == 200]
    return round(sum(r[3] for r in kept) / len(kept), 4) if kept else None


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", choices=["banking77", "default"], default="banking77",
                        help="banking77 (intents, a skewed slice) or default (the movie reviews, long ones held back)")
    parser.add_argument("--banking77", default=str(ROOT.parent / "shared/data/banking77"))
    parser.add_argument("--intents", type=int, default=10)
    parser.add_argument("--early-examples", type=int, default=80)
    parser.add_argument("--late-examples", type=int, default=4)
    add_loop_arguments(parser, work=str(ROOT / "artifacts/drift-demo"), epochs=4, before=800, after=20000,
                       late_share=0.6, min_feedback=300)
    args = parser.parse_args()
    if args.dataset == "banking77" and not (Path(args.banking77) / "train.csv").exists():
        sys.exit(f"no BANKING77 at {args.banking77} (train.csv, test.csv): pass --banking77 DIR")
    root = fresh_work(args)
    bin_dir = Path(args.bin).resolve()
    early, late, late_intents = prepare_data(args, root / "base", random.Random(args.seed))

    def loop(arm, quiet):
        rng = random.Random(args.seed + 1)  # the same stream in every arm

        def mixed(n, draw=rng):
            n_late = int(n * args.late_share)
            rows = pd.concat([even(late, n_late, draw), even(early, n - n_late, draw)])
            return rows.sample(frac=1.0, random_state=draw.randrange(10**6))

        def even(pool, n, draw=rng):
            """n rows, each intent as likely as the next: the mix the first model was trained on."""
            per_intent = pool.groupby("category", group_keys=False).sample(n=n, replace=True, random_state=draw.randrange(10**6))
            return per_intent.sample(n=n, random_state=draw.randrange(10**6))

        return run_loop(bin_dir, quiet, arm, args, lambda url: Stream(url, args.feedback_share, args.seed),
                        lambda n: even(early, n), mixed, "where is my card")

    def outputs(arm, run, extra):
        return write_outputs(arm, run, args, "accuracy", "accuracy", accuracy,
                             ("promote", "metric", "champion_value", "challenger_value", "difference", "difference_low",
                              "difference_high", "mcnemar_p", "only_champion_right", "only_challenger_right", "rows",
                              "reasons"),
                             {**extra, "late_intents": late_intents}, "Drift scenario")

    compare_inits(args, root, bin_dir, lambda work: config_sections(work, args, args.pretrained), loop, outputs,
                  "Drift scenario")


if __name__ == "__main__":
    main()
