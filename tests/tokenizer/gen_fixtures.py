#!/usr/bin/python3
"""gen_fixtures.py — tokenizer parity fixtures, produced by the real sentencepiece library.

The reference is Debian's sentencepiece (spm_train CLI + python3-sentencepiece). This script
  1. trains small .model files on tests/tokenizer/corpus.txt with spm_train (BPE and unigram, several
     whitespace/byte-fallback settings, identity normalization; plus one with a custom normalization rule
     that edgeinf must refuse),
  2. writes a varied set of test strings (tests/fixtures/tok/cases.txt),
  3. encodes every string with the library and writes the ids and the library's decode of them
     (<model>.ids), and decodes random id sequences (<model>.dec).
tests/unit/test_tokenizer.c loads the same .model files with edgeinf and must reproduce every line.

Usage (from the repo root; `make tok-fixtures` runs the default mode):
  /usr/bin/python3 tests/tokenizer/gen_fixtures.py                 # models + fixtures from corpus.txt
  /usr/bin/python3 tests/tokenizer/gen_fixtures.py --build-corpus  # first re-assemble corpus.txt from
                                                                   # Debian-packaged text on this machine
Fixture line formats (strings escaped: \\\\ \\n \\t \\r \\xNN for other control chars, UTF-8 otherwise):
  cases.txt:    one escaped test string per line
  <model>.ids:  '# n_vocab=N bos=B eos=E unk=U' header, then per case: ids TAB decode check, or '-' for a
                case not checked with this model. ids: two base64url chars per id ("AB" = 0*64+1);
                decode check: '=' when the library's decode equals the case, else FNV-1a-32 (hex) of it
  <model>.dec:  ids TAB escaped decoded text, for random id sequences and for every id alone
  <model>.vocab: '# algo=... bos=... flags' header, then per id: escaped piece TAB score (float.hex) TAB type
"""
import argparse
import gettext
import glob
import os
import random
import shutil
import subprocess
import sys
import sysconfig
import tempfile

import sentencepiece as spm

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
CORPUS = os.path.join(ROOT, "tests", "tokenizer", "corpus.txt")
OUT = os.path.join(ROOT, "tests", "fixtures", "tok")

USER_DEFINED = "<|user|>,<|end|>,@@"
CONTROL = "<ctrl>"

# name -> spm_train options. All but `custom_rule` use identity normalization (edgeinf implements
# no Unicode normalization), byte fallback unless stated, and vary the whitespace flags.
COMMON = ["--normalization_rule_name=identity", "--character_coverage=0.9995", "--split_digits=true",
          f"--user_defined_symbols={USER_DEFINED}", f"--control_symbols={CONTROL}"]
MODELS = {
    "bpe_bf": ["--model_type=bpe", "--vocab_size=2000", "--byte_fallback=true"] + COMMON,
    "uni_bf": ["--model_type=unigram", "--vocab_size=2000", "--byte_fallback=true"] + COMMON,
    # spaces kept verbatim, whitespace-only pieces allowed: exercises runs of U+2581
    "bpe_keepws": ["--model_type=bpe", "--vocab_size=2000", "--byte_fallback=true",
                   "--remove_extra_whitespaces=false", "--allow_whitespace_only_pieces=true"] + COMMON,
    "uni_keepws_noprefix": ["--model_type=unigram", "--vocab_size=2000", "--byte_fallback=true",
                            "--remove_extra_whitespaces=false", "--add_dummy_prefix=false",
                            "--allow_whitespace_only_pieces=true"] + COMMON,
    # no byte fallback: unknown chars become <unk> (runs merged into one)
    "uni_nobf": ["--model_type=unigram", "--vocab_size=2000", "--byte_fallback=false"] + COMMON,
    "bpe_nobf_noprefix": ["--model_type=bpe", "--vocab_size=2000", "--byte_fallback=false",
                          "--add_dummy_prefix=false"] + COMMON,
    # a non-identity normalization rule (a small custom TSV, so the file stays small; a real nmt_nfkc
    # charsmap is 240 KB): must be refused with EI_ERR_UNSUPPORTED. The C test also patches the rule
    # name of bpe_bf to nmt_nfkc in memory.
    "custom_rule": ["--vocab_size=1000", "--character_coverage=0.98", "--normalization_rule_tsv={RULES}"],
}
RULE_TSV = "FB01\t66 69\nFF21\t41\nFF22\t42\n"  # U+FB01 (fi ligature) -> "fi", fullwidth A/B -> A/B
# Derived by editing a trained model: some merged pieces marked UNUSED (BPE re-segments them, unigram
# skips them). (variant, source)
UNUSED_VARIANTS = [("bpe_unused", "bpe_bf"), ("uni_unused", "uni_bf")]
PARITY_MODELS = ["bpe_bf", "uni_bf", "bpe_keepws", "uni_keepws_noprefix", "uni_nobf", "bpe_nobf_noprefix",
                 "bpe_unused", "uni_unused"]
