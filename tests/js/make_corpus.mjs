// Writes the tokenizer oracle corpus: a deterministic, varied set of documents (about 1.3 MB of
// UTF-8) as JSON Lines, one JSON string per document.
//
//   node make_corpus.mjs OUT.jsonl [--seed N] [--docs N]
//
// The documents mix code in several languages, prose in English, French, German, Chinese,
// Japanese, Korean, Arabic, Russian and Hindi, emoji (ZWJ sequences, skin tones, flags, keycaps),
// white-space runs (spaces, tabs, newlines, \r\n, no-break and ideographic spaces), digits and long
// numbers, contractions in every case, real special tokens and look-alikes, and valid but odd
// Unicode (combining stacks, decomposed letters, Hangul jamo, compatibility characters that NFC
// changes, bidi controls, noncharacters, private use, controls, astral letters).
//
// Deliberately absent (docs/tokenizer.md): U+0085 and U+FEFF, the two white-space characters on
// which the JavaScript reference and Hugging Face tokenizers (Rust) disagree, and characters newer
// than Unicode 13, whose classes differ between PCRE2 10.42 (Unicode 14) and V8's ICU.
import { writeFileSync } from "node:fs";

const args = process.argv.slice(2);
if (args.length < 1) {
  console.error("usage: node make_corpus.mjs OUT.jsonl [--seed N] [--docs N]");
  process.exit(2);
}
const out = args[0];
let seed = 20240611;
let ndocs = 1200;
for (let i = 1; i < args.length; i += 2) {
  if (args[i] === "--seed") seed = Number(args[i + 1]);
  else if (args[i] === "--docs") ndocs = Number(args[i + 1]);
}

