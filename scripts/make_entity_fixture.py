"""Writes tests/fixtures/entities_seqeval.json: entity spans and entity-level
precision, recall and F1 computed by seqeval 1.2.2, which kiln_core::entities
must match (crates/kiln-core/tests/entities_seqeval.rs). Run with `make fixtures`.

Two modes, as seqeval has them:
- default (conlleval): `get_entities` and `classification_report(mode=None)`;
  an `I-X` after `O` or after another type starts an entity; E- and S- tags
  (BIOES) are read too;
- strict IOB2: `classification_report(mode="strict", scheme=IOB2)`; an entity
  is a `B-X` and the `I-X` after it, anything else is no entity.

Cases: hand-written sequences where the two modes differ (an `I-` that
continues nothing, a type change inside an entity, types with hyphens, BIOES in
the default mode), and seeded random ones: valid IOB2 truths over WNUT-17's six
types, and predictions that are the truth with tags changed at random (invalid
transitions included).
"""
import json
import random
from pathlib import Path

from seqeval.metrics import accuracy_score, classification_report
from seqeval.metrics.sequence_labeling import get_entities
from seqeval.scheme import IOB2, Entities

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "tests/fixtures/entities_seqeval.json"
TYPES = ["person", "location", "group", "creative-work", "corporation", "product"]


def report(true, pred, strict):
    extra = {"mode": "strict", "scheme": IOB2} if strict else {}
    raw = classification_report(true, pred, output_dict=True, zero_division=0, **extra)
    # A mean over no types is NaN in seqeval (and not JSON): null here.
    number = lambda x: None if x != x else x
    return {name: {"precision": number(r["precision"]), "recall": number(r["recall"]), "f1": number(r["f1-score"]),
                   "support": int(r["support"])}
            for name, r in raw.items()}


def case(name, true, pred, strict=True):
    out = {
        "name": name,
        "true": true,
        "pred": pred,
        # Per sentence, end inclusive as get_entities gives them.
        "default_entities": [[list(e) for e in get_entities(s)] for s in pred],
        "accuracy": accuracy_score(true, pred),
        "default": report(true, pred, strict=False),
    }
    if strict:
        out["strict_entities"] = [[[e.tag, e.start, e.end - 1] for e in Entities([s], IOB2).entities[0]] for s in pred]
        out["strict"] = report(true, pred, strict=True)
    return out


def random_truth(rng, length):
    tags, inside = [], None
    for _ in range(length):
        r = rng.random()
        if inside and r < 0.4:
            tags.append(f"I-{inside}")
        elif r < 0.7:
            tags.append("O")
            inside = None
        else:
            inside = rng.choice(TYPES)
            tags.append(f"B-{inside}")
    return tags


def perturb(rng, tags):
    out = list(tags)
    for i in range(len(out)):
        if rng.random() < 0.15:
            prefix = rng.choice(["O", "B", "I"])
            out[i] = "O" if prefix == "O" else f"{prefix}-{rng.choice(TYPES[:3])}"
    return out


def main():
    cases = [
        case("I- after O starts an entity only in the default mode",
             [["O", "B-person", "I-person", "O"]], [["O", "I-person", "I-person", "O"]]),
        case("a type change inside an entity",
             [["B-person", "I-person", "O", "B-location"]], [["B-person", "I-location", "O", "I-location"]]),
        case("adjacent entities of one type and hyphenated types",
             [["B-creative-work", "I-creative-work", "B-creative-work", "O", "B-group"]],
             [["B-creative-work", "I-creative-work", "I-creative-work", "O", "B-group"]]),
        case("an entity only the prediction has, and one only the truth has",
             [["O", "O", "B-product"], ["B-corporation", "O"]], [["B-location", "O", "O"], ["B-corporation", "O"]]),
        case("no entities at all", [["O", "O"]], [["O", "O"]]),
        # BIOES is read by the default mode only (strict IOB2 rejects E- and S-).
        case("BIOES in the default mode",
             [["S-person", "O", "B-location", "E-location"], ["B-group", "I-group", "E-group", "S-product"]],
             [["S-person", "O", "B-location", "I-location"], ["B-group", "E-group", "E-group", "S-product"]],
             strict=False),
    ]
    rng = random.Random(17)
    truths = [random_truth(rng, rng.randint(1, 18)) for _ in range(200)]
    cases.append(case("random (seed 17)", truths, [perturb(rng, t) for t in truths]))
    OUT.write_text(json.dumps({"seqeval": "1.2.2", "cases": cases}) + "\n")
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
