//! `invsite`: see the library it calls for what it does.

/// mimalloc instead of glibc's malloc for the site server only: parsing and preparing a full
/// report makes and frees some 20,000 small allocations, and under a load of full reports
/// glibc's malloc and free were a third of the site's CPU time. The agent keeps the system
/// allocator, where peak RSS matters more than allocation speed.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    invsync_cli::init_logging();
    invsync_cli::finish("invsite", invsync_site::cli::try_main())
}
