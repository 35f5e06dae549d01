//! `suite`: plan, run and report beatmatch studies. `suite --help` lists the commands.

mod cli;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    // candle sizes its GEMM thread pool from RAYON_NUM_THREADS. One single-threaded run per
    // core is both faster for small models and bit-for-bit deterministic.
    if std::env::var_os("RAYON_NUM_THREADS").is_none() {
        std::env::set_var("RAYON_NUM_THREADS", "1");
    }
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_env("BEATMATCH_LOG").unwrap_or_else(|_| "info".into()))
        .with_target(false)
        .without_time()
        .init();
    match cli::main() {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::from(2)
        }
    }
}
