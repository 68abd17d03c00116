//! The `ndlab` command line (native only): reads the arguments, runs [`ndlab_cli::run`] over the
//! real file system, prints its output, and maps errors to one line on stderr and a non-zero exit.

#[cfg(not(target_arch = "wasm32"))]
mod native {
    use ndlab_cli::{run, Host};
    use ndlab_core::layer::MAX_ELEMENTS;
    use ndlab_core::Error;
    use std::io::Write;
    use std::process::ExitCode;
    use std::time::Instant;

    /// Files on disk and a monotonic clock.
    struct StdHost {
        start: Instant,
    }

    impl Host for StdHost {
        fn read(&mut self, path: &str) -> ndlab_core::Result<Vec<u8>> {
            let fail = |e: std::io::Error| Error::Format(format!("{path}: {e}"));
            let meta = std::fs::metadata(path).map_err(fail)?;
            // Largest sensible .npy: MAX_ELEMENTS f64 values plus a header.
            let limit = 8 * MAX_ELEMENTS as u64 + (1 << 20);
            if meta.len() > limit {
                return Err(Error::TooLarge(format!(
                    "{path}: {} bytes is more than any tensor ndlab accepts",
                    meta.len()
                )));
            }
            std::fs::read(path).map_err(fail)
        }

        fn write(&mut self, path: &str, bytes: &[u8]) -> ndlab_core::Result<()> {
            std::fs::write(path, bytes).map_err(|e| Error::Format(format!("cannot write {path}: {e}")))
        }

        fn now(&self) -> Option<f64> {
            Some(self.start.elapsed().as_secs_f64())
        }
    }

    /// Runs the command line and returns the process exit code (2 for usage errors, 1 otherwise).
    pub fn main() -> ExitCode {
        std::panic::set_hook(Box::new(|info| {
            eprintln!("ndlab: internal error: {}", one_line(&info.to_string()));
        }));
        let args: Vec<String> =
            std::env::args_os().skip(1).map(|a| a.to_string_lossy().into_owned()).collect();
        let mut host = StdHost { start: Instant::now() };
        match run(&args, &mut host) {
            Ok(out) => {
                // A closed stdout (e.g. `| head`) is not an error worth a trace.
                let _ = std::io::stdout().write_all(out.as_bytes());
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("ndlab: {}", one_line(&e.to_string()));
                ExitCode::from(if matches!(e, Error::Param(_)) { 2 } else { 1 })
            }
        }
    }

    fn one_line(s: &str) -> String {
        s.split_whitespace().collect::<Vec<_>>().join(" ")
    }
}

#[cfg(not(target_arch = "wasm32"))]
fn main() -> std::process::ExitCode {
    native::main()
}

#[cfg(target_arch = "wasm32")]
fn main() {}
