//! `invsync-loadgen`: see the library it calls for what it does.

fn main() -> std::process::ExitCode {
    invsync_loadgen::finish(invsync_loadgen::try_main())
}
