#!/usr/bin/python3
"""`make bench`: prefill / decode tokens/s of random-weight Q8_0 llama models (~25M and ~110M parameters), native CLI
and wasm in Node (both wasm builds when built), median of REPEAT runs. Writes docs/bench.json and docs/bench.md.
Benchmarks are not tests: nothing here asserts a speed."""
import json
import os
import platform
import statistics
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BUILD = os.path.join(ROOT, "build", "bench")
REPEAT = int(os.environ.get("BENCH_REPEAT", "3"))
N_PROMPT, N_GEN = int(os.environ.get("BENCH_PROMPT", "128")), int(os.environ.get("BENCH_GEN", "32"))


def model_path(size):
    path = os.path.join(BUILD, f"random-{size}-q8_0.gguf")
    if not os.path.exists(path):
        subprocess.run(["/usr/bin/python3", os.path.join(ROOT, "models", "tools", "make_random.py"), size, path, "q8_0"],
                       check=True)
    return path


def median_run(cmd):
    runs = []
    for _ in range(REPEAT):
        r = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
        if r.returncode != 0:
            raise SystemExit(f"bench: {' '.join(cmd)} failed: {r.stderr.strip()}")
        runs.append(json.loads(r.stdout.strip().splitlines()[-1]))
    return {"prefill_tps": statistics.median(r["prefill_tps"] for r in runs),
            "decode_tps": statistics.median(r["decode_tps"] for r in runs),
            "runs": runs}


def main():
    os.makedirs(BUILD, exist_ok=True)
    results = []
    wasm_runner = os.path.join(ROOT, "tests", "bench", "wasm_bench.mjs")
    for size in ("25m", "110m"):
        path = model_path(size)
        for threads in (1, 2):
            res = median_run([os.path.join(ROOT, "build", "edgeinf"), "bench", "-m", path, "-p", str(N_PROMPT),
                              "-n", str(N_GEN), "--threads", str(threads)])
            results.append({"model": size, "engine": "native", "threads": threads, **res})
            print(f"{size} native t{threads}: prefill {res['prefill_tps']:.1f} tok/s, decode {res['decode_tps']:.1f} tok/s",
                  flush=True)
        # Node has no cross-origin isolation: the threaded build is measured in browsers only (tests/browser).
        for build, threads in (("simd", 1),):
            js = os.path.join(ROOT, "dist", f"edgeinf-{build}.js")
            if not (os.path.exists(js) and os.path.exists(wasm_runner)):
                print(f"{size} wasm {build}: skipped (run `make wasm` first)")
                continue
            res = median_run(["node", wasm_runner, build, path, str(N_PROMPT), str(N_GEN), str(threads)])
            results.append({"model": size, "engine": f"wasm-{build} (node)", "threads": threads, **res})
            print(f"{size} wasm {build} t{threads}: prefill {res['prefill_tps']:.1f} tok/s, decode {res['decode_tps']:.1f} tok/s",
                  flush=True)
    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), platform.machine())
    out = {"cpu": cpu, "nproc": os.cpu_count(), "n_prompt": N_PROMPT, "n_gen": N_GEN, "repeat": REPEAT,
           "command": "make bench", "results": results}
    os.makedirs(os.path.join(ROOT, "docs"), exist_ok=True)
    with open(os.path.join(ROOT, "docs", "bench.json"), "w") as f:
        json.dump(out, f, indent=1)
    lines = ["# Benchmarks", "", f"`make bench` on {cpu} ({os.cpu_count()} cores). Random-weight Q8_0 llama models, "
             f"prompt {N_PROMPT} tokens, {N_GEN} decoded tokens, median of {REPEAT} runs.", "",
             "| model | engine | threads | prompt tokens | prefill tok/s | decode tok/s |", "|---|---|---|---|---|---|"]
    for r in results:
        lines.append(f"| {r['model']} | {r['engine']} | {r['threads']} | {r['runs'][0]['n_prompt']} | "
                     f"{r['prefill_tps']:.1f} | {r['decode_tps']:.1f} |")
    with open(os.path.join(ROOT, "docs", "bench.md"), "w") as f:
        f.write("\n".join(lines) + "\n")
    print("wrote docs/bench.json and docs/bench.md")


if __name__ == "__main__":
    sys.exit(main())
