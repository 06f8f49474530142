// Texts for the tokenizer fixtures (written for this project).
// CORPUS trains the fixtures' vocabularies and merges; GOLDEN_TEXTS are the
// strings whose HF token ids testdata/tokenizers/goldens.json records.
'use strict';

// Sentences per script; each is used in the corpus and in the goldens.
const SENTENCES = {
  en: [
    "The cat sleeps on the warm windowsill.",
    "We're testing whether the tokenizer handles contractions like it's, they'll and I'd.",
    "Prices rose 12.5% in 2023, then fell by 3,400 dollars.",
    "She said: \"Don't touch the red button!\"",
  ],
  de: ["Größere Äpfel schmecken süßer, oder?", "Die Straße führt über die Brücke."],
  fr: ["L'été dernier, nous sommes allés à la plage.", "Où est la bibliothèque ? Près de l'église."],
  es: ["¿Dónde está el baño? ¡Gracias, señor!", "El niño comió una manzana."],
  vi: ["Tiếng Việt có nhiều dấu thanh điệu.", "Hôm nay trời đẹp quá."],
  tr: ["İstanbul'da ılık bir akşam.", "Çocuklar şarkı söylüyor."],
  pl: ["Zażółć gęślą jaźń.", "Łódź jest dużym miastem."],
  ru: ["Кошка спит на тёплом подоконнике.", "Съешь же ещё этих мягких французских булок."],
  uk: ["Ґанок біля їхньої хати.", "Я люблю читати книжки."],
  el: ["Η γάτα κοιμάται στο ζεστό περβάζι.", "Καλημέρα σας, τι κάνετε;"],
  ar: ["القطة تنام على حافة النافذة الدافئة.", "هل تتكلم العربية؟", "كتبتُ ١٢٣ رسالة أمس."],
  he: ["החתול ישן על אדן החלון החם.", "מה שלומך היום?"],
  fa: ["گربه روی لبه پنجره خوابیده است.", "امروز هوا خوب است؟"],
  hi: ["बिल्ली गर्म खिड़की पर सो रही है।", "आप कैसे हैं? मैं ठीक हूँ।", "संख्या १२३४ है।"],
  bn: ["বিড়ালটি উষ্ণ জানালায় ঘুমাচ্ছে।", "আমি বাংলায় গান গাই।", "আজ ২৫ তারিখ।"],
  ta: ["பூனை சூடான ஜன்னலில் தூங்குகிறது.", "வணக்கம், நலமா?"],
  th: ["แมวนอนอยู่บนขอบหน้าต่างที่อบอุ่น", "สวัสดีครับ วันนี้อากาศดีมาก", "ราคา ๑๒๓ บาท"],
  ka: ["კატას თბილ ფანჯარაზე სძინავს.", "გამარჯობა, როგორ ხარ?"],
  hy: ["Կատուն քնած է պատուհանի մոտ։", "Բարև ձեզ։"],
  am: ["ድመቷ በሞቃት መስኮት ላይ ትተኛለች።", "ሰላም ነው?"],
  zh: ["猫在温暖的窗台上睡觉。", "我们今天去公园散步，好吗？", "这是一个测试句子，包含数字123和English单词。"],
  ja: ["猫は暖かい窓辺で眠っている。", "カタカナとひらがなを混ぜて書きます。", "東京タワーは３３３メートルです。"],
  ko: ["고양이가 따뜻한 창턱에서 잔다.", "안녕하세요, 만나서 반갑습니다!"],
  emoji: ["🐈 sleeps 😴 — ok?", "I ❤️ Go 🚀🚀 and 👩‍💻 coding 👍🏽!", "Flags: 🇫🇷🇯🇵 and keycap 1️⃣"],
  code: [
    "func main() { fmt.Println(\"hi\") }",
    "for i in range(10):\n    print(i ** 2)",
    "x := map[string]int{\"a\": 1, \"b\": 2} // comment",
  ],
};

