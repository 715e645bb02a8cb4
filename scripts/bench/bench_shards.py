"""`make bench-shards`: sharded batch prediction, as a Kubernetes Indexed Job
runs it, against one process on the same input, in the same run.

ROWS texts (BANKING77's queries when ../shared/data/banking77 is there, else
the default movie-review sentences, cycled) are predicted by:
  - one `predict` process with all THREADS threads;
  - SHARDS `predict --shard-index I --shard-count SHARDS` processes at once,
    THREADS / SHARDS threads each (the cores split between them, as pods on
    one node would), then `predict --merge`.
Prints wall seconds, rows/s (the shards' from the first start to the merge's
end) and each process's peak RSS, and checks that the merged table equals
the single process's.
"""

import argparse
import csv
import itertools
import json
import os
import sys
import tempfile
import threading
import time

from bench_util import run_measured


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bin", default="target/release", help="folder with kiln's binaries")
    parser.add_argument("--model", default="artifacts/model", help="a classifier folder (make pipeline's by default)")
    parser.add_argument("--rows", type=int, default=8_000)
    parser.add_argument("--shards", type=int, default=2)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 2, help="threads in all")
    parser.add_argument("--chunk-rows", type=int, default=4096)
    parser.add_argument("--python", default=".venv-ref/bin/python")
    args = parser.parse_args()
    if not os.path.isfile(os.path.join(args.model, "config.json")):
        sys.exit(f"bench-shards: no model in {args.model}; run `make pipeline` first or pass --model")

    texts, source = queries()
    with tempfile.TemporaryDirectory() as out:
        data = os.path.join(out, "texts.csv")
        with open(data, "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["text"])
            writer.writerows([t] for t in itertools.islice(itertools.cycle(texts), args.rows))

        def command(output, threads, *extra):
            return [os.path.join(args.bin, "predict"), "--input-file", data, "--model-dir", args.model,
                    "--output-file", output, "--device", "cpu", "--threads", str(threads),
                    "--chunk-rows", str(args.chunk_rows), "--quiet", *extra]

        single_output = os.path.join(out, "single.parquet")
        single_seconds, single_rss, _ = run_measured(command(single_output, args.threads))

        sharded_output = os.path.join(out, "sharded.parquet")
        per_shard = max(1, args.threads // args.shards)
        results = [None] * args.shards

        def shard(index):
            results[index] = run_measured(command(sharded_output, per_shard, "--shard-count", str(args.shards),
                                                  "--shard-index", str(index)))

        started = time.perf_counter()
        workers = [threading.Thread(target=shard, args=(i,)) for i in range(args.shards)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
        if any(r is None for r in results):
            sys.exit("bench-shards: a shard failed (see above)")
        merge_seconds, merge_rss, _ = run_measured(command(sharded_output, 1, "--merge", "--shard-count",
                                                           str(args.shards)))
        sharded_seconds = time.perf_counter() - started
        same = same_tables(args.python, single_output, sharded_output)

    print(f"bench-shards: {args.rows:,} {source}, {args.model}, {args.threads} threads in all, "
          f"chunks of {args.chunk_rows}")
    print(f"{'':40} {'seconds':>8} {'rows/s':>8} {'peak RSS':>10}")
    print(f"{'one process, ' + str(args.threads) + ' threads':40} {single_seconds:8.1f} "
          f"{args.rows / single_seconds:8.1f} {single_rss:7.0f} MiB")
    for index, (seconds, rss, _) in enumerate(results):
        print(f"{f'  shard {index}/{args.shards}, {per_shard} threads':40} {seconds:8.1f} {'':8} {rss:7.0f} MiB")
    print(f"{'  merge':40} {merge_seconds:8.1f} {'':8} {merge_rss:7.0f} MiB")
    print(f"{str(args.shards) + ' shards + merge':40} {sharded_seconds:8.1f} {args.rows / sharded_seconds:8.1f} "
          f"{max(r[1] for r in results):7.0f} MiB per process")
    ratio = single_seconds / sharded_seconds
    print(f"sharded / one process: {ratio:.2f}x rows/s; merged table equals the single run's: {same}")
    print(json.dumps({"rows": args.rows, "shards": args.shards, "threads": args.threads,
                      "single": {"seconds": single_seconds, "peak_rss_mib": single_rss},
                      "shard_runs": [{"seconds": s, "peak_rss_mib": r} for s, r, _ in results],
                      "merge": {"seconds": merge_seconds, "peak_rss_mib": merge_rss},
                      "sharded_seconds": sharded_seconds, "ratio": ratio, "identical": same}))
    if not same:
        sys.exit("bench-shards: the merged table differs from the single run's")


def queries():
    banking77 = "../shared/data/banking77"
    if os.path.isdir(banking77):
        texts = []
        for name in ("train.csv", "test.csv"):
            with open(os.path.join(banking77, name), newline="") as f:
                texts.extend(row["text"] for row in csv.DictReader(f))
        return texts, "BANKING77 queries"
    path = "data/external/movie-reviews/movieReviewSnippets_GroundTruth.txt"
    with open(path, newline="", encoding="utf-8") as f:
        return [row["text"] for row in csv.DictReader(f, delimiter="\t")], "movie-review sentences"


def same_tables(python, left, right):
    """pyarrow (from .venv-ref) compares the two Parquet tables."""
    import subprocess
    script = ("import sys, pyarrow.parquet as pq; "
              "sys.exit(0 if pq.read_table(sys.argv[1]).equals(pq.read_table(sys.argv[2])) else 1)")
    return subprocess.run([python, "-c", script, left, right]).returncode == 0


if __name__ == "__main__":
    main()
