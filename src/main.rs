//! The `segmentctl` binary: everything is wired in `cli`.

// mimalloc, told to collect after each reconcile, gives a round's memory back to the system:
// with glibc's allocator the controller stayed near the peak of its largest round
// (benches/daemon.rs measures it).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// `mi_option_purge_delay` in mimalloc v2's `mi_option_e` (15, after
/// `mi_option_eager_commit_delay`); the Rust bindings do not export it.
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// Called by the controller after each round.
fn collect() {
    // From the first round on, give freed pages back at once rather than after a delay:
    // the controller is idle between rounds, and mimalloc purges lazily only while it
    // allocates. Not set for one-shot commands: `estimate` would refault (and zero) its
    // freed pages over and over.
    // SAFETY: setting an option has no preconditions; mi_collect only frees and returns
    // unused memory of the current heaps.
    unsafe {
        libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, 0);
        libmimalloc_sys::mi_collect(true)
    }
}

fn main() -> std::process::ExitCode {
    segmentctl::daemon::set_memory_release(collect);
    segmentctl::cli::main()
}
