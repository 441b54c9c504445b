//! A session's context saved as bytes and loaded back: an app keeps a conversation across restarts,
//! or forks one, without evaluating it again. Loading is bit-exact: the session continues as the one
//! that saved it would.
//!
//! Layout (little-endian):
//!
//! ```text
//! "CSMS" u32 version
//! u64 n_layers, kv_dim, vocab_size, max_positions, n_experts, top_k   the model's shape (must match)
//! u64 n_eval                                                          evaluated positions
//! u32 has_pending, u32 pending                                        a sampled, unevaluated token
//! u32 has_logits, then vocab_size f32                                 the last position's logits
//! per layer: n_eval * kv_dim f32 keys, then as many values
//! per position, per layer: u8 count, count u32 experts                what routing chose
//! ```
//!
//! Anything else (a different model, a truncated or altered buffer) is refused with an error that
//! says what, and the session is left as it was.

use crate::{Error, Result, Session};

const MAGIC: &[u8; 4] = b"CSMS";
const VERSION: u32 = 1;

struct Writer(Vec<u8>);

impl Writer {
    fn u8(&mut self, v: u8) {
        self.0.push(v);
    }
    fn u32(&mut self, v: u32) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn u64(&mut self, v: u64) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn f32s(&mut self, v: &[f32]) {
        self.0.reserve(v.len() * 4);
        for x in v {
            self.0.extend_from_slice(&x.to_le_bytes());
        }
    }
}

struct Reader<'a> {
    b: &'a [u8],
    at: usize,
}

fn bad(msg: impl std::fmt::Display) -> Error {
    Error::InvalidArgument(format!("session state: {msg}"))
}

impl Reader<'_> {
    fn take(&mut self, n: usize, what: &str) -> Result<&[u8]> {
        let end = self.at.checked_add(n).filter(|&e| e <= self.b.len());
        let Some(end) = end else {
            return Err(bad(format!(
                "truncated: {what} needs {n} bytes at offset {}, {} left",
                self.at,
                self.b.len() - self.at
            )));
        };
        let s = &self.b[self.at..end];
        self.at = end;
        Ok(s)
    }
    fn u8(&mut self, what: &str) -> Result<u8> {
        Ok(self.take(1, what)?[0])
    }
    fn u32(&mut self, what: &str) -> Result<u32> {
        let b = self.take(4, what)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn u64(&mut self, what: &str) -> Result<u64> {
        let mut a = [0u8; 8];
        a.copy_from_slice(self.take(8, what)?);
        Ok(u64::from_le_bytes(a))
    }
    fn f32s(&mut self, n: usize, what: &str) -> Result<Vec<f32>> {
        let bytes = n
            .checked_mul(4)
            .ok_or_else(|| bad(format!("{what}: {n} values overflow")))?;
        Ok(self
            .take(bytes, what)?
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect())
    }
}

