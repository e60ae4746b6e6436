fn main() -> std::process::ExitCode {
    odoogate::cli::main()
}
