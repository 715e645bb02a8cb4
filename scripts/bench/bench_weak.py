"""`make bench-weak`: kiln's weak supervision against Snorkel's, side by side
in one run on one machine, on the YouTube Spam Collection as Snorkel's spam
tutorial uses it (configs/youtube-spam.toml: the first four videos unlabelled,
the fifth split into validation and test).

1. Label models on the same label matrix (kiln's `label`, its functions as
   the config declares them): kiln's snorkel, dawid_skene and majority, and
   snorkel 0.10's `LabelModel` and `MajorityLabelVoter` (same epochs, learning
   rate and seed), each fitted on the four videos: accuracy on the four
   videos' gold labels and on the test split, over the rows some function covers.
2. End models, scored by accuracy on the test split: kiln `train` (MiniLM) on
   kiln's probabilistic labels, trained towards what the config's
   `train.weak_targets` says (each row's most probable label or its whole
   distribution) and towards the other; the same on the four videos' gold
   labels (the upper bound); the tutorial's end model (bag of 1- to 5-grams and logistic
   regression, scikit-learn) on the same weak labels. The test split has 208
   comments (one is 0.5 points), so each MiniLM is trained with several seeds
   and the mean is compared.
3. Applying the keyword and regex functions to 1,000,000 rows: kiln's `label`
   (its apply time and the whole run's peak memory) against snorkel's
   `PandasLFApplier` with the same functions, and the two matrices compared.
"""
import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_util import run_measured  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
CONFIG = "configs/youtube-spam.toml"
LABELS = ["ham", "spam"]
# The functions of the apply benchmark: the config's keywords and pattern.
KEYWORDS = {
    "keyword_my": (["my"], "spam"),
    "keyword_subscribe": (["subscribe"], "spam"),
    "keyword_link": (["http"], "spam"),
    "keyword_please": (["please", "plz"], "spam"),
    "keyword_song": (["song"], "ham"),
}
PATTERNS = {"regex_check_out": ("check.*out", "spam")}


def cpu() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return f"{line.split(':', 1)[1].strip()}, {os.cpu_count()} cores"
    return f"{os.cpu_count()} cores"


def stage(bin_dir: Path, name: str, *flags: str, runs: Path) -> None:
    env = dict(os.environ, KILN_RUNS_DIR=str(runs))
    command = [str(bin_dir / name), "--config", CONFIG, "--quiet", *flags]
    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True)
    if result.returncode != 0:
        sys.exit(f"bench-weak: {' '.join(command)} failed:\n{result.stderr[-4000:]}")


def report(folder: Path) -> dict:
    return json.loads((folder / "label_report.json").read_text())["report"]


def matrix(folder: Path, ids: list, functions: list) -> np.ndarray:
    """kiln's label matrix (id, function, vote) as snorkel's (rows x functions, -1 abstains)."""
    votes = pq.read_table(folder / "label_matrix.parquet").to_pandas()
    rows = {id_: row for row, id_ in enumerate(ids)}
    L = -np.ones((len(ids), len(functions)), dtype=int)
    columns = {name: column for column, name in enumerate(functions)}
    for id_, function, vote in zip(votes["id"], votes["function"], votes["vote"]):
        L[rows[id_], columns[function]] = LABELS.index(vote)
    return L


def covered_accuracy(probabilities: np.ndarray, L: np.ndarray, gold: np.ndarray) -> float:
    covered = (L != -1).any(axis=1)
    return float((probabilities.argmax(axis=1)[covered] == gold[covered]).mean())


def covered_probability(probabilities: np.ndarray, L: np.ndarray, gold: np.ndarray) -> float:
    """The mean probability of the gold label over the covered rows: how right the distributions are."""
    covered = (L != -1).any(axis=1)
    return float(probabilities[covered, gold[covered]].mean())


