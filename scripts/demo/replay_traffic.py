"""Replays labelled texts against a running `serve` as live traffic: one text
per request (as most clients send), and the true label sent back as feedback
for a share of them, as users correcting a model would. For monitoring checks
and the drift scenario; the stdlib's HTTP client only, pandas for the files.

    python scripts/demo/replay_traffic.py --url http://127.0.0.1:8080 \
        --file data/interim/test.parquet --rows 600 --feedback-share 0.3

Prints one JSON line: requests sent, non-200 answers, feedback sent, accuracy
of the answers on the replayed rows.
"""
import argparse
import json
import random
import sys
import urllib.error
import urllib.request

import pandas as pd


def post(url, body):
    """POSTs JSON; (status, JSON answer), (status, None) on an HTTP error, (0, None) when unreachable."""
    request = urllib.request.Request(url, json.dumps(body).encode(), {"content-type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, None
    except OSError:
        return 0, None


def read(path, text_column, label_column):
    frame = pd.read_parquet(path) if path.endswith(".parquet") else pd.read_csv(path)
    missing = [c for c in (text_column, label_column) if c and c not in frame.columns]
    if missing:
        sys.exit(f"{path}: no column {missing[0]!r} (columns: {list(frame.columns)})")
    return frame


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", default="http://127.0.0.1:8080")
    parser.add_argument("--file", required=True, help="Parquet or CSV with texts (and labels)")
    parser.add_argument("--text-column", default="text")
    parser.add_argument("--label-column", default="label", help="'' for unlabelled texts")
    parser.add_argument("--rows", type=int, default=0, help="rows to replay, sampled with --seed (0: all, in order)")
    parser.add_argument("--feedback-share", type=float, default=0.0)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    frame = read(args.file, args.text_column, args.label_column)
    if args.rows:
        frame = frame.sample(n=min(args.rows, len(frame)), random_state=args.seed)
    rng = random.Random(args.seed)
    sent = failed = feedback = correct = 0
    for row in frame.itertuples(index=False):
        text = getattr(row, args.text_column)
        status, answer = post(f"{args.url}/v1/predict", {"text": text})
        sent += 1
        if status != 200:
            failed += 1
            continue
        if not args.label_column:
            continue
        label = str(getattr(row, args.label_column))
        correct += answer["label"] == label
        if rng.random() < args.feedback_share:
            status, _ = post(f"{args.url}/v1/feedback", {"request_id": answer["request_id"], "label": label})
            feedback += status == 202
    answered = sent - failed
    print(json.dumps({
        "requests": sent,
        "failed": failed,
        "feedback": feedback,
        "accuracy": round(correct / answered, 4) if answered and args.label_column else None,
    }))


if __name__ == "__main__":
    main()
