//! Row-major shape arithmetic shared by the factored (Adafactor-style) optimizers.

/// The two largest axes `(second largest, largest)` by a stable argsort of `shape` (ties: lower
/// axis first), as numpy's `argsort` gives them in the references; `None` below rank 2.
pub fn largest_two_axes(shape: &[usize]) -> Option<(usize, usize)> {
    if shape.len() < 2 {
        return None;
    }
    let mut order: Vec<usize> = (0..shape.len()).collect();
    order.sort_by_key(|&i| shape[i]);
    Some((order[order.len() - 2], order[order.len() - 1]))
}

/// Index into the array with `axis` removed, from a flat index `i` into the full array.
#[inline]
pub fn drop_axis(i: usize, shape: &[usize], axis: usize) -> usize {
    let inner: usize = shape[axis + 1..].iter().product();
    (i / (inner * shape[axis])) * inner + i % inner
}

/// `shape` without `axis`.
pub fn without(shape: &[usize], axis: usize) -> Vec<usize> {
    shape.iter().enumerate().filter(|&(k, _)| k != axis).map(|(_, &d)| d).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn axes_and_indices() {
        assert_eq!(largest_two_axes(&[128, 136]), Some((0, 1)));
        assert_eq!(largest_two_axes(&[200, 200]), Some((0, 1)));
        assert_eq!(largest_two_axes(&[4, 1]), Some((1, 0)));
        assert_eq!(largest_two_axes(&[3, 3, 2, 4]), Some((1, 3)));
        assert_eq!(largest_two_axes(&[7]), None);
        // shape [2, 3, 4], element (1, 2, 3) = flat 23.
        assert_eq!(drop_axis(23, &[2, 3, 4], 0), 2 * 4 + 3);
        assert_eq!(drop_axis(23, &[2, 3, 4], 1), 4 + 3);
        assert_eq!(drop_axis(23, &[2, 3, 4], 2), 3 + 2);
        assert_eq!(without(&[2, 3, 4], 1), vec![2, 4]);
    }
}
