// jinja.js — a small Jinja2 subset, enough for the chat templates stored in GGUF files
// (tokenizer.chat_template): text, {{ expr }}, {% if/elif/else %}, {% for x in xs %} with loop.*,
// {% set %}, comments, whitespace control (-), and the expressions those templates use (attribute and
// index access, + ~ - * / %, comparisons, in, is defined, and/or/not, a few filters and string
// methods, raise_exception). Anything else throws, and the caller falls back to a known format.

// ------------------------------------------------------------------ lexer

/** Splits a template into [{t:'text', v}, {t:'out', v: tokens}, {t:'stmt', v: tokens}]. */
function lexTemplate(src) {
  const out = [];
  // Like Hugging Face's apply_chat_template: trim_blocks and lstrip_blocks are on.
  let i = 0, trimNext = false, afterBlock = false;
  while (i < src.length) {
    const m = /\{\{|\{%|\{#/g;
    m.lastIndex = i;
    const hit = m.exec(src);
    let text = src.slice(i, hit ? hit.index : src.length);
    if (trimNext) text = text.replace(/^\s+/, '');
    else if (afterBlock) text = text.replace(/^\n/, ''); // trim_blocks
    trimNext = false;
    afterBlock = false;
    if (!hit) { if (text) out.push({ t: 'text', v: text }); break; }
    const open = hit[0], close = open === '{{' ? '}}' : open === '{%' ? '%}' : '#}';
    let j = hit.index + 2;
    if (src[j] === '-') { text = text.replace(/\s+$/, ''); j++; }
    else if (open !== '{{' && src[j] !== '+') text = text.replace(/(^|\n)[ \t]+$/, '$1'); // lstrip_blocks
    afterBlock = open !== '{{';
    if (text) out.push({ t: 'text', v: text });
    const end = src.indexOf(close, j);
    if (end < 0) throw new Error(`unclosed ${open}`);
    let body = src.slice(j, end);
    if (body.endsWith('-')) { body = body.slice(0, -1); trimNext = true; }
    i = end + 2;
    if (open === '{#') continue;
    out.push({ t: open === '{{' ? 'out' : 'stmt', v: lexExpr(body) });
  }
  return out;
}

const TOKEN_RE = /\s*(?:(\d+(?:\.\d+)?)|('(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*")|([A-Za-z_][A-Za-z0-9_]*)|(==|!=|<=|>=|[-+*/%~<>()[\]{}.,:|=]))/y;

/** Tokenizes an expression/statement body into [{k:'num'|'str'|'name'|'op', v}]. */
function lexExpr(s) {
  const toks = [];
  TOKEN_RE.lastIndex = 0;
  let pos = 0;
  while (pos < s.length) {
    if (/^\s*$/.test(s.slice(pos))) break;
    TOKEN_RE.lastIndex = pos;
    const m = TOKEN_RE.exec(s);
    if (!m) throw new Error(`bad token at "${s.slice(pos, pos + 10)}"`);
    pos = TOKEN_RE.lastIndex;
    if (m[1]) toks.push({ k: 'num', v: Number(m[1]) });
    else if (m[2]) toks.push({ k: 'str', v: unescape(m[2].slice(1, -1)) });
    else if (m[3]) toks.push({ k: 'name', v: m[3] });
    else toks.push({ k: 'op', v: m[4] });
  }
  return toks;
}

function unescape(s) {
  return s.replace(/\\(.)/g, (_, c) => ({ n: '\n', t: '\t', r: '\r' }[c] ?? c));
}

// ------------------------------------------------------------------ expression parser

class Parser {
  constructor(toks) { this.t = toks; this.i = 0; }
  peek(v) { const x = this.t[this.i]; return x && (v === undefined || x.v === v) ? x : null; }
  next() { return this.t[this.i++]; }
  eat(v) { if (this.peek(v) && (this.t[this.i].k === 'op' || this.t[this.i].k === 'name')) { this.i++; return true; } return false; }
  expect(v) { if (!this.eat(v)) throw new Error(`expected "${v}"`); }
  done() { return this.i >= this.t.length; }

  expr() { return this.ternary(); }
  ternary() {
    const a = this.or();
    if (this.peek('if') && this.t[this.i].k === 'name') {
      this.i++;
      const c = this.or();
      let b = () => '';
      if (this.eat('else')) b = this.ternary();
      return (ctx) => (truthy(c(ctx)) ? a(ctx) : b(ctx));
    }
    return a;
  }
  or() {
    let a = this.and();
    while (this.eat('or')) { const l = a, r = this.and(); a = (c) => truthy(l(c)) ? l(c) : r(c); }
    return a;
  }
  and() {
    let a = this.not();
    while (this.eat('and')) { const l = a, r = this.not(); a = (c) => !truthy(l(c)) ? l(c) : r(c); }
    return a;
  }
  not() {
    if (this.eat('not')) { const a = this.not(); return (c) => !truthy(a(c)); }
    return this.cmp();
  }
  cmp() {
    let a = this.concat();
    for (;;) {
      const l = a;
      if (this.peek('is')) {
        this.i++;
        const neg = this.eat('not');
        const test = this.next().v;
        const f = TESTS[test];
        if (!f) throw new Error(`unknown test ${test}`);
        a = (c) => f(l(c)) !== neg;
      } else if (this.peek('not') && this.t[this.i + 1] && this.t[this.i + 1].v === 'in') {
        this.i += 2; const r = this.concat(); a = (c) => !contains(r(c), l(c));
      } else if (this.eat('in')) {
        const r = this.concat(); a = (c) => contains(r(c), l(c));
      } else {
        const op = ['==', '!=', '<', '>', '<=', '>='].find((o) => this.peek(o) && this.t[this.i].k === 'op');
        if (!op) return a;
        this.i++;
        const r = this.concat();
        a = (c) => compare(op, l(c), r(c));
      }
    }
  }
  concat() {
    let a = this.add();
    while (this.eat('~')) { const l = a, r = this.add(); a = (c) => str(l(c)) + str(r(c)); }
    return a;
  }
  add() {
    let a = this.mul();
    for (;;) {
      const l = a;
      if (this.eat('+')) { const r = this.mul(); a = (c) => { const x = l(c), y = r(c); return typeof x === 'string' || typeof y === 'string' ? str(x) + str(y) : (Array.isArray(x) ? x.concat(y) : x + y); }; }
      else if (this.eat('-')) { const r = this.mul(); a = (c) => l(c) - r(c); }
      else return a;
    }
  }
  mul() {
    let a = this.unary();
    for (;;) {
      const l = a;
      if (this.eat('*')) { const r = this.unary(); a = (c) => l(c) * r(c); }
      else if (this.eat('/')) { const r = this.unary(); a = (c) => l(c) / r(c); }
      else if (this.eat('%')) { const r = this.unary(); a = (c) => { const y = r(c); return ((l(c) % y) + y) % y; }; }
      else return a;
    }
  }
  unary() {
    if (this.eat('-')) { const a = this.unary(); return (c) => -a(c); }
    return this.postfix();
  }
  postfix() {
    let a = this.primary();
    for (;;) {
      const l = a;
      if (this.eat('.')) {
        const name = this.next().v;
        if (this.peek('(')) {
          const args = this.args();
          a = (c) => callMethod(l(c), name, args.map((f) => f(c)));
        } else a = (c) => attr(l(c), name);
      } else if (this.eat('[')) {
        const k = this.peek(':') ? () => undefined : this.expr();
        if (this.eat(':')) {
          const e = this.peek(']') ? () => undefined : this.expr();
          this.expect(']');
          a = (c) => { const v = l(c), s0 = k(c), e0 = e(c); return v == null ? v : v.slice(s0 ?? 0, e0 ?? v.length); };
        } else {
          this.expect(']');
          a = (c) => attr(l(c), k(c));
        }
      } else if (this.eat('|')) {
        const name = this.next().v;
        const args = this.peek('(') ? this.args() : [];
        const f = FILTERS[name];
        if (!f) throw new Error(`unknown filter ${name}`);
        a = (c) => f(l(c), ...args.map((g) => g(c)));
      } else if (this.peek('(') && this.t[this.i].k === 'op') {
        const args = this.args();
        a = (c) => { const fn = l(c); if (typeof fn !== 'function') throw new Error('not callable'); return fn(...args.map((g) => g(c))); };
      } else return a;
    }
  }
  args() {
    this.expect('(');
    const args = [];
    while (!this.eat(')')) {
      args.push(this.expr());
      if (!this.peek(')')) this.expect(',');
    }
    return args;
  }
  primary() {
    const t = this.next();
    if (!t) throw new Error('unexpected end of expression');
    if (t.k === 'num' || t.k === 'str') return () => t.v;
    if (t.k === 'name') {
      const lit = { true: true, True: true, false: false, False: false, none: null, None: null }[t.v];
      if (lit !== undefined) return () => lit;
      return (c) => c.get(t.v);
    }
    if (t.v === '(') { const e = this.expr(); this.expect(')'); return e; }
    if (t.v === '[') {
      const items = [];
      while (!this.eat(']')) { items.push(this.expr()); if (!this.peek(']')) this.expect(','); }
      return (c) => items.map((f) => f(c));
    }
    throw new Error(`unexpected "${t.v}"`);
  }
}

// ------------------------------------------------------------------ values

const truthy = (v) => (Array.isArray(v) ? v.length > 0 : v != null && v !== false && v !== 0 && v !== '');
const str = (v) => (v == null ? '' : typeof v === 'boolean' ? (v ? 'True' : 'False') : String(v));
const contains = (hay, x) => (typeof hay === 'string' ? hay.includes(x) : Array.isArray(hay) ? hay.includes(x) : hay != null && Object.prototype.hasOwnProperty.call(hay, x));
function compare(op, a, b) {
  switch (op) {
    case '==': return a === b || (a == null && b == null);
    case '!=': return !(a === b || (a == null && b == null));
    case '<': return a < b;
    case '>': return a > b;
    case '<=': return a <= b;
    default: return a >= b;
  }
}
function attr(obj, k) {
  if (obj == null) return undefined;
  if (Array.isArray(obj) && typeof k === 'number') return obj[k < 0 ? obj.length + k : k];
  return Object.prototype.hasOwnProperty.call(obj, k) || typeof obj === 'object' ? obj[k] : undefined;
}
function callMethod(obj, name, args) {
  if (typeof obj === 'string') {
    switch (name) {
      case 'strip': return args.length ? trimChars(obj, args[0], true, true) : obj.trim();
      case 'lstrip': return args.length ? trimChars(obj, args[0], true, false) : obj.trimStart();
      case 'rstrip': return args.length ? trimChars(obj, args[0], false, true) : obj.trimEnd();
      case 'upper': return obj.toUpperCase();
      case 'lower': return obj.toLowerCase();
      case 'startswith': return obj.startsWith(args[0]);
      case 'endswith': return obj.endsWith(args[0]);
      case 'split': return args.length ? obj.split(args[0]) : obj.trim().split(/\s+/);
      case 'replace': return obj.split(args[0]).join(args[1]);
      default: break;
    }
  }
  if (obj && typeof obj === 'object' && name === 'items') return Object.entries(obj);
  if (obj && typeof obj === 'object' && name === 'get') return obj[args[0]] ?? args[1] ?? null;
  throw new Error(`unknown method ${name}`);
}
function trimChars(s, chars, left, right) {
  let a = 0, b = s.length;
  while (left && a < b && chars.includes(s[a])) a++;
  while (right && b > a && chars.includes(s[b - 1])) b--;
  return s.slice(a, b);
}
const TESTS = {
  defined: (v) => v !== undefined,
  undefined: (v) => v === undefined,
  none: (v) => v === null,
  string: (v) => typeof v === 'string',
  number: (v) => typeof v === 'number',
  mapping: (v) => v != null && typeof v === 'object' && !Array.isArray(v),
  iterable: (v) => Array.isArray(v) || typeof v === 'string',
  sequence: (v) => Array.isArray(v) || typeof v === 'string',
  true: (v) => v === true,
  false: (v) => v === false,
};
const FILTERS = {
  trim: (v) => str(v).trim(),
  length: (v) => (v == null ? 0 : v.length ?? Object.keys(v).length),
  count: (v) => (v == null ? 0 : v.length),
  upper: (v) => str(v).toUpperCase(),
  lower: (v) => str(v).toLowerCase(),
  string: (v) => str(v),
  default: (v, d = '') => (v === undefined ? d : v),
  tojson: (v) => JSON.stringify(v),
  first: (v) => v[0],
  last: (v) => v[v.length - 1],
  join: (v, sep = '') => v.map(str).join(sep),
  capitalize: (v) => { const s = str(v); return s.charAt(0).toUpperCase() + s.slice(1).toLowerCase(); },
};

class Scope {
  constructor(vars, parent = null) { this.vars = vars; this.parent = parent; }
  get(k) {
    for (let s = this; s; s = s.parent) if (Object.prototype.hasOwnProperty.call(s.vars, k)) return s.vars[k];
    return undefined;
  }
  set(k, v) { this.vars[k] = v; }
}

// ------------------------------------------------------------------ statements

/** Parses the token stream into nodes: functions (scope, out[]) => void. */
function parseBlock(items, pos, stops) {
  const nodes = [];
  while (pos.i < items.length) {
    const it = items[pos.i];
    if (it.t === 'text') { const v = it.v; nodes.push((c, out) => out.push(v)); pos.i++; continue; }
    if (it.t === 'out') {
      const p = new Parser(it.v);
      const e = p.expr();
      if (!p.done()) throw new Error('trailing tokens in {{ }}');
      nodes.push((c, out) => out.push(str(e(c))));
      pos.i++;
      continue;
    }
    const kw = it.v[0] && it.v[0].v;
    if (stops.includes(kw)) return { nodes, stop: kw };
    pos.i++;
    const p = new Parser(it.v.slice(1));
    if (kw === 'if') nodes.push(parseIf(p, items, pos));
    else if (kw === 'for') nodes.push(parseFor(p, items, pos));
    else if (kw === 'set') {
      const names = [p.next().v];
      while (p.eat(',')) names.push(p.next().v);
      p.expect('=');
      const e = p.expr();
      nodes.push((c) => {
        const v = e(c);
        if (names.length === 1) c.set(names[0], v); else names.forEach((n, k) => c.set(n, v[k]));
      });
    } else throw new Error(`unsupported statement "${kw}"`);
  }
  if (stops.length) throw new Error(`missing {% ${stops.join(' / ')} %}`);
  return { nodes, stop: null };
}

function parseIf(p, items, pos) {
  const branches = [];
  let cond = p.expr();
  for (;;) {
    const b = parseBlock(items, pos, ['elif', 'else', 'endif']);
    branches.push({ cond, nodes: b.nodes });
    const it = items[pos.i++];
    if (b.stop === 'endif') break;
    if (b.stop === 'elif') cond = new Parser(it.v.slice(1)).expr();
    else cond = () => true;
  }
  return (c, out) => {
    for (const br of branches) if (truthy(br.cond(c))) { run(br.nodes, c, out); return; }
  };
}

function parseFor(p, items, pos) {
  const names = [p.next().v];
  while (p.eat(',')) names.push(p.next().v);
  p.expect('in');
  const seq = p.or();
  const filter = p.eat('if') ? p.expr() : null;
  const body = parseBlock(items, pos, ['else', 'endfor']);
  let elseNodes = [];
  if (body.stop === 'else') { pos.i++; elseNodes = parseBlock(items, pos, ['endfor']).nodes; }
  pos.i++;
  return (c, out) => {
    let xs = seq(c);
    if (xs == null) xs = [];
    if (!Array.isArray(xs)) xs = typeof xs === 'object' ? Object.keys(xs) : Array.from(xs);
    const scope0 = new Scope({}, c);
    if (filter) xs = xs.filter((x) => { bind(scope0, names, x); return truthy(filter(scope0)); });
    if (!xs.length) { run(elseNodes, c, out); return; }
    xs.forEach((x, k) => {
      const s = new Scope({}, c);
      bind(s, names, x);
      s.set('loop', { index: k + 1, index0: k, first: k === 0, last: k === xs.length - 1, length: xs.length, revindex: xs.length - k, revindex0: xs.length - k - 1 });
      run(body.nodes, s, out);
      // {% set %} inside a loop stays in the loop (Jinja scoping); nothing to copy back.
    });
  };
}

function bind(scope, names, x) {
  if (names.length === 1) scope.set(names[0], x);
  else names.forEach((n, k) => scope.set(n, x[k]));
}

function run(nodes, c, out) {
  for (const n of nodes) n(c, out);
}

/** Compiles a template; returns render(vars) -> string. Throws on syntax it does not support. */
export function compileTemplate(src) {
  const items = lexTemplate(src);
  const { nodes } = parseBlock(items, { i: 0 }, []);
  return (vars) => {
    const scope = new Scope({
      raise_exception: (msg) => { throw new Error(`template: ${msg}`); },
      range: (a, b) => { const [s, e] = b === undefined ? [0, a] : [a, b]; return Array.from({ length: Math.max(0, e - s) }, (_, k) => s + k); },
      namespace: (o = {}) => ({ ...o }),
      ...vars,
    });
    const out = [];
    run(nodes, scope, out);
    return out.join('');
  };
}
