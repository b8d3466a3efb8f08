//! Columns the parser fills in place, from two threads (see `split`).
//!
//! A column is allocated at the count the snapshot's header declares, zeroed by the allocator:
//! large zeroed allocations are fresh pages from the OS, brought in on their first write. So the
//! memory is faulted in by the writes of both parser threads, not by a `resize` on the calling
//! thread before each block (which zeroed and faulted every page on one core: a quarter of the
//! parse of a 1 GB snapshot). A snapshot with more records than declared still works: the column
//! grows past the declared count the ordinary way.

/// A growable column whose memory is set aside (and zeroed lazily) up front.
pub struct Column<T> {
    data: Vec<T>,
    len: usize,
}

impl<T: Copy + Default> Column<T> {
    /// A column expecting `n` rows (the allocator zeroes the memory; no row is written yet).
    pub fn with_expected(n: usize) -> Self {
        Column { data: vec![T::default(); n], len: 0 }
    }

    /// Number of rows written.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Appends one row.
    #[inline]
    pub fn push(&mut self, v: T) {
        match self.data.get_mut(self.len) {
            Some(slot) => *slot = v,
            None => self.data.push(v),
        }
        self.len += 1;
    }

    /// Appends `n` rows (default values) and returns them, to be written in place.
    pub fn grow(&mut self, n: usize) -> &mut [T] {
        let end = self.len + n;
        if self.data.len() < end {
            self.data.resize(end, T::default());
        }
        let rows = &mut self.data[self.len..end];
        self.len = end;
        rows
    }

    /// Appends `counts.iter().sum()` rows and returns them split into consecutive windows of
    /// `counts` rows, to be written in place (see [`windows`]).
    pub fn grow_windows(&mut self, counts: &[usize]) -> Vec<&mut [T]> {
        windows(self.grow(counts.iter().sum()), counts)
    }

    /// The rows written.
    pub fn into_vec(mut self) -> Vec<T> {
        self.data.truncate(self.len);
        self.data
    }
}

/// Splits `rows` into consecutive windows of `counts` rows (fewer when `rows` is shorter).
pub fn windows<'a, T>(mut rows: &'a mut [T], counts: &[usize]) -> Vec<&'a mut [T]> {
    counts
        .iter()
        .map(|&n| {
            let n = n.min(rows.len());
            let (mine, later) = std::mem::take(&mut rows).split_at_mut(n);
            rows = later;
            mine
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_come_out_as_written_past_the_expected_count_too() {
        for expected in [0, 3, 100] {
            let mut c: Column<u32> = Column::with_expected(expected);
            c.push(1);
            let rows = c.grow(5);
            for (w, v) in windows(rows, &[2, 3]).into_iter().zip([10, 20]) {
                for (i, r) in w.iter_mut().enumerate() {
                    *r = v + i as u32;
                }
            }
            c.push(2);
            assert_eq!(c.len(), 7);
            assert_eq!(c.into_vec(), vec![1, 10, 11, 20, 21, 22, 2], "expected {expected}");
        }
        assert_eq!(windows(&mut [0u8; 3][..], &[2, 2]).iter().map(|w| w.len()).collect::<Vec<_>>(), vec![2, 1]);
    }
}
