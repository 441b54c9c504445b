//! The pre-tokenizers llama.cpp knows for BPE vocabularies (`tokenizer.ggml.pre`), as lists of regexes
//! for the `tokenizers` crate (whose regex engine is Oniguruma).
//!
//! Facts from llama.cpp (llama-vocab.cpp, unicode.cpp, as shipped by llama-cpp-python 0.3.36):
//!
//! * `llama_vocab::impl::load` maps each `tokenizer.ggml.pre` name to a pre type
//!   (`LLAMA_VOCAB_PRE_TYPE_*`) and sets per-name flags: `ignore_merges` (a piece that is a token whole
//!   is that token, without running the merges), `add_bos` (the default when
//!   `tokenizer.ggml.add_bos_token` is absent), `escape_whitespaces` (' ' becomes U+2581 before
//!   splitting) and `clean_spaces` (detokenisation only). A missing name means `default`.
//! * `llm_tokenizer_bpe`'s constructor gives each pre type a list of regexes, and for three of them
//!   (GEMMA4, SARVAM_MOE, WHITESPACE) `byte_encode = false`: the pieces stay raw UTF-8 (no GPT-2 byte
//!   mapping) and a symbol that is no token becomes its `<0xXX>` tokens.
//! * `unicode_regex_split` applies the regexes in order, each one splitting every piece the previous
//!   ones produced; text between two matches is a piece of its own (the `Split` pre-tokenizer with
//!   behaviour `Isolated` does the same).
//!
//! How each regex is run there decides how it is written here:
//!
//! * Some regex strings are never run as regexes: `unicode_regex_split_custom` replaces them with
//!   hand-written splitters (GPT-2, Llama 3, Qwen2, Qwen3.5, Kimi-K2, AFMoE digits, `[^\n]+|[\n]+` and
//!   Tiny Aya's digit grouping). The GPT-2, Llama 3, Qwen2, Qwen3.5 and newline splitters split as their
//!   regex does, except that llama.cpp's GPT-2 regex string lacks the final `|\s+` that its splitter
//!   implements (added here). Kimi-K2's and the AFMoE digit splitter do something else than the regex
//!   they are named by; the regexes below reproduce what the code does (see `KIMI_K2` and
//!   `AFMOE_DIGITS` below).
//! * A regex that uses `\p{..}` runs through `std::regex` on a "collapsed" copy of the text in which
//!   every non-ASCII code point is one byte standing for its category (letter, number, punctuation,
//!   mark, symbol, whitespace, other) and `\p{X}` becomes that byte plus X's ASCII members. So
//!   `\p{Lu}`, `\p{Ll}`, `\p{Lt}`, `\p{Lm}` and `\p{Lo}` all mean "any letter" (ASCII `A-Za-z` or any
//!   non-ASCII letter): they are written `\p{L}` here. The other classes mean what Oniguruma's do.
//! * A regex without `\p{..}` runs through `std::wregex` on the code points, with every non-ASCII
//!   whitespace character replaced by U+000B first. So a non-ASCII whitespace character never matches
//!   a literal class (DeepSeek's `　-。`, U+3000..U+3002, is U+3001..U+3002 here, and its CJK class
//!   U+0800..U+4E00, which takes in U+1680, U+2000..U+200A, U+3000..., is intersected with `\S`),
//!   `\d` is ASCII (`[0-9]` here) and `$` is the end of the piece (`\z` here: Oniguruma's `$` is an
//!   end of line). Non-ASCII characters of those classes are written `\x{..}` here.
//!
//! Code point categories come from llama.cpp's unicode-data.cpp there and from Oniguruma's tables here.
//! Compared over all code points, whitespace agrees exactly and the categories differ only where
//! Oniguruma's newer Unicode has assigned code points that llama.cpp's table leaves unassigned (5,185 of
//! them: 4,302 letters, 739 symbols, 80 numbers, 51 marks, 13 punctuation, in scripts added lately such
//! as U+105C0.. or U+1CC00..); text in those splits differently.
//!
//! Not reproduced:
//!
//! * for GEMMA4 llama.cpp looks a piece made only of newlines up as a whole token before merging
//!   (tokens like "\n\n\n" that the merges do not build); here such a piece goes through the merges
//!   like any other;
//! * with `whitespace` on a `gpt2` vocabulary llama.cpp aborts on a run of whitespace that holds a ' '
//!   (`GGML_ASSERT` in `find_bpe_rank`); here the run is encoded (byte fallback);
//! * for the raw UTF-8 types a character that is no token becomes its `<0xXX>` tokens here only if all
//!   of them exist (else it is dropped); llama.cpp emits those that exist. Vocabularies that have
//!   `<0xXX>` tokens have all 256.

