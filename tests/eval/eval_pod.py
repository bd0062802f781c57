#!/usr/bin/python3
"""`make eval-pod`: PoD evaluation computed by the C engine (build/edgeinf); Python only prepares inputs and tables.

  kv         KV bytes reported by the engine (`--stats`) for full and pod at 4K / 16K / 64K token capacities (the
             allocation is what a session of that capacity holds; positions beyond the training context are not
             evaluated for quality).
  ppl        perplexity at the model's context on the first EVAL_PPL_TOKENS tokens of the corpus split EVAL_PPL_SPLIT
             (default heldout: models/train_pod.py picks its kept weights on the val split) for full, pod
             share=scores, pod share=keys (training-free blocks from the calibration adapter), and, when POD_MODEL is
             given, the post-trained model with pod (both share modes, its adapter POD_MODEL_ADAPTER, default
             POD_MODEL's -pod.gguf) and with full attention; edgeinfinite and edgeinfinite+pod on one long held-out
             pass.
  passkey    accuracy (tests/eval/eval_long.py's task) at the model's context for full / pod, and at EVAL_LENGTHS for
             edgeinfinite / edgeinfinite+pod.

Environment: EVAL_MODEL, POD_ADAPTER (a `pod` adapter from models/pod_calibrate.py), EIPOD_ADAPTER (an
`edgeinfinite+pod` adapter), EI_ADAPTER, POD_MODEL (post-trained GGUF from models/train_pod.py, optional),
POD_MODEL_ADAPTER, EVAL_PPL_SPLIT (heldout), EVAL_PPL_TOKENS, EVAL_OUT (docs), EVAL_KEYS, EVAL_LENGTHS.
"""
import json
import os
import random
import re
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import eval_long as L  # noqa: E402  (prompt builders and the CLI runner)

ROOT = L.ROOT


def stats_line(r):
    return json.loads(r.stderr.strip().splitlines()[-1]) if r.returncode == 0 else None


