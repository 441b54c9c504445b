//! The key/value cache: keys and values of every past position, per layer.

/// Keys and values of every layer, `(len, n_kv_heads * head_dim)` each, row-major.
#[derive(Clone, Debug)]
pub struct KvCache {
    k: Vec<Vec<f32>>,
    v: Vec<Vec<f32>>,
    kv_dim: usize,
    len: usize,
}

impl KvCache {
    pub fn new(n_layers: usize, kv_dim: usize) -> Self {
        KvCache {
            k: vec![Vec::new(); n_layers],
            v: vec![Vec::new(); n_layers],
            kv_dim,
            len: 0,
        }
    }

    /// Positions stored (the same in every layer between forward calls).
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Forgets every position (keeps the allocations).
    pub fn clear(&mut self) {
        self.k
            .iter_mut()
            .chain(self.v.iter_mut())
            .for_each(Vec::clear);
        self.len = 0;
    }

    /// Bytes held by keys and values.
    pub fn n_bytes(&self) -> usize {
        self.k.iter().chain(&self.v).map(|x| x.capacity() * 4).sum()
    }

    /// Appends `(n, kv_dim)` keys and values to `layer`, growing the buffers geometrically but never
    /// past `n_ctx` positions (so the memory a context of `n_ctx` takes is all it ever takes).
    pub(crate) fn append(&mut self, layer: usize, k: &[f32], v: &[f32], n_ctx: usize) {
        let cap = n_ctx * self.kv_dim;
        for (buf, new) in [(&mut self.k[layer], k), (&mut self.v[layer], v)] {
            let want = buf.len() + new.len();
            if want > buf.capacity() {
                let grown = (2 * buf.capacity()).min(cap).max(want);
                buf.reserve_exact(grown - buf.len());
            }
            buf.extend_from_slice(new);
        }
    }

    /// Drops positions `keep..keep + n` and moves the later ones down by `n`, rotating their keys by
    /// `rotate(key_row)` (RoPE by `-n` positions: keys are stored rotated).
    pub(crate) fn discard(&mut self, keep: usize, n: usize, mut rotate: impl FnMut(&mut [f32])) {
        let d = self.kv_dim;
        let (from, to) = ((keep + n).min(self.len), keep.min(self.len));
        for buf in &mut self.k {
            buf.drain(to * d..from * d);
            buf[to * d..].chunks_exact_mut(d).for_each(&mut rotate);
        }
        for buf in &mut self.v {
            buf.drain(to * d..from * d);
        }
        self.len -= from - to;
    }

    /// All keys and values of `layer`, `(positions, kv_dim)`.
    pub(crate) fn layer(&self, layer: usize) -> (&[f32], &[f32]) {
        (&self.k[layer], &self.v[layer])
    }

    /// Marks `n` more positions as stored, once every layer has appended them.
    pub(crate) fn advance(&mut self, n: usize) {
        self.len += n;
        debug_assert!(self.k.iter().all(|k| k.len() == self.len * self.kv_dim));
    }

    /// Drops positions from `len` on (after a failed forward, so the cache stays consistent).
    pub(crate) fn truncate(&mut self, len: usize) {
        let n = len * self.kv_dim;
        self.k
            .iter_mut()
            .chain(self.v.iter_mut())
            .for_each(|x| x.truncate(n));
        self.len = len.min(self.len);
    }

    /// Replaces the contents with `len` positions: `k[l]` and `v[l]` are layer l's `(len, kv_dim)`
    /// keys and values (the caller checked the sizes).
    pub(crate) fn restore(&mut self, len: usize, k: Vec<Vec<f32>>, v: Vec<Vec<f32>>) {
        debug_assert!(k.iter().chain(&v).all(|x| x.len() == len * self.kv_dim));
        debug_assert!(k.len() == self.k.len() && v.len() == self.v.len());
        self.k = k;
        self.v = v;
        self.len = len;
    }
}
