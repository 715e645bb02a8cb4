"""`make bench-data`: kiln's `clean` and `tokenize` against the Python tools
people use today, on the same ~1M rows, on the same machine, in the same run.

- Data: BANKING77 (train + test, 13,083 queries) replicated to about 1M rows.
  Each copy gets a different kind of noise (mentions and hashtags, a URL, HTML),
  so every cleaning rule has work to do.
- clean: the `clean` binary (dedup and leak removal off: the copies would
  collapse) vs a pandas pipeline of the same rules (`Series.str.replace` with
  regexes, `html.unescape`, `str.normalize`), Parquet in and out on both sides.
- tokenize: the `tokenize` binary vs HF `tokenizers` (`encode_batch` and
  `encode_batch_fast`; the faster is the reference) on kiln's cleaned text,
  Parquet in and out on both sides.

Both sides use every core. The outputs are compared, so the two do the same work.
"""
import argparse
import html
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import tokenizers

ROOT = Path(__file__).resolve().parents[2]
SPLITS = ("train", "validation", "test")


def prepare(work: Path, rows: int) -> int:
    source = ROOT.parent / "shared/data/banking77"
    if not (source / "train.csv").exists():
        sys.exit(f"bench-data needs BANKING77 at {source} (see configs/banking77.toml)")
    base = pd.concat([pd.read_csv(source / "train.csv"), pd.read_csv(source / "test.csv")], ignore_index=True)
    copies = math.ceil(rows / len(base))
    noise = [
        lambda t, k: t,
        lambda t, k: f"@bank_support{k} {t} #help #card{k}",
        lambda t, k: f"{t} see https://bank.example/faq?id={k}&x=1",
        lambda t, k: f"<p>{t}&nbsp;&amp; thanks</p><br/>",
    ]
    texts, labels = [], []
    for k in range(copies):
        add = noise[k % len(noise)]
        texts.extend(add(t, k) for t in base.text)
        labels.extend(base.category)
    frame = pd.DataFrame({"id": [f"r{i}" for i in range(len(texts))], "text": texts, "label": labels})
    raw = work / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    small = frame.iloc[:1000]
    for split, part in (("train", frame), ("validation", small), ("test", small)):
        pq.write_table(pa.Table.from_pandas(part, preserve_index=False), raw / f"{split}.parquet", compression="zstd")
    return len(frame) + 2 * len(small)


REPEAT = 3


def timed(fn):
    """Best of REPEAT runs: this shared 2-core machine is noisy, and the best run
    is the one least disturbed by others. Both sides get the same treatment."""
    best, result = float("inf"), None
    for _ in range(REPEAT):
        start = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - start)
    return best, result


def run_kiln(stage: str, args):
    binary = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target")) / "release" / stage
    if not binary.exists():
        sys.exit(f"{binary} is missing: run `make build` (make bench-data does) with the same CARGO_TARGET_DIR")
    return timed(lambda: subprocess.run([str(binary), "--quiet", *args], check=True, cwd=ROOT))[0]


CONTROL = r"[\x00-\x08\x0e-\x1f\x7f-\x84\x86-\x9f\u00ad\u061c\u180e\u200b-\u200f\u202a-\u202e\u2060-\u2064\u2066-\u206f\ufeff\ufff9-\ufffd]"


def pandas_clean(source: Path, target: Path):
    """The rules of kiln's default [clean] config, the way a pandas user writes them."""
    target.mkdir(parents=True, exist_ok=True)
    for split in SPLITS:
        frame = pd.read_parquet(source / f"{split}.parquet")
        s = frame["text"].str.normalize("NFC")
        s = s.str.replace(r"<(?:/?[A-Za-z][^<>]*|!--[^>]*--)>", " ", regex=True)
        s = s.map(html.unescape)
        s = s.str.replace(r"[\t\n\r\x0b\x0c\x85]", " ", regex=True).str.replace(CONTROL, "", regex=True)
        s = s.str.replace(r"(?i)\b(?:https?://|www\.)\S+", " ", regex=True)
        s = s.str.replace(r"\B@\w+", " ", regex=True)
        s = s.str.replace(r"\B#(\w+)", r"\1", regex=True)
        s = s.str.replace(r"\s+", " ", regex=True).str.strip()
        frame["text"] = s
        length = s.str.len()
        frame = frame[(length >= 1) & (length <= 5000)]
        frame.to_parquet(target / f"{split}.parquet", compression="zstd", index=False)