/// One llama.cpp pre type: its regexes (as Oniguruma patterns that split as llama.cpp does) and
/// whether pieces are GPT-2 byte-encoded.
#[derive(Debug, PartialEq, Eq)]
pub struct PreType {
    /// llama.cpp's name without `LLAMA_VOCAB_PRE_TYPE_`.
    pub name: &'static str,
    pub regexes: &'static [&'static str],
    /// GPT-2 byte-level encoding of the pieces (false: raw UTF-8 with `<0xXX>` byte tokens).
    pub byte_encode: bool,
}

/// One `tokenizer.ggml.pre` name and the flags llama.cpp sets for it.
#[derive(Debug, PartialEq, Eq)]
pub struct PreTokenizer {
    /// The `tokenizer.ggml.pre` string.
    pub name: &'static str,
    pub kind: &'static PreType,
    /// A piece that is a token is that token, whatever the merges would make of it.
    pub ignore_merges: bool,
    /// `tokenizer.ggml.add_bos_token`'s default.
    pub add_bos: bool,
    /// ' ' becomes U+2581 '▁' before the text is split.
    pub escape_whitespaces: bool,
    /// llama.cpp's `clean_spaces` (used when detokenising only; informational here).
    pub clean_spaces: bool,
}

impl PreTokenizer {
    /// llama.cpp adds BOS whatever `tokenizer.ggml.add_bos_token` says (a Gemma 4 workaround).
    pub fn forces_bos(&self) -> bool {
        self.kind.name == "GEMMA4"
    }
}

// ---- regexes ----

/// GPT-2's regex; llama.cpp's string lacks the final `|\s+`, which its hand-written splitter has.
pub const GPT2_REGEX: &str =
    r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+";