def main():
    model = os.environ.get("EVAL_MODEL", os.path.join(ROOT, "models", "edgeinf-default-q8_0.gguf"))
    pod = os.environ.get("POD_ADAPTER", os.path.join(ROOT, "models", "edgeinf-default-pod.gguf"))
    eipod = os.environ.get("EIPOD_ADAPTER", os.path.join(ROOT, "models", "edgeinf-podtrained-eipod.gguf"))
    ei = os.environ.get("EI_ADAPTER", os.path.join(ROOT, "models", "edgeinf-default-adapter.gguf"))
    post = os.environ.get("POD_MODEL", os.path.join(ROOT, "models", "edgeinf-podtrained-q8_0.gguf"))
    out_dir = os.environ.get("EVAL_OUT", os.path.join(ROOT, "docs"))
    if not os.path.exists(pod):
        print(f"eval-pod: no pod adapter at {pod} (make pod-calibrate)", file=sys.stderr)
        return 1
    info, _ = L.run(["info", "-m", model])
    ctx = int(re.search(r"ctx_train (\d+)", info.stdout).group(1))
    res = {"model": os.path.relpath(model, ROOT), "pod_adapter": os.path.relpath(pod, ROOT), "kv": [], "ppl": [],
           "passkey": []}
    variants = [("full", model, []), ("pod scores", model, ["--policy", "pod", "--adapter", pod, "--pod-share", "scores"]),
                ("pod keys", model, ["--policy", "pod", "--adapter", pod, "--pod-share", "keys"])]
    if post and os.path.exists(post):
        post_ad = os.environ.get("POD_MODEL_ADAPTER", os.path.splitext(post)[0] + "-pod.gguf")
        if not os.path.exists(post_ad):   # the shipped naming: models/edgeinf-podtrained-{q8_0,pod}.gguf
            post_ad = re.sub(r"-q\d_\d\.gguf$|-f(16|32)\.gguf$", "-pod.gguf", post)
        if not os.path.exists(post_ad):
            post_ad = pod
        res["post_trained"] = {"model": os.path.relpath(post, ROOT), "adapter": os.path.relpath(post_ad, ROOT)}
        variants += [("pod post-trained scores", post, ["--policy", "pod", "--adapter", post_ad, "--pod-share", "scores"]),
                     ("pod post-trained keys", post, ["--policy", "pod", "--adapter", post_ad, "--pod-share", "keys"]),
                     ("full post-trained", post, [])]

    # ------------------------------------------------------------ KV bytes by capacity
    for cap in (4096, 16384, 65536):
        for name, m, extra in variants[:3]:
            r, _ = L.run(["generate", "-m", m, "-p", "x", "-n", "1", "--ctx", str(cap), "--stats", *extra])
            st = stats_line(r)
            if st:
                res["kv"].append({"capacity": cap, "variant": name, "kv_bytes": st["kv_bytes"]})
                print(f"kv cap={cap} {name}: {st['kv_bytes'] / 1e6:.2f} MB", flush=True)

    # ------------------------------------------------------------ perplexity at the model's context
    split = os.environ.get("EVAL_PPL_SPLIT", "heldout")
    ids = L.corpus_ids(model, split)
    if ids is not None:
        with tempfile.TemporaryDirectory() as td:
            path = os.path.join(td, "val.txt")
            L.write_prefix(model, ids, int(os.environ.get("EVAL_PPL_TOKENS", 32768)), path)
            for name, m, extra in variants:
                pp = L.perplexity(m, path, ["--ctx", str(ctx), *extra])
                if pp:
                    res["ppl"].append({"variant": name, "ppl": pp[0], "tokens": pp[1]})
                    print(f"ppl {name}: {pp[0]}", flush=True)

    # ------------------------------------------------------------ passkey at the model's context
    rnd = random.Random(99)
    ftok = L.n_tokens(model, L.FILLER + " ")
    with tempfile.TemporaryDirectory() as td:
        for depth in (0.0, 0.25, 0.5, 0.75, 1.0):
            for _ in range(int(os.environ.get("EVAL_KEYS", 4))):
                key = rnd.randrange(10000, 100000)
                path = os.path.join(td, "p.txt")
                with open(path, "w", encoding="utf-8") as f:
                    f.write(L.passkey_prompt(model, ctx - 16, depth, key, ftok))
                for name, m, extra in variants:
                    r, _ = L.run(["generate", "-m", m, "-f", path, "-n", "8", "--temp", "0", *extra])
                    got = re.findall(r"\d{5}", r.stdout)
                    res["passkey"].append({"variant": name, "depth": depth, "hit": bool(got) and got[0] == str(key)})
    long_context(res, model, post if post and os.path.exists(post) else None, ei, eipod)
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, "eval-pod.json"), "w") as f:
        json.dump(res, f, indent=1)
    full_kv = {r["capacity"]: r["kv_bytes"] for r in res["kv"] if r["variant"] == "full"}
    full_ppl = next((r["ppl"] for r in res["ppl"] if r["variant"] == "full"), None)
    lines = ["# PoD evaluation", "", f"`make eval-pod` — model `{os.path.relpath(model, ROOT)}`, blocks from "
             f"`{os.path.relpath(pod, ROOT)}`; computed by the C engine.", "",
             "## KV bytes", "", "| capacity | variant | KV MB | saved vs full |", "|---|---|---|---|"]
    for r in res["kv"]:
        saved = 1 - r["kv_bytes"] / full_kv[r["capacity"]] if r["capacity"] in full_kv else 0
        lines.append(f"| {r['capacity']} | {r['variant']} | {r['kv_bytes'] / 1e6:.2f} | {saved * 100:.1f}% |")
    if res["ppl"]:
        lines += ["", f"## Perplexity, corpus split `{split}` (windows of {ctx} tokens)", "", "| variant | ppl | vs full |",
                  "|---|---|---|"]
        for r in res["ppl"]:
            rel = (r["ppl"] / full_ppl - 1) * 100 if full_ppl else 0
            lines.append(f"| {r['variant']} | {r['ppl']:.3f} | {rel:+.2f}% |")
    if res["passkey"]:
        lines += ["", f"## Passkey at {ctx - 16} tokens", "", "| variant | accuracy |", "|---|---|"]
        for name in dict.fromkeys(r["variant"] for r in res["passkey"]):
            rows = [r for r in res["passkey"] if r["variant"] == name]
            lines.append(f"| {name} | {sum(r['hit'] for r in rows)}/{len(rows)} |")
    lines += long_context_lines(res)
    if plot(res, out_dir):
        lines += ["", "![KV bytes and perplexity per variant](eval-pod.png)"]
    with open(os.path.join(out_dir, "eval-pod.md"), "w") as f:
        f.write("\n".join(lines) + "\n")
    print(f"wrote {out_dir}/eval-pod.md")
    return 0