// Extra strings that stress the pipeline: whitespace runs, digits,
// punctuation boundaries, special tokens inside text, normalization forms.
const EXTRA = [
  "",
  " ",
  "  ",
  "   leading spaces",
  "trailing spaces   ",
  "a  b   c    d",
  "tab\there\t\tand\ttabs",
  "line one\nline two\n\nline four\r\nwindows",
  "\n\n\n",
  " \n \n ",
  "mixed \t \n whitespace",
  "non\u00a0breaking\u00a0space",
  "ideographic\u3000space",
  "thin\u2009space and em\u2003space",
  "next\u0085line",
  "vertical\u000btab and form\u000cfeed",
  "zero\u200bwidth",
  "1234567890",
  "3.14159 2.71828",
  "1,000,000 and 1.000.000",
  "phone: +1 (555) 010-9999",
  "2024-01-31T12:34:56Z",
  "x1 x22 x333 x4444 x55555",
  "Ⅻ and ½ and ² and ①",
  "٠١٢٣٤٥٦٧٨٩",
  "०१२३४५६७८९",
  "hello؟ world؟",
  "ما هذا؟أين",
  "word's word'S WORD'S",
  "I'M YOU'RE WE'VE THEY'LL HE'D",
  "don't can't won't",
  "''' quotes \"\" “curly” ‘single’ «guillemets»",
  "!!!???...,,,;;;",
  "a-b_c.d/e\\f",
  "email@example.com http://example.org/path?q=1&r=2",
  "#hashtag @mention $100 %50 ^caret &and *star",
  "(parentheses) [brackets] {braces} <angles>",
  "ÀÉÎÕÜ àéîõü",
  "Cafe\u0301 vs Café",
  "e\u0301\u0301 double accent",
  "ﬁ ligature and ﬀ",
  "Ｆｕｌｌｗｉｄｔｈ ＡＢＣ １２３",
  "ΣΊΣΥΦΟΣ σίσυφος",
  "straße STRASSE",
  "İi Iı",
  "ǅ titlecase",
  "🙂🙃🙂🙃",
  "👨‍👩‍👧‍👦 family",
  "🏳️‍🌈 flag",
  "a🐈b🐈c",
  "日本語の文章とEnglishが混ざっています。",
  "中文,English,العربية,हिन्दी",
  "Русский text with English words",
  "한국어와 English 123",
  "ภาษาไทยไม่มีช่องว่างระหว่างคำ",
  "𝔘𝔫𝔦𝔠𝔬𝔡𝔢 𝕞𝕒𝕥𝕙",
  "𠀀𠀁 rare CJK extension B",
  "\u0000null and \u0001control",
  "<s> inside text </s>",
  "<s><s></s></s>",
  "start<|endoftext|>end",
  "<|endoftext|> leading special",
  "trailing special <|endoftext|>",
  "a <|sep|> b",
  "a<|sep|>b",
  "[MASK] at start, middle [MASK] and end [MASK]",
  "x[MASK]y is not a single word",
  "<|begin_of_text|>Hello<|eot_id|>",
  "<|start_header_id|>user<|end_header_id|>\n\nHi!<|eot_id|>",
  "<start_of_turn>user\nHello<end_of_turn>\n<start_of_turn>model\n",
  "<|im_start|>system\nYou are helpful.<|im_end|>",
  "<unk> token literal",
  "<0x41> byte literal",
  "▁ lower one eighth block ▁▁",
  "Ġ and Ċ are byte chars",
  "a" + " ".repeat(17) + "b",
  "x".repeat(300),
  "ab".repeat(100),
  "The quick brown fox jumps over the lazy dog. ".repeat(4),
  "mixed-CASE CamelCase snake_case kebab-case SCREAMING_CASE",
  "numbers in words: abc123def 456ghi",
  "  two leading, two trailing  ",
  "-dash-start and end-",
  "...ellipsis…",
  "tab-only\t",
  "\tleading tab",
  "emoji at end 🚀",
  "🚀 emoji at start",
  "Ω≈ç√∫˜µ≤≥÷",
  "©®™ §¶ •ªº",
  "₹100 €200 £300 ¥400",
];

function goldenTexts() {
  const out = [];
  for (const [lang, ss] of Object.entries(SENTENCES)) {
    for (const s of ss) out.push(s);
    // variations per script: spaces around, doubled, joined without space
    const s = ss[0];
    out.push(" " + s);
    out.push(s + " ");
    out.push(s + "  " + s);
    out.push(s + "\n" + (ss[1] || s));
    out.push(s.toUpperCase());
  }
  for (const s of EXTRA) out.push(s);
  return [...new Set(out)];
}

function corpus() {
  const lines = [];
  for (const ss of Object.values(SENTENCES)) for (const s of ss) lines.push(s, s.toLowerCase());
  lines.push(
    "the of and to in is was for on that with as by at from this it be are or an which",
    "tokenizer tokenizers token tokens merge merges byte bytes space spaces word words",
    "hello world hello there how are you today I am fine thank you very much",
    "one two three four five six seven eight nine ten hundred thousand million",
  );
  return lines;
}

module.exports = { SENTENCES, EXTRA, goldenTexts, corpus };