/// Llama 3's regex as llama.cpp writes it: `(?i:'s|...)` spelled out, so that no Unicode case folding
/// (`'ſ`, U+017F, folds to `'s`) comes into it; llama.cpp runs it by hand (case-insensitive only for
/// ASCII).
pub const LLAMA3_REGEX: &str = r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// Qwen2's regex (Llama 3's with single digits), run by hand in llama.cpp.
pub const QWEN2_REGEX: &str = r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// Qwen3.5's: letter runs take combining marks too; run by hand in llama.cpp.
const QWEN35_REGEX: &str = r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?[\p{L}\p{M}]+|\p{N}| ?[^\s\p{L}\p{M}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

const JAIS2_REGEX: &str = r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s{512}(?!\S)|\s{256}(?!\S)|\s{128}(?!\S)|\s{64}(?!\S)|\s{32}(?!\S)|\s{16}(?!\S)|\s{8}(?!\S)|\s{4}(?!\S)|\s{1,2}(?!\S)|\s{1}";

/// `[^\n]+|[\n]+`, run by hand in llama.cpp (same splits).
const NEWLINE_RUNS: &str = r"[^\n]+|[\n]+";

/// DeepSeek's CJK class `[一-龥ࠀ-一가-퟿]+` (U+0800..U+4E00 takes in the spaces U+1680, U+2000..U+200A,
/// U+3000...: never matched in llama.cpp, which sees them as U+000B, hence `&&\S`).
const DEEPSEEK_CJK: &str = r"[\x{4E00}-\x{9FA5}\x{800}-\x{4E00}\x{AC00}-\x{D7FF}&&\S]+";

/// The CJK-and-kana class of DeepSeek V3 and its relatives.
const HAN_KANA: &str = r"[\x{4E00}-\x{9FA5}\x{3040}-\x{309F}\x{30A0}-\x{30FF}]+";

/// DeepSeek V3's main regex (collapsed `\p{..}` in llama.cpp; same meaning here).
const DEEPSEEK3_MAIN: &str = r##"[!"#$%&'()*+,\-./:;<=>?@\[\\\]^_`{|}~][A-Za-z]+|[^\r\n\p{L}\p{P}\p{S}]?[\p{L}\p{M}]+| ?[\p{P}\p{S}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"##;

/// The BLOOM / Poro / GPT-3 Finnish regex (a class with literal `(`, `|`, `)`).
const BLOOM_REGEX: &str = r" ?[^(\s|.,!?\x{2026}\x{3002}\x{FF0C}\x{3001}\x{964}\x{6D4}\x{60C})]+";

/// Tekken's (Mistral Nemo) with llama.cpp's lookaheads for the case classes: a letter that is not
/// ASCII lower case, then letters that are not ASCII upper case. Non-ASCII letters count as both, as
/// in llama.cpp. (Groups made non-capturing.)
const TEKKEN_REGEX: &str = r"[^\r\n\p{L}\p{N}]?(?:(?=[\p{L}])[^a-z])*(?:(?=[\p{L}])[^A-Z])+|[^\r\n\p{L}\p{N}]?(?:(?=[\p{L}])[^a-z])+(?:(?=[\p{L}])[^A-Z])*|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// GPT-4o's (also Llama 4, MiniMax M2) with llama.cpp's lookaheads, as [`TEKKEN_REGEX`].
const GPT4O_REGEX: &str = r"[^\r\n\p{L}\p{N}]?(?:(?=[\p{L}])[^a-z])*(?:(?=[\p{L}])[^A-Z])+(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])?|[^\r\n\p{L}\p{N}]?(?:(?=[\p{L}])[^a-z])+(?:(?=[\p{L}])[^A-Z])*(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])?|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// GPT-4o's with combining marks counted as letters (granite-embed-multi-97m).
const GRANITE_EMB_MULTI_REGEX: &str = r"[^\r\n\p{L}\p{N}]?(?:(?=[\p{L}\p{M}])[^a-z])*(?:(?=[\p{L}\p{M}])[^A-Z])+(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])?|[^\r\n\p{L}\p{N}]?(?:(?=[\p{L}\p{M}])[^a-z])+(?:(?=[\p{L}\p{M}])[^A-Z])*(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])?|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// The upper/lower case regex of GPT-4o as Tiny Aya and Youtu ship it (`[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*
/// [\p{Ll}\p{Lm}\p{Lo}\p{M}]+...`), which llama.cpp runs collapsed: every `\p{L?}` is any letter, so
/// both alternatives are "letters and marks" (`HelloWorld` is one piece, not two as in Python).
const TINY_AYA_REGEX: &str = r"[^\r\n\p{L}\p{N}]?[\p{L}\p{M}]*[\p{L}\p{M}]+(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])?|[^\r\n\p{L}\p{N}]?[\p{L}\p{M}]+[\p{L}\p{M}]*(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])?|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// Youtu's second regex: [`TINY_AYA_REGEX`] with single digits.
const YOUTU_REGEX: &str = r"[^\r\n\p{L}\p{N}]?[\p{L}\p{M}]*[\p{L}\p{M}]+(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])?|[^\r\n\p{L}\p{N}]?[\p{L}\p{M}]+[\p{L}\p{M}]*(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])?|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// The digit splitter llama.cpp runs for AFMoE's `\p{AFMoE_digits}` and for Tiny Aya's
/// `\d{1,3}(?=(?:\d{3})*\b)` (unicode.cpp, `unicode_regex_split_custom_afmoe`): a run of numbers
/// (`\p{N}`, not only ASCII) is cut into groups of three from the right, and the text before a run
/// (since the previous group) is not a piece of its own but the start of the run's first group
/// ("ab1234" is "ab1", "234"); text after the last run is one piece. `\G` (where the search starts,
/// i.e. where the previous match ended) keeps the search linear.
const AFMOE_DIGITS: &str = r"\G\P{N}*+\p{N}{1,3}(?=(?:\p{N}{3})*+(?!\p{N}))";

/// Han as llama.cpp's `unicode_cpt_is_han` has it.
macro_rules! han {
    () => {
        r"\x{4E00}-\x{9FFF}\x{3400}-\x{4DBF}\x{20000}-\x{2A6DF}\x{2A700}-\x{2B73F}\x{2B740}-\x{2B81F}\x{2B820}-\x{2CEAF}\x{2CEB0}-\x{2EBEF}\x{F900}-\x{FAFF}\x{2F800}-\x{2FA1F}"
    };
}

/// What llama.cpp's hand-written Kimi-K2 splitter (`unicode_regex_split_custom_kimi_k2`) does, which is
/// not the regex it is named after: Han runs; then letters other than Han, with one optional leading
/// character that is no letter, number, CR or LF, and an optional contraction (no upper/lower case
/// split, marks not letters); numbers by three; then Llama 3's punctuation and whitespace rules.
const KIMI_K2: &str = concat!(
    r"[",
    han!(),
    r"]+|[^\r\n\p{L}\p{N}]?[\p{L}&&[^",
    han!(),
    r"]]+(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])?|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
);

// ---- pre types (llm_tokenizer_bpe's constructor) ----

macro_rules! pre_type {
    ($id:ident, $name:literal, [$($re:expr),* $(,)?]) => {
        pre_type!($id, $name, [$($re),*], true);
    };
    ($id:ident, $name:literal, [$($re:expr),* $(,)?], $byte_encode:expr) => {
        pub static $id: PreType = PreType { name: $name, regexes: &[$($re),*], byte_encode: $byte_encode };
    };
}

pre_type!(
    DEFAULT,
    "DEFAULT",
    [
        r"[\p{P}\$\+<=>\^~\|]+",
        GPT2_REGEX,
        r"\p{N}+",
        r"[0-9][0-9][0-9]"
    ]
);
pre_type!(LLAMA3, "LLAMA3", [LLAMA3_REGEX]);
pre_type!(JAIS2, "JAIS2", [JAIS2_REGEX]);
pre_type!(DBRX, "DBRX", [LLAMA3_REGEX]);
pre_type!(SMAUG, "SMAUG", [LLAMA3_REGEX]);
pre_type!(
    DEEPSEEK_LLM,
    "DEEPSEEK_LLM",
    [
        r"[\r\n]",
        r"\s?[A-Za-z\x{B5}\x{C0}-\x{D6}\x{D8}-\x{F6}\x{F8}-\x{1BA}\x{1BC}-\x{1BF}\x{1C4}-\x{293}\x{295}-\x{2AF}\x{370}-\x{373}\x{376}\x{377}\x{37B}-\x{37D}\x{37F}\x{386}\x{388}-\x{38A}\x{38C}\x{38E}-\x{3A1}\x{3A3}-\x{3F5}\x{3F7}-\x{481}\x{48A}-\x{52F}\x{531}-\x{556}\x{10A0}-\x{10C5}\x{13A0}-\x{13F5}\x{13F8}-\x{13FD}\x{1C90}-\x{1CBA}\x{1CBD}-\x{1CBF}\x{1D00}-\x{1D2B}\x{1D6B}-\x{1D77}\x{1D79}-\x{1D9A}\x{1E00}-\x{1F15}\x{1F18}-\x{1F1D}\x{1F20}-\x{1F45}\x{1F48}-\x{1F4D}\x{1F50}-\x{1F57}\x{1F59}\x{1F5B}\x{1F5D}\x{1F5F}-\x{1F7D}\x{1F80}-\x{1FB4}\x{1FB6}-\x{1FBC}\x{1FBE}\x{1FC2}-\x{1FC4}\x{1FC6}-\x{1FCC}\x{1FD0}-\x{1FD3}\x{1FD6}-\x{1FDB}\x{1FE0}-\x{1FEC}\x{1FF2}-\x{1FF4}\x{1FF6}-\x{1FFC}\x{2102}\x{2107}\x{210A}-\x{2113}\x{2115}\x{2119}-\x{211D}\x{2124}\x{2126}\x{2128}\x{212A}-\x{212D}\x{212F}-\x{2134}\x{2139}\x{213C}-\x{213F}\x{2145}-\x{2149}\x{214E}\x{2183}\x{2184}\x{2C00}-\x{2C7B}\x{2C7E}-\x{2CE4}\x{2CEB}-\x{2CEE}\x{2CF2}\x{2CF3}\x{A640}-\x{A66D}\x{A680}-\x{A69B}\x{A722}-\x{A76F}\x{A771}-\x{A787}\x{A78B}-\x{A78E}\x{AB70}-\x{ABBF}\x{FB00}-\x{FB06}\x{FB13}-\x{FB17}\x{FF21}-\x{FF3A}\x{FF41}-\x{FF5A}\x{10400}-\x{1044F}\x{104B0}-\x{104D3}\x{104D8}-\x{104FB}\x{10C80}-\x{10CB2}\x{10CC0}-\x{10CF2}\x{118A0}-\x{118DF}\x{1E900}-\x{1E943}]+",
        // llama.cpp: `...‘-‟　-。` (U+3000..U+3002); U+3000 is whitespace, so only U+3001..U+3002 match.
        r"\s?[!-/:-~\x{FF01}-\x{FF0F}\x{FF1A}-\x{FF5E}\x{2018}-\x{201F}\x{3001}-\x{3002}]+",
        // llama.cpp: `\s+$`, `$` being the end of the piece.
        r"\s+\z",
        DEEPSEEK_CJK,
        r"\p{N}+",
    ]
);
pre_type!(
    DEEPSEEK3_LLM,
    "DEEPSEEK3_LLM",
    [r"\p{N}{1,3}", HAN_KANA, DEEPSEEK3_MAIN]
);
pre_type!(
    HUNYUAN_DENSE,
    "HUNYUAN_DENSE",
    [r"\p{N}{1,3}", HAN_KANA, DEEPSEEK3_MAIN]
);
pre_type!(
    JOYAI_LLM,
    "JOYAI_LLM",
    [r"\p{N}{1,3}", HAN_KANA, DEEPSEEK3_MAIN]
);
pre_type!(HY_V4, "HY_V4", [r"\p{N}{1,3}", HAN_KANA, DEEPSEEK3_MAIN]);
pre_type!(
    SPARK2_5,
    "SPARK2_5",
    [
        r"\p{N}{1,3}",
        HAN_KANA,
        r##"[!"#$%&'()*+,\-./:;<=>?@\[\\\]^_`{|}~][A-Za-z]+|[^\r\n\p{L}\p{P}\p{S}]?[\p{L}\p{M}]+| ?[\p{P}\p{S}]+|[\r\n]|\s+(?!\S)|\s+"##,
        r"\p{N}",
    ]
);
pre_type!(
    YOUTU,
    "YOUTU",
    [
        r"[\x{AC00}-\x{D7A3}\x{3131}-\x{318E}]+|[\x{FF01}\x{2026}\x{201C}\x{201D}\x{2018}\x{2019}\x{2014}\x{FF1A}\x{FF1B}\x{FF0C}\x{3001}-\x{303F}\x{FE30}-\x{FE4F}]+|[\x{3105}-\x{312F}]+|[\x{4E00}-\x{9FA5}\x{3040}-\x{309F}\x{30A0}-\x{30FF}]+",
        YOUTU_REGEX
    ]
);
pre_type!(
    DEEPSEEK_CODER,
    "DEEPSEEK_CODER",
    [
        r"[\r\n]",
        r"\s?\p{L}+",
        r"\s?\p{P}+",
        DEEPSEEK_CJK,
        r"\p{N}"
    ]
);
pre_type!(
    FALCON,
    "FALCON",
    [r"[\p{P}\$\+<=>\^~\|`]+", GPT2_REGEX, r"[0-9][0-9][0-9]"]
);
pre_type!(STARCODER, "STARCODER", [r"\p{N}", GPT2_REGEX]);
pre_type!(REFACT, "REFACT", [r"\p{N}", GPT2_REGEX]);
pre_type!(COMMAND_R, "COMMAND_R", [r"\p{N}", GPT2_REGEX]);
pre_type!(SMOLLM, "SMOLLM", [r"\p{N}", GPT2_REGEX]);
pre_type!(CODESHELL, "CODESHELL", [r"\p{N}", GPT2_REGEX]);
pre_type!(EXAONE, "EXAONE", [r"\p{N}", GPT2_REGEX]);
pre_type!(MINERVA, "MINERVA", [r"\p{N}", GPT2_REGEX]);
pre_type!(MELLUM2, "MELLUM2", [r"\p{N}", GPT2_REGEX]);
pre_type!(GPT2, "GPT2", [GPT2_REGEX]);
pre_type!(MPT, "MPT", [GPT2_REGEX]);
pre_type!(OLMO, "OLMO", [GPT2_REGEX]);
pre_type!(JAIS, "JAIS", [GPT2_REGEX]);
pre_type!(TRILLION, "TRILLION", [GPT2_REGEX]);
pre_type!(GRANITE_DOCLING, "GRANITE_DOCLING", [GPT2_REGEX]);
pre_type!(STABLELM2, "STABLELM2", [QWEN2_REGEX]);
pre_type!(QWEN2, "QWEN2", [QWEN2_REGEX]);
pre_type!(HUNYUAN, "HUNYUAN", [QWEN2_REGEX]);
pre_type!(SOLAR_OPEN, "SOLAR_OPEN", [QWEN2_REGEX]);
pre_type!(QWEN35, "QWEN35", [QWEN35_REGEX]);
pre_type!(PORO, "PORO", [BLOOM_REGEX]);
pre_type!(BLOOM, "BLOOM", [BLOOM_REGEX]);
pre_type!(GPT3_FINNISH, "GPT3_FINNISH", [BLOOM_REGEX]);
pre_type!(CHATGLM4, "CHATGLM4", [LLAMA3_REGEX]);
pre_type!(VIKING, "VIKING", [BLOOM_REGEX, r"\p{N}"]);
pre_type!(TEKKEN, "TEKKEN", [TEKKEN_REGEX]);
pre_type!(
    CHAMELEON,
    "CHAMELEON",
    [
        r"<sentinel:[0-9]+>",
        r"(?:IMGIMG)(?:(?:A|B|C|D|E|F|G|H|I){1,4})Z",
        r"(?:[\t\n]|    |  )",
        r"\p{N}",
        r"[\p{P}!-/:-@\[-`{-~]",
        GPT2_REGEX,
    ]
);
pre_type!(GPT4O, "GPT4O", [GPT4O_REGEX]);
pre_type!(MINIMAX_M2, "MINIMAX_M2", [GPT4O_REGEX]);
pre_type!(
    GRANITE_EMB_MULTI,
    "GRANITE_EMB_MULTI",
    [GRANITE_EMB_MULTI_REGEX]
);
pre_type!(TINY_AYA, "TINY_AYA", [AFMOE_DIGITS, TINY_AYA_REGEX]);
pre_type!(KIMI_K2_TYPE, "KIMI_K2", [KIMI_K2]);
pre_type!(
    SUPERBPE,
    "SUPERBPE",
    // llama.cpp: `(?=(\d{3})+(?!\d))`, empty matches that cut a digit run into threes from the right.
    [r"\p{N}+", r"(?=(?:[0-9]{3})+(?![0-9]))"]
);
pre_type!(
    BAILINGMOE,
    "BAILINGMOE",
    [
        r"'(?:[sSdDmMtT]|[lL][lL]|[vV][eE]|[rR][eE])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]|\s+(?!\S)|\s+"
    ]
);
pre_type!(
    SEED_CODER,
    "SEED_CODER",
    [
        r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1}| ?[^\s\p{L}\p{N}\r\n]+|\s*[\r\n]+|\s+(?!\S)|\s+"
    ]
);
pre_type!(
    UFAKZEKA,
    "UFAKZEKA",
    [r"[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"]
);
pre_type!(GROK_2, "GROK_2", [QWEN2_REGEX]);
pre_type!(
    AFMOE,
    "AFMOE",
    [
        AFMOE_DIGITS,
        r"[\x{4E00}-\x{9FFF}\x{3400}-\x{4DBF}\x{8C48}-\x{FAFF}\x{3040}-\x{309F}\x{30A0}-\x{30FF}\x{FF65}-\x{FF9F}\x{2F00}-\x{2FDF}\x{E40}-\x{E7F}\x{E80}-\x{EFF}\x{1780}-\x{17FF}\x{1000}-\x{109F}\x{AA60}-\x{AA7F}\x{A9E0}-\x{A9FF}\x{AC00}-\x{D7AF}\x{1100}-\x{11FF}]+",
        DEEPSEEK3_MAIN,
    ]
);
pre_type!(LAGUNA, "LAGUNA", [NEWLINE_RUNS, QWEN2_REGEX]);
pre_type!(
    EXAONE_MOE,
    "EXAONE_MOE",
    [
        r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?(?:\p{L}\p{M}*(?: \p{L}\p{M}*)*)+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n/]?|\s*[\r\n]|\s+(?!\S)|\s+"
    ]
);
pre_type!(GEMMA4, "GEMMA4", [NEWLINE_RUNS], false);
pre_type!(SARVAM_MOE, "SARVAM_MOE", [NEWLINE_RUNS], false);
pre_type!(
    MINICPM5,
    "MINICPM5",
    [
        r"\p{N}{1,3}",
        r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}+| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+",
    ]
);
pre_type!(WHITESPACE, "WHITESPACE", [r"\S+"], false);

