"""A labelling function in Python, run by kiln's `label` stage as a `command`
(configs/youtube-spam.toml), as Snorkel's spam tutorial writes two of its
own: TextBlob's sentiment votes `ham` where a comment is very positive
(`--polarity-above`) or subjective (`--subjectivity-from`), and abstains
elsewhere.

The protocol: one JSON object a line on stdin (`{"text": "..."}`), one vote
a line on stdout, in order: a label name in quotes, or `null` to abstain.
Install TextBlob with `scripts/setup.sh textblob` (.venv-textblob/).
"""

import argparse
import json
import sys

from textblob import TextBlob


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--label", default="ham", help="the label it votes")
    parser.add_argument("--polarity-above", type=float, help="vote where polarity > this")
    parser.add_argument("--subjectivity-from", type=float, help="vote where subjectivity >= this")
    args = parser.parse_args()
    if (args.polarity_above is None) == (args.subjectivity_from is None):
        parser.error("give one of --polarity-above and --subjectivity-from")
    for line in sys.stdin:
        sentiment = TextBlob(json.loads(line)["text"]).sentiment
        if args.polarity_above is not None:
            votes = sentiment.polarity > args.polarity_above
        else:
            votes = sentiment.subjectivity >= args.subjectivity_from
        print(json.dumps(args.label) if votes else "null")


if __name__ == "__main__":
    main()
