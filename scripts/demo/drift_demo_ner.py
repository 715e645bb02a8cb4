"""The continuous-training loop for a tagger, end to end: `make drift-demo-ner`.

As `drift_demo.py` does for a classifier:
1. Train a first tagger where one entity type is rare (WNUT-17's `product`
   and `creative-work`, or `product` in the generated default data).
2. Serve it (`serve --watch true`, the registry's production link).
3. Replay held-out sentences as texts, one request each, from 2 clients; for
   a share, send the true entities back as span feedback. Part way the mix
   shifts to sentences with the rare types.
4. Run `monitor` every `--monitor-every` predictions; on its first alert,
   `retrain` in the background while the stream goes on (span feedback
   becomes tagged sentences; the gate compares entity F1 on the test split
   plus held-back feedback); a promotion swaps the served model.
5. Keep streaming until the new model answers, then some more.

Writes <work>/drift_demo.json, report.md and stream.svg (the stream's entity
micro-F1 per window, alerts, the swap): detection delay, false alerts before
the shift, entity F1 before the shift, after it and after the promotion,
failed requests, and the gate's decision.

    python scripts/demo/drift_demo_ner.py --bin target/release --wnut17 ../shared/data/wnut17
"""
import argparse
import random
import sys
import threading
import time
from pathlib import Path

from drift_demo import ROOT, add_loop_arguments, compare_inits, config_sections, fresh_work, run_loop, write_outputs
from replay_traffic import post


def read_conll(path):
    """Sentences of a CoNLL file as (words, IOB2 tags)."""
    sentences, words, tags = [], [], []
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        if not line.strip():
            if words:
                sentences.append((words, tags))
            words, tags = [], []
            continue
        word, _, tag = line.rpartition("\t")
        if word.strip():
            words.append(word)
            tags.append(tag.strip())
    if words:
        sentences.append((words, tags))
    return sentences


def write_conll(path, sentences):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join("".join(f"{w}\t{t}\n" for w, t in zip(*s)) + "\n" for s in sentences), encoding="utf-8")


def as_text(words, tags):
    """The sentence as a text (words joined by spaces) and its entities' character spans."""
    text, spans, offsets = "", [], []
    for word in words:
        if text:
            text += " "
        offsets.append((len(text), len(text) + len(word)))
        text += word
    current = None
    for (start, end), tag in zip(offsets, tags):
        if tag.startswith("B-") or (tag.startswith("I-") and (current is None or current[0] != tag[2:])):
            if current:
                spans.append(current)
            current = [tag[2:], start, end]
        elif tag.startswith("I-"):
            current[2] = end
        else:
            if current:
                spans.append(current)
            current = None
    if current:
        spans.append(current)
    return text, [tuple(s) for s in spans]


def kinds(tags):
    return {t[2:] for t in tags if t != "O"}


FIRST = ["Ada", "Alan", "Grace", "Edsger", "Barbara", "Donald", "Frances", "John", "Margaret", "Niklaus"]
LAST = ["Lovelace", "Turing", "Hopper", "Dijkstra", "Liskov", "Knuth", "Allen", "McCarthy", "Hamilton", "Wirth"]
PLACES = ["Paris", "London", "Berlin", "Tokyo", "Lagos", "Lima", "Oslo", "Cairo", "Delhi", "Quito"]
PRODUCTS = ["iPhone", "Kindle", "PlayStation", "Thinkpad", "Walkman", "Gameboy", "Roomba", "Tamagotchi"]
VERBS = ["visited", "left", "loved", "described", "toured", "missed"]


def generated(n, with_product, rng):
    """`n` sentences from templates: a person and a place, or (`with_product`) a product too."""
    sentences = []
    for _ in range(n):
        first, last, place = rng.choice(FIRST), rng.choice(LAST), rng.choice(PLACES)
        person = ([first, last], ["B-person", "I-person"])
        where = ([place], ["B-location"])
        if with_product:
            product = ([rng.choice(PRODUCTS)], ["B-product"])
            parts = [person, (["bought", "a"], ["O", "O"]), product, (["in"], ["O"]), where]
        else:
            parts = [person, ([rng.choice(VERBS)], ["O"]), where, ([rng.choice(["today", "again", "twice"])], ["O"])]
        sentences.append(([w for p in parts for w in p[0]], [t for p in parts for t in p[1]]))
    return sentences


def prepare_data(args, work, rng):
    """Writes source/{train,test}.conll; returns the stream's pools
    (sentences without the late types, with them) and the late types."""
    source = work / "source"
    if args.dataset == "default":
        late = {"product"}
        train = generated(args.early_examples, False, rng) + generated(args.late_examples, True, rng)
        rng.shuffle(train)
        write_conll(source / "train.conll", train)
        write_conll(source / "test.conll", generated(100, False, rng) + generated(60, True, rng))
        return generated(2000, False, rng), generated(2000, True, rng), sorted(late)
    base = Path(args.wnut17)
    late = set(args.late_types.split(","))
    train = read_conll(base / "train.conll")
    rng.shuffle(train)
    rare = [s for s in train if kinds(s[1]) & late]
    common = [s for s in train if not kinds(s[1]) & late]
    # The stream before the shift comes from the training tweets' own
    # distribution (WNUT-17's dev and test splits come from other sites, a
    # drift of their own); validation is carved from train by `ingest`.
    cut = int(len(common) * 0.85)
    write_conll(source / "train.conll", common[:cut] + rare[: args.late_examples])
    write_conll(source / "test.conll", read_conll(base / "test.conll"))
    dev = read_conll(base / "dev.conll")
    return common[cut:], rare[args.late_examples:] + [s for s in dev if kinds(s[1]) & late], sorted(late)


