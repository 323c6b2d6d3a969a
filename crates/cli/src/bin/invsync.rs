//! `invsync`: see the library it calls for what it does.

fn main() -> std::process::ExitCode {
    invsync_cli::init_logging();
    invsync_cli::finish("invsync", invsync_admin::invsync::try_main())
}
