//! What decoding a zstd bomb allocates, measured by a counting global allocator (which is why
//! this is a test binary of its own): at most the decoded-size limit, plus the largest window
//! the site accepts, plus a little for zstd's context, whatever the frame asks for. Before this
//! bound, the output `Vec` doubled past the limit (a 64 MiB limit cost 128 MiB and the copy),
//! and a frame header could make the decoder allocate a 128 MiB window.

use std::alloc::{GlobalAlloc, Layout, System};
use std::io::Write;
use std::sync::atomic::{AtomicUsize, Ordering};

use invsync_site::api::decode::{WINDOW_LOG_MAX, decode_zstd};
use invsync_site::api::error::ApiError;

/// The system allocator, counting the bytes allocated now and the most at any time.
struct Counting;

static CURRENT: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

fn grew(by: usize) {
    let now = CURRENT.fetch_add(by, Ordering::SeqCst) + by;
    PEAK.fetch_max(now, Ordering::SeqCst);
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        grew(layout.size());
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        CURRENT.fetch_sub(layout.size(), Ordering::SeqCst);
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // A realloc that moves holds both blocks for a moment: count the new one first.
        grew(new_size);
        let moved = unsafe { System.realloc(ptr, layout, new_size) };
        CURRENT.fetch_sub(layout.size(), Ordering::SeqCst);
        moved
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// The most bytes allocated at once while `f` runs, above what was allocated before it.
fn peak_during<T>(f: impl FnOnce() -> T) -> (T, usize) {
    let base = CURRENT.load(Ordering::SeqCst);
    PEAK.store(base, Ordering::SeqCst);
    let out = f();
    (out, PEAK.load(Ordering::SeqCst) - base)
}

/// `len` zeros compressed as a stream (no content size in the header) with this window.
fn bomb(len: usize, window_log: u32) -> Vec<u8> {
    let mut encoder = zstd::stream::write::Encoder::new(Vec::new(), 1).unwrap();
    encoder.include_contentsize(false).unwrap();
    encoder.window_log(window_log).unwrap();
    let chunk = vec![0u8; 1 << 20];
    for _ in 0..len >> 20 {
        encoder.write_all(&chunk).unwrap();
    }
    encoder.finish().unwrap()
}

// One test: the counters are global, and tests of one binary run on parallel threads.
#[test]
fn a_bomb_costs_at_most_the_limit_plus_the_window() {
    const MIB: usize = 1 << 20;
    let limit = 16 * MIB;
    let window = 1usize << WINDOW_LOG_MAX;

    // 64 MiB of zeros with the largest window accepted: refused at the limit, having held the
    // limit (one buffer, never doubled) and the window.
    let accepted_window = bomb(64 * MIB, WINDOW_LOG_MAX);
    let (result, peak) = peak_during(|| decode_zstd(&accepted_window, limit));
    assert!(matches!(result, Err(ApiError::TooLarge(_))), "{result:?}");
    assert!(
        peak <= limit + window + MIB,
        "decoding a bomb allocated {peak} bytes at once; the bound is {} + {} + 1 MiB",
        limit,
        window
    );

    // A frame that asks for a 128 MiB window: refused from its header, with next to nothing
    // allocated.
    let wide_window = bomb(4 * MIB, 27);
    let (result, peak) = peak_during(|| decode_zstd(&wide_window, limit));
    assert!(matches!(result, Err(ApiError::BadInput(_))), "{result:?}");
    assert!(
        peak <= limit + MIB,
        "a frame asking for a 128 MiB window allocated {peak} bytes"
    );

    // A body within the limit is decoded whole.
    let fits = bomb(8 * MIB, WINDOW_LOG_MAX);
    let (result, peak) = peak_during(|| decode_zstd(&fits, limit));
    assert_eq!(result.unwrap().len(), 8 * MIB);
    assert!(peak <= limit + window + MIB, "{peak}");
}