class Stream:
    """Single-text requests from two clients; span feedback for a share; per
    request (index, phase, status, (right, predicted, true) entities, version, answered at)."""

    def __init__(self, url, feedback_share, seed):
        self.url, self.feedback_share = url, feedback_share
        self.rng = random.Random(seed)
        self.lock = threading.Lock()
        self.results = []

    def send(self, sentences, phase):
        queue = [as_text(*s) for s in sentences]
        start = len(self.results)
        cursor = {"next": 0}

        def client():
            while True:
                with self.lock:
                    i = cursor["next"]
                    cursor["next"] += 1
                if i >= len(queue):
                    return
                text, truth = queue[i]
                status, answer = post(f"{self.url}/v1/predict", {"text": text})
                counts, version = (0, 0, len(truth)), None
                if status == 200:
                    found = {(e["entity_group"], e["start"], e["end"]) for e in answer["entities"]}
                    counts = (len(found & set(truth)), len(found), len(truth))
                    version = answer["model_version"]
                    with self.lock:
                        give = self.rng.random() < self.feedback_share
                    if give:
                        entities = [{"entity_group": k, "start": s, "end": e} for k, s, e in truth]
                        post(f"{self.url}/v1/feedback", {"request_id": answer["request_id"], "entities": entities})
                with self.lock:
                    self.results.append((start + i, phase, status, counts, version, time.time()))

        threads = [threading.Thread(target=client) for _ in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()


def micro_f1(results):
    right = sum(r[3][0] for r in results)
    predicted = sum(r[3][1] for r in results)
    true = sum(r[3][2] for r in results)
    return 2 * right / (predicted + true) if predicted + true else 0.0


def f1_of(results, keep):
    kept = [r for r in results if keep(r) and r[2] == 200]
    return round(micro_f1(kept), 4) if kept else None


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", choices=["wnut17", "default"], default="wnut17",
                        help="wnut17 (rare types held back) or default (generated sentences, products held back)")
    parser.add_argument("--wnut17", default=str(ROOT.parent / "shared/data/wnut17"))
    parser.add_argument("--late-types", default="product,creative-work", help="WNUT-17 types the first model barely sees")
    parser.add_argument("--early-examples", type=int, default=400, help="generated sentences without the late type")
    parser.add_argument("--late-examples", type=int, default=10, help="training sentences with a late type")
    add_loop_arguments(parser, work=str(ROOT / "artifacts/drift-demo-ner"), epochs=3, before=600, after=3000,
                       late_share=0.8, min_feedback=200)
    args = parser.parse_args()
    if args.dataset == "wnut17" and not (Path(args.wnut17) / "train.conll").exists():
        sys.exit(f"no WNUT-17 at {args.wnut17} (train.conll, dev.conll, test.conll): pass --wnut17 DIR")
    root = fresh_work(args)
    bin_dir = Path(args.bin).resolve()
    early, late, late_types = prepare_data(args, root / "base", random.Random(args.seed))

    def sections_for(work):
        w = lambda p: str(work / p)
        sections = {"task": "token_classification", **config_sections(work, args, args.pretrained)}
        sections["ingest"] = {"train_file": w("source/train.conll"), "test_file": w("source/test.conll"),
                              "validation_fraction": 0.1, "seed": args.seed, "format": "conll", "output_dir": w("raw")}
        sections["clean"].update({"dedup": False, "drop_leaks": False, "hashtags": "keep", "strip_mentions": False})
        sections["tokenize"]["max_length"] = 128
        sections["train"].update({"learning_rate": 5e-5, "warmup_ratio": 0.0})
        sections["serve"].update({"log_text": "full", "aggregation": "first"})
        sections["eval"]["aggregation"] = "first"  # the reference's entities grouped as serve groups them
        sections["gate"]["min_class_support"] = 5
        return sections

    def loop(arm, quiet):
        rng = random.Random(args.seed + 1)  # the same stream in every arm

        def mixed(n, late_share, draw=rng):
            n_late = int(n * late_share)
            rows = draw.choices(late, k=n_late) + draw.choices(early, k=n - n_late)
            draw.shuffle(rows)
            return rows

        return run_loop(bin_dir, quiet, arm, args, lambda url: Stream(url, args.feedback_share, args.seed),
                        lambda n: mixed(n, 0.0), lambda n, draw=rng: mixed(n, args.late_share, draw),
                        "Ada Lovelace visited Paris")

    def outputs(arm, run, extra):
        return write_outputs(arm, run, args, "entity micro-F1", "entity_f1", f1_of,
                             ("promote", "metric", "champion_value", "challenger_value", "entity_micro_f1",
                              "difference", "difference_low", "difference_high", "rows", "reasons"),
                             {**extra, "late_types": late_types}, "Drift scenario for a tagger", score=micro_f1)

    compare_inits(args, root, bin_dir, sections_for, loop, outputs, "Drift scenario for a tagger")


if __name__ == "__main__":
    main()
