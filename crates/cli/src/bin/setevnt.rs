//! `setevnt`: see the library it calls for what it does.

fn main() -> std::process::ExitCode {
    invsync_cli::init_logging();
    invsync_cli::finish("setevnt", invsync_admin::setevnt::try_main())
}