impl Session {
    /// The model's shape as the state records it.
    fn shape(&self) -> [(&'static str, u64); 6] {
        let c = &self.model().config;
        let (ne, k) = c.moe.as_ref().map_or((0, 0), |m| (m.n_experts, m.top_k));
        [
            ("n_layers", c.n_layers as u64),
            ("kv_dim", self.model().kv_dim() as u64),
            ("vocab_size", c.vocab_size as u64),
            ("max_positions", c.max_position_embeddings as u64),
            ("n_experts", ne as u64),
            ("top_k", k as u64),
        ]
    }

    /// The context as bytes: evaluated positions (keys, values, routing), the pending sampled token
    /// and the last logits. Statistics and settings (routing source, predictor) are not part of it.
    pub fn save_state(&self) -> Vec<u8> {
        let c = &self.model().config;
        let n = self.st.kv.len();
        let mut w = Writer(Vec::new());
        w.0.extend_from_slice(MAGIC);
        w.u32(VERSION);
        for (_, v) in self.shape() {
            w.u64(v);
        }
        w.u64(n as u64);
        w.u32(u32::from(self.pending.is_some()));
        w.u32(self.pending.unwrap_or(0));
        match self.logits() {
            Some(l) => {
                w.u32(1);
                w.f32s(l);
            }
            None => w.u32(0),
        }
        for l in 0..c.n_layers {
            let (k, v) = self.st.kv.layer(l);
            w.f32s(k);
            w.f32s(v);
        }
        for pos in 0..n {
            for l in 0..c.n_layers {
                let es = self
                    .st
                    .routing
                    .chosen(pos + self.st.discarded, l)
                    .unwrap_or(&[]);
                w.u8(es.len() as u8);
                es.iter().for_each(|&e| w.u32(e));
            }
        }
        w.0
    }

    /// The length of [`save_state`](Self::save_state)'s bytes, without making them.
    pub fn state_len(&self) -> usize {
        let c = &self.model().config;
        let n = self.st.kv.len();
        let logits = self.logits().map_or(0, <[f32]>::len);
        let routing: usize = (0..n)
            .flat_map(|pos| (0..c.n_layers).map(move |l| (pos, l)))
            .map(|(pos, l)| {
                let es = self.st.routing.chosen(pos + self.st.discarded, l);
                1 + 4 * es.map_or(0, <[u32]>::len)
            })
            .sum();
        4 + 4
            + 6 * 8
            + 8
            + 4
            + 4
            + 4
            + 4 * logits
            + c.n_layers * 2 * 4 * n * self.model().kv_dim()
            + routing
    }

    /// Replaces the context with one [`save_state`](Self::save_state) wrote, from a session of a
    /// model of the same shape; the statistics start afresh. On error the session is unchanged.
    pub fn load_state(&mut self, bytes: &[u8]) -> Result<()> {
        let mut r = Reader { b: bytes, at: 0 };
        if r.take(4, "magic")? != MAGIC {
            return Err(bad("not a cosmoe session state (no CSMS magic)"));
        }
        let version = r.u32("version")?;
        if version != VERSION {
            return Err(bad(format!(
                "version {version}; this cosmoe reads {VERSION}"
            )));
        }
        for (name, want) in self.shape() {
            let got = r.u64(name)?;
            if got != want {
                return Err(bad(format!(
                    "saved from a model with {name} {got}, this one has {want}"
                )));
            }
        }
        let model = self.model().clone();
        let c = &model.config;
        let (vocab, n_layers, kv_dim) = (c.vocab_size, c.n_layers, model.kv_dim());
        let (n_experts, top_k) = c.moe.as_ref().map_or((0, 0), |m| (m.n_experts, m.top_k));
        let n = r.u64("n_eval")?;
        let max = self.n_ctx() as u64;
        let has_pending = r.u32("has_pending")?;
        let pending = r.u32("pending")?;
        if n > max || n + u64::from(has_pending != 0) > max {
            return Err(bad(format!(
                "{n} positions do not fit the context of {max}"
            )));
        }
        let n = n as usize;
        let pending = match has_pending {
            0 => None,
            1 if (pending as usize) < vocab => Some(pending),
            1 => {
                return Err(bad(format!(
                    "pending token {pending} is outside the vocabulary"
                )))
            }
            x => return Err(bad(format!("has_pending is {x}, not 0 or 1"))),
        };
        let logits = match r.u32("has_logits")? {
            0 => None,
            1 => Some(r.f32s(vocab, "logits")?),
            x => return Err(bad(format!("has_logits is {x}, not 0 or 1"))),
        };
        if logits.is_none() && (n > 0 || pending.is_some()) {
            return Err(bad("positions without the logits of the last one"));
        }
        let (mut ks, mut vs) = (Vec::with_capacity(n_layers), Vec::with_capacity(n_layers));
        for l in 0..n_layers {
            ks.push(r.f32s(n * kv_dim, &format!("layer {l} keys"))?);
            vs.push(r.f32s(n * kv_dim, &format!("layer {l} values"))?);
        }
        let mut routing = vec![vec![Vec::new(); n_layers]; n];
        for (pos, layers) in routing.iter_mut().enumerate() {
            for (l, es) in layers.iter_mut().enumerate() {
                let count = r.u8("routing")? as usize;
                let sparse = c.moe.is_some() && c.is_sparse_layer(l);
                if count != 0 && (!sparse || count != top_k) {
                    return Err(bad(format!(
                        "position {pos} layer {l}: {count} experts (the layer routes to {})",
                        if sparse { top_k } else { 0 }
                    )));
                }
                for _ in 0..count {
                    let e = r.u32("routing")?;
                    if e as usize >= n_experts {
                        return Err(bad(format!(
                            "position {pos} layer {l}: expert {e} of {n_experts}"
                        )));
                    }
                    es.push(e);
                }
            }
        }
        if r.at != bytes.len() {
            return Err(bad(format!(
                "{} bytes after the end of the state",
                bytes.len() - r.at
            )));
        }

        // Everything checked: replace the context.
        self.reset();
        self.st.kv.restore(n, ks, vs);
        for (pos, layers) in routing.iter().enumerate() {
            for (l, es) in layers.iter().enumerate() {
                self.st.routing.record(pos, l, n_layers, es);
            }
        }
        self.pending = pending;
        if let Some(l) = logits {
            self.st.scratch.logits = l;
            self.has_logits = true;
        }
        Ok(())
    }
}
