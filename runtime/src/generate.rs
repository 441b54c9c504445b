//! Generation settings and results ([`crate::Session::generate`]), and streaming of decoded text.

use cosmoe_loader::tokenizer::Tokenizer;

use crate::sampler::SamplerConfig;

#[derive(Clone, Debug)]
pub struct GenerateConfig {
    pub max_new_tokens: usize,
    /// Stop after a token listed as `eos_token_id` in config.json.
    pub stop_at_eos: bool,
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
        let Ok(text) = self.tok.decode(&self.ids, true) else {
            return String::new();
        };
        if (text.ends_with('\u{FFFD}') && !last)
            || text.len() < self.printed
            || !text.is_char_boundary(self.printed)
        {
            return String::new();
        }
        let new = text[self.printed..].to_owned();
        self.printed = text.len();
        new
    }

    /// What is held back when the tokens end before `push` was told the last one (an incomplete
    /// character as U+FFFD).
    pub fn finish(&mut self) -> String {
        let Ok(text) = self.tok.decode(&self.ids, true) else {
            return String::new();
        };
        if text.len() <= self.printed || !text.is_char_boundary(self.printed) {
            return String::new();
        }
        let new = text[self.printed..].to_owned();
        self.printed = text.len();
        new
    }
}
