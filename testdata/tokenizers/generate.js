#!/usr/bin/env node
// Builds the tokenizer.json fixtures in this folder and records, with Hugging
// Face `tokenizers` (the Rust library through its official Node bindings),
// the token ids of every golden text: goldens.json. See README.md.
//
//   npm install --prefix /tmp/hftok tokenizers@0.23.2
//   NODE_PATH=/tmp/hftok/node_modules node testdata/tokenizers/generate.js            # fixtures + goldens
//   NODE_PATH=/tmp/hftok/node_modules node testdata/tokenizers/generate.js --goldens  # goldens only
//
// The fixtures are deterministic (a small BPE trainer below, ties broken by
// the pair's text), so rerunning rewrites identical files.
'use strict';
const fs = require('fs');
const path = require('path');
const { goldenTexts, corpus } = require('./texts.js');

const DIR = __dirname;
const MERGES = 700;

// ---- a deterministic BPE trainer over words given as symbol arrays ----
function train(wordCounts, nMerges) {
  // wordCounts: Map<string key, {syms: string[], n: number}>
  const words = [...wordCounts.values()];
  const merges = [];
  for (let m = 0; m < nMerges; m++) {
    const pairs = new Map();
    for (const w of words) {
      for (let i = 0; i + 1 < w.syms.length; i++) {
        const k = w.syms[i] + '\u0000' + w.syms[i + 1];
        pairs.set(k, (pairs.get(k) || 0) + w.n);
      }
    }
    let best = null, bestN = 0;
    for (const [k, n] of pairs) {
      if (n > bestN || (n === bestN && k < best)) { best = k; bestN = n; }
    }
    if (best === null || bestN < 2) break;
    const [a, b] = best.split('\u0000');
    merges.push([a, b]);
    for (const w of words) {
      const out = [];
      for (let i = 0; i < w.syms.length; i++) {
        if (i + 1 < w.syms.length && w.syms[i] === a && w.syms[i + 1] === b) { out.push(a + b); i++; }
        else out.push(w.syms[i]);
      }
      w.syms = out;
    }
  }
  return merges;
}

// GPT-2 byte-to-unicode table.
function bytesChar() {
  const bs = [];
  for (let b = 33; b <= 126; b++) bs.push(b);
  for (let b = 0xa1; b <= 0xac; b++) bs.push(b);
  for (let b = 0xae; b <= 0xff; b++) bs.push(b);
  const cs = bs.slice();
  let n = 0;
  for (let b = 0; b < 256; b++) if (!bs.includes(b)) { bs.push(b); cs.push(256 + n); n++; }
  const t = new Array(256);
  bs.forEach((b, i) => { t[b] = String.fromCodePoint(cs[i]); });
  return t;
}

function byteLevelModel() {
  const bc = bytesChar();
  const enc = new TextEncoder();
  const counts = new Map();
  const re = /'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+/gu;
  for (const line of corpus()) {
    for (const m of line.matchAll(re)) {
      const syms = [...enc.encode(m[0])].map((b) => bc[b]);
      const k = syms.join('');
      const e = counts.get(k) || { syms, n: 0 };
      e.n++;
      counts.set(k, e);
    }
  }
  const merges = train(counts, MERGES);
  const vocab = {};
  let id = 0;
  for (let b = 0; b < 256; b++) vocab[bc[b]] = id++;
  for (const [a, b] of merges) if (!(a + b in vocab)) vocab[a + b] = id++;
  return { vocab, merges, size: id };
}

function sentencePieceModel() {
  const counts = new Map();
  const charFreq = new Map();
  for (const line of corpus()) {
    const s = '▁' + line.replace(/ /g, '▁');
    for (const c of s) charFreq.set(c, (charFreq.get(c) || 0) + 1);
    for (const w of s.split(/(?=▁)/u)) {
      const syms = [...w];
      const e = counts.get(w) || { syms, n: 0 };
      e.n++;
      counts.set(w, e);
    }
  }
  // Alphabet: characters seen at least twice; the rest fall back to bytes.
  const alphabet = [...charFreq.entries()].filter(([, n]) => n >= 2)
    .sort((x, y) => y[1] - x[1] || (x[0] < y[0] ? -1 : 1)).map(([c]) => c);
  const known = new Set(alphabet);
  for (const e of counts.values()) e.syms = e.syms.map((c) => (known.has(c) ? c : '\u0001' + c));
  const merges = train(counts, MERGES).filter(([a, b]) => !a.includes('\u0001') && !b.includes('\u0001'));
  const vocab = { '<unk>': 0, '<s>': 1, '</s>': 2 };
  let id = 3;
  for (let b = 0; b < 256; b++) vocab['<0x' + b.toString(16).toUpperCase().padStart(2, '0') + '>'] = id++;
  for (const c of alphabet) if (!(c in vocab)) vocab[c] = id++;
  const kept = [];
  for (const [a, b] of merges) {
    if (!(a in vocab) || !(b in vocab)) continue;
    kept.push([a, b]);
    if (!(a + b in vocab)) vocab[a + b] = id++;
  }
  return { vocab, merges: kept, size: id };
}