// ---- names (llama_vocab::impl::load) ----

const IGNORE_MERGES: u8 = 1;
const ADD_BOS: u8 = 2;
const ESCAPE_WS: u8 = 4;
/// `clean_spaces = false`.
const KEEP_SPACES: u8 = 8;

const fn pre(name: &'static str, kind: &'static PreType, flags: u8) -> PreTokenizer {
    PreTokenizer {
        name,
        kind,
        ignore_merges: flags & IGNORE_MERGES != 0,
        add_bos: flags & ADD_BOS != 0,
        escape_whitespaces: flags & ESCAPE_WS != 0,
        clean_spaces: flags & KEEP_SPACES == 0,
    }
}

/// Every `tokenizer.ggml.pre` name llama.cpp accepts for BPE vocabularies, in its order.
pub static PRE_TOKENIZERS: &[PreTokenizer] = &[
    pre("default", &DEFAULT, 0),
    pre("minicpm5", &MINICPM5, IGNORE_MERGES),
    pre("llama3", &LLAMA3, IGNORE_MERGES | ADD_BOS),
    pre("llama-v3", &LLAMA3, IGNORE_MERGES | ADD_BOS),
    pre("llama-bpe", &LLAMA3, IGNORE_MERGES | ADD_BOS),
    pre("falcon3", &LLAMA3, IGNORE_MERGES | ADD_BOS),
    pre("falcon-h1", &LLAMA3, IGNORE_MERGES | ADD_BOS),
    pre("pixtral", &LLAMA3, IGNORE_MERGES | ADD_BOS),
    pre("midm-2.0", &LLAMA3, IGNORE_MERGES | ADD_BOS),
    pre("lfm2", &LLAMA3, IGNORE_MERGES | ADD_BOS),
    pre("jina-v5-nano", &LLAMA3, IGNORE_MERGES | ADD_BOS),
    pre("deepseek-llm", &DEEPSEEK_LLM, KEEP_SPACES),
    pre("deepseek-coder", &DEEPSEEK_CODER, KEEP_SPACES),
    pre("deepseek-v3", &DEEPSEEK3_LLM, KEEP_SPACES),
    pre("spark2_5", &SPARK2_5, KEEP_SPACES),
    pre("youtu", &YOUTU, KEEP_SPACES | IGNORE_MERGES),
    pre("falcon", &FALCON, 0),
    pre("mpt", &MPT, 0),
    pre("starcoder", &STARCODER, 0),
    pre("gpt-2", &GPT2, 0),
    pre("phi-2", &GPT2, 0),
    pre("jina-es", &GPT2, 0),
    pre("jina-de", &GPT2, 0),
    pre("gigachat", &GPT2, 0),
    pre("jina-v2-es", &GPT2, 0),
    pre("jina-v2-de", &GPT2, 0),
    pre("a.x-4.0", &GPT2, 0),
    pre("mellum", &GPT2, 0),
    pre("modern-bert", &GPT2, 0),
    pre("jais-2", &JAIS2, 0),
    pre("gemma4", &GEMMA4, ESCAPE_WS),
    pre("granite-embed-multi-311m", &GEMMA4, ESCAPE_WS),
    pre("sarvam-moe", &SARVAM_MOE, ESCAPE_WS | KEEP_SPACES),
    // llama.cpp also sets add_sep for these three, which BPE tokenisation does not use.
    pre("jina-v1-en", &GPT2, 0),
    pre("jina-v2-code", &GPT2, 0),
    pre("roberta-bpe", &GPT2, 0),
    pre("whitespace", &WHITESPACE, 0),
    pre("refact", &REFACT, 0),
    pre("command-r", &COMMAND_R, KEEP_SPACES),
    pre("qwen2", &QWEN2, KEEP_SPACES),
    pre("deepseek-r1-qwen", &QWEN2, KEEP_SPACES),
    pre("kormo", &QWEN2, KEEP_SPACES),
    pre("f2llmv2", &QWEN2, KEEP_SPACES),
    pre("qwen35", &QWEN35, KEEP_SPACES),
    pre("stablelm2", &STABLELM2, 0),
    pre("olmo", &OLMO, 0),
    pre("dbrx", &DBRX, 0),
    pre("smaug-bpe", &SMAUG, 0),
    pre("poro-chat", &PORO, KEEP_SPACES),
    // llama.cpp's default BOS id for these is none (tokenizer.ggml.bos_token_id still sets one).
    pre("chatglm-bpe", &CHATGLM4, 0),
    pre("glm4", &CHATGLM4, IGNORE_MERGES),
    pre("glm5", &CHATGLM4, IGNORE_MERGES),
    pre("viking", &VIKING, KEEP_SPACES),
    pre("jais", &JAIS, 0),
    pre("tekken", &TEKKEN, KEEP_SPACES | IGNORE_MERGES | ADD_BOS),
    pre("smollm", &SMOLLM, KEEP_SPACES),
    pre("codeshell", &CODESHELL, 0),
    pre("bloom", &BLOOM, 0),
    pre("gpt3-finnish", &GPT3_FINNISH, 0),
    pre("exaone", &EXAONE, 0),
    pre("exaone4", &GPT2, 0),
    pre("exaone-moe", &EXAONE_MOE, 0),
    pre("chameleon", &CHAMELEON, ADD_BOS | KEEP_SPACES),
    pre("minerva-7b", &MINERVA, 0),
    pre("megrez", &QWEN2, 0),
    pre("gpt-4o", &GPT4O, KEEP_SPACES),
    pre("llama4", &GPT4O, KEEP_SPACES),
    pre("kanana2", &GPT4O, KEEP_SPACES),
    pre("talkie", &GPT4O, KEEP_SPACES),
    pre(
        "granite-embed-multi-97m",
        &GRANITE_EMB_MULTI,
        KEEP_SPACES | IGNORE_MERGES,
    ),
    pre("tiny_aya", &TINY_AYA, KEEP_SPACES),
    pre("cohere2moe", &TINY_AYA, KEEP_SPACES),
    pre("superbpe", &SUPERBPE, KEEP_SPACES),
    pre("trillion", &TRILLION, KEEP_SPACES),
    pre("granite-docling", &GRANITE_DOCLING, KEEP_SPACES),
    pre("bailingmoe", &BAILINGMOE, KEEP_SPACES),
    pre("bailingmoe2", &BAILINGMOE, KEEP_SPACES),
    pre("llada-moe", &BAILINGMOE, KEEP_SPACES),
    pre("seed-coder", &SEED_CODER, KEEP_SPACES),
    pre("hunyuan", &HUNYUAN, KEEP_SPACES),
    pre("hunyuan-dense", &HUNYUAN_DENSE, KEEP_SPACES),
    pre("hy_v4", &HY_V4, KEEP_SPACES),
    pre("joyai-llm", &JOYAI_LLM, KEEP_SPACES),
    pre("kimi-k2", &KIMI_K2_TYPE, KEEP_SPACES),
    pre("ufakzeka", &UFAKZEKA, KEEP_SPACES),
    pre("grok-2", &GROK_2, KEEP_SPACES),
    pre("afmoe", &AFMOE, KEEP_SPACES),
    pre("laguna", &LAGUNA, KEEP_SPACES),
    pre("minimax-m2", &MINIMAX_M2, KEEP_SPACES),
    pre("solar-open", &SOLAR_OPEN, KEEP_SPACES),
    pre("mellum2", &MELLUM2, 0),
];

