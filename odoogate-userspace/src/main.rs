/// mimalloc in place of glibc's malloc. The proxy allocates and frees many
/// small objects per call from several threads, and in a perf profile of
/// the enforce benchmark glibc's malloc and free took about a quarter of
/// the daemon's CPU time.
#[global_allocator]
static GLOBAL: odoogate::memory::Allocator = odoogate::memory::Allocator;

fn main() -> std::process::ExitCode {
    odoogate::cli::main()
}
