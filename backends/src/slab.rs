//! Operation slots, shared by every backend: one slot per operation in flight, reused through
//! a free list. A slot is named outside the backend (io_uring `user_data`, timer and child
//! keys) by a key with the slot index in its low 32 bits and the slot's generation in its high
//! 32 bits. No bit is shared between the two fields (nor with a tag: shims that need to tell
//! keys apart keep their own tables), so every generation up to `u32::MAX`, and across its
//! wrap, names exactly one operation, and a late event of a freed slot never reaches the op
//! that reused it.

use std::ops::{Index, IndexMut};

pub(crate) struct Slab<T> {
    entries: Vec<Entry<T>>,
    free: Vec<u32>,
    first_generation: u32,
}

struct Entry<T> {
    generation: u32,
    val: T,
}

impl<T> Slab<T> {
    /// An empty slab with room for `n` slots before it grows (address space only until the
    /// slots are used: see [`crate::Options::expected_fds`]). `first_generation` is 0 except
    /// in tests of the wrap (`Options::first_generation`).
    pub(crate) fn with_room(first_generation: u32, n: usize) -> Self {
        Slab {
            entries: Vec::with_capacity(n),
            free: Vec::with_capacity(n),
            first_generation,
        }
    }

    /// Store `val` in a free slot (bumping its generation) or a new one; returns its index.
    pub(crate) fn alloc(&mut self, val: T) -> u32 {
        match self.free.pop() {
            Some(i) => {
                let e = &mut self.entries[i as usize];
                e.generation = e.generation.wrapping_add(1);
                e.val = val;
                i
            }
            None => {
                self.entries.push(Entry {
                    generation: self.first_generation,
                    val,
                });
                (self.entries.len() - 1) as u32
            }
        }
    }

    /// Put slot `idx` back on the free list (the caller has taken what it owned out).
    pub(crate) fn release(&mut self, idx: u32) {
        self.free.push(idx);
    }

    pub(crate) fn key(&self, idx: u32) -> u64 {
        (u64::from(self.entries[idx as usize].generation) << 32) | u64::from(idx)
    }

    /// The slot `key` names, if that slot still has the key's generation (it may be free:
    /// callers check its state).
    pub(crate) fn find(&self, key: u64) -> Option<u32> {
        let idx = key as u32;
        let e = self.entries.get(idx as usize)?;
        (u64::from(e.generation) == key >> 32).then_some(idx)
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = (u32, &T)> {
        self.entries
            .iter()
            .enumerate()
            .map(|(i, e)| (i as u32, &e.val))
    }
}

impl<T> Index<u32> for Slab<T> {
    type Output = T;
    fn index(&self, idx: u32) -> &T {
        &self.entries[idx as usize].val
    }
}

impl<T> IndexMut<u32> for Slab<T> {
    fn index_mut(&mut self, idx: u32) -> &mut T {
        &mut self.entries[idx as usize].val
    }
}

#[cfg(test)]
mod tests {
    use super::Slab;

    #[test]
    fn keys_at_the_largest_generation_and_across_the_wrap() {
        let mut s = Slab::with_room(u32::MAX, 0);
        let a = s.alloc('a');
        let ka = s.key(a);
        assert_eq!(ka >> 32, u64::from(u32::MAX));
        assert_eq!(s.find(ka), Some(a));
        s.release(a);
        let b = s.alloc('b');
        assert_eq!(a, b);
        let kb = s.key(b);
        assert_eq!(kb >> 32, 0, "the generation wraps to 0");
        assert_eq!(s.find(ka), None, "a stale key never names the new op");
        assert_eq!(s.find(kb), Some(b));
        assert_eq!(s.find(u64::MAX), None);
    }
}
