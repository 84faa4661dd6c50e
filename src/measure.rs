//! How the library's in-process benchmarks measure (the `--ignored` tests `scripts/bench` runs
//! in a release build): the calling thread's CPU time, and its allocations, counted by the test
//! binary's allocator. Test-only; it holds no test of its own.

/// Counts the allocations of the thread that asks; every other test of the library runs on it
/// too, at the cost of a thread-local increment.
struct CountingAllocator;

thread_local! {
    static ALLOCATIONS: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

// SAFETY: every call is handed to the system allocator unchanged; the count is a side effect.
unsafe impl std::alloc::GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: std::alloc::Layout) -> *mut u8 {
        let _ = ALLOCATIONS.try_with(|count| count.set(count.get() + 1));
        // SAFETY: the caller's layout, as the system allocator requires.
        unsafe { std::alloc::System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: std::alloc::Layout) {
        // SAFETY: `ptr` came from `alloc` above with this layout.
        unsafe { std::alloc::System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static COUNTING: CountingAllocator = CountingAllocator;

/// CPU time of this thread, in nanoseconds.
fn thread_cpu_ns() -> u64 {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes into the timespec it is given, which lives on this stack.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut now) };
    now.tv_sec as u64 * 1_000_000_000 + now.tv_nsec as u64
}

/// The lowest CPU time of `runs` calls of `read` and the allocations of one.
pub(crate) fn measure(runs: usize, mut read: impl FnMut() -> usize) -> (u64, u64, usize) {
    let mut best = u64::MAX;
    let mut allocations = 0;
    let mut items = 0;
    for _ in 0..runs {
        let before = ALLOCATIONS.with(std::cell::Cell::get);
        let started = thread_cpu_ns();
        items = std::hint::black_box(read());
        best = best.min(thread_cpu_ns() - started);
        allocations = ALLOCATIONS.with(std::cell::Cell::get) - before;
    }
    (best, allocations, items)
}