def label_models(bin_dir: Path, work: Path, runs: Path, epochs: int, seed: int) -> list:
    from snorkel.labeling.model import LabelModel, MajorityLabelVoter

    interim = work / "interim"
    labelled, on_test = work / "labelled", work / "test-matrix"
    rows = []
    for model in ("snorkel", "dawid-skene", "majority"):
        started = time.perf_counter()
        stage(bin_dir, "label", "--input-dir", str(interim), "--output-dir", str(labelled), "--model", model,
              "--gold-split", "test", runs=runs)
        seconds = time.perf_counter() - started
        figures = report(labelled)
        rows.append((f"kiln {model}", figures["accuracy_on_split_labels"], figures["probability_on_split_labels"],
                     figures["gold_accuracy"], seconds, figures["matrix_reused"]))
    # The test split's matrix (the same functions on the test rows), for snorkel's predictions.
    stage(bin_dir, "label", "--input-dir", str(interim), "--output-dir", str(on_test), "--split", "test",
          "--gold-split", "validation", "--model", "majority", runs=runs)
    functions = [f["name"] for f in report(labelled)["functions"]]
    train = pq.read_table(interim / "train.parquet").to_pandas()
    test = pq.read_table(interim / "test.parquet").to_pandas()
    L_train, L_test = matrix(labelled, list(train["id"]), functions), matrix(on_test, list(test["id"]), functions)
    gold_train = np.array([LABELS.index(label) for label in train["label"]])
    gold_test = np.array([LABELS.index(label) for label in test["label"]])
    started = time.perf_counter()
    snorkel = LabelModel(cardinality=len(LABELS), verbose=False)
    snorkel.fit(L_train, n_epochs=epochs, lr=0.01, seed=seed, log_freq=epochs, progress_bar=False)
    seconds = time.perf_counter() - started
    probabilities = snorkel.predict_proba(L_train)
    rows.append(("snorkel 0.10 LabelModel", covered_accuracy(probabilities, L_train, gold_train),
                 covered_probability(probabilities, L_train, gold_train),
                 covered_accuracy(snorkel.predict_proba(L_test), L_test, gold_test), seconds, None))
    voter = MajorityLabelVoter(cardinality=len(LABELS))
    probabilities = voter.predict_proba(L_train)
    rows.append(("snorkel 0.10 MajorityLabelVoter", covered_accuracy(probabilities, L_train, gold_train),
                 covered_probability(probabilities, L_train, gold_train),
                 covered_accuracy(voter.predict_proba(L_test), L_test, gold_test), None, None))
    return rows


def end_models(bin_dir: Path, work: Path, runs: Path, seeds: list, weak_targets: str) -> list:
    """MiniLM on the weak labels, trained towards the config's `train.weak_targets` and
    towards the other choice, then on gold; then the tutorial's logistic regression."""
    from sklearn.feature_extraction.text import CountVectorizer
    from sklearn.linear_model import LogisticRegression

    other = "distribution" if weak_targets == "most_probable" else "most_probable"
    towards = {"most_probable": "their most probable label", "distribution": "their distribution"}
    arms = [(f"kiln train (MiniLM) on kiln's weak labels, towards {towards[weak_targets]} (config)", "weak",
             weak_targets),
            (f"kiln train (MiniLM) on kiln's weak labels, towards {towards[other]}", "weak", other),
            ("kiln train (MiniLM) on the four videos' gold labels", "gold", weak_targets)]
    # The weak labels as the config makes them (its label model: section 1's
    # runs leave the last model's labels behind).
    weak_labelled = work / "weak-labelled"
    stage(bin_dir, "label", "--input-dir", str(work / "interim"), "--output-dir", str(weak_labelled), runs=runs)
    sources = {"weak": weak_labelled, "gold": work / "interim"}
    for tag, source in sources.items():
        stage(bin_dir, "tokenize", "--input-dir", str(source), "--output-dir", str(work / f"processed-{tag}"), runs=runs)
    rows = []
    for name, tag, targets in arms:
        accuracies, seconds, examples = [], 0.0, 0
        for seed in seeds:
            model, run, eval_dir = (work / f"{what}-{tag}-{targets}-{seed}" for what in ("model", "train", "eval"))
            started = time.perf_counter()
            stage(bin_dir, "train", "--input-dir", str(work / f"processed-{tag}"), "--output-dir", str(model),
                  "--run-dir", str(run), "--seed", str(seed), "--weak-targets", targets, runs=runs)
            seconds += time.perf_counter() - started
            stage(bin_dir, "eval", "--model-dir", str(model), "--input-dir", str(work / f"processed-{tag}"),
                  "--output-dir", str(eval_dir), "--train-metrics", str(run / "metrics.jsonl"), runs=runs)
            metrics = json.loads((eval_dir / "metrics.json").read_text())
            accuracies.append(metrics["accuracy"])
            examples = metrics["examples"]
            shutil.rmtree(model)
        rows.append((name, accuracies, examples, seconds / len(seeds)))
    weak = pq.read_table(weak_labelled / "train.parquet").to_pandas()
    gold = pq.read_table(work / "interim" / "train.parquet").to_pandas()
    test = pq.read_table(work / "interim" / "test.parquet").to_pandas()
    for name, train in (("logistic regression, 1-5-grams (tutorial) on kiln's weak labels", weak),
                        ("logistic regression, 1-5-grams on the four videos' gold labels", gold)):
        started = time.perf_counter()
        vectorizer = CountVectorizer(ngram_range=(1, 5))
        features = vectorizer.fit_transform(train["text"])
        classifier = LogisticRegression(C=1e3, solver="liblinear")
        classifier.fit(features, train["label"])
        accuracy = float((classifier.predict(vectorizer.transform(test["text"])) == test["label"]).mean())
        rows.append((name, [accuracy], len(test), time.perf_counter() - started))
    return rows


