//! The llama.cpp pre-tokenizer name (`tokenizer.ggml.pre`) for a byte-level
//! BPE tokenizer.json. llama.cpp's converter recognises the pre-tokenizer by
//! hashing the token ids of a probe text, which needs the tokenizer itself;
//! here it is recognised from the `pre_tokenizer` structure instead: the
//! splits it applies before the byte-level mapping, as tokenizer.json writes
//! them, must equal the splits of one of llama.cpp's pre-tokenizers
//! (src/llama-vocab.cpp, `llm_tokenizer_bpe`), and the BPE model's
//! `ignore_merges` must equal that pre-tokenizer's.

use serde_json::Value;

/// The regex `ByteLevel(use_regex=true)` splits with (tokenizers' GPT-2
/// pattern); llama.cpp implements it as its `gpt-2` pre-tokenizer.
pub(super) const GPT2: &str =
    r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+";

pub(super) const LLAMA3: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
pub(super) const QWEN2: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
const QWEN35: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?[\p{L}\p{M}]+|\p{N}| ?[^\s\p{L}\p{M}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
pub(super) const GPT4O: &str = r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+";
pub(super) const TEKKEN: &str = r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+";
const SEED_CODER: &str = "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1}| ?[^\\s\\p{L}\\p{N}\r\n]+|\\s*[\r\n]+|\\s+(?!\\S)|\\s+";
const BAILINGMOE: &str = r"'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]++[\r\n]*|\s*[\r\n]|\s+(?!\S)|\s+";
const MINICPM5: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}+| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
const DEEPSEEK_V3_PUNCT: &str = "[!\"#$%&'()*+,\\-./:;<=>?@\\[\\\\\\]^_`{|}~][A-Za-z]+|[^\r\n\\p{L}\\p{P}\\p{S}]?[\\p{L}\\p{M}]+| ?[\\p{P}\\p{S}]+[\r\n]*|\\s*[\r\n]+|\\s+(?!\\S)|\\s+";
const CJK_KANA: &str = "[一-龥぀-ゟ゠-ヿ]+";
const DEEPSEEK_CJK: &str = "[一-龥ࠀ-一가-퟿]+";

/// (name, splits as tokenizer.json writes them, `ignore_merges`), first match
/// wins. Several llama.cpp names share splits and flags; the first is the
/// one its converter writes for the best-known model.
const KNOWN: &[(&str, &[&str], bool)] = &[
    ("gpt-2", &[GPT2], false),
    ("llama-bpe", &[LLAMA3], true),
    ("smaug-bpe", &[LLAMA3], false),
    ("qwen2", &[QWEN2], false),
    ("qwen35", &[QWEN35], false),
    ("gpt-4o", &[GPT4O], false),
    ("tekken", &[TEKKEN], true),
    ("seed-coder", &[SEED_CODER], false),
    ("bailingmoe", &[BAILINGMOE], false),
    ("minicpm5", &[r"\p{N}{1,3}", MINICPM5], true),
    ("starcoder", &[r"\p{N}", GPT2], false),
    (
        "deepseek-v3",
        &[r"\p{N}{1,3}", CJK_KANA, DEEPSEEK_V3_PUNCT],
        false,
    ),
    (
        "deepseek-coder",
        &["[\r\n]", r"\s?\p{L}+", r"\s?\p{P}+", DEEPSEEK_CJK, r"\p{N}"],
        false,
    ),
];

/// What the pre-tokenizer was recognised as.
#[derive(Debug, PartialEq)]
pub enum Recognised {
    Name(&'static str),
    /// Its splits are llama.cpp's `name`, but `ignore_merges` differs: rare
    /// words may be split differently.
    MergesDiffer(&'static str),
    Unknown,
}

/// The pre-tokenizer of a byte-level BPE `tokenizer.json`.
pub fn recognise(tokenizer: &Value) -> Recognised {
    let ignore_merges = tokenizer
        .get("model")
        .and_then(|m| m.get("ignore_merges"))
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let Some(splits) = tokenizer.get("pre_tokenizer").and_then(splits) else {
        return Recognised::Unknown;
    };
    let same = |known: &[&str]| {
        known.len() == splits.len() && known.iter().zip(&splits).all(|(a, b)| a == b)
    };
    if let Some((name, _, _)) = KNOWN
        .iter()
        .find(|(_, known, im)| *im == ignore_merges && same(known))
    {
        return Recognised::Name(name);
    }
    match KNOWN.iter().find(|(_, known, _)| same(known)) {
        Some((name, _, _)) => Recognised::MergesDiffer(name),
        None => Recognised::Unknown,
    }
}

/// The regexes a pre-tokenizer splits with, in order, when it is a sequence
/// of isolating splits ending in the byte-level mapping; None otherwise.
fn splits(pre: &Value) -> Option<Vec<String>> {
    let parts: Vec<&Value> = match pre.get("type")?.as_str()? {
        "Sequence" => pre.get("pretokenizers")?.as_array()?.iter().collect(),
        _ => vec![pre],
    };
    let (last, rest) = parts.split_last()?;
    let mut out = Vec::with_capacity(parts.len());
    for part in rest {
        out.push(split_regex(part)?);
    }
    if last.get("type")?.as_str()? != "ByteLevel"
        || last.get("add_prefix_space").and_then(Value::as_bool) == Some(true)
    {
        return None;
    }
    // tokenizers' default for `use_regex` is true.
    if last.get("use_regex").and_then(Value::as_bool) != Some(false) {
        out.push(GPT2.to_string());
    }
    Some(out)
}

fn split_regex(part: &Value) -> Option<String> {
    match part.get("type")?.as_str()? {
        "Split" => {
            let isolated = part.get("behavior")?.as_str()? == "Isolated";
            let inverted = part.get("invert").and_then(Value::as_bool) == Some(true);
            if !isolated || inverted {
                return None;
            }
            part.get("pattern")?
                .get("Regex")?
                .as_str()
                .map(str::to_string)
        }
        "Digits" => Some(
            if part.get("individual_digits").and_then(Value::as_bool) == Some(true) {
                r"\p{N}"
            } else {
                r"\p{N}+"
            }
            .to_string(),
        ),
        _ => None,
    }
}
