"""`make bench-serve`: kiln `serve` against a FastAPI + transformers pipeline
server with the same model, under the same load from `oha`, in one run.

For each concurrency (1, 8, 32, 64) both servers get `--duration` seconds of
closed-loop load of one short text per request; then kiln alone gets a 60 s
run at concurrency 64 that must finish with zero errors. Prints req/s, p50 and
p99 latency, errors, the kiln/reference ratio, and kiln's RSS.

Targets (issue 5): >= 3x the reference's req/s at concurrency 32; p50 <= 10 ms
at concurrency 1; 0 errors in the 60 s run; RSS with MiniLM <= 600 MB.
"""
import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

TEXT = "I am still waiting on my card?"
# For a token-classification model: a short tweet with two entities.
TAGGED_TEXT = "Watching Stranger Things with Emma in London tonight"


def tags_words(folder):
    """Whether a model folder is a token-classification one (config.json's architectures)."""
    with open(os.path.join(folder, "config.json")) as f:
        return any(name.endswith("ForTokenClassification") for name in json.load(f).get("architectures", []))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_ready(url, child, seconds=180):
    deadline = time.time() + seconds
    while time.time() < deadline:
        if child.poll() is not None:
            sys.exit(f"bench_serve: the server exited with {child.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.2)
    sys.exit(f"bench_serve: {url} never became ready")


def rss_mib(pid):
    """Current and peak resident memory of a process, in MiB."""
    values = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, rest = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                values[key] = int(rest.split()[0]) / 1024
    return values.get("VmRSS", 0.0), values.get("VmHWM", 0.0)


def load(oha, url, concurrency, seconds, text):
    """Runs oha; returns req/s, p50 and p99 in ms, and the count of failed requests."""
    # -w: requests still in flight when the time is up are finished, not
    # counted as errors ("aborted due to deadline" is oha's, not the server's).
    command = [oha, "-z", f"{seconds}s", "-w", "-c", str(concurrency), "-m", "POST", "-H", "content-type: application/json",
               "-d", json.dumps({"text": text}), "--no-tui", "--output-format", "json", url]
    result = json.loads(subprocess.run(command, check=True, capture_output=True, text=True).stdout)
    summary = result["summary"]
    statuses = result.get("statusCodeDistribution", {})
    ok = statuses.get("200", 0)
    failed = sum(count for code, count in statuses.items() if code != "200")
    failed += sum(result.get("errorDistribution", {}).values())
    percentiles = result["latencyPercentiles"]
    return {
        "rps": ok / summary["total"] if summary["total"] else 0.0,
        "p50_ms": (percentiles.get("p50") or 0) * 1e3,
        "p99_ms": (percentiles.get("p99") or 0) * 1e3,
        "errors": failed,
        "ok": ok,
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bin", default="target/release", help="folder with kiln's binaries")
    parser.add_argument("--model", default="artifacts/banking77/export",
                        help="model folder both servers load (an export or train's folder)")
    parser.add_argument("--python", default=".venv-ref/bin/python")
    parser.add_argument("--oha", default="oha")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--concurrency", default="1,8,32,64")
    parser.add_argument("--duration", type=int, default=20, help="seconds per concurrency and server")
    parser.add_argument("--soak", type=int, default=60, help="seconds of the zero-error run at concurrency 64")
    parser.add_argument("--max-wait-ms", type=int, default=None, help="kiln's serve.max_wait_ms (default: config)")
    args = parser.parse_args()
    if not os.path.isdir(args.model):
        sys.exit(f"bench_serve: no model folder {args.model} (CONFIG=configs/banking77.toml make pipeline, or --model)")
    levels = [int(c) for c in args.concurrency.split(",")]
    text = TAGGED_TEXT if tags_words(args.model) else TEXT

    log_dir = tempfile.mkdtemp(prefix="kiln-bench-serve-")
    kiln_port, ref_port = free_port(), free_port()
    kiln_command = [os.path.join(args.bin, "serve"), "--model-dir", args.model, "--port", str(kiln_port),
                    "--device", "cpu", "--threads", str(args.threads), "--log-dir", log_dir, "--quiet"]
    if args.max_wait_ms is not None:
        kiln_command += ["--max-wait-ms", str(args.max_wait_ms)]
    env = {k: v for k, v in os.environ.items() if not k.startswith("KILN_")}
    results = {"kiln": {}, "reference": {}}
    try:
        kiln = subprocess.Popen(kiln_command, env=env)
        wait_ready(f"http://127.0.0.1:{kiln_port}/readyz", kiln)
        idle_rss, _ = rss_mib(kiln.pid)
        url = f"http://127.0.0.1:{kiln_port}/v1/predict"
        load(args.oha, url, 4, 3, text)  # warm-up
        for c in levels:
            results["kiln"][c] = load(args.oha, url, c, args.duration, text)
            print(f"kiln      c={c:<3} {results['kiln'][c]}", flush=True)
        soak = load(args.oha, url, 64, args.soak, text) if args.soak else None
        loaded_rss, peak_rss = rss_mib(kiln.pid)
        kiln.terminate()
        kiln.wait(timeout=60)

        ref = subprocess.Popen([args.python, "scripts/bench_serve_reference.py", args.model, str(ref_port),
                                str(args.threads)], env={**env, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"})
        wait_ready(f"http://127.0.0.1:{ref_port}/readyz", ref)
        ref_idle_rss, _ = rss_mib(ref.pid)
        url = f"http://127.0.0.1:{ref_port}/v1/predict"
        load(args.oha, url, 4, 3, text)
        for c in levels:
            results["reference"][c] = load(args.oha, url, c, args.duration, text)
            print(f"reference c={c:<3} {results['reference'][c]}", flush=True)
        _, ref_peak_rss = rss_mib(ref.pid)
        ref.terminate()
        ref.wait(timeout=60)
    finally:
        for name in ("kiln", "ref"):
            child = locals().get(name)
            if child is not None and child.poll() is None:
                child.kill()
        shutil.rmtree(log_dir, ignore_errors=True)

    print(f"\nserve benchmark: {args.model}, one short text per request ({text!r}), {args.threads} threads, "
          f"{args.duration} s per level, load from oha on the same machine")
    print("| concurrency | kiln req/s | kiln p50 ms | kiln p99 ms | errors | reference req/s | reference p50 ms "
          "| reference p99 ms | ratio |")
    print("|---|---|---|---|---|---|---|---|---|")
    for c in levels:
        k, r = results["kiln"][c], results["reference"][c]
        ratio = k["rps"] / r["rps"] if r["rps"] else float("inf")
        print(f"| {c} | {k['rps']:.0f} | {k['p50_ms']:.1f} | {k['p99_ms']:.1f} | {k['errors']} | {r['rps']:.0f} "
              f"| {r['p50_ms']:.1f} | {r['p99_ms']:.1f} | {ratio:.2f}x |")
    if soak:
        print(f"\nsoak: {args.soak} s at concurrency 64: {soak['ok']} requests, {soak['errors']} errors, "
              f"{soak['rps']:.0f} req/s, p99 {soak['p99_ms']:.1f} ms")
    print(f"kiln RSS: {idle_rss:.0f} MiB idle, {loaded_rss:.0f} MiB after load, peak {peak_rss:.0f} MiB; "
          f"reference: {ref_idle_rss:.0f} MiB idle, peak {ref_peak_rss:.0f} MiB")


if __name__ == "__main__":
    main()