def plot(res, out_dir):
    """eval-pod.png: KV MB per capacity and variant, perplexity at the context per variant, and (long part) KV+memory
    MB vs passkey accuracy. Returns False when matplotlib is missing or there is nothing to draw."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    if not res["kv"]:
        return False
    fig, ax = plt.subplots(1, 3, figsize=(16, 4))
    caps = sorted({r["capacity"] for r in res["kv"]})
    names = list(dict.fromkeys(r["variant"] for r in res["kv"]))
    w = 0.8 / max(1, len(names))
    for i, n in enumerate(names):
        ys = [next((r["kv_bytes"] / 1e6 for r in res["kv"] if r["capacity"] == c and r["variant"] == n), 0) for c in caps]
        ax[0].bar([j + i * w for j in range(len(caps))], ys, w, label=n)
    ax[0].set_xticks([j + 0.4 - w / 2 for j in range(len(caps))], [str(c) for c in caps])
    ax[0].set_xlabel("session capacity (tokens)")
    ax[0].set_title("KV MB")
    ax[0].set_yscale("log")
    ax[0].legend(fontsize=7)
    if res["ppl"]:
        ax[1].barh([r["variant"] for r in res["ppl"]], [r["ppl"] for r in res["ppl"]])
        ax[1].set_title("perplexity at the model's context")
        ax[1].tick_params(axis="y", labelsize=7)
    lg = res.get("long")
    if lg and lg["kv"]:
        for k in lg["kv"]:
            rows = [r for r in lg["passkey"] if r["variant"] == k["variant"]]
            if rows:
                acc = 100 * sum(r["hit"] for r in rows) / len(rows)
                ax[2].scatter([(k["kv_bytes"] + k["memory_bytes"]) / 1e6], [acc], s=40)
                ax[2].annotate(k["variant"], ((k["kv_bytes"] + k["memory_bytes"]) / 1e6, acc), fontsize=7)
        ax[2].set_xlabel("KV + memory MB (one session, any length)")
        ax[2].set_ylabel("passkey accuracy %")
        ax[2].set_title("beyond the context")
    fig.tight_layout()
    os.makedirs(out_dir, exist_ok=True)
    fig.savefig(os.path.join(out_dir, "eval-pod.png"), dpi=100)
    plt.close(fig)
    return True


def long_context(res, model, post, ei, eipod):
    """Beyond the model's context: streaming, edgeinfinite and edgeinfinite+pod with one cache layout (the
    EdgeInfinite adapter's), on the base and, when given, the post-trained model. Perplexity over the first
    EVAL_LONG_TOKENS (32768) held-out tokens in one pass, passkey at EVAL_LENGTHS (8192,32768) x 5 depths x
    EVAL_LONG_KEYS (2), KV and memory bytes from the engine's --stats."""
    if not os.path.exists(ei):
        print(f"eval-pod: no EdgeInfinite adapter at {ei}: long-context part skipped", file=sys.stderr)
        return
    lay = L.default_layout(ei)
    layout = ["--n-sink", str(lay[0]), "--window", str(lay[1]), "--seg", str(lay[2])]
    variants = [("streaming", model, ["--policy", "streaming", *layout]),
                ("edgeinfinite", model, ["--policy", "edgeinfinite", "--adapter", ei])]
    if post:
        variants.append(("edgeinfinite, post-trained model", post, ["--policy", "edgeinfinite", "--adapter", ei]))
        if os.path.exists(eipod):
            variants.append(("edgeinfinite+pod, post-trained model", post,
                             ["--policy", "edgeinfinite+pod", "--adapter", eipod]))
    res["long"] = {"layout": list(lay), "ppl": [], "passkey": [], "kv": []}
    ids = L.corpus_ids(model, "heldout")
    with tempfile.TemporaryDirectory() as td:
        if ids is not None:
            path = os.path.join(td, "long.txt")
            L.write_prefix(model, ids, int(os.environ.get("EVAL_LONG_TOKENS", 32768)), path)
            for name, m, extra in variants:
                pp = L.perplexity(m, path, extra)
                if pp:
                    res["long"]["ppl"].append({"variant": name, "ppl": pp[0], "tokens": pp[1]})
                    print(f"long ppl {name}: {pp[0]}", flush=True)
        rnd = random.Random(7)
        ftok = L.n_tokens(model, L.FILLER + " ")
        for length in L.env_list("EVAL_LENGTHS", [8192, 32768]):
            for depth in (0.0, 0.25, 0.5, 0.75, 1.0):
                for _ in range(int(os.environ.get("EVAL_LONG_KEYS", 2))):
                    key = rnd.randrange(10000, 100000)
                    path = os.path.join(td, "p.txt")
                    with open(path, "w", encoding="utf-8") as f:
                        f.write(L.passkey_prompt(model, length, depth, key, ftok))
                    for name, m, extra in variants:
                        r, _ = L.run(["generate", "-m", m, "-f", path, "-n", "8", "--temp", "0", "--stats", *extra])
                        got = re.findall(r"\d{5}", r.stdout)
                        hit = bool(got) and got[0] == str(key)
                        res["long"]["passkey"].append({"variant": name, "length": length, "depth": depth, "hit": hit})
                        st = stats_line(r)
                        if st and not any(k["variant"] == name for k in res["long"]["kv"]):
                            res["long"]["kv"].append({"variant": name, "kv_bytes": st["kv_bytes"],
                                                      "memory_bytes": st.get("memory_bytes", 0)})
                        print(f"long passkey L={length} depth={depth:.2f} {name}: {'HIT' if hit else 'miss'}", flush=True)


