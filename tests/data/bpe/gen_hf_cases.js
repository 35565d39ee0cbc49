// Makes tests/data/bpe/*.json: random texts encoded and decoded by the Hugging Face
// `tokenizers` library (npm package tokenizers@0.23.2), for tests/test_bpe.c.
// Each file names a base tokenizer in ../shared/tokenizers and an optional patch: top-level
// keys replaced, and "model" keys merged into the model. Run: node gen_hf_cases.js SHARED_DIR
const { Tokenizer } = require('tokenizers');
const fs = require('fs');
const shared = process.argv[2] || '../../../../shared';
const bl_split = { type: 'Split', pattern: { Regex: "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+" }, behavior: 'Isolated', invert: false };
const variants = {
  'gpt2': { base: 'gpt2' },
  'smollm2-135m': { base: 'smollm2-135m' },
  'mistral-7b-v0.1': { base: 'mistral-7b-v0.1' },
  'gpt2-llama3-style': { base: 'gpt2', patch: {
    pre_tokenizer: { type: 'Sequence', pretokenizers: [bl_split, { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: false }] },
    post_processor: { type: 'Sequence', processors: [{ type: 'ByteLevel', add_prefix_space: true, trim_offsets: false, use_regex: true },
      { type: 'TemplateProcessing', single: [{ SpecialToken: { id: '<|endoftext|>', type_id: 0 } }, { Sequence: { id: 'A', type_id: 0 } }], pair: [],
        special_tokens: { '<|endoftext|>': { id: '<|endoftext|>', ids: [50256], tokens: ['<|endoftext|>'] } } }] },
    added_tokens: [
      { id: 50256, content: '<|endoftext|>', single_word: false, lstrip: false, rstrip: false, normalized: false, special: true },
      { id: 50257, content: '<|eot_id|>', single_word: false, lstrip: false, rstrip: false, normalized: false, special: true },
      { id: 50258, content: '[NS]', single_word: false, lstrip: true, rstrip: true, normalized: false, special: false }],
    model: { ignore_merges: true } } },
  'gpt2-prefix-digits': { base: 'gpt2', patch: {
    pre_tokenizer: { type: 'Sequence', pretokenizers: [{ type: 'Digits', individual_digits: false }, { type: 'ByteLevel', add_prefix_space: true, trim_offsets: true, use_regex: true }] },
    post_processor: { type: 'RobertaProcessing', sep: ['<|endoftext|>', 50256], cls: ['<|endoftext|>', 50256], trim_offsets: true, add_prefix_space: true } } },
  'mistral-legacy': { base: 'mistral-7b-v0.1', patch: {
    normalizer: { type: 'Sequence', normalizers: [{ type: 'Prepend', prepend: '\u2581' }, { type: 'Replace', pattern: { String: ' ' }, content: '\u2581' }] },
    pre_tokenizer: null,
    post_processor: { type: 'TemplateProcessing', single: [{ SpecialToken: { id: '<s>', type_id: 0 } }, { Sequence: { id: 'A', type_id: 0 } }, { SpecialToken: { id: '</s>', type_id: 0 } }], pair: [],
      special_tokens: { '<s>': { id: '<s>', ids: [1], tokens: ['<s>'] }, '</s>': { id: '</s>', ids: [2], tokens: ['</s>'] } } } } },
  'mistral-metaspace-split': { base: 'mistral-7b-v0.1', patch: {
    pre_tokenizer: { type: 'Metaspace', replacement: '\u2581', prepend_scheme: 'always', split: true },
    decoder: { type: 'Metaspace', replacement: '\u2581', prepend_scheme: 'always', split: true } } },
};
let seed = 12345;
function rnd(n) { seed = (seed * 1103515245 + 12345) % 2147483648; return seed % n; }
const atoms = [' ', '  ', '   ', '\t', '\n', '\n\n', ' \n', '\r\n', 'a', 'the', 'The', 'Hello', 'world', "'s", "'t", "'re", "'ll", "'D", "'VE", "I'm", "don't",
  '1', '12', '123', '2024', '3.14', '-', '--', ',', '.', '!', '?', '...', '(', ')', '{', '}', '#', '@', '$', '%', 'é', 'café', 'naïve', 'ß', 'Ω', 'Здравствуйте', 'мир',
  '你好', '世界', '，', '。', '😀', '🚀', '👍🏽', 'العربية', 'हिन्दी', '한국어', '日本語', 'ｱ', '\u00a0', '\u2003', '\u3000', '①', '½', '٣', 'x', 'y', 'Z', '_', '__init__',
  '<s>', '</s>', '<unk>', '<|endoftext|>', '<|im_start|>', '<|im_end|>', '<|eot_id|>', '[NS]', '\u2581', 'Ġ', '<0x41>', 'aaaa', 'bbbbbbbb', '\u0301', 'e\u0301'];
(async () => {
  for (const [name, v] of Object.entries(variants)) {
    const j = JSON.parse(fs.readFileSync(`${shared}/tokenizers/${v.base}/tokenizer.json`, 'utf8'));
    for (const [k, val] of Object.entries(v.patch || {})) {
      if (k === 'model') Object.assign(j.model, val); else j[k] = val;
    }
    const tok = Tokenizer.fromString(JSON.stringify(j));
    tok.disableTruncation();
    tok.disablePadding();
    const cases = [];
    for (let k = 0; k < 150; k++) {
      let s = '';
      const n = 1 + rnd(12);
      for (let i = 0; i < n; i++) s += atoms[rnd(atoms.length)];
      const e0 = await tok.encode(s, null, { addSpecialTokens: false });
      const e1 = await tok.encode(s, null, { addSpecialTokens: true });
      const ids = Array.from(e0.getIds());
      cases.push({ text: s, ids, ids_with_special: Array.from(e1.getIds()), decoded: await tok.decode(ids, false) });
    }
    fs.writeFileSync(`${name}.json`, JSON.stringify({ base: v.base, patch: v.patch || {}, cases }) + '\n');
  }
})();