// mulberry32: a tiny deterministic PRNG (same output on every platform).
function rng(s) {
  return () => {
    s |= 0;
    s = (s + 0x6d2b79f5) | 0;
    let t = Math.imul(s ^ (s >>> 15), 1 | s);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
const rand = rng(seed);
const int = (n) => Math.floor(rand() * n);
const pick = (a) => a[int(a.length)];
const repeat = (f, n) => Array.from({ length: n }, f).join("");

const english = [
  "The quick brown fox jumps over the lazy dog.",
  "I'm sure you're right, but they'll say we'd better wait.",
  "DON'T PANIC! It's only a test, isn't it? YOU'RE FINE, I'M FINE, WE'LL BE FINE.",
  "She'S been here; he'D left; they'VE gone; I'Ll stay; it'S late.",
  "Rock 'n' roll isn't dead — it's just resting.",
  "O'Brien's dog barked at the mailman's bicycle at 7:45 a.m.",
  "\"Quotes,\" she said, 'are tricky'… aren't they?",
  "The mitochondria is the powerhouse of the cell (citation needed).",
  "Email me at jane.doe+tokenizer@example.com or visit https://example.org/a/b?c=1&d=2#frag.",
  "A man, a plan, a canal: Panama!",
  "Shipping costs $12.99 (or €11,50) — plus 7.25% tax.",
  "The year 1999 ended; 2000 began; 10,000 people cheered at 00:00:01.",
  "well... maybe?!?! no!!! yes??",
  "camelCaseWords and snake_case_words and SCREAMING_CASE and kebab-case-words",
  "We'd've gone if y'all'd've asked.",
  "Mr. Smith-Jones, Ph.D., arrived @ noon #meeting",
];
const french = [
  "L'été dernier, nous sommes allés à la plage près de Saint-Malo.",
  "C'est déjà l'heure ; qu'est-ce qu'on fait ? On s'en va !",
  "Où est la bibliothèque ? Elle est à côté de l'église, près du château.",
  "Les élèves ont répondu « très bien » à la question du professeur.",
  "Noël approche : les cœurs sont légers et les bûches sont prêtes.",
  "Il faut qu'il aille à l'hôpital aujourd'hui même.",
];
const german = [
  "Die Straße ist naß, weil es gestern geregnet hat.",
  "Größere Übungen fördern die Gesundheit älterer Menschen.",
  "Donaudampfschifffahrtsgesellschaftskapitän ist ein langes Wort.",
  "Ich hätte gern ein Stück Käsekuchen und einen Kaffee, bitte.",
  "Über den Wolken muss die Freiheit wohl grenzenlos sein.",
  "Fußgängerübergänge sind für alle Verkehrsteilnehmer wichtig.",
];
const chinese = [
  "今天天气很好，我们去公园散步吧。",
  "机器学习是人工智能的一个重要分支。",
  "他说：“这个问题很难回答，但我会尽力。”",
  "北京是中华人民共和国的首都，有着悠久的历史。",
  "我喜欢吃饺子、包子和面条。",
  "这本书一共有三百二十五页，我已经读了一半。",
  "深度学习模型需要大量的数据和计算资源。",
  "龘靐齉爩是一些非常复杂的汉字。",
];
const japanese = [
  "今日はとても良い天気ですね。散歩に行きましょう。",
  "東京タワーは高さ３３３メートルです。",
  "私はコーヒーよりも紅茶が好きです。",
  "カタカナとひらがなと漢字を組み合わせて書きます。",
  "「ありがとうございます」と彼女は言った。",
  "ｶﾀｶﾅの半角文字もあります。",
  "ソフトウェアエンジニアリングは面白い。",
];
const korean = [
  "안녕하세요, 만나서 반갑습니다.",
  "오늘은 날씨가 정말 좋네요. 산책하러 갈까요?",
  "한국어는 한글로 쓰고, 한글은 세종대왕이 만들었습니다.",
  "저는 김치찌개와 불고기를 좋아해요.",
  "서울에서 부산까지 기차로 두 시간 반 걸립니다.",
];
const arabic = [
  "مرحبا بالعالم، كيف حالك اليوم؟",
  "اللُّغَةُ العَرَبِيَّةُ جَمِيلَةٌ جِدًّا.",
  "ذهبت إلى المكتبة لشراء كتاب جديد.",
  "الذكاء الاصطناعي يغير العالم بسرعة كبيرة.",
  "رقم الهاتف هو ٠١٢٣٤٥٦٧٨٩ والعنوان شارع ١٢.",
];
const russian = [
  "Привет, мир! Как у тебя дела сегодня?",
  "Съешь же ещё этих мягких французских булок, да выпей чаю.",
  "Москва — столица Российской Федерации.",
  "Машинное обучение — это подраздел искусственного интеллекта.",
  "ЁЛКА, ёлка и Ёжик встретились в лесу.",
];
const hindi = [
  "नमस्ते, आप कैसे हैं?",
  "भारत एक विशाल और विविधतापूर्ण देश है।",
  "मुझे हिंदी भाषा सीखना बहुत पसंद है।",
  "क्षत्रिय, त्रिशूल, श्रद्धा और ज्ञान कठिन संयुक्ताक्षर हैं।",
  "संख्या १२३४५ देवनागरी अंकों में लिखी गई है।",
];
const prose = [english, english, english, french, german, chinese, japanese, korean, arabic, russian, hindi];

const emoji = [
  "😀", "😂", "🤖", "🚀", "🔥", "✨", "❤️", "👍🏽", "👋🏿", "🙏🏻", "🧑🏾‍🚀",
  "👨‍👩‍👧‍👦", "👩‍💻", "🏳️‍🌈", "🏴‍☠️", "👁️‍🗨️", "🧑‍🤝‍🧑", "🇫🇷", "🇯🇵", "🇺🇳", "1️⃣", "#️⃣",
  "☺︎", "☺️", "🤷‍♀️", "🤦🏼‍♂️", "💁🏾‍♀️", "🐈‍⬛",
];
const spaces = [" ", "  ", "   ", "    ", "\t", "\t\t", "\n", "\n\n", "\r\n", "\r\n\r\n", " \n", "\u00a0",
  "\u3000", "\u2003", "\u2009", "\u202f", " \t \n", "\n   ", "        ", "\u2028", "\u2029", "\u000b", "\u000c"];
const specials = [
  "<｜begin▁of▁sentence｜>", "<｜end▁of▁sentence｜>", "<｜User｜>", "<｜Assistant｜>", "<｜fim▁hole｜>",
  "<|im_start|>", "<|im_end|>", "<|endoftext|>", "<think>", "</think>", "<tool_call>", "<|fim_prefix|>",
  "<|begin_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>",
];
const lookalikes = [
  "<｜end▁of", "sentence｜>", "<|im_", "im_start|>", "<|im_start |>", "< |im_end|>", "<|IM_START|>",
  "<|end▁of▁sentence|>", "<｜begin_of_sentence｜>", "<|im_end", "<thinking>", "<think", "</ think>",
  "<｜｜>", "<<|im_start|>>", "<|<|im_end|>|>", "<｜▁pad▁｜", "▁▁▁", "｜", "<|", "|>", "<｜", "｜>",
  "<|eot_id", "<|start_header_id|", "<|reserved_special_token_0|>x",
];
const odd = [
  "Z̴̡̛̗͓̖͈a̶͍̫̟l̷̢͚̂g̵̫̈́o̸̧͝ ̵t̷e̸x̷t̶",  // combining stacks
  "\u0301leading combining mark", "e\u0301te\u0301", "A\u030A", "\u1100\u1161\u11A8\u1102\u1165",  // decomposed
  "\u212B \u2126 \u212A \uF900 \u2FC0", // compatibility characters NFC rewrites (Å Ω K 豈) and a radical
  "ﬁ ﬂ ﬀ ㎏ ① ½ ™",
  "\u200D\u200C\u200B\u2060", "\u200Fעברית\u200E", "\u202Eevil\u202C", "\uFE0F\uFE0E", "\u180E\u180E",
  "\uFDD0\uFDEF\uFFFE\uFFFF", "\uE000\uF8FF\u{F0000}\u{10FFFD}", "\uFFFD", "\u0000", "\u0001\u001b[31mred\u001b[0m\u007f",
  "\u0080\u0099\u009f", "\u00AD", "𝕳𝖊𝖑𝖑𝖔 𝔚𝔬𝔯𝔩𝔡", "𐌰𐌱𐌲", "𐀀𐀁", "𠀀𠀁𪚥", "\u{E0001}\u{E0074}\u{E007F}",
  "ÀÁÂÃÄÅ àáâãäå ÇçÑñ", "ǅǈǋ", "ΑΒΓ αβγ ς", "İıŞşĞğ", "Ǆ ǆ ß ẞ",
];
const idents = ["x", "y", "count", "total", "buffer", "tokenizer", "merge_rank", "userName", "HTTPServer", "i", "j", "kMaxSize", "__init__", "_private", "données", "变量"];
function number() {
  switch (int(12)) {
    case 0: return String(int(10));
    case 1: return String(int(1000));
    case 2: return String(int(1e9));
    case 3: return repeat(() => String(int(10)), 10 + int(40));
    case 4: return (rand() * 1000).toFixed(int(6));
    case 5: return Number(int(1e7)).toLocaleString("en-US");
    case 6: return "0x" + int(0x7fffffff).toString(16).toUpperCase();
    case 7: return (rand() * 10).toFixed(2) + "e" + (int(40) - 20);
    case 8: return "１２３４５";
    case 9: return "٣٤٥٦";
    case 10: return `${1900 + int(200)}-${1 + int(12)}-${1 + int(28)}`;
    default: return `+1 (${100 + int(900)}) ${100 + int(900)}-${1000 + int(9000)}`;
  }
}
const code = [
  () => `def ${pick(idents)}(${pick(idents)}, *args, **kwargs):\n    """Docstring: it's ${number()}."""\n    if ${pick(idents)} is None:\n        return []\n    return [x ** 2 for x in range(${number()}) if x % 3 == 0]\n`,
  () => `#include <vector>\n\ntemplate <typename T>\nstd::vector<T> ${pick(idents)}(const std::vector<T>& v) {\n  std::vector<T> out;\n  for (size_t i = 0; i < v.size(); ++i) {\n\tif (v[i] != T{}) out.push_back(v[i] * ${number()});\n  }\n  return out;  // NOLINT\n}\n`,
  () => `const ${pick(idents)} = async (req, res) => {\n  const { id } = req.params;\n  const data = await fetch(\`/api/v1/items/\${id}?limit=${int(100)}\`);\n  return res.status(200).json({ ok: true, n: ${number()} });\n};\n`,
  () => `fn ${pick(idents)}<'a>(s: &'a str) -> Option<&'a str> {\n    s.split_whitespace().find(|w| w.len() > ${int(10)})\n}\n`,
  () => `func ${pick(idents)}(ctx context.Context, n int) (int, error) {\n\tif n < 0 {\n\t\treturn 0, errors.New("negative")\n\t}\n\treturn n * ${number()}, nil\n}\n`,
  () => `SELECT u.id, u.name, COUNT(o.id) AS orders\nFROM users u\nLEFT JOIN orders o ON o.user_id = u.id\nWHERE u.created_at >= '2023-01-01'\nGROUP BY u.id\nHAVING COUNT(o.id) > ${int(50)};\n`,
  () => `<!DOCTYPE html>\n<html lang="en">\n<head><meta charset="utf-8"><title>${pick(english)}</title></head>\n<body>\n  <div class="a b" id='x'>&lt;tag&gt; &amp; ${pick(chinese)}</div>\n</body>\n</html>\n`,
  () => `{"id": ${number()}, "name": "${pick(idents)}", "tags": ["a", "b"], "nested": {"ok": true, "v": null, "s": "\\u00e9\\n"}}\n`,
  () => `#!/usr/bin/env bash\nset -euo pipefail\nfor f in *.txt; do\n  grep -c '${pick(idents)}' "$f" | awk '{s+=$1} END {print s}'\ndone 2>&1 | tee log.txt\n`,
  () => `    \t    # indented comment with trailing spaces    \n\n\n\t\t\treturn ${pick(idents)};   \r\n`,
];

function segment() {
  const r = int(100);
  if (r < 38) return pick(pick(prose));
  if (r < 52) return pick(code)();
  if (r < 60) return repeat(() => pick(emoji), 1 + int(6));
  if (r < 68) return pick(spaces);
  if (r < 76) return number();
  if (r < 82) return pick(specials);
  if (r < 88) return pick(lookalikes);
  if (r < 95) return pick(odd);
  // Long runs: repeated letters, white space, punctuation.
  return pick([" ", "\n", "\t", "a", "=", "-", "!", "9", "字", "😀", "\r\n"]).repeat(1 + int(200));
}

function doc(i) {
  if (i === 0) return "";
  if (i === 1) return "<|im_start|>user\nHello!<|im_end|>\n<|im_start|>assistant\n";
  if (i === 2) return "<｜begin▁of▁sentence｜><｜User｜>Hi<｜Assistant｜>Hello<｜end▁of▁sentence｜>";
  if (i === 3) return "   leading and trailing spaces   ";
  if (i === 4) return "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nHi!<|eot_id|>";
  const parts = [];
  const big = int(20) === 0;
  const n = big ? 60 + int(100) : 3 + int(20);
  for (let k = 0; k < n; ++k) {
    parts.push(segment());
    parts.push(pick(["", " ", " ", " ", "\n", "\n\n", "\t", "", ", ", ". "]));
  }
  return parts.join("");
}

const lines = [];
let bytes = 0;
for (let i = 0; i < ndocs; ++i) {
  const d = doc(i);
  bytes += Buffer.byteLength(d, "utf8");
  lines.push(JSON.stringify(d));
}
writeFileSync(out, lines.join("\n") + "\n");
console.error(`make_corpus: ${ndocs} documents, ${(bytes / 1e6).toFixed(2)} MB of UTF-8 text → ${out}`);
