//! `flashslim`: the engine's command line. Flags follow llama.cpp where one exists (-m, -p, -n, -t,
//! -c, --temp, --top-k...). Errors print one line to stderr and exit non-zero; a broken stdout
//! pipe ends the program quietly.

mod cli;

fn main() -> std::process::ExitCode {
    cli::main()
}