NO_DEC = {"uni_unused"}  # decoding does not depend on UNUSED; saves fixture space


# ------------------------------------------------------------------ corpus (only with --build-corpus)

MO_LANGS = ["de", "fr", "es", "pl", "tr", "vi", "ru", "uk", "el", "ka", "he", "ar", "fa", "hi", "bn", "th",
            "ja", "zh_CN", "ko"]
EMOJI_LINES = [
    "Great job 👍 see you tomorrow 😀", "I ❤️ this! 🎉🎉", "weather: ☀️ then 🌧️, 22°C",
    "family: 👨‍👩‍👧 and 👩‍💻 at work", "thumbs 👍🏽 👍🏿 👋🏻", "flags 🇫🇷 🇯🇵 🇧🇷", "😂😂😂 lol",
]


def mo_strings(lang, budget):
    """Translated messages of one language from the system's gettext catalogs, up to budget chars."""
    out, size = [], 0
    for path in sorted(glob.glob(f"/usr/share/locale/{lang}/LC_MESSAGES/*.mo")):
        try:
            with open(path, "rb") as f:
                cat = gettext.GNUTranslations(f)._catalog
        except Exception:
            continue
        for k in sorted(cat, key=str):
            v = cat[k]
            if not k or not isinstance(v, str) or not v.strip() or isinstance(k, tuple):
                continue
            for line in v.split("\n"):
                if line.strip() and size < budget:
                    out.append(line)
                    size += len(line)
        if size >= budget:
            break
    return out


def build_corpus():
    rng = random.Random(1)
    parts = []
    for p in ["/usr/share/common-licenses/GPL-3", "/usr/share/common-licenses/Apache-2.0"]:
        parts += open(p, encoding="utf-8").read().split("\n")
    stdlib = sysconfig.get_paths()["stdlib"]
    for p in [os.path.join(stdlib, f) for f in ("textwrap.py", "json/encoder.py", "heapq.py")]:
        parts += open(p, encoding="utf-8").read().split("\n")
    for p in ["/usr/include/stdio.h", "/usr/include/string.h"]:
        parts += open(p, encoding="utf-8", errors="replace").read().split("\n")
    for lang in MO_LANGS:
        budget = 1200 if lang in ("ja", "zh_CN", "ko") else 6500
        parts += mo_strings(lang, budget)
    parts += EMOJI_LINES * 3
    parts = [p for p in parts if p.strip()]
    rng.shuffle(parts)
    with open(CORPUS, "w", encoding="utf-8") as f:
        f.write("\n".join(parts) + "\n")
    print(f"corpus: {len(parts)} lines, {os.path.getsize(CORPUS)} bytes -> {CORPUS}")


# ------------------------------------------------------------------ models

