//! `modelgate-mock-upstream [--listen ADDR] [--chunks N] [--chunk-delay-ms MS]`:
//! serve the deterministic mock inference server; prints
//! `{"listening": "http://ADDR"}` on stdout once it accepts connections.

use std::io::Write as _;
use std::process::ExitCode;
use std::time::Duration;

fn usage(msg: &str) -> ExitCode {
    eprintln!("modelgate-mock-upstream: {msg}\nusage: modelgate-mock-upstream [--listen ADDR] [--chunks N] [--chunk-delay-ms MS]");
    ExitCode::from(2)
}

fn main() -> ExitCode {
    let (mut listen, mut chunks, mut delay_ms) = ("127.0.0.1:0".to_owned(), 8u32, 50u64);
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        if a == "--help" || a == "-h" {
            println!("modelgate-mock-upstream: a deterministic OpenAI-compatible inference server for tests and walkthroughs\n\
                      (chat, completions and embeddings echo their input; streaming sends N chunks MS apart)\n\
                      usage: modelgate-mock-upstream [--listen ADDR (default 127.0.0.1:0)] [--chunks N (8)] [--chunk-delay-ms MS (50)]");
            return ExitCode::SUCCESS;
        }
        let Some(v) = args.next() else {
            return usage(&format!("{a} needs a value"));
        };
        match a.as_str() {
            "--listen" => listen = v,
            "--chunks" => match v.parse() {
                Ok(n) => chunks = n,
                Err(_) => return usage("--chunks takes a number"),
            },
            "--chunk-delay-ms" => match v.parse() {
                Ok(n) => delay_ms = n,
                Err(_) => return usage("--chunk-delay-ms takes a number"),
            },
            other => return usage(&format!("unknown argument {other}")),
        }
    }
    let app = modelgate_testkit::mock_router(modelgate_testkit::Mock {
        chunks,
        delay: Duration::from_millis(delay_ms),
    });
    let rt = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => return usage(&format!("starting the async runtime: {e}")),
    };
    let served = rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(&listen)
            .await
            .map_err(|e| format!("couldn't listen on {listen}: {e}"))?;
        let addr = listener.local_addr().map_err(|e| e.to_string())?;
        {
            let mut out = std::io::stdout().lock();
            let _ = writeln!(out, "{}", serde_json::json!({"listening": format!("http://{addr}")}))
                .and_then(|()| out.flush());
        }
        axum::serve(listener, app).await.map_err(|e| format!("serving: {e}"))
    });
    match served {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => usage(&e),
    }
}