def long_context_lines(res):
    lg = res.get("long")
    if not lg:
        return []
    out = ["", f"## Beyond the context: streaming, edgeinfinite, edgeinfinite+pod (cache layout sink {lg['layout'][0]} + "
           f"window {lg['layout'][1]} + segment {lg['layout'][2]})", ""]
    kv = {r["variant"]: r for r in lg["kv"]}
    names = list(dict.fromkeys([r["variant"] for r in lg["passkey"]] + [r["variant"] for r in lg["ppl"]]))
    lengths = sorted({r["length"] for r in lg["passkey"]})
    out += ["| variant | KV MB | memory MB | ppl (held-out, one pass) | " +
            " | ".join(f"passkey {n}" for n in lengths) + " |", "|---|---|---|---|" + "---|" * len(lengths)]
    for name in names:
        k = kv.get(name)
        p = next((r for r in lg["ppl"] if r["variant"] == name), None)
        cells = []
        for n in lengths:
            rows = [r for r in lg["passkey"] if r["variant"] == name and r["length"] == n]
            cells.append(f"{sum(r['hit'] for r in rows)}/{len(rows)}" if rows else "–")
        out.append(f"| {name} | {k['kv_bytes'] / 1e6:.2f} | {k['memory_bytes'] / 1e6:.2f} | "
                   f"{p['ppl']:.3f} ({p['tokens']} tok) | " if k and p else f"| {name} | – | – | – | ")
        out[-1] += " | ".join(cells) + " |"
    return out


if __name__ == "__main__":
    sys.exit(main())
