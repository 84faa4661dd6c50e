//! Giving the system back the memory that full refreshes free, once in a while. Only the
//! allocator's counters are read; what a refresh allocates is the loop's.

use std::time::{Duration, Instant};

/// How often at most the heap is trimmed after a full refresh (see [`release_freed_memory`]).
const TRIM_AT_MOST_EVERY: Duration = Duration::from_secs(30);

/// Gives the system back the pages full refreshes freed, when there are many, at most every
/// [`TRIM_AT_MOST_EVERY`]. A refresh's reads and the previous body leave free chunks spread
/// through the heap, which glibc keeps resident: 39 MiB at 100,000 symbols, 3 MiB at 10,000. The
/// next refresh faults the pages it needs back in, so trimming after every refresh cost 15% of
/// one at 100,000, and at 1,000 (1 MiB free) a fifth; once in a while is enough to bring the
/// resident set back down after the symbols shrink.
pub(super) fn release_freed_memory(trimmed_at: &mut Option<Instant>) {
    if trimmed_at.is_some_and(|at| at.elapsed() < TRIM_AT_MOST_EVERY) {
        return;
    }
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallinfo2 only reads the allocator's counters and malloc_trim only returns free
    // memory to the system; both are thread-safe.
    unsafe {
        const WORTH_TRIMMING: usize = 2 << 20;
        if libc::mallinfo2().fordblks > WORTH_TRIMMING {
            libc::malloc_trim(0);
            *trimmed_at = Some(Instant::now());
        }
    }
}

#[cfg(all(test, target_os = "linux", target_env = "gnu"))]
mod tests {
    use super::*;

    /// Frees `kib` KiB in 1 KiB chunks that stay in the heap: every other chunk is kept, so
    /// that the free ones cannot join the top of the heap, which glibc would give back by itself.
    fn leave_free_chunks(kib: usize) -> Vec<Vec<u8>> {
        let chunks: Vec<Vec<u8>> = (0..2 * kib).map(|_| vec![1; 1024]).collect();
        chunks.into_iter().skip(1).step_by(2).collect()
    }

    #[test]
    fn much_freed_memory_is_given_back_then_not_again_within_the_period() {
        let _kept = leave_free_chunks(8 * 1024);
        let mut trimmed_at = None;
        release_freed_memory(&mut trimmed_at);
        let first = trimmed_at.expect("8 MiB free is worth trimming");

        let _kept_too = leave_free_chunks(8 * 1024);
        release_freed_memory(&mut trimmed_at);
        assert_eq!(trimmed_at, Some(first), "trimmed again within the period");

        let long_ago = Instant::now().checked_sub(TRIM_AT_MOST_EVERY);
        let mut trimmed_at = long_ago;
        release_freed_memory(&mut trimmed_at);
        assert!(
            trimmed_at > long_ago,
            "not trimmed once the period was over"
        );
    }
}