def snorkel_apply(table: Path, out: Path) -> None:
    """The child process of the apply benchmark: snorkel's PandasLFApplier over `table`."""
    from snorkel.labeling import PandasLFApplier, labeling_function

    def keyword_lf(name, words, label):
        vote = LABELS.index(label)

        @labeling_function(name=name)
        def lf(x):
            text = x.text.lower()
            return vote if any(word in text for word in words) else -1

        return lf

    def regex_lf(name, pattern, label):
        vote, compiled = LABELS.index(label), re.compile(pattern, flags=re.I)

        @labeling_function(name=name)
        def lf(x):
            return vote if compiled.search(x.text) else -1

        return lf

    lfs = [keyword_lf(name, words, label) for name, (words, label) in KEYWORDS.items()]
    lfs += [regex_lf(name, pattern, label) for name, (pattern, label) in PATTERNS.items()]
    frame = pq.read_table(table).to_pandas()
    started = time.perf_counter()
    L = PandasLFApplier(lfs).apply(frame, progress_bar=False)
    print(json.dumps({"seconds": time.perf_counter() - started}))
    np.save(out, L)


def apply_speed(bin_dir: Path, work: Path, runs: Path, rows: int) -> dict:
    interim, million = work / "interim", work / "million"
    million.mkdir(exist_ok=True)
    train = pq.read_table(interim / "train.parquet").to_pandas()
    copies = -(-rows // len(train))
    big = pd.concat([train] * copies, ignore_index=True).iloc[:rows]
    big["id"] = [f"r{i}" for i in range(len(big))]
    pq.write_table(pa.Table.from_pandas(big, preserve_index=False), million / "train.parquet", compression="zstd")
    for split in ("validation", "test"):
        shutil.copy(interim / f"{split}.parquet", million / f"{split}.parquet")
    functions = work / "apply-functions.toml"
    lines = []
    for name, (words, label) in KEYWORDS.items():
        quoted = ", ".join(json.dumps(w) for w in words)
        lines.append(f'[[functions]]\nname = "{name}"\nlabel = "{label}"\nkind = "keywords"\n'
                     f"words = [{quoted}]\nwhole_words = false\n")
    for name, (pattern, label) in PATTERNS.items():
        lines.append(f'[[functions]]\nname = "{name}"\nlabel = "{label}"\nkind = "regex"\npattern = "{pattern}"\n')
    functions.write_text("\n".join(lines))
    out = work / "million-labelled"
    env = dict(os.environ, KILN_RUNS_DIR=str(runs))
    kiln_seconds, kiln_rss, _ = run_measured(
        [str(bin_dir / "label"), "--config", CONFIG, "--quiet", "--input-dir", str(million), "--output-dir", str(out),
         "--functions", str(functions), "--model", "majority"], env=env)
    kiln_apply = report(out)["seconds_applying"]
    theirs = work / "snorkel-L.npy"
    snorkel_seconds, snorkel_rss, stdout = run_measured(
        [sys.executable, __file__, "--snorkel-apply", str(million / "train.parquet"), "--out", str(theirs)],
        capture=True)
    snorkel_apply_seconds = json.loads(stdout.strip().splitlines()[-1])["seconds"]
    names = list(KEYWORDS) + list(PATTERNS)
    ours = matrix(out, list(big["id"]), names)
    same = bool((ours == np.load(theirs)).all())
    return {"rows": len(big), "kiln_apply": kiln_apply, "kiln_run": kiln_seconds, "kiln_rss": kiln_rss,
            "snorkel_apply": snorkel_apply_seconds, "snorkel_run": snorkel_seconds, "snorkel_rss": snorkel_rss,
            "same": same, "votes": int((ours != -1).sum())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bin", default=str(ROOT / "target/release"), help="folder of kiln's binaries")
    parser.add_argument("--rows", type=int, default=1_000_000, help="rows of the apply benchmark")
    parser.add_argument("--skip-end-models", action="store_true", help="only the label models and apply speed")
    parser.add_argument("--seeds", default="42,7,1,2,3", help="training seeds of each MiniLM end model")
    parser.add_argument("--snorkel-apply", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.snorkel_apply:
        snorkel_apply(Path(args.snorkel_apply), Path(args.out))
        return
    source = ROOT.parent / "shared/data/youtube-spam"
    if not (source / "Youtube05-Shakira.csv").exists():
        sys.exit(f"bench-weak needs the YouTube Spam Collection at {source} (see {CONFIG})")
    import tomllib

    bin_dir = Path(args.bin).resolve()
    # The config as the stages resolve it, defaults filled in.
    printed = subprocess.run([str(bin_dir / "train"), "--config", CONFIG, "--print-config"], cwd=ROOT,
                             capture_output=True, text=True, check=True)
    config = tomllib.loads(printed.stdout)
    label = config["label"]
    work = Path(tempfile.mkdtemp(prefix="kiln-bench-weak-"))
    runs = work / "runs"
    print(f"bench-weak on {cpu()}; work folder {work}")
    stage(bin_dir, "ingest", "--output-dir", str(work / "raw"), runs=runs)
    stage(bin_dir, "clean", "--input-dir", str(work / "raw"), "--output-dir", str(work / "interim"), runs=runs)

    print("\n1. Label models on one label matrix (accuracy over covered rows, and the mean probability of the gold "
          "label there;\n   time: kiln's whole `label` run, snorkel's fit)")
    print(f"  {'label model':34} {'four videos':>12} {'(probability)':>14} {'test split':>11} {'time s':>7}")
    for name, on_train, probability, on_test, seconds, reused in label_models(bin_dir, work, runs, label["epochs"],
                                                                               label["seed"]):
        shown = "-" if seconds is None else f"{seconds:.2f}"
        note = " (matrix reused)" if reused else ""
        print(f"  {name:34} {on_train:12.4f} {probability:14.4f} {on_test:11.4f} {shown:>7}{note}")

    if not args.skip_end_models:
        seeds = [int(seed) for seed in args.seeds.split(",")]
        print(f"\n2. End models on the test split (MiniLM: mean over seeds {args.seeds}, then each)")
        print(f"  {'end model':86} {'accuracy':>9} {'rows':>5} {'time s':>7}  each seed")
        weak_targets = config["train"]["weak_targets"]
        results = end_models(bin_dir, work, runs, seeds, weak_targets)
        for name, accuracies, rows, seconds in results:
            each = " ".join(f"{a:.4f}" for a in accuracies) if len(accuracies) > 1 else ""
            print(f"  {name:86} {np.mean(accuracies):9.4f} {rows:5d} {seconds:7.1f}  {each}")
        weak, gold, regression = (float(np.mean(results[i][1])) for i in (0, 2, 3))
        print(f"  weak - gold: {100 * (weak - gold):+.1f} points; weak - logistic regression: "
              f"{100 * (weak - regression):+.1f} points")

    print(f"\n3. Applying {len(KEYWORDS)} keyword and {len(PATTERNS)} regex functions")
    speed = apply_speed(bin_dir, work, runs, args.rows)
    print(f"  {speed['rows']:,} rows, {speed['votes']:,} votes; the two matrices are "
          f"{'identical' if speed['same'] else 'DIFFERENT'}")
    print(f"  kiln label:               apply {speed['kiln_apply']:7.2f} s (whole run {speed['kiln_run']:.1f} s, "
          f"peak RSS {speed['kiln_rss']:.0f} MiB)")
    print(f"  snorkel PandasLFApplier:  apply {speed['snorkel_apply']:7.2f} s (whole run {speed['snorkel_run']:.1f} s, "
          f"peak RSS {speed['snorkel_rss']:.0f} MiB)")
    print(f"  kiln / snorkel apply speed: {speed['snorkel_apply'] / speed['kiln_apply']:.1f}x")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
