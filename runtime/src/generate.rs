//! Generation settings and results ([`crate::Session::generate`]), and streaming of decoded text.

use cosmoe_loader::tokenizer::Tokenizer;

use crate::sampler::SamplerConfig;

#[derive(Clone, Debug)]
pub struct GenerateConfig {
    pub max_new_tokens: usize,
    /// Stop after a token listed as `eos_token_id` in config.json.
    pub stop_at_eos: bool,
    /// When the context is full: `None` stops, `Some(keep)` shifts it
    /// ([`crate::Session::shift_context`]) and goes on.
    pub context_shift: Option<usize>,
    pub sampler: SamplerConfig,
}

/// Why a generation stopped.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum StopReason {
    /// It sampled an end-of-sequence token.
    Eos,
    /// It generated the tokens asked for.
    #[default]
    MaxTokens,
    /// The token callback asked it to stop.
    Callback,
    /// The next token would not fit the model's context.
    ContextFull,
}

/// What one generation produced.
#[derive(Clone, Debug, Default)]
pub struct Generation {
    pub tokens: Vec<u32>,
    pub stop: StopReason,
}

impl Generation {
    /// Stopped because the model's context was full.
    pub fn hit_context_limit(&self) -> bool {
        self.stop == StopReason::ContextFull
    }
}

/// Streams decoded text: gives what each token adds to the text, holding back an incomplete UTF-8
/// sequence until the token that completes it (or the last token), so the pieces join to the
/// decoded text of all the tokens.
pub struct TextStream<'t> {
    tok: &'t Tokenizer,
    ids: Vec<u32>,
    printed: usize,
}

impl<'t> TextStream<'t> {
    pub fn new(tok: &'t Tokenizer) -> Self {
        TextStream {
            tok,
            ids: Vec::new(),
            printed: 0,
        }
    }

    /// The text `id` adds (empty while a character is incomplete, unless `last`: then everything
    /// not given yet, an incomplete character as U+FFFD).
    pub fn push(&mut self, id: u32, last: bool) -> String {
        self.ids.push(id);
        self.take(last)
    }

    /// What is held back when the tokens end before `push` was told the last one (an incomplete
    /// character as U+FFFD).
    pub fn finish(&mut self) -> String {
        self.take(true)
    }

    /// The decoded text not given yet; while a character is incomplete nothing, unless `all`.
    fn take(&mut self, all: bool) -> String {
        let Ok(text) = self.tok.decode(&self.ids, true) else {
            return String::new();
        };
        if (text.ends_with('\u{FFFD}') && !all)
            || text.len() <= self.printed
            || !text.is_char_boundary(self.printed)
        {
            return String::new();
        }
        let new = text[self.printed..].to_owned();
        self.printed = text.len();
        new
    }
}

/// Ends streamed text at the first of several stop strings: gives the text up to it, holding back a
/// tail that could be the start of one until the next piece tells.
pub struct StopStrings {
    stops: Vec<String>,
    held: String,
    found: Option<usize>,
}

impl StopStrings {
    /// Stop strings must not be empty (an empty one would stop before any text).
    pub fn new(stops: Vec<String>) -> crate::Result<Self> {
        if stops.iter().any(String::is_empty) {
            return Err(crate::Error::InvalidArgument(
                "a stop string is empty".into(),
            ));
        }
        Ok(StopStrings {
            stops,
            held: String::new(),
            found: None,
        })
    }

    /// The text `piece` lets out: everything before a stop string once one appears (then nothing
    /// more), else all but a tail that may begin one.
    pub fn push(&mut self, piece: &str) -> String {
        if self.found.is_some() {
            return String::new();
        }
        self.held.push_str(piece);
        let first = (self.stops.iter().enumerate())
            .filter_map(|(i, s)| self.held.find(s.as_str()).map(|at| (at, i)))
            .min();
        if let Some((at, i)) = first {
            self.found = Some(i);
            let out = self.held[..at].to_owned();
            self.held.clear();
            return out;
        }
        let keep = (self.stops.iter())
            .map(|s| partial_suffix(&self.held, s))
            .max()
            .unwrap_or(0);
        let out: String = self.held.drain(..self.held.len() - keep).collect();
        out
    }

    /// What is held back, once the text ends without a stop string.
    pub fn finish(&mut self) -> String {
        std::mem::take(&mut self.held)
    }

    /// The stop string that ended the text, if one did.
    pub fn found(&self) -> Option<&str> {
        self.found.map(|i| self.stops[i].as_str())
    }
}

/// The length of the longest tail of `text` that begins `stop` without being all of it.
fn partial_suffix(text: &str, stop: &str) -> usize {
    (1..stop.len().min(text.len() + 1))
        .rev()
        .find(|&k| {
            text.is_char_boundary(text.len() - k) && stop.starts_with(&text[text.len() - k..])
        })
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(stops: &[&str], pieces: &[&str]) -> (String, Option<String>) {
        let mut s = StopStrings::new(stops.iter().map(|s| s.to_string()).collect()).unwrap();
        let mut out: String = pieces.iter().map(|p| s.push(p)).collect();
        if s.found().is_none() {
            out += &s.finish();
        }
        (out, s.found().map(str::to_owned))
    }

    #[test]
    fn stop_strings_cut_the_text_across_pieces() {
        assert_eq!(
            run(&["END"], &["ab", "cE", "N", "Dxy"]),
            ("abc".into(), Some("END".into()))
        );
        // A false start is let out once it cannot be a stop string.
        assert_eq!(
            run(&["END"], &["aE", "N", "x", "END"]),
            ("aENx".into(), Some("END".into()))
        );
        // Without a stop string everything comes out, the held tail at the end.
        assert_eq!(run(&["END"], &["a", "EN"]), ("aEN".into(), None));
        // The earliest of several wins; multi-byte characters are never split.
        assert_eq!(
            run(&["zz", "é!"], &["aé", "!zz"]),
            ("a".into(), Some("é!".into()))
        );
        assert_eq!(run(&["éé"], &["aé", "b"]), ("aéb".into(), None));
        assert!(StopStrings::new(vec![String::new()]).is_err());
    }

    #[test]
    fn partial_suffixes() {
        assert_eq!(partial_suffix("abcE", "END"), 1);
        assert_eq!(partial_suffix("abEN", "END"), 2);
        assert_eq!(partial_suffix("END", "END"), 0);
        assert_eq!(partial_suffix("", "END"), 0);
        assert_eq!(partial_suffix("xé", "é!"), 2);
    }
}