function added(id, content, o = {}) {
  return {
    id, content, single_word: !!o.single_word, lstrip: !!o.lstrip, rstrip: !!o.rstrip,
    normalized: !!o.normalized, special: !!o.special,
  };
}

function bpe(m, o = {}) {
  return {
    type: 'BPE', dropout: null, unk_token: o.unk || null, continuing_subword_prefix: null,
    end_of_word_suffix: null, fuse_unk: !!o.fuse_unk, byte_fallback: !!o.byte_fallback,
    ignore_merges: !!o.ignore_merges, vocab: m.vocab, merges: m.merges,
  };
}

function template(tok, id) {
  return {
    type: 'TemplateProcessing',
    single: [{ SpecialToken: { id: tok, type_id: 0 } }, { Sequence: { id: 'A', type_id: 0 } }],
    pair: [{ SpecialToken: { id: tok, type_id: 0 } }, { Sequence: { id: 'A', type_id: 0 } },
      { SpecialToken: { id: tok, type_id: 1 } }, { Sequence: { id: 'B', type_id: 1 } }],
    special_tokens: { [tok]: { id: tok, ids: [id], tokens: [tok] } },
  };
}

const LLAMA3_REGEX = "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
const byteLevel = (prefix, regex) => ({ type: 'ByteLevel', add_prefix_space: prefix, trim_offsets: true, use_regex: regex });

function fixtures() {
  const bl = byteLevelModel();
  const sp = sentencePieceModel();
  const n = bl.size, k = sp.size;
  const file = (o) => Object.assign({ version: '1.0', truncation: null, padding: null }, o);
  return {
    // GPT-2 layout plus NFC, add_prefix_space and added tokens with every option.
    'gpt2-style.json': file({
      added_tokens: [added(n, '<|endoftext|>', { special: true }),
        added(n + 1, '<|sep|>', { lstrip: true, rstrip: true }),
        added(n + 2, '[MASK]', { single_word: true, normalized: true })],
      normalizer: { type: 'NFC' },
      pre_tokenizer: byteLevel(true, true),
      post_processor: byteLevel(true, false),
      decoder: byteLevel(true, true),
      model: bpe(bl),
    }),
    // Llama-3 layout: Split with the Llama-3 regex, ByteLevel without regex,
    // ignore_merges, BOS template.
    'llama3-style.json': file({
      added_tokens: ['<|begin_of_text|>', '<|end_of_text|>', '<|start_header_id|>', '<|end_header_id|>', '<|eot_id|>']
        .map((c, i) => added(n + i, c, { special: true })),
      normalizer: null,
      pre_tokenizer: { type: 'Sequence', pretokenizers: [
        { type: 'Split', pattern: { Regex: LLAMA3_REGEX }, behavior: 'Isolated', invert: false },
        byteLevel(false, false)] },
      post_processor: { type: 'Sequence', processors: [byteLevel(true, false), template('<|begin_of_text|>', n)] },
      decoder: byteLevel(true, true),
      model: bpe(bl, { ignore_merges: true }),
    }),
    // Llama-2 / Mistral (legacy HF conversion): Prepend + Replace normalizer,
    // byte_fallback, fuse_unk, <s> template, a normalized added token.
    'llama2-style.json': file({
      added_tokens: [added(0, '<unk>', { special: true }), added(1, '<s>', { special: true }),
        added(2, '</s>', { special: true }), added(k, '<|im_start|>', { normalized: true }),
        added(k + 1, '<|im_end|>', { special: true })],
      normalizer: { type: 'Sequence', normalizers: [{ type: 'Prepend', prepend: '▁' },
        { type: 'Replace', pattern: { String: ' ' }, content: '▁' }] },
      pre_tokenizer: null,
      post_processor: template('<s>', 1),
      decoder: { type: 'Sequence', decoders: [{ type: 'Replace', pattern: { String: '▁' }, content: ' ' },
        { type: 'ByteFallback' }, { type: 'Fuse' }, { type: 'Strip', content: ' ', start: 1, stop: 0 }] },
      model: bpe(sp, { unk: '<unk>', fuse_unk: true, byte_fallback: true }),
    }),
    // Gemma: Replace-only normalizer (no prefix space), turn markers.
    'gemma-style.json': file({
      added_tokens: [added(0, '<unk>', { special: true }), added(1, '<s>', { special: true }),
        added(2, '</s>', { special: true }), added(k, '<start_of_turn>', { special: true }),
        added(k + 1, '<end_of_turn>', { special: true })],
      normalizer: { type: 'Replace', pattern: { String: ' ' }, content: '▁' },
      pre_tokenizer: null,
      post_processor: template('<s>', 1),
      decoder: { type: 'Sequence', decoders: [{ type: 'Replace', pattern: { String: '▁' }, content: ' ' },
        { type: 'ByteFallback' }, { type: 'Fuse' }] },
      model: bpe(sp, { unk: '<unk>', fuse_unk: true, byte_fallback: true }),
    }),
    // Newer Llama-2 / Mistral conversions: Metaspace pre-tokenizer, prepend_scheme "first", no split.
    'metaspace-style.json': file({
      added_tokens: [added(0, '<unk>', { special: true }), added(1, '<s>', { special: true }),
        added(2, '</s>', { special: true })],
      normalizer: null,
      pre_tokenizer: { type: 'Metaspace', replacement: '▁', prepend_scheme: 'first', split: false },
      post_processor: template('<s>', 1),
      decoder: { type: 'Sequence', decoders: [{ type: 'ByteFallback' },
        { type: 'Metaspace', replacement: '▁', prepend_scheme: 'first', split: false }, { type: 'Fuse' }] },
      model: bpe(sp, { unk: '<unk>', fuse_unk: false, byte_fallback: true }),
    }),
    // Every Split behaviour, invert, Metaspace with split, and the other normalizers.
    'split-variants.json': file({
      added_tokens: [added(0, '<unk>', { special: true })],
      normalizer: { type: 'Sequence', normalizers: [{ type: 'NFKC' }, { type: 'Lowercase' },
        { type: 'Strip', strip_left: true, strip_right: true },
        { type: 'Replace', pattern: { Regex: '\\d{4,}' }, content: '#' }] },
      pre_tokenizer: { type: 'Sequence', pretokenizers: [
        { type: 'Split', pattern: { String: '-' }, behavior: 'Removed', invert: false },
        { type: 'Split', pattern: { Regex: '\\p{N}' }, behavior: 'Contiguous', invert: false },
        { type: 'Split', pattern: { Regex: '[.,!?;:]' }, behavior: 'MergedWithPrevious', invert: false },
        { type: 'Split', pattern: { Regex: '\\p{P}+' }, behavior: 'MergedWithNext', invert: true },
        { type: 'Metaspace', replacement: '▁', prepend_scheme: 'always', split: true }] },
      post_processor: null,
      decoder: { type: 'Sequence', decoders: [{ type: 'ByteFallback' },
        { type: 'Metaspace', replacement: '▁', prepend_scheme: 'always', split: true }, { type: 'Fuse' }] },
      model: bpe(sp, { unk: '<unk>', fuse_unk: false, byte_fallback: true }),
    }),
  };
}