def hf_tokenize(source: Path, target: Path, model_dir: Path, fast: bool):
    tokenizer = tokenizers.Tokenizer.from_file(str(model_dir / "tokenizer.json"))
    tokenizer.no_padding()
    tokenizer.enable_truncation(max_length=128)
    encode = tokenizer.encode_batch_fast if fast else tokenizer.encode_batch
    target.mkdir(parents=True, exist_ok=True)
    for split in SPLITS:
        table = pq.read_table(source / f"{split}.parquet")
        texts = table.column("text").to_pylist()
        ids = []
        for start in range(0, len(texts), 8192):
            ids.extend(e.ids for e in encode(texts[start : start + 8192]))
        out = pa.table({
            "id": table.column("id"),
            "input_ids": pa.array(ids, type=pa.list_(pa.uint32())),
            "length": pa.array([len(x) for x in ids], type=pa.uint32()),
        })
        pq.write_table(out, target / f"{split}.parquet", compression="zstd")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--work", type=Path, default=ROOT / ".cache/bench-data")
    parser.add_argument("--repeat", type=int, default=3, help="runs of each side; the best is reported")
    parser.add_argument("--model-dir", type=Path, default=ROOT / "models/pretrained/all-MiniLM-L6-v2")
    args = parser.parse_args()
    global REPEAT
    REPEAT = args.repeat
    work = args.work.resolve()

    rows = prepare(work, args.rows)
    print(f"bench-data: {rows:,} rows (BANKING77 replicated with noise), best of {REPEAT}, {os.cpu_count()} cores, tokenizers {tokenizers.__version__}, pandas {pd.__version__}")

    kiln_clean = run_kiln("clean", ["--input-dir", str(work / "raw"), "--output-dir", str(work / "kiln-interim"),
                                    "--dedup", "false", "--drop-leaks", "false"])
    ref_clean, _ = timed(lambda: pandas_clean(work / "raw", work / "pandas-interim"))
    kiln_text = pd.read_parquet(work / "kiln-interim/train.parquet")["text"]
    ref_text = pd.read_parquet(work / "pandas-interim/train.parquet")["text"]
    same_text = (kiln_text.reset_index(drop=True) == ref_text.reset_index(drop=True)).mean() if len(kiln_text) == len(ref_text) else 0.0

    kiln_tok = run_kiln("tokenize", ["--input-dir", str(work / "kiln-interim"), "--output-dir", str(work / "kiln-processed"),
                                     "--model-dir", str(args.model_dir), "--max-length", "128"])
    ref_tok_slow, _ = timed(lambda: hf_tokenize(work / "kiln-interim", work / "hf-processed", args.model_dir, fast=False))
    ref_tok_fast, _ = timed(lambda: hf_tokenize(work / "kiln-interim", work / "hf-processed", args.model_dir, fast=True))
    ref_tok = min(ref_tok_slow, ref_tok_fast)
    kiln_ids = pq.read_table(work / "kiln-processed/train.parquet").column("input_ids")
    ref_ids = pq.read_table(work / "hf-processed/train.parquet").column("input_ids")
    same_ids = kiln_ids.equals(ref_ids.cast(kiln_ids.type))

    def line(name, kiln, ref, ref_name):
        print(f"  {name:<9} kiln {rows / kiln:>12,.0f} rows/s ({kiln:6.2f} s)   {ref_name:<28} {rows / ref:>10,.0f} rows/s ({ref:6.2f} s)   ratio {ref / kiln:5.1f}x")

    print("results:")
    line("clean", kiln_clean, ref_clean, "pandas regex")
    line("tokenize", kiln_tok, ref_tok, "HF tokenizers " + ("encode_batch_fast" if ref_tok_fast <= ref_tok_slow else "encode_batch"))
    print(f"  HF tokenizers encode_batch (with offsets): {rows / ref_tok_slow:,.0f} rows/s ({ref_tok_slow:.2f} s)")
    print(f"  same cleaned text as pandas: {same_text:.2%} of train rows; same token ids as HF: {same_ids}")
    print("targets: clean >= 10x pandas, tokenize >= 1x HF tokenizers")


if __name__ == "__main__":
    main()
