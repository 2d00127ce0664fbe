fn main() -> std::process::ExitCode {
    gateway::client::main()
}
