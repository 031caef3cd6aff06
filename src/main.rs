//! The `segmentctl` binary: everything is wired in `cli`.

fn main() -> std::process::ExitCode {
    segmentctl::cli::main()
}
