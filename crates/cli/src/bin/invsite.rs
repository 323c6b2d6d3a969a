//! `invsite`: see the library it calls for what it does.
//!
//! It keeps the system allocator. mimalloc made full reports about 17 % faster (glibc's
//! malloc and free are a third of the site's CPU time under full reports), but each idle
//! push-channel connection then cost the site about 7 KB more, over the SPEC's 20 KB budget
//! (BENCHMARKS.md, "What profiling found").

fn main() -> std::process::ExitCode {
    invsync_cli::init_logging();
    invsync_cli::finish("invsite", invsync_site::cli::try_main())
}
