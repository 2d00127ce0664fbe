fn main() -> std::process::ExitCode {
    workers::cli::main()
}