async function goldens(hf, names) {
  const texts = goldenTexts();
  const out = {
    generator: 'testdata/tokenizers/generate.js with Hugging Face tokenizers (Node bindings) ' +
      require('tokenizers/package.json').version,
    note: 'ids: encode(text, add_special_tokens=false); with_special: add_special_tokens=true; ' +
      'decoded: decode(with_special, skip_special_tokens=true)',
    texts,
    tokenizers: {},
  };
  for (const name of names) {
    const tok = hf.Tokenizer.fromFile(path.join(DIR, name));
    const cases = [];
    for (const text of texts) {
      const plain = await tok.encode(text, null, { addSpecialTokens: false });
      const special = await tok.encode(text, null, { addSpecialTokens: true });
      const ids = Array.from(plain.getIds());
      const withSpecial = Array.from(special.getIds());
      const decoded = await tok.decode(withSpecial, true);
      cases.push({ ids, with_special: withSpecial, decoded });
    }
    out.tokenizers[name] = cases;
  }
  return out;
}

async function main() {
  const hf = require('tokenizers');
  const onlyGoldens = process.argv.includes('--goldens');
  let names;
  if (onlyGoldens) {
    names = fs.readdirSync(DIR).filter((f) => f.endsWith('-style.json') || f === 'split-variants.json').sort();
  } else {
    const fx = fixtures();
    names = Object.keys(fx).sort();
    for (const name of names) fs.writeFileSync(path.join(DIR, name), JSON.stringify(fx[name]) + '\n');
  }
  const g = await goldens(hf, names);
  // one case per line keeps diffs readable
  const lines = ['{', `"generator": ${JSON.stringify(g.generator)},`, `"note": ${JSON.stringify(g.note)},`,
    '"texts": [', g.texts.map((t) => JSON.stringify(t)).join(',\n'), '],', '"tokenizers": {'];
  names.forEach((name, i) => {
    lines.push(`${JSON.stringify(name)}: [`);
    lines.push(g.tokenizers[name].map((c) => JSON.stringify(c)).join(',\n'));
    lines.push(i + 1 < names.length ? '],' : ']');
  });
  lines.push('}', '}');
  fs.writeFileSync(path.join(DIR, 'goldens.json'), lines.join('\n') + '\n');
  console.log(`${names.length} tokenizers x ${g.texts.length} texts -> goldens.json`);
}

main().catch((e) => { console.error(e); process.exit(1); });
