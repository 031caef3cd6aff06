//! Data parallelism without a pool: a slice mapped in contiguous chunks, one scoped thread
//! per core, results in the slice's order. For CPU work of a few milliseconds and more
//! (parsing manifests, planning applications); small inputs stay on the calling thread.

/// `items.iter().map(f)`, on up to `threads` threads (at least one item per thread).
pub fn map<T: Sync, R: Send>(items: &[T], threads: usize, f: impl Fn(&T) -> R + Sync) -> Vec<R> {
    map_at(items, threads, Priority::Normal, f)
}

/// How the threads of [`map_at`] compete for the cores.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Priority {
    Normal,
    /// Below the rest of the process (nice 10, on Linux): work whose result is needed later
    /// yields the cores to what is waited on now (answers to decode), and still has every
    /// idle core.
    Background,
}

/// As [`map`], the threads it starts running at `priority` (the calling thread, which maps
/// alone when there is one thread, keeps its own).
pub fn map_at<T: Sync, R: Send>(
    items: &[T],
    threads: usize,
    priority: Priority,
    f: impl Fn(&T) -> R + Sync,
) -> Vec<R> {
    let threads = threads.min(items.len()).max(1);
    if threads == 1 {
        return items.iter().map(f).collect();
    }
    let chunk = items.len().div_ceil(threads);
    let f = &f;
    std::thread::scope(|scope| {
        let handles: Vec<_> = items
            .chunks(chunk)
            .map(|part| {
                scope.spawn(move || {
                    if priority == Priority::Background {
                        lower_this_thread();
                    }
                    part.iter().map(f).collect::<Vec<R>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
            .collect()
    })
}

/// Lowers the calling thread's priority (on Linux the nice value belongs to the thread); a
/// no-op elsewhere, and where it is refused.
fn lower_this_thread() {
    #[cfg(target_os = "linux")]
    // SAFETY: setpriority takes plain integers; `who` 0 is the calling thread.
    unsafe {
        let tid = libc::gettid();
        let now = libc::getpriority(libc::PRIO_PROCESS, tid as libc::id_t);
        libc::setpriority(libc::PRIO_PROCESS, tid as libc::id_t, (now + 10).min(19));
    }
}

/// The number of cores.
pub fn cores() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}

#[cfg(test)]
mod tests {
    #[test]
    fn results_keep_the_order_of_the_items_whatever_the_threads() {
        let items: Vec<u32> = (0..1001).collect();
        for threads in [1, 2, 3, 8, 2000] {
            let out = super::map(&items, threads, |x| x * 2);
            assert_eq!(
                out,
                items.iter().map(|x| x * 2).collect::<Vec<_>>(),
                "{threads}"
            );
        }
        assert!(super::map(&[] as &[u32], 4, |x| *x).is_empty());
    }
}