/// The pre-tokenizer llama.cpp uses for a `tokenizer.ggml.pre` name (`None`: llama.cpp refuses it).
pub fn lookup(name: &str) -> Option<&'static PreTokenizer> {
    PRE_TOKENIZERS.iter().find(|p| p.name == name)
}

/// The regex a `tokenizer.json` of the GPT-2, Llama 3 or Qwen2 family carries in its `Split`
/// pre-tokenizer (Hugging Face's spelling, `(?i:...)`), for recognising those families when converting
/// a `tokenizer.json` to GGUF metadata.
pub(crate) fn tokenizer_json_regex(pre: &str) -> Option<&'static str> {
    Some(match pre {
        "gpt-2" => r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+",
        "llama-bpe" => {
            r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
        }
        "qwen2" => {
            r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
        }
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokenizers::utils::SysRegex;

    /// The pieces `regexes` cut `text` into, as the `Split` (Isolated) sequence does.
    fn split(regexes: &[&str], text: &str) -> Vec<String> {
        let mut pieces = vec![text.to_string()];
        for re in regexes {
            let re = SysRegex::new(re).unwrap();
            let mut next = Vec::new();
            for p in &pieces {
                let mut prev = 0;
                for (s, e) in re.find_iter(p) {
                    if s > prev {
                        next.push(p[prev..s].to_string());
                    }
                    if e > s {
                        next.push(p[s..e].to_string());
                    }
                    prev = e;
                }
                if prev < p.len() {
                    next.push(p[prev..].to_string());
                }
            }
            pieces = next;
        }
        pieces
    }

    #[test]
    fn every_regex_compiles_and_names_are_unique() {
        let mut names = std::collections::HashSet::new();
        for p in PRE_TOKENIZERS {
            assert!(names.insert(p.name), "{} twice", p.name);
            for re in p.kind.regexes {
                SysRegex::new(re).unwrap_or_else(|e| panic!("{} {re}: {e}", p.name));
            }
        }
    }

    #[test]
    fn hand_written_llama_cpp_splitters() {
        // AFMoE / Tiny Aya digits: groups of three from the right, text before a run joined to its
        // first group.
        assert_eq!(
            split(&[AFMOE_DIGITS], "ab1234cd56ef"),
            ["ab1", "234", "cd56", "ef"]
        );
        assert_eq!(split(&[AFMOE_DIGITS], "123456"), ["123", "456"]);
        assert_eq!(split(&[AFMOE_DIGITS], "no digits"), ["no digits"]);
        // SuperBPE: empty matches cut digit runs into threes from the right.
        assert_eq!(
            split(SUPERBPE.regexes, "x1234567 89"),
            ["x", "1", "234", "567", " ", "89"]
        );
        // Kimi-K2: Han apart from other letters, contractions after words.
        assert_eq!(
            split(&[KIMI_K2], "中文English混合 I'M ok"),
            ["中文", "English", "混合", " I'M", " ok"]
        );
        // Tiny Aya runs its case classes collapsed: one piece.
        assert_eq!(split(&[TINY_AYA_REGEX], "HelloWorld"), ["HelloWorld"]);
        assert_eq!(split(&[TEKKEN_REGEX], "HelloWorld"), ["Hello", "World"]);
        // DeepSeek: `\s+$` only at the end of a piece.
        assert_eq!(split(&[r"\s+\z"], "a \nb  "), ["a \nb", "  "]);
    }
}
