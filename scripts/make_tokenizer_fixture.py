"""Writes tests/fixtures/tokenizer_minilm.json: token ids from Hugging Face's
Python `tokenizers` for the all-MiniLM-L6-v2 tokenizer, which kiln's `tokenize`
must reproduce exactly (crates/kiln-data/tests/tokenizer_parity.rs).

Run with `make fixtures` (it creates a venv with `tokenizers`).
"""
import hashlib
import json
import sys
from pathlib import Path

import tokenizers

ROOT = Path(__file__).resolve().parent.parent
MODEL = ROOT / "models/pretrained/all-MiniLM-L6-v2"
OUT = ROOT / "tests/fixtures/tokenizer_minilm.json"

TEXTS = [
    "I am still waiting on my card?",
    "What can I do if my card still hasn't arrived after 2 weeks?",
    "The Rock is destined to be the 21st Century's new ''Conan''.",
    "Café naïve résumé — déjà vu, Ångström",
    "東京で会いましょう。 数字123",
    "emoji 😀🎉 and symbols ©®™ ½",
    "URL https://example.com/a?b=1&c=2 and e-mail a.b@c.io",
    "   leading and trailing   whitespace\tand\ttabs\n",
    "",
    "don't won't can't y'all isn't",
    "UPPER lower MiXeD CaSe",
    "zero\u200bwidth soft\u00adhyphen",
    "antidisestablishmentarianism supercalifragilisticexpialidocious",
    "a " * 200,
]


def encode(tokenizer, max_length):
    tokenizer.no_padding()
    tokenizer.enable_truncation(max_length=max_length)
    return [
        {"text": text, "ids": enc.ids, "type_ids": enc.type_ids}
        for text, enc in zip(TEXTS, tokenizer.encode_batch(TEXTS, add_special_tokens=True))
    ]


def main():
    path = MODEL / "tokenizer.json"
    if not path.exists():
        sys.exit(f"{path} is missing: run `make setup` first")
    tokenizer = tokenizers.Tokenizer.from_file(str(path))
    fixture = {
        "generated_by": f"scripts/make_tokenizer_fixture.py with tokenizers {tokenizers.__version__}",
        "tokenizer_sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
        "cases": {str(n): encode(tokenizer, n) for n in (128, 16)},
    }
    # One case per line: small, and a regenerated fixture diffs readably.
    lines = [json.dumps({k: v for k, v in fixture.items() if k != "cases"}, ensure_ascii=False)[:-1] + ', "cases": {']
    for n, (max_length, cases) in enumerate(fixture["cases"].items()):
        body = ",\n".join("  " + json.dumps(case, ensure_ascii=False) for case in cases)
        lines.append(f' "{max_length}": [\n{body}\n ]' + ("," if n + 1 < len(fixture["cases"]) else ""))
    lines.append("}}")
    OUT.write_text("\n".join(lines) + "\n")
    print(f"wrote {OUT.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