def train(name, opts, tmp):
    """Runs spm_train inside tmp with relative paths: the trainer_spec stored in the .model records its
    input and prefix, and committed files must hold no machine paths."""
    shutil.copyfile(CORPUS, os.path.join(tmp, "corpus.txt"))
    with open(os.path.join(tmp, "rules.tsv"), "w") as f:
        f.write(RULE_TSV)
    cmd = ["spm_train", "--input=corpus.txt", f"--model_prefix={name}", "--num_threads=1",
           "--minloglevel=2"] + [o.replace("{RULES}", "rules.tsv") for o in opts]
    r = subprocess.run(cmd, cwd=tmp, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    if r.returncode != 0:
        sys.exit(f"spm_train {name} failed:\n" + r.stderr[-2000:])
    shutil.copyfile(os.path.join(tmp, name + ".model"), os.path.join(OUT, name + ".model"))


def varint(n):
    b = bytearray()
    while True:
        x = n & 0x7F
        n >>= 7
        if n:
            b.append(x | 0x80)
        else:
            b.append(x)
            return bytes(b)


def read_varint(buf, i):
    n = shift = 0
    while True:
        c = buf[i]
        i += 1
        n |= (c & 0x7F) << shift
        shift += 7
        if not c & 0x80:
            return n, i


def proto_fields(buf):
    """(field, wire, raw bytes of the whole field) of a protobuf message (wire types 0, 2, 5)."""
    i, out = 0, []
    while i < len(buf):
        start = i
        key, i = read_varint(buf, i)
        f, w = key >> 3, key & 7
        if w == 0:
            _, i = read_varint(buf, i)
        elif w == 2:
            n, i = read_varint(buf, i)
            i += n
        elif w == 5:
            i += 4
        else:
            raise ValueError(f"wire type {w}")
        out.append((f, w, buf[start:i]))
    return out


def make_unused_variant(dst, src):
    """Copies model src marking every 7th multi-char NORMAL piece UNUSED (type 5), a case that
    spm_train never writes but sentencepiece's BPE handles by re-segmentation."""
    sp = spm.SentencePieceProcessor(model_file=os.path.join(OUT, src + ".model"))
    marked = {i for i in range(sp.get_piece_size())
              if sp.id_to_piece(i).startswith("▁") is False and len(sp.id_to_piece(i)) >= 2
              and not (sp.is_control(i) or sp.is_unknown(i) or sp.is_byte(i) or sp.is_unused(i))
              and sp.id_to_piece(i) not in USER_DEFINED.split(",")}
    marked = set(sorted(marked)[::7])
    buf = open(os.path.join(OUT, src + ".model"), "rb").read()
    out, idx = bytearray(), 0
    for f, w, raw in proto_fields(buf):
        if f == 1 and w == 2:
            if idx in marked:
                key_len = len(varint((1 << 3) | 2))
                _, p = read_varint(raw, key_len)
                sub = [r for (ff, _, r) in proto_fields(raw[p:]) if ff != 3] + [varint(3 << 3) + varint(5)]
                body = b"".join(sub)
                raw = varint((1 << 3) | 2) + varint(len(body)) + body
            idx += 1
        out += raw
    open(os.path.join(OUT, dst + ".model"), "wb").write(bytes(out))
    return len(marked)


# ------------------------------------------------------------------ test strings

EMOJI = ["😀", "😂", "🥲", "👍", "👍🏽", "👍🏿", "👋🏻", "❤️", "☀️", "🌧️", "🎉", "👨‍👩‍👧‍👦", "👩‍💻", "🏳️‍🌈",
         "🧑🏾‍🚀", "🇫🇷", "🇯🇵", "🇺🇳", "1️⃣", "#️⃣", "🫠", "🦀", "🐍", "🀄", "🈯"]
SPECIAL = ["<s>", "</s>", "<unk>", "<0x41>", "<ctrl>", "<|user|>", "<|end|>", "@@", "<|user|>hello<|end|>",
           "▁", "▁▁ ▁", "a▁b", "▁leading", "trailing▁", "\ufffd", "<pad>", "@@@", "<|user|", "|end|>",
           "@@ @@", " <|user|> ", "\u00a0nbsp\u00a0", "\u3000ideographic space", "\u2028", "\ufeffbom",
           "\x00", "a\x00b c", "\x7f\x1b[0m"]
CODE = ["int main(void) { return 0; }", "    if (x < 0) x = -x;  // abs", "\tfor i in range(10):\n\t\tprint(i)",
        "def f(a, b=2, *args, **kw):\n    return {'a': a, \"b\": b}", "#include <stdio.h>",
        "SELECT * FROM t WHERE id = 42;", "x = [1, 2, 3][::-1]  # reversed", "a && b || !c", "ptr->next->prev = NULL;",
        "fn main() { println!(\"{}\", 1 + 2); }", "<div class=\"x\">&amp;</div>", "$ ls -la | grep '\\.c$'"]
NUMBERS = ["3.14159", "1,000,000", "0xDEADBEEF", "2024-01-31T12:00:00Z", "+33 1 23 45 67 89", "1e-9", "½ ¾ ²³",
           "٣٤٥ ١٢", "१२३४", "一二三 四千", "IV XLII", "-0.0", "100%", "$9.99", "€5,50", "12345678901234567890"]
WS = ["", " ", "  ", "     ", "\t", "\t\t", "\n", "\n\n", " \t ", "\r\n", " \n ", "          x", "x          ",
      "  a  b   c    d  ", "a\tb\tc", "a \t b", " leading", "trailing ", "  both  ", "mid    dle", "\t tab space",
      "x\n", "\ny", "a\r\nb", " " * 37, "\t" * 9 + "x", "\u2003em space"]
COMBINING = ["e\u0301", "n\u0303o", "Z\u0351\u0358\u0363a\u0356\u036al\u0353\u0359g\u0325o\u0347", "\u0915\u094d\u0937",
             "\u0627\u0644\u0639\u0631\u0628\u064a\u0629", "\u05e9\u05b8\u05c1\u05dc\u05d5\u05b9\u05dd"]
SCRIPTS = [  # (lo, hi) code point blocks for random rare characters
    (0x00C0, 0x024F), (0x0370, 0x03FF), (0x0400, 0x04FF), (0x0530, 0x058F), (0x0590, 0x05FF), (0x0600, 0x06FF),
    (0x0900, 0x097F), (0x0980, 0x09FF), (0x0E00, 0x0E7F), (0x10A0, 0x10FF), (0x1100, 0x11FF), (0x3040, 0x30FF),
    (0x4E00, 0x9FFF), (0xAC00, 0xD7A3), (0xF900, 0xFAFF), (0xFF00, 0xFFEF), (0x1D400, 0x1D7FF), (0x1F300, 0x1FAFF),
    (0x20000, 0x2A6DF), (0x10300, 0x1032F), (0x0080, 0x009F), (0x0001, 0x001F), (0xE000, 0xE0FF), (0x10FFF0, 0x10FFFD),
]


def rand_char(rng):
    lo, hi = rng.choice(SCRIPTS)
    return chr(rng.randint(lo, hi))


def rand_ws(rng):
    return rng.choice([" ", " ", " ", "  ", "   ", "\t", " \t", "\n", "", "    "])


N_FIXED = len(WS + SPECIAL + CODE + NUMBERS + COMBINING + EMOJI) + 4  # hand-written cases come first


def make_cases(lines, rng):
    cases = []
    cases += WS + SPECIAL + CODE + NUMBERS + COMBINING + EMOJI
    cases += ["".join(EMOJI), " ".join(EMOJI), "abc" + "".join(EMOJI[:6]) + "def", "👨‍👩‍👧‍👦" * 3]
    assert len(cases) == N_FIXED
    cases += [ln for ln in rng.sample(lines, min(900, len(lines)))]           # corpus lines as-is
    for _ in range(700):                                                      # cross-script splices
        k = rng.randint(2, 4)
        frags = []
        for ln in rng.sample(lines, k):
            a = rng.randint(0, len(ln))
            b = rng.randint(a, min(len(ln), a + rng.randint(1, 60)))
            frags.append(ln[a:b])
        cases.append(rand_ws(rng).join(frags))
    for _ in range(300):                                                      # whitespace torture
        words = rng.choice(lines).split()[:8] or ["x"]
        s = "".join(rand_ws(rng) + w for w in words) + rand_ws(rng)
        cases.append(s)
    for _ in range(300):                                                      # rare chars -> byte fallback
        s = "".join(rand_char(rng) if rng.random() < 0.5 else rng.choice("abc ,.") for _ in range(rng.randint(1, 12)))
        cases.append(s)
    for _ in range(200):                                                      # emoji in text
        ln = rng.choice(lines)
        pos = rng.randint(0, len(ln))
        cases.append(ln[:pos] + rng.choice(EMOJI) + rng.choice(["", " "]) + ln[pos:])
    for _ in range(150):                                                      # specials in text
        ln = rng.choice(lines)
        pos = rng.randint(0, len(ln))
        cases.append(ln[:pos] + rng.choice(SPECIAL + NUMBERS) + ln[pos:])
    for _ in range(8):                                                        # long lines
        cases.append(" ".join(rng.sample(lines, 40)))
    for n in range(12):                                                       # multi-line whole texts
        chunk = rng.sample(lines, rng.randint(15, 50))
        sep = "\r\n" if n % 4 == 3 else "\n"
        text = sep.join(("    " + c if rng.random() < 0.2 else c) + ("" if rng.random() < 0.8 else sep)
                        for c in chunk)
        cases.append(text + ("\n" if n % 2 else ""))
    return cases


# ------------------------------------------------------------------ fixture files

def escape(s):
    out = []
    for ch in s:
        o = ord(ch)
        if ch == "\\":
            out.append("\\\\")
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\t":
            out.append("\\t")
        elif ch == "\r":
            out.append("\\r")
        elif o < 0x20 or o == 0x7F:
            out.append("\\x%02X" % o)
        else:
            out.append(ch)
    return "".join(out)


B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


def pack_ids(ids):
    """Two base64url chars per id (ids < 4096): the fixtures must stay small."""
    assert all(0 <= i < 4096 for i in ids)
    return "".join(B64[i >> 6] + B64[i & 63] for i in ids)


def fnv1a32(s):
    h = 2166136261
    for b in s.encode("utf-8"):
        h = ((h ^ b) * 16777619) & 0xFFFFFFFF
    return "%08x" % h


def write_ids(name, cases, subset):
    """Per case: packed ids TAB ('=' if the library's decode equals the case, else the FNV-1a-32 hex of
    that decode). Cases outside subset are written as '-' (not checked)."""
    sp = spm.SentencePieceProcessor(model_file=os.path.join(OUT, name + ".model"))
    with open(os.path.join(OUT, name + ".ids"), "w", encoding="utf-8") as f:
        f.write(f"# n_vocab={sp.get_piece_size()} bos={sp.bos_id()} eos={sp.eos_id()} unk={sp.unk_id()}\n")
        for i, c in enumerate(cases):
            if i not in subset:
                f.write("-\n")
                continue
            ids = sp.encode(c)
            dec = sp.decode(ids)
            f.write(pack_ids(ids) + "\t" + ("=" if dec == c else fnv1a32(dec)) + "\n")


def write_dec(name, rng):
    """Random id sequences: any ids, runs of byte pieces (valid, split and broken UTF-8), and every id
    alone (the first-token leading-space rule)."""
    sp = spm.SentencePieceProcessor(model_file=os.path.join(OUT, name + ".model"))
    n = sp.get_piece_size()
    byte_id = {}
    for i in range(n):
        p = sp.id_to_piece(i)
        if sp.is_byte(i):
            byte_id[int(p[3:5], 16)] = i
    normal = [i for i in range(n) if not (sp.is_byte(i) or sp.is_control(i) or sp.is_unknown(i))]
    seqs = [[i] for i in range(n)]
    seqs += [[], [sp.bos_id()], [sp.bos_id(), sp.eos_id()]]
    for _ in range(300):
        seq = []
        for _ in range(rng.randint(1, 12)):
            r = rng.random()
            if r < 0.45:
                seq.append(rng.choice(normal))
            elif r < 0.55:
                seq.append(rng.randrange(n))
            elif byte_id:
                b = (rng.choice(EMOJI) + rand_char(rng)).encode("utf-8")
                if rng.random() < 0.3:
                    b = b[:rng.randint(1, len(b))]
                if rng.random() < 0.1:
                    b = bytes([rng.randrange(256)])
                seq += [byte_id[x] for x in b]
            else:
                seq.append(rng.choice(normal))
        seqs.append(seq)
    with open(os.path.join(OUT, name + ".dec"), "w", encoding="utf-8") as f:
        for seq in seqs:
            f.write(pack_ids(seq) + "\t" + escape(sp.decode(seq)) + "\n")


def write_vocab(name):
    """The vocabulary as a GGUF file carries it (piece, score, type per id), read back from the library,
    for testing ei_tokenizer_create without the protobuf reader. Header: the model's flags."""
    sp = spm.SentencePieceProcessor(model_file=os.path.join(OUT, name + ".model"))
    opts = MODELS[name]
    algo = "bpe" if "--model_type=bpe" in opts else "unigram"
    flag = lambda o, dflt: 0 if f"--{o}=false" in opts else 1 if f"--{o}=true" in opts else dflt
    with open(os.path.join(OUT, name + ".vocab"), "w", encoding="utf-8") as f:
        f.write(f"# algo={algo} bos={sp.bos_id()} eos={sp.eos_id()} unk={sp.unk_id()} "
                f"add_dummy_prefix={flag('add_dummy_prefix', 1)} "
                f"remove_extra_whitespaces={flag('remove_extra_whitespaces', 1)} "
                f"byte_fallback={flag('byte_fallback', 0)}\n")
        for i in range(sp.get_piece_size()):
            t = (2 if sp.is_unknown(i) else 3 if sp.is_control(i) else 5 if sp.is_unused(i) else
                 6 if sp.is_byte(i) else 4 if sp.id_to_piece(i) in USER_DEFINED.split(",") else 1)
            f.write(f"{escape(sp.id_to_piece(i))}\t{float.hex(sp.get_score(i))}\t{t}\n")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--build-corpus", action="store_true", help="re-assemble corpus.txt from Debian text first")
    args = ap.parse_args()
    if args.build_corpus:
        build_corpus()
    os.makedirs(OUT, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        for name, opts in MODELS.items():
            train(name, opts, tmp)
    n_unused = [make_unused_variant(*v) for v in UNUSED_VARIANTS]
    lines = [ln for ln in open(CORPUS, encoding="utf-8").read().split("\n") if ln.strip()]
    rng = random.Random(20240607)
    cases = make_cases(lines, rng)
    with open(os.path.join(OUT, "cases.txt"), "w", encoding="utf-8") as f:
        for c in cases:
            f.write(escape(c) + "\n")
    # The two main models check every case; the variants a third of them plus every hand-written,
    # long and multi-line case (fixture size).
    everything = set(range(len(cases)))
    subset = set(range(N_FIXED)) | set(range(0, len(cases), 3)) | set(range(len(cases) - 20, len(cases)))
    for name in PARITY_MODELS:
        write_ids(name, cases, everything if name in ("bpe_bf", "uni_bf") else subset)
        if name not in NO_DEC:
            write_dec(name, random.Random(name))
    for name in ("bpe_bf", "uni_bf"):
        write_vocab(name)
    total = sum(os.path.getsize(p) for p in glob.glob(os.path.join(OUT, "*")))
    print(f"{len(cases)} cases, {len(PARITY_MODELS)} parity models ({n_unused} pieces marked UNUSED in "
          f"{[v[0] for v in UNUSED_VARIANTS]}), fixtures total {total} bytes in {os.path.relpath(OUT, ROOT)}")


if __name__ == "__main__":
    sys.exit(main())
