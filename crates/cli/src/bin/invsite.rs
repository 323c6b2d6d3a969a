//! `invsite`: see the library it calls for what it does.

/// mimalloc instead of glibc's malloc for the site server only: parsing and preparing a full
/// report makes and frees some 20,000 small allocations, and under a load of full reports
/// glibc's malloc and free were a third of the site's CPU time. (It cost about 7 KB more per
/// idle connection while the site served through `axum::serve`; with the site's own HTTP/1.1
/// loop, `site::http`, an idle connection stays within budget with it: BENCHMARKS.md.) The
/// agent keeps the system allocator, where peak RSS matters more than allocation speed.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    invsync_cli::init_logging();
    invsync_cli::finish(
        "invsite",
        invsync_site::cli::try_main(invsync_cli::quickstart::run),
    )
}
